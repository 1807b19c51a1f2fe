"""Checks of the committed results against the product: fdseg train's defaults follow
the decisions the experiments made by their rules, and this version's report of a
committed experiment's runs is its committed report. CI runs them as a step of their own
(``pytest -q experiments/test_decisions.py``); the product's tests never read
``experiments/``.

A decision file that is missing fails these checks: each names the file it expects.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from fdseg_core.train import TrainConfig
from fdseg_core.train.recipes import RECIPES, resolve_fields

HERE = Path(__file__).resolve().parent
#: The decisions of the default fusion, newest first: real data (issue 39) once it has
#: decided, then the phantom's decisive experiment (issue 27).
FUSION_DECISIONS = (HERE / "issue39" / "FUSION.md", HERE / "issue27" / "FUSION.md")


def chosen(path: Path) -> str:
    """The ``Chosen: `x``` line of a decision file."""
    found = re.search(r"^Chosen: `([\w-]+)`", path.read_text(), re.MULTILINE)
    assert found, f"{path} names no choice"
    return found.group(1)


def decided_fusion() -> str:
    """The newest decision of the default fusion."""
    existing = [p for p in FUSION_DECISIONS if p.is_file()]
    assert existing, f"no decision of the default fusion: expected one of {FUSION_DECISIONS}"
    return chosen(existing[0])


def test_the_default_fusion_is_the_one_the_newest_decision_chose():
    assert TrainConfig(dataset="d", out="o").fusion == decided_fusion()
    fields, _ = resolve_fields({})
    assert TrainConfig(dataset="d", out="o", **fields).fusion == decided_fusion()


#: The options of the arm issue 27's ablation chose (issue27/RECIPE); its other options
#: there (the plateau rule, the epoch length) describe the experiment, not the recipe.
CHOSEN_ARM = {"layout": "centered", "patch_size": (48, 48, 32)}
#: The paper recipe's fields that the chosen arm's runs took from the experiment instead.
EXPERIMENT_FIELDS = {"fusion", "epochs", "iters_per_epoch", "val_every"}


def test_the_defaults_are_the_recipe_the_phantom_ablation_chose():
    """``TrainConfig``'s defaults equal ``--recipe paper --layout centered --patch-size 48
    48 32`` field for field, but for fusion (decided apart) and mixed precision (the
    ablation ran on a CPU, where it does nothing; kept on for CUDA)."""
    assert chosen(HERE / "issue27" / "CHOICE.md") == "paper-patches"
    default = TrainConfig(dataset="d", out="o")
    want = {**RECIPES["paper"], **CHOSEN_ARM}
    differ = {
        k: (getattr(default, k), v)
        for k, v in want.items()
        if k not in EXPERIMENT_FIELDS | {"amp"} and getattr(default, k) != v
    }
    assert differ == {}
    assert default.amp is True
    # and the chosen arm's own runs, as their committed configs record them
    runs = sorted((HERE / "issue27/ablation/paper-patches-n2/runs").glob("*/config.json"))
    assert len(runs) == 3, runs
    recipe_fields = (
        "backbone", "fusion", "loss", "optimizer", "lr", "weight_decay", "schedule",
        "grad_clip", "batch_size", "patch_size", "augment", "layout", "beta", "bands",
        "stem_channels", "fusion_at", "foreground_oversample", "overlap",
    )  # fmt: skip
    for config in runs:
        run = json.loads(config.read_text())
        run["patch_size"] = tuple(run["patch_size"])
        assert {k: run[k] for k in recipe_fields} == {
            k: getattr(default, k) for k in recipe_fields
        }, config


#: Committed experiments whose report this version recomputes from their runs.
RECOMPUTED = ("issue39/pilot", "issue39/ablation/default", "issue39/ablation/augment")


@pytest.mark.parametrize("folder", RECOMPUTED)
def test_a_committed_report_is_what_this_version_computes_from_its_runs(folder, tmp_path):
    """The committed tables were written by the code that trained the runs; this
    version's reader and statistics, given the same ``result.json`` files, write the same
    tables (a refactor of the report changed no committed number)."""
    from fdseg_core.experiment.report import write_report
    from fdseg_core.experiment.results import load_run

    exp = HERE / folder
    meta = json.loads((exp / "experiment.json").read_text())
    results = [load_run(exp / "runs" / name)[0] for name in meta["runs"]]
    margin = {"margin": meta["margin"]} if "margin" in meta else {}
    write_report(results, tmp_path, methods=meta["methods"], **margin)
    # the rounded table byte for byte; the full-precision files number for number, to
    # 1e-9: a scipy or numpy release may move the last bit of a quantile
    assert (tmp_path / "table.md").read_text() == (exp / "table.md").read_text()
    ours, theirs = (json.loads((d / "summary.json").read_text()) for d in (tmp_path, exp))
    assert _same_numbers(ours, theirs), "summary.json"
    ours, theirs = (_csv_cells(d / "table.csv") for d in (tmp_path, exp))
    assert _same_numbers(ours, theirs), "table.csv"


def _csv_cells(path: Path) -> list[list[float | str]]:
    rows = csv.reader(io.StringIO(path.read_text()))
    return [[_number_or_text(cell) for cell in row] for row in rows]


def _number_or_text(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


def _same_numbers(a: object, b: object) -> bool:
    """``a == b`` with floats equal to a relative 1e-9 (lists, dicts, text exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_numbers(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b
