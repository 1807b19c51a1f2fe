"""A built-in analytic volume for demos and benchmarks (no files, no downloads)."""

from __future__ import annotations

import torch

from fdseg_core.errors import InputError

__all__ = ["demo_volume"]


def demo_volume(shape: tuple[int, int, int] = (160, 160, 128), *, seed: int = 0) -> torch.Tensor:
    """A head-like volume: an ellipsoidal brain, two ventricles, four bright nuclei, noise.

    Args:
        shape: ``(X, Y, Z)``.
        seed: Seed of the noise.

    Returns:
        float32 tensor of shape ``(X, Y, Z)`` with QSM-like values (ppm).
    """
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"shape must be 3 positive sizes, got {shape}")
    axes = [torch.linspace(-1.0, 1.0, n) for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")

    def ellipsoid(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    vol = torch.zeros(shape)
    brain = ellipsoid(0, 0, 0, 0.8, 0.9, 0.75)
    vol[brain] = -0.03
    vol[brain & ~ellipsoid(0, 0, 0, 0.72, 0.82, 0.67)] = 0.02
    for side in (-1, 1):
        vol[ellipsoid(0.12 * side, 0.05, 0.1, 0.06, 0.25, 0.12)] = 0.0
        vol[ellipsoid(0.2 * side, 0.1, -0.05, 0.07, 0.1, 0.08)] = 0.13
        vol[ellipsoid(0.06 * side, -0.1, -0.25, 0.04, 0.05, 0.05)] = 0.10
        vol[ellipsoid(0.18 * side, -0.5, -0.45, 0.08, 0.09, 0.07)] = 0.15
    gen = torch.Generator().manual_seed(seed)
    vol += 0.005 * torch.randn(shape, generator=gen) * brain
    return vol
