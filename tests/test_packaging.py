"""pyproject.toml lists every package folder (kernels/ installs as fdseg_kernels)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python >= 3.11")
def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config.get("package-dir", {})
    found = set()
    for top in ("fdseg_core", "fdseg_backbones", "fdseg_cli"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "kernels").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "kernels").parts
        found.add(".".join(("fdseg_kernels", *rel)))
    assert found == listed
    assert mapping == {"fdseg_kernels": "kernels"}
