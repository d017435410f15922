"""The two-stream stages end to end on generated videos: flow, fine-tuning, extraction."""

import csv

import keras
import numpy as np
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.training import (
    compute_flow,
    decode_videos,
    extract_features,
    finetune_convnet,
)
from tests.synthetic_videos import write_hmdb51_like, write_ucf101_like

HEIGHT, WIDTH = 48, 64
TINY_NET = ["--weights", "none", "--fc-units", "16", "--width-multiplier", "0.25"]
FROM_SCRATCH = ["--batch-norm"]  # VGG16-BN, as the CPU demo trains it


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    video_root, split_dir = write_ucf101_like(
        root, clips_per_class=3, num_frames=10, height=HEIGHT, width=WIDTH
    )
    flow_root = root / "flow"
    common = ["--video-root", str(video_root), "--split-dir", str(split_dir)]
    status = compute_flow.main(
        [*common, "--subset", "all", "--output", str(flow_root), "--method", "farneback"]
        + ["--height", str(HEIGHT), "--width", str(WIDTH), "--workers", "1"]
    )
    assert status == 0
    return {"common": common, "flow_root": flow_root, "root": root}


@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_finetune_then_extract_with_the_finetuned_network(dataset, tmp_path, stream):
    common, flow_root = dataset["common"], dataset["flow_root"]
    size = ["--height", str(HEIGHT), "--width", str(WIDTH)]
    flow = ["--flow-root", str(flow_root)] if stream == "motion" else []
    preset = "spatial" if stream == "appearance" else "temporal"
    variant = FROM_SCRATCH if stream == "motion" else []  # both VGG16 and VGG16-BN
    final = finetune_convnet.main(
        [
            *common,
            *flow,
            *size,
            *TINY_NET,
            *variant,
            "--preset",
            preset,
            "--output-dir",
            str(tmp_path / "net"),
        ]
        + ["--crop-size", "32", "--batch-size", "4", "--max-iterations", "3"]
        + ["--checkpoint-every", "2", "--workers", "0"]
    )
    assert final.exists()
    log_lines = (tmp_path / "net" / "log.csv").read_text().strip().splitlines()
    assert len(log_lines) == 1 + 3  # header and one row per iteration

    store_root = tmp_path / "store"
    extract = [*common, *flow, *size, "--stream", stream, "--store", str(store_root)]
    extract += ["--weights", str(final), "--fc-units", "16", "--width-multiplier", "0.25"]
    extract += ["--input-size", "32", "--batch-size", "4", *variant]
    assert extract_features.main([*extract, "--shard", "0/2"]) == 0
    assert extract_features.main([*extract, "--shard", "1/2"]) == 0
    store = FeatureStore(store_root)
    assert len(store.video_ids()) == 6  # both shards together cover every video
    features, metadata = store.read(store.video_ids()[0])
    expected_images = 10 if stream == "appearance" else 10 - 1 - 4  # frames, or flow stacks
    assert features.shape == (expected_images, 16)
    assert np.isfinite(features).all() and metadata["stream"] == stream
    assert metadata["frame_indices"] == list(range(expected_images))
    assert metadata["batch_norm"] == (stream == "motion")
    before = {
        video_id: store.path_for(video_id).stat().st_mtime_ns for video_id in store.video_ids()
    }
    assert extract_features.main(extract) == 0  # a re-run does no work
    after = {
        video_id: store.path_for(video_id).stat().st_mtime_ns for video_id in store.video_ids()
    }
    assert after == before


def test_extraction_records_a_bad_video_and_goes_on(dataset, tmp_path, capsys):
    common = dataset["common"]
    video_root = dataset["root"] / "UCF-101"
    bad = video_root / "Beta" / "v_Beta_g02_c01.avi"
    original = bad.read_bytes()
    try:
        bad.write_bytes(b"not a video")
        store_root = tmp_path / "store"
        status = extract_features.main(
            [*common, "--stream", "appearance", "--store", str(store_root), *TINY_NET]
            + ["--input-size", "32", "--height", str(HEIGHT), "--width", str(WIDTH)]
        )
    finally:
        bad.write_bytes(original)
    assert status == 1
    assert "Beta/v_Beta_g02_c01" in capsys.readouterr().out
    assert len(FeatureStore(store_root).video_ids()) == 5  # every other video was extracted
    assert (store_root / "failures-appearance.jsonl").exists()


def test_motion_without_flow_root_is_a_clear_error(dataset, tmp_path, capsys):
    status = extract_features.main(
        [*dataset["common"], "--stream", "motion", "--store", str(tmp_path), *TINY_NET]
    )
    assert status == 2
    assert "--flow-root" in capsys.readouterr().err


def test_finetuning_the_motion_net_without_flow_names_the_missing_files(dataset, tmp_path):
    with pytest.raises(ValueError, match="no flow file .*compute_flow"):
        finetune_convnet.main(
            [*dataset["common"], "--preset", "temporal", "--flow-root", str(tmp_path)]
            + [*TINY_NET, "--output-dir", str(tmp_path / "net"), "--max-iterations", "1"]
        )


def _extract(dataset, store, *flags):
    size = ["--height", str(HEIGHT), "--width", str(WIDTH), "--input-size", "32"]
    return extract_features.main(
        [*dataset["common"], "--stream", "appearance", "--store", str(store), *size, *flags]
    )


