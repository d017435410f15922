"""Flags from a stage's config dataclass, and the config back from them."""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from temporal_attention.runtime.config_flags import add_config_arguments, config_from_arguments


@dataclass(frozen=True)
class Settings:
    units: int = 512
    rate: float = 0.5
    classes: tuple[str, ...] | None = None
    batch_norm: bool = False
    bound: float = field(default=20.0, metadata={"flag": False})


@dataclass(frozen=True)
class Stage:
    root: Path
    settings: Settings = Settings()
    weights: tuple[float, float] = field(default=(0.25, 0.75), metadata={"nargs": 2})
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    shuffle: bool = True


PRESETS = {"paper": Settings(), "tiny": Settings(units=8, rate=0.1)}


def parse(argv, presets=None):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_arguments(parser, Stage, presets)
    return config_from_arguments(parser.parse_args(argv), Stage, presets)


def test_defaults_and_nested_fields_as_flags_of_one_level():
    assert parse(["--root", "r"]) == Stage(Path("r"))
    config = parse(
        ["--root", "r", "--units", "4", "--classes", "A,B", "--batch-norm", "--no-shuffle"]
        + ["--weights", "0.5", "0.5", "--mode", "b"]
    )
    assert config == Stage(
        Path("r"),
        Settings(units=4, classes=("A", "B"), batch_norm=True),
        weights=(0.5, 0.5),
        mode="b",
        shuffle=False,
    )


def test_a_preset_fills_its_settings_and_flags_override_it():
    assert parse(["--root", "r"], PRESETS).settings == PRESETS["paper"]
    config = parse(["--root", "r", "--preset", "tiny", "--rate", "0.3"], PRESETS)
    assert config.settings == Settings(units=8, rate=0.3)


def test_required_unknown_and_hidden_fields(capsys):
    with pytest.raises(SystemExit):
        parse([])  # --root has no default
    assert "--root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--root", "r", "--bound", "3"])  # not a flag
    with pytest.raises(argparse.ArgumentError):
        parse(["--root", "r", "--mode", "c"])


def test_two_fields_with_one_flag_name_are_refused():
    @dataclass(frozen=True)
    class Clash:
        settings: Settings = Settings()
        units: int = 3

    with pytest.raises(TypeError, match="--units"):
        add_config_arguments(argparse.ArgumentParser(), Clash)


@pytest.mark.parametrize(
    "module", ["training.train_attention", "evaluation.predict", "evaluation.scoring"]
)
def test_a_user_error_is_one_line_and_exit_status_2(module, tmp_path, monkeypatch, capsys):
    # The module run as `python -m` runs it (its `__main__` block), in this process.
    import runpy
    import sys

    arguments = {
        "training.train_attention": ["--video-root", "x", "--split-dir", "y", "--store", "z"],
        "evaluation.predict": ["missing.avi", "--appearance-run", str(tmp_path)],
        "evaluation.scoring": ["--run", str(tmp_path)],
    }[module]
    monkeypatch.setattr(sys, "argv", [module, *arguments])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert stopped.value.code == 2 and len(errors) == 1, stderr
    assert "Traceback" not in stderr


def test_an_interrupted_command_is_one_line_and_exit_status_130_or_143(capsys):
    from temporal_attention.runtime.config_flags import exit_on_error
    from temporal_attention.runtime.stopping import Terminated

    def stopped(signal_kind):
        def main(argv):
            raise signal_kind()

        return main

    for kind, status in ((KeyboardInterrupt, 130), (Terminated, 143)):
        with pytest.raises(SystemExit) as exited:
            exit_on_error(stopped(kind), [])
        assert exited.value.code == status
        assert capsys.readouterr().err.splitlines() == [
            "interrupted: the files written are complete"
        ]


@dataclass(frozen=True)
class Demo:
    settings: Settings = field(default=Settings(units=64), metadata={"not_flags": ("classes",)})
    seeds: tuple[int, ...] = (0, 1)


def test_nested_settings_start_from_their_default_and_hide_what_the_stage_sets():
    def parse_demo(argv):
        parser = argparse.ArgumentParser(exit_on_error=False)
        add_config_arguments(parser, Demo)
        return config_from_arguments(parser.parse_args(argv), Demo)

    assert parse_demo([]).settings == Settings(units=64)  # the field's default, not the class's
    help_text = argparse.ArgumentParser()
    add_config_arguments(help_text, Demo)
    assert "default: 64" in help_text.format_help()
    assert parse_demo(["--rate", "0.1"]).settings == Settings(units=64, rate=0.1)
    with pytest.raises(SystemExit):
        parse_demo(["--classes", "A,B"])  # set by the stage, not a flag
    # A preset of the nested type still replaces the default instance.
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_arguments(parser, Demo, PRESETS)
    assert config_from_arguments(parser.parse_args(["--preset", "tiny"]), Demo, PRESETS) == Demo(
        PRESETS["tiny"]
    )


def test_help_shows_zero_defaults_and_tuples_as_typed():
    @dataclass(frozen=True)
    class Settings:
        patience: int = 0
        mixup: float = 0.0
        quiet: bool = False
        stride: int | None = None
        weights: tuple[float, ...] = field(
            default=(1 / 3, 2 / 3), metadata={"nargs": 2, "help": "stream weights"}
        )
        classes: tuple[str, ...] = ("A", "B")

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Settings)
    text = " ".join(parser.format_help().split())
    assert "--patience PATIENCE default: 0 " in text and "--mixup MIXUP default: 0 " in text
    assert "stream weights (default: 0.333333 0.666667)" in text
    assert "--classes CLASSES default: A,B" in text
    assert "--quiet " in text and "default: False" not in text and "default: None" not in text


def test_every_flag_of_every_command_has_a_help_text(monkeypatch, capsys):
    from temporal_attention import STAGES

    missing = {}
    original = argparse.ArgumentParser.add_argument

    def recording(self, *args, **kwargs):
        if args and args[0] != "-h" and not kwargs.get("help"):
            missing.setdefault(stage, []).append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    for stage, module in STAGES.items():
        with pytest.raises(SystemExit) as stopped:
            importlib.import_module(f"temporal_attention.{module}").main(["--help"])
        assert stopped.value.code == 0, stage
        assert "usage:" in capsys.readouterr().out, stage
    assert missing == {}


def test_print_config_reads_back_through_config_and_flags_override_it(tmp_path, capsys):
    from temporal_attention.training.train_attention import parse_args

    given = ["--video-root", "v", "--split-dir", "s", "--store", "f", "--epochs", "3"]
    given += ["--mixup", "0.4", "--classes", "A,B", "--precision", "mixed_bfloat16"]
    config = parse_args(given)
    with pytest.raises(SystemExit) as stopped:
        parse_args([*given, "--print-config"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    settings = json.loads(printed)
    assert settings["train"]["epochs"] == 3 and settings["video_root"] == "v"
    (tmp_path / "run.json").write_text(printed)
    assert parse_args(["--config", str(tmp_path / "run.json")]) == config
    toml = tmp_path / "run.toml"
    toml.write_text('video_root = "v"\nsplit_dir = "s"\nstore = "f"\n[train]\nepochs = 5\n')
    from_toml = parse_args(["--config", str(toml), "--epochs", "7"])  # the flag wins
    assert from_toml.train.epochs == 7 and from_toml.video_root == Path("v")
    assert from_toml.train.learning_rate == config.train.learning_rate  # the preset's
    toml.write_text('video_root = "v"\n[train]\nepoch = 5\n')
    with pytest.raises(ValueError, match=r"run\.toml: train\.epoch is not a setting"):
        parse_args(["--config", str(toml)])
