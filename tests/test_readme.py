"""The README's model.fit example runs as written, and the project's Markdown points only
at things that exist: links, images, `python -m` modules, project paths, dotted names.

Links (with their `#anchors`) are checked in every Markdown file of the repository
(`markdown_files`: the README, docs/, the results READMEs and the generated result
tables); the other checks read README.md and every docs/*.md page. Code is found as
fenced blocks (```), indented blocks (lines starting with 4 spaces) and inline spans
(`...`). The README and the results READMEs are kept short.
"""

import dataclasses
import importlib
import importlib.util
import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 200  # the front page: results and how to run, details in docs/
# A results README says what the current numbers are, in under a screen or two.
RESULTS_READMES = ("benchmarks/results/*/README.md", "evaluation/results/*/README.md")
MAX_RESULTS_README_LINES = 60
# Folders whose Markdown is not the project's: tools' caches and environments (every
# hidden folder: .venv, .git, .pytest_cache, ..., and __pycache__), and the top-level
# outputs, never committed: runs/ (the stages') and build/.
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_TOP_LEVEL_DIRS = {"runs", "build"}

# Top-level folders of the project: a path in code that starts with one of these is a
# project path and must exist; a dotted name that starts with a package must import.
PROJECT_PACKAGES = tuple(
    "temporal_attention data models training evaluation runtime benchmarks figures tests".split()
)
PROJECT_DIRS = (*PROJECT_PACKAGES, "docs")
# Written by the stages, never committed: paths under them are not checked.
OUTPUT_DIRS = ("evaluation/results/",)
# `python -m` targets that are not modules of this repository.
EXTERNAL_MODULES = {"pytest", "pip", "venv"}

FENCE = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# `[name]: target` of a reference-style link, and the href / src of an HTML tag.
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", flags=re.MULTILINE)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", flags=re.IGNORECASE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.IGNORECASE)
PROJECT_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(PROJECT_DIRS) + r")/[\w./<>*{}-]*)")
DOTTED_NAME = re.compile(r"^((?:" + "|".join(PROJECT_PACKAGES) + r")(?:\.\w+)+)")
PYTHON_M = re.compile(r"python -m ([A-Za-z_][\w.]*)")
MAIN_BLOCK = re.compile(r"^if __name__ == [\"']__main__[\"']:", flags=re.MULTILINE)


def markdown_files(root: Path = ROOT) -> list[Path]:
    """Every `.md` file under `root`, sorted, outside hidden folders, SKIPPED_DIRS and
    SKIPPED_TOP_LEVEL_DIRS."""
    found = []
    for folder, subfolders, files in os.walk(root):
        skipped = SKIPPED_DIRS | (SKIPPED_TOP_LEVEL_DIRS if Path(folder) == root else set())
        subfolders[:] = [
            name for name in subfolders if not name.startswith(".") and name not in skipped
        ]
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


MARKDOWN_FILES = markdown_files()


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


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading's text: links and images as their text, HTML tags
    dropped, lower case, every character but letters, digits, `_`, `-` and spaces
    dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def headings(text: str) -> list[str]:
    """The headings of `text` outside fenced code: `# ...` lines and underlined ones
    (a line of `===` or `---` under a line of text)."""
    found, previous = [], ""
    for line in FENCE.sub("", text).splitlines():
        if match := re.match(r"^ {0,3}#{1,6}(?:\s+(.*?))?\s*$", line):
            found.append(re.sub(r"\s+#+$", "", match.group(1) or ""))
        elif re.match(r"^ {0,3}(=+|-+)\s*$", line) and previous.strip():
            if not previous.lstrip().startswith(("|", "-", "*", "+", ">")):
                found.append(previous.strip())
        previous = line
    return found


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings of `text` (`github_anchor`), a repeated one
    suffixed `-1`, `-2`, ... as GitHub numbers them."""
    anchors, counts = set(), {}
    for heading in headings(text):
        anchor = base = github_anchor(heading)
        while anchor in anchors:
            counts[base] = counts.get(base, 0) + 1
            anchor = f"{base}-{counts[base]}"
        anchors.add(anchor)
    return anchors


def link_targets(text: str) -> list[str]:
    """Targets of the links and images of `text` outside code: `[..](target)`,
    `![..](target)`, `[name]: target` and HTML `href` / `src`."""
    outside = prose(text)
    return [
        *LINK.findall(outside),
        *LINK_DEFINITION.findall(outside),
        *HTML_LINK.findall(outside),
    ]


def relative(path: Path, root: Path = ROOT) -> str:
    return str(path.relative_to(root))


# === Checks ===


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Links and images of `page` (outside code) that leave the repository `root`, whose
    file does not exist, or whose `#anchor` is no heading of the target Markdown file
    (the page itself for `#anchor` alone). Links with a scheme (https:, mailto:) are not
    followed; `/path` starts at `root`, as on GitHub."""
    broken = []
    for target in link_targets(page.read_text()):
        if SCHEME.match(target) or target.startswith("//"):
            continue
        file_part, _, anchor = target.partition("#")
        file_part, anchor = unquote(file_part), unquote(anchor)
        if not file_part:
            destination = page
        elif file_part.startswith("/"):
            destination = (root / file_part.lstrip("/")).resolve()
        else:
            destination = (page.parent / file_part).resolve()
        where = f"{relative(page, root)}: {target}"
        if not destination.is_relative_to(root.resolve()):
            broken.append(f"{where} (outside the repository)")
        elif not destination.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and destination.suffix == ".md":
            if anchor not in heading_anchors(destination.read_text()):
                broken.append(f"{where} (no heading #{anchor})")
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


