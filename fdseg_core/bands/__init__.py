"""Spectral band operators: :func:`band_split` and :func:`band_fuse`.

Backends (chosen per call with ``backend=``):

* ``"torch"``: full ``torch.fft``; the reference of truth;
* ``"matmul"``: truncated DFT matrices applied with matmuls, the fast CPU path
  (no complex copies of the volume), for both layouts (``"reference"``: the paper's
  public code, with complex per-axis matrices);
* ``"triton"``: fused GPU kernels from ``fdseg_kernels`` (CUDA, or the CPU under
  ``TRITON_INTERPRET=1``), ``layout="centered"`` only; ``kernel=`` picks their design
  (per-axis or two-pass), forward and backward, through the same custom ops.

Modules, top to bottom (a module imports only modules of lower layers, function-level
imports included): this package, :mod:`~.paper` and :mod:`~.api` (validation, the call
into the custom ops; the paper's pipeline reuses api's validation); :mod:`~.ops` (the
``torch.library`` custom ops and their autograd); :mod:`~.dispatch` (backend names and
their per-call resolution); ``fdseg_kernels``; the backends :mod:`~.matmul` and
:mod:`~.fft`; :mod:`~.checks` (the shape checks the kernels share); :mod:`~.operators`
(the per-axis matrices and the low band's shape).
"""

from __future__ import annotations

from fdseg_core.bands.api import (
    BACKENDS,
    KERNELS,
    LAYOUTS,
    available_backends,
    band_fuse,
    band_split,
    resolve_backend,
)
from fdseg_core.bands.operators import (
    band_width,
    low_band_shape,
    low_band_shape_at,
    min_band_size,
)
from fdseg_core.bands.paper import paper_band_fuse, paper_band_split

__all__ = [
    "BACKENDS",
    "KERNELS",
    "LAYOUTS",
    "available_backends",
    "band_fuse",
    "band_split",
    "band_width",
    "min_band_size",
    "low_band_shape",
    "low_band_shape_at",
    "paper_band_fuse",
    "paper_band_split",
    "resolve_backend",
]
