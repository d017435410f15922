"""The wheel `pip install .` builds: its declared dependencies cover requirements.txt
(whose exact pins, the ones CI installs, fall inside the declared ranges), its extras,
its Python floor, its license and the packages it installs."""

import email
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
def wheel(tmp_path_factory) -> tuple[email.message.Message, list[str]]:
    """(METADATA, file names) of the wheel built from a copy of the project's files."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
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
        return email.message_from_bytes(archive.read(metadata)), names


def test_the_wheel_declares_every_runtime_requirement_in_a_range_holding_its_pin(wheel):
    metadata, _ = wheel
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
    metadata, _ = wheel
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
    for name, pin in _pins("requirements-dev.txt").items():
        if name == "jaxlib":  # comes with jax
            continue
        assert name in dev, f"{name} of requirements-dev.txt is not in the dev extra"
        version = _pinned_version(pin)
        if version is not None:
            assert dev[name].specifier.contains(version, prereleases=True), (name, version)


def test_the_wheel_installs_the_library_packages_and_no_tests(wheel):
    _, names = wheel
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith("-info")}
    assert top == set(PACKAGES)
    assert "models/temporal_attention_lstm.py" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
