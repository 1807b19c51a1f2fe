"""The one configuration object of a training job.

Every field carries its own description in its metadata: the help text, the allowed
choices or range, and whether it defines the run or only how it runs here
(``runtime``). :class:`TrainConfig` validates itself from that metadata, and the
command line builds its options from it (``fdseg_cli.options``), so a default, a
choice list or a range is written once, here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdseg_core.choices import (
    BACKENDS,
    BANDS,
    BEST_SELECTIONS,
    CASE_DRAWS,
    COMPILE_MODES,
    DEFAULT_BAND_DIMS,
    DEFAULT_BETA,
    DEFAULT_KERNEL,
    DEFAULT_OVERLAP,
    DEVICES,
    FULL,
    FUSION_AT,
    FUSIONS,
    KERNELS,
    LAYOUTS,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
)
from fdseg_core.errors import InputError
from fdseg_core.train.recipes import RECIPES

__all__ = [
    "LOCATION_FIELDS",
    "TrainConfig",
    "differing_run_fields",
    "BANDS",
    "FULL",
    "FUSIONS",
    "LOSSES",
    "OPTIMIZERS",
    "RUNTIME_FIELDS",
    "SCHEDULES",
    "option_spec",
]


def _opt(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    none_ok: bool = False,
    integer: bool = False,
    runtime: bool = False,
    cli: bool = True,
) -> Any:
    """A config field with its description (see :func:`option_spec`)."""
    meta = {
        "help": help,
        "choices": choices,
        "low": low,
        "high": high,
        "open_low": open_low,
        "open_high": open_high,
        "none_ok": none_ok,
        "integer": integer,
        "runtime": runtime,
        "cli": cli,
    }
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def _count(default: int | None, help: str, *, low: int = 1, **options: Any) -> Any:
    """An integer field of at least ``low``, which may be ``None`` when that is its default
    (or ``none_ok`` says so)."""
    options.setdefault("none_ok", default is None)
    return _opt(default, help, low=low, integer=True, **options)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; written into every checkpoint.

    A run is reproducible from its config alone: the dataset path, the fold and the
    subset, the network, the optimisation and the seed are all here. The defaults are
    the ``"default"`` recipe (:mod:`fdseg_core.train.recipes`): the paper's network, loss
    and optimiser on 48 x 48 x 32 patches without augmentation, no fusion (what the
    experiments measured is in ``docs/findings.md``). The runtime fields only say how the
    run executes on this machine (:data:`RUNTIME_FIELDS`); ``--resume`` accepts changes
    to them, to ``epochs`` (a run can be extended or ended earlier) and to where the run
    and its dataset lie.

    Attributes:
        dataset: Root of a dataset in the nnU-Net v2 or MSD layout.
        out: Output folder (checkpoints, logs, plots, split).
        backbone: Registered backbone name (``fdseg backbones`` lists them).
        fusion: ``"none"`` (baseline, the default), ``"early"`` or ``"late"``. The
            ``"nnunet_like"`` recipe sets ``"late"``, ``"paper"`` ``"early"``.
        beta: Relative width of the low band.
        dims: Band dims of the ``(N, C, X, Y, Z)`` input; ``None``: the first two spatial dims.
        layout: ``"centered"`` or ``"reference"`` (the paper's code).
        backend: Band operator backend (``"auto"``, ``"torch"``, ``"matmul"``, ``"triton"``).
        kernel: Design of the Triton kernels (``"per_axis"``, ``"fused"``, ``"auto"``);
            a runtime option: a resumed run may change it.
        stem_channels: Channels of the generic frequency stems and head.
        fusion_at: ``"auto"``: fuse at the backbone's fusion points when it declares
            them (the paper's models); ``"generic"``: always generic stems and head.
        backbone_options: Extra keyword arguments of the backbone builder.
        recipe: Name of the recipe the values came from (``"default"``,
            ``"nnunet_like"``, ``"paper"``;
            :mod:`fdseg_core.train.recipes`); informative, every value is a field.
        loss: ``"sigmoid_dice"`` (the default: the paper code's V-Net Dice on
            per-channel sigmoids; such a model predicts by the sigmoid rule,
            :mod:`fdseg_core.infer.activation`) or ``"dice_ce"`` (soft Dice +
            cross-entropy, as nnU-Net; softmax, argmax).
        epochs: Number of epochs (an upper bound with early stopping).
        iters_per_epoch: Optimiser steps per epoch (per process); ``None``: one pass over
            the training cases, ``ceil(cases / (batch_size * processes))`` (the paper's).
        patch_size: Training patch ``(X, Y, Z)``, or ``"full"``: whole volumes, padded
            to a common shape that the backbone's size divisor divides (the paper's).
        bands: ``"model"``: the model splits each input (patch or whole volume);
            ``"volume"``: the pipeline splits each whole volume once and the patches
            carry both bands (``docs/network.md``).
        augment: Random flips, rotations and intensity changes of the training samples.
        batch_size: Patches per step (per process).
        lr: Peak learning rate.
        weight_decay: Weight decay.
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (Nesterov, momentum 0.99 as nnU-Net).
        schedule: ``"poly"`` (exponent 0.9), ``"cosine"`` or ``"constant"``.
        grad_clip: Gradient-norm clip (``0`` disables).
        amp: Mixed precision on CUDA (ignored on the CPU).
        channels_last: Keep 3D weights and batches in the channels-last memory format
            (about 20 % faster 3D convolutions on the CPU; ``benchmarks/README.md``).
        compile: Train the model through ``torch.compile`` (one graph: the band
            operators are custom ops); validation runs eagerly.
        compile_mode: ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"`` (CUDA
            graphs on a GPU) or ``"max-autotune"``.
        val_every: Validate every this many epochs (and after the last).
        early_stop_patience: Stop when this many validations in a row did not improve
            the best mean validation Dice by more than ``early_stop_min_delta``
            (``None``: never stop early).
        early_stop_min_delta: Smallest improvement that counts.
        early_stop_min_epochs: Never stop before this many epochs (a run's validation
            Dice can sag while its training loss is still falling fast, before it takes
            off; ``docs/network.md``).
        n_folds: Folds of the deterministic split (``None``: 5, or as many as there are
            training cases when fewer; a single case trains and validates on itself,
            nnU-Net's ``"all"`` fold). See :func:`fdseg_core.data.plan_folds`.
        fold: Fold used for validation, or ``"all"`` (train and validate on every case).
        train_cases: Train on N cases drawn from the fold's training list (``None``: all).
        case_draw: How those N cases are drawn: ``"nested"`` (one seeded permutation per
            seed; a smaller N's cases are among a larger N's) or ``"independent"`` (a
            draw per seed and N). See :func:`fdseg_core.data.select_subset`.
        seed: Seed of everything random.
        trainer: The :class:`~fdseg_core.train.trainer.Trainer` (sub)class that runs the
            loop, by name (``"Trainer"``; :data:`~fdseg_core.train.trainer.BUILTIN_TRAINERS`
            and plugins' trainers).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (runtime).
        num_workers: Data-loading worker processes (runtime).
        normalization: Per-channel normalisation override (``None``: chosen from channel names).
        target_spacing: Resample cases to this spacing (mm) before training (``None``: keep).
        foreground_oversample: Probability that a patch is centred on foreground.
        overlap: Sliding-window overlap at validation.
        tensorboard: Also log to TensorBoard (needs the ``tensorboard`` extra; runtime).
        mlflow: Also log to MLflow: a tracking URI, or ``"local"`` for a file store beside
            the run (needs the ``mlflow`` extra; runtime;
            :class:`~fdseg_core.train.tracking.MLflowTracking`).
        progress: Show progress bars (runtime).
    """

    dataset: str = field(metadata={"help": "Dataset root.", "cli": False})
    out: str = field(metadata={"help": "Output folder.", "cli": False})
    backbone: str = _opt("paper_unet3d", "Registered backbone (see `fdseg backbones`).")
    fusion: str = _opt("none", "Baseline (none) or where the bands are fused.", choices=FUSIONS)
    beta: float = _opt(
        DEFAULT_BETA, "Relative band width.", low=0.0, high=1.0, open_low=True, open_high=True
    )
    dims: tuple[int, ...] | None = _opt(None, "Band dims.", cli=False)
    layout: str = _opt(
        "centered",
        "Band layout: the paper's text (centered) or its public code.",
        choices=LAYOUTS,
    )
    backend: str = _opt("auto", "Band operator backend.", choices=("auto", *BACKENDS))
    kernel: str = _opt(
        DEFAULT_KERNEL,
        "Design of the Triton kernels when they serve the band operators: per_axis, "
        "fused (two-pass) or auto; the same numbers up to rounding.",
        choices=KERNELS,
        runtime=True,
    )
    stem_channels: int = _count(8, "Channels of the generic stems and head.")
    fusion_at: str = _opt(
        "auto",
        "Fuse at the backbone's fusion points when it has them (auto), or always with "
        "generic stems and head.",
        choices=FUSION_AT,
    )
    backbone_options: dict[str, Any] = _opt({}, "Backbone builder options.", cli=False)
    recipe: str = _opt(
        "default",
        "A set of option values: fdseg's default (the paper's network, loss and optimiser "
        "on patches, without augmentation), fdseg's earlier nnU-Net-like default "
        "(nnunet_like), or the paper's code (whole volumes, its layout); printed when "
        "used. Options you give override it.",
        choices=tuple(RECIPES),
    )
    loss: str = _opt(
        "sigmoid_dice", "The paper code's sigmoid Dice, or Dice + cross-entropy.", choices=LOSSES
    )
    epochs: int = _count(50, "Epochs.")
    iters_per_epoch: int | None = _count(
        50,
        "Optimiser steps per epoch, or 'pass' for one pass over the training cases.",
        none_ok=True,
    )
    patch_size: tuple[int, int, int] | str = _opt(
        (48, 48, 32), "Patch size X Y Z, in voxels (the axes of the NIfTI array)."
    )
    bands: str = _opt(
        "model",
        "Where the band split happens: in the model on each input, or once per whole "
        "volume in the data pipeline (patches carry both bands).",
        choices=BANDS,
    )
    augment: bool = _opt(False, "Random flips, rotations and intensity changes.")
    batch_size: int = _count(2, "Patches per step.")
    lr: float = _opt(1e-3, "Peak learning rate.", low=0.0, open_low=True)
    weight_decay: float = _opt(1e-10, "Weight decay.", low=0.0)
    optimizer: str = _opt("adam", "Optimiser.", choices=OPTIMIZERS)
    schedule: str = _opt("constant", "Learning-rate schedule.", choices=SCHEDULES)
    grad_clip: float = _opt(0.0, "Gradient-norm clip (0 disables).", low=0.0)
    amp: bool = _opt(True, "Mixed precision on CUDA.")
    channels_last: bool = _opt(
        False, "Channels-last 3D weights and batches (about 20 % faster on the CPU)."
    )
    compile: bool = _opt(
        False,
        "Train through torch.compile (one graph; CUDA graphs with --compile-mode "
        "reduce-overhead on a GPU).",
    )
    compile_mode: str = _opt("default", "torch.compile mode.", choices=COMPILE_MODES)
    val_every: int = _count(5, "Validate every K epochs.")
    early_stop_patience: int | None = _count(
        None, "Stop after this many validations without improvement (default: never)."
    )
    best_selection: str = _opt(
        "dice",
        "How best.pt (and early stopping) reads the validations: the mean Dice of each "
        "(dice), or its exponential moving average, weight 0.9 (ema, as nnU-Net).",
        choices=BEST_SELECTIONS,
    )
    early_stop_min_delta: float = _opt(
        0.0, "Smallest mean-Dice gain that counts as an improvement.", low=0.0
    )
    early_stop_min_epochs: int = _count(0, "Never stop early before this many epochs.", low=0)
    n_folds: int | None = _count(
        None,
        "Cross-validation folds (default: 5, or one per training case when there are "
        "fewer; a single case trains and validates on itself).",
        low=2,
    )
    fold: int | str = _opt(0, "Validation fold, or 'all' to train and validate on every case.")
    train_cases: int | None = _count(
        None, "Train on this many cases of the fold (the paper varies it)."
    )
    case_draw: str = _opt(
        "nested",
        "How --train-cases are drawn: one seeded permutation per seed, whose first N are "
        "taken (nested: a smaller set is part of every larger one), or a draw per seed and "
        "size (independent).",
        choices=CASE_DRAWS,
    )
    seed: int = _opt(0, "Seed of everything random.", integer=True)
    trainer: str = _opt(
        "Trainer",  # trainer.DEFAULT_TRAINER (the config module imports no torch)
        "The trainer class that runs the loop (Trainer; TrainerRAdam: the RAdam optimiser; "
        "TrainerDiceFocal: Dice + focal loss, softmax; `fdseg trainers` lists them with "
        "those of plugins).",
    )
    device: str = _opt("auto", "Device.", choices=DEVICES, runtime=True)
    num_workers: int = _count(0, "Data-loading worker processes.", low=0, runtime=True)
    normalization: tuple[str, ...] | None = _opt(None, "Normalisation override.", cli=False)
    target_spacing: tuple[float, float, float] | None = _opt(
        None, "Resample cases to this spacing (mm) first."
    )
    foreground_oversample: float = _opt(
        0.33, "Probability that a patch is centred on foreground.", low=0.0, high=1.0, cli=False
    )
    overlap: float = _opt(
        DEFAULT_OVERLAP,
        "Sliding-window overlap at validation.",
        low=0.0,
        high=1.0,
        open_high=True,
        cli=False,
    )
    tensorboard: bool = _opt(False, "Also log to TensorBoard.", runtime=True)
    mlflow: str | None = _opt(
        None,
        "Also log the run to MLflow (the mlflow extra): parameters, every metric per step, "
        "the curves and logs as artifacts, an experiment's factors as tags; a tracking URI, "
        "or no value for a local file store beside the run (OUT/mlruns). A resumed run "
        "goes on in the same MLflow run; an unreachable server is a one-line warning.",
        runtime=True,
    )
    progress: bool = _opt(True, "Show progress bars.", runtime=True)

    def __post_init__(self) -> None:
        # normalise sequences coming from JSON / click into tuples
        for name in ("patch_size", "dims", "normalization", "target_spacing"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple | str):
                object.__setattr__(self, name, tuple(value))
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Checks that involve more than one field, or a field of its own shape."""
        # lazy: the band dispatch imports torch, and the CLI's --help reads this module
        from fdseg_core.bands.dispatch import check_names

        check_names(self.layout, self.backend, self.kernel)
        if self.bands == "volume" and self.fusion == "none":
            raise InputError("bands='volume' splits for a fusion model; the baseline has none")
        patch = self.patch_size
        if isinstance(patch, str):
            if patch != FULL:
                raise InputError(f"patch_size must be 3 positive integers or 'full', got {patch!r}")
        elif len(patch) != 3 or any(
            isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch
        ):
            raise InputError(f"patch_size must be 3 positive integers or 'full', got {patch!r}")
        if self.fold != "all" and (
            isinstance(self.fold, bool) or not isinstance(self.fold, int) or self.fold < 0
        ):
            raise InputError(f"fold must be an integer >= 0 or 'all', got {self.fold!r}")
        # whether fold < n_folds (and n_folds <= cases) is checked against the dataset,
        # after the dataset and the backbone (fdseg_core.data.plan_folds)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def run_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the runtime fields: what defines the run."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown configuration keys {unknown}")
        return cls(**data)

    @property
    def band_dims(self) -> tuple[int, ...]:
        """The band dims of the ``(N, C, X, Y, Z)`` input: ``dims``, or the default
        in-plane axes."""
        return tuple(self.dims or DEFAULT_BAND_DIMS)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def whole_volumes(self) -> bool:
        """Whether training samples are whole volumes (``patch_size == "full"``)."""
        return self.patch_size == FULL


#: Fields that say how a run executes on this machine, not what it computes: they may
#: change on ``--resume``.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("runtime")
)


#: Fields that say where a run's folder and its dataset lie, not what the run computes: a
#: run may be moved or copied, and resumed from anywhere, with its dataset given again.
LOCATION_FIELDS: frozenset[str] = frozenset({"out", "dataset"})


def differing_run_fields(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields that define a run whose values differ between a run's saved
    configuration and the one a resume asks for (both as :meth:`TrainConfig.to_dict`).

    The one rule of what a resume may change: runtime fields, ``epochs`` (a run may be
    extended or ended earlier) and where the run lies (:data:`LOCATION_FIELDS`) are not
    compared; every other field must be equal.
    """
    skip = RUNTIME_FIELDS | LOCATION_FIELDS | {"epochs"}
    keys = (set(saved) | set(wanted)) - skip
    return sorted(k for k in keys if saved.get(k) != wanted.get(k))


