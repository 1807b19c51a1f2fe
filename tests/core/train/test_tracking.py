"""MLflow tracking through the training callbacks: a file store, a real ``mlflow server``
on the loopback address (read back with MLflow's own client), resume into the same
MLflow run, and an unreachable server that only warns."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import make_toy_dataset, tiny_args
from click.testing import CliRunner

from fdseg_cli.main import cli

mlflow = pytest.importorskip("mlflow", reason="MLflow is the mlflow extra")
from mlflow.tracking import MlflowClient  # noqa: E402

pytestmark = pytest.mark.slow
FAST = tiny_args(epochs=2, iters=2, fusion=None)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("mlflow") / "ds", n_cases=4, n_test=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on the loopback address, with a SQLite store of its own."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(tracking_uri=uri)
    for _ in range(120):
        try:
            client.search_experiments()
            break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start on the loopback address")
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def test_an_experiment_logs_its_runs_params_metrics_artifacts_and_factors(ds, tmp_path, server):
    out = tmp_path / "exp"
    args = ["experiment", str(ds), "--out", str(out), "--train-sizes", "1,2"]
    args += ["--fusion", "none,late", "--seeds", "1", "--bootstrap", "100", *FAST]
    r = CliRunner().invoke(cli, [*args, "--mlflow", server])
    assert r.exit_code == 0, r.output
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.info.run_name: run for run in runs}
    assert set(by_name) == {
        "n001-none-s0",
        "n001-late-s0",
        "n002-none-s0",
        "n002-late-s0",
        "report",
    }
    run = by_name["n002-late-s0"]
    assert run.data.tags["fdseg.fusion"] == "late" and run.data.tags["fdseg.train_cases"] == "2"
    assert run.data.tags["fdseg.seed"] == "0"
    assert run.data.params["fusion"] == "late" and run.data.params["epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [2, 4]  # epochs of 2 steps
    assert client.get_metric_history(run.info.run_id, "val_dice_mean")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "metrics.csv", "config.json", "train.log"} <= artifacts
    report = {a.path for a in client.list_artifacts(by_name["report"].info.run_id)}
    assert {"table.md", "dice_vs_size.png"} <= report
    assert run.info.status == "FINISHED"


def test_without_a_uri_a_file_store_beside_the_run_and_resume_continues_the_same_run(ds, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run_dir), *tiny_args(epochs=1, iters=2)]
    r = CliRunner().invoke(cli, [*args, "--mlflow"])
    assert r.exit_code == 0, r.output
    store = f"sqlite:///{run_dir / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("fdseg").experiment_id])
    r = CliRunner().invoke(cli, ["train", "--out", str(run_dir), "--resume", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    runs = client.search_runs([client.get_experiment_by_name("fdseg").experiment_id])
    assert [x.info.run_id for x in runs] == [run.info.run_id]  # the same MLflow run
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [2, 4]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "metrics.csv"} <= artifacts
    assert (run_dir / "mlruns" / "artifacts").is_dir()


def test_an_unreachable_server_is_a_one_line_warning_and_training_goes_on(ds, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run_dir), *tiny_args(epochs=1, iters=1)]
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        r = CliRunner().invoke(cli, [*args, "--mlflow", f"http://127.0.0.1:{_free_port()}"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and "training goes on without tracking" in warnings[0]
    assert (run_dir / "best.pt").is_file()
