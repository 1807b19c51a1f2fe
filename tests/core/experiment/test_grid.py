"""An experiment beyond one process: the run list, shards, per-run locks, the report
from whatever exists, parallel runs and submitit's executor give the same runs and the
same report as one unsharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import TINY_FIELDS, TINY_NETWORK, make_toy_dataset
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.errors import OptionError
from fdseg_core.experiment.protocol import ExperimentConfig, grid
from fdseg_core.parallel import in_shard, parse_shard

pytestmark = pytest.mark.slow  # trains, exports or launches processes

FAST = ["--epochs", "1", "--iters-per-epoch", "1", "--patch-size", "16", "16", "8"]
FAST += ["--val-every", "1", "--folds", "2", "--no-progress", "--bootstrap", "100"]
FAST += ["--backbone", TINY_NETWORK["backbone"], "--loss", TINY_NETWORK["loss"]]  # as TINY_FIELDS
GRID = ["--train-sizes", "1", "--fusion", "none,early", "--seeds", "2"]  # 4 runs


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("grid") / "ds", n_cases=4, n_test=1)


def _args(ds, out, *extra):
    return ["experiment", str(ds), "--out", str(out), *GRID, *FAST, *extra]


def _results(out: Path) -> dict[str, list]:
    found = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        found[path.parent.name] = json.loads(path.read_text())["cases"]
    return found


def _table(out: Path) -> str:
    return (out / "table.csv").read_text()


@pytest.fixture(scope="module")
def whole(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "exp"
    r = CliRunner().invoke(cli, _args(ds, out))
    assert r.exit_code == 0, r.output
    assert "trained 4 runs here; every run has its result" in r.output
    return out


def test_the_grid_has_a_fixed_order_and_shards_partition_it():
    config = ExperimentConfig(
        dataset="d", out="o", train_sizes=(1, 2), fusions=("none", "early"), seeds=2
    )
    names = [r.name for r in grid(config)]
    assert names == [
        "n001-none-s0", "n001-early-s0", "n001-none-s1", "n001-early-s1",
        "n002-none-s0", "n002-early-s0", "n002-none-s1", "n002-early-s1",
    ]  # fmt: skip
    shards = [in_shard(grid(config), (k, 3)) for k in (1, 2, 3)]
    assert sorted(r.index for s in shards for r in s) == list(range(8))  # every run, once
    assert [r.index for r in shards[1]] == [1, 4, 7]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(OptionError, match=f"shard '{bad}': expected K/N"):
            parse_shard(bad)


def test_list_shows_every_run_with_its_index_and_state(ds, whole, tmp_path):
    r = CliRunner().invoke(cli, _args(ds, tmp_path / "new", "--list"))
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "0\tn001-none-s0\tto run" and len(lines) == 4
    assert not (tmp_path / "new").exists()  # listing writes nothing
    r = CliRunner().invoke(cli, _args(ds, whole, "--list"))
    assert all(line.endswith("\tfinished") for line in r.output.strip().splitlines())


def test_every_shard_then_report_only_reproduces_the_unsharded_runs_and_report(ds, whole, tmp_path):
    out = tmp_path / "sharded"
    for k in (1, 2, 3):
        r = CliRunner().invoke(cli, _args(ds, out, "--shard", f"{k}/3"))
        assert r.exit_code == 0, r.output
        if k < 3:
            assert "runs have no result yet" in r.output
    assert _results(out) == _results(whole)  # the same runs, the same Dice per case
    r = CliRunner().invoke(cli, _args(ds, out, "--report-only"))
    assert r.exit_code == 0 and "trained 0 runs here" in r.output
    assert _table(out) == _table(whole)


def test_report_only_says_how_many_runs_are_missing(ds, tmp_path):
    out = tmp_path / "half"
    assert CliRunner().invoke(cli, _args(ds, out, "--shard", "1/2")).exit_code == 0
    r = CliRunner().invoke(cli, _args(ds, out, "--report-only"))
    assert r.exit_code == 0
    assert "2 of 4 runs have no result yet: n001-early-s0" in (out / "table.md").read_text()


def test_two_concurrent_processes_never_train_a_run_twice(ds, tmp_path):
    out = tmp_path / "race"
    fdseg = Path(sys.executable).parent / "fdseg"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [str(fdseg), *_args(ds, out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = [int(o.split("trained ")[-1].split(" runs")[0]) for o in outputs]
    assert sum(trained) == 4, outputs  # each run trained by one of them
    for run in (out / "runs").iterdir():
        rows = (run / "metrics.jsonl").read_text().splitlines()
        assert len(rows) == 1  # one epoch: trained once, not twice
    assert not (out / ".locks").exists()


def test_parallel_jobs_give_the_same_result_files(ds, whole, tmp_path):
    out = tmp_path / "jobs"
    r = CliRunner().invoke(cli, _args(ds, out, "--jobs", "2"))
    assert r.exit_code == 0, r.output
    assert sorted(_results(out)) == sorted(_results(whole))


def test_the_submitit_local_executor_runs_the_array(ds, whole, tmp_path):
    from fdseg_core.experiment.slurm import SlurmOptions, submit_experiment

    config = ExperimentConfig(
        dataset=str(ds),
        out=str(tmp_path / "slurm"),
        train_sizes=(1,),
        fusions=("none", "early"),
        seeds=2,
        training=TINY_FIELDS,  # the CLI's FAST options
        n_resamples=100,
    )
    lines = []
    options = SlurmOptions(local=True, time_min=30, poll_s=0.5)
    done = submit_experiment(config, options, say=lines.append)
    assert len(done.submitted) == 4 and len(done.job_ids) == 4 and done.local
    # a line each time the counts changed, the last one with every run finished
    assert lines[-1] == "runs: 0 pending, 0 running, 4 finished, 0 failed"
    assert all(line.startswith("runs: ") for line in lines)
    # nothing stray: submitit's folders hold the jobs' logs, no empty folder is left
    stray = [p for p in (tmp_path / "slurm").rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert stray == []
    assert sorted(_results(tmp_path / "slurm")) == sorted(_results(whole))
    assert done.report is not None and done.report.missing == ()
    assert len(done.report.results) == 4


def test_an_experiment_draws_each_size_independently_unless_told_to_nest(tmp_path):
    config = ExperimentConfig(dataset="ds", out=str(tmp_path), train_sizes=(2, 4), seeds=1)
    assert config.run_config(2, "none", 0).case_draw == "independent"
    nested = ExperimentConfig(
        dataset="ds", out=str(tmp_path), train_sizes=(2, 4), seeds=1, case_draw="nested"
    )
    assert nested.run_config(4, "early", 0).case_draw == "nested"
    with pytest.raises(ValueError, match="case_draw must be one of"):
        ExperimentConfig(dataset="ds", out=str(tmp_path), case_draw="sometimes")
    with pytest.raises(ValueError, match="set by the experiment"):
        ExperimentConfig(dataset="ds", out=str(tmp_path), training={"case_draw": "nested"})


def test_report_only_with_a_target_effect_prints_the_seeds_each_cell_needs(ds, tmp_path):
    from fdseg_core.experiment.report import seeds_table, summarise
    from fdseg_core.experiment.results import load_run

    out = tmp_path / "exp"
    r = CliRunner().invoke(cli, _args(ds, out))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, _args(ds, out, "--report-only", "--target-effect", "2"))
    assert r.exit_code == 0, r.output
    assert "seeds needed to detect a true mean gain of +2 points" in r.output
    results = [load_run(run)[0] for run in sorted((out / "runs").iterdir())]
    (row,) = seeds_table(summarise(results, methods=["none", "early"], n_resamples=100), 0.02)
    expected = row.seeds_needed if row.seeds_needed is not None else "more than 10000"
    assert f"1 cases, early: {expected} (between-seed SD" in r.output
    assert json.loads((out / "experiment.json").read_text())["margin"] == 0.01


def test_slurm_without_slurm_exits_2_in_one_line_and_writes_nothing(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch anywhere
    out = tmp_path / "exp"
    r = CliRunner().invoke(cli, _args(ds, out, "--slurm"))
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "sbatch is not on PATH" in lines[0]
    assert "--slurm-local" in lines[0]
    assert not out.exists()


STAND_IN = """#!/bin/sh
# a stand-in for SLURM's {name}: records what it is asked, answers as SLURM does
echo "{name} $*" >> "{log}"
case "{name}" in
  sbatch) cp "$1" "{script}"; echo "Submitted batch job 4242" ;;
  sacct) echo "JobID|State|NodeList" ;;
