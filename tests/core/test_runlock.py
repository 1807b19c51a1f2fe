"""One live run per output folder: a second one is refused in one line, a lock left by a
killed run is taken over, and a refused run leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.runlock import LOCK_NAME, RunLock, RunLockedError

HOLD = """
import sys, time
from fdseg_core.runlock import RunLock
lock = RunLock(sys.argv[1], command="fdseg train").acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_run_holds_its_folder(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(
            RunLockedError, match=rf"in use by a running fdseg train \(pid {proc.pid}"
        ):
            RunLock(tmp_path / "run").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    proc = _holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunLock(tmp_path / "run") as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == proc.pid
    with RunLock(tmp_path / "run") as again:  # a finished run leaves no holder behind
        assert again.took_over is None


def test_a_refused_run_leaves_no_folder_behind_and_a_finished_one_no_lock(tmp_path):
    with RunLock(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_NAME).is_file()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "result.txt").write_text("x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["result.txt"]


def test_a_second_train_on_a_live_runs_folder_exits_2_in_one_line(tmp_path):
    from builders import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=0)
    proc = _holder(tmp_path / "run")
    try:
        started = time.monotonic()
        r = CliRunner().invoke(
            cli,
            ["train", str(ds), "--out", str(tmp_path / "run"), "--epochs", "1"]
            + ["--patch-size", "16", "16", "8", "--no-progress"],
        )
        assert r.exit_code == 2
        assert (
            r.output.strip()
            .splitlines()[-1]
            .startswith(
                f"Error: {tmp_path / 'run'} is in use by a running fdseg train (pid {proc.pid}"
            )
        )
        assert time.monotonic() - started < 60  # refused at once, not after training
        assert not (tmp_path / "run" / "last.pt").exists()
    finally:
        proc.kill()
        proc.wait()


def test_shared_holders_coexist_refuse_an_exclusive_one_and_the_last_removes_the_file(tmp_path):
    from fdseg_core.runlock import LOCK_NAME, RunLock, RunLockedError

    folder = tmp_path / "exp"
    first = RunLock(folder, command="fdseg experiment", shared=True).acquire()
    second = RunLock(folder, command="fdseg experiment", shared=True).acquire()
    with pytest.raises(RunLockedError, match="in use by a running fdseg experiment"):
        RunLock(folder, command="fdseg predict").acquire()
    first.release()
    assert (folder / LOCK_NAME).exists()  # the second still holds it
    second.release()
    assert list(folder.iterdir()) == []  # the last one let go: the file went with it
    with RunLock(folder, command="fdseg predict"):
        with pytest.raises(RunLockedError, match="in use by a running fdseg predict"):
            RunLock(folder, command="fdseg experiment", shared=True).acquire()
