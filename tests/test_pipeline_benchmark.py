"""`python -m benchmarks.pipeline_benchmark --tiny` on 6 real clips, so that it cannot rot.

One run of every stage (../shared/data/ucf101_subset, 36x48 frames, 32 px inputs, a
VGG16 of 1/16 the widths) checks the JSON lines: every stage is there, its rates are
positive, the ratio is end to end over device only, and the projections follow from the
rates. The projection's arithmetic and the clip choice are checked without running.
"""

import json
from pathlib import Path

import pytest

from benchmarks import pipeline_benchmark
from benchmarks.pipeline_benchmark import (
    DATASET_SIZES,
    STAGES,
    PaperRecipe,
    choose_clips,
    format_markdown,
    projected_epochs,
    projected_items,
    total_hours,
)
from tests.tvl1_sizes import FLOW_HEIGHT, FLOW_WIDTH

SUBSET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"
needs_clips = pytest.mark.skipif(not SUBSET.is_dir(), reason=f"no real clips at {SUBSET}")
CLASSES = ("BabyCrawling", "Punch", "PushUps")


def test_projection_is_the_papers_recipe():
    recipe = PaperRecipe()
    assert projected_items("finetune_spatial", "ucf101") == 3 * 10_000 * 256
    assert projected_items("finetune_temporal", "hmdb51") == 3 * 30_000 * 256
    assert projected_items("decode", "ucf101") == 2_500_000  # once, for every split
    assert projected_items("extract_appearance", "ucf101") == 3 * 2_500_000
    assert projected_items("extract_motion", "ucf101") == 3 * (2_500_000 - 5 * 13_320)
    size = DATASET_SIZES["ucf101"]
    samples = size.frames * size.train_fraction / 30
    assert projected_items("attention", "ucf101", recipe) == pytest.approx(3 * 4 * 30 * samples)


def test_total_leaves_out_flow():
    records = [
        {"stage": "decode", "projected_hours_ucf101": 1.0, "projected_hours_hmdb51": 0.5},
        {"stage": "flow", "projected_hours_ucf101": 100.0, "projected_hours_hmdb51": 50.0},
        {"stage": "attention", "projected_hours_ucf101": 2.0, "projected_hours_hmdb51": 1.0},
    ]
    assert total_hours(records) == {"ucf101": 3.0, "hmdb51": 1.5}


@needs_clips
def test_clips_are_even_across_classes_and_lists():
    train, test = choose_clips(SUBSET / "ucfTrainTestlist", CLASSES, 96)
    assert len(train) + len(test) == 96 and len(test) == round(96 * 3783 / 13320)
    everything = train + test
    assert [sum(line.startswith(name + "/") for line in everything) for name in CLASSES] == [32] * 3
    assert len(set(everything)) == 96
    train, test = choose_clips(SUBSET / "ucfTrainTestlist", CLASSES, 3)
    assert len(train) == 2 and len(test) == 1


