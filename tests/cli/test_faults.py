"""Faults that lose nothing: a full disk during training or prediction ends in one line
naming the file and leaves every earlier output intact; a folder another run holds is
refused for predict and experiment too."""

from __future__ import annotations

import errno
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch
from builders import make_toy_dataset, model_card, sigterm_after
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.runlock import RunLock, RunLockedError

pytestmark = pytest.mark.slow  # trains, exports or launches processes

TINY = ["--iters-per-epoch", "1", "--patch-size", "16", "16", "8", "--val-every", "1"]
TINY += ["--folds", "2", "--no-progress"]


def _full_for(prefix: str):
    """``open`` for fdseg_core.atomic: files whose name starts with ``prefix`` fill the
    disk after 100 bytes."""

    class Full(io.FileIO):
        def write(self, data):
            if Path(self.name).name.startswith(prefix) and self.tell() + len(data) > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    return Full


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("faults") / "ds", n_cases=3, n_test=2)


def test_a_full_disk_while_training_keeps_the_last_checkpoint(ds, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), *TINY]
    r = CliRunner().invoke(cli, [*args, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    before = (run / "last.pt").read_bytes()
    monkeypatch.setattr("fdseg_core.atomic.open", _full_for(".last.pt"), raising=False)
    r = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume"])
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last == (
        f"Error: could not write {run / 'last.pt'}: no space left on the device "
        "(nothing was replaced)"
    )
    assert "Traceback" not in r.output
    assert (run / "last.pt").read_bytes() == before
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_a_full_disk_while_predicting_keeps_earlier_outputs(ds, tmp_path, monkeypatch):
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), *TINY, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    pred = tmp_path / "pred"
    args = ["predict", str(run / "last.pt"), str(ds), "--out", str(pred), "--no-progress"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    saved = {p.name: p.read_bytes() for p in pred.glob("*.nii.gz")}
    assert len(saved) == 2

    def full_disk(img, filename):  # nibabel writes its own files: fill the disk there
        Path(filename).write_bytes(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full_disk)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and "no space left on the device" in r.output
    assert {p.name: p.read_bytes() for p in pred.glob("*.nii.gz")} == saved
    assert not [p for p in pred.iterdir() if ".tmp" in p.name]
    for data in saved:
        assert nib.load(str(pred / data)).shape == (24, 24, 16)


def test_predict_and_experiment_refuse_a_folder_another_run_holds(ds, tmp_path):
    from fdseg_core.experiment import ExperimentConfig, run_experiment
    from fdseg_core.infer import gather_inputs, predict_ensemble

    held = tmp_path / "held"
    with RunLock(held, command="fdseg predict"):
        model = torch.nn.Conv3d(1, 3, 1)
        meta = model_card(normalization=("none",))
        cases = gather_inputs([ds], 1)
        with pytest.raises(RunLockedError, match="in use by a running fdseg predict"):
            predict_ensemble([(model, meta)], cases, held, progress=False)
        config = ExperimentConfig(dataset=str(ds), out=str(held), train_sizes=(1,), seeds=1)
        with pytest.raises(RunLockedError, match="in use by a running fdseg predict"):
            run_experiment(config, progress=False)
    assert not list(held.glob("*.nii.gz")) and not (held / "experiment.json").exists()


def _mount_tmpfs(target: Path, options: str) -> bool:
    """Mount a tmpfs at ``target`` (root on Linux only); whether it worked."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a file system that is already full: a 300 kB tmpfs filled to the
    last byte where the machine allows a mount, else a patched ``open`` of the run lock
    whose first write finds the disk full."""
    target = tmp_path / "full"
    if _mount_tmpfs(target, "size=300k"):
        try:
            with open(target / "filler", "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 512)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            yield target
        finally:
            subprocess.run(["umount", str(target)], check=False)
        return

    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if "a" in mode or "w" in mode:

            def write(_data):
                raise OSError(errno.ENOSPC, "No space left on device")

            fh.write = write
        return fh

    monkeypatch.setattr("fdseg_core.runlock.open", full_open, raising=False)
    target.mkdir()
    yield target


def _deny_writes(monkeypatch, folder: Path) -> None:
    """Where no read-only mount can be made: ``os.access`` says ``folder`` is read-only."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr("fdseg_core.atomic.os.access", access)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A read-only folder: a read-only tmpfs (root ignores file modes), else a patched
    ``open`` of the run lock that is refused and an ``os.access`` that says so."""
    target = tmp_path / "ro"
    if _mount_tmpfs(target, "size=100k,ro"):
        try:
            yield target
        finally:
            subprocess.run(["umount", str(target)], check=False)
        return

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("fdseg_core.runlock.open", refused, raising=False)
    target.mkdir()
    _deny_writes(monkeypatch, target)
    yield target


def _train(ds, run: Path) -> None:
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), *TINY, "--epochs", "1"])
    assert r.exit_code == 0, r.output


