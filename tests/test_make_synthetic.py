"""The synthetic dataset's CLI (training/make_synthetic.py): writes, then skips what is there."""

from __future__ import annotations

from temporal_attention.data.splits import load_ucf101_split
from temporal_attention.training.make_synthetic import main


def test_cli_writes_the_dataset(tmp_path, capsys):
    argv = [
        "--output", str(tmp_path), "--preset", "tiny", "--clips-per-class", "2",
        "--num-groups", "2", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "6 written, 0 already there" in capsys.readouterr().out  # 3 classes x 2 clips
    split = load_ucf101_split(tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist")
    assert (len(split.train), len(split.test)) == (3, 3)
    assert main(argv) == 0
    assert "0 written, 6 already there" in capsys.readouterr().out