@needs_clips
def test_tiny_run_reports_every_stage(tmp_path, capsys):
    output, markdown = tmp_path / "bench.jsonl", tmp_path / "bench.md"
    pipeline_benchmark.main(
        [
            "--tiny",
            "--video-root", str(SUBSET / "UCF-101"),
            "--split-dir", str(SUBSET / "ucfTrainTestlist"),
            "--output", str(output), "--markdown", str(markdown),
            "--work-dir", str(tmp_path / "work"), "--profile-ms", "20",
        ]
    )  # fmt: skip
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["stage"] for record in records] == list(STAGES)
    for record in records:  # each stage's host threads, sampled while it ran
        profile = record["host_profile"]
        assert profile["interval_s"] == 0.02 and profile["seconds"] > 0
        main = profile["threads"]["MainThread"]
        assert main["samples"] > 0 and sum(place["share"] for place in main["top"]) <= 1 + 1e-9
    extraction = records[STAGES.index("extract_appearance")]["host_profile"]["threads"]
    assert extraction["predict"]["threads"] == 1  # the batch predicted in its own thread
    assert any("streaming.py" in place["where"] for place in extraction["predict"]["top"])
    for record in records:
        assert record["items"] > 0 and record["seconds"] > 0
        assert record["items_per_s"] == pytest.approx(record["items"] / record["seconds"])
        assert record["peak_host_bytes"] > 0
        assert record["argv"] and all(isinstance(word, str) for word in record["argv"])
        assert record["backend"] and record["device"] and record["settings"]["clips"] == 6
        for dataset in DATASET_SIZES:
            hours = record[f"projected_hours_{dataset}"]
            overhead = projected_epochs(record["stage"]) * (record["epoch_overhead_s"] or 0.0)
            expected = (
                projected_items(record["stage"], dataset) / record["items_per_s"] + overhead
            ) / 3600
            assert hours == pytest.approx(expected) and hours > 0
        device = record["device_only_items_per_s"]
        if record["stage"] in ("decode", "flow"):  # CPU stages: no network
            assert device is None and record["ratio"] is None
        else:
            assert device > 0
            assert record["ratio"] == pytest.approx(record["items_per_s"] / device)
        feed = record["feed_only_items_per_s"]
        if record["stage"].startswith(("extract_", "finetune_")):  # the same workers alone
            assert feed > 0
            assert record["ratio_to_feed"] == pytest.approx(record["items_per_s"] / feed)
        else:
            assert feed is None and record["ratio_to_feed"] is None
    # Every frame of the 6 clips was decoded and extracted; a flow pair per frame but one.
    by_stage = {record["stage"]: record for record in records}
    frames = by_stage["decode"]["items"]
    assert by_stage["flow"]["items"] == frames - 6
    assert by_stage["finetune_spatial"]["items"] == 2 * 4  # 2 timed iterations, batch 4
    table = markdown.read_text()
    assert table in capsys.readouterr().out
    assert table.count("\n| ") == len(STAGES) + 2  # the header, the stages, the total
    totals = total_hours(records)
    assert f"| total (without flow) | | | | | | | {totals['ucf101']:,.1f} |" in table
    assert table.count("the feed alone (the same workers") == 4  # fine-tuning, extraction
    assert table.count("where the host threads were, sampled every 20 ms") == len(STAGES)


@needs_clips
def test_tiny_gpu_flow_stage_passes_its_batch_and_compaction(tmp_path):
    """The flow stage with this project's TV-L1: the stage's batch size and compaction
    reach compute_flow, and its device-only rate is measured with them. (8 pairs compacted
    down to 5 leaves no smaller batch, so the plain solver runs: a shorter compilation; the
    frames are tests/tvl1_sizes.py's, a 3-level pyramid.)"""
    output = tmp_path / "bench.jsonl"
    pipeline_benchmark.main(
        [
            "--tiny", "--stages", "decode,flow", "--flow-method", "tvl1_keras", "--clips", "2",
            "--flow-batch-pairs", "8", "--flow-compact-to", "5", "--device-repeats", "2",
            "--height", str(FLOW_HEIGHT), "--width", str(FLOW_WIDTH),
            "--video-root", str(SUBSET / "UCF-101"),
            "--split-dir", str(SUBSET / "ucfTrainTestlist"),
            "--output", str(output), "--work-dir", str(tmp_path / "work"),
        ]
    )  # fmt: skip
    records = [json.loads(line) for line in output.read_text().splitlines()]
    flow = records[-1]
    assert flow["stage"] == "flow"
    words = flow["argv"]
    assert words[words.index("--batch-pairs") + 1] == "8"
    assert words[words.index("--compact-to") + 1] == "5"
    assert flow["device_only_items_per_s"] > 0
    assert flow["ratio"] == pytest.approx(flow["items_per_s"] / flow["device_only_items_per_s"])
    assert flow["opencv_tvl1_items_per_s"] > 0  # the reference on the same pairs, same run
    assert "OpenCV DualTVL1 on a sample of the same pairs" in format_markdown(records)
