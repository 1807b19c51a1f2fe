#!/usr/bin/env bash
# Issue 27, parts 2 and 3: run (or resume) the recipe ablation, then the decisive experiment.
#
#   bash experiments/issue27/run.sh                     # the ablation (part 2)
#   bash experiments/issue27/run.sh ablation-parallel   # the same, both sizes at once
#   bash experiments/issue27/run.sh choose decisive     # part 3: choose the recipe, then run
#   bash experiments/issue27/run.sh rebuild             # part 3's runs trained again into
#                                                       # rebuild/, for their checkpoints
#
# Part 3 trains the recipe that part 2 chose: experiments/issue27/RECIPE holds its options
# on one line (empty for fdseg train's default recipe), written when part 2 decides.
#
# Never edit this file in place while a part runs (bash reads a running script as it
# goes): write the new version beside it and rename it over this one.
#
# The code that trains is a git worktree at the commit in experiments/issue27/COMMIT, with
# its own virtual environment, so that edits to this checkout never change a running
# experiment. Every command runs inside experiments/issue27 with relative paths, so the
# committed config.json, result.json and experiment.json files name no machine's absolute
# path: data/ is a link to the worktree's phantoms (ignored by git). Every finished run
# leaves runs/<run>/result.json, and `fdseg experiment` skips those, so committed results
# resume on a new machine. Checkpoints (*.pt) are never committed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(ablation)

# part 2 (the ablation) ran its code at COMMIT; part 3 (choose, decisive) at
# COMMIT.decisive, which batches the sliding windows of validation (the same Dice, about
# half the time of a run on 48 x 48 x 32 patches: benchmarks/README.md, "Sliding-window
# batch"). One invocation runs the parts of one of the two.
case "${PARTS[0]}" in
  choose | decisive | rebuild) COMMIT_FILE="$HERE/COMMIT.decisive" ;;
  *) COMMIT_FILE="$HERE/COMMIT" ;;
esac
for part in "${PARTS[@]}"; do
  case "$part" in
    choose | decisive | rebuild) [ "$COMMIT_FILE" = "$HERE/COMMIT.decisive" ] ;;
    *) [ "$COMMIT_FILE" = "$HERE/COMMIT" ] ;;
  esac || { echo "run the parts of part 2 and of part 3 in separate calls" >&2; exit 2; }
done
COMMIT="$(tr -d '[:space:]' < "$COMMIT_FILE")"
source "$HERE/../worktree.sh"
pinned_worktree exp27 "$COMMIT"
mkdir -p "$WT/data"
[ -e "$HERE/data" ] || ln -s "$WT/data" "$HERE/data"
cd "$HERE"
if [ ! -f data/phantom2mm/dataset.json ]; then
  # issue 17's draw (its test cases have served decisions: a development set here)
  "$FDSEG" phantom data/phantom2mm --cases 10 --test-cases 8 --seed 1 --shape 80 80 64 --spacing 2
fi

# issue 17's stopping rule (validate every 10 steps on the 2 validation cases of fold 0;
# stop after 10 validations without a gain > 0.005 in mean Dice, never before step 300;
# evaluate the best checkpoint), with a cap of 1200 steps that no arm of issue 17 reached
# while it still improved (its caps were 600 and 720)
PLATEAU=(--iters-per-epoch 10 --val-every 1 --early-stop-patience 10
  --early-stop-min-epochs 30 --early-stop-min-delta 0.005 --checkpoint best --channels-last
  --epochs 120)
# the runs of issue 17 and of the first ablation runs trained the fixed 64^3 default
# patch, not a planned one (`fdseg experiment` plans since issue 28): --no-plan keeps that
RUNNER=(--no-plan)

# the recipe ablation: fdseg train's default recipe with one factor of the paper's recipe on
# patches (issue 17, table c) at a time, and the whole paper recipe on patches; fusion none
declare -A ARMS=(
  [default]=""
  [network]="--backbone paper_unet3d"
  [loss]="--loss sigmoid_dice"
  [optimiser]="--optimizer adam --weight-decay 1e-10 --schedule constant --grad-clip 0"
  [patch]="--patch-size 48 48 32"
  [no-augment]="--no-augment"
  [paper-patches]="--recipe paper --layout centered --patch-size 48 48 32"
)
ARM_ORDER=(default network loss optimiser patch no-augment paper-patches)

run_ablation() {  # run_ablation SIZE...: every arm at these training sizes, in order
  for size in "$@"; do
    for arm in "${ARM_ORDER[@]}"; do
      echo "== ablation $arm, $size cases ($(date -u +%FT%TZ))"
      # shellcheck disable=SC2086
      "$FDSEG" experiment data/phantom2mm --out "ablation/$arm-n$size" --train-sizes "$size" \
        --fusion none --seeds 3 ${ARMS[$arm]} "${PLATEAU[@]}" "${RUNNER[@]}" --no-progress
    done
  done
}

