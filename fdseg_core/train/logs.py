"""Metric logs (JSON lines + CSV), the run's text log (``train.log``) and training-curve
plots, written atomically."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fdseg_core.atomic import atomic_save_figure, atomic_write_text

__all__ = [
    "MANY_CLASSES",
    "TRAIN_LOG",
    "MetricsLog",
    "integer_epochs",
    "plot_curves",
    "run_log",
    "worst_classes",
]

#: Beyond this many classes, summaries and curves show the mean, the median and the
#: :data:`WORST` worst classes instead of every class (the full table goes to a file).
MANY_CLASSES = 10
#: How many of the worst classes a summary of many classes names.
WORST = 5

#: The run folder's copy of the lines a run prints (epochs, validations, notes).
TRAIN_LOG = "train.log"


class MetricsLog:
    """One row per epoch; the whole log is rewritten atomically as ``metrics.jsonl`` and
    ``metrics.csv`` so that a crash never leaves a truncated file.

    Args:
        out_dir: Output folder.
        rows: Rows of an earlier run (on resume).
    """

    def __init__(self, out_dir: str | Path, rows: list[dict] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.rows: list[dict] = list(rows or [])

    @classmethod
    def load(cls, out_dir: str | Path) -> MetricsLog:
        path = Path(out_dir) / "metrics.jsonl"
        rows = []
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return cls(out_dir, rows)

    def append(self, row: dict) -> None:
        self.rows.append(dict(row))
        self.write()

    def truncate(self, epochs_done: int) -> None:
        """Drop rows of epochs after ``epochs_done`` (a resumed run redoes them)."""
        self.rows = [r for r in self.rows if r.get("epoch", 0) <= epochs_done]

    def write(self) -> None:
        """Rewrite both files. Non-finite numbers become ``null`` in ``metrics.jsonl`` (and
        empty cells in the CSV), so that any strict JSON reader parses it; :meth:`load`
        reads both that and the ``NaN`` of logs written before."""
        rows = [{k: _finite_or_none(v) for k, v in r.items()} for r in self.rows]
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        atomic_write_text(self.out_dir / "metrics.jsonl", lines)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out_dir / "metrics.csv", buf.getvalue())


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value) -> float:
    """A logged number for a plot: ``None`` (a non-finite value in the log) is NaN."""
    return float("nan") if value is None else float(value)


def integer_epochs(ax) -> None:
    """Whole-number ticks on an epoch axis (a run of 2 epochs has no epoch 1.5), even
    when the axis spans a single epoch (one finite point): one integer tick is enough."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


#: Axis label of each training loss (``TrainConfig.loss``).
LOSS_LABELS = {"dice_ce": "Dice + CE loss", "sigmoid_dice": "sigmoid Dice loss"}


def plot_curves(
    rows: list[dict], path: str | Path, *, title: str = "", loss: str = "dice_ce"
) -> Figure:
    """Training loss and validation Dice per class against epochs, as a PNG (beyond
    :data:`MANY_CLASSES` classes: their mean and the :data:`WORST` worst).

    Args:
        rows: Metrics rows with ``epoch``, ``train_loss`` and ``val_dice_*`` keys.
        path: The PNG to write (atomically).
        title: Figure title.
        loss: The training loss's name (``TrainConfig.loss``), for the axis label.

    Returns:
        The figure, as saved.
    """
    path = Path(path)
    fig = Figure(figsize=(11, 4))  # no pyplot: no GUI backend, no global figure registry
    ax_loss, ax_dice = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in rows]
    losses = [_number(r.get("train_loss")) for r in rows]
    ax_loss.plot(epochs, losses, marker="o", ms=3, label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(LOSS_LABELS.get(loss, f"{loss} loss"))
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    dice_keys = sorted({k for r in rows for k in r if k.startswith("val_dice_")})
    classes = [k for k in dice_keys if k != "val_dice_mean"]
    if len(classes) > MANY_CLASSES:  # the mean and the worst classes, a readable legend
        last = next((r for r in reversed(rows) if r.get("val_dice_mean") is not None), {})
        worst = worst_classes({k: last.get(k) for k in classes}, WORST)
        dice_keys = ["val_dice_mean", *worst]
    for key in dice_keys:
        pts = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_dice.plot(
                *zip(*pts, strict=True), marker="o", ms=4, label=key.removeprefix("val_dice_")
            )
    ax_dice.set_xlabel("epoch")
    for ax in (ax_loss, ax_dice):
        integer_epochs(ax)
        ax.ticklabel_format(axis="y", useOffset=False)
    ax_dice.set_ylabel("validation Dice")
    ax_dice.set_ylim(0, 1)
    ax_dice.grid(alpha=0.3)
    if dice_keys:
        title_note = (
            f" (mean and the {WORST} worst of {len(classes)})"
            if len(classes) > MANY_CLASSES
            else ""
        )
        ax_dice.legend(fontsize=8, title=f"class{title_note}" if title_note else None)
    fig.suptitle(title)
    fig.set_layout_engine("constrained")  # lays out any legend without warnings
    atomic_save_figure(fig, path, dpi=100)
    return fig


def worst_classes(dice: dict[str, float | None], n: int) -> list[str]:
    """The ``n`` keys of lowest Dice (a class never scored counts as worst)."""
    return sorted(dice, key=lambda k: -1.0 if dice[k] is None else float(dice[k]))[:n]


@contextlib.contextmanager
def run_log(out_dir: str | Path, *, enabled: bool = True) -> Iterator[None]:
    """Copy every line fdseg's core logs while the block runs into ``OUT/train.log``
    (appended, with a time stamp; flushed line by line), beside what is printed.

    Args:
        out_dir: The run's folder.
        enabled: ``False`` (a process other than rank 0): nothing is written.
    """
    if not enabled:
        yield
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(Path(out_dir) / TRAIN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    core = logging.getLogger("fdseg_core")
    core.addHandler(handler)
    if core.level == logging.NOTSET or core.level > logging.INFO:
        previous = core.level
        core.setLevel(logging.INFO)
    else:
        previous = None
    try:
        yield
    finally:
        core.removeHandler(handler)
        handler.close()
        if previous is not None:
            core.setLevel(previous)
