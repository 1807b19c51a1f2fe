"""Issue 27's decisive runs trained again (run.sh part rebuild), against the committed ones.

    python experiments/issue27/compare_rebuild.py   # writes rebuild/REBUILD.md

The decisive experiment's checkpoints were lost with the machine it trained on, and the
robustness audit of issue 42 needs them: its runs are trained again at the same commit,
from the same configuration and draw, into ``rebuild/``. On another CPU a run need not
reproduce bit for bit (floating-point kernels differ; ``docs/findings.md``), so this
script says how far each rebuilt run moved: its mean test Dice against the committed
one, the largest difference on one test case and class, and whether it took the same
best step. A rebuilt run whose training cases, validation cases, test cases or
configuration (but for the dataset's path, which names the worktree) differ from the
committed run's is not the same run: the script names it in
``rebuild/not_the_same_run.txt`` (which issue 42's ``decide.py`` leaves out) and exits 1.
The rebuilt test Dice is what issue 42's audit scores on the clean images (the audit's
clean strength reproduces ``fdseg evaluate`` exactly).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-6
#: configuration fields that name a machine's folders, not what was trained
PATHS = {"dataset", "out"}


def mean_dice(result: dict) -> float:
    """The mean over test cases of each case's mean foreground Dice (classes without a
    Dice left out, as fdseg's report does; NaN when no case has one)."""
    per_case = []
    for case in result["cases"]:
        values = [v for k, v in case.items() if k.startswith("dice_") and v is not None]
        if values:
            per_case.append(sum(values) / len(values))
    return sum(per_case) / len(per_case) if per_case else math.nan


def largest_case_difference(a: dict, b: dict) -> float:
    """The largest |Δ Dice| over test cases and classes (both runs score the same cases);
    a class with a Dice in one run and none in the other counts as infinite."""
    theirs = {c["case"]: c for c in b["cases"]}
    worst = 0.0
    for case in a["cases"]:
        for key, value in case.items():
            if not key.startswith("dice_"):
                continue
            again = theirs[case["case"]].get(key)
            if (value is None) != (again is None):
                return math.inf
            if value is not None:
                worst = max(worst, abs(value - again))
    return worst


def differs(committed: Path, rebuilt: Path) -> list[str]:
    """What makes the rebuilt run another run than the committed one."""
    if not (committed / "result.json").is_file():
        return ["no committed run of that name"]
    a, b = (json.loads((d / "result.json").read_text()) for d in (committed, rebuilt))
    out = [k for k in ("train_cases", "val_cases") if a.get(k) != b.get(k)]
    if {c["case"] for c in a["cases"]} != {c["case"] for c in b["cases"]}:
        out.append("test cases")
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (committed, rebuilt))
    out += sorted(k for k in set(ca) | set(cb) if k not in PATHS and ca.get(k) != cb.get(k))
    return out


def main() -> int:
    rows, wrong = [], []
    for result in sorted((HERE / "rebuild" / "runs").glob("*/result.json")):
        run = result.parent.name
        committed = HERE / "decisive" / "runs" / run
        other = differs(committed, result.parent)
        if other:
            wrong.append(f"{run}: {', '.join(other)}")
            continue
        a = json.loads((committed / "result.json").read_text())
        b = json.loads(result.read_text())
        rows.append({
            "run": run, "committed": mean_dice(a), "rebuilt": mean_dice(b),
            "case": largest_case_difference(a, b),
            "steps": (a["best_step"], b["best_step"]),
        })  # fmt: skip
    if not rows and not wrong:
        print("no rebuilt run has finished", file=sys.stderr)
        return 2
    exact = [r for r in rows if r["case"] <= TOLERANCE and r["steps"][0] == r["steps"][1]]
    moved = [abs(r["rebuilt"] - r["committed"]) for r in rows]
    lines = [
        "# Issue 27's decisive runs, trained again",
        "",
        f"{len(rows)} of 72 runs trained again (`run.sh rebuild`, the commit in "
        "`COMMIT.decisive`), each against its committed result: mean test Dice (points), "
        "the largest difference on one test case and class, and the best step. "
        f"{len(exact)} reproduced exactly (every case and class within {TOLERANCE:g}, the "
        "same best step)"
        + (
            f"; the mean Dice moved by {100 * statistics.median(moved):.2f} points in the "
            f"median run and {100 * max(moved):.2f} at most."
            if moved
            else "."
        ),
        "",
        "| run | committed | rebuilt | Δ | largest case Δ | best step (committed, rebuilt) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {100 * r['committed']:.2f} | {100 * r['rebuilt']:.2f} | "
            f"{100 * (r['rebuilt'] - r['committed']):+.2f} | {100 * r['case']:.2f} | "
            f"{r['steps'][0]}, {r['steps'][1]} |"
        )
    if wrong:
        lines += ["", "Not the same run (left out by the audit's verdicts):"]
        lines += [f"- {w}" for w in wrong]
    _write(HERE / "rebuild" / "REBUILD.md", "\n".join(lines) + "\n")
    _write(
        HERE / "rebuild" / "not_the_same_run.txt", "".join(f"{w.split(':')[0]}\n" for w in wrong)
    )
    print(f"{len(rows)} rebuilt runs compared, {len(exact)} exact: rebuild/REBUILD.md")
    for w in wrong:
        print(f"not the same run: {w}", file=sys.stderr)
    return 1 if wrong else 0


def _write(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


if __name__ == "__main__":
    sys.exit(main())
