"""decide.py on audits built for the test, whose answers are known.

pytest -q experiments/issue42/test_decide.py   (CI runs it with the committed results)
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decide  # noqa: E402

SIZES, SEEDS, CASES = (5, 9), range(6), ("c0", "c1", "c2", "c3")
KINDS = ("bias", "blur", "noise")
#: the drop of each (kind, method) from the clean Dice, before the noise
DROPS = {
    ("bias", "none"): -0.20, ("bias", "early"): -0.10, ("bias", "late"): -0.20,
    ("blur", "none"): -0.10, ("blur", "early"): -0.10, ("blur", "late"): -0.30,
    ("noise", "none"): -0.01, ("noise", "early"): -0.01, ("noise", "late"): -0.01,
}  # fmt: skip
#: early fusion's difference of drops under noise, per seed, exactly (no case noise there):
#: raw p about 0.027, between 0.05 / 6 and 0.05, so only a missing Holm step detects it
BORDERLINE = (0.010, 0.030, 0.005, 0.025, 0.0, 0.020)
#: what a left-out run's scores would add if they were read: a drop far from the others
LEFT_OUT_DROP = -0.4


def build(experiment: Path, folder: Path, *, finished=None, skip=(), unscored=(), cases=CASES):
    """An audit folder and the experiment it audited; every Dice is known (kept in
    ``truth``: model -> case -> (kind, level) -> mean Dice)."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    runs = experiment / "runs"
    rows, truth, grid = [], {}, []
    for size in SIZES:
        for seed in SEEDS:
            for method in ("none", "early", "late"):
                model = f"n{size:03d}-{method}-s{seed}"
                grid.append(model)
                (runs / model).mkdir(parents=True)
                (runs / model / "result.json").write_text("{}")
                if model in unscored:
                    continue
                for case in cases:
                    clean = {c: 0.8 + rng.uniform(-0.05, 0.05) for c in ("A", "P")}
                    images = [("clean", "0", clean)]
                    for kind in KINDS:
                        shift = DROPS[(kind, method)] + rng.gauss(0, 0.01)
                        if kind == "noise" and method != "late":  # exact: the borderline
                            shift = DROPS[(kind, method)]
                            shift += BORDERLINE[seed] if method == "early" else 0.0
                        if model in skip:
                            shift += LEFT_OUT_DROP
                        images.append((kind, "3", {c: v + shift for c, v in clean.items()}))
                        # a weaker level the rule must not read
                        images.append((kind, "1", {c: v - 0.5 for c, v in clean.items()}))
                    for kind, level, dice in images:
                        rows.append({
                            "model": model, "method": method, "train_size": size,
                            "seed": seed, "kind": kind, "strength": 1.0, "level": level,
                            "case": case, "dice_A": dice["A"], "dice_P": dice["P"],
                        })  # fmt: skip
                        truth.setdefault(model, {}).setdefault(case, {})[kind, level] = (
                            dice["A"] + dice["P"]
                        ) / 2
    if finished is not None:
        for extra in sorted(runs.glob("*"))[finished:]:
            (extra / "result.json").unlink()
    meta = {"runs": grid, "test_cases": list(CASES)}
    (experiment / "experiment.json").write_text(json.dumps(meta))
    with open(folder / "robustness.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    suite = {"version": "1", "seed": 42, "kinds": {k: {} for k in KINDS}, "levels": [1, 3]}
    (folder / "robustness.json").write_text(json.dumps({"suite": suite}))
    (folder / "not_reproduced.txt").write_text("".join(f"{m}\n" for m in skip))
    return truth


def expected_unit(truth, kind, fusion, seed, skip=()):
    """A seed's difference of drops by hand: mean over its sizes of the case means."""
    per_size = []
    for size in SIZES:
        base, mine = f"n{size:03d}-none-s{seed}", f"n{size:03d}-{fusion}-s{seed}"
        if base in skip or mine in skip:
            continue
        diffs = [
            (truth[mine][c][kind, "3"] - truth[mine][c]["clean", "0"])
            - (truth[base][c][kind, "3"] - truth[base][c]["clean", "0"])
            for c in CASES
        ]
        per_size.append(sum(diffs) / len(diffs))
    return sum(per_size) / len(per_size)


def run(tmp_path, **kw):
    folder, experiment = tmp_path / "audit", tmp_path / "experiment"
    truth = build(experiment, folder, **kw)
    code = decide.main(["--folder", str(folder), "--experiment", str(experiment)])
    return code, folder, truth


def table(folder: Path) -> dict[tuple[str, str], list[str]]:
    lines = [ln for ln in (folder / "VERDICT.md").read_text().splitlines() if ln.startswith("| ")]
    cells = [[x.strip() for x in ln.strip("|").split("|")] for ln in lines]
    return {(c[0], c[1]): c for c in cells if c[0] != "fusion"}


def test_holm_adjusts_as_its_closed_form():
    assert decide.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert decide.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert decide.holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])
    assert decide.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_the_t_test_is_scipys():
    values = [0.3, -0.1, 0.25, 0.05, 0.4]
    assert decide.t_test_p(values) == pytest.approx(stats.ttest_1samp(values, 0).pvalue)


