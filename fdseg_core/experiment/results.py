"""The per-run results of an experiment (``runs/*/result.json``), as typed objects.

:class:`RunScores` is what a comparison of methods reads from a run: where it sits in the
grid (training size, method, seed) and its Dice per test case and class.
:class:`RunResult` adds how the run trained and where its time went; it is the one
reader and writer of ``result.json``, and it reads the results earlier versions wrote
(fields they did not record are ``None``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdseg_core.atomic import atomic_write_text
from fdseg_core.provenance import PROVENANCE_KEYS
from fdseg_core.train.logs import MetricsLog

__all__ = [
    "MEAN",
    "RESULT",
    "CaseDice",
    "RunResult",
    "RunScores",
    "RunTimes",
    "class_names",
    "load_run",
    "per_pair_scores",
]

#: The file a finished run of an experiment leaves in its folder.
RESULT = "result.json"
#: The pseudo-class of the per-case mean over the foreground classes.
MEAN = "mean"


@dataclass(frozen=True)
class CaseDice:
    """One test case's Dice per foreground class.

    Attributes:
        case: The case id.
        dice: ``{class name: Dice}``; ``nan`` where the Dice is undefined (the class in
            neither prediction nor reference).
    """

    case: str
    dice: Mapping[str, float]

    def score(self, class_name: str) -> float:
        """The Dice of one class, or of :data:`MEAN`.

        The mean is over the classes whose Dice is defined (a class in neither the
        prediction nor the reference has none, and is left out, as ``fdseg evaluate``
        leaves it out); it is ``nan`` when no class has one. Results whose file held a
        ``NaN`` token for such a class (written before ``null`` was) read the same way;
        versions before this reader left such a case out of the mean rows instead.

        Returns:
            The Dice; ``nan`` for a class the case lacks.
        """
        if class_name == MEAN:
            values = [v for v in self.dice.values() if not math.isnan(v)]
            return sum(values) / len(values) if values else math.nan
        return self.dice.get(class_name, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """``{"case": id, "dice_<class>": Dice or None}``, the rows of ``result.json``."""
        return {
            "case": self.case,
            **{f"dice_{k}": None if math.isnan(v) else v for k, v in self.dice.items()},
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> CaseDice:
        """Read a row of ``result.json`` (``None`` Dice become ``nan``)."""
        return cls(
            case=str(row["case"]),
            dice={
                k.removeprefix("dice_"): math.nan if v is None else float(v)
                for k, v in row.items()
                if k.startswith("dice_") and k != f"dice_{MEAN}"
            },
        )


@dataclass(frozen=True)
class RunScores:
    """What a comparison of methods reads from one run.

    Attributes:
        train_size: Training cases.
        method: Method label (``"none"``, ``"early"``, ``"early-reference"``, ...).
        seed: Seed.
        cases: The Dice of each test case.
    """

    train_size: int
    method: str
    seed: int
    cases: tuple[CaseDice, ...]

    def scores(self, class_name: str) -> dict[str, float]:
        """``{case: Dice}`` of one class (or :data:`MEAN`) over the test cases."""
        return {c.case: c.score(class_name) for c in self.cases}


@dataclass(frozen=True)
class RunTimes:
    """Where a run's time went, in seconds.

    Attributes:
        train: Training steps (summed over the run's log, resumed parts included).
        validation: Validations.
        test: The evaluation on the test cases.
    """

    train: float
    validation: float
    test: float

    @property
    def total(self) -> float:
        """All three."""
        return self.train + self.validation + self.test


@dataclass(frozen=True)
class RunResult(RunScores):
    """One finished run of an experiment: its scores, how it trained, what it cost.

    Attributes:
        fusion: The network's fusion (``none``, ``early``, ``late``).
        layout: The band layout (``centered`` or ``reference``).
        checkpoint: The checkpoint scored (``best`` or ``last``).
        best_epoch: The epoch of that checkpoint's validation.
        epochs_run: Epochs trained.
        stopped_early: Whether the plateau rule stopped it.
        largest_size: The experiment's largest training size.
        inference_rule: How logits became the labels scored (the loss's activation).
        train_cases: The ids it trained on.
        val_cases: The ids it validated on.
        steps_per_epoch: Steps per epoch.
        best_step: ``best_epoch`` in steps.
        stop_step: ``epochs_run`` in steps.
        step_cap: The most steps it could run.
        hit_step_cap: It ended at its cap without a plateau (it may still have been
            improving).
        time_s: Where its time went.
        run_dir: Its folder, relative to the experiment's.
        provenance: The code that ran it (``fdseg_version``, ``fdseg_commit``,
            ``fdseg_dirty``).
        machines: The machines that trained it, in order (one unless a resume continued
            it on another; :func:`~fdseg_core.provenance.machine_provenance`): runs
            trained on machines with the same CPU features and threads reproduce each
            other bit for bit, others need not.
        test_machine: The machine that scored the test cases.

    Results written by earlier versions read with the defaults above for what they
    did not record (``None`` from ``inference_rule`` on, an empty ``provenance``), and
    their ``to_dict`` writes ``null`` for those (``machines`` and ``test_machine`` too).
    """

    fusion: str = "none"
    layout: str = "centered"
    checkpoint: str = "best"
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    largest_size: int | None = None
    inference_rule: str | None = None
    train_cases: tuple[str, ...] | None = None
    val_cases: tuple[str, ...] | None = None
    steps_per_epoch: int | None = None
    best_step: int | None = None
    stop_step: int | None = None
    step_cap: int | None = None
    hit_step_cap: bool | None = None
    time_s: RunTimes | None = None
    run_dir: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    machines: tuple[Mapping[str, Any], ...] = ()
    test_machine: Mapping[str, Any] | None = None

    @property
    def class_names(self) -> list[str]:
        """The foreground classes scored, in order."""
        return class_names([self])

    def to_dict(self) -> dict[str, Any]:
        """The contents of ``result.json`` (``null`` for what a result read from an
        earlier version did not record)."""
        return {
            "train_size": self.train_size,
            "method": self.method,
            "fusion": self.fusion,
            "layout": self.layout,
            "seed": self.seed,
            "cases": [c.to_dict() for c in self.cases],
            "checkpoint": self.checkpoint,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "inference_rule": self.inference_rule,
            "train_cases": None if self.train_cases is None else list(self.train_cases),
            "val_cases": None if self.val_cases is None else list(self.val_cases),
            "steps_per_epoch": self.steps_per_epoch,
            "best_step": self.best_step,
            "stop_step": self.stop_step,
            "step_cap": self.step_cap,
            "hit_step_cap": self.hit_step_cap,
            "time_s": None
            if self.time_s is None
            else {
                "train": self.time_s.train,
                "validation": self.time_s.validation,
                "test": self.time_s.test,
            },
            "run_dir": self.run_dir,
            **{k: self.provenance.get(k) for k in PROVENANCE_KEYS},
            "largest_size": self.largest_size,
            "machines": [dict(m) for m in self.machines] if self.machines else None,
            "test_machine": None if self.test_machine is None else dict(self.test_machine),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Read ``result.json``'s contents, as this version or an earlier one wrote them.

        Results written before the method label had its own key kept it under
        ``"fusion"``.
        """
        method = data["method"] if "method" in data else data["fusion"]
        times = data.get("time_s")
        return cls(
            train_size=int(data["train_size"]),
            method=str(method),
            seed=int(data["seed"]),
            cases=tuple(CaseDice.from_dict(row) for row in data["cases"]),
            fusion=str(data.get("fusion", method)).split("-")[0],
            layout=str(data.get("layout", "centered")),
            checkpoint=str(data.get("checkpoint", "best")),
            best_epoch=int(data.get("best_epoch", 0)),
            epochs_run=int(data.get("epochs_run", 0)),
            stopped_early=bool(data.get("stopped_early", False)),
            largest_size=data.get("largest_size"),
            inference_rule=data.get("inference_rule"),
            train_cases=_tuple_or_none(data.get("train_cases")),
            val_cases=_tuple_or_none(data.get("val_cases")),
            steps_per_epoch=data.get("steps_per_epoch"),
            best_step=data.get("best_step"),
            stop_step=data.get("stop_step"),
            step_cap=data.get("step_cap"),
            hit_step_cap=data.get("hit_step_cap"),
            time_s=None if times is None else RunTimes(**{k: float(v) for k, v in times.items()}),
            run_dir=data.get("run_dir"),
            provenance={k: data[k] for k in PROVENANCE_KEYS if k in data},
            machines=tuple(dict(m) for m in data.get("machines") or ()),
            test_machine=data.get("test_machine"),
        )

    def save(self, run_dir: str | Path) -> Path:
        """Write ``run_dir/result.json`` atomically; its path."""
        path = Path(run_dir) / RESULT
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def _tuple_or_none(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def load_run(run_dir: str | Path) -> tuple[RunResult, list[dict]] | None:
    """A finished run's result and the rows of its ``metrics.jsonl``.

    Args:
        run_dir: The run's folder (``EXPERIMENT/runs/<run>``).

    Returns:
        ``(result, rows)``, or ``None`` when the run has no result yet (``rows`` is empty
        when the run left no metrics log).
    """
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    return RunResult.from_dict(json.loads(path.read_text())), MetricsLog.load(run_dir).rows


def per_pair_scores(
    results: Sequence[RunScores], size: int, method: str, class_name: str
) -> dict[tuple[int, str], float]:
    """``{(seed, case): Dice}`` of one method at one training size, for one class or
    :data:`MEAN`."""
    return {
        (r.seed, case): score
        for r in results
        if r.train_size == size and r.method == method
        for case, score in r.scores(class_name).items()
    }


def class_names(results: Sequence[RunScores]) -> list[str]:
    """The foreground classes of the results, in order of first appearance."""
    names: dict[str, None] = {}
    for r in results:
        for case in r.cases:
            names.update(dict.fromkeys(case.dice))
    return list(names)
