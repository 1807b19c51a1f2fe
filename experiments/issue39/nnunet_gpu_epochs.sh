#!/usr/bin/env bash
# Issue 39, part 4 on a GPU: the cost of nnU-Net's standard schedule on the final split.
# Trains 2 epochs of 250 iterations of nnU-Net's stock trainer and of fdseg's early and
# late fusion trainers on fold 0 (seed 0's 9 cases) and prints the time per epoch, from
# which the standard grid (1000 epochs x 3 trainers x 3 seeds) is sized; then
# `SCHEDULE=standard bash experiments/issue39/nnunet.sh` runs it on a lease long enough.
#
#   bash experiments/issue39/nnunet_gpu_epochs.sh OUT     # a step of benchmarks/gpu_session.sh
#
# Uses the Python environment it is called with ($PYTHON, or python3: torch with CUDA,
# nnunetv2, fdseg) and the MSD hippocampus cases in $FDSEG_HIPPOCAMPUS (or
# ../shared/data/msd-hippocampus); nothing is installed. DEVICE=cpu and ITERATIONS=2 run
# the same flow on a CPU in a few minutes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$(mkdir -p "${1:?usage: nnunet_gpu_epochs.sh OUT}" && cd "$1" && pwd)"
PY="${PYTHON:-python3}"
BIN="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")"
DEVICE="${DEVICE:-cuda}"
ITERATIONS="${ITERATIONS:-250}"
export nnUNet_raw="$OUT/raw" nnUNet_preprocessed="$OUT/preprocessed" nnUNet_results="$OUT/results"
export nnUNet_compile="${nnUNet_compile:-true}" FDSEG_NNUNET_OUT="$OUT"
mkdir -p "$OUT/ext"
cat > "$OUT/ext/fdseg_epochs.py" <<PYEOF
import torch

from fdseg_core.integrations.nnunet.trainer import (
    nnUNetTrainerFD,
    nnUNetTrainerFDEarly,
    nnUNetTrainerFDLate,
)


class _TwoEpochs:
    # nnU-Net records its __init__ arguments by name: keep its signature
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = $ITERATIONS


class nnUNetTrainer_2epochs(_TwoEpochs, nnUNetTrainerFD):  # fusion none: nnU-Net's network
    pass


class nnUNetTrainerFDEarly_2epochs(_TwoEpochs, nnUNetTrainerFDEarly):
    pass


class nnUNetTrainerFDLate_2epochs(_TwoEpochs, nnUNetTrainerFDLate):
    pass
PYEOF
export nnUNet_extTrainer="$("$BIN/fdseg" nnunet path):$OUT/ext"
cd "$HERE"
"$PY" nnunet_setup.py raw
"$BIN/nnUNetv2_plan_and_preprocess" -d 39 -c 3d_fullres -np 4 > "$OUT/preprocess.log" 2>&1
"$PY" nnunet_setup.py splits
for trainer in nnUNetTrainer_2epochs nnUNetTrainerFDEarly_2epochs nnUNetTrainerFDLate_2epochs; do
  "$BIN/nnUNetv2_train" 39 3d_fullres 0 -tr "$trainer" -device "$DEVICE" \
    > "$OUT/$trainer.log" 2>&1 || true
  echo "$trainer: $(grep -h 'Epoch time' "$OUT/$trainer.log" | sed 's/.*Epoch time: //' | tr '\n' ' ')"
done
