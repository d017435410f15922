"""The packages' layering, read from the source imports.

    data, models      import neither training, evaluation nor figures
    training          imports neither evaluation nor figures
    figures           imports only data and models (plotting takes arrays)
    evaluation        may import everything below it

Every `import` and `from ... import` is read, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "models", "training", "evaluation", "figures")
FORBIDDEN = {
    "data": {"training", "evaluation", "figures"},
    "models": {"training", "evaluation", "figures"},
    "training": {"evaluation", "figures"},
    "figures": {"training", "evaluation"},
    "evaluation": set(),
}


def imported_packages(path: Path) -> set[str]:
    """The top-level project packages `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def test_the_reader_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("import numpy\n\ndef f():\n    from evaluation.scoring import x\n")
    assert imported_packages(source) == {"evaluation"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_higher_one(package):
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}
