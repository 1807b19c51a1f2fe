"""Issue 17's tables from the committed results, finished or not.

    python experiments/issue17/report.py        # writes experiments/issue17/REPORT.md

Reads every ``<part>/runs/*/result.json`` (the files `stage_finished.sh` commits), counts
what has run against the plan in ``run.sh``, and writes, per table, the Dice table with
paired bootstrap intervals, the Dice-against-size plot and the training curves through
fdseg's own experiment report (``fdseg_core.experiment.report.write_report``), into
``report/<table>/``, with ``summary.md``: the compact table (mean Dice and each nucleus,
with paired differences) that the README quotes. Table b joins parts b2 and b48 (the
paper configuration at 2 cases, and at 4 and 8 cases); b48 trains the centred layout
only, so its methods are relabelled ``early-centered`` and ``late-centered`` to pair with
b2's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fdseg_core.atomic import atomic_write_text
from fdseg_core.experiment.report import ALL_SIZES, format_delta, format_per_seed, write_report
from fdseg_core.experiment.results import method_of
from fdseg_core.train.logs import MetricsLog

HERE = Path(__file__).resolve().parent

#: What run.sh trains: table -> [(part, train sizes, methods as the part labels them)].
PLAN: dict[str, list[tuple[str, tuple[int, ...], tuple[str, ...]]]] = {
    "a": [("a", (2, 4, 8), ("none", "early", "late"))],
    "b": [
        (
            "b2",
            (2,),
            ("none", "early-centered", "early-reference", "late-centered", "late-reference"),
        ),
        ("b48", (4, 8), ("none", "early", "late")),
    ],
    "c": [("c", (2,), ("none", "early"))],
}
SEEDS = (0, 1, 2)
TITLES = {
    "a": "a. What users get: `fdseg train` defaults (unet3d, its fusion points), patches",
    "b": "b. The paper configuration (`--recipe paper`, whole volumes)",
    "c": "c. The patch ablation under the paper recipe (48 × 48 × 32 patches)",
}


def _label(part: str, method: str) -> str:
    if part == "b48" and method != "none":
        return f"{method}-centered"
    return method


def _load(part: str, sizes, methods) -> tuple[list[dict], dict, list[str]]:
    """The finished results of a part, their training curves, and the runs still to do."""
    results, curves, missing = [], {}, []
    for size in sizes:
        for seed in SEEDS:
            for method in methods:
                run = HERE / part / "runs" / f"n{size:03d}-{method}-s{seed}"
                path = run / "result.json"
                if not path.is_file():
                    missing.append(f"{part}/{run.name}")
                    continue
                result = json.loads(path.read_text())
                label = _label(part, method_of(result))
                result["method"] = label
                # the step a run stopped at, from its own steps per epoch
                steps = json.loads((run / "config.json").read_text())["iters_per_epoch"]
                result["steps_run"] = steps * result["epochs_run"]
                results.append(result)
                log = MetricsLog.load(run)
                if log.rows:
                    curves[(size, label, seed)] = log.rows
    return results, curves, missing


def _stops(results: list[dict]) -> str:
    steps = sorted(r["steps_run"] for r in results)
    if not steps:
        return ""
    early = sum(bool(r.get("stopped_early")) for r in results)
    limit = len(results) - early
    return (
        f"Runs stopped at steps {steps[0]} to {steps[-1]} (median {steps[len(steps) // 2]}): "
        f"{early} by the plateau rule, {limit} at the step limit."
    )


def _summary(table: list[dict], results: list[dict], methods: list[str]) -> str:
    """One row per (training size, method), and per method pooled over the sizes: the
    runs behind it, the mean Dice with its paired difference to the baseline (the
    seed-level interval, the verdict, each seed's difference and the pooled (seed, case)
    interval), and each nucleus's Dice with its difference and verdict; the compact
    form the README quotes."""
    classes = [c for c in dict.fromkeys(r["class"] for r in table) if c != "mean"]
    rows = {(r["train_size"], r["method"], r["class"]): r for r in table}
    names = [c.replace("_", " ") for c in classes]
    lines = [
        "| train cases | method | runs | mean Dice | Δ mean [seed-level 95% CI] | verdict | "
        "Δ mean per seed | Δ mean [pooled 95% CI] | "
        + " | ".join(f"{n}: Dice, Δ [seed-level CI], verdict" for n in names)
        + " |",
        "|---:|---|---:|---:|---|---|---|---|" + "---|" * len(classes),
    ]
    sizes = list(dict.fromkeys(r["train_size"] for r in table))
    for size in sizes:
        for method in methods:
            mean = rows.get((size, method, "mean"))
            if mean is None:
                continue
            runs = sum(
                (size == ALL_SIZES or r["train_size"] == size) and r["method"] == method
                for r in results
            )
            cells = []
            for c in classes:
                row = rows.get((size, method, c))
                if row is None:
                    cells.append("—")
                elif row["diff"] is None:
                    cells.append(f"{100 * row['dice_mean']:.1f}")
                else:
                    cells.append(
                        f"{100 * row['dice_mean']:.1f}, {format_delta(row)}, {row['verdict']}"
                    )
            lines.append(
                f"| {size} | {method} | {runs} | {100 * mean['dice_mean']:.1f} | "
                f"{format_delta(mean)} | {mean['verdict'] or '—'} | {format_per_seed(mean)} | "
                f"{format_delta(mean, pooled=True)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    commit = (HERE / "COMMIT").read_text().strip()
    lines = [
        "# Issue 17: the decisive experiment, redone (generated by `report.py`)",
        "",
        f"Code at commit `{commit}`; the commands are in `run.sh`. Mean: the mean over the two "
        "nuclei of each test case. Each table counts only finished runs; `n` is the number "
        "of (seed, test case) pairs behind each row.",
        "",
    ]
    for table, parts in PLAN.items():
        results, curves, missing, planned = [], {}, [], 0
        methods: list[str] = []
        for part, sizes, part_methods in parts:
            r, c, m = _load(part, sizes, part_methods)
            results += r
            curves |= c
            missing += m
            planned += len(sizes) * len(SEEDS) * len(part_methods)
            methods = list(dict.fromkeys([*methods, *(_label(part, x) for x in part_methods)]))
        lines += [f"## {TITLES[table]}", ""]
        lines.append(f"{len(results)} of {planned} runs finished.")
        if missing:
            lines.append(f"To run: {', '.join(missing)}.")
        lines.append("")
        if results:
            out = HERE / "report" / table
            out.mkdir(parents=True, exist_ok=True)
            report = write_report(results, out, methods=methods, curves=curves)
            summary = _summary(report["table"], results, methods)
            atomic_write_text(out / "summary.md", summary)
            lines += [
                "Summary (Dice in points; Δ: paired difference to method none; the headline "
                "interval is seed-level: seeds resampled, then test cases within each seed; "
                "rows 'all' pool the sizes, with (size, seed) pairs as the unit):",
                "",
                summary.rstrip(),
                "",
                "Every class and method:",
                "",
                report["markdown"].rstrip(),
                "",
                _stops(results),
                "",
                f"![Dice against training size](report/{table}/dice_vs_size.png)",
                f"![Training curves](report/{table}/training_curves.png)",
                "",
            ]
    atomic_write_text(HERE / "REPORT.md", "\n".join(lines).rstrip() + "\n")
    print(HERE / "REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
