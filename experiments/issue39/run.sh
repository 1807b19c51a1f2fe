#!/usr/bin/env bash
# Issue 39: fdseg on the MSD Hippocampus (../shared/data/msd-hippocampus, 200 real cases).
#
#   bash experiments/issue39/run.sh ablation        # part 2: which recipe trains best here
#   bash experiments/issue39/run.sh choose pilot    # choose the recipe; pilot of part 3
#   bash experiments/issue39/run.sh seeds final     # size part 3 from the pilot; run it
#   bash experiments/issue39/run.sh decide          # the default fusion (FUSION.md)
#   bash experiments/issue39/run.sh schedule        # the plateau rule against 2500 steps
#   RUNS="n005-none-s0 ..." bash experiments/issue39/run.sh retrain
#                                                   # final runs again, for their checkpoints
#
# The split (split.json) and the dataset views (views/dev, views/final: MSD dataset.json
# files whose paths point into the shared data; nothing is copied) come from
# make_split.py. Decisions read only the dev view's test cases (dev_test); the 40 test
# cases of the final view are scored by the final runs alone.
#
# Never edit this file in place while a part runs (bash reads a running script as it
# goes): write the new version beside it and rename it over this one.
#
# The code that trains is a git worktree at the commit in experiments/issue39/COMMIT,
# with its own virtual environment, so that edits to this checkout never change a running
# experiment. Every command runs inside experiments/issue39 with relative paths, so the
# committed config.json, result.json and experiment.json name no machine's absolute path.
# Every finished run leaves runs/<run>/result.json, and `fdseg experiment` skips those,
# so committed results resume on a new machine (a run cut short resumes from its
# last.pt when this machine's files survive, else it starts again). Checkpoints (*.pt)
# are never committed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(ablation)

COMMIT="$(tr -d '[:space:]' < "$HERE/COMMIT")"
source "$HERE/../worktree.sh"
pinned_worktree exp39 "$COMMIT"
cd "$HERE"
# the machine this call trains on (result.json records it only from a later commit than
# COMMIT): one line of machines.log
"$PY" ../machine.py >> machines.log
"$PY" make_split.py > /dev/null
git -C "$REPO" diff --quiet -- "$HERE/split.json" "$HERE/views" \
  || { echo "make_split.py changed split.json or views/: the split is fixed" >&2; exit 1; }

# The stopping rule of every run, fixed before the first one: validate on the fold's 10
# validation cases every 50 steps; stop after 8 validations (400 steps) without a gain
# > 0.002 in mean Dice, never before step 500; cap 3000 steps; evaluate best.pt.
PLATEAU=(--iters-per-epoch 50 --val-every 1 --early-stop-patience 8
  --early-stop-min-epochs 10 --early-stop-min-delta 0.002 --epochs 60 --checkpoint best
  --channels-last)
# glibc keeps freed memory instead of returning it to the system after every step (about
# 9 % faster steps on this machine's CPU; what a run computes does not change)
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
# dev: 130 training cases, fold 0 of 13 validates on 10, the pool holds 120;
# final: 160 training cases, fold 0 of 16 validates on 10, the pool holds 150
DEV=(views/dev --folds 13)
FINAL=(views/final --folds 16)

# part 2's arms: fdseg train's default recipe (at the commit in COMMIT), the same on the
# plan's patch and batch (what `fdseg plan views/dev` plans), with augmentation, and the
# nnU-Net-like recipe (its own plan; fusion none like every arm)
declare -A ARMS=(
  [default]=""
  [plan]="--patch-size 36 52 36 --batch-size 5"
  [augment]="--augment"
  [nnunet_like]="--recipe nnunet_like"
)
ARM_ORDER=(default augment plan nnunet_like)

