#!/usr/bin/env bash
# Issue 39, part 4: nnU-Net 2.8.1's 3d_fullres on the final split at 9 training cases,
# its stock trainer and fdseg's early and late fusion trainers, seeds 0, 1, 2 (nnU-Net's
# folds 0, 1, 2 are the 9 cases of fdseg's seeds 0, 1, 2; nnunet_setup.py), scored on
# the same 40 test cases with fdseg's evaluator.
#
#   bash experiments/issue39/nnunet.sh                # the short plateau schedule (CPU)
#   SCHEDULE=standard bash experiments/issue39/nnunet.sh   # nnU-Net's 1000 x 250 (a GPU)
#   SEEDS="0 1" bash experiments/issue39/nnunet.sh    # fewer seeds
#
# Runs one training at a time with both cores (nnU-Net's data augmentation runs in worker
# processes of its own). A run with result.json is skipped; a run cut short continues from
# its checkpoint_latest.pth (nnUNetv2_train --c) when this machine's files survive.
# Everything nnU-Net writes stays in experiments/issue39/nnunet/ (ignored by git but for
# each run's result.json, progress.json and training log, which stage_finished.sh adds).
# The code is a worktree at the commit in COMMIT.nnunet, with a virtual environment of its
# own (torch 2.14.1 and torchvision 0.29.1, which nnU-Net's trainer lookup needs).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
COMMIT="$(tr -d '[:space:]' < "$HERE/COMMIT.nnunet")"
WT="${FDSEG_NNUNET_WORKTREE:-$(dirname "$REPO")/fdseg-nnunet39-${COMMIT:0:10}}"
SCHEDULE="${SCHEDULE:-plateau}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1 2}"
if [ ! -d "$WT" ]; then
  git -C "$REPO" worktree add --detach "$WT" "$COMMIT"
fi
if [ ! -x "$WT/.venv/bin/nnUNetv2_train" ]; then
  python3 -m venv "$WT/.venv"
  "$WT/.venv/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1
  "$WT/.venv/bin/pip" install --quiet -e "$WT[nnunet]" torch==2.14.1 torchvision==0.29.1
fi
BIN="$WT/.venv/bin"
PY="$BIN/python"
cd "$HERE"
export nnUNet_raw="$HERE/nnunet/raw" nnUNet_preprocessed="$HERE/nnunet/preprocessed"
export nnUNet_results="$HERE/nnunet/results" nnUNet_compile=false
export nnUNet_extTrainer="$("$BIN/fdseg" nnunet path)"
case "$SCHEDULE" in
  plateau) SUFFIX=_plateau DEVICE=cpu ;;
  standard) SUFFIX= DEVICE=cuda ;;
  *) echo "SCHEDULE must be plateau or standard, got $SCHEDULE" >&2; exit 2 ;;
esac
TRAINERS=("nnUNetTrainer$SUFFIX" "nnUNetTrainerFDEarly$SUFFIX" "nnUNetTrainerFDLate$SUFFIX")

"$PY" nnunet_setup.py raw > /dev/null
PLANS="$nnUNet_preprocessed/Dataset039_Hippocampus/nnUNetPlans.json"
if [ ! -f "$PLANS" ] || [ ! -d "$nnUNet_preprocessed/Dataset039_Hippocampus/nnUNetPlans_3d_fullres" ]; then
  echo "== plan and preprocess ($(date -u +%FT%TZ))"
  "$BIN/nnUNetv2_plan_and_preprocess" -d 39 -c 3d_fullres -np 2 --verify_dataset_integrity
fi
"$PY" nnunet_setup.py splits > /dev/null

for seed in "${SEED_LIST[@]}"; do
  for trainer in "${TRAINERS[@]}"; do
    run="$trainer-s$seed"
    [ -f "nnunet/$run/result.json" ] && continue
    fold="$nnUNet_results/Dataset039_Hippocampus/${trainer}__nnUNetPlans__3d_fullres/fold_$seed"
    echo "== $run ($(date -u +%FT%TZ))"
    resume=()
    [ -f "$fold/checkpoint_latest.pth" ] && resume=(--c)
    if [ ! -f "$fold/checkpoint_final.pth" ]; then
      OMP_NUM_THREADS=2 nnUNet_n_proc_DA=2 "$BIN/nnUNetv2_train" 39 3d_fullres "$seed" \
        -tr "$trainer" -device "$DEVICE" "${resume[@]}"
    fi
    mkdir -p "nnunet/$run"
    OMP_NUM_THREADS=2 "$BIN/nnUNetv2_predict" -i "$nnUNet_raw/Dataset039_Hippocampus/imagesTs" \
      -o "nnunet/$run/pred" -d 39 -c 3d_fullres -f "$seed" -tr "$trainer" \
      -chk checkpoint_best.pth -device "$DEVICE" -npp 1 -nps 1
    "$PY" nnunet_setup.py progress "$run" "$fold"
    "$PY" nnunet_setup.py score "$run"
  done
done
echo "== done ($(date -u +%FT%TZ))"