def test_a_fusion_that_loses_less_degrades_less_and_one_that_loses_more_degrades_more(tmp_path):
    code, folder, truth = run(tmp_path)
    assert code == 0
    rows = table(folder)
    assert len(rows) == len(KINDS) * 2
    assert rows["early", "bias"][-1] == "degrades less"
    assert rows["late", "blur"][-1] == "degrades more"
    for key in [("late", "bias"), ("early", "blur"), ("early", "noise"), ("late", "noise")]:
        assert rows[key][-1].startswith("not detected"), key


def test_holm_keeps_a_comparison_that_passes_only_uncorrected(tmp_path):
    """early under noise: raw p between 0.05 / 6 and 0.05; the Holm column is Holm's."""
    raw = stats.ttest_1samp(BORDERLINE, 0).pvalue
    assert 0.05 / 6 < raw < 0.05  # the design of the test
    code, folder, _ = run(tmp_path)
    assert code == 0
    rows = table(folder)
    assert float(rows["early", "noise"][4]) == pytest.approx(raw, rel=1e-2)
    assert float(rows["early", "noise"][5]) > 0.05
    assert rows["early", "noise"][-1].startswith("not detected")
    p = [float(r[4]) for r in rows.values()]
    for r, adjusted in zip(rows.values(), decide.holm(p), strict=True):
        assert float(r[5]) == pytest.approx(adjusted, rel=2e-2)


def test_the_difference_is_each_seeds_mean_over_sizes_of_its_case_means(tmp_path):
    _, folder, truth = run(tmp_path)
    rows = table(folder)
    for fusion, kind in [("early", "bias"), ("late", "blur"), ("late", "noise")]:
        units = [expected_unit(truth, kind, fusion, s) for s in SEEDS]
        mean = sum(units) / len(units)
        shown = float(rows[fusion, kind][3].split()[0])
        assert shown == pytest.approx(100 * mean, abs=0.051)
        p = stats.ttest_1samp(units, 0).pvalue
        assert float(rows[fusion, kind][4]) == pytest.approx(p, rel=1e-2, abs=1e-300)


def test_it_refuses_until_every_run_has_finished(tmp_path, capsys):
    code, folder, _ = run(tmp_path, finished=30)
    assert code == 2
    assert "6 of 36 runs have not finished" in capsys.readouterr().err
    assert not (folder / "VERDICT.md").exists()


def test_it_refuses_while_a_test_case_is_scored_by_no_model(tmp_path, capsys):
    code, folder, _ = run(tmp_path, cases=CASES[:-1])
    assert code == 2
    assert "36 finished runs are not fully scored" in capsys.readouterr().err
    assert not (folder / "VERDICT.md").exists()


def test_it_refuses_while_a_finished_run_is_not_scored(tmp_path, capsys):
    code, folder, _ = run(tmp_path, unscored=("n009-late-s2",))
    assert code == 2
    assert "n009-late-s2" in capsys.readouterr().err
    assert not (folder / "VERDICT.md").exists()


@pytest.mark.parametrize("scored", [True, False])
def test_a_run_left_out_is_named_with_the_cell_it_unpairs(tmp_path, scored):
    unscored = () if scored else ("n009-none-s3",)
    code, folder, truth = run(tmp_path, skip=("n009-none-s3",), unscored=unscored)
    assert code == 0
    text = (folder / "VERDICT.md").read_text()
    assert "Left out (not reproduced): n009-none-s3." in text
    assert "- 9 cases, seed 3: no none" in text
    # seed 3's unit is its 5-case difference alone
    rows = table(folder)
    units = [expected_unit(truth, "bias", "early", s, skip=("n009-none-s3",)) for s in SEEDS]
    assert float(rows["early", "bias"][3].split()[0]) == pytest.approx(
        100 * sum(units) / len(units), abs=0.051
    )
    assert not math.isnan(float(rows["early", "bias"][4]))
