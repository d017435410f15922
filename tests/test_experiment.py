"""The experiment runner: its config file, its plan, and every stage end to end at a tiny
size; and the choices on validation (`evaluation.selection`)."""

import _thread
import dataclasses
import re
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from temporal_attention.data.synthetic import PRESETS as SYNTHETIC_PRESETS
from temporal_attention.data.synthetic import generate_dataset
from temporal_attention.evaluation import experiment, selection, stage_rates
from temporal_attention.evaluation.experiment import ExperimentConfig, load_config, plan, to_toml
from temporal_attention.runtime.jobs import JobReport, JobResult
from temporal_attention.training.runs import Run
from tests.shell_jobs import ctrl_c_once_written
from tests.synthetic_videos import write_hmdb51_like, write_ucf101_like

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "evaluation" / "experiments").glob("*.toml"))
SUBSET = ROOT.parent / "shared" / "data" / "ucf101_subset"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


SOURCE = '[source]\nvideo_root = "videos"\nsplit_dir = "lists"\n'


# === The config file ===


def test_print_config_reads_back_to_the_same_config_and_comments_every_field(tmp_path):
    config = load_config(write(tmp_path, SOURCE + "[recipes]\npaper = {}\nmix = {mixup = 0.4}\n"))
    text = to_toml(config)
    assert load_config(write(tmp_path, text)) == config
    lines = text.splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"(# )?\w+ = ", line)]
    uncommented = [lines[i] for i in keys if not lines[i - 1].startswith("#")]
    assert uncommented == ["paper = {}", "mix = {mixup = 0.4}"]  # recipes: one comment above
    assert '# feature_layer = "fc1" (derived; set it to change it)' in lines


def test_a_changed_backbone_derives_its_own_layer_and_preprocessing(tmp_path):
    config = load_config(write(tmp_path, SOURCE + '[recipe]\nbackbone = "EfficientNetLite0"\n'))
    assert config.recipe.feature_layer == "avg_pool"
    assert config.recipe.preprocess == "efficientnet_lite"
    assert load_config(write(tmp_path, to_toml(config))) == config


@pytest.mark.parametrize(
    "text, named",
    [
        (SOURCE + "epochs = 3\n", "unknown or runner-set keys ['epochs']"),
        (SOURCE + '[train]\nstream = "motion"\n', "['stream']"),
        (SOURCE + "[train]\nunits = -1\n", "units"),
        (
            SOURCE + "[recipes]\nfast = {epoch = 2}\n",
            "[recipes] fast: unknown or runner-set keys ['epoch']",
        ),
        (SOURCE + 'features = ["pretrained"]\n', "features"),
        ("name = 'x'\n", "[source] table with video_root and split_dir"),
        (SOURCE + "splits = [4]\n", "splits"),
        ('train_precision = "bf16"\n' + SOURCE, "Expected train_precision in"),
    ],
)
def test_a_bad_config_is_refused_naming_the_file_and_the_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert named in str(error.value) and str(path) in str(error.value)


def test_the_trainings_take_the_configs_precision(tmp_path):
    config = load_config(write(tmp_path, 'train_precision = "mixed_bfloat16"\n' + SOURCE))
    stage = experiment.train_config(config, "frozen", "paper", 1, "motion", "attention")
    assert stage.precision == "mixed_bfloat16"
    default = experiment.train_config(
        load_config(write(tmp_path, SOURCE)), "frozen", "paper", 1, "motion", "attention"
    )
    assert default.precision == "float32"  # the paper's arithmetic unless asked


def test_a_file_that_is_not_toml_is_named(tmp_path):
    path = write(tmp_path, "[source\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} is not valid TOML")):
        load_config(path)


def _stand_in(config: ExperimentConfig, tmp_path: Path) -> ExperimentConfig:
    """The config on a generated stand-in of its dataset's official layout."""
    if config.source.dataset == "hmdb51":
        videos = {
            "clap": ["a_clap_1.avi", "b_clap_2.avi"],
            "jump": ["a_jump_1.avi", "c_jump_2.avi"],
        }
        video_root, split_dir = write_hmdb51_like(tmp_path / "data", videos, num_frames=4)
    else:
        video_root, split_dir = write_ucf101_like(
            tmp_path / "data", clips_per_class=2, num_frames=4
        )
    return dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, video_root=video_root, split_dir=split_dir),
        work_dir=tmp_path / "work",
        results_dir=tmp_path / "results",
    )


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_each_shipped_config_loads_and_plans(path, tmp_path, capsys):
    config = load_config(path)
    assert config.source.dataset in ("ucf101", "hmdb51")
    if config.source.classes is None:  # the whole dataset: on a stand-in of its layout
        config = _stand_in(config, tmp_path)
    elif not SUBSET.is_dir():
        pytest.skip(f"{SUBSET} not found (the real clips live in ../shared/data)")
    text = plan(config)
    assert "1. frames: 0 of" in text and "tables 1-3" in text
    assert not (config.work_dir).exists()  # a plan does no work


