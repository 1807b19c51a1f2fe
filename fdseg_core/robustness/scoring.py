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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fdseg_core.atomic import atomic_save_figure, atomic_write_text, check_output_file
from fdseg_core.data import load_case, load_dataset
from fdseg_core.errors import InputError
from fdseg_core.experiment.report import format_delta, summarise
from fdseg_core.experiment.results import RESULT
from fdseg_core.infer.activation import probabilities
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.predict import check_ensemble
from fdseg_core.robustness.perturbations import KINDS, Perturbation, PerturbationSuite, perturb
from fdseg_core.train.checkpoint import find_checkpoints, load_model
from fdseg_core.train.evaluation import evaluate_volumes

__all__ = [
    "AuditModel",
    "RobustnessResult",
    "audit",
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
    """

    name: str
    checkpoints: tuple[Path, ...] = ()
    method: str | None = None
    train_size: int | None = None
    seed: int | None = None
    network: Callable[[torch.Tensor], torch.Tensor] | None = None
    card: ModelCard | None = None


@dataclass(frozen=True)
class RobustnessResult:
    """What :func:`audit` gives back (and writes into ``out``).

    Attributes:
        out: The folder it wrote into.
        suite: The suite (:meth:`PerturbationSuite.to_dict`).
        rows: One row per (model, perturbation, case): ``model``, ``kind``,
            ``strength``, ``case`` and ``dice_<class>`` per foreground class.
        summary: Per model and perturbation: the mean Dice per class and over classes
            (``dice_mean``), and its drop from the clean image.
        versus: For an experiment: :func:`~fdseg_core.experiment.report.summarise`'s
            rows per perturbation (Dice and drop), keyed by perturbation name; else empty.
    """

    out: Path
    suite: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    versus: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    @property
    def report(self) -> str:
        """A printable text: the mean Dice per model at each perturbation's strongest
        level, and where everything was written."""
        lines = [f"robustness audit (suite v{self.suite['version']}) -> {self.out}"]
        worst: dict[tuple[str, str], dict[str, Any]] = {}
        clean: dict[str, float] = {}
        for row in self.summary:
            if row["kind"] == "clean":
                clean[row["model"]] = row["dice_mean"]
            else:
                key = (row["model"], row["kind"])
                if key not in worst or row["strength"] > worst[key]["strength"]:
                    worst[key] = row
        models = list(dict.fromkeys(r["model"] for r in self.summary))
        shown = models if len(models) <= 6 else models[:6]
        for model in shown:
            drops = ", ".join(
                f"{kind} {row['drop_mean']:+.3f}"
                for (m, kind), row in worst.items()
                if m == model and math.isfinite(row["drop_mean"])
            )
            lines.append(f"  {model}: clean Dice {clean.get(model, float('nan')):.4f}; "
                         f"at the strongest level: {drops}")  # fmt: skip
        if len(models) > len(shown):
            lines.append(f"  ... and {len(models) - len(shown)} more models, in {SUMMARY}")
        written = [TABLE, SUMMARY, FIGURE] + ([VERSUS] if self.versus else [])
        lines.append(f"  written: {', '.join(str(self.out / f) for f in written)}")
        return "\n".join(lines)


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

    Raises:
        InputError: A path that is none of them (named).
    """
    models = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            models.append(AuditModel(path.name if path.parent == Path() else str(path), (path,)))
        elif path.is_dir():
            found = find_checkpoints(path, "best")
            label = path.name or str(path)
            models.append(AuditModel(label, tuple(found)))
        else:
            raise InputError(f"{path} does not exist: expected a checkpoint or a run folder")
    return models


def experiment_models(folder: str | Path) -> tuple[list[AuditModel], Path, list[str]]:
    """Every finished run of an experiment folder, its dataset and its test cases.

    Returns:
        ``(models, dataset, test case ids)`` (the dataset as ``experiment.json`` names
        it, relative to the folder).

    Raises:
        InputError: No ``experiment.json``, or no finished run with its checkpoint.
    """
    folder = Path(folder)
    meta_path = folder / "experiment.json"
    if not meta_path.is_file():
        raise InputError(f"{folder} is not an experiment folder (no experiment.json)")
    meta = json.loads(meta_path.read_text())
    which = meta.get("checkpoint", "best")
    models = []
    for run in sorted((folder / "runs").glob("*")):
        result_path, ckpt = run / RESULT, run / f"{which}.pt"
        if not (result_path.is_file() and ckpt.is_file()):
            continue
        result = json.loads(result_path.read_text())
        models.append(
            AuditModel(
                run.name,
                (ckpt,),
                method=result.get("method", result.get("fusion")),
                train_size=int(result["train_size"]),
                seed=int(result["seed"]),
            )
        )
    if not models:
        raise InputError(
            f"{folder}: no finished run with its {which}.pt (checkpoints are not committed: "
            "the audit needs the machine the runs trained on)"
        )
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
) -> RobustnessResult:
    """Score every model on every perturbation of every case, and write the results.

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

    Raises:
        InputError: A model trained on other classes or channels, members of an
            ensemble that disagree, or an output that cannot be written; before any
            work.
    """
    out = Path(out)
    device = torch.device(device)
    for name in (TABLE, SUMMARY, FIGURE, VERSUS):
        check_output_file(out / name)
    loaded_models = [_load(m, device, labels) for m in models]
    perturbations = suite.perturbations()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    seconds = {"load": 0.0, "perturb": 0.0, "score": 0.0}
    show = progress and sys.stderr.isatty()  # a scheduler's log gets a line per case
    bar = tqdm(cases, disable=not show, desc="robustness", unit="case")
    for index, case in enumerate(bar, start=1):
        t = time.perf_counter()
        loaded = load_case(case, with_label=True)
        seconds["load"] += time.perf_counter() - t
        for p in perturbations:
            t = time.perf_counter()
            image = perturb(loaded.image, loaded.affine, p, suite, case.case_id)
            perturbed = replace(loaded, image=image)
            seconds["perturb"] += time.perf_counter() - t
            t = time.perf_counter()
            for model, (net, card) in zip(models, loaded_models, strict=True):
                rows.append(_score(model, net, card, perturbed, p, device))
            seconds["score"] += time.perf_counter() - t
        if not show:
            elapsed = time.perf_counter() - t0
            logger.info(
                f"robustness: case {index} of {len(cases)}: {len(perturbations)} images x "
                f"{len(models)} models scored ({elapsed:.0f} s)"
            )
    bar.close()
    summary = _summarise(rows)
    versus = _versus(rows, models) if all(m.method is not None for m in models) else {}
    result = RobustnessResult(out, suite.to_dict(), rows, summary, versus)
    seconds["total"] = time.perf_counter() - t0
    _write(result, models, cases, seconds)
    return result


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


