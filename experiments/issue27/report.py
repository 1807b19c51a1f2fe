"""Issue 27's ablation (part 2) from the committed results, finished or not, and the
decisive experiment (part 3) once all its runs have finished.

    python experiments/issue27/report.py        # writes experiments/issue27/REPORT.md

Reads every ``ablation/<arm>-n<size>/runs/*/result.json`` (the files ``stage_finished.sh``
commits), counts what has run against the plan in ``run.sh``, and writes through fdseg's
own experiment report (``fdseg_core.experiment.report.write_report``, baseline: the arm
``default``, i.e. ``fdseg train``'s default recipe) the tables, the Dice-against-size plot
and the training curves into ``report/ablation/``, and ``REPORT.md`` with the compact
table the README quotes, the stopping steps of every arm, and what is still to run.
Part 3 is one ``fdseg experiment``, which wrote its own report into ``decisive/`` when its
last run finished: its section in ``REPORT.md`` reads that report (the compact table, the
stops of every run and links to its plots) instead of computing it again.

The arms are paired with ``default`` by (seed, test case): a seed draws the same training
and validation cases in every arm, so each arm's Δ is what that one factor changes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fdseg_core.atomic import atomic_write_text
from fdseg_core.experiment.report import compact_table, write_report
from fdseg_core.experiment.results import load_run

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # choose_fusion, beside this file

#: run.sh's arms, in its order, with what each changes from the default recipe.
ARMS: dict[str, str] = {
    "default": (
        "`fdseg train`'s default recipe (unet3d, softmax Dice + CE, AdamW + poly, "
        "64³ patches, augmentation)"
    ),
    "network": "the paper's network (`--backbone paper_unet3d`)",
    "loss": "the paper's loss (`--loss sigmoid_dice`)",
    "optimiser": "the paper's optimiser and schedule (Adam, constant, wd 1e-10, no clip)",
    "patch": "the paper's patch (48 × 48 × 32)",
    "no-augment": "no augmentation (`--no-augment`)",
    "paper-patches": "the whole paper recipe on 48 × 48 × 32 patches (`--recipe paper`)",
}
SIZES = (2, 8)
FIGURES = (("Dice against training size", "dice_vs_size"), ("Training curves", "training_curves"))
SEEDS = (0, 1, 2)


def _load() -> tuple[list[dict], dict, list[str]]:
    """Finished results (method = arm), their training curves, and the runs still to do."""
    results, curves, missing = [], {}, []
    for (size, arm, seed), run in _runs().items():
        loaded = load_run(run)
        if loaded is None:
            missing.append(f"{arm}-n{size} seed {seed}")
        else:
            loaded[0]["method"] = arm
            results.append(loaded[0])
            curves |= {(size, arm, seed): loaded[1]} if loaded[1] else {}
    return results, curves, missing


def _runs() -> dict[tuple[int, str, int], Path]:
    """Every planned run's folder, by (training size, arm, seed), in run.sh's order."""
    return {
        (size, arm, seed): HERE
        / "ablation"
        / f"{arm}-n{size}"
        / "runs"
        / f"n{size:03d}-none-s{seed}"
        for size in SIZES
        for arm in ARMS
        for seed in SEEDS
    }


def _stops(results: list[dict], methods=tuple(ARMS), sizes=SIZES) -> str:
    """Per (method, size): the steps of the best checkpoint and of the stop, and the cap."""
    lines = [
        "| arm | train cases | best step per seed | stop step per seed | hit the cap |",
        "|---|---:|---|---|---|",
    ]
    for arm in methods:
        for size in sizes:
            runs = sorted(
                (r for r in results if r["method"] == arm and r["train_size"] == size),
                key=lambda r: r["seed"],
            )
            if runs:
                lines.append(
                    f"| {arm} | {size} | {', '.join(str(r['best_step']) for r in runs)} | "
                    f"{', '.join(str(r['stop_step']) for r in runs)} | "
                    f"{sum(bool(r['hit_step_cap']) for r in runs)} of {len(runs)} |"
                )
    return "\n".join(lines) + "\n"


def _qualifiers_paired(results: list[dict]) -> str:
    """The two arms that qualified in ``choose_recipe.py`` (``CHOICE.md``), paired with
    each other: what the rest of the paper recipe adds to turning augmentation off."""
    pair = ("no-augment", "paper-patches")
    sub = [r for r in results if r["method"] in pair]
    if {r["method"] for r in sub} != set(pair):
        return ""
    return _paired_table(sub, *pair)


def _paired_table(results: list[dict], baseline: str, method: str) -> str:
    """``method`` against ``baseline``, paired by seed and test case: one row per
    (training size, class), in points, with the seed-level interval and verdict."""
    with tempfile.TemporaryDirectory() as tmp:
        table = write_report(results, tmp, methods=[baseline, method], baseline=baseline)
    lines = [
        "| train cases | class | Δ [seed-level 95% CI] | verdict | Δ per seed |",
        "|---|---|---|---|---|",
    ]
    for r in table["table"]:
        if r["method"] == method and r["diff"] is not None:
            lines.append(
                f"| {r['train_size']} | {r['class']} | {100 * r['diff']:+.1f} "
                f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] | {r['verdict']} | "
                + ", ".join(f"{100 * v:+.1f}" for v in r["per_seed"])
                + " |"
            )
    return "\n".join(lines) + "\n"


def _whole_vs_patch(results: list[dict]) -> str:
    """The chosen arm (the paper recipe on 48 x 48 x 32 patches) against the same recipe
    on whole cases (issue 17's table b baselines: the size ``fdseg plan`` takes for this
    draw's 80 x 80 x 64 cases), paired by seed and test case.

    The two were trained at different commits, by the same code path; the pairing holds
    because each run of a seed trained on the same cases: the same fold split (their
    ``splits_final.json`` files are equal) and the same subset drawn from it by
    ``(train_cases, seed)``, which both ``config.json`` files record.
    """
    import json

    whole_dirs = {2: "b2", 8: "b48"}
    pairs = []
    for r in results:
        if r["method"] != "paper-patches":
            continue
        size, seed = r["train_size"], r["seed"]
        run = HERE.parent / "issue17" / whole_dirs[size] / "runs" / f"n{size:03d}-none-s{seed}"
        loaded = load_run(run)
        if loaded is None:
            return ""
        patch_run = _runs()[(size, "paper-patches", seed)]
        same = [json.loads((d / "splits_final.json").read_text()) for d in (run, patch_run)]
        keys = [
            {k: json.loads((d / "config.json").read_text())[k] for k in ("train_cases", "seed")}
            for d in (run, patch_run)
        ]
        if same[0] != same[1] or keys[0] != keys[1]:
            raise SystemExit(f"{run} and {patch_run} did not train on the same cases")
        whole = dict(loaded[0], method="whole cases")
        pairs += [whole, dict(r, method="48 x 48 x 32")]
    if not pairs:
        return ""
    return _paired_table(pairs, "whole cases", "48 x 48 x 32")


def _decisive() -> list[str]:
    """Part 3's section: its report once every run has finished, its progress before.

    Nothing is read from part 3's results until all 72 have finished, so that no
    interim number is reported or acted on (``choose_fusion.py`` holds the same rule).
    """
    import choose_fusion  # this folder's: part 3's grid and its rule

    planned = choose_fusion.runs()
    done = [run for run in planned.values() if (run / "result.json").is_file()]
    head = [
        "## Part 3: the decisive experiment",
        "",
        f"Code at commit `{(HERE / 'COMMIT.decisive').read_text().strip()}`; a fresh draw "
        "(seed 27: 12 training cases, 16 test cases), the recipe part 2 chose (`RECIPE`), "
        "fusion none, early and late, 2, 4 and 8 training cases, 8 seeds, 3 validation "
        "cases. The default fusion is chosen by `choose_fusion.py` (`FUSION.md`).",
        "",
    ]
    if len(done) < len(planned):
        return [
            *head,
            f"{len(done)} of {len(planned)} runs finished. The report is written here when "
            "all have finished; nothing is read from them before.",
            "",
        ]
    # `fdseg experiment` wrote part 3's report into its own folder when its last run
    # finished (one experiment, unlike the ablation's 14): read it, do not redo it
    exp = HERE / "decisive"
    summary_json = json.loads((exp / "summary.json").read_text())
    rows = summary_json["rows"]
    cells = {(r["train_size"], r["method"]) for r in rows if r["train_size"] != "all"}
    grid = {(size, fusion) for size in choose_fusion.SIZES for fusion in choose_fusion.FUSIONS}
    if cells != grid or summary_json["n_seeds"] != len(choose_fusion.SEEDS):
        raise SystemExit(
            f"{exp / 'summary.json'}: expected sizes {choose_fusion.SIZES} x methods "
            f"{choose_fusion.FUSIONS} x {len(choose_fusion.SEEDS)} seeds; rerun part 3's "
            "`fdseg experiment` command in run.sh (it skips finished runs) to rewrite it"
        )
    results = [load_run(run)[0] for run in planned.values()]
    methods = list(choose_fusion.FUSIONS)
    summary = compact_table(rows, results, methods)
    return [
        *head,
        f"All {len(planned)} runs finished. Summary (Dice in points; Δ: paired difference to "
        "`none`, same seed and test case; seed-level intervals; rows 'all' pool the sizes):",
        "",
        summary.rstrip(),
        "",
        "![Dice against training size](decisive/dice_vs_size.png)",
        "![Training curves](decisive/training_curves.png)",
        "",
        "When each run chose its checkpoint and stopped (validation every 10 steps):",
        "",
        _stops(results, methods, choose_fusion.SIZES).rstrip(),
        "",
        f"Every class and method ({len(results)} runs):",
        "",
        (exp / "table.md").read_text().rstrip(),
        "",
    ]


def main() -> int:
    commit = (HERE / "COMMIT").read_text().strip()
    results, curves, missing = _load()
    planned = len(SIZES) * len(ARMS) * len(SEEDS)
    lines = [
        "# Issue 27, part 2: the recipe ablation (generated by `report.py`)",
        "",
        f"Code at commit `{commit}`; the commands are in `run.sh`. Fusion none; issue 17's "
        "phantom draw (10 training cases, 8 test cases: a development set, they have served "
        "decisions before); issue 17's plateau rule with a cap of 1200 steps. Each arm "
        "changes one factor of `fdseg train`'s default recipe to the paper's:",
        "",
        *(f"- `{arm}`: {what}" for arm, what in ARMS.items()),
        "",
        f"{len(results)} of {planned} runs finished."
        + (f" To run: {', '.join(missing)}." if missing else ""),
        "",
    ]
    if results:
        out = HERE / "report" / "ablation"
        out.mkdir(parents=True, exist_ok=True)
        methods = [a for a in ARMS if any(r["method"] == a for r in results)]
        report = write_report(results, out, methods=methods, curves=curves, baseline="default")
        summary = compact_table(report["table"], results, methods)
        atomic_write_text(out / "summary.md", summary)
        figures = [f"![{title}](report/ablation/{name}.png)" for title, name in FIGURES]
        lines += [
            "Summary (Dice in points; Δ: paired difference to the arm `default`, same seed and "
            "test case; the headline interval is seed-level: seeds resampled, then test cases "
            "within each seed; rows 'all' pool the sizes, with (size, seed) pairs as the unit):",
            "",
            summary.rstrip(),
            "",
            *figures,
            "",
            "When each run chose its checkpoint and stopped (validation every 10 steps):",
            "",
            _stops(results).rstrip(),
            "",
            "The two arms that qualified (`CHOICE.md`), paired with each other by seed and "
            "test case: `paper-patches` against `no-augment`, i.e. what the paper's network, "
            "loss, optimiser and patch add once augmentation is off (points):",
            "",
            _qualifiers_paired(results).rstrip(),
            "",
            "The chosen arm against the same recipe on whole cases (issue 17's table b "
            "baselines, `--recipe paper`, fusion none), paired by seed and test case (each "
            "seed trained on the same cases in both): the whole 80 x 80 x 64 case is the "
            "patch `fdseg plan` takes for this draw, which is why the default recipe sets "
            "its patch and batch size over the plan's (points):",
            "",
            _whole_vs_patch(results).rstrip(),
            "",
            f"Every class and arm ({len(results)} runs):",
            "",
            report["markdown"].rstrip(),
            "",
        ]
    lines += _decisive()
    path = HERE / "REPORT.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    print(f"wrote {path} ({len(results)} of {planned} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
