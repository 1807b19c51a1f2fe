"""Issue 42: the verdicts of the final audit, by the rule committed in README.md.

    python experiments/issue42/decide.py            # writes final/VERDICT.md
    python experiments/issue42/decide.py --folder experiments/issue42/decisive \
        --experiment experiments/issue27/rebuild \
        --skip experiments/issue27/rebuild/not_the_same_run.txt  # the phantom's audit

The rule ("The decision rule" and its amendment in README.md, committed before the final
audit scored any run):

* For each fusion (early, late) and each kind at its strongest level, the quantity is
  the difference of drops: (the fusion's Dice under the perturbation − its clean Dice) −
  (the baseline's), paired by seed and test case, averaged per seed over the test cases
  and then over the training sizes (the seed is the unit; each size weighs the same, as
  in the ``all`` rows of ``fdseg experiment``'s report).
* A fusion **degrades less** (more) under a kind when the t interval on the seed means
  of that difference lies above (below) zero after a Holm correction over the 22
  comparisons (11 kinds × 2 fusions) at family-wise 5 %: its Holm-adjusted p of the
  two-sided one-sample t test on the seed means is at most 0.05. Otherwise the verdict
  is **not detected**, with the t interval's ends (what remains possible) and the
  smallest difference the seeds detect with 80 % power.
* Runs listed in the skip file (``not_reproduced.txt`` of the audit folder: their
  checkpoints were lost and a retrained model did not reproduce them; for the phantom,
  ``not_the_same_run.txt`` of the rebuild) are left out, scored or not; the (size,
  seed) cells they leave without a baseline or a fusion are named.
* The detectable effect (80 % power) is the uncorrected one, at two-sided 5 %: after
  Holm a comparison needs more.

Until every run of the experiment's grid (its ``experiment.json``) has finished and every
run but those left out is scored at the clean image and each kind's strongest level on
every one of the experiment's test cases, the script refuses to decide (exit 2) and
prints what is missing, nothing of the scores. It refuses too when the audit holds
models that are not runs of the grid, or a suite other than version 1 at level 3.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

from fdseg_core.experiment.report import ALL_SIZES, summarise
from fdseg_core.experiment.results import MEAN, CaseDice, RunScores

HERE = Path(__file__).resolve().parent
BASELINE = "none"
FUSIONS = ("early", "late")
LEVEL = "3"
ALPHA = 0.05


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (each at most 1)."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    m, running, adjusted = len(pvalues), 0.0, [1.0] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def t_test_p(values: list[float]) -> float:
    """Two-sided p of the one-sample t test of mean 0 (1.0 for a zero spread at mean 0)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def read_scores(folder: Path) -> tuple[list[dict], list[str], dict]:
    """The audit's score rows (clean and the strongest level), its kinds and summary."""
    summary = json.loads((folder / "robustness.json").read_text())
    kinds = list(summary["suite"]["kinds"])
    with open(folder / "robustness.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "clean" or r["level"] == LEVEL]
    return rows, kinds, summary


def missing(rows: list[dict], kinds: list[str], summary: dict, experiment: Path, skip: set[str]):
    """What keeps the rule from deciding: another suite, unfinished runs, models that
    are not runs of the grid, unscored images."""
    meta = json.loads((experiment / "experiment.json").read_text())
    grid, cases = set(meta["runs"]), set(meta["test_cases"])
    problems = []
    suite = summary["suite"]
    if str(suite.get("version")) != "1" or int(LEVEL) not in suite.get("levels", []):
        problems.append(f"the audit's suite is not version 1 at level {LEVEL}: {suite}")
    finished = {p.parent.name for p in (experiment / "runs").glob("*/result.json")} & grid
    if len(finished) < len(grid):
        problems.append(f"{len(grid) - len(finished)} of {len(grid)} runs have not finished")
    strangers = sorted({r["model"] for r in rows} - grid)
    if strangers:
        problems.append(f"models that are not runs of the grid: {', '.join(strangers)}")
    images = defaultdict(set)
    for r in rows:
        images[r["model"]].add((r["case"], r["kind"]))
    want = {(c, k) for c in cases for k in ("clean", *kinds)}
    unscored = sorted(m for m in finished - skip if not want <= images.get(m, set()))
    if unscored:
        names = ", ".join(unscored)
        problems.append(f"{len(unscored)} finished runs are not fully scored: {names}")
    return problems


def drops_by_kind(rows: list[dict], skip: set[str]) -> dict[str, list[RunScores]]:
    """Per kind: each model's drop from its clean Dice, per test case and class."""
    classes = [k for k in rows[0] if k.startswith("dice_")]
    clean = {(r["model"], r["case"]): r for r in rows if r["kind"] == "clean"}
    per: dict[str, dict[str, list[CaseDice]]] = defaultdict(lambda: defaultdict(list))
    meta = {}
    for r in rows:
        if r["kind"] == "clean" or r["model"] in skip:
            continue
        base = clean[(r["model"], r["case"])]
        drop = {c[5:]: float(r[c]) - float(base[c]) for c in classes if r[c] and base[c]}
        per[r["kind"]][r["model"]].append(CaseDice(r["case"], drop))
        meta[r["model"]] = (int(r["train_size"]), r["method"], int(r["seed"]))
    return {
        kind: [
            RunScores(*meta[m], tuple(sorted(c, key=lambda x: x.case))) for m, c in models.items()
        ]
        for kind, models in per.items()
    }


def unpaired(rows: list[dict], skip: set[str]) -> list[str]:
    """The (size, seed) cells that lack the baseline or a fusion."""
    cells = defaultdict(set)
    for r in rows:
        if r["model"] not in skip:
            cells[(int(r["train_size"]), int(r["seed"]))].add(r["method"])
    methods = (BASELINE, *FUSIONS)
    return [
        f"{size} cases, seed {seed}: no {', '.join(m for m in methods if m not in have)}"
        for (size, seed), have in sorted(cells.items())
        if set(methods) - have
    ]


def comparisons(by_kind: dict[str, list[RunScores]], kinds: list[str]) -> list[dict]:
    """The 22 comparisons, with their Holm-adjusted p-values and verdicts."""
    out = []
    for kind in kinds:
        table = summarise(by_kind[kind], methods=[BASELINE, *FUSIONS])
        # the rows pooled over the sizes (one size: its own rows)
        pooled = {r.train_size for r in table} - {ALL_SIZES}
        size = ALL_SIZES if len(pooled) > 1 else pooled.pop()
        for fusion in FUSIONS:
            row = next(
                r for r in table
                if r.train_size == size and r.class_name == MEAN and r.method == fusion
            )  # fmt: skip
            s = row.delta.seed_level
            out.append({
                "fusion": fusion, "kind": kind, "diff": s.diff, "t_low": s.t_low,
                "t_high": s.t_high, "detectable": s.detectable, "n_seeds": len(s.per_seed),
                "p": t_test_p(list(s.per_seed)),
            })  # fmt: skip
    for c, adjusted in zip(out, holm([c["p"] for c in out]), strict=True):
        c["p_holm"] = adjusted
        if adjusted <= ALPHA:
            c["verdict"] = "degrades less" if c["diff"] > 0 else "degrades more"
        else:
            c["verdict"] = (
                f"not detected (from {100 * c['t_low']:+.1f} to {100 * c['t_high']:+.1f} "
                f"remain possible; detectable ±{100 * c['detectable']:.1f})"
            )
    return out


def report(found: list[dict], holes: list[str], skip: set[str], audit: str) -> str:
    """VERDICT.md: the comparisons, what was left out and the cells it unpaired."""
    lines = [
        f"# Issue 42: does fusion degrade less? The verdicts of the {audit} audit",
        "",
        "By the rule in `decide.py` and README.md, committed before the audit scored any "
        "run. Δ drop: the fusion's drop from its clean Dice minus the baseline's, mean "
        "foreground Dice in points, paired by seed and test case, each seed averaged over "
        "the training sizes; positive: the fusion loses less. The interval is the t "
        "interval on the seed means (95 %, before correction); p_Holm is adjusted over "
        f"the {len(found)} comparisons. A verdict's detectable effect is the smallest "
        "difference the seeds detect with 80 % power at the uncorrected two-sided 5 %; "
        "after Holm a comparison needs more.",
        "",
        "| fusion | kind (strongest level) | seeds | Δ drop [95 % t] | p | p_Holm | verdict |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for c in found:
        lines.append(
            f"| {c['fusion']} | {c['kind']} | {c['n_seeds']} | {100 * c['diff']:+.1f} "
            f"[{100 * c['t_low']:+.1f}, {100 * c['t_high']:+.1f}] | {c['p']:.3g} | "
            f"{c['p_holm']:.3g} | {c['verdict']} |"
        )
    lines += ["", f"Left out (not reproduced): {', '.join(sorted(skip)) or 'none'}."]
    if holes:
        lines += ["", "Cells without the baseline or a fusion:", *(f"- {h}" for h in holes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Decide, or say what is missing (exit 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=HERE / "final", help="the audit")
    parser.add_argument(
        "--experiment", type=Path, default=HERE.parent / "issue39" / "final",
        help="the experiment it audited (experiment.json, runs/)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", type=Path, default=None,
        help="runs to leave out, one per line [default: FOLDER/not_reproduced.txt]",
    )  # fmt: skip
    args = parser.parse_args(argv)
    skip_file = args.skip or args.folder / "not_reproduced.txt"
    skip = set(skip_file.read_text().split()) if skip_file.is_file() else set()
    rows, kinds, summary = read_scores(args.folder)
    problems = missing(rows, kinds, summary, args.experiment, skip)
    seeds = {r["seed"] for r in rows if r["model"] not in skip}
    if not problems and len(seeds) < 2:
        problems.append(f"{len(seeds)} seed: a t interval needs 2 or more")
    if problems:
        print("not deciding yet: " + "; ".join(problems), file=sys.stderr)
        return 2
    found = comparisons(drops_by_kind(rows, skip), kinds)
    target = args.folder / "VERDICT.md"
    tmp = target.with_suffix(".md.tmp")
    tmp.write_text(report(found, unpaired(rows, skip), skip, args.folder.resolve().name))
    os.replace(tmp, target)
    for c in found:
        print(f"{c['fusion']:>5} {c['kind']:<10} {c['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
