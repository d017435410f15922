"""Fine-tuning can leave out the validation part that train_attention holds out, so that
the attention model's validation accuracy is not measured on videos the ConvNet saw."""

import json

import pytest

from temporal_attention.data.splits import hold_out_validation
from temporal_attention.training import finetune_convnet
from temporal_attention.training.finetune_convnet import CHECKPOINT_NAME, SETTINGS_NAME

TINY = ["--weights", "none", "--width-multiplier", "0.0625", "--fc-units", "8"]
TINY += ["--crop-size", "32", "--height", "48", "--width", "64", "--workers", "0"]
TINY += ["--batch-size", "4", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from tests.synthetic_videos import write_ucf101_like

    root = tmp_path_factory.mktemp("videos")
    video_root, split_dir = write_ucf101_like(root, clips_per_class=4, num_frames=4)
    return ["--video-root", str(video_root), "--split-dir", str(split_dir)]


def test_the_held_out_groups_are_train_attentions_and_never_trained_on(
    source, tmp_path, monkeypatch
):
    seen = []
    original = finetune_convnet.training_clips

    def recording(split, *args, **kwargs):
        seen.append(sorted(clip.video_id for clip in split.train))
        return original(split, *args, **kwargs)

    monkeypatch.setattr(finetune_convnet, "training_clips", recording)
    flags = ["--hold-out-fraction", "0.34", "--hold-out-seed", "1"]
    output = tmp_path / "net"
    finetune_convnet.main(
        [*source, *TINY, "--max-iterations", "1", *flags, "--output-dir", str(output)]
    )
    split = finetune_convnet.parse_args([*source, "--output-dir", "x"]).source.load()
    kept, validation = hold_out_validation(split.train, 0.34, seed=1, by="group")
    assert len(validation) == 2 and len(kept) == 4  # one group of 3, both classes
    assert seen == [sorted(clip.video_id for clip in kept)]
    settings = json.loads((output / SETTINGS_NAME).read_text())
    assert settings["held_out_videos"] == sorted(clip.video_id for clip in validation)

    # Resuming that checkpoint without the hold-out would train on other videos: refused.
    with pytest.raises(ValueError, match="2 held-out videos.*--hold-out"):
        finetune_convnet.main(
            [*source, *TINY, "--max-iterations", "2", "--output-dir", str(output)]
        )
    assert (output / CHECKPOINT_NAME).exists()


def test_without_the_flag_the_whole_training_list_is_fine_tuned(source, tmp_path):
    output = tmp_path / "net"
    finetune_convnet.main([*source, *TINY, "--max-iterations", "1", "--output-dir", str(output)])
    assert json.loads((output / SETTINGS_NAME).read_text())["held_out_videos"] == []


@pytest.mark.parametrize("flags", [["--hold-out-fraction", "1.0"], ["--hold-out-by", "actor"]])
def test_bad_hold_out_flags_are_refused(source, tmp_path, flags):
    with pytest.raises((ValueError, SystemExit)):
        finetune_convnet.parse_args([*source, *flags, "--output-dir", str(tmp_path)])