def _score(model: AuditModel, net, card: ModelCard, loaded, p: Perturbation, device) -> dict:
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
    )[0]
    row: dict[str, Any] = {
        "model": model.name,
        "method": model.method,
        "train_size": model.train_size,
        "seed": model.seed,
        "kind": p.kind,
        "strength": p.strength,
        "level": p.level,
        "case": loaded.case_id,
    }
    for value, name in card.class_names.items():
        if value:
            d = float(score.dice[value])
            row[f"dice_{name}"] = None if math.isnan(d) else d
    return row


def _class_keys(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r if k.startswith("dice_")))


def _case_mean(row: dict, keys: list[str]) -> float:
    values = [row[k] for k in keys if row.get(k) is not None]
    return float(np.mean(values)) if values else float("nan")


def _summarise(rows: list[dict]) -> list[dict[str, Any]]:
    """Mean Dice per (model, perturbation) and its drop from the clean image."""
    keys = _class_keys(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["kind"], r["strength"]), []).append(r)
    clean = {m: g for (m, k, _), g in groups.items() if k == "clean"}
    out = []
    for (model, kind, strength), group in groups.items():
        entry: dict[str, Any] = {"model": model, "kind": kind, "strength": strength}
        for key in [*keys, "dice_mean"]:
            values = [_case_mean(r, keys) if key == "dice_mean" else r.get(key) for r in group]
            base = [
                _case_mean(r, keys) if key == "dice_mean" else r.get(key)
                for r in clean.get(model, [])
            ]
            entry[key] = _nanmean(values)
            entry[key.replace("dice_", "drop_", 1)] = _nanmean(values) - _nanmean(base)
        entry["n_cases"] = len(group)
        out.append(entry)
    return out


def _nanmean(values) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _versus(rows: list[dict], models: Sequence[AuditModel]) -> dict[str, dict[str, list]]:
    """Per perturbation: the experiment's seed-level comparison with the baseline of the
    Dice under it and of its drop from the clean image (paired by seed and case)."""
    methods = list(dict.fromkeys(m.method for m in models))
    keys = _class_keys(rows)
    clean = {(r["model"], r["case"]): r for r in rows if r["kind"] == "clean"}
    by_p: dict[tuple[str, float], dict[str, dict]] = {}
    for r in rows:
        runs = by_p.setdefault((r["kind"], r["strength"]), {})
        result = runs.setdefault(
            r["model"],
            {"train_size": r["train_size"], "method": r["method"], "seed": r["seed"],
             "cases": [], "drops": []},
        )  # fmt: skip
        scores = {k: r.get(k) for k in keys}
        base = clean[(r["model"], r["case"])]
        result["cases"].append({"case": r["case"], **scores})
        result["drops"].append(
            {"case": r["case"], **{k: _minus(r.get(k), base.get(k)) for k in keys}}
        )
    out = {}
    for (kind, strength), runs in by_p.items():
        name = Perturbation(kind, strength, 0).name
        dice = list(runs.values())
        drops = [{**r, "cases": r["drops"]} for r in dice]
        out[name] = {
            "dice": summarise(dice, methods=methods),
            "drop": summarise(drops, methods=methods) if kind != "clean" else [],
        }
    return out


