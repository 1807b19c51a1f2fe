"""Checkpoints: written atomically, rebuilt without guessing."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fdseg_core.atomic import atomic_torch_save
from fdseg_core.errors import InputError
from fdseg_core.infer.card import ModelCard
from fdseg_core.nn import FrequencyDisentangledNet
from fdseg_core.train.config import TrainConfig

__all__ = [
    "FORMAT_VERSION",
    "atomic_save",
    "find_checkpoints",
    "is_run_folder",
    "load_checkpoint",
    "load_model",
    "build_model",
]

#: 2: fusion at the backbone's fusion points (``fusion_at``), whole-volume training and
#: pipeline bands (``data.patch_size``, ``data.bands``). A version-1 checkpoint was
#: trained with the generic stems and head, and is read as ``fusion_at="generic"``.
FORMAT_VERSION = 2


#: ``torch.save`` through a temp file and a rename (:func:`fdseg_core.atomic.atomic_torch_save`).
atomic_save = atomic_torch_save


def find_checkpoints(path: str | os.PathLike, which: str = "best") -> list[Path]:
    """The checkpoints of a run folder: ``{which}.pt`` of a single run, or of every
    ``fold_k`` of a cross-validation (``fdseg train --folds-all``), in fold order.

    Args:
        path: A run folder.
        which: ``"best"`` or ``"last"``.

    Raises:
        FileNotFoundError: No such checkpoint in the folder or its folds.
        ValueError: ``which`` is neither.
    """
    if which not in ("best", "last"):
        raise InputError(f"which must be 'best' or 'last', got {which!r}")
    path = Path(path)
    if (path / f"{which}.pt").is_file():
        return [path / f"{which}.pt"]
    folds = sorted(
        (p for p in path.glob(f"fold_*/{which}.pt") if p.parent.name[5:].isdigit()),
        key=lambda p: int(p.parent.name[5:]),
    )
    if not folds:
        raise FileNotFoundError(
            f"{path} holds no {which}.pt, neither of a run nor of its folds (fold_k/{which}.pt)"
        )
    return folds


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether a folder holds a run's checkpoints (or its folds')."""
    path = Path(path)
    return path.is_dir() and (
        any((path / f"{w}.pt").is_file() for w in ("best", "last")) or any(path.glob("fold_*/*.pt"))
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`atomic_save` during training.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not an fdseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    unreadable = _unreadable(path)
    if unreadable:
        raise InputError(f"checkpoint {path} could not be read: {unreadable}{_other(path)}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupted or foreign file
        raise InputError(
            f"checkpoint {path} could not be read: {_reason(exc)}{_other(path)}"
        ) from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise InputError(f"{path} is not an fdseg checkpoint (no 'config'/'model' entries)")
    if int(ckpt.get("format_version", 1)) < 2:
        ckpt["config"].setdefault("fusion_at", "generic")
    return ckpt


def _other(path: Path) -> str:
    """What else a run folder offers when one of its checkpoints is damaged."""
    best = path.with_name("best.pt")
    if path.name == "last.pt" and best.is_file():
        return (
            f"; {best} is the run's best checkpoint (to predict with it, or to start a new "
            "run from the same options)"
        )
    return ""


def _unreadable(path: Path) -> str | None:
    """Why a file cannot be a checkpoint, told from its bytes before torch reads it:
    ``torch.save`` writes a zip archive (its legacy format, a pickle, starts with 0x80)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return "it is truncated or corrupted (not a complete zip archive)"
        return None
    if head[:1] == b"\x80":
        return None
    return "it is not a PyTorch checkpoint"


def _reason(exc: Exception) -> str:
    """Why torch could not read a file, in a few words (its zip reader's messages run
    to a paragraph of advice)."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if (
        "pytorchstreamreader" in lowered
        or "zip archive" in lowered
        or "central directory" in lowered
    ):
        return "it is truncated or corrupted (not a complete zip archive)"
    if "invalid load key" in lowered or "unpickling" in lowered:
        return "it is not a PyTorch checkpoint"
    return text if len(text) <= 160 else text[:157] + "..."


def build_model(
    config: TrainConfig | Mapping[str, Any], in_channels: int, num_classes: int
) -> nn.Module:
    """The network a training config describes.

    Args:
        config: The run's :class:`TrainConfig` (a dict of its fields, as stored in a
            checkpoint, is read with :meth:`TrainConfig.from_dict`).
        in_channels: Image channels.
        num_classes: Output classes (background included).
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    return FrequencyDisentangledNet(
        config.backbone,
        in_channels,
        num_classes,
        spatial_dims=3,
        fusion=config.fusion,
        beta=config.beta,
        dims=tuple(config.dims) if config.dims else None,
        layout=config.layout,
        backend=config.backend,
        kernel=config.kernel,
        stem_channels=config.stem_channels,
        fusion_at=config.fusion_at,
        input_bands=config.bands,
        **config.backbone_options,
    )


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Rebuild the trained network of a checkpoint.

    Args:
        path: ``best.pt`` or ``last.pt`` of a training run.
        map_location: Device of the loaded weights.

    Returns:
        ``(model, card)``: the model in eval mode, and its
        :class:`~fdseg_core.infer.card.ModelCard` (classes, input pipeline, window,
        activation, flips, the training configuration).
    """
    ckpt = load_checkpoint(path, map_location)
    card = ModelCard.from_checkpoint(ckpt)
    model = build_model(ckpt["config"], card.in_channels, card.num_classes)
    model.load_state_dict(ckpt["model"])
    model.to(map_location).eval()
    return model, card
