"""`temporal-attention STAGE [FLAGS]`: the project's commands under one name.

Each stage is a module with `main(argv)` (`temporal_attention.STAGES`), the same that
`python -m training.train_attention` runs in a clone; `temporal-attention STAGE --help`
gives its flags. The list of stages is read from the modules' files without importing
them, so it prints at once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys

from temporal_attention import STAGES


def summary(module: str) -> str:
    """The first line of `module`'s docstring, read from its file (nothing imported)."""
    spec = importlib.util.find_spec(f"temporal_attention.{module}")
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as source:
        docstring = ast.get_docstring(ast.parse(source.read())) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def usage() -> str:
    lines = ["usage: temporal-attention STAGE [FLAGS]  (STAGE --help: its flags)", "", "stages:"]
    width = max(len(name) for name in STAGES)
    lines += [f"  {name:<{width}}  {summary(module)}" for name, module in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Runs the stage named by `argv[0]` with the rest of `argv`; exits with its status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name = argv[0].replace("-", "_")
    if name not in STAGES:
        print(f"error: no stage {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    from temporal_attention.runtime.config_flags import exit_on_error

    module = importlib.import_module(f"temporal_attention.{STAGES[name]}")
    sys.argv[0] = f"temporal-attention {name}"
    exit_on_error(module.main, argv[1:])