for part in "${PARTS[@]}"; do
  echo "== part $part ($(date -u +%FT%TZ), code at $COMMIT)"
  case "$part" in
    ablation) run_ablation 2 8 ;;
    ablation-n2) run_ablation 2 ;;
    ablation-n8) run_ablation 8 ;;
    # one arm at one size: arm-SIZE-NAME, e.g. arm-8-no-augment
    arm-*) rest="${part#arm-}"; size="${rest%%-*}"; ARM_ORDER=("${rest#*-}")
      [ -n "${ARMS[${ARM_ORDER[0]}]+set}" ] || { echo "unknown arm in $part" >&2; exit 2; }
      run_ablation "$size" ;;
    # what the last session left, split into two chains of about equal length (the
    # remaining 2-case runs are short): finished runs are skipped, so this is the same
    # ablation as ablation-parallel, only scheduled so that neither core idles
    ablation-balanced)
      OMP_NUM_THREADS=1 bash "$HERE/run.sh" ablation-n2 arm-8-paper-patches \
        > "$HERE/ablation-chain-a.log" 2>&1 &
      OMP_NUM_THREADS=1 bash "$HERE/run.sh" arm-8-patch arm-8-no-augment \
        > "$HERE/ablation-chain-b.log" 2>&1 &
      wait ;;
    # both sizes at once, one thread each: two single-threaded runs more than double the
    # runs per hour of one two-threaded run on a 2-core machine (benchmarks/README.md,
    # "Parallel runs"); what each run computes does not change
    ablation-parallel)
      OMP_NUM_THREADS=1 bash "$HERE/run.sh" ablation-n2 > "$HERE/ablation-n2.log" 2>&1 &
      OMP_NUM_THREADS=1 bash "$HERE/run.sh" ablation-n8 > "$HERE/ablation-n8.log" 2>&1 &
      wait ;;
    # part 3: a fresh draw that no decision has seen (seed 27 instead of issue 17's 1),
    # 12 training and 16 test cases; 4 folds, so that fold 0 validates on 3 cases and
    # leaves 9 for the training sizes; none, early and late; 8 seeds; two single-threaded
    # runs at once (--jobs 2)
    # part 3's recipe, by the rule fixed in choose_recipe.py before the ablation ended:
    # RECIPE gets the chosen arm's options (an empty line for the default recipe)
    choose)
      arm="$("$WT/.venv/bin/python" "$HERE/choose_recipe.py")"
      [ -n "${ARMS[$arm]+set}" ] || { echo "choose_recipe.py chose an unknown arm $arm" >&2; exit 1; }
      printf '%s\n' "${ARMS[$arm]}" > "$HERE/RECIPE.tmp" && mv "$HERE/RECIPE.tmp" "$HERE/RECIPE"
      echo "chose $arm: RECIPE = '${ARMS[$arm]}'" ;;
    decisive | rebuild)
      if [ ! -f "$HERE/RECIPE" ]; then
        echo "part decisive needs $HERE/RECIPE: the options of the recipe part 2 chose" >&2
        exit 2
      fi
      read -r -a RECIPE < "$HERE/RECIPE" || true
      if [ ! -f data/phantom-fresh/dataset.json ]; then
        "$FDSEG" phantom data/phantom-fresh --cases 12 --test-cases 16 --seed 27 \
          --shape 80 80 64 --spacing 2
      fi
      # rebuild: the same command, draw and code into rebuild/ (decisive/'s checkpoints
      # were lost with the machine they trained on; experiments/issue42/README.md); on
      # another CPU a run need not reproduce bit for bit, and compare_rebuild.py says
      # how far each moved (rebuild/REBUILD.md)
      # the machine of this call (COMMIT.decisive's result.json does not record it)
      [ "$part" = decisive ] || "$PY" ../machine.py >> rebuild-machines.log
      "$FDSEG" experiment data/phantom-fresh --out "$part" --train-sizes 2,4,8 \
        --fusion none,early,late --seeds 8 --folds 4 "${RECIPE[@]}" "${PLATEAU[@]}" \
        "${RUNNER[@]}" --jobs 2 --no-progress
      [ "$part" = decisive ] || "$PY" compare_rebuild.py ;;
    *) echo "unknown part $part (expected ablation, ablation-n2, ablation-n8, ablation-parallel, ablation-balanced, arm-SIZE-NAME, choose, decisive, rebuild)" >&2
      exit 2 ;;
  esac
done
