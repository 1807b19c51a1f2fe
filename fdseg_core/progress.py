"""Progress of long loops: a bar on a terminal, plain lines in a log.

A scheduler's log (SLURM's ``slurm-%j.out``, a file the output is redirected to) is not
a terminal: a progress bar there is a run of carriage returns that shows nothing until
the job ends. :func:`progress_bar` gives a ``tqdm`` bar when standard error is a
terminal, and otherwise an object with the same interface that logs a plain line (INFO,
``fdseg_core.progress``) at most every ``every_s`` seconds while the loop runs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

__all__ = ["LineProgress", "progress_bar"]

logger = logging.getLogger(__name__)

#: Without a terminal, a loop says how far it is at most this often (seconds).
LINE_EVERY_S = 30.0


class LineProgress:
    """The part of ``tqdm``'s interface fdseg's loops use, as plain lines.

    A line ``<desc>: <done> of <total> <unit>s (<seconds> s)`` is logged after an
    update when ``every_s`` seconds have passed since the last line (or the start) and
    the loop is not done: a quick loop logs nothing, a long one a line every
    ``every_s`` seconds.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every_s: float = LINE_EVERY_S,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.every_s = every_s
        self.n = 0
        self._start = self._last = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        done = self.total is not None and self.n >= self.total
        if now - self._last >= self.every_s and not done:
            self._last = now
            of = f" of {self.total}" if self.total is not None else ""
            logger.info(f"{self.desc}: {self.n}{of} {self.unit}s ({now - self._start:.0f} s)")

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        """Shown on a bar only."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Shown on a bar only."""

    def close(self) -> None:
        """Nothing to clear: the lines stay in the log."""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    progress: bool = True,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    every_s: float = LINE_EVERY_S,
    **options: Any,
) -> Any:
    """A ``tqdm`` bar over ``iterable`` on a terminal; plain lines without one
    (:class:`LineProgress`); nothing when ``progress`` is false.

    Args:
        iterable: What the loop goes over (or ``None`` with ``total`` and ``update``).
        progress: Whether to show progress at all.
        total: The number of items (``len(iterable)`` when it has one).
        desc: The loop's name, the start of every line.
        unit: What an item is (``"case"``, ``"run"``).
        every_s: Without a terminal, the least seconds between two lines.
        **options: Further ``tqdm`` options (a bar only).
    """
    if progress and not sys.stderr.isatty():
        return LineProgress(iterable, total=total, desc=desc, unit=unit, every_s=every_s)
    return tqdm(iterable, total=total, disable=not progress, desc=desc, unit=unit, **options)
