"""The one configuration object of a training job."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TrainConfig",
    "BANDS",
    "FULL",
    "FUSIONS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
]

FUSIONS = ("none", "early", "late")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("poly", "cosine", "constant")
LOSSES = ("dice_ce", "sigmoid_dice")
DEVICES = ("auto", "cpu", "cuda")
FUSION_AT = ("auto", "generic")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
#: Where the band split is computed: in the model on each input (patch or whole
#: volume), or once per whole volume in the data pipeline (bands cropped with the patch).
BANDS = ("model", "volume")
#: ``patch_size`` value that trains on whole volumes (padded to a common shape).
FULL = "full"


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; written into every checkpoint.

    A run is reproducible from its config alone: the dataset path, the fold and
    the subset, the network, the optimisation and the seed are all here.

    Attributes:
        dataset: Root of a dataset in the nnU-Net v2 or MSD layout.
        out: Output folder (checkpoints, logs, plots, split).
        backbone: Registered backbone name (``fdseg backbones`` lists them).
        fusion: ``"none"`` (baseline), ``"early"`` or ``"late"``.
        beta: Relative width of the low band.
        dims: Band dims of the ``(N, C, D, H, W)`` input; ``None``: the first two spatial dims.
        layout: ``"centered"`` or ``"reference"`` (the paper's code).
        backend: Band operator backend (``"auto"``, ``"torch"``, ``"matmul"``, ``"triton"``).
        stem_channels: Channels of the generic frequency stems and head.
        fusion_at: ``"auto"``: fuse at the backbone's fusion points when it declares
            them (the paper's models); ``"generic"``: always generic stems and head.
        backbone_options: Extra keyword arguments of the backbone builder.
        recipe: Name of the recipe the values came from (``"default"``, ``"paper"``;
            :mod:`fdseg_core.train.recipes`); informative, every value is a field.
        loss: ``"dice_ce"`` (soft Dice + cross-entropy, as nnU-Net) or ``"sigmoid_dice"``
            (the paper code's V-Net Dice on per-channel sigmoids).
        epochs: Number of epochs (an upper bound with early stopping).
        iters_per_epoch: Optimiser steps per epoch (per process); ``None``: one pass over
            the training cases, ``ceil(cases / (batch_size * processes))`` (the paper's).
        patch_size: Training patch ``(D, H, W)``, or ``"full"``: whole volumes, padded
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
        train_cases: Train on the first N cases of the fold's training list (``None``: all).
        seed: Seed of everything random.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        num_workers: Data-loading worker processes.
        normalization: Per-channel normalisation override (``None``: chosen from channel names).
        target_spacing: Resample cases to this spacing (mm) before training (``None``: keep).
        foreground_oversample: Probability that a patch is centred on foreground.
        overlap: Sliding-window overlap at validation.
        tensorboard: Also log to TensorBoard (needs the ``tensorboard`` extra).
        progress: Show progress bars.
    """

    dataset: str
    out: str
    backbone: str = "unet3d"
    fusion: str = "early"
    beta: float = 0.1
    dims: tuple[int, ...] | None = None
    layout: str = "centered"
    backend: str = "auto"
    stem_channels: int = 8
    fusion_at: str = "auto"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    recipe: str = "default"
    loss: str = "dice_ce"
    epochs: int = 50
    iters_per_epoch: int | None = 50
    patch_size: tuple[int, int, int] | str = (64, 64, 64)
    bands: str = "model"
    augment: bool = True
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adamw"
    schedule: str = "poly"
    grad_clip: float = 12.0
    amp: bool = True
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    val_every: int = 5
    early_stop_patience: int | None = None
    early_stop_min_delta: float = 0.0
    early_stop_min_epochs: int = 0
    n_folds: int | None = None
    fold: int | str = 0
    train_cases: int | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    normalization: tuple[str, ...] | None = None
    target_spacing: tuple[float, float, float] | None = None
    foreground_oversample: float = 0.33
    overlap: float = 0.5
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        # normalise sequences coming from JSON / click into tuples
        for name in ("patch_size", "dims", "normalization", "target_spacing"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple | str):
                object.__setattr__(self, name, tuple(value))
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {self.fusion!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.fusion_at not in FUSION_AT:
            raise ValueError(f"fusion_at must be one of {list(FUSION_AT)}, got {self.fusion_at!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode must be one of {list(COMPILE_MODES)}, got {self.compile_mode!r}"
            )
        if self.bands not in BANDS:
            raise ValueError(f"bands must be one of {list(BANDS)}, got {self.bands!r}")
        if self.bands == "volume" and self.fusion == "none":
            raise ValueError("bands='volume' splits for a fusion model; the baseline has none")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if not 0.0 < float(self.beta) < 1.0:
            raise ValueError(f"beta must lie in (0, 1), got {self.beta!r}")
        for name in (
            "epochs",
            "batch_size",
            "val_every",
            "stem_channels",
        ):
            _positive_int(name, getattr(self, name))
        if isinstance(self.patch_size, str):
            if self.patch_size != FULL:
                raise ValueError(
                    f"patch_size must be 3 positive integers or 'full', got {self.patch_size!r}"
                )
        elif len(self.patch_size) != 3 or any(
            isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in self.patch_size
        ):
            raise ValueError(
                f"patch_size must be 3 positive integers or 'full', got {self.patch_size!r}"
            )
        if self.iters_per_epoch is not None:
            _positive_int("iters_per_epoch", self.iters_per_epoch)
        if self.early_stop_patience is not None:
            _positive_int("early_stop_patience", self.early_stop_patience)
        if (
            isinstance(self.early_stop_min_epochs, bool)
            or not isinstance(self.early_stop_min_epochs, int)
            or self.early_stop_min_epochs < 0
        ):
            raise ValueError(
                f"early_stop_min_epochs must be an integer >= 0, got {self.early_stop_min_epochs!r}"
            )
        if not self.early_stop_min_delta >= 0:
            raise ValueError(
                f"early_stop_min_delta must be >= 0, got {self.early_stop_min_delta!r}"
            )
        if not isinstance(self.recipe, str) or not self.recipe:
            raise ValueError(f"recipe must be a name, got {self.recipe!r}")
        if self.train_cases is not None:
            _positive_int("train_cases", self.train_cases)
        if self.n_folds is not None and (
            isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2
        ):
            raise ValueError(f"n_folds must be an integer >= 2 or None, got {self.n_folds!r}")
        if self.fold != "all" and (
            isinstance(self.fold, bool) or not isinstance(self.fold, int) or self.fold < 0
        ):
            raise ValueError(f"fold must be an integer >= 0 or 'all', got {self.fold!r}")
        # whether fold < n_folds (and n_folds <= cases) is checked against the dataset,
        # after the dataset and the backbone (fdseg_core.data.plan_folds)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(
                "weight_decay and grad_clip must be >= 0, "
                f"got {self.weight_decay!r} and {self.grad_clip!r}"
            )
        if not 0.0 <= self.foreground_oversample <= 1.0:
            raise ValueError(
                f"foreground_oversample must lie in [0, 1], got {self.foreground_oversample!r}"
            )
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        return cls(**data)

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
