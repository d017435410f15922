"""atomic_write: the final file appears complete or not at all; temporaries are recognised,
and only a dead writer's are removed; PidLock: one holder, named, a dead one's taken over."""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import temporal_attention.runtime.atomic_files
from temporal_attention.data.npz_files import read_npz, write_npz
from temporal_attention.runtime.atomic_files import (
    LockHeldError,
    PidLock,
    atomic_write,
    is_temp_file,
    remove_stale_temp_files,
    remove_stale_temp_files_in,
    temp_path_for,
)

REPO = Path(__file__).resolve().parents[1]


def test_final_file_appears_only_on_success(tmp_path):
    path = tmp_path / "index.csv"
    with atomic_write(path) as temporary:
        temporary.write_text("a,b\n")
        assert not path.exists()  # nothing under the final name while writing
        assert temporary.parent == tmp_path and is_temp_file(temporary)
    assert path.read_text() == "a,b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["index.csv"]  # no temporary left


def test_an_error_leaves_neither_the_file_nor_a_temporary(tmp_path):
    path = tmp_path / "index.csv"
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path) as temporary:
        temporary.write_text("half a fi")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as temporary:
        temporary.write_text("new, but cut short")
        raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["index.csv"]


def test_a_successful_write_replaces_the_old_file(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text("old\n")
    with atomic_write(path) as temporary:
        temporary.write_text("new\n")
    assert path.read_text() == "new\n"


def test_suffix_is_kept_and_final_name_is_unchanged(tmp_path):
    path = tmp_path / "v_A_g01_c01.avi"
    with atomic_write(path, suffix=".avi") as temporary:
        assert temporary.suffix == ".avi"
        assert temporary.name.startswith(".v_A_g01_c01.avi")
        temporary.write_bytes(b"frames")
    assert path.read_bytes() == b"frames"
    with atomic_write(tmp_path / "plain.txt") as temporary:
        assert temporary.suffix != ".txt"  # without `suffix`, the name ends in the marker
        temporary.write_text("x")


def test_parent_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    with atomic_write(path) as temporary:
        assert temporary.parent.is_dir()
        temporary.write_text("deep")
    assert path.read_text() == "deep"


def test_temporaries_are_unique_and_nothing_written_is_an_error(tmp_path):
    path = tmp_path / "x.npz"
    with atomic_write(path) as first, atomic_write(path) as second:
        assert first != second
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert path.read_bytes() == b"1"  # the outer block finished last
    with pytest.raises(FileNotFoundError, match="Nothing was written"), atomic_write(path):
        pass
    assert path.read_bytes() == b"1"


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_one_output_are_removed(tmp_path):
    path = tmp_path / "x.avi"
    path.write_bytes(b"complete")
    killed = path.with_name(f".x.avi.tmp-{_dead_pid()}-0badf00d.avi")  # left by a killed writer
    killed.write_bytes(b"half a video")
    other = temp_path_for(tmp_path / "y.avi")  # another output's temporary
    other.write_bytes(b"")
    assert is_temp_file(killed) and is_temp_file(other)
    assert not is_temp_file(path) and not is_temp_file(tmp_path / ".hidden")
    assert remove_stale_temp_files(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "x.avi"])


def test_stale_temporaries_of_a_whole_folder_are_removed(tmp_path):
    dead = [tmp_path / f".img_0000{i}.jpg.tmp-{_dead_pid()}-0badf00d" for i in (1, 2)]
    live = temp_path_for(tmp_path / "img_00003.jpg")  # this process: a write in flight
    for path in [*dead, live, tmp_path / "img_00001.jpg", tmp_path / ".hidden"]:
        path.write_bytes(b"x")
    assert remove_stale_temp_files_in(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, "img_00001.jpg", ".hidden"]
    )
    assert remove_stale_temp_files_in(tmp_path / "no such folder") == 0


def test_a_live_writers_temporary_is_kept(tmp_path):
    path = tmp_path / "x.npz"
    live = temp_path_for(path)  # this process is alive: another write of x.npz in flight
    live.write_bytes(b"being written")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other_live = path.with_name(f".x.npz.tmp-{sleeper.pid}-0123abcd")
        other_live.write_bytes(b"being written by another process")
        dead = path.with_name(f".x.npz.tmp-{_dead_pid()}-89abcdef")
        dead.write_bytes(b"left by a killed writer")
        assert remove_stale_temp_files(path) == 1
        assert live.is_file() and other_live.is_file() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _write_many(path: str, seed: int, count: int) -> None:
    values = np.full((64, 64), seed, dtype=np.float32)
    for _ in range(count):
        write_npz(path, {"values": values}, {"writer": seed})


def test_two_processes_writing_one_npz_both_succeed(tmp_path):
    path = tmp_path / "Punch" / "v_Punch_g01_c01.npz"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(path), seed, 150)) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [writer.exitcode for writer in writers] == [0, 0]  # no write failed
    arrays, metadata = read_npz(path)
    assert metadata["writer"] in (1, 2)
    np.testing.assert_array_equal(arrays["values"], np.full((64, 64), metadata["writer"]))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


@pytest.fixture(params=["flock", "exclusive file"])
def lock_kind(request, monkeypatch):
    """PidLock as on Linux and macOS (the kernel's flock), and as without fcntl."""
    if request.param == "exclusive file":
        monkeypatch.setattr(temporal_attention.runtime.atomic_files, "fcntl", None)
    return request.param


def test_a_pid_lock_is_exclusive_names_its_holder_and_is_removed(tmp_path, lock_kind):
    path = tmp_path / "run" / "training.lock"
    with PidLock(path):
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeldError, match=f"held by process {os.getpid()}") as held:
            PidLock(path).acquire()
        assert held.value.pid == os.getpid()
    assert not path.exists()
    with PidLock(path):  # free again
        assert path.is_file()


HOLD_LOCK = (
    "import sys, time; from temporal_attention.runtime.atomic_files import PidLock; "
    "lock = PidLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)"
)


def test_a_lock_held_by_another_process_names_it_and_frees_when_it_is_killed(tmp_path):
    path = tmp_path / "training.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LockHeldError) as held:
            PidLock(path).acquire()
        assert held.value.pid == holder.pid
    finally:
        holder.kill()  # SIGKILL: no clean-up; its pid stays in the file
        holder.wait()
    assert path.read_text() == f"{holder.pid}\n"
    with PidLock(path):  # taken over
        assert path.read_text() == f"{os.getpid()}\n"


def test_a_stale_lock_file_is_taken_over(tmp_path, lock_kind):
    path = tmp_path / "training.lock"
    path.write_text(f"{_dead_pid()}\n")  # left by a killed holder
    with PidLock(path):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()
