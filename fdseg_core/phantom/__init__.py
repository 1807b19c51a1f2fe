"""The built-in synthetic QSM phantom of the head and its deep nuclei."""

from __future__ import annotations

from fdseg_core.phantom.config import PhantomConfig, label_names
from fdseg_core.phantom.dataset import render_phantom_preview, write_phantom_dataset
from fdseg_core.phantom.qsm import STRUCTURES, generate_case

__all__ = [
    "STRUCTURES",
    "PhantomConfig",
    "generate_case",
    "label_names",
    "render_phantom_preview",
    "write_phantom_dataset",
]
