"""predict on a generated video with tiny trained runs of both streams."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.optical_flow import compute_flow, flow_stacks
from temporal_attention.data.video import read_video, write_video
from temporal_attention.evaluation.predict import (
    Thumbnails,
    main,
    rebuild_extractor,
    video_features,
)
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    extract_video_features,
    file_sha256,
    prepare_images,
)
from temporal_attention.models.two_stream_vgg16 import build_stream_vgg16
from temporal_attention.runtime.config_flags import exit_on_error
from temporal_attention.training.runs import Run, TrainConfig
from temporal_attention.training.train_attention import train
from tests.evaluation_fixtures import TINY_MODEL, synthetic_split, write_separable_features
from tests.synthetic_videos import shifted_texture_frames


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny appearance and motion runs whose recorded feature network is a saved tiny VGG16."""
    root = tmp_path_factory.mktemp("predict")
    split = synthetic_split(root, clips_per_class=3)
    run_dirs = {}
    for stream in ("appearance", "motion"):
        network = root / f"{stream}_vgg16.keras"
        build_stream_vgg16(stream, weights=None, input_size=32, fc_units=16).save(network)
        store_root = root / "features" / stream
        # 40 frames: 40 appearance features, 35 flow stacks of 5 flows.
        num_positions = 40 if stream == "appearance" else 35
        write_separable_features(store_root, split, stream=stream, num_frames=num_positions)
        store = FeatureStore(store_root, dtype="float32")
        for clip in split.train + split.test:  # record how the features were "made"
            features, metadata = store.read(clip.video_id)
            recipe = {
                "weights": str(network),
                "weights_sha256": file_sha256(network),
                "feature_layer": "fc1",
                "flow_method": "farneback",
            }
            store.write(clip.video_id, features, {**metadata, **recipe})
        config = TrainConfig(stream=stream, epochs=1, validation_fraction=0.0, **TINY_MODEL)
        run_dirs[stream] = Run.for_config(root / "runs", config).root
        train(config, split=split, store_root=store_root, run_dir=run_dirs[stream], verbose=0)
    return root, run_dirs


