"""Experiment tracking in MLflow, through the training callbacks (the mlflow extra).

``fdseg train ... --mlflow [URI]`` (or ``TrainConfig.mlflow``) adds
:class:`MLflowTracking` to a run's callbacks: the configuration is logged as parameters,
every entry of ``metrics.jsonl`` as a metric at its optimiser step, and the curves, the
metrics table, the configuration and the run's log as artifacts when the run ends. The
MLflow run's id is kept in the checkpoints, so a resumed run goes on logging into the
same MLflow run. The runs of an ``fdseg experiment`` share one MLflow experiment, named
after the experiment's folder, and carry its factors (size, method, seed) as tags.

Without a URI (``"local"``) the runs go to a local store beside them, a SQLite database
and an artifact folder in ``OUT/mlruns`` for one run, ``EXPERIMENT/mlruns`` for an
experiment's runs (MLflow's own file store is deprecated). A tracking server that cannot
be reached is a one-line warning, and training goes on without it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from fdseg_core.errors import MissingExtraError
from fdseg_core.train.callbacks import RunView, TrainingCallback
from fdseg_core.train.results import TrainResult

__all__ = ["LOCAL", "MLflowTracking", "log_report", "tracking_target"]

logger = logging.getLogger(__name__)

#: ``TrainConfig.mlflow`` value of the local file store.
LOCAL = "local"
#: Files of a run logged as artifacts when it ends (those that exist).
ARTIFACTS = ("curves.png", "metrics.csv", "metrics.jsonl", "config.json", "train.log")


def tracking_target(uri: str, out: str | Path) -> tuple[str, str, str | None]:
    """The tracking URI, the MLflow experiment name and the artifact location (``None``:
    the server's) of a run in ``out``.

    A run in an experiment's ``runs/`` folder belongs to that experiment (named after its
    folder, with the local store in it for ``"local"``); any other run to the MLflow
    experiment ``"fdseg"`` (its local store in ``OUT/mlruns``)."""
    out = Path(out).resolve()
    in_experiment = out.parent.name == "runs"
    home = out.parent.parent if in_experiment else out
    name = home.name if in_experiment else "fdseg"
    artifacts = None
    if uri == LOCAL:
        store = home / "mlruns"
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        artifacts = (store / "artifacts").as_uri()
    return uri, name, artifacts


def _experiment_id(client: Any, name: str, artifacts: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts)


class MLflowTracking(TrainingCallback):
    """Log a run to MLflow (parameters, metrics per step, artifacts, tags).

    Args:
        uri: A tracking URI (``http://host:5000``, ``file:///path``, ``sqlite:///db``)
            or :data:`LOCAL`.
        tags: More tags for the MLflow run (an experiment's factors).
    """

    def __init__(self, uri: str = LOCAL, tags: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.tags = dict(tags or {})
        self.run_id: str | None = None
        self._client: Any = None
        self._failed = False

    @property
    def name(self) -> str:
        return "mlflow"

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "uri": self.uri}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")

    def _call(self, what: str, fn, *args, _first: bool = False, **kwargs):
        """Call the client; a failure warns once and turns tracking off for the run."""
        if self._failed or (self._client is None and not _first):
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # an unreachable server must not end a training run
            self._failed = True
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            logger.warning(
                f"MLflow at {self.uri} could not {what} ({reason}): training goes on without "
                "tracking"
            )
            return None

    def on_train_start(self, run: RunView) -> None:
        if not run.dist_info.is_main:
            return
        try:
            from mlflow.tracking import MlflowClient  # the mlflow extra, on use
        except ImportError as exc:
            raise MissingExtraError("--mlflow", "mlflow") from exc
        config = run.config
        uri, experiment, artifacts = tracking_target(self.uri, config.out)
        self.uri = uri
        self._client = self._call("be reached", MlflowClient, tracking_uri=uri, _first=True)
        client = self._client
        experiment_id = self._call("be reached", _experiment_id, client, experiment, artifacts)
        if self._failed:
            return
        if self.run_id is not None:  # a resumed run goes on in the same MLflow run
            self._call("resume its run", client.update_run, self.run_id, status="RUNNING")
            return
        tags = {
            "fdseg.fusion": config.fusion,
            "fdseg.backbone": config.backbone,
            "fdseg.layout": config.layout,
            "fdseg.seed": str(config.seed),
            "fdseg.train_cases": str(config.train_cases),
            **self.tags,
        }
        created = self._call(
            "create a run",
            client.create_run,
            experiment_id,
            run_name=Path(config.out).name,
            tags=tags,
        )
        if created is None:
            return
        self.run_id = created.info.run_id
        from mlflow.entities import Param  # the mlflow extra, on use

        params = [Param(k, str(v)[:500]) for k, v in sorted(config.run_dict().items())]
        for start in range(0, len(params), 100):  # MLflow takes 100 parameters a batch
            self._call(
                "log parameters", client.log_batch, self.run_id, params=params[start : start + 100]
            )

    def on_epoch_end(self, run: RunView, row: dict[str, Any]) -> None:
        if self.run_id is None or self._failed:
            return
        from mlflow.entities import Metric  # the mlflow extra, on use

        step = run.epoch * run.steps
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, step)
            for key, value in row.items()
            if key != "epoch"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        ]
        self._call("log metrics", self._client.log_batch, self.run_id, metrics=metrics)

    def on_train_end(self, run: RunView, result: TrainResult) -> None:
        if self.run_id is None or self._failed:
            return
        out = Path(run.config.out)
        for name in ARTIFACTS:
            if (out / name).is_file():
                self._call(
                    "log an artifact", self._client.log_artifact, self.run_id, str(out / name)
                )
        self._call("end its run", self._client.set_terminated, self.run_id)


def log_report(uri: str, experiment_out: str | Path, files: list[Path]) -> None:
    """Log an experiment's report (tables, plots) as the artifacts of an MLflow run named
    ``report`` in the experiment's MLflow experiment; a failure warns in one line."""
    try:
        from mlflow.tracking import MlflowClient  # the mlflow extra, on use
    except ImportError as exc:
        raise MissingExtraError("--mlflow", "mlflow") from exc
    out = Path(experiment_out).resolve()
    uri, name, artifacts = tracking_target(uri, out / "runs" / "report")
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment_id(client, name, artifacts)
        run = client.create_run(experiment_id, run_name="report", tags={"fdseg.kind": "report"})
        for path in files:
            if path.is_file():
                client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id)
    except Exception as exc:  # an unreachable server must not lose the report
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        logger.warning(f"MLflow at {uri} could not take the report ({reason})")
