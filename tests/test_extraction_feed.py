"""Extraction fed by worker processes: uint8 crops preprocessed on the device equal the
host path bit for bit, batches across videos equal per-video batches, the frame store as
the image source (recorded), resume after an interruption, precision "auto", and
data-parallel extraction over two (virtual CPU) devices."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from temporal_attention.data.extraction_feed import ImageSource, ReadTask, plan_tasks, read_crops
from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.frame_store import FrameStore
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    extract_video_features,
    prepare_images,
    resolve_precision,
    uint8_extractor,
)
from temporal_attention.runtime.process_feed import ordered_map
from temporal_attention.runtime.streaming import extract_streamed_features
from temporal_attention.training import compute_flow, extract_features, extract_frames
from tests.synthetic_videos import write_ucf101_like

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 48, 64
TINY = {"weights": "none", "precision": "float32", "input_size": 32, "fc_units": 16}
TINY_FLAGS = ["--weights", "none", "--precision", "float32", "--input-size", "32"]
TINY_FLAGS += ["--fc-units", "16", "--width-multiplier", "0.25"]


def generated_images(channels: int, num_images: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num_images, 40, 48, channels), dtype=np.uint8)


def pieces_of(videos: dict, piece_size: int, input_size: int = 32):
    """`read_crops`-like pieces of in-memory videos: central crops, `piece_size` at a time."""
    from temporal_attention.data.crops import center_crop

    for video_id, images in videos.items():
        crops = center_crop(images, input_size)
        for start in range(0, len(crops), piece_size):
            last = start + piece_size >= len(crops)
            yield {"video_id": video_id, "images": crops[start : start + piece_size],
                   "last": last, "error": None}  # fmt: skip


@pytest.mark.multibackend  # on JAX, batches are dispatched without waiting for each
@pytest.mark.parametrize(
    ("stream", "preprocess"),
    [("appearance", "caffe"), ("appearance", "efficientnet_lite"), ("motion", None)],
)
def test_uint8_crops_across_videos_equal_host_preprocessed_per_video_features(stream, preprocess):
    # Device-side preprocessing of uint8 crops, batched across videos (batches of 4 from
    # videos of 3, 7, 1 and 6 images), equals the host path (float32 prepare_images, each
    # video's last batch padded) to float32 rounding: the same arithmetic, but a CPU's
    # kernels may block a layer's sums differently for other batches (seen: 5e-7 on some
    # values on some machines), while a wrong preprocessing changes features by ~1.
    recipe = FeatureRecipe(stream=stream, preprocess=preprocess, **TINY)
    network = build_extractor(recipe)
    channels = 3 if stream == "appearance" else 10
    videos = {
        f"A/v{index}": generated_images(channels, length, seed=index)
        for index, length in enumerate((3, 7, 1, 6))
    }
    expected = {
        video_id: extract_video_features(network, prepare_images(images, recipe), batch_size=4)
        for video_id, images in videos.items()
    }
    extractor = uint8_extractor(network, recipe)
    for piece_size in (2, 5):
        results = list(extract_streamed_features(extractor, pieces_of(videos, piece_size), 4))
        assert [video_id for video_id, _, _ in results] == list(videos)
        for video_id, features, error in results:
            assert error is None
            scale = float(np.abs(expected[video_id]).max())
            np.testing.assert_allclose(features, expected[video_id], rtol=1e-5, atol=1e-6 * scale)


def _record_predictions(monkeypatch, record):
    """Wraps each batch's prediction (on every backend): `record(batch, predict)`."""
    from temporal_attention.runtime import streaming

    original = streaming._predict_assembled
    monkeypatch.setattr(
        streaming,
        "_predict_assembled",
        lambda predict, assembled: record(assembled.result(), lambda: original(predict, assembled)),
    )


def test_a_failed_piece_fails_its_video_only(monkeypatch):
    recipe = FeatureRecipe(stream="appearance", **TINY)
    network = build_extractor(recipe)
    extractor = uint8_extractor(network, recipe)
    videos = {f"A/v{index}": generated_images(3, 5, seed=index) for index in range(3)}
    pieces = list(pieces_of(videos, 3))  # v0: 3 + 2, v1: 3 + 2, v2: 3 + 2
    pieces[3] = {"video_id": "A/v1", "images": None, "last": True, "error": "OSError: bad"}
    calls = []
    _record_predictions(monkeypatch, lambda batch, predict: calls.append(len(batch)) or predict())
    results = {
        video_id: (f, e) for video_id, f, e in extract_streamed_features(extractor, pieces, 4)
    }
    assert results["A/v1"] == (None, "OSError: bad")
    assert set(calls) == {4}  # one batch shape, also for the last
    for video_id in ("A/v0", "A/v2"):
        expected = extract_video_features(network, prepare_images(videos[video_id], recipe), 4)
        np.testing.assert_array_equal(results[video_id][0], expected)


