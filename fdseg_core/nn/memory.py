"""What a network needs of memory to train: measured on the network itself."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TRAINING_FACTOR", "activation_bytes_per_voxel", "training_step_bytes"]

#: Activations a training step keeps per forward activation (the values and their
#: gradients).
TRAINING_FACTOR = 2.0
#: Bytes a parameter costs while training with Adam: the weight, its gradient and the
#: two moments (float32).
PARAMETER_BYTES = 16


def activation_bytes_per_voxel(model: nn.Module, in_channels: int, divisor: Sequence[int]) -> float:
    """Training memory of ``model`` per input voxel, in bytes (float32).

    The model runs once on a small zero input (a multiple of ``divisor`` per axis, at
    least 16 and twice the divisor) under ``torch.no_grad``; the elements of every leaf
    module's output are summed and divided by the input's voxels, then multiplied by 4
    bytes and by :data:`TRAINING_FACTOR`.
    """
    # at least twice the divisor: the deepest stage then keeps 2 voxels per axis, which
    # instance normalisation needs (it refuses a single one, in eval mode too)
    size = [d * max(2, math.ceil(16 / d)) for d in divisor]
    elements = 0

    def count(_module, _inputs, output):
        nonlocal elements
        outputs = output if isinstance(output, list | tuple) else [output]
        elements += sum(o.numel() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    voxels = math.prod(size)
    return (elements / voxels + in_channels) * 4.0 * TRAINING_FACTOR


def training_step_bytes(
    model: nn.Module, in_channels: int, divisor: Sequence[int], patch: Sequence[int], batch: int
) -> int:
    """The memory one training step of ``batch`` patches of ``patch`` voxels needs, in
    bytes: the activations (:func:`activation_bytes_per_voxel`) and the parameters with
    their gradients and optimiser moments. An estimate from the network, not a bound:
    the allocator and the framework add some."""
    per_voxel = activation_bytes_per_voxel(model, in_channels, divisor)
    params = sum(p.numel() for p in model.parameters()) * PARAMETER_BYTES
    return int(per_voxel * batch * math.prod(patch) + params)
