"""Progress: a bar on a terminal, plain lines in a log at most every so often, nothing
when asked for none."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

from fdseg_core.progress import LineProgress, progress_bar


def test_without_a_terminal_a_long_loop_logs_lines_and_a_quick_one_nothing(caplog, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="fdseg_core.progress"):
        items = list(progress_bar(range(3), desc="predict", unit="case", every_s=0.0))
        quick = list(progress_bar(range(3), desc="check", unit="case"))
    assert items == quick == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    # a line after each item but the last (the loop's own report ends it), none for the
    # quick loop (30 s between lines by default)
    assert [line.split(" (")[0] for line in lines] == [
        "predict: 1 of 3 cases",
        "predict: 2 of 3 cases",
    ]


def test_a_terminal_gets_a_bar_and_no_progress_gets_nothing(monkeypatch, caplog):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_bar(range(2), desc="x")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    silent = progress_bar(range(2), progress=False, desc="x", every_s=0.0)
    with caplog.at_level(logging.INFO, logger="fdseg_core.progress"):
        assert list(silent) == [0, 1]
    assert isinstance(silent, tqdm) and silent.disable and not caplog.records


def test_lines_count_updates_of_a_loop_without_an_iterable(caplog):
    with caplog.at_level(logging.INFO, logger="fdseg_core.progress"):
        bar = LineProgress(total=4, desc="experiment", unit="run", every_s=0.0)
        bar.set_postfix_str("n002-none-s0")
        bar.update()
        bar.update(3)
        bar.close()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["experiment: 1 of 4 runs"]