def assert_only_one_failed(results, failed, message, network, recipe, videos):
    """`results` of `videos` in order: video `failed` with `message`, every other one
    with the features of its images extracted alone."""
    assert [video_id for video_id, _, _ in results] == list(videos)
    assert results[failed][1:] == (None, message)
    for index, (video_id, features, error) in enumerate(results):
        if index != failed:
            expected = extract_video_features(network, prepare_images(videos[video_id], recipe), 4)
            assert error is None
            np.testing.assert_array_equal(features, expected)


def test_a_failed_batch_fails_its_videos_only_while_the_next_is_assembled(monkeypatch):
    """Batches are predicted one ahead in a thread: a batch that raises fails the videos
    with rows in it, later batches go on, and every video comes out in order."""
    import threading

    recipe = FeatureRecipe(stream="appearance", **TINY)
    network = build_extractor(recipe)
    extractor = uint8_extractor(network, recipe)
    videos = {f"A/v{index}": generated_images(3, 4, seed=index) for index in range(4)}
    threads = []

    def predict(batch, original):  # batch 2 of 4 (v1's rows) raises
        threads.append(threading.get_ident())
        if len(threads) == 2:
            raise RuntimeError("device lost")
        return original()

    _record_predictions(monkeypatch, predict)
    results = list(extract_streamed_features(extractor, pieces_of(videos, 2), 4))
    assert_only_one_failed(results, 1, "RuntimeError: device lost", network, recipe, videos)
    assert threading.get_ident() not in threads  # predicted beside the feeding loop


def test_batches_are_assembled_beside_the_feeding_loop_and_a_failed_one_fails_its_videos(
    monkeypatch,
):
    """Each batch's rows are copied into one array in a thread of their own (not the
    loop reading the pieces, nor the predicting one); a batch whose assembly raises
    fails the videos with rows in it and the others come out whole."""
    import threading

    from temporal_attention.runtime import streaming

    recipe = FeatureRecipe(stream="appearance", **TINY)
    network = build_extractor(recipe)
    extractor = uint8_extractor(network, recipe)
    videos = {f"A/v{index}": generated_images(3, 4, seed=index) for index in range(4)}
    original, assembling, predicting = streaming._assemble, [], []

    def assemble(parts, padding):  # batch 3 of 4 (v2's rows) cannot be assembled
        assembling.append(threading.get_ident())
        if len(assembling) == 3:
            raise MemoryError("no room for the batch")
        return original(parts, padding)

    _record_predictions(
        monkeypatch, lambda batch, predict: predicting.append(threading.get_ident()) or predict()
    )
    monkeypatch.setattr(streaming, "_assemble", assemble)
    results = list(extract_streamed_features(extractor, pieces_of(videos, 2), 4))
    assert_only_one_failed(
        results, 2, "MemoryError: no room for the batch", network, recipe, videos
    )
    assert len(set(assembling)) <= streaming.ASSEMBLE_THREADS and len(predicting) == 3
    assert threading.get_ident() not in assembling and not set(assembling) & set(predicting)


def test_auto_precision_is_float32_on_a_cpu_and_recorded_resolved():
    assert FeatureRecipe().precision == "auto"
    assert resolve_precision("auto") == "float32"  # this machine has no GPU
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert FeatureRecipe(weights="none").metadata()["precision"] == "float32"
    with pytest.raises(ValueError, match="image_source"):
        FeatureRecipe(stream="motion", image_source="video")


