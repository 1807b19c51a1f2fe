"""The stages of a run before its first step, each callable and testable on its own:
the data (dataset, backbone and fold checks, preprocessing), the input shape and its
checks, the default optimiser, and the loader (the trainer,
:mod:`fdseg_core.train.trainer`, builds the model's optimisation from them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fdseg_core import data as fdata
from fdseg_core.bands import min_band_size
from fdseg_core.errors import InputError, OptionError
from fdseg_core.infer.card import ModelCard
from fdseg_core.nn.memory import training_step_bytes
from fdseg_core.plugins import get_backbone
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.distributed import DistInfo

__all__ = [
    "Optimisation",
    "TrainingData",
    "build_optimizer",
    "check_patch_bands",
    "input_shape",
    "make_loader",
    "prepare_data",
    "resumed_batches",
    "preprocessor_for",
    "split_cases",
    "steps_per_epoch",
]


@dataclass
class TrainingData:
    """What a run trains and validates on.

    Attributes:
        info: The dataset (:class:`~fdseg_core.data.DatasetInfo`).
        train_ids: Training case ids of this run.
        val_ids: Validation case ids.
        plan: The :class:`~fdseg_core.data.FoldPlan` that chose them.
        new_splits: A split to write as ``splits_final.json`` (``None``: exists or unused).
        preprocessor: The :class:`~fdseg_core.data.Preprocessor` of every input.
        train_vols: Preprocessed training volumes.
        val_vols: Preprocessed validation volumes.
        provenance: The backbone's name, providing package and version.
    """

    info: Any
    train_ids: list[str]
    val_ids: list[str]
    plan: Any
    new_splits: list[dict] | None
    preprocessor: Any
    train_vols: list
    val_vols: list
    provenance: dict[str, str | None]

    @property
    def num_classes(self) -> int:
        return fdata.num_classes(self.info.labels)

    @property
    def in_channels(self) -> int:
        """Image channels (the model gets twice as many with pipeline bands)."""
        return len(self.info.channel_names)

    @property
    def class_names(self) -> dict[int, str]:
        return fdata.class_names(self.info.labels)

    def card(self, config: TrainConfig, shape: tuple[int, ...], activation: str) -> ModelCard:
        """The run's model card (the ``data`` section of its checkpoints): what
        inference needs to rebuild inputs and read the logits (``activation``: the
        trainer's rule)."""
        bands = self.preprocessor.bands
        spacings = [v.loaded.spacing for v in self.train_vols]
        data = {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "labels": dict(self.info.labels),
            "channel_names": list(self.info.channel_names),
            "normalization": list(self.preprocessor.normalization),
            "target_spacing": list(config.target_spacing) if config.target_spacing else None,
            # the voxel size the model saw: the target, or the training cases' median
            "spacing": list(config.target_spacing)
            if config.target_spacing
            else [float(s) for s in np.median(np.asarray(spacings), axis=0)],
            "patch_size": list(shape),
            "bands": bands.as_dict() if bands is not None else None,
            # how logits become labels: the rule of the loss the model was trained with
            "activation": activation,
            # where the dataset was when the run started, so that a run resumed from
            # another working directory (or moved) finds it without being told
            "dataset_root": str(Path(config.dataset).resolve()),
        }
        return ModelCard.from_checkpoint(
            {"data": data, "config": config.to_dict(), "backbone_package": self.provenance}
        )


def _backbone_provenance(name: str) -> dict[str, str | None]:
    spec = get_backbone(name)
    return {"name": spec.name, "package": spec.package, "version": spec.version}


def split_cases(
    info, config: TrainConfig, out: Path
) -> tuple[list[str], list[str], Any, list[dict] | None]:
    """The training and validation case ids of a run.

    The k-fold split is a property of the dataset, not of the run: it is made with a
    fixed seed (so runs with different seeds, and ``fdseg experiment``, share their
    held-out cases) and kept in ``out/splits_final.json`` (nnU-Net's format), which a
    resumed run reads back. The ``"all"`` fold uses no split file.

    Returns:
        ``(train_ids, val_ids, plan, new_splits)``: ``plan`` is the
        :class:`~fdseg_core.data.FoldPlan`; ``new_splits`` the split to write into
        ``out/splits_final.json`` (``None`` when it exists or is not needed). Nothing
        is written here.

    Raises:
        ValueError: Folds the data cannot honour, a split file with another number of
            folds, or more ``train_cases`` than the fold holds.
    """
    case_ids = [c.case_id for c in info.training]
    plan = fdata.plan_folds(len(case_ids), config.n_folds, config.fold)
    pool, val_ids, new_splits = fdata.fold_cases(
        case_ids, plan, split_file=Path(out) / "splits_final.json"
    )
    train_ids = fdata.select_subset(
        pool, config.train_cases, seed=config.seed, draw=config.case_draw
    )
    return train_ids, val_ids, plan, new_splits


def preprocessor_for(config: TrainConfig, info) -> Any:
    """The :class:`~fdseg_core.data.Preprocessor` a config asks for on a dataset."""
    bands = None
    if config.bands == "volume":
        if config.layout != "centered":
            raise InputError(
                "--bands volume needs --layout centered: the pipeline's low band is averaged "
                "onto each patch's band grid, which only the centred (low-frequency) band allows"
            )
        bands = fdata.VolumeBands(config.beta, config.band_dims)
    return fdata.Preprocessor(
        normalization=config.normalization or fdata.default_normalization(info),
        target_spacing=config.target_spacing,
        bands=bands,
    )


def prepare_data(config: TrainConfig, out: Path) -> TrainingData:
    """Read and check the dataset, check the backbone, plan the folds, preprocess.

    The checks run in the order a user reads the options: the dataset (every case,
    named in errors), the backbone, then the folds.

    Raises:
        FileNotFoundError: Missing dataset files.
        ValueError: Bad dataset, unknown backbone, folds the data cannot honour.
    """
    info = fdata.load_dataset(config.dataset)
    fdata.require_clean_dataset(config.dataset)  # every case, cached by its files' stamps
    provenance = _backbone_provenance(config.backbone)
    train_ids, val_ids, plan, new_splits = split_cases(info, config, out)
    prep = preprocessor_for(config, info)
    by_id = {c.case_id: c for c in info.training}
    return TrainingData(
        info=info,
        train_ids=train_ids,
        val_ids=val_ids,
        plan=plan,
        new_splits=new_splits,
        preprocessor=prep,
        train_vols=[prep(by_id[i]) for i in train_ids],
        val_vols=[prep(by_id[i]) for i in val_ids],
        provenance=provenance,
    )


def input_shape(config: TrainConfig, volumes: list, divisor: int) -> tuple[int, int, int]:
    """The spatial shape of a training sample.

    A patch size as given, or with ``patch_size="full"`` the largest extent of the
    training volumes on each axis, rounded up to a multiple of ``divisor`` (the
    backbone's size divisor), so that whole volumes batch together and need no
    padding inside the model.
    """
    if not config.whole_volumes:
        return tuple(config.patch_size)  # type: ignore[return-value]
    biggest = np.max([v.image.shape[1:] for v in volumes], axis=0)
    return tuple(int(math.ceil(s / divisor) * divisor) for s in biggest)  # type: ignore[return-value]


def resumed_batches(loader: torch.utils.data.DataLoader, skip_steps: int):
    """The epoch's batches from step ``skip_steps`` on (a run resumed mid-epoch).

    Sample ``i`` of an epoch depends only on ``(seed, epoch, i)``
    (:class:`~fdseg_core.data.PatchDataset`), so skipping is done on the indices,
    without making the samples that were already trained on.
    """
    if skip_steps <= 0:
        return loader
    indices = list(loader.sampler)[skip_steps * loader.batch_size :]
    return torch.utils.data.DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=indices,
        num_workers=loader.num_workers,
        drop_last=True,
        pin_memory=loader.pin_memory,
        # a loader's iterator draws its base seed from this generator: from the global
        # one, it would shift the random numbers of the steps after the restored state
        # (the epoch's own iterator drew it before the run stopped)
        generator=torch.Generator().manual_seed(0),
    )