def option_spec(name: str) -> dict[str, Any]:
    """The description of a field: ``default``, ``help``, ``choices``, range
    (``low``/``high``, ``open_low``/``open_high``), ``integer``, ``none_ok``,
    ``runtime`` and ``cli`` (whether the command line offers it).

    Raises:
        ValueError: No such field.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise InputError(f"TrainConfig has no field {name!r}")
    f = fields[name]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return {"default": None if default is dataclasses.MISSING else default, **f.metadata}


def _describe_range(meta: dict[str, Any]) -> str:
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        left = "(" if meta["open_low"] else "["
        right = ")" if meta["open_high"] else "]"
        return f"lie in {left}{_num(low)}, {_num(high)}{right}"
    if meta["integer"]:
        if low is None:
            text = "an integer"
        else:
            text = "a positive integer" if low == 1 else f"an integer >= {_num(low)}"
        return f"be {text}" + (" or None" if meta["none_ok"] else "")
    if meta["open_low"] and low == 0:
        return "be positive"
    return f"be >= {_num(low)}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """Validate one field from its metadata; the message names the field and value."""
    meta = f.metadata
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise InputError(f"{f.name} must be one of {list(meta['choices'])}, got {value!r}")
        return
    if value is None and meta.get("none_ok"):
        return
    has_range = meta.get("low") is not None or meta.get("high") is not None
    if not meta.get("integer") and not has_range:
        return
    bad_type = isinstance(value, bool) or not isinstance(value, int | float)
    if meta.get("integer") and not isinstance(value, int):
        bad_type = True
    if bad_type or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"{f.name} must {_describe_range(meta)}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta["open_low"] else value < low)
    too_high = high is not None and (value >= high if meta["open_high"] else value > high)
    if too_low or too_high:
        raise InputError(f"{f.name} must {_describe_range(meta)}, got {value!r}")