@pytest.fixture(scope="module")
def frame_dataset(tmp_path_factory):
    """Four generated videos (12 frames), their frames and flow in a frame store and their
    flow in the .npz flow store."""
    root = tmp_path_factory.mktemp("frames")
    video_root, split_dir = write_ucf101_like(
        root, ("Alpha", "Beta"), clips_per_class=2, num_frames=12, height=HEIGHT, width=WIDTH
    )
    common = ["--video-root", str(video_root), "--split-dir", str(split_dir)]
    common += ["--height", str(HEIGHT), "--width", str(WIDTH), "--workers", "1"]
    frames = root / "frame_store"
    assert extract_frames.main([*common, "--output", str(frames)]) == 0
    flow = [*common, "--method", "farneback"]
    assert compute_flow.main([*flow, "--output", str(frames), "--layout", "frames"]) == 0
    assert compute_flow.main([*flow, "--output", str(root / "flow")]) == 0
    split = ["--video-root", str(video_root), "--split-dir", str(split_dir)]
    return {"split": split, "frames": frames, "flow": root / "flow", "root": root}


def _extract(frame_dataset, store, stream, *extra):
    args = [*frame_dataset["split"], "--stream", stream, "--store", str(store), *TINY_FLAGS]
    args += ["--height", str(HEIGHT), "--width", str(WIDTH), "--batch-size", "4", *extra]
    return extract_features.main(args)


def _stored(store_root) -> dict:
    store = FeatureStore(store_root)
    return {video_id: store.read(video_id)[0] for video_id in store.video_ids()}


@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_features_from_the_frame_store_with_workers(frame_dataset, tmp_path, stream):
    frames = frame_dataset["frames"]
    store = tmp_path / "store"
    assert (
        _extract(frame_dataset, store, stream, "--frame-root", str(frames), "--workers", "1") == 0
    )
    stored = FeatureStore(store)
    assert len(stored.video_ids()) == 4
    recipe = FeatureRecipe(stream=stream, width_multiplier=0.25, **TINY)
    network = build_extractor(recipe)
    for video_id in stored.video_ids():
        features, metadata = stored.read(video_id, as_stored=True)
        assert metadata["image_source"] == "frames" and metadata["precision"] == "float32"
        video = FrameStore(frames).video(video_id)
        images = video.read_frames() if stream == "appearance" else video.read_flow_stacks()
        expected = extract_video_features(network, prepare_images(images, recipe), 4)
        np.testing.assert_array_equal(features, expected.astype(np.float16))
    if stream == "motion":
        assert metadata["flow_method"] == "farneback" and metadata["flow_size"] == [HEIGHT, WIDTH]
    else:
        assert metadata["frame_size"] == [HEIGHT, WIDTH]
    # Features of stored JPEGs are not those of decoded videos: read from the videos (or
    # the .npz flow), every video is extracted again.
    before = {
        video_id: stored.path_for(video_id).stat().st_mtime_ns for video_id in stored.video_ids()
    }
    flow = ["--flow-root", str(frame_dataset["flow"])] if stream == "motion" else []
    assert _extract(frame_dataset, store, stream, *flow, "--workers", "0") == 0
    after = {
        video_id: stored.path_for(video_id).stat().st_mtime_ns for video_id in stored.video_ids()
    }
    assert all(after[video_id] != before[video_id] for video_id in before)
    source = "video" if stream == "appearance" else "flow_store"
    assert stored.read_metadata(stored.video_ids()[0])["image_source"] == source


def test_files_without_an_image_source_count_as_decoded_videos(tmp_path):
    store = FeatureStore(tmp_path)
    store.write("A/v", np.ones((2, 3)), {"stream": "appearance", "frame_indices": [0, 1]})
    older = {"image_source": "video"}
    assert store.is_complete("A/v", {"image_source": "video"}, defaults=older)
    assert not store.is_complete("A/v", {"image_source": "frames"}, defaults=older)
    assert not store.is_complete("A/v", {"image_source": "video"})


def test_videos_missing_from_the_frame_store_stop_before_any_work(frame_dataset, tmp_path, capsys):
    empty = tmp_path / "empty_frames"
    store = tmp_path / "store"
    assert _extract(frame_dataset, store, "appearance", "--frame-root", str(empty)) == 2
    error = capsys.readouterr().err
    assert "4 of the 4 videos" in error and str(empty / "Alpha") in error
    assert "python -m training.extract_frames" in error
    assert _extract(frame_dataset, store, "motion", "--frame-root", str(empty)) == 2
    assert "training.compute_flow --layout frames" in capsys.readouterr().err
    assert not FeatureStore(store).video_ids()


