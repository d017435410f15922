"""The README's model.fit example runs as written, and the README and docs/ point only at
things that exist: links, images, `python -m` modules, project paths, dotted names.

Each check reads README.md and every docs/*.md page. Code is found as fenced blocks
(```), indented blocks (lines starting with 4 spaces) and inline spans (`...`).
"""

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 260  # the front page: results and how to run, details in docs/

# Top-level folders of the project: a path in code that starts with one of these is a
# project path and must exist.
PROJECT_DIRS = ("data", "models", "training", "evaluation", "figures", "tests", "docs")
PROJECT_PACKAGES = ("data", "models", "training", "evaluation", "figures", "tests")
# Written by the stages, never committed: paths under them are not checked.
OUTPUT_DIRS = ("evaluation/results/",)
# `python -m` targets that are not modules of this repository.
EXTERNAL_MODULES = {"pytest", "pip", "venv"}

FENCE = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PROJECT_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(PROJECT_DIRS) + r")/[\w./<>*{}-]*)")
DOTTED_NAME = re.compile(r"^((?:" + "|".join(PROJECT_PACKAGES) + r")(?:\.\w+)+)")
PYTHON_M = re.compile(r"python -m ([A-Za-z_][\w.]*)")
MAIN_BLOCK = re.compile(r"^if __name__ == [\"']__main__[\"']:", flags=re.MULTILINE)


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_model_fit_example_runs_as_written():
    example = python_blocks()[0]
    assert "model.fit" in example
    assert len(example.strip().splitlines()) <= 10
    namespace = {}
    exec(compile(example, str(README), "exec"), namespace)
    assert namespace["probabilities"].shape == (64, 30, 5)
    assert namespace["sample_scores"].shape == (64, 5)
    assert namespace["attention"].shape == (64, 30, 30)


# === Reading Markdown ===


def prose(text: str) -> str:
    """`text` without code: fenced blocks, indented blocks and inline spans removed."""
    text = FENCE.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return INLINE_CODE.sub("", text)


def code(text: str) -> list[str]:
    """The code of `text`: fenced blocks, indented lines and inline spans."""
    blocks = FENCE.findall(text)
    outside = FENCE.sub("", text)
    indented = [line for line in outside.splitlines() if line.startswith("    ")]
    return [*blocks, *indented, *INLINE_CODE.findall("\n".join(prose_lines(outside)))]


def prose_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("    ")]


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings of `text`: lower case, punctuation dropped,
    spaces to hyphens, `-1`, `-2` ... on repeats."""
    anchors, seen = set(), {}
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


# === Checks ===


def broken_links(page: Path) -> list[str]:
    """Links and images of `page` (outside code) whose file does not exist, or whose
    `#anchor` is no heading of the target page. Links with a scheme (https:, mailto:)
    are not followed."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{relative(page)}: {target} (no such file)")
        elif anchor and destination.suffix == ".md":
            if anchor not in heading_anchors(destination.read_text()):
                broken.append(f"{relative(page)}: {target} (no heading #{anchor})")
    return broken


def missing_modules(page: Path) -> list[str]:
    """`python -m X` anywhere in `page` where X is neither a command-line module of
    this repository (`X.py` with an `if __name__ == "__main__":` block, or a package
    with `__main__.py`) nor one of EXTERNAL_MODULES. A placeholder
    (`python -m training.<stage>`) needs its package (`training/__init__.py`)."""
    missing = []
    for name in sorted(set(PYTHON_M.findall(page.read_text()))):
        if name.endswith("."):
            if not (ROOT / Path(*name.rstrip(".").split(".")) / "__init__.py").is_file():
                missing.append(f"{relative(page)}: python -m {name}... (no such package here)")
            continue
        if name.split(".")[0] in EXTERNAL_MODULES:
            if importlib.util.find_spec(name) is None:
                missing.append(f"{relative(page)}: python -m {name} (not installed)")
            continue
        path = ROOT / Path(*name.split("."))
        if (path / "__main__.py").is_file():
            continue
        if not path.with_suffix(".py").is_file():
            missing.append(f"{relative(page)}: python -m {name} (no such module here)")
        elif not MAIN_BLOCK.search(path.with_suffix(".py").read_text()):
            missing.append(f"{relative(page)}: python -m {name} (a module without a CLI)")
    return missing


def missing_paths(page: Path) -> list[str]:
    """Project paths in the code of `page` that do not exist.

    A project path is any `<dir>/...` in code (inline spans, fenced or indented
    blocks) where <dir> is a top-level folder of the project (PROJECT_DIRS) and is not
    part of a longer path (`runs/demo/figures/x` and `../shared/data/x` are not project
    paths). Outputs of the stages are exempt: paths under runs/, flow/, convnets/,
    features/, predictions/ (none of them a project folder) and under OUTPUT_DIRS
    (evaluation/results/). A path with a placeholder or glob (`<stream>`, `*`, `{a,b}`)
    is checked up to the folder before it.
    """
    missing = []
    for snippet in code(page.read_text()):
        for path in PROJECT_PATH.findall(snippet):
            path = path.rstrip(".")
            if path.startswith(OUTPUT_DIRS):
                continue
            checked = re.split(r"[<*{]", path)[0]
            if checked != path:
                checked = checked.rsplit("/", 1)[0]
            if not (ROOT / checked).exists():
                missing.append(f"{relative(page)}: {path}")
    return missing


def _resolves(dotted: str) -> bool:
    """Whether `a.b.c` is a module, or an attribute (or dataclass field) of one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            fields = (
                {f.name for f in dataclasses.fields(found)}
                if (dataclasses.is_dataclass(found) and isinstance(found, type))
                else set()
            )
            if hasattr(found, attribute):
                found = getattr(found, attribute)
            elif attribute in fields:
                found = None  # a field without a class-level default: nothing further
            else:
                return False
        return True
    return False


def unresolved_names(page: Path) -> list[str]:
    """Inline spans that begin with a dotted name of a project package
    (`data.key_frames.read_key_frames`, `training.runs.Run`) that does not import."""
    spans = INLINE_CODE.findall("\n".join(prose_lines(FENCE.sub("", page.read_text()))))
    names = {match.group(1) for span in spans if (match := DOTTED_NAME.match(span))}
    return [f"{relative(page)}: {name}" for name in sorted(names) if not _resolves(name)]


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_links_and_images_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_python_m_modules_exist(page):
    assert missing_modules(page) == []


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_project_paths_in_code_exist(page):
    assert missing_paths(page) == []


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_dotted_project_names_import(page):
    assert unresolved_names(page) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in LINK.findall(prose(README.read_text()))
    }
    assert [relative(page) for page in PAGES[1:] if page.resolve() not in linked] == []


def test_docs_pages_named_in_python_files_exist():
    """Comments and docstrings of the project's .py files point at docs/ pages that exist."""
    named = {
        (relative(path), page)
        for package in PROJECT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for page in re.findall(r"(?<![\w/])docs/[\w-]+\.md", path.read_text())
    }
    assert sorted((path, page) for path, page in named if not (ROOT / page).is_file()) == []


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= MAX_README_LINES
