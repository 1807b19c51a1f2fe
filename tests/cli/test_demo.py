"""``fdseg demo`` and the group's error handling."""

from __future__ import annotations

from click.testing import CliRunner

from fdseg_cli.main import cli


def test_demo_reports_an_exact_round_trip_for_each_backend(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = CliRunner().invoke(cli, ["demo", "--shape", "40", "40", "16"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("backend")]
    assert [line.split()[1].rstrip(":") for line in lines] == ["torch", "matmul"]
    for line in lines:
        err = float(line.rsplit("=", 1)[1])
        assert err < 1e-4
        assert "low (1, 1, 4, 4, 16)" in line


def test_core_value_error_becomes_one_line_and_exit_code_2():
    result = CliRunner().invoke(cli, ["demo", "--beta", "1.5", "--shape", "20", "20", "8"])
    assert result.exit_code == 2
    assert "beta must lie in (0, 1), got 1.5" in result.output
    assert "Traceback" not in result.output


def test_debug_flag_shows_the_exception():
    result = CliRunner().invoke(
        cli, ["--debug", "demo", "--beta", "1.5", "--shape", "20", "20", "8"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError)