# === Choices on validation ===


def _history(root: Path, name: str, split: int, stream: str, model: str, values) -> Run:
    run = Run(root / name / "ucf101" / f"split{split}" / stream / model)
    run.root.mkdir(parents=True)
    rows = [{"epoch": i, "val_last_steps_accuracy": value} for i, value in enumerate(values)]
    pd.DataFrame(rows).to_csv(run.history_path, index=False)
    return run


def test_choice_is_the_best_mean_validation_accuracy_and_the_first_on_a_tie(tmp_path):
    values = {"paper": (0.5, 0.7), "other": (0.6, 0.6), "third": (0.2, 0.7)}
    candidates = {
        name: {
            (split, stream, "attention"): _history(
                tmp_path, name, split, stream, "attention", [0.1, best]
            )
            for split, best in zip((1, 2), pair, strict=True)
            for stream in ("appearance", "motion")
        }
        for name, pair in values.items()
    }
    table = selection.candidate_table(candidates)
    assert len(table) == 12
    assert selection.choose(table) == "paper"  # 0.6 == 0.6: the first listed
    assert selection.choose(table[table["split"] == 2]) == "paper"  # 0.7, as third: first
    assert selection.choose(table[table["split"] == 1]) == "other"
    del candidates["third"][(2, "motion", "attention")]
    with pytest.raises(ValueError, match="other runs than"):
        selection.choose(selection.candidate_table(candidates))


def test_a_run_without_a_validation_accuracy_is_named(tmp_path):
    run = _history(tmp_path, "paper", 1, "motion", "attention", [])
    with pytest.raises(ValueError, match=re.escape(str(run.root))):
        selection.best_validation_accuracy(run)


# === End to end ===

TINY = """
name = "tiny"
splits = [1]
features = ["finetuned", "frozen"]
extract_batch_size = 16
extract_workers = 0
workers = 1
jit_compile = false
num_figures = 1

[source]
video_root = "{video_root}"
split_dir = "{split_dir}"

[frames]
height = 48
width = 64

[flow]
method = "farneback"
height = 48
width = 64

[recipe]
weights = "none"
input_size = 32
fc_units = 8
width_multiplier = 0.0625

[finetune]
weights = "none"
workers = 0

[spatial]
batch_size = 4
max_iterations = 2
lr_step = 1
crop_size = 32
checkpoint_every = 1

[temporal]
batch_size = 4
max_iterations = 2
lr_step = 1
crop_size = 32
checkpoint_every = 1

[train]
units = 8
num_layers = 1
num_steps = 12
epochs = 2
batch_size = 8
validation_fraction = 0.34

[recipes]
paper = {{}}
slow = {{learning_rate = 0.5}}
"""


