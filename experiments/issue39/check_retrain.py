"""Issue 39: which retrained final runs reproduce their committed results.

    python experiments/issue39/check_retrain.py SCRATCH   # run.sh part retrain runs it

``SCRATCH`` is the experiment folder the part ``retrain`` trained into. For each run
there with a ``result.json``, every test case's Dice of every class is compared with
the committed ``final/runs/<run>/result.json``. A run that reproduces them (each
difference at most 1e-6, the same best step) gets its retrained ``best.pt`` copied into
its committed folder, where the robustness audit (experiments/issue42) finds it; a run
that does not is named, and its folder is left as it is. Exit 1 when any run differs.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-6


def differences(committed: dict, retrained: dict) -> tuple[float, list[str]]:
    """The largest |Δ Dice| over the cases and classes, and what else differs."""
    other = [k for k in ("best_step", "stop_step") if committed.get(k) != retrained.get(k)]
    mine = {c["case"]: c for c in retrained["cases"]}
    if set(mine) != {c["case"] for c in committed["cases"]}:
        return math.inf, [*other, "test cases"]
    worst = 0.0
    for case in committed["cases"]:
        for key, value in case.items():
            if not key.startswith("dice_"):
                continue
            again = mine[case["case"]].get(key)
            if (value is None) != (again is None):
                return math.inf, [*other, f"{case['case']} {key}"]
            if value is not None:
                worst = max(worst, abs(float(value) - float(again)))
    return worst, other


def main(scratch: Path) -> int:
    differ = 0
    for result in sorted((scratch / "runs").glob("*/result.json")):
        run = result.parent.name
        committed_dir = HERE / "final" / "runs" / run
        committed = json.loads((committed_dir / "result.json").read_text())
        retrained = json.loads(result.read_text())
        worst, other = differences(committed, retrained)
        if worst <= TOLERANCE and not other:
            target = committed_dir / "best.pt"
            shutil.copyfile(result.parent / "best.pt", target.with_suffix(".pt.tmp"))
            target.with_suffix(".pt.tmp").replace(target)
            print(f"{run}: reproduced (largest |Δ Dice| {worst:.1e}): best.pt copied")
        else:
            differ += 1
            print(f"{run}: NOT reproduced (largest |Δ Dice| {worst:.3g}; differs: {other})")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check_retrain.py SCRATCH")
    sys.exit(main(Path(sys.argv[1])))
