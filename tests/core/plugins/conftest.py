"""Fixtures that install fake distributions with ``fdseg`` entry points.

A fake distribution is a real ``*.dist-info`` folder (METADATA + entry_points.txt)
in a temporary folder prepended to ``sys.path``, so ``importlib.metadata`` finds it
exactly as it finds an installed package.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from fdseg_core.plugins import reset_plugin_manager


@pytest.fixture
def fresh_manager():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def install_fake_dist(tmp_path, monkeypatch, fresh_manager):
    """``install(dist, version, entry_points: {name: module}, modules: {name: source}, path)``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added_modules: list[str] = []

    def install(
        dist: str,
        version: str,
        entry_points: dict[str, str],
        modules: dict[str, str] | None = None,
        extra_path: Path | None = None,
    ) -> None:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[fdseg]\n{lines}\n")
        for name, source in (modules or {}).items():
            (site / f"{name}.py").write_text(textwrap.dedent(source))
            added_modules.append(name)
        if extra_path is not None:
            monkeypatch.syspath_prepend(str(extra_path))

    yield install
    for name in added_modules:
        sys.modules.pop(name, None)
