"""The wheel `pip install .` builds: its declared dependencies cover requirements.txt
(whose exact pins, the ones CI installs, fall inside the declared ranges), its extras,
its Python floor, its license, and the one package it installs, which imports and runs
from outside the repository."""

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "data", "models", "training", "evaluation", "figures")
NAMESPACE = "temporal_attention"


def _pins(name: str) -> dict[str, Requirement]:
    """The requirements file's lines (without its `-r` includes), by package name."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def _pinned_version(requirement: Requirement) -> str | None:
    exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
    return exact[0] if exact else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[email.message.Message, list[str], Path]:
    """(METADATA, file names, path) of the wheel built from a copy of the project's files."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in (*PACKAGES, NAMESPACE):
        shutil.copytree(
            ROOT / package,
            source / package,
            ignore=shutil.ignore_patterns("results", "__pycache__", "experiments"),
        )
    built = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(built)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = built.glob("temporal_attention-*.whl")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(metadata)), names, path


def test_the_wheel_declares_every_runtime_requirement_in_a_range_holding_its_pin(wheel):
    metadata, _, _ = wheel
    declared = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    runtime = {canonicalize_name(r.name): r for r in declared if r.marker is None}
    pins = _pins("requirements.txt")
    assert set(runtime) == set(pins)
    for name, pin in pins.items():
        assert runtime[name].specifier, f"{name}: declared without a range"
        version = _pinned_version(pin)
        if version is not None:  # the exact pin CI installs is inside the declared range
            assert runtime[name].specifier.contains(version, prereleases=True), (name, version)
    assert metadata["Requires-Python"] == ">=3.11"  # the pins need 3.11 (keras 3.15, jax 0.10)
    assert metadata["License-Expression"] == "Apache-2.0"


def test_the_wheel_has_gpu_and_dev_extras_holding_the_dev_pins(wheel):
    metadata, _, _ = wheel
    assert set(metadata.get_all("Provides-Extra")) == {"jax-cuda", "tensorflow-cuda", "dev"}
    declared = [Requirement(line) for line in metadata.get_all("Requires-Dist")]

    def extra(name):
        return {
            canonicalize_name(r.name): r
            for r in declared
            if r.marker is not None and r.marker.evaluate({"extra": name})
        }

    assert "cuda12" in extra("jax-cuda")["jax"].extras
    assert "and-cuda" in extra("tensorflow-cuda")["tensorflow"].extras
    dev = extra("dev")
    pins = {**_pins("requirements-dev.txt"), **_pins("requirements-torch-cpu.txt")}
    assert str(pins["torch"].specifier) == "==2.13.0+cpu"  # the CPU build, named
    for name, pin in pins.items():
        if name == "jaxlib":  # comes with jax
            continue
        assert name in dev, f"{name} of requirements-dev.txt is not in the dev extra"
        version = _pinned_version(pin)
        if version is not None:
            assert dev[name].specifier.contains(version, prereleases=True), (name, version)


def test_the_wheel_installs_one_package_and_no_tests(wheel):
    _, names, _ = wheel
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith("-info")}
    assert top == {NAMESPACE}  # no `models`, `data`, ... of its own in site-packages
    subpackages = {name.split("/")[1] for name in names if name.startswith(f"{NAMESPACE}/")}
    assert subpackages == {*PACKAGES, "__init__.py", "__main__.py", "cli.py"}
    assert f"{NAMESPACE}/models/temporal_attention_lstm.py" in names
    assert not [name for name in names if "/tests/" in name or "/benchmarks/" in name]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel[2]) as archive:
        assert (
            "temporal-attention = temporal_attention.cli:main"
            in archive.read(entry_points).decode()
        )


def test_the_installed_package_imports_and_lists_its_stages_outside_the_repository(wheel, tmp_path):
    """The wheel's files alone (unpacked as pip installs them, the repository not on the
    path): the layer and a stage import from there, and `python -m temporal_attention`
    lists the stages."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel[2]) as archive:
        archive.extractall(site)
    environment = {**os.environ, "PYTHONPATH": str(site), "KERAS_BACKEND": "jax"}
    script = (
        "import importlib.util, temporal_attention.models as m, "
        "temporal_attention.training.train_attention as t\n"
        "print(m.TemporalAttentionLSTM.__module__, m.__file__, t.__file__)\n"
        "print([importlib.util.find_spec(n) for n in ('models', 'data', 'training')])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    module, *files = done.stdout.split("\n")[0].split()
    assert module == "temporal_attention.models.temporal_attention_lstm"
    assert all(Path(file).is_relative_to(site) for file in files), files
    assert done.stdout.split("\n")[1] == "[None, None, None]"  # no bare names installed
    listed = subprocess.run(
        [sys.executable, "-m", NAMESPACE, "--help"], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "train_attention" in listed.stdout and "experiment" in listed.stdout