def _minus(a, b):
    return None if a is None or b is None else float(a) - float(b)


def _write(result: RobustnessResult, models, cases, seconds: dict[str, float]) -> None:
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    keys = _class_keys(result.rows)
    buffer = io.StringIO()
    columns = ["model", "method", "train_size", "seed", "kind", "strength", "level", "case"]
    writer = csv.DictWriter(buffer, fieldnames=[*columns, *keys], lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    atomic_write_text(out / TABLE, buffer.getvalue())
    payload = {
        "suite": result.suite,
        "models": [
            {
                "name": m.name,
                "checkpoints": [str(c) for c in m.checkpoints],
                "method": m.method,
                "train_size": m.train_size,
                "seed": m.seed,
            }
            for m in models
        ],  # fmt: skip
        "cases": [c.case_id for c in cases],
        # where the time went: loading cases, making the perturbed images, scoring them
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "summary": [{k: _finite(v) for k, v in row.items()} for row in result.summary],
    }
    atomic_write_text(out / SUMMARY, json.dumps(payload, indent=1) + "\n")
    _figure(result, out / FIGURE)
    if result.versus:
        atomic_write_text(out / VERSUS, _versus_markdown(result.versus))


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _versus_markdown(versus: dict[str, dict[str, list]]) -> str:
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
        drops = {(r["train_size"], r["method"]): r for r in tables["drop"] if r["class"] == "mean"}
        for row in tables["dice"]:
            if row["class"] != "mean":
                continue
            d = drops.get((row["train_size"], row["method"]))
            drop = "" if d is None else f"{100 * d['dice_mean']:+.1f}"
            lines.append(
                f"| {name} | {row['train_size']} | {row['method']} | "
                f"{100 * row['dice_mean']:.1f} | {format_delta(row)} | "
                f"{drop} | "
                f"{'' if d is None else format_delta(d)} | "
                f"{'' if d is None else d.get('verdict') or ''} |"
            )
    return "\n".join(lines) + "\n"


def _figure(result: RobustnessResult, path: Path) -> None:
    from matplotlib.figure import Figure  # lazy: plotting only here

    kinds = [k for k in dict.fromkeys(r["kind"] for r in result.summary) if k != "clean"]
    group = _method_or_model(result.summary, result.rows)
    cols = min(4, max(1, len(kinds)))
    nrows = math.ceil(len(kinds) / cols) or 1
    fig = Figure(figsize=(3.6 * cols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        for label, members in group.items():
            xs, ys = [0.0], [_mean_of(result.summary, members, "clean", 0.0)]
            strengths = sorted({r["strength"] for r in result.summary if r["kind"] == kind})
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
    fig.suptitle(f"Dice under perturbation (suite v{result.suite['version']})")
    atomic_save_figure(fig, path, dpi=110)


def _method_or_model(summary, rows) -> dict[str, list[str]]:
    """The figure's lines: a method (its models averaged) in an experiment, else a model."""
    methods = {r["model"]: r["method"] for r in rows}
    if all(m is not None for m in methods.values()):
        out: dict[str, list[str]] = {}
        for model, method in methods.items():
            out.setdefault(method, []).append(model)
        return out
    return {m: [m] for m in dict.fromkeys(r["model"] for r in summary)}


def _mean_of(summary, models, kind, strength) -> float:
    values = [
        r["dice_mean"]
        for r in summary
        if r["model"] in models and r["kind"] == kind and r["strength"] == strength
    ]
    return _nanmean(values)


def suite_from(kinds: Sequence[str] | None, seed: int, beta: float | None) -> PerturbationSuite:
    """The suite of a command line's options (every kind when none is named)."""
    return PerturbationSuite(
        kinds=tuple(kinds) if kinds else tuple(KINDS),
        seed=seed,
        **({"beta": beta} if beta is not None else {}),
    )


def is_experiment(path: str | Path) -> bool:
    """Whether ``path`` is an experiment folder (it holds ``experiment.json``)."""
    return (Path(path) / "experiment.json").is_file()