def test_an_interrupted_run_resumes_to_the_same_features(frame_dataset, tmp_path, monkeypatch):
    frames = ["--frame-root", str(frame_dataset["frames"]), "--workers", "1"]
    reference = tmp_path / "reference"
    assert _extract(frame_dataset, reference, "appearance", *frames) == 0

    # Interrupted (Ctrl-C) after its second video is extracted, then run again: the
    # writes already handed to the writing threads finish, nothing else is written.
    interrupted = tmp_path / "interrupted"
    original = extract_features.extract_streamed_features

    def two_then_stop(*args, **kwargs):
        for count, item in enumerate(original(*args, **kwargs), start=1):
            yield item
            if count == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(extract_features, "extract_streamed_features", two_then_stop)
    assert _extract(frame_dataset, interrupted, "appearance", *frames) not in (0, 1)
    monkeypatch.setattr(extract_features, "extract_streamed_features", original)
    assert len(FeatureStore(interrupted).video_ids()) == 2
    report = extract_features.run(
        extract_features.parse_args(
            [*frame_dataset["split"], "--stream", "appearance", "--store", str(interrupted)]
            + [*TINY_FLAGS, "--height", str(HEIGHT), "--width", str(WIDTH), "--batch-size", "4"]
            + frames
        )
    )
    assert (report.done, report.skipped) == (2, 2)
    expected, resumed = _stored(reference), _stored(interrupted)
    assert list(resumed) == list(expected)
    for video_id in expected:
        np.testing.assert_array_equal(resumed[video_id], expected[video_id])

    # Shards of the run together give the same features.
    sharded = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        assert _extract(frame_dataset, sharded, "appearance", *frames, "--shard", shard) == 0
    for video_id, features in _stored(sharded).items():
        np.testing.assert_array_equal(features, expected[video_id])


def test_frame_store_tasks_are_chunks_read_in_workers(frame_dataset):
    source = ImageSource("frames", "motion", root=str(frame_dataset["frames"]), input_size=32,
                         chunk_images=3)  # fmt: skip
    tasks = list(plan_tasks(source, [("Alpha/v_Alpha_g01_c01", None)]))
    # 12 frames: 11 flows, 7 stacks, in chunks of 3.
    assert [(task.start, task.stop, task.last) for task in tasks] == [
        (0, 3, False), (3, 6, False), (6, 7, True),
    ]  # fmt: skip
    pieces = list(ordered_map(functools.partial(read_crops, source), tasks, workers=1))
    stacks = np.concatenate([piece["images"] for piece in pieces])
    video = FrameStore(frame_dataset["frames"]).video("Alpha/v_Alpha_g01_c01")
    np.testing.assert_array_equal(stacks, prepare_crops := video.read_flow_stacks()[:, 8:40, 16:48])
    assert stacks.dtype == np.uint8 and prepare_crops.shape == (7, 32, 32, 10)
    bad = read_crops(source, ReadTask("Alpha/v_missing", None, 0, 3))
    assert bad["images"] is None and "v_missing" in bad["error"]


DATA_PARALLEL_SCRIPT = """
import json, sys
import keras, numpy as np
from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.training import extract_features

shardings = []
original = keras.distribution.distribute_tensor
def spy(tensor, layout):
    out = original(tensor, layout)
    shardings.append(len(out.sharding.device_set))
    return out
keras.distribution.distribute_tensor = spy

args = json.loads(sys.argv[1])
results = {}
for mode in ("auto", "off"):
    store = f"{args['store']}-{mode}"
    assert extract_features.main([*args["flags"], "--store", store, "--data-parallel", mode]) == 0
    results[mode] = {v: FeatureStore(store).read(v)[0] for v in FeatureStore(store).video_ids()}
bad = extract_features.main([*args["flags"], "--store", args["store"] + "-bad",
                             "--batch-size", "3"])
largest = max(abs(f).max() for f in results["off"].values())
difference = max(abs(results["auto"][v] - results["off"][v]).max() for v in results["off"])
print(json.dumps({"devices": len(keras.distribution.list_devices()), "shardings": shardings,
                  "videos": len(results["auto"]), "difference": float(difference),
                  "largest": float(largest), "bad_status": bad}))
"""


