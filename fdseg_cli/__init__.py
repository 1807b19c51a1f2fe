"""Command-line interface of fdseg: ``fdseg train|predict|evaluate|bench|...``.

Every command only parses its options, builds a configuration and calls
:mod:`fdseg_core`; heavy modules (torch, nibabel, ...) are imported inside the
command bodies so that ``fdseg --help`` is instant.
"""

from __future__ import annotations

__all__ = ["cli"]


def __getattr__(name: str):
    if name == "cli":
        from fdseg_cli.main import cli  # lazy: `import fdseg_cli` stays free of click

        return cli
    raise AttributeError(name)