def test_a_weights_file_replaced_under_its_name_is_extracted_again(dataset, tmp_path):
    from temporal_attention.models.feature_extraction import file_sha256
    from temporal_attention.models.two_stream_vgg16 import build_stream_vgg16

    network = tmp_path / "final.keras"
    keras.utils.set_random_seed(1)
    build_stream_vgg16("appearance", weights=None, input_size=32, fc_units=16).save(network)
    assert _extract(dataset, tmp_path / "store", "--weights", str(network)) == 0
    store = FeatureStore(tmp_path / "store")
    first, metadata = store.read(store.video_ids()[0])
    assert metadata["weights_sha256"] == file_sha256(network)
    keras.utils.set_random_seed(2)  # fine-tuned again, into the same file name
    build_stream_vgg16("appearance", weights=None, input_size=32, fc_units=16).save(network)
    assert _extract(dataset, tmp_path / "store", "--weights", str(network)) == 0
    again, metadata = store.read(store.video_ids()[0])
    assert metadata["weights_sha256"] == file_sha256(network)
    assert not np.allclose(first, again)  # redone with the new network, not skipped


def test_a_random_network_is_seeded_and_its_seed_recorded(dataset, tmp_path):
    for name in ("a", "b"):
        assert _extract(dataset, tmp_path / name, *TINY_NET) == 0
    stores = [FeatureStore(tmp_path / name) for name in ("a", "b")]
    video_ids = stores[0].video_ids()
    for video_id in video_ids:
        (a, metadata), (b, _) = (store.read(video_id) for store in stores)
        np.testing.assert_array_equal(a, b)  # the same network in every process
        assert metadata["seed"] == 0
    assert _extract(dataset, tmp_path / "a", *TINY_NET, "--seed", "1") == 0
    other, metadata = stores[0].read(video_ids[0])
    assert metadata["seed"] == 1 and not np.allclose(other, stores[1].read(video_ids[0])[0])


def test_bad_settings_stop_before_any_video(dataset, tmp_path, capsys):
    assert _extract(dataset, tmp_path / "store", *TINY_NET, "--input-size", "56") == 2
    assert "--input-size <= the appearance images' height and width (48x64)" in (
        capsys.readouterr().err
    )
    (tmp_path / "file").write_text("not a folder")
    assert _extract(dataset, tmp_path / "file", *TINY_NET) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
    flow = [*dataset["common"], "--output", str(tmp_path / "flow"), "--method", "farneback"]
    assert compute_flow.main([*flow, "--workers", "0"]) == 2
    assert "--workers >= 1" in capsys.readouterr().err


def test_a_video_without_flow_names_the_flow_stage(dataset, tmp_path):
    from temporal_attention.data.flow_store import FlowStore

    with pytest.raises(ValueError, match="no flow for Alpha/v_x.*training.compute_flow"):
        FlowStore(tmp_path).read("Alpha/v_x")


# HMDB51's file names as they are (video ids become file paths of every store).
HMDB51_VIDEOS = {
    "clap": [
        "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi",
        "Faith_Rewarded_clap_f_cm_np1_fr_med_9.avi",
        "Tom_&_Jerry_[HD]_clap_f_cm_np1_fr_med_2.avi",
    ],
    "stand": ["!!!_Fantastic_Cheerleading_Stunts!!!_stand_f_cm_np1_ba_med_1.avi"],
    "walk": [
        "Lil'_Wayne_(featuring_Bobby_V)_-_Mrs._Officer_(Offical_Music_Video)"
        "_walk_f_cm_np1_fr_med_1.avi",
        "50%_off,_then_walk_u_cm_np1_fr_med_0.avi",
    ],
}


def test_hmdb51_file_names_through_flow_and_extraction(tmp_path):
    video_root, split_dir = write_hmdb51_like(tmp_path / "data", HMDB51_VIDEOS)
    common = ["--dataset", "hmdb51", "--video-root", str(video_root)]
    common += ["--split-dir", str(split_dir), "--height", str(HEIGHT), "--width", str(WIDTH)]
    video_ids = sorted(
        f"{name}/{file[: -len('.avi')]}" for name, files in HMDB51_VIDEOS.items() for file in files
    )
    flow_root = tmp_path / "flow"
    flow_args = [*common, "--output", str(flow_root), "--method", "farneback", "--workers", "1"]
    assert compute_flow.main(flow_args) == 0
    stale = (
        flow_root / "clap" / ".Tom_&_Jerry_[HD]_clap_f_cm_np1_fr_med_2.npz.tmp-99999999-dead"
    )  # a dead pid
    stale.write_bytes(b"left by a killed run")
    (flow_root / "clap" / "Tom_&_Jerry_[HD]_clap_f_cm_np1_fr_med_2.npz").unlink()
    assert compute_flow.main(flow_args) == 0  # recomputes that one, removes its stale temp
    assert not stale.exists()
    index = tmp_path / "videos.csv"
    assert decode_videos.main([*common[:6], "--output", str(index), "--workers", "1"]) == 0
    rows = list(csv.DictReader(index.read_text().splitlines()))
    assert sorted(row["video_id"] for row in rows) == video_ids
    assert {row["num_frames"] for row in rows} == {"10"}
    for stream in ("appearance", "motion"):
        store_root = tmp_path / stream
        extract = [*common, "--stream", stream, "--store", str(store_root), *TINY_NET]
        extract += ["--flow-root", str(flow_root), "--input-size", "32", "--batch-size", "4"]
        assert extract_features.main(extract) == 0
        store = FeatureStore(store_root)
        assert store.video_ids() == video_ids
        for video_id in video_ids:
            features, metadata = store.read(video_id)
            assert metadata["video_id"] == video_id
            assert len(features) == (10 if stream == "appearance" else 10 - 5)
