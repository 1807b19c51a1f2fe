"""Checkpoints: written atomically, rebuilt without guessing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fdseg_core.choices import activation_of_loss

__all__ = [
    "FORMAT_VERSION",
    "atomic_save",
    "atomic_write_text",
    "load_checkpoint",
    "load_model",
    "build_model",
]

#: 2: fusion at the backbone's fusion points (``fusion_at``), whole-volume training and
#: pipeline bands (``data.patch_size``, ``data.bands``). A version-1 checkpoint was
#: trained with the generic stems and head, and is read as ``fusion_at="generic"``.
FORMAT_VERSION = 2


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text through a temp file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temp file + ``os.replace``: an interrupted write never
    leaves a half-written file nor destroys the previous good one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`atomic_save` during training.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not an fdseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupted or foreign file
        raise ValueError(f"checkpoint {path} could not be read: {exc}") from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not an fdseg checkpoint (no 'config'/'model' entries)")
    if int(ckpt.get("format_version", 1)) < 2:
        ckpt["config"].setdefault("fusion_at", "generic")
    return ckpt


def build_model(config: dict, in_channels: int, num_classes: int) -> nn.Module:
    """The network a training config describes."""
    from fdseg_core.nn import FrequencyDisentangledNet

    return FrequencyDisentangledNet(
        config["backbone"],
        in_channels,
        num_classes,
        spatial_dims=3,
        fusion=config["fusion"],
        beta=config["beta"],
        dims=tuple(config["dims"]) if config.get("dims") else None,
        layout=config["layout"],
        backend=config["backend"],
        stem_channels=config["stem_channels"],
        fusion_at=config.get("fusion_at", "auto"),
        input_bands=config.get("bands", "model"),
        **config.get("backbone_options", {}),
    )


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the trained network of a checkpoint.

    Args:
        path: ``best.pt`` or ``last.pt`` of a training run.
        map_location: Device of the loaded weights.

    Returns:
        ``(model, info)``: the model in eval mode, and a dict with ``config`` (the
        training configuration) and the data description needed at inference
        (``in_channels``, ``num_classes``, ``labels``, ``channel_names``,
        ``normalization``, ``patch_size``, ``target_spacing``, ``bands``, and
        ``activation``: how logits become labels, the rule of the loss it was trained
        with; a checkpoint written before it was recorded takes it from its config's
        loss), at top level;
        :meth:`fdseg_core.data.Preprocessor.from_meta` rebuilds the input pipeline.
    """
    ckpt = load_checkpoint(path, map_location)
    data = ckpt["data"]
    model = build_model(ckpt["config"], data["in_channels"], data["num_classes"])
    model.load_state_dict(ckpt["model"])
    model.to(map_location).eval()
    info = dict(data)
    info["config"] = ckpt["config"]
    # the shape the model was trained on (a whole-volume run: its padded volume shape)
    info["patch_size"] = list(data.get("patch_size") or ckpt["config"]["patch_size"])
    info.setdefault("bands", None)
    info.setdefault("activation", activation_of_loss(ckpt["config"].get("loss", "dice_ce")))
    info["backbone_package"] = ckpt.get("backbone_package")
    return model, info
