"""Patch augmentation in torch: a random transform samples its parameters from a
``torch.Generator``, then a deterministic function applies them (reproducible, loggable)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AugmentParams", "sample_params", "apply_params"]


@dataclass(frozen=True)
class AugmentParams:
    """Sampled parameters of one augmentation."""

    flips: tuple[bool, bool, bool]
    rot90: int  # quarter turns in the (X, Y) plane
    scale: float
    shift: float
    gamma: float
    noise_std: float
    noise_seed: int


def sample_params(gen: torch.Generator, *, square_xy: bool) -> AugmentParams:
    """Draw one set of parameters (flips p=0.5 per axis; rot90 when X and Y match;
    intensity scale 0.9-1.1 and shift +-0.1 with p=0.5; gamma 0.7-1.5 with p=0.3;
    Gaussian noise sigma 0-0.1 with p=0.3)."""

    def u(lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=gen))

    flips = tuple(u() < 0.5 for _ in range(3))
    rot = int(torch.randint(0, 4, (), generator=gen)) if square_xy else 0
    apply_int = u() < 0.5
    scale, shift = (u(0.9, 1.1), u(-0.1, 0.1)) if apply_int else (1.0, 0.0)
    gamma = u(0.7, 1.5) if u() < 0.3 else 1.0
    noise = u(0.0, 0.1) if u() < 0.3 else 0.0
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    return AugmentParams(flips, rot, scale, shift, gamma, noise, seed)  # type: ignore[arg-type]


def apply_params(
    image: torch.Tensor, label: torch.Tensor, p: AugmentParams, *, intensity: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply parameters to ``image`` ``(C, X, Y, Z)`` and ``label`` ``(X, Y, Z)``.

    With ``intensity=False`` only the flips and rotations apply (they commute with the
    centred band split, so channels that hold pipeline bands stay bands).
    """
    dims = [i for i, f in enumerate(p.flips) if f]
    if dims:
        image = image.flip([d + 1 for d in dims])
        label = label.flip(dims)
    if p.rot90:
        image = torch.rot90(image, p.rot90, dims=(1, 2))
        label = torch.rot90(label, p.rot90, dims=(0, 1))
    if not intensity:
        return image.contiguous(), label.contiguous()
    image = image * p.scale + p.shift
    if p.gamma != 1.0:
        lo, hi = image.amin(), image.amax()
        rng = (hi - lo).clamp(min=1e-8)
        image = ((image - lo) / rng).pow(p.gamma) * rng + lo
    if p.noise_std > 0:
        gen = torch.Generator().manual_seed(p.noise_seed)
        image = image + p.noise_std * torch.randn(image.shape, generator=gen)
    return image.contiguous(), label.contiguous()