esac
"""


def test_slurm_submits_the_array_it_says_with_the_resources_asked(ds, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, script = tmp_path / "calls.log", tmp_path / "job.sh"
    for name in ("sbatch", "squeue", "sacct", "srun", "scancel"):
        path = bin_dir / name
        path.write_text(STAND_IN.format(name=name, log=log, script=script))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "exp"
    options = ["--slurm", "--no-wait", "--slurm-mem", "16", "--slurm-time", "30"]
    options += ["--slurm-partition", "gpu", "--slurm-account", "lab", "--slurm-qos", "high"]
    options += ["--slurm-parallelism", "2", "--slurm-cpus", "4", "--slurm-gpus", "1"]
    r = CliRunner().invoke(cli, _args(ds, out, *options))
    assert r.exit_code == 0, r.output
    assert "submitted 4 runs as job array 4242" in r.output
    calls = log.read_text()
    assert calls.count("sbatch ") == 1  # one array, not four jobs
    text = script.read_text()
    for line in (
        "#SBATCH --array=0-3%2",
        "#SBATCH --mem=16GB",
        "#SBATCH --time=30",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=high",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
    ):
        assert line in text, text
    assert (out / "experiment.json").is_file()  # the runs' record, for --report-only


def test_list_refuses_a_training_size_the_dataset_cannot_supply(ds, tmp_path):
    args = ["experiment", str(ds), "--out", str(tmp_path / "exp"), "--train-sizes", "50"]
    r = CliRunner().invoke(cli, [*args, *FAST, "--list"])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        "Error: --train-sizes 50: fold 0 holds only 2 training cases"
    )
