"""Planning: a dataset's fingerprint, and training defaults chosen from it (target
spacing, patch size, batch size) with the reasons, as nnU-Net plans its experiments."""

from __future__ import annotations

from pathlib import Path

from fdseg_core.data import load_dataset, num_classes, require_clean_dataset
from fdseg_core.errors import InputError
from fdseg_core.nn.memory import activation_bytes_per_voxel
from fdseg_core.planning.fingerprint import CaseFingerprint, Fingerprint, fingerprint
from fdseg_core.planning.planner import (
    DEFAULT_MEMORY_GB,
    MIN_LOW_BAND,
    Plan,
    plan_training,
    target_spacing,
)
from fdseg_core.plugins import get_backbone
from fdseg_core.train.checkpoint import build_model
from fdseg_core.train.config import TrainConfig

__all__ = [
    "DEFAULT_MEMORY_GB",
    "MIN_LOW_BAND",
    "CaseFingerprint",
    "Fingerprint",
    "Plan",
    "activation_bytes_per_voxel",
    "fingerprint",
    "plan_run",
    "plan_training",
    "save_plan",
    "target_spacing",
]


def plan_run(
    config: TrainConfig,
    *,
    memory_gb: float = DEFAULT_MEMORY_GB,
    fp: Fingerprint | None = None,
    progress: bool = False,
) -> tuple[Plan, Fingerprint]:
    """Plan the target spacing, patch size and batch size of a run on its dataset.

    The memory per voxel is measured on the network the config describes (backbone,
    fusion, band options), so the plan depends on them; the band width is checked
    against the planned patch only when the run splits bands.

    Args:
        config: The run (its patch size, target spacing and batch size are ignored).
        memory_gb: The budget of one training step, in GiB.
        fp: A fingerprint already made (default: made now, reading every case).
        progress: Show a progress bar while fingerprinting.

    Raises:
        ValueError: A backbone that takes one fixed input size, or a budget too small.
    """
    spec = get_backbone(config.backbone)
    if spec.fixed_size:
        raise InputError(
            f"backbone {spec.name!r} takes one input size (img_size): give the patch size "
            "instead of planning it"
        )
    info = load_dataset(config.dataset)
    if fp is None:
        require_clean_dataset(config.dataset, progress=progress)  # before the fingerprint
    fp = fp or fingerprint(info, progress=progress)
    in_channels = len(info.channel_names)
    model = build_model(config, in_channels, num_classes(info.labels))
    divisor = model.size_divisor
    divisors = divisor if isinstance(divisor, tuple) else (divisor,) * 3
    model_in = in_channels * (2 if config.bands == "volume" else 1)
    per_voxel = activation_bytes_per_voxel(model, model_in, divisors)
    plan = plan_training(
        fp,
        size_divisor=divisors,
        bytes_per_voxel=per_voxel,
        memory_gb=memory_gb,
        beta=config.beta if config.fusion != "none" else None,
        band_dims=config.band_dims,
    )
    return plan, fp


def save_plan(plan: Plan, fp: Fingerprint, path: str | Path) -> Path:
    """Write ``plans.json``: the plan, its reasons and the fingerprint it came from."""
    return plan.save(path, fingerprint=fp.to_dict())