for part in "${PARTS[@]}"; do
  echo "== part $part ($(date -u +%FT%TZ), code at $COMMIT)"
  case "$part" in
    ablation)
      for arm in "${ARM_ORDER[@]}"; do
        echo "== ablation $arm ($(date -u +%FT%TZ))"
        # shellcheck disable=SC2086
        "$FDSEG" experiment "${DEV[@]}" --out "ablation/$arm" --train-sizes 9,50 \
          --fusion none --seeds 3 ${ARMS[$arm]} "${PLATEAU[@]}" --jobs 2 --no-progress
      done ;;
    choose)
      arm="$("$PY" choose_recipe.py)"
      [ -n "${ARMS[$arm]+set}" ] || { echo "choose_recipe.py chose an unknown arm $arm" >&2; exit 1; }
      printf '%s\n' "${ARMS[$arm]}" > RECIPE.tmp && mv RECIPE.tmp RECIPE
      echo "chose $arm: RECIPE = '${ARMS[$arm]}'" ;;
    pilot)
      [ -f RECIPE ] || { echo "part pilot needs RECIPE (part choose)" >&2; exit 2; }
      read -r -a RECIPE < RECIPE || true
      "$FDSEG" experiment "${DEV[@]}" --out pilot --train-sizes 5 --fusion none,early,late \
        --seeds 5 "${RECIPE[@]}" "${PLATEAU[@]}" --jobs 2 --no-progress ;;
    seeds)
      "$PY" plan_seeds.py ;;
    # the default fusion, by choose_fusion.py's rule (committed before the final runs)
    decide)
      "$PY" choose_fusion.py ;;
    final)
      [ -f RECIPE ] && [ -f SEEDS ] || { echo "part final needs RECIPE and SEEDS" >&2; exit 2; }
      read -r -a RECIPE < RECIPE || true
      read -r sizes seeds < SEEDS
      "$FDSEG" experiment "${FINAL[@]}" --out final --train-sizes "$sizes" \
        --fusion none,early,late --seeds "$seeds" "${RECIPE[@]}" "${PLATEAU[@]}" --jobs 2 \
        --no-progress ;;
    # the default recipe on fdseg train's fixed schedule (2500 steps: 50 epochs of 50),
    # validating every 50 steps and scoring best.pt, paired with ablation/default (the
    # same seeds, draws and recipe, stopped by the plateau rule): choose_schedule.py
    schedule)
      "$FDSEG" experiment "${DEV[@]}" --out schedule/fixed2500 --train-sizes 9,50 \
        --fusion none --seeds 3 --iters-per-epoch 50 --val-every 1 --epochs 50 \
        --checkpoint best --channels-last --jobs 2 --no-progress ;;
    # final runs whose checkpoints were lost (they are never committed), trained again
    # as the grid trained them (its command, one run of it by --shard, one CPU thread as
    # under --jobs 2, two at a time) into a scratch folder beside the repository
    # (RETRAIN_OUT, default ../fdseg-retrain39); check_retrain.py then copies a retrained
    # best.pt into the run's folder only if it reproduces the committed test Dice
    retrain)
      [ -f RECIPE ] && [ -f SEEDS ] || { echo "part retrain needs RECIPE and SEEDS" >&2; exit 2; }
      read -r -a RECIPE < RECIPE || true
      read -r sizes seeds < SEEDS
      scratch="${RETRAIN_OUT:-$(dirname "$REPO")/fdseg-retrain39}/final"
      cmd=("$FDSEG" experiment "${FINAL[@]}" --out "$scratch" --train-sizes "$sizes"
        --fusion none,early,late --seeds "$seeds" "${RECIPE[@]}" "${PLATEAU[@]}" --jobs 2
        --no-progress)
      mkdir -p "$(dirname "$scratch")"
      total="$("${cmd[@]}" --list | grep -c .)"
      pids=()
      for run in ${RUNS:?name the runs to train again in RUNS}; do
        index="$("${cmd[@]}" --list | awk -F'\t' -v r="$run" '$2 == r {print $1; exit}')"
        [ -n "$index" ] || { echo "$run is not a run of the final grid" >&2; exit 2; }
        echo "== retrain $run (index $index of $total) ($(date -u +%FT%TZ))"
        "${cmd[@]}" --shard "$((index + 1))/$total" > "$(dirname "$scratch")/$run.log" 2>&1 &
        pids+=($!)
        if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
      done
      for pid in "${pids[@]}"; do wait "$pid"; done
      "$PY" check_retrain.py "$scratch" ;;
    *) echo "unknown part $part (expected ablation, choose, pilot, seeds, final, decide, schedule, retrain)" >&2
      exit 2 ;;
  esac
done