@pytest.mark.slow
def test_the_runner_goes_from_videos_to_tables_and_a_rerun_does_nothing(tmp_path, capsys):
    data = generate_dataset(tmp_path / "data", SYNTHETIC_PRESETS["tiny"], progress=False)
    path = write(tmp_path, TINY.format(video_root=data.video_root, split_dir=data.split_dir))
    config = dataclasses.replace(
        load_config(path), work_dir=tmp_path / "work", results_dir=tmp_path / "results"
    )
    result = experiment.run(config)
    results = config.results_dir
    choices = result["choices"]
    assert set(choices["features"]) == {"appearance", "motion"}
    assert set(choices["features"].values()) <= {"finetuned", "frozen"}
    assert choices["recipe"] in ("paper", "slow")
    # Every candidate's validation score is in the results, and the choice beside it.
    features = pd.read_csv(results / "choice_features.csv")
    assert set(features["candidate"]) == {"finetuned", "frozen"} and len(features) == 8
    assert features["validation_accuracy"].between(0, 1).all()
    recipes = pd.read_csv(results / "choice_recipe.csv")
    assert set(recipes["candidate"]) == {"paper", "slow"} and len(recipes) == 8
    for recipe in ("paper", "slow"):
        table1 = pd.read_csv(results / f"tables_{recipe}" / "table1.csv")
        assert "split 1" in table1.to_string()
    assert (results / "chosen_recipe.txt").read_text().strip() == choices["recipe"]
    assert set(pd.read_csv(results / "linear_probe.csv")["stream"]) == {
        "appearance",
        "motion",
        "two-stream",
    }
    assert len(list((results / "figures").glob("*.png"))) == 1
    assert load_config(results / "experiment.toml") == config  # the file that re-makes it
    stage_times = pd.read_csv(results / "stage_times.csv")
    assert len(stage_times) == len(experiment.stages(config))

    # Each stage that worked recorded its rate; a new experiment's plan reads them.
    rates = stage_rates.read_rates(config.work_dir / "rates.json")
    assert {"frames", "flow", "finetune_temporal", "features_motion", "train"} <= set(rates)
    assert rates["features_motion"].unit == "frames" and rates["features_motion"].bytes > 0
    assert rates["features_motion"].bytes_per == "unit"
    # fine-tuning and the trainings write files a network or run, whatever their length
    assert rates["finetune_temporal"].bytes_per == rates["train"].bytes_per == "job"
    assert rates["train"].bytes > 0 and rates["train"].units > 0
    longer = dataclasses.replace(config.temporal, max_iterations=3 * config.temporal.max_iterations)
    fresh = dataclasses.replace(
        config, work_dir=tmp_path / "work2", results_dir=tmp_path / "r2", temporal=longer
    )
    lines = plan(fresh, rates=[config.work_dir / "rates.json"]).splitlines()
    # a short schedule's rate plans a longer one of the same batch, as a rate of its settings
    (temporal,) = [line for line in lines if "fine-tuning the temporal nets" in line]
    assert re.search(r"about \d+ s, .*rates.json\)$", temporal) and "guide" not in temporal
    assert any(
        re.match(
            r" *5\. appearance features: 0 of 2 done; [\d,]+ frames left: about "
            r"\d+ s, [\d.]+ [kMG]?B \(.*rates.json\)",
            line,
        )
        for line in lines
    ), lines
    assert lines[-1].startswith("left: about")

    # Everything is done: the plan says so, and a rerun trains and writes nothing new.
    assert all(line.endswith(": done") for line in plan(config).splitlines()[4:-1])
    models = sorted(config.work_dir.glob("runs/**/model.keras"))
    assert len(models) == 8 + 4 + 4  # candidates, the second recipe, chosen copies
    before = {path: path.stat().st_mtime_ns for path in models}
    capsys.readouterr()
    experiment.run(config)
    assert {path: path.stat().st_mtime_ns for path in models} == before
    assert "--- run" not in capsys.readouterr().out  # no training started

    # The results folder belongs to its config: another experiment is refused.
    other = dataclasses.replace(config, splits=(1, 2))
    with pytest.raises(ValueError, match="records another experiment"):
        experiment.record_config(other)

    # Ctrl-C in the middle of the trainings (once the first run's model is written),
    # then the same command again: the same choices and tables as the run above.
    _stop_resume_and_compare(
        config, tmp_path / "again", "runs", "model.keras", " 7. train", as_command=False
    )


def _interrupt_once_written(work, watch: Path, pattern: str, wait_seconds: float = 300):
    """Runs `work()` in this process and interrupts it as Ctrl-C does (KeyboardInterrupt
    in the main thread) once a file matching `pattern` appears under `watch`."""
    found = threading.Event()

    def watcher():
        deadline = time.monotonic() + wait_seconds
        while not found.is_set() and time.monotonic() < deadline:
            if list(watch.rglob(pattern)):
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            work()
    finally:
        found.set()
        thread.join()


