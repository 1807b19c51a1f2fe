"""The perturbation audit: trained models scored on perturbed test images.

:func:`audit` loads every test case once, makes each perturbation of the suite
(:mod:`fdseg_core.robustness.perturbations`) once per case, and scores every model on
it (one pass over the data per perturbation, all models at once), on each case's own
grid with the model's own input pipeline, window and label rule, as ``fdseg predict``
+ ``fdseg evaluate`` score a clean case (:func:`~fdseg_core.train.evaluation.evaluate_volumes`).

The models are runs or checkpoints (one model each), cross-validation folders (the
ensemble of their folds, probabilities averaged as ``fdseg predict`` averages them),
or an experiment folder (every finished run, grouped by training size, method and
seed; the experiment's own test cases). For an experiment, each method's Dice under a
perturbation, and its drop from the clean image, are compared with the baseline's,
paired by seed and test case, with the experiment's seed-level statistics
(:func:`fdseg_core.experiment.report.summarise`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fdseg_core.atomic import atomic_save_figure, atomic_write_text, check_output_file
from fdseg_core.data import load_case, load_dataset
from fdseg_core.errors import InputError, Interrupted
from fdseg_core.experiment.report import SummaryRow, format_delta, summarise
from fdseg_core.experiment.results import MEAN, RESULT, CaseDice, RunResult, RunScores
from fdseg_core.infer.activation import probabilities
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.predict import check_ensemble
from fdseg_core.infer.sliding_window import InferenceStopped
from fdseg_core.robustness.perturbations import KINDS, Perturbation, PerturbationSuite, perturb
from fdseg_core.robustness.store import SCORES, ModelKey, ScoreStore, file_digest
from fdseg_core.train.checkpoint import find_checkpoints, load_model
from fdseg_core.train.evaluation import evaluate_volumes
from fdseg_core.train.loop import StopRequest

__all__ = [
    "AuditCoverage",
    "AuditInterrupted",
    "AuditModel",
    "PerturbationSummary",
    "PerturbedScore",
    "RobustnessResult",
    "audit",
    "coverage",
    "experiment_models",
    "is_experiment",
    "labelled_cases",
    "models_from_paths",
    "suite_from",
]

logger = logging.getLogger(__name__)

#: What the audit writes into its folder.
TABLE, SUMMARY, FIGURE, VERSUS = (
    "robustness.csv",
    "robustness.json",
    "robustness.png",
    "robustness_vs_baseline.md",
)


class AuditInterrupted(Interrupted):
    """An audit stopped by a signal (or its ``should_stop``) with every score so far
    saved in its folder (``robustness.scores.json``); the same call goes on from them.

    Attributes:
        signal_name: ``"SIGTERM"``, ``"SIGINT"``, or ``""`` for ``should_stop``.
        exit_code: 128 + the signal number (143, 130), or 1 for ``should_stop``.
    """


@dataclass(frozen=True)
class AuditModel:
    """One model of an audit.

    Attributes:
        name: Its label in the outputs (the run's folder name, or the file).
        checkpoints: Its checkpoint, or the folds of an ensemble (averaged).
        method: Its method in an experiment (``"none"``, ``"early"``, ...), else ``None``.
        train_size: Its training size in an experiment.
        seed: Its seed in an experiment.
        network: A model in memory instead of checkpoints: a callable from windows
            ``(N, C, X, Y, Z)`` to logits ``(N, K, X, Y, Z)``, with its ``card``.
        card: The :class:`~fdseg_core.infer.card.ModelCard` of ``network``.
        run_result: An experiment's run: its ``result.json``, which identifies its
            stored scores once its checkpoint is gone (then ``checkpoints`` is empty).
    """

    name: str
    checkpoints: tuple[Path, ...] = ()
    method: str | None = None
    train_size: int | None = None
    seed: int | None = None
    network: Callable[[torch.Tensor], torch.Tensor] | None = None
    card: ModelCard | None = None
    run_result: Path | None = None

    @property
    def gone(self) -> bool:
        """An experiment's run whose checkpoint is no longer here: only its stored
        scores can be audited."""
        return self.network is None and not self.checkpoints and self.run_result is not None

    def key(self) -> ModelKey | None:
        """What identifies its stored scores (``None``: a network, never stored)."""
        if self.network is not None:
            return None
        run = file_digest([self.run_result]) if self.run_result is not None else None
        return ModelKey(file_digest(self.checkpoints) if self.checkpoints else None, run=run)


@dataclass(frozen=True)
class PerturbedScore:
    """One model's Dice on one perturbation of one case.

    Attributes:
        model: The model's name.
        method: Its method, for an experiment's run (else ``None``).
        train_size: Its training size, for an experiment's run.
        seed: Its seed, for an experiment's run.
        perturbation: The perturbation (``clean`` at strength 0 for the image as it is).
        case: The case id.
        dice: ``{class name: Dice}`` per foreground class (``nan``: undefined).
    """

    model: str
    method: str | None
    train_size: int | None
    seed: int | None
    perturbation: Perturbation
    case: str
    dice: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A row of ``robustness.csv``: ``model``, ``method``, ``train_size``, ``seed``,
        the perturbation's ``kind``, ``strength`` and ``level``, ``case`` and
        ``dice_<class>`` per class (``None``: undefined)."""
        p = self.perturbation
        return {
            "model": self.model,
            "method": self.method,
            "train_size": self.train_size,
            "seed": self.seed,
            "kind": p.kind,
            "strength": p.strength,
            "level": p.level,
            "case": self.case,
            **{f"dice_{k}": None if math.isnan(v) else v for k, v in self.dice.items()},
        }


@dataclass(frozen=True)
class PerturbationSummary:
    """One model's mean Dice under one perturbation, and its drop from the clean image.

    Attributes:
        model: The model's name.
        perturbation: The perturbation.
        dice: Mean Dice over the cases per class, and ``"mean"`` (each case's mean over
            its classes, then over the cases); ``nan`` where no case has one.
        drop: ``dice`` minus the model's clean ``dice`` (0 for the clean image).
        n_cases: The cases behind it.
    """

    model: str
    perturbation: Perturbation
    dice: Mapping[str, float]
    drop: Mapping[str, float]
    n_cases: int

    def to_dict(self) -> dict[str, Any]:
        """A row of ``robustness.json``'s summary: ``model``, ``kind``, ``strength``,
        then ``dice_<class>`` and ``drop_<class>`` per class and ``mean``, ``n_cases``
        (non-finite values as ``None``)."""
        row: dict[str, Any] = {
            "model": self.model,
            "kind": self.perturbation.kind,
            "strength": self.perturbation.strength,
        }
        for name, value in self.dice.items():
            row[f"dice_{name}"] = _finite(value)
            row[f"drop_{name}"] = _finite(self.drop[name])
        row["n_cases"] = self.n_cases
        return row


@dataclass(frozen=True)
class RobustnessResult:
    """What :func:`audit` gives back (and writes into ``out``).

    Attributes:
        out: The folder it wrote into.
        suite: The suite.
        rows: One per (model, perturbation, case).
        summary: One per (model, perturbation): the mean Dice per class and over
            classes, and its drop from the clean image.
        versus: For an experiment: :func:`~fdseg_core.experiment.report.summarise`'s
            rows per perturbation (Dice and drop), keyed by perturbation name; else empty.
    """

    out: Path
    suite: PerturbationSuite
    rows: tuple[PerturbedScore, ...]
    summary: tuple[PerturbationSummary, ...]
    versus: dict[str, dict[str, list[SummaryRow]]] = field(default_factory=dict)

    @property
    def report(self) -> str:
        """A printable text: the mean Dice per model at each perturbation's strongest
        level, and where everything was written."""
        lines = [f"robustness audit (suite v{self.suite.version}) -> {self.out}"]
        worst: dict[tuple[str, str], PerturbationSummary] = {}
        clean: dict[str, float] = {}
        for row in self.summary:
            p = row.perturbation
            if p.kind == "clean":
                clean[row.model] = row.dice[MEAN]
            else:
                key = (row.model, p.kind)
                if key not in worst or p.strength > worst[key].perturbation.strength:
                    worst[key] = row
        models = list(dict.fromkeys(r.model for r in self.summary))
        shown = models if len(models) <= 6 else models[:6]
        for model in shown:
            drops = ", ".join(
                f"{kind} {row.drop[MEAN]:+.3f}"
                for (m, kind), row in worst.items()
                if m == model and math.isfinite(row.drop[MEAN])
            )
            lines.append(f"  {model}: clean Dice {clean.get(model, float('nan')):.4f}; "
                         f"at the strongest level: {drops}")  # fmt: skip
        if len(models) > len(shown):
            lines.append(f"  ... and {len(models) - len(shown)} more models, in {SUMMARY}")
        written = [TABLE, SUMMARY, FIGURE] + ([VERSUS] if self.versus else [])
        lines.append(f"  written: {', '.join(str(self.out / f) for f in written)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class AuditCoverage:
    """What an audit's folder already holds of the scores an audit asks, model by
    model, and what the audit would score (:func:`coverage`).

    Attributes:
        folder: The audit's output folder.
        asked: The scores the audit asks of each model: its cases times the suite's
            perturbations (the clean image included).
        stored: ``{model name: how many of them the folder holds}``, in the models'
            order (0 for a network in memory, whose scores are never stored).
        gone: The runs whose checkpoint is gone: only their stored scores can serve.
        changed: The models whose scores in the folder were made with other weights (a
            checkpoint that has changed since, or for a gone run another
            ``result.json``): they are not counted in ``stored``, and never serve.
    """

    folder: Path
    asked: int
    stored: Mapping[str, int]
    gone: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def complete(self) -> tuple[str, ...]:
        """The models with every score stored."""
        return tuple(m for m, n in self.stored.items() if n == self.asked)

    @property
    def to_score(self) -> dict[str, int]:
        """``{model: scores the audit would make}`` for the models it would score."""
        return {
            m: self.asked - n
            for m, n in self.stored.items()
            if n < self.asked and m not in self.gone
        }

    @property
    def left_out(self) -> tuple[str, ...]:
        """The gone runs that lack some of the scores: the audit leaves them out."""
        return tuple(m for m in self.gone if self.stored[m] < self.asked)

    @property
    def report(self) -> str:
        """A printable text: a summary line, then a line per model, ``name: complete``,
        ``name: N to score`` or ``name: left out``, each with ``(stored S of A)``, and
        why a model's scores in the folder do not serve when its weights changed."""
        to_score = self.to_score
        lines = [
            f"robustness audit in {self.folder}: {len(self.complete)} of {len(self.stored)} "
            f"models complete, {len(to_score)} to score ({sum(to_score.values())} scores), "
            f"{len(self.left_out)} left out (checkpoint gone, scores missing); "
            f"{self.asked} scores per model"
        ]
        for name, n in self.stored.items():
            if n == self.asked:
                state = "complete"
            elif name in self.gone:
                state = "left out"
            else:
                state = f"{to_score[name]} to score"
            why = ""
            if name in self.changed:
                why = (
                    "; its scores here are of another result.json"
                    if name in self.gone
                    else "; its checkpoint changed since it was scored"
                )
            lines.append(f"  {name}: {state} (stored {n} of {self.asked}{why})")
        return "\n".join(lines)


def coverage(
    models: Sequence[AuditModel],
    cases: Sequence,
    suite: PerturbationSuite,
    out: str | Path,
) -> AuditCoverage:
    """What :func:`audit` would take from ``out`` and what it would score, without
    scoring or writing anything (nor loading a model).

    Args:
        models: The models (:func:`models_from_paths`, :func:`experiment_models`).
        cases: Labelled cases (:func:`labelled_cases`).
        suite: The perturbations.
        out: The audit's output folder (it need not exist).

    Raises:
        InputError: What makes :func:`audit` refuse before any work, besides what needs
            a model loaded: models of the same name, a scores file in ``out`` that
            cannot be read or holds scores of other images or cases, or runs whose
            checkpoints are all gone without every score stored. (Left-out runs are
            also named in a warning, as :func:`audit` names them.)
        OSError: An output of the audit that could not be written.
    """
    out = Path(out)
    store = _open_store(models, cases, suite, out)
    perturbations = suite.perturbations()
    _with_scores(models, cases, perturbations, store)  # refuses as audit() would
    stored = {
        m.name: sum(
            store.get(m.name, c.case_id, p) is not None for c in cases for p in perturbations
        )
        for m in models
    }
    return AuditCoverage(
        out,
        len(cases) * len(perturbations),
        stored,
        tuple(m.name for m in models if m.gone),
        tuple(m.name for m in models if m.name in store.changed),
    )


def _open_store(
    models: Sequence[AuditModel], cases: Sequence, suite: PerturbationSuite, out: Path
) -> ScoreStore:
    """The audit's stored scores, once its outputs can be written and every model has a
    name of its own (the scores and the outputs are keyed by it)."""
    for name in (TABLE, SUMMARY, FIGURE, VERSUS, SCORES):
        check_output_file(out / name)
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(
            f"two models are named {twice[0]!r}: each model needs a name of its own "
            "(give each checkpoint or folder once)"
        )
    return ScoreStore(
        out / SCORES,
        suite,
        {m.name: m.key() for m in models},
        {c.case_id: file_digest([*c.image_paths, c.label_path]) for c in cases},
    )


class _Ensemble:
    """Models averaged as ``fdseg predict`` averages them: the mean of their
    probabilities, given back as logits of the same rule (``log p`` for softmax, the
    logit for sigmoid), so that the window's activation recovers the mean."""

    def __init__(self, members: Sequence[torch.nn.Module], activation: str) -> None:
        self.members = list(members)
        self.activation = activation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([probabilities(m(x), self.activation) for m in self.members]).mean(0)
        p = mean.clamp(1e-7, 1 - 1e-7)
        return p.log() if self.activation == "softmax" else torch.logit(p)


def models_from_paths(paths: Sequence[str | Path]) -> list[AuditModel]:
    """A model per path: a checkpoint, a run folder (its ``best.pt``), or a
    cross-validation folder (the ensemble of its folds' ``best.pt``).

    A folder's model is named after the folder (``runs/a`` is ``a``), or after the path
    as given when two folders share a name (``x/run`` and ``y/run``); a checkpoint's
    after its file name, or its path when it lies in another folder.

    Raises:
        InputError: A path that is none of them (named).
    """
    models = []
    folder_names = [Path(raw).name for raw in paths if Path(raw).is_dir()]
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            models.append(AuditModel(path.name if path.parent == Path() else str(path), (path,)))
        elif path.is_dir():
            found = find_checkpoints(path, "best")
            # a folder's name, or the path as given when two folders share the name
            label = path.name if path.name and folder_names.count(path.name) == 1 else str(path)
            models.append(AuditModel(label, tuple(found)))
        else:
            raise InputError(f"{path} does not exist: expected a checkpoint or a run folder")
    return models


def experiment_models(folder: str | Path) -> tuple[list[AuditModel], Path, list[str]]:
    """Every finished run of an experiment folder, its dataset and its test cases.

    A finished run (one with ``result.json``) whose checkpoint is gone is a model all
    the same (:attr:`AuditModel.gone`): :func:`audit` takes its scores from an earlier
    audit into the same folder, or leaves it out.

    Returns:
        ``(models, dataset, test case ids)`` (the dataset as ``experiment.json`` names
        it, relative to the folder).

    Raises:
        InputError: No ``experiment.json``, or no finished run.
    """
    folder = Path(folder)
    meta_path = folder / "experiment.json"
    if not meta_path.is_file():
        raise InputError(f"{folder} is not an experiment folder (no experiment.json)")
    meta = json.loads(meta_path.read_text())
    which = meta.get("checkpoint", "best")
    models = []
    for run in sorted((folder / "runs").glob("*")):
        ckpt, result_path = run / f"{which}.pt", run / RESULT
        if not result_path.is_file():
            continue
        result = RunResult.from_dict(json.loads(result_path.read_text()))
        models.append(
            AuditModel(
                run.name,
                (ckpt,) if ckpt.is_file() else (),
                method=result.method,
                train_size=result.train_size,
                seed=result.seed,
                run_result=result_path,
            )
        )
    if not models:
        raise InputError(f"{folder}: no finished run (a run folder with {RESULT}) to audit")
    return models, folder / meta["dataset"], list(meta["test_cases"])


def labelled_cases(dataset: str | Path, case_ids: Sequence[str] | None = None) -> list:
    """The labelled cases to perturb: the named ones (training or test cases of the
    dataset), or the dataset's labelled test cases (``imagesTs`` + ``labelsTs``).

    Raises:
        InputError: An unlabelled dataset, or a named case the dataset lacks.
    """
    info = load_dataset(dataset)
    if case_ids is None:
        cases = [c for c in info.test if c.label_path is not None]
        if not cases:
            raise InputError(
                f"{dataset} has no labelled test cases (imagesTs with labelsTs): the audit "
                "scores models against labels; give an experiment folder, or a dataset "
                "with labelsTs"
            )
        return cases
    by_id = {c.case_id: c for c in [*info.training, *info.test] if c.label_path is not None}
    missing = [i for i in case_ids if i not in by_id]
    if missing:
        raise InputError(f"{dataset}: no labelled case {missing[0]!r} (of {len(missing)} missing)")
    return [by_id[i] for i in case_ids]


def audit(
    models: Sequence[AuditModel],
    cases: Sequence,
    suite: PerturbationSuite,
    out: str | Path,
    *,
    labels: dict[str, int] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> RobustnessResult:
    """Score every model on every perturbation of every case, and write the results.

    Scores already made into ``out`` (``robustness.scores.json``,
    :mod:`fdseg_core.robustness.store`) for the same images, cases and checkpoints are
    taken as they are: a stopped audit goes on where it stopped, and new models, kinds
    or levels are scored alone. SIGTERM and SIGINT stop it within one model's scoring of
    one image, with every score so far saved.

    Args:
        models: The models (:func:`models_from_paths`, :func:`experiment_models`).
        cases: Labelled cases (:func:`labelled_cases`).
        suite: The perturbations.
        out: The output folder: ``robustness.csv`` (every score), ``robustness.json``
            (the suite, the models and the summary), ``robustness.png`` (Dice against
            strength per kind, a line per model or method) and, for an experiment,
            ``robustness_vs_baseline.md``; each written atomically.
        labels: The dataset's classes (name -> value): every model must have been
            trained on them.
        device: Where the models run.
        progress: A bar on a terminal, else a line per case.
        should_stop: Asked between two scores, besides the signals: ``True`` stops the
            audit as a signal does.

    Raises:
        InputError: Two models of the same name, a model trained on other classes or
            channels, members of an ensemble that disagree, an output that cannot be
            written, or scores in ``out`` of other images or cases; before any work.
        AuditInterrupted: SIGTERM, SIGINT or ``should_stop``: the scores so far are
            saved in ``out`` and the same call goes on from them.
    """
    out = Path(out)
    device = torch.device(device)
    store = _open_store(models, cases, suite, out)
    perturbations = suite.perturbations()
    models, left_out = _with_scores(models, cases, perturbations, store)
    loaded_models = [(None, None) if m.gone else _load(m, device, labels) for m in models]
    rows: list[PerturbedScore] = []
    t0 = time.perf_counter()
    seconds = {"load": 0.0, "perturb": 0.0, "score": 0.0}
    show = progress and sys.stderr.isatty()  # a scheduler's log gets a line per case
    bar = tqdm(cases, disable=not show, desc="robustness", unit="case")
    names = [m.name for m in models]
    request = StopRequest()

    def stopped() -> bool:
        return request() or (should_stop is not None and should_stop())

    with request.installed():
        for index, case in enumerate(bar, start=1):
            todo = {p: store.missing(names, case.case_id, p) for p in perturbations}
            if any(todo.values()):
                t = time.perf_counter()
                loaded = load_case(case, with_label=True)
                seconds["load"] += time.perf_counter() - t
            for p in perturbations:
                fresh: dict[str, dict[str, float]] = {}
                if todo[p]:
                    t = time.perf_counter()
                    image = perturb(loaded.image, loaded.affine, p, suite, case.case_id)
                    perturbed = replace(loaded, image=image)
                    seconds["perturb"] += time.perf_counter() - t
                    t = time.perf_counter()
                    for model, (net, card) in zip(models, loaded_models, strict=True):
                        if model.name not in todo[p]:
                            continue
                        if stopped():
                            raise _interrupted(request, store)
                        try:
                            dice = _dice(model, net, card, perturbed, device, stopped)
                        except InferenceStopped:
                            raise _interrupted(request, store) from None
                        fresh[model.name] = dice
                        store.put(model.name, case.case_id, p, dice)
                        store.save()
                    seconds["score"] += time.perf_counter() - t
                for model in models:
                    dice = fresh.get(model.name)
                    if dice is None:
                        dice = store.get(model.name, case.case_id, p)
                        store.reused += 1
                    assert dice is not None  # scored now, or stored
                    rows.append(_row(model, p, case.case_id, dice))
            store.save(force=True)
            if not show:
                elapsed = time.perf_counter() - t0
                logger.info(
                    f"robustness: case {index} of {len(cases)}: {len(perturbations)} images x "
                    f"{len(models)} models ({sum(map(len, todo.values()))} scored, the rest "
                    f"from {SCORES}; {elapsed:.0f} s)"
                )
    bar.close()
    summary = _summarise(rows)
    in_grid = all(None not in (m.method, m.train_size, m.seed) for m in models)
    versus = _versus(rows, models) if in_grid else {}
    result = RobustnessResult(out, suite, tuple(rows), summary, versus)
    seconds["total"] = time.perf_counter() - t0
    _write(result, models, cases, seconds, {"made": store.made, "reused": store.reused}, left_out)
    return result


def _with_scores(
    models: Sequence[AuditModel],
    cases: Sequence,
    perturbations: Sequence[Perturbation],
    store: ScoreStore,
) -> tuple[list[AuditModel], list[str]]:
    """The models to audit, and the names of those left out: a run whose checkpoint is
    gone stays only when the store holds every score the audit asks of it.

    Raises:
        InputError: No model is left (before any work).
    """
    kept, left_out = [], []
    for m in models:
        if m.gone and any(
            store.get(m.name, c.case_id, p) is None for c in cases for p in perturbations
        ):
            left_out.append(m.name)
        else:
            kept.append(m)
    if left_out:
        more = f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""
        shown = ", ".join(left_out[:8]) + more
        again = sorted(store.changed.intersection(left_out))
        trained_again = (
            f"; {', '.join(again)}: trained again since their scores were stored (another "
            "result.json)"
            if again
            else ""
        )
        logger.warning(
            f"{len(left_out)} finished run(s) left out: their checkpoints are gone and "
            f"{store.path} lacks scores the audit asks of them ({shown}){trained_again}; "
            "checkpoints are not committed: audit a run on the machine it trained on, into "
            "this folder"
        )
    if not kept:
        raise InputError(
            f"nothing to audit: every run's checkpoint is gone and {store.path} lacks "
            "their scores; audit the runs on the machine they trained on"
        )
    return kept, left_out


def _interrupted(request: StopRequest, store: ScoreStore) -> AuditInterrupted:
    store.save(force=True)
    name = request.signal_name or "a stop request"
    return AuditInterrupted(
        f"robustness audit stopped by {name}: {store.count} scores saved in {store.path}; "
        "the same command goes on from them",
        signal_name=request.signal_name or "",
        exit_code=128 + request.signum if request.signum else 1,
    )


def _load(model: AuditModel, device, labels) -> tuple[Callable, ModelCard]:
    if model.network is not None and model.card is not None:
        loaded = [(model.network, model.card)]
    elif not model.checkpoints:
        raise InputError(f"{model.name}: no checkpoint, and no network with its card")
    else:
        loaded = [load_model(c, map_location=device) for c in model.checkpoints]
    cards = [card for _, card in loaded]
    check_ensemble(cards, [str(c) for c in model.checkpoints] or [model.name])
    card = cards[0]
    if labels is not None and dict(card.labels) != dict(labels):
        where = model.checkpoints[0] if model.checkpoints else model.name
        raise InputError(
            f"{where} was trained on the classes {dict(card.labels)}, the dataset has "
            f"{dict(labels)}"
        )
    if len(loaded) == 1:
        return loaded[0][0], card
    for other in cards[1:]:
        if (other.patch_size, other.target_spacing, other.bands) != (
            card.patch_size,
            card.target_spacing,
            card.bands,
        ):
            raise InputError(
                f"{model.name}: its folds differ in window, spacing or bands; audit them one by one"
            )
    return _Ensemble([m for m, _ in loaded], card.activation), card


def _dice(model: AuditModel, net, card: ModelCard, loaded, device, should_stop) -> dict[str, float]:
    """One model's Dice per foreground class on one (perturbed) case."""
    if len(loaded.image) != card.in_channels:
        raise InputError(
            f"case {loaded.case_id!r} has {len(loaded.image)} channel(s); {model.name} was "
            f"trained on {card.in_channels}"
        )
    volume = card.preprocessor()(loaded)
    score = evaluate_volumes(
        net,
        [volume],
        num_classes=card.num_classes,
        patch_size=card.patch_size,
        overlap=card.overlap,
        device=device,
        activation=card.activation,
        batch_size=card.window_batch,
        target_spacing=card.target_spacing,
        case_grid=True,
        should_stop=should_stop,
    )[0]
    return {str(name): float(score.dice[v]) for v, name in card.class_names.items() if v}


def _row(
    model: AuditModel, p: Perturbation, case_id: str, dice: dict[str, float]
) -> PerturbedScore:
    return PerturbedScore(
        model=model.name,
        method=model.method,
        train_size=model.train_size,
        seed=model.seed,
        perturbation=p,
        case=case_id,
        dice=dice,
    )


def _summarise(rows: Sequence[PerturbedScore]) -> tuple[PerturbationSummary, ...]:
    """Mean Dice per (model, perturbation) and its drop from the clean image."""
    names = [*dict.fromkeys(k for r in rows for k in r.dice), MEAN]
    groups: dict[tuple[str, Perturbation], list[CaseDice]] = {}
    for r in rows:
        groups.setdefault((r.model, r.perturbation), []).append(CaseDice(r.case, r.dice))
    clean = {m: g for (m, p), g in groups.items() if p.kind == "clean"}

    def means(cases: list[CaseDice]) -> dict[str, float]:
        return {n: _nanmean([c.score(n) for c in cases]) for n in names}

    out = []
    for (model, p), cases in groups.items():
        dice, base = means(cases), means(clean.get(model, []))
        drop = {n: dice[n] - base[n] for n in names}
        out.append(PerturbationSummary(model, p, dice, drop, n_cases=len(cases)))
    return tuple(out)


def _nanmean(values) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _versus(
    rows: Sequence[PerturbedScore], models: Sequence[AuditModel]
) -> dict[str, dict[str, list[SummaryRow]]]:
    """Per perturbation: the experiment's seed-level comparison with the baseline of the
    Dice under it and of its drop from the clean image (paired by seed and case)."""
    methods = [m for m in dict.fromkeys(m.method for m in models) if m is not None]
    clean = {(r.model, r.case): r for r in rows if r.perturbation.kind == "clean"}
    by_p: dict[Perturbation, dict[str, tuple[PerturbedScore, list, list]]] = {}
    for r in rows:
        runs = by_p.setdefault(r.perturbation, {})
        _, cases, drops = runs.setdefault(r.model, (r, [], []))
        base = clean[(r.model, r.case)].dice
        cases.append(CaseDice(r.case, r.dice))
        drops.append(CaseDice(r.case, {k: v - base.get(k, math.nan) for k, v in r.dice.items()}))
    out = {}
    for p, runs in by_p.items():
        dice = [_run_scores(first, cases) for first, cases, _ in runs.values()]
        drops = [_run_scores(first, d) for first, _, d in runs.values()]
        out[p.name] = {
            "dice": summarise(dice, methods=methods),
            "drop": summarise(drops, methods=methods) if p.kind != "clean" else [],
        }
    return out


def _run_scores(row: PerturbedScore, cases: list[CaseDice]) -> RunScores:
    """The scores of one model of an experiment's grid (its method, size and seed known)."""
    assert row.train_size is not None and row.seed is not None  # only a grid's models
    return RunScores(row.train_size, str(row.method), row.seed, tuple(cases))


def _write(
    result: RobustnessResult,
    models,
    cases,
    seconds: dict[str, float],
    scores: dict[str, int],
    left_out: Sequence[str],
) -> None:
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.to_dict() for r in result.rows]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / TABLE, buffer.getvalue())
    payload = {
        "suite": result.suite.to_dict(),
        "models": [
            {
                "name": m.name,
                "checkpoints": [str(c) for c in m.checkpoints],
                **({"from_stored_scores": True} if m.gone else {}),
                "method": m.method,
                "train_size": m.train_size,
                "seed": m.seed,
            }
            for m in models
        ],  # fmt: skip
        "cases": [c.case_id for c in cases],
        # finished runs whose checkpoints are gone and whose scores were never made
        "left_out": list(left_out),
        # where the time went: loading cases, making the perturbed images, scoring them
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        # scores made by this call, and taken from robustness.scores.json
        "scores": scores,
        "summary": [row.to_dict() for row in result.summary],
    }
    atomic_write_text(out / SUMMARY, json.dumps(payload, indent=1) + "\n")
    _figure(result, out / FIGURE)
    if result.versus:
        atomic_write_text(out / VERSUS, _versus_markdown(result.versus))


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _versus_markdown(versus: dict[str, dict[str, list[SummaryRow]]]) -> str:
    lines = [
        "# Robustness against the baseline",
        "",
        "Mean foreground Dice (points) under each perturbation, and its drop from the clean "
        "image; Δ: each method minus the baseline, paired by seed and test case, with the "
        "seed-level 95 % interval and verdict of `fdseg experiment`'s report. A negative Δ "
        "of the drop: the method loses more than the baseline.",
        "",
        "| perturbation | train size | method | Dice | Δ Dice [seed-level CI] | drop | "
        "Δ drop [seed-level CI] | verdict (drop) |",
        "|---|---:|---|---:|---|---:|---|---|",
    ]
    for name, tables in versus.items():
        drops = {(r.train_size, r.method): r for r in tables["drop"] if r.class_name == MEAN}
        for row in tables["dice"]:
            if row.class_name != MEAN:
                continue
            d = drops.get((row.train_size, row.method))
            drop = "" if d is None else f"{100 * d.dice_mean:+.1f}"
            lines.append(
                f"| {name} | {row.train_size} | {row.method} | "
                f"{100 * row.dice_mean:.1f} | {format_delta(row)} | "
                f"{drop} | "
                f"{'' if d is None else format_delta(d)} | "
                f"{'' if d is None or d.delta is None else d.delta.verdict} |"
            )
    return "\n".join(lines) + "\n"


def _figure(result: RobustnessResult, path: Path) -> None:
    from matplotlib.figure import Figure  # lazy: plotting only here

    kinds = [k for k in dict.fromkeys(r.perturbation.kind for r in result.summary) if k != "clean"]
    group = _method_or_model(result)
    cols = min(4, max(1, len(kinds)))
    nrows = math.ceil(len(kinds) / cols) or 1
    fig = Figure(figsize=(3.6 * cols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        for label, members in group.items():
            xs, ys = [0.0], [_mean_of(result.summary, members, "clean", 0.0)]
            strengths = sorted(
                {r.perturbation.strength for r in result.summary if r.perturbation.kind == kind}
            )
            for s in strengths:
                xs.append(s)
                ys.append(_mean_of(result.summary, members, kind, s))
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(kind)
        ax.set_xlabel("strength")
        ax.set_ylabel("mean Dice")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Dice under perturbation (suite v{result.suite.version})")
    atomic_save_figure(fig, path, dpi=110)


def _method_or_model(result: RobustnessResult) -> dict[str, list[str]]:
    """The figure's lines: a method (its models averaged) in an experiment, else a model."""
    methods = {r.model: r.method for r in result.rows}
    out: dict[str, list[str]] = {}
    for model, method in methods.items():
        out.setdefault(model if None in methods.values() else str(method), []).append(model)
    return out


def _mean_of(summary: Sequence[PerturbationSummary], models, kind, strength) -> float:
    values = [
        r.dice[MEAN]
        for r in summary
        if r.model in models and r.perturbation.kind == kind and r.perturbation.strength == strength
    ]
    return _nanmean(values)


def suite_from(
    kinds: Sequence[str] | None,
    seed: int,
    beta: float | None,
    levels: Sequence[int] | None = None,
) -> PerturbationSuite:
    """The suite of a command line's options (every kind and level when none is named)."""
    return PerturbationSuite(
        kinds=tuple(kinds) if kinds else tuple(KINDS),
        seed=seed,
        **({"beta": beta} if beta is not None else {}),
        **({"levels": tuple(levels)} if levels else {}),
    )


def is_experiment(path: str | Path) -> bool:
    """Whether ``path`` is an experiment folder (it holds ``experiment.json``)."""
    return (Path(path) / "experiment.json").is_file()