def check_patch_bands(config: TrainConfig, shape: tuple[int, ...], divisor: Any) -> None:
    """Refuse, before anything is written, a patch whose low band keeps no sample.

    The network pads its input to a multiple of its size divisor and then splits it,
    so the bound applies to the padded size; the message names the option and the
    value the user gave.

    Raises:
        OptionError: A band axis, padded, below :func:`~fdseg_core.bands.min_band_size`.
    """
    if config.fusion == "none" or config.bands == "volume":
        return
    divisors = divisor if isinstance(divisor, tuple) else (divisor,) * len(shape)
    need = min_band_size(config.beta)
    for d in config.band_dims:
        axis = d - 2
        padded = math.ceil(shape[axis] / divisors[axis]) * divisors[axis]
        if padded < need:
            given = "full (whole volumes)" if config.whole_volumes else " ".join(map(str, shape))
            raise OptionError(
                f"{{patch_size}} {given}: axis {axis} is {shape[axis]} voxels ({padded} after "
                f"padding to the network's size divisor {divisors[axis]}), and beta="
                f"{config.beta} keeps no low-band sample below {need} on a band axis; give "
                f"a patch of at least {need} on the band axes, or a larger {{beta}}",
                "patch_size",
                "beta",
            )


def check_patch_fits(
    config: TrainConfig,
    shape: tuple[int, ...],
    net: nn.Module,
    in_channels: int,
    device: torch.device,
    *,
    memory_gb: float | None = None,
) -> None:
    """Refuse, before anything is written, a patch the network cannot take as it is, or
    a step that would not fit in memory.

    * A patch must be a multiple of the network's size divisor on every axis: the
      network would pad any other size, training on voxels that are not the data.
    * One training step (:func:`fdseg_core.nn.memory.training_step_bytes`, measured on
      the network) must fit in the memory free on the device (a CUDA device's free
      memory, or the machine's available memory), and in ``memory_gb`` when given.

    Raises:
        OptionError: Naming the option and the value given, the estimate, and how to go
            on.
    """
    divisor = net.size_divisor
    divisors = divisor if isinstance(divisor, tuple) else (divisor,) * len(shape)
    if not config.whole_volumes:
        bad = [i for i, (p, d) in enumerate(zip(shape, divisors, strict=True)) if p % d]
        if bad:
            fixed = [math.ceil(p / d) * d for p, d in zip(shape, divisors, strict=True)]
            raise OptionError(
                f"{{patch_size}} {' '.join(map(str, shape))}: the network takes multiples of "
                f"{' x '.join(map(str, divisors))} voxels (axis {bad[0]} is {shape[bad[0]]}); "
                f"it would pad the rest with zeros: give {' '.join(map(str, fixed))}",
                "patch_size",
            )
    model_in = in_channels * (2 if config.bands == "volume" else 1)
    need = training_step_bytes(net, model_in, divisors, shape, config.batch_size)
    free, where = free_memory(device)
    limits = [(free, f"{where} ({free / 2**30:.1f} GiB)", ())] if free is not None else []
    if memory_gb is not None:
        limits.append(
            (int(memory_gb * 2**30), f"the budget of {{memory_gb}} {memory_gb:g}", ("memory_gb",))
        )
    for limit, what, named in limits:
        if need > limit:
            given = "whole volumes of " if config.whole_volumes else ""
            raise OptionError(
                f"{{patch_size}} {given}{' '.join(map(str, shape))} with {{batch_size}} "
                f"{config.batch_size}: one training step needs about {need / 2**30:.2g} GiB "
                f"(measured on the network), more than {what}; give a smaller {{patch_size}} "
                "or {batch_size}, or let `fdseg plan` choose sizes for a budget",
                "patch_size",
                "batch_size",
                *named,
            )


