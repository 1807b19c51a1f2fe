"""fdseg_core: frequency-disentangled learning for 3D medical image segmentation.

Implements Fu et al., "Frequency Disentangled Learning for Segmentation of
Midbrain Structures from Quantitative Susceptibility Mapping Data"
(arXiv 2302.12980): spectral band operators (:func:`band_split`,
:func:`band_fuse`), a pluggy-based backbone registry, the frequency-disentangled
network, data handling, training, inference and evaluation.

Importing this package is cheap and has no side effects: every public name is
resolved lazily on first access (PEP 562), no plugin is loaded and no backend
is chosen until a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_core._lazy import lazy_attributes

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "band_split": "fdseg_core.bands",
    "band_fuse": "fdseg_core.bands",
    "available_backends": "fdseg_core.bands",
    "band_width": "fdseg_core.bands",
    "BackboneSpec": "fdseg_core.plugins",
    "hookimpl": "fdseg_core.plugins",
    "get_backbone": "fdseg_core.plugins",
    "list_backbones": "fdseg_core.plugins",
    "FrequencyDisentangledNet": "fdseg_core.nn",
}

__all__ = [
    "BackboneSpec",
    "FrequencyDisentangledNet",
    "__version__",
    "available_backends",
    "band_fuse",
    "band_split",
    "band_width",
    "get_backbone",
    "hookimpl",
    "list_backbones",
]

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.bands import available_backends, band_fuse, band_split, band_width
    from fdseg_core.nn import FrequencyDisentangledNet
    from fdseg_core.plugins import BackboneSpec, get_backbone, hookimpl, list_backbones


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
