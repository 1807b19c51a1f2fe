"""Spectral band operators: :func:`band_split` and :func:`band_fuse`.

Backends (chosen per call with ``backend=``):

* ``"torch"``: full ``torch.fft``; the reference of truth;
* ``"matmul"``: truncated DFT matrices applied with matmuls, the fast CPU path
  (no complex copies of the volume), for both layouts (``"reference"``: the paper's
  public code, with complex per-axis matrices);
* ``"triton"``: fused GPU kernels from ``fdseg_kernels`` (CUDA, or the CPU under
  ``TRITON_INTERPRET=1``), ``layout="centered"`` only.
"""

from __future__ import annotations

from fdseg_core.bands.api import (
    BACKENDS,
    LAYOUTS,
    available_backends,
    band_fuse,
    band_split,
    resolve_backend,
)
from fdseg_core.bands.operators import band_width
from fdseg_core.bands.paper import paper_band_fuse, paper_band_split

__all__ = [
    "BACKENDS",
    "LAYOUTS",
    "available_backends",
    "band_fuse",
    "band_split",
    "band_width",
    "paper_band_fuse",
    "paper_band_split",
    "resolve_backend",
]
