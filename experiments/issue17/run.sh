#!/usr/bin/env bash
# Issue 17, the decisive experiment: run (or resume) every part, in the issue's order.
#
#   bash experiments/issue17/run.sh            # all parts: a, b2, b48, c
#   bash experiments/issue17/run.sh a b2       # only these parts
#
# The code that trains is a git worktree at the commit in experiments/issue17/COMMIT
# (with its own virtual environment), so that edits to this checkout never change a
# running experiment. Results go into experiments/issue17/<part>/ of this checkout:
# every finished run leaves runs/<run>/result.json, and `fdseg experiment` skips those,
# so committed results resume on a new machine. Checkpoints (*.pt) are never committed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
COMMIT="$(tr -d '[:space:]' < "$HERE/COMMIT")"
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(a b2 b48 c)

source "$HERE/../worktree.sh"
pinned_worktree exp17 "$COMMIT"
DATA="${FDSEG_EXP_DATA:-$WT/data/phantom2mm}"
if [ ! -f "$DATA/dataset.json" ]; then
  # the phantom of every earlier table: 10 training and 8 held-out test cases at 2 mm
  "$FDSEG" phantom "$DATA" --cases 10 --test-cases 8 --seed 1 --shape 80 80 64 --spacing 2
fi

# the stopping rule of the earlier tables: validate every 10 steps on the 2 validation
# cases of fold 0; stop after 10 validations without a gain > 0.005 in mean Dice, never
# before step 300; evaluate the best checkpoint on the 8 test cases
PLATEAU=(--iters-per-epoch 10 --val-every 1 --early-stop-patience 10
  --early-stop-min-epochs 30 --early-stop-min-delta 0.005 --checkpoint best --channels-last)

run_part() {
  local part="$1"
  local out="$HERE/$part"
  case "$part" in
    a)  # what users get: fdseg train's defaults (unet3d, its fusion points), 720 steps at most
      "$FDSEG" experiment "$DATA" --out "$out" --train-sizes 2,4,8 --fusion none,early,late \
        --seeds 3 --epochs 72 "${PLATEAU[@]}" --no-progress ;;
    b2)  # the paper configuration at 2 cases: all five methods, 600 steps at most
      "$FDSEG" experiment "$DATA" --out "$out" --recipe paper --train-sizes 2 \
        --fusion none,early,late --layouts centered,reference --seeds 3 --epochs 60 \
        "${PLATEAU[@]}" --no-progress ;;
    b48)  # the paper configuration at 4 and 8 cases: none, early and late, centred
      "$FDSEG" experiment "$DATA" --out "$out" --recipe paper --train-sizes 4,8 \
        --fusion none,early,late --layout centered --seeds 3 --epochs 60 \
        "${PLATEAU[@]}" --no-progress ;;
    c)  # the patch ablation under the paper recipe: 48 x 48 x 32 patches, 2 cases
      "$FDSEG" experiment "$DATA" --out "$out" --recipe paper --train-sizes 2 \
        --fusion none,early --layout centered --patch-size 48 48 32 --seeds 3 --epochs 60 \
        "${PLATEAU[@]}" --no-progress ;;
    *) echo "unknown part $part (expected a, b2, b48, c)" >&2; exit 2 ;;
  esac
}

for part in "${PARTS[@]}"; do
  echo "== part $part ($(date -u +%FT%TZ), code at $COMMIT)"
  run_part "$part"
done
