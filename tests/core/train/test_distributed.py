"""fdseg's launch through torchrun's launcher: how a failed job becomes an exit code."""

from __future__ import annotations

import pytest

from fdseg_core.train.distributed import LaunchResult, launch


def _failing(exitcode: int):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def run(args):
        assert args.nproc_per_node == "2" and args.module and args.training_script == "fdseg_cli"
        assert args.training_script_args == ["train", "ds"]
        failure = ProcessFailure(local_rank=1, pid=123, exitcode=exitcode, error_file="<N/A>")
        raise ChildFailedError("fdseg_cli", {1: failure})

    return run


@pytest.mark.parametrize(("exitcode", "expected"), [(2, 2), (1, 1), (-15, 143), (-9, 137)])
def test_a_failed_rank_becomes_its_exit_code_as_a_shell_reports_it(exitcode, expected, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr("torch.distributed.run.run", _failing(exitcode))
    assert launch(["train", "ds"], 2) == LaunchResult(exit_code=expected, rank=1)


def test_a_launch_needs_two_processes_and_not_to_be_a_rank_already(monkeypatch):
    with pytest.raises(ValueError, match="nproc must be >= 2 to launch several processes, got 1"):
        launch(["train"], 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="nproc=2: this process is already a rank"):
        launch(["train"], 2)