def test_predict_prints_top_classes_and_writes_the_figure(runs, tmp_path, capsys):
    root, run_dirs = runs
    video = write_video(tmp_path / "clip.avi", shifted_texture_frames(37, 48, 64, (2.0, 1.0)))
    result = main(
        [
            str(video), "--appearance-run", str(run_dirs["appearance"]),
            "--motion-run", str(run_dirs["motion"]), "--output", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "1. " in printed and "2. " in printed  # 2 classes: the top-5 holds both
    names = [name for name, _ in result["top"]]
    assert sorted(names) == ["Alpha", "Beta"]
    probabilities = [probability for _, probability in result["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    # 37 frames: 37 appearance features, 36 flows -> 32 flow stacks (one bar each).
    assert len(result["frame_weights"]["appearance"]) == 37
    assert len(result["frame_weights"]["motion"]) == 32
    # Each 30-frame sample's weights sum to 1 before they are mapped to frames.
    assert result["frame_weights"]["motion"][:30].sum() == pytest.approx(1.0, abs=1e-4)
    fused = result["stream_scores"]["appearance"] / 3 + 2 * result["stream_scores"]["motion"] / 3
    np.testing.assert_allclose(result["scores"], fused)
    assert (tmp_path / "out" / "clip_attention.png").stat().st_size > 1000
    assert (tmp_path / "out" / "clip_attention.pdf").is_file()
    assert json.loads((tmp_path / "out" / "clip_top5.json").read_text())["top"][0][0] == names[0]


def test_predict_with_one_stream_and_unrebuildable_features(runs, tmp_path):
    _, run_dirs = runs
    video = write_video(tmp_path / "short.avi", shifted_texture_frames(12, 48, 64))
    result = main([str(video), "--appearance-run", str(run_dirs["appearance"]),
                   "--output", str(tmp_path)])  # fmt: skip
    assert len(result["frame_weights"]["appearance"]) == 12  # one padded sample
    assert list(result["frame_weights"]) == ["appearance"]
    with pytest.raises(ValueError, match="randomly initialised"):
        rebuild_extractor(FeatureRecipe(stream="appearance", weights="none", fc_units=16))
    # A file of the recorded name whose content is not the recorded one is refused.
    other = tmp_path / "other.keras"
    build_stream_vgg16("appearance", weights=None, input_size=32, fc_units=16).save(other)
    changed = FeatureRecipe(weights=str(other), weights_sha256="0" * 64, input_size=32)
    with pytest.raises(ValueError, match="not the file this run's features were made with"):
        rebuild_extractor(changed)


def test_attention_cli_draws_a_video_and_the_key_frame_mass(runs, tmp_path, capsys):
    from temporal_attention.evaluation.attention import main as attention_main
    from temporal_attention.training.runs import Run

    root, run_dirs = runs
    test_videos = Run(run_dirs["appearance"]).load_config().test_videos
    video_id = test_videos[0][0]
    key_frames = tmp_path / "key_frames.csv"
    key_frames.write_text(
        "video_id,frame_index\n" + "".join(f"{video},3\n" for video, _ in test_videos)
    )
    # The clip the features stand for: 40 frames (the generated dataset's clips have 6).
    video = write_video(tmp_path / f"{video_id}.avi", shifted_texture_frames(40, 32, 32))
    written = attention_main(
        [
            "--run", str(run_dirs["appearance"]), "--motion-run", str(run_dirs["motion"]),
            "--video-id", video_id, "--video", str(video),
            "--key-frames", str(key_frames), "--output", str(tmp_path / "figure"),
        ]
    )  # fmt: skip
    names = sorted(path.name for path in written)
    assert names == ["figure.pdf", "figure.png", "figure_key_frames.pdf", "figure_key_frames.png"]
    assert all(path.stat().st_size > 1000 for path in written)
    assert f"wrote {tmp_path / 'figure.png'}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--video-id needs --video"):
        attention_main(["--run", str(run_dirs["appearance"]), "--video-id", video_id])


def test_attention_figure_shows_the_frames_of_the_requested_video(runs, tmp_path, monkeypatch):
    import temporal_attention.evaluation.attention

    _, run_dirs = runs
    test_videos = [video for video, _ in Run(run_dirs["appearance"]).load_config().test_videos]
    video_id, other_id = test_videos[:2]
    video = write_video(tmp_path / f"{video_id}.avi", shifted_texture_frames(40, 32, 32))
    other = write_video(tmp_path / f"{other_id}.avi", shifted_texture_frames(40, 32, 32, seed=1))
    short = write_video(tmp_path / "short" / f"{video_id}.avi", shifted_texture_frames(12, 32, 32))
    drawn = {}
    monkeypatch.setattr(
        temporal_attention.evaluation.attention,
        "plot_attention",
        lambda frames, *_, **__: drawn.update(frames=frames) or [],
    )
    flags = ["--run", str(run_dirs["appearance"]), "--motion-run", str(run_dirs["motion"])]
    flags += ["--video-id", video_id, "--output", str(tmp_path / "figure")]
    # Another clip's file, or a file of another length, is refused before any model runs.
    with pytest.raises(ValueError, match=f"--video {other} is not the file of --video-id"):
        temporal_attention.evaluation.attention.main([*flags, "--video", str(other)])
    with pytest.raises(ValueError, match=f"{short} has 12 frames, but the appearance feat"):
        temporal_attention.evaluation.attention.main([*flags, "--video", str(short)])
    assert not drawn
    one_stream = ["--run", str(run_dirs["appearance"]), *flags[4:]]  # one model to run
    temporal_attention.evaluation.attention.main([*one_stream, "--video", str(video)])
    np.testing.assert_array_equal(drawn["frames"], read_video(video).frames)


def test_predict_refuses_an_output_file_and_an_unfinished_run(runs, tmp_path, capsys):
    _, run_dirs = runs
    video = write_video(tmp_path / "clip.avi", shifted_texture_frames(12, 48, 64))
    output = tmp_path / "predictions"
    output.write_text("kept")
    with pytest.raises(SystemExit) as exit_status:
        exit_on_error(main, [str(video), "--appearance-run", str(run_dirs["appearance"]),
                             "--output", str(output)])  # fmt: skip
    assert exit_status.value.code == 2 and output.read_text() == "kept"
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{output} is a file" in error
    unfinished = Path(shutil.copytree(run_dirs["motion"], tmp_path / "unfinished"))
    (unfinished / "backup").mkdir()
    with pytest.raises(ValueError, match=f"{unfinished}: training is unfinished"):
        main([str(video), "--motion-run", str(unfinished), "--output", str(tmp_path / "out")])


def test_frame_weights_of_many_videos_at_once_are_those_of_each_video(runs):
    from temporal_attention.evaluation.attention import (
        build_attention_readout,
        run_frame_weights,
        video_attention,
    )

    _, run_dirs = runs
    trained = Run(run_dirs["motion"])
    record = trained.load_config()
    videos = [video_id for video_id, _ in record.test_videos + record.train_videos]
    model = trained.load_model()
    store = FeatureStore(record.feature_store)
    # Each video alone, once (one readout model for all: one trace, not one per video).
    readout = build_attention_readout(model)
    alone = {
        video_id: video_attention(model, store.read(video_id)[0], readout=readout)["frame_weights"]
        for video_id in videos
    }
    for max_samples in (1, 3, 512):  # 2 samples a video: chunks end inside and between videos
        weights = run_frame_weights(trained, videos, model=model, max_samples=max_samples)
        assert list(weights) == videos
        for video_id in videos:
            np.testing.assert_allclose(weights[video_id], alone[video_id], atol=1e-6)


def whole_video_features(frames, recipe, flow_method):
    """Features as predict computed them before it read videos chunk by chunk: the whole
    video decoded at its stored size, resized, flow of all frames, one array of images."""

    def resize(frames, size):
        height, width = size
        return np.stack(
            [cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR) for frame in frames]
        )

    if recipe.stream == "appearance":
        images = resize(frames, (recipe.height, recipe.width))
    else:
        images = flow_stacks(compute_flow(resize(frames, recipe.flow_size), flow_method))
    extractor = rebuild_extractor(recipe)
    return extract_video_features(extractor, prepare_images(images, recipe), batch_size=32)


@pytest.mark.parametrize("num_frames", [20, 75])
@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_features_read_chunk_by_chunk_are_those_of_the_whole_video(tmp_path, stream, num_frames):
    # 48x64 frames resized to 40x54. 20 frames: one chunk; 75: 3 chunks of frames,
    # several of flows and batches. Bit for bit what the whole video gives.
    network = tmp_path / "net.keras"
    build_stream_vgg16(stream, weights=None, input_size=32, fc_units=16).save(network)
    size = {"height": 40, "width": 54} if stream == "appearance" else {"flow_size": (40, 54)}
    recipe = FeatureRecipe(stream=stream, weights=str(network), input_size=32, **size)
    frames = shifted_texture_frames(num_frames, 48, 64, (2.0, 1.0))
    video = write_video(tmp_path / "clip.avi", frames)
    features = video_features(video, recipe, "farneback")
    assert features.shape == (num_frames - (5 if stream == "motion" else 0), 16)
    frames = read_video(video, None, None).frames
    np.testing.assert_array_equal(features, whole_video_features(frames, recipe, "farneback"))


def test_thumbnails_keep_only_the_frames_the_figure_shows(tmp_path):
    frames = shifted_texture_frames(75, 48, 64)
    video = write_video(tmp_path / "long.avi", frames)
    thumbnails = Thumbnails(video, 75)
    assert len(thumbnails) == 75 and sorted(thumbnails.frames) == [0, 11, 21, 32, 42, 53, 63, 74]
    np.testing.assert_array_equal(thumbnails[74], read_video(video, None, None).frames[74])
    with pytest.raises(IndexError, match="Frame 1 is not kept"):
        thumbnails[1]