@pytest.mark.parametrize("page", MARKDOWN_FILES, ids=relative)
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


@pytest.mark.parametrize(
    "readme",
    sorted(path for pattern in RESULTS_READMES for path in ROOT.glob(pattern)),
    ids=relative,
)
def test_results_readmes_are_short(readme):
    assert len(readme.read_text().splitlines()) <= MAX_RESULTS_README_LINES


GUARANTEES = ROOT / "docs" / "training_and_evaluation.md"
# `tests/test_x.py` (`part`, `part`) in a row of the guarantees table.
CITED_TESTS = re.compile(r"`(tests/test_\w+\.py)`(?: \(([^)]*)\))?")


def missing_cited_tests(text: str, root: Path = ROOT) -> list[str]:
    """`file: part` for each test file, or each unique part of a test's name, that a
    table row of `text` cites and that does not exist (a part must name exactly one test
    of its file; a row that cites no test is reported too)."""
    missing = []
    for row in (line for line in text.splitlines() if line.startswith("| **")):
        cited = CITED_TESTS.findall(row)
        if not cited:
            missing.append(f"a row cites no test: {row[:60]}")
        for file, parts in cited:
            path = root / file
            if not path.is_file():
                missing.append(file)
                continue
            names = re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE)
            for part in re.findall(r"`(\w+)`", parts):
                if sum(part in name for name in names) != 1:
                    missing.append(f"{file}: {part}")
    return missing


def test_every_guarantee_names_tests_that_exist():
    text = GUARANTEES.read_text()
    assert "## What is guaranteed" in text
    assert missing_cited_tests(text.partition("## What is guaranteed")[2]) == []


# === The checks themselves ===


def test_cited_tests_are_found_by_file_and_unique_part(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_one_thing():\n    pass\n")
    table = (
        "| **Good**: ok. | `tests/test_a.py` (`one_thing`) |\n"
        "| **Wrong part**: no. | `tests/test_a.py` (`two_things`) |\n"
        "| **No file**: no. | `tests/test_b.py` |\n"
        "| **No test**: no. | none |\n"
    )
    assert missing_cited_tests(table, tmp_path) == [
        "tests/test_a.py: two_things",
        "tests/test_b.py",
        "a row cites no test: | **No test**: no. | none |",
    ]


def test_markdown_files_are_every_page_of_the_project_and_none_of_the_tools(tmp_path):
    project = [
        "README.md",
        str(Path("docs", "a.md")),
        "benchmarks/results/h200/README.md",
        "evaluation/results/demo/table1.md",
        "evaluation/results/subset/runs/table1.md",
        "figures/notes.md",
    ]
    others = [
        ".venv/lib/site/README.md",
        ".git/x.md",
        ".pytest_cache/README.md",
        "runs/demo/table1.md",
        "data/__pycache__/x.md",
    ]
    for name in project + others:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# A page\n")
    (tmp_path / "figures/notes.txt").write_text("not Markdown")
    assert [relative(path, tmp_path) for path in markdown_files(tmp_path)] == sorted(project)
    assert {README, *PAGES} <= set(MARKDOWN_FILES)


def test_github_anchors_of_headings():
    text = """# Data pipeline: videos to flow, features and samples
## TV-L1 in `keras.ops` (`data.tvl1`, method `tvl1_keras`)
### What the profile found, and what changed (one H200 machine, 2026-12-04) ###
## Compiling once for many runs: `--compile-cache` (JAX)
## See [the flow store](#the-flow-store)
## Results
## Results
## Results-1
Underlined
----------
```
# not a heading: code
```
    # not a heading: an indented block
"""
    assert heading_anchors(text) == {
        "data-pipeline-videos-to-flow-features-and-samples",
        "tv-l1-in-kerasops-datatvl1-method-tvl1_keras",
        "what-the-profile-found-and-what-changed-one-h200-machine-2026-12-04",
        "compiling-once-for-many-runs---compile-cache-jax",
        "see-the-flow-store",
        "results",
        "results-1",
        "results-1-1",
        "underlined",
    }


def test_broken_links_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide/target.md").write_text("# Target\n\n## The flow store\n## Costs\n## Costs\n")
    (tmp_path / "figure.png").write_bytes(b"")
    page = tmp_path / "README.md"
    good = [
        "[a](guide/target.md)",
        "[b](guide/target.md#the-flow-store)",
        "[c](guide/target.md#costs-1)",
        "![d](figure.png)",
        "[e](#readme-heading)",
        "[f](https://example.com/missing.md#nowhere)",
        "`[g](in-code.md)`",
        '<img src="figure.png">',
    ]
    bad = [
        "[h](guide/target.md#the-frame-store)",
        "[i](guide/target.md#costs-2)",
        "[j](guide/missing.md)",
        "[k](#no-such-heading)",
        "[l]: guide/gone.md",
        '<a href="../outside.md">m</a>',
    ]
    page.write_text("# README heading\n\n" + "\n\n".join(good + bad) + "\n")
    assert broken_links(page, tmp_path) == [
        "README.md: guide/target.md#the-frame-store (no heading #the-frame-store)",
        "README.md: guide/target.md#costs-2 (no heading #costs-2)",
        "README.md: guide/missing.md (no such file)",
        "README.md: #no-such-heading (no heading #no-such-heading)",
        "README.md: guide/gone.md (no such file)",
        "README.md: ../outside.md (outside the repository)",
    ]