def _stop_resume_and_compare(
    config, folder: Path, watch: str, pattern: str, stage: str, as_command: bool
):
    """Runs `config` again in `folder`, interrupts it with Ctrl-C once a file matching
    `pattern` appears under its work folder's `watch` (`as_command`: the command, as a
    shell job; else `run` in this process), checks that the stage (the plan's line
    starting with `stage`) is part done, runs it again and compares the choices and
    tables with `config`'s. The stages before the trainings start from a copy of
    `config`'s (their own stop and resume are tested stage by stage), so the stop lands in
    the stage under test and only what follows it runs twice."""
    again = dataclasses.replace(config, work_dir=folder / "work", results_dir=folder / "results")
    folder.mkdir()
    for name in ("frames", "flow", "convnets", "features"):
        if (config.work_dir / name).is_dir():
            shutil.copytree(config.work_dir / name, again.work_dir / name)
    path = write(folder, to_toml(again))
    before = plan(again).splitlines()
    start = next(i for i, line in enumerate(before) if line.startswith(stage))
    assert all(line.endswith(": done") for line in before[4:start]), before  # copied, not stale
    assert not before[start].endswith(": done"), before[start]
    if as_command:
        status, err, seconds = ctrl_c_once_written(
            ["evaluation.experiment", str(path)], again.work_dir / watch, pattern, wait_seconds=300
        )
        assert status == 130 and "interrupted" in err, err[-2000:]
        assert seconds < 30
    else:
        _interrupt_once_written(lambda: experiment.run(again), again.work_dir / watch, pattern)
    line = next(line for line in plan(again).splitlines() if line.startswith(stage))
    assert re.search(r": \d+ of \d+ done", line), line  # stopped in the middle of the stage
    experiment.run(again)
    assert experiment.read_choices(again) == experiment.read_choices(config)
    for table in sorted(config.results_dir.glob("tables_*/table*.csv")):
        resumed = again.results_dir / table.relative_to(config.results_dir)
        pd.testing.assert_frame_equal(pd.read_csv(resumed), pd.read_csv(table))
    for choice in ("choice_features.csv", "choice_recipe.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(again.results_dir / choice), pd.read_csv(config.results_dir / choice)
        )


REAL = """
name = "real"
splits = [1]
features = ["frozen"]
extract_batch_size = 32
extract_workers = 0
workers = 1
jit_compile = false
num_figures = 0
probe = false

[source]
video_root = "{video_root}"
split_dir = "{split_dir}"
classes = ["BabyCrawling", "PushUps"]

[frames]
height = 48
width = 64

[flow]
method = "dis"
height = 48
width = 64

[recipe]
weights = "none"
input_size = 32
fc_units = 8
width_multiplier = 0.0625

[train]
units = 8
num_layers = 1
num_steps = 12
epochs = 2
batch_size = 8
validation_fraction = 0.34
"""


# Short clips (56-109 frames): clip c01 of three training groups and of one test group.
REAL_CLIPS = {"BabyCrawling": ((11, 12, 19), 2), "PushUps": ((11, 22, 23), 1)}