def test_data_parallel_over_two_devices_gives_the_features_of_one(frame_dataset, tmp_path):
    flags = [*frame_dataset["split"], "--stream", "appearance", "--weights", "none"]
    flags += ["--width-multiplier", "0.0625", "--fc-units", "8", "--input-size", "32"]
    flags += ["--height", str(HEIGHT), "--width", str(WIDTH), "--batch-size", "4"]
    flags += ["--workers", "0", "--subset", "test", "--precision", "float32"]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}  # fmt: skip
    arguments = json.dumps({"flags": flags, "store": str(tmp_path / "store")})
    completed = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL_SCRIPT, arguments],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "data parallel over 2 devices" in completed.stdout
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2 and result["videos"] == 2
    assert result["shardings"] and set(result["shardings"]) == {2}  # batches split in two
    assert result["difference"] <= 1e-5 * max(result["largest"], 1.0)
    assert result["bad_status"] == 2  # batch 3 on 2 devices: a clear error
    assert "divisible by the 2 devices" in completed.stderr


@pytest.mark.parametrize("kind", ["video", "flow_store"])
def test_video_and_flow_files_are_read_in_tasks_of_chunks(frame_dataset, kind):
    from temporal_attention.data.crops import center_crop
    from temporal_attention.data.flow_store import FlowStore
    from temporal_attention.data.video import read_video

    stream = "appearance" if kind == "video" else "motion"
    root = None if kind == "video" else str(frame_dataset["flow"])
    source = ImageSource(kind, stream, root=root, input_size=32, height=HEIGHT, width=WIDTH,
                         chunk_images=5)  # fmt: skip
    video_id = "Beta/v_Beta_g02_c01"
    path = frame_dataset["root"] / "UCF-101" / f"{video_id}.avi"
    tasks = list(plan_tasks(source, [(video_id, str(path))]))
    # 12 frames (7 flow stacks) in tasks of 5; the last reads to the end.
    expected_tasks = [(0, 5, False), (5, 10, False), (10, None, True)]
    if kind == "flow_store":
        expected_tasks = [(0, 5, False), (5, None, True)]
    assert [(task.start, task.stop, task.last) for task in tasks] == expected_tasks
    pieces = [read_crops(source, task) for task in tasks]
    assert all(piece["error"] is None for piece in pieces)
    if kind == "video":
        whole = read_video(path, HEIGHT, WIDTH).frames
    else:
        whole = FlowStore(frame_dataset["flow"]).read_stacks(video_id)
    crops = np.concatenate([piece["images"] for piece in pieces])
    np.testing.assert_array_equal(crops, center_crop(whole, 32))
    # Stated too many: the tasks past the end hold no image, the last checks the file.
    beyond = read_crops(source, ReadTask(video_id, str(path), 40, None, last=True))
    assert beyond["error"] is None and len(beyond["images"]) == 0


@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_the_fed_stage_gives_the_serial_host_path_features(
    frame_dataset, tmp_path, monkeypatch, stream
):
    # Decoded videos / the .npz flow store, tasks of 5 images (so a video is several
    # tasks, each read from its start), in this process (a patched class does not reach
    # a worker): the stored features are those of the serial path of before (host
    # preprocessing, per-video batches), bit for bit (float16 store).
    from temporal_attention.data.extraction_feed import ImageSource as Source
    from temporal_attention.data.flow_store import FlowStore
    from temporal_attention.data.video import read_video

    store = tmp_path / "store"
    original = Source.__post_init__

    def small_tasks(self):
        object.__setattr__(self, "chunk_images", 5)
        original(self)

    flow = ["--flow-root", str(frame_dataset["flow"])] if stream == "motion" else []
    monkeypatch.setattr(Source, "__post_init__", small_tasks)
    assert _extract(frame_dataset, store, stream, *flow, "--workers", "0") == 0
    monkeypatch.undo()
    recipe = FeatureRecipe(stream=stream, width_multiplier=0.25, **TINY)
    network = build_extractor(recipe)
    stored = FeatureStore(store)
    assert len(stored.video_ids()) == 4
    for video_id in stored.video_ids():
        if stream == "appearance":
            path = frame_dataset["root"] / "UCF-101" / f"{video_id}.avi"
            images = read_video(path, HEIGHT, WIDTH).frames
        else:
            images = FlowStore(frame_dataset["flow"]).read_stacks(video_id)
        expected = extract_video_features(network, prepare_images(images, recipe), 4)
        features, _ = stored.read(video_id, as_stored=True)
        np.testing.assert_array_equal(features, expected.astype(np.float16))


def test_the_worker_module_does_not_import_keras():
    code = "import sys, data.extraction_feed; print('keras' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert completed.stdout.strip() == "False", completed.stderr[-2000:]
