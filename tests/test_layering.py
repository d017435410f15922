"""The packages' layering, read from the source imports.

Floors, lowest first; a package imports only packages on lower floors (and itself):

    runtime      plumbing: pools, feeds, job records, flags, atomic files, devices
    data         files on disk to arrays; of runtime only atomic files and job records
    models       the layer, the recogniser, the ConvNets and their feature extractor
                 (keras.ops only: no backend imported)
    training     the stages up to a trained model
    figures      plotting only: imports nothing of the project (it takes arrays)
    evaluation   scoring, tables, read-outs, prediction, the demo

`benchmarks/` sits outside the library: it may import any package and none imports it.
No module imports itself back through others (no cycle), whatever the floors allow.

Every `import` and `from ... import` is read, also those inside functions. The project's
modules import each other through the one package `temporal_attention` (what an install
puts into site-packages), never by the bare folder names.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("runtime", "data", "models", "training", "figures", "evaluation")
PACKAGES = (*LIBRARY, "benchmarks")
NAMESPACE = "temporal_attention"
ALLOWED = {
    "runtime": set(),
    "data": {"runtime"},
    "models": {"runtime", "data"},
    "training": {"runtime", "data", "models"},
    "figures": set(),
    "evaluation": {"runtime", "data", "models", "training", "figures"},
    "benchmarks": set(PACKAGES),
}
# Pool, feed and flag code: the stages run it, `data/` (files to arrays) never does.
NOT_IN_DATA = ("runtime.batch_jobs", "runtime.process_feed", "runtime.config_flags")


def imported_names(path: Path) -> list[str]:
    """The dotted names `path` imports, also inside functions (`from a import b`: a, a.b)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from data import video` imports the module data.video
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def imported_modules(path: Path) -> set[str]:
    """The project modules (dotted names, without the `temporal_attention.` every import
    starts with) `path` imports, also inside functions."""
    found = set()
    for name in imported_names(path):
        name = name.removeprefix(NAMESPACE + ".") if name.startswith(NAMESPACE + ".") else name
        parts = name.split(".")
        if parts[0] in PACKAGES and (ROOT / Path(*parts)).with_suffix(".py").is_file():
            found.add(name)
        elif parts[0] in PACKAGES and len(parts) == 1:
            found.add(name)
    return found


def imported_packages(path: Path) -> set[str]:
    """The top-level project packages `path` imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py"
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` (a list of nodes, the first repeated at the end), or []."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        trail.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return [*trail[trail.index(child) :], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = "done"
        trail.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_reader_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "import numpy\n\ndef f():\n    from temporal_attention.evaluation.scoring import x\n"
    )
    assert imported_packages(source) == {"evaluation"}
    assert imported_modules(source) == {"evaluation.scoring"}


def test_the_project_is_imported_through_its_one_package_only(tmp_path):
    """A bare `from models import ...` works in a clone but not in an install, where the
    packages live under temporal_attention/ only."""
    source = tmp_path / "module.py"
    source.write_text("import os\nfrom models.recognizer import x\nimport data.video\n")
    assert bare_imports(source) == ["data.video", "models.recognizer"]
    offending = {
        str(path.relative_to(ROOT)): bare_imports(path)
        for folder in (*PACKAGES, "tests", NAMESPACE)
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def bare_imports(path: Path) -> list[str]:
    """The library modules `path` imports by a bare folder name (`from models.x import`,
    `import data.video`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return sorted(name for name in found if name.split(".")[0] in LIBRARY)


def test_the_cycle_finder_finds_a_cycle_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_higher_one(package):
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_no_module_cycle():
    graph = {
        name: {module for module in imported_modules(path) if module != name}
        for name, path in project_modules().items()
    }
    assert find_cycle(graph) == []


def test_data_imports_no_pool_feed_or_flag_code():
    offending = {
        str(path.relative_to(ROOT)): sorted(
            module for module in imported_modules(path) if module.startswith(NOT_IN_DATA)
        )
        for path in sorted((ROOT / "data").rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_benchmarks_are_imported_by_nothing_and_not_installed():
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in LIBRARY
        for path in (ROOT / package).rglob("*.py")
        if "benchmarks" in imported_packages(path)
    )
    assert importers == []
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == sorted(
        [NAMESPACE, *(f"{NAMESPACE}.{package}" for package in LIBRARY)]
    )
    assert setuptools["package-dir"] == {f"{NAMESPACE}.{package}": package for package in LIBRARY}


def test_evaluation_holds_no_benchmark_or_profiler():
    names = sorted(path.name for path in (ROOT / "evaluation").rglob("*.py"))
    assert [name for name in names if "benchmark" in name or "profile" in name] == []


def private_names_imported(path: Path) -> list[str]:
    """`module.name` for each underscore name `path` imports from a library package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module.removeprefix(NAMESPACE + ".")
            if module.split(".")[0] in LIBRARY:
                found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_benchmarks_use_the_library_s_public_names_only(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("from temporal_attention.data.tvl1 import TVL1Settings, _compiled\n")
    assert private_names_imported(source) == ["data.tvl1._compiled"]
    offending = {
        str(path.relative_to(ROOT)): private_names_imported(path)
        for path in sorted((ROOT / "benchmarks").rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_models_use_keras_ops_only():
    """The method's code runs on every Keras backend: no backend is imported in models/."""
    backends = {"jax", "tensorflow", "torch"}
    offending = {}
    for path in sorted((ROOT / "models").rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        if names & backends:
            offending[str(path.relative_to(ROOT))] = sorted(names & backends)
    assert offending == {}