def _real_lists(folder: Path, clips=REAL_CLIPS) -> Path:
    """Split 1's lists cut down to a few real clips a class (`REAL_CLIPS`)."""
    lists = SUBSET / "ucfTrainTestlist"
    folder.mkdir(parents=True)
    (folder / "classInd.txt").write_bytes((lists / "classInd.txt").read_bytes())
    train = [
        line
        for line in (lists / "trainlist01.txt").read_text().splitlines()
        for name, (groups, _) in clips.items()
        for group in groups
        if line.startswith(f"{name}/v_{name}_g{group:02d}_c01.avi")
    ]
    test = [
        line
        for line in (lists / "testlist01.txt").read_text().splitlines()
        for name, (_, group) in clips.items()
        if line.startswith(f"{name}/v_{name}_g{group:02d}_c01.avi")
    ]
    assert len(train) == 3 * len(clips) and len(test) == len(clips)
    (folder / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (folder / "testlist01.txt").write_text("\n".join(test) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not SUBSET.is_dir(), reason=f"no real clips at {SUBSET}")
def test_the_runner_on_real_clips_stopped_and_resumed_makes_the_same_tables(tmp_path):
    split_dir = _real_lists(tmp_path / "lists")
    text = REAL.format(video_root=SUBSET / "UCF-101", split_dir=split_dir)
    config = dataclasses.replace(
        load_config(write(tmp_path, text)),
        work_dir=tmp_path / "work",
        results_dir=tmp_path / "results",
    )
    experiment.run(config)
    table1 = pd.read_csv(config.results_dir / "tables_paper" / "table1.csv")
    assert "split 1" in table1.to_string()
    # Ctrl-C once the first training has finished an epoch, then the same command again.
    # (Its motion features, 8 tiny videos, take under a second: a Ctrl-C sent once their
    # first file shows can land after the stage on a loaded machine; the 4 trainings
    # take some 12 s.)
    _stop_resume_and_compare(
        config, tmp_path / "again", "runs", "history.csv", " 5. train", as_command=True,
    )  # fmt: skip


def test_a_rate_of_the_same_settings_and_machine_is_taken_and_another_is_only_a_guide(tmp_path):
    def rate(seconds, machine, backbone):
        return stage_rates.Rate(seconds, 10.0, 100, "frames", machine, {"backbone": backbone})

    path = tmp_path / "rates.json"
    stage_rates.record_rate(path, "features", rate(2.0, "16 cores, H100", "VGG16"))
    stage_rates.record_rate(path, "flow", rate(3.0, "2 cores", "VGG16"))
    other = stage_rates.read_rates(path)
    assert other["features"].seconds == 2.0 and other["features"].source == str(path)
    here = {"features": rate(1.0, "2 cores", "EfficientNetLite0")}
    chosen, note = stage_rates.choose("features", {"backbone": "VGG16"}, "2 cores", [here, other])
    assert chosen.seconds == 2.0 and note == "a guide only: measured on 16 cores, H100"
    chosen, note = stage_rates.choose("features", {"backbone": "ResNet"}, "2 cores", [here, other])
    assert chosen.seconds == 1.0 and note == "a guide only: measured with other backbone"
    assert stage_rates.choose("flow", {"backbone": "VGG16"}, "2 cores", [other]) == (
        other["flow"],
        "",
    )
    assert stage_rates.choose("frames", {}, "2 cores", [here, other]) == (None, "")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a rates record"):
        stage_rates.read_rates(path)


def test_a_rate_keeps_the_stages_start_apart_from_the_time_a_unit_takes():
    # 10 s of start (nothing done at the readings of 5 and 10 s), then 200 units in 10 s
    samples = [(0.0, 0.0), (5.0, 0.0)] + [(10.0 + s, 20.0 * s) for s in range(11)]
    assert stage_rates.steady_rate(samples, took=20.0, worked=200) == (10.0, 0.05)
    # no progress before the end: the stage's seconds over its units
    assert stage_rates.steady_rate([(0.0, 0.0), (5.0, 0.0)], took=8.0, worked=4) == (0.0, 2.0)
    # a first progress of over a tenth of the work (4 runs at once, one finished): units
    # too coarse to tell the start from work done meanwhile
    coarse = [(0.0, 0.0), (50.0, 0.0), (55.0, 30.0), (60.0, 120.0)]
    assert stage_rates.steady_rate(coarse, took=60.0, worked=120) == (0.0, 0.5)

    rate = stage_rates.Rate(0.5, 3.0, 20, "frames", "m", start=10.0)
    assert rate.estimate(100) == (60.0, 300.0)  # the start once, then 100 units
    per_job = dataclasses.replace(rate, bytes=1e6, bytes_per="job")
    assert per_job.estimate(100, jobs=3) == (60.0, 3e6)  # disk by job, not by unit

    # the readings, taken in a thread while the work runs
    counter = {"done": 5.0}
    with stage_rates.Progress(lambda: counter["done"], every=0.01) as progress:
        for _ in range(5):
            time.sleep(0.03)
            counter["done"] += 1
        time.sleep(0.03)
    assert progress.samples[0] == (0.0, 0.0)  # relative to what was done at the start
    values = [value for _, value in progress.samples]
    assert values == sorted(values) and values[-1] == 5.0 and progress.total() == 5.0
    times = [seconds for seconds, _ in progress.samples]
    assert times == sorted(times) and len(times) > 5

    # a slow reading (a large store's state) is taken less often: 20 times its duration
    def slow():
        time.sleep(0.02)
        return counter["done"]

    with stage_rates.Progress(slow, every=0.001, first=0.0) as progress:
        time.sleep(0.5)
    assert len(progress.samples) <= 3  # the start and at most one reading a 0.4 s or so
    assert progress.samples[0] == (0.0, 0.0)


def test_a_stage_with_failures_stops_the_runner_naming_them():
    report = JobReport()
    report.add(JobResult("Punch/v_Punch_g01_c01", "done"))
    experiment._check_report("frames", report)  # nothing failed: goes on
    for index in range(12):
        report.add(JobResult(f"Punch/v_Punch_g{index:02d}_c02", "failed", "truncated video"))
    with pytest.raises(experiment.StageFailed) as error:
        experiment._check_report("frames", report)
    message = str(error.value)
    assert message.startswith("frames: 12 failed:\n  Punch/v_Punch_g00_c02: truncated video")
    assert "... and 2 more" in message and "run the same command again" in message
