"""The README's model.fit example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
