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


def test_one_version_string_and_a_torch_bound_the_code_needs():
    import torch

    import fdseg_core

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fdseg_core.__version__"}
    from importlib.metadata import version

    assert version("fdseg") == fdseg_core.__version__
    torch_req = next(d for d in meta["project"]["dependencies"] if d.startswith("torch"))
    assert torch_req == "torch>=2.4"  # torch.library.custom_op, which the band operators use
    assert hasattr(torch.library, "custom_op")