def _predict(run: Path, ds, out: Path):
    args = ["predict", str(run / "last.pt"), str(ds), "--out", str(out), "--no-progress"]
    return CliRunner().invoke(cli, args)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_disk_full_before_the_command_starts_ends_in_one_line(ds, tmp_path, full_disk):
    before = _listing(full_disk)
    r = CliRunner().invoke(
        cli, ["train", str(ds), "--out", str(full_disk / "run"), *TINY, "--epochs", "1"]
    )
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert (
        lines[-1] == f"Error: could not write into {full_disk / 'run'}: no space left on the device"
    )
    assert "Traceback" not in r.output
    assert _listing(full_disk) == before  # no partial lock file, no folder left behind
    # prediction the same way
    run = tmp_path / "run"
    _train(ds, run)
    r = _predict(run, ds, full_disk / "pred")
    assert r.exit_code == 1 and "no space left on the device" in r.output.splitlines()[-1]
    assert _listing(full_disk) == before


def test_a_read_only_output_folder_is_named_as_such(ds, tmp_path, read_only):
    run = tmp_path / "run"
    _train(ds, run)
    r = _predict(run, ds, read_only)
    assert r.exit_code == 2
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: the output folder {read_only} is not writable")
    assert ".fdseg.lock" not in line


def test_a_refused_patch_size_leaves_the_output_folder_as_it_was(ds, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), "--patch-size", "7", "7", "7", "--epochs", "1"]
    args += ["--fusion", "late", "--iters-per-epoch", "1", "--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("Error: --patch-size 7 7 7: axis 0 is 7 voxels")
    assert "below 10 on a band axis" in line and "--beta" in line
    assert not run.exists()
    # a folder that held something keeps exactly that
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert _listing(run) == ["notes.txt"]


def test_torchrun_on_a_folder_holding_a_run_ends_every_rank_with_one_line(ds, tmp_path):
    """Each rank checks the folder before any collective: every rank ends at once, and
    only rank 0 prints its one line. torchrun's own agent then reports the failed ranks
    in its summary, as it does for any rank that exits non-zero (that summary is
    torchrun's; exiting 0 would tell a scheduler that the job succeeded)."""
    run = tmp_path / "run"
    _train(ds, run)
    fdseg = Path(sys.executable).parent / "fdseg"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["--no-python", str(fdseg), "train", str(ds), "--out", str(run), *TINY, "--epochs", "1"]
    cmd += ["--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert output.count("already holds a training run") == 1, output
    # no traceback from fdseg on any rank: torchrun's summary has frames of its own only
    assert "fdseg_core" not in output and "fdseg_cli" not in output, output


def _nproc(ds, run, *extra):
    cmd = [sys.executable, "-m", "fdseg_cli", "train", str(ds), "--out", str(run), *TINY]
    cmd += ["--epochs", "1", "--device", "cpu", "--nproc-per-node", "2", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_nproc_per_node_on_a_folder_holding_a_run_prints_one_line_and_no_traceback(ds, tmp_path):
    """fdseg's own launch (torchrun's launcher, torch.distributed.run) turns a failed rank
    into its exit code: the user sees rank 0's one line and nothing of torchrun's."""
    run = tmp_path / "run"
    _train(ds, run)
    proc = _nproc(ds, run)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert output.strip().splitlines() == [
        f"Error: {run} already holds a training run (last.pt); resume it or choose another "
        "output folder"
    ]


def test_nproc_per_node_trains_on_two_ranks(ds, tmp_path):
    run = tmp_path / "run"
    proc = _nproc(ds, run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # only rank 0 reports
    assert sum(line.startswith("trained ") for line in proc.stdout.splitlines()) == 1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["world_size"] == 2


def test_nproc_per_node_inside_a_torchrun_rank_is_refused(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    r = CliRunner().invoke(
        cli, ["train", str(ds), "--out", str(tmp_path / "r"), "--nproc-per-node", "2"]
    )
    assert r.exit_code == 2
    assert "already a rank of a torchrun job" in r.output
    assert not (tmp_path / "r").exists()


def test_the_launch_passes_every_other_option_on():
    from fdseg_cli.train import _without_option

    argv = ["--debug", "train", "ds", "--nproc-per-node", "2", "--epochs", "3"]
    assert _without_option(argv, "--nproc-per-node") == ["--debug", "train", "ds", "--epochs", "3"]
    assert _without_option(["train", "--nproc-per-node=4"], "--nproc-per-node") == ["train"]


def test_sigterm_in_the_middle_of_validation_exits_143_within_seconds_and_the_run_resumes(
    tmp_path,
):
    """A scheduler's SIGTERM while the phantom-sized validation volumes (80 x 80 x 64) are
    scored: the process saves last.pt and exits 143 well inside SLURM's 30 s grace
    period, and the resumed run validates that epoch again and finishes."""
    ds = make_toy_dataset(tmp_path / "ds", n_cases=6, n_test=0, shape=(80, 80, 64))
    run = tmp_path / "run"
    args = [sys.executable, "-m", "fdseg_cli", "train", str(ds), "--out", str(run)]
    args += ["--epochs", "1", "--iters-per-epoch", "2", "--patch-size", "16", "16", "8"]
    args += ["--val-every", "1", "--folds", "2", "--no-progress"]
    # the run's progress lines: standard output; the signal well inside the first volume
    code, lines, rest, elapsed = sigterm_after(args, "validating on 3 cases", wait_s=1.0)
    assert code == 143, "".join(lines) + rest
    assert elapsed < 10, f"{elapsed:.1f} s from SIGTERM to exit"
    assert "SIGTERM: stopped in the validation after step 2 (epoch 1)" in rest
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and saved["epoch_progress"]["done"] == 2
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fdseg_cli",
            "train",
            "--out",
            str(run),
            "--resume",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and "val_dice_mean" in rows[0]


def test_sizes_the_network_cannot_take_or_memory_cannot_hold_end_before_any_file(ds, tmp_path):
    run = tmp_path / "run"
    base = ["train", str(ds), "--out", str(run), "--epochs", "1", "--fusion", "none"]
    base += ["--iters-per-epoch", "1", "--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, [*base, "--patch-size", "7", "7", "7"])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        "Error: --patch-size 7 7 7: the network takes multiples of 4 x 4 x 4 voxels (axis 0 "
        "is 7); it would pad the rest with zeros: give 8 8 8"
    )
    r = CliRunner().invoke(cli, [*base, "--patch-size", "400", "400", "400"])
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("Error: --patch-size 400 400 400 with --batch-size 2: one training ")
    assert "GiB (measured on the network), more than this machine's available memory" in line
    r = CliRunner().invoke(cli, [*base, "--patch-size", "16", "16", "8", "--memory-gb", "0.001"])
    assert r.exit_code == 2, r.output
    assert "more than the budget of --memory-gb 0.001" in r.output
    assert not run.exists()


def test_evaluate_and_export_into_a_read_only_folder_exit_2_before_the_work(
    ds, tmp_path, read_only
):
    ro_folder = read_only
    run = tmp_path / "run"
    _train(ds, run)
    pred = tmp_path / "pred"
    assert _predict(run, ds, pred).exit_code == 0
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), str(ds / "labelsTs"), "--json", str(ro_folder / "m.json")]
    )
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot write {ro_folder / 'm.json'}: the folder {ro_folder} is not writable"
    )
    assert "internal error" not in r.output and "Dice" not in r.output  # refused up front
    r = CliRunner().invoke(
        cli, ["export", str(run / "last.pt"), "--out", str(ro_folder / "model.onnx"), "--no-check"]
    )
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.output and "internal error" not in r.output


def test_evaluate_makes_the_folders_of_its_outputs_and_prints_its_table_before_writing(
    ds, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    _train(ds, run)
    pred = tmp_path / "pred"
    assert _predict(run, ds, pred).exit_code == 0
    target = tmp_path / "new" / "dir" / "m.json"
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), str(ds / "labelsTs"), "--json", str(target)]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(target.read_text())["summary"]
    # a write that fails after the work (the folder turned read-only meanwhile): exit 1,
    # the user's path named (never a temp file), the table already on the screen

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("fdseg_core.atomic.tempfile.mkstemp", refuse)
    later = tmp_path / "later.json"
    r = CliRunner().invoke(cli, ["evaluate", str(pred), str(ds / "labelsTs"), "--json", str(later)])
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot write {later}: Read-only file system"
    )
    assert "Dice" in r.output and ".tmp" not in r.output


def test_a_phantom_that_fills_the_disk_leaves_no_folder_behind(tmp_path, full_disk):
    before = _listing(full_disk)
    r = CliRunner().invoke(
        cli,
        ["phantom", str(full_disk / "ds"), "--cases", "2", "--shape", "48", "48", "40"]
        + ["--spacing", "3.4"],
    )
    assert r.exit_code == 1, r.output
    assert "no space left on the device" in r.output.strip().splitlines()[-1]
    assert _listing(full_disk) == before
    # the error's traceback holds the file the writer had open: let it go, so that the
    # fixture can unmount the file system
    del r
    gc.collect()
