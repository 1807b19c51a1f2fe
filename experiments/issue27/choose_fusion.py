"""Issue 27, part 3: ``fdseg train``'s default fusion, chosen by a rule fixed in advance.

    python experiments/issue27/choose_fusion.py     # prints the chosen fusion, writes FUSION.md

The rule was written (2026-12-03, 08:00 UTC) before any run of part 3 (the decisive
experiment, ``decisive/``) had started, so before any of its results existed:

* The unit is the mean Dice over the classes of each test case. Every fusion is paired
  with ``none`` by (training size, seed, test case): a seed draws the same training and
  validation cases in every method.
* A fusion (``early``, ``late``) *qualifies* when the seed-level 95 % interval of its Δ
  mean Dice to ``none`` pooled over the three training sizes (the row ``all``: the
  (size, seed) pair is the unit, 24 of them; seeds resampled, then test cases within
  each) lies above 0, **and** at no single training size (2, 4, 8) its seed-level interval
  lies below 0 (a loss established at one size disqualifies, whatever the average).
* The chosen fusion is the qualifying one with the largest pooled Δ. With none qualifying,
  the default is ``none``: no fusion has shown a gain a user can count on.
* How sure the choice is, is said with the verdict of the chosen fusion's pooled row
  ("gain in every (size, seed) pair" is firmer than "gain on average") and the per-size
  verdicts, all of which ``FUSION.md`` lists.

The experiment is complete when every (size, fusion, seed) of the grid in ``run.sh`` has
its ``result.json``; before that the script refuses to choose (exit 2), so that no choice
is made on part of the data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fdseg_core.atomic import atomic_write_text
from fdseg_core.experiment.report import write_report
from fdseg_core.experiment.results import load_run

HERE = Path(__file__).resolve().parent
SIZES = (2, 4, 8)
FUSIONS = ("none", "early", "late")
SEEDS = tuple(range(8))
BASELINE = "none"


def runs(root: Path = HERE / "decisive") -> dict[tuple[int, str, int], Path]:
    """Every planned run's folder of part 3, by (training size, fusion, seed)."""
    return {
        (size, fusion, seed): root / "runs" / f"n{size:03d}-{fusion}-s{seed}"
        for size in SIZES
        for fusion in FUSIONS
        for seed in SEEDS
    }


def load(root: Path = HERE / "decisive") -> tuple[list[dict], list[str]]:
    """The finished results of part 3 and the runs still missing (``size/fusion/seed``)."""
    results, missing = [], []
    for (size, fusion, seed), run in runs(root).items():
        loaded = load_run(run)
        if loaded is None:
            missing.append(f"n{size}-{fusion}-s{seed}")
        else:
            results.append(loaded[0])
    return results, missing


def choose(table: list[dict]) -> tuple[str, list[str]]:
    """The chosen fusion and one line per fusion that says why.

    Args:
        table: The rows of :func:`fdseg_core.experiment.report.summarise` (baseline
            ``none``); only the rows of the class ``mean`` are read.
    """
    rows = {(r["train_size"], r["method"]): r for r in table if r["class"] == "mean"}
    why, qualifying = [], {}
    for fusion in FUSIONS:
        if fusion == BASELINE:
            continue
        pooled = rows.get(("all", fusion))
        per_size = [rows.get((size, fusion)) for size in SIZES]
        if pooled is None or any(r is None for r in per_size):
            why.append(f"- `{fusion}`: missing rows: does not qualify")
            continue
        loss_at = [s for s, r in zip(SIZES, per_size, strict=True) if r["ci_high"] < 0]
        above = pooled["ci_low"] > 0
        cells = "; ".join(
            f"{s} cases {100 * r['diff']:+.1f} [{100 * r['ci_low']:+.1f}, "
            f"{100 * r['ci_high']:+.1f}] ({r['verdict']})"
            for s, r in zip(SIZES, per_size, strict=True)
        )
        verdict = (
            "qualifies"
            if above and not loss_at
            else "does not qualify: "
            + (
                "pooled interval not above 0"
                if not above
                else f"a loss established at {', '.join(map(str, loss_at))} cases"
            )
        )
        why.append(
            f"- `{fusion}`: all sizes {100 * pooled['diff']:+.1f} [{100 * pooled['ci_low']:+.1f}, "
            f"{100 * pooled['ci_high']:+.1f}] ({pooled['verdict']}); {cells}: {verdict}"
        )
        if above and not loss_at:
            qualifying[fusion] = pooled["diff"]
    chosen = max(qualifying, key=qualifying.__getitem__) if qualifying else BASELINE
    return chosen, why


def main() -> int:
    results, missing = load()
    if missing:
        print(
            f"part 3 is not complete: {len(missing)} runs still to run ({', '.join(missing[:6])}"
            + (", ..." if len(missing) > 6 else "")
            + ")",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        table = write_report(results, tmp, methods=list(FUSIONS), baseline=BASELINE)["table"]
    chosen, why = choose(table)
    text = "\n".join(
        [
            "# Issue 27: the default fusion part 3 chose (generated by `choose_fusion.py`)",
            "",
            "The rule, fixed before part 3 started, is in `choose_fusion.py`: a fusion "
            "qualifies when the seed-level 95 % interval of its Δ mean Dice to `none`, pooled "
            "over 2, 4 and 8 training cases (24 (size, seed) pairs), lies above 0 and no single "
            "size shows an established loss; the qualifying fusion with the largest pooled Δ "
            "becomes `fdseg train`'s default; with none, the default is `none`.",
            "",
            "Δ mean Dice to `none`, points [seed-level 95 % interval] (verdict):",
            "",
            *why,
            "",
            f"Chosen: `{chosen}`" + (" (no fusion qualified)." if chosen == BASELINE else "."),
            "",
        ]
    )
    atomic_write_text(HERE / "FUSION.md", text)
    print(chosen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