def free_memory(device: torch.device) -> tuple[int | None, str]:
    """Bytes free for a training step on ``device``, and where they are: a CUDA
    device's free memory, or this machine's available memory (``None`` when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"the free memory of {torch.cuda.get_device_name(device)}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine's available memory"
    except OSError:
        pass
    return None, "this machine's memory"


def steps_per_epoch(config: TrainConfig, n_train: int, world_size: int) -> int:
    """Optimiser steps per epoch: ``iters_per_epoch``, or one pass over the cases."""
    if config.iters_per_epoch is not None:
        return config.iters_per_epoch
    return max(1, math.ceil(n_train / (config.batch_size * world_size)))


def build_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW, Adam, or SGD (Nesterov, momentum 0.99 as nnU-Net), from the config."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
    )


@dataclass
class Optimisation:
    """Everything that updates the weights (and is saved in checkpoints)."""

    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    use_amp: bool
    grad_clip: float

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def make_loader(
    config: TrainConfig,
    volumes: list,
    shape: tuple[int, int, int],
    steps: int,
    dist_info: DistInfo,
    device: torch.device,
) -> tuple[Any, torch.utils.data.DataLoader]:
    """The epoch's samples (:class:`~fdseg_core.data.PatchDataset`) and their loader.

    Returns:
        ``(dataset, loader)``; call ``dataset.set_epoch(e)`` before each epoch.
    """
    dataset = fdata.PatchDataset(
        volumes,
        patch_size=shape,
        samples_per_epoch=steps * config.batch_size * dist_info.world_size,
        foreground_oversample=config.foreground_oversample,
        augment=config.augment,
        seed=config.seed,
        whole_volumes=config.whole_volumes,
        intensity_augment=config.bands == "model",
    )
    sampler = None
    if dist_info.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(
            dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=False
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=config.num_workers,
        drop_last=True,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )
    return dataset, loader
