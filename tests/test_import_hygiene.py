"""Nothing happens at import time: no torch for the CLI group, no plugin loading."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_importing_fdseg_core_loads_neither_torch_nor_plugins():
    mods = _modules_after("import fdseg_core")
    assert "torch" not in mods
    assert "pluggy" not in mods
    assert "fdseg_backbones" not in mods


def test_cli_help_does_not_import_torch():
    mods = _modules_after(
        "from click.testing import CliRunner\nfrom fdseg_cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output"
    )
    assert "torch" not in mods


def test_importing_kernels_package_does_not_import_triton():
    mods = _modules_after("import fdseg_kernels")
    assert "triton" not in mods


def test_import_prints_nothing():
    out = subprocess.run(
        [sys.executable, "-c", "import fdseg_core, fdseg_cli, fdseg_kernels, fdseg_backbones"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "" and out.stderr == ""
