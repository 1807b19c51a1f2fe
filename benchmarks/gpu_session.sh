#!/usr/bin/env bash
# The main job end to end on CUDA, then the GPU measurements that kernels/README.md lists
# as remaining: one prepared run that fits a short lease of a GPU machine (an H100 or
# H200) in one 10-minute device call with room for a rerun ($FDSEG_GPU_BUDGET seconds of
# steps, 420 by default: a step that would start past it is skipped, and says so).
#
#   bash benchmarks/gpu_session.sh            # results into $OUT, or ./gpu-results
#
# The machine may have no network: it needs python3 with torch (CUDA), triton, numpy,
# scipy, click, pluggy, tqdm, matplotlib, pytest and pytest-benchmark installed. What is
# missing travels as wheels in .whl/ (ignored by git), fetched where pip works, e.g.
#   pip download --no-deps -d .whl nibabel 'setuptools>=77'
# (nibabel is pure Python; setuptools>=77 builds fdseg's pyproject). fdseg itself is
# installed from this checkout without dependencies.
#
# Every step has its own time limit and its own log (RESULTS/logs/<step>.log), and the
# script goes on after a failure, so one slow or broken step does not lose the others'
# results. Without a CUDA device every step skips at once (the flow is tested on the CPU:
# tests/benchmarks/test_gpu_session.py). The results folder gets session.log (everything
# printed) and the files of the steps:
#   e2e: the main job on CUDA at a small size
#     e2e-train       fdseg train on the built-in phantom, AMP, 3 epochs   (e2e/run)
#     e2e-predict     fdseg predict --tta on the phantom's test cases       (e2e/pred)
#     e2e-export      fdseg export, then predict --onnx (CPU runtime)       (e2e/model.onnx)
#     e2e-experiment  fdseg experiment --jobs 2 on a tiny grid              (e2e/exp)
#     e2e-nnunet      one epoch of nnUNetTrainerFDEarly with torch.compile  (e2e/nnunet)
#   kernels:
#   1 (log only)     compiled fused kernels, custom ops, CUDA-graph capture (tests -m gpu)
#   2 designs.json   per-axis vs fused kernels: GPU busy time, eager and CUDA-graph wall
#   3 bench.json     fdseg bench at the target shape, eager, compiled and CUDA graph
#   4 steps.json     the training-step overhead at 64^3 and 128^3, eager
#   5 steps_graph.json  the same at 64^3 with CUDA graphs (reduce-overhead)
#   real data (last: it runs when the budget leaves room):
#     nnunet-hippocampus  2 epochs of 250 iterations of nnU-Net's stock trainer and of
#                     fdseg's early and late trainers on the MSD hippocampus split: the time
#                     per epoch that sizes nnU-Net's standard schedule (experiments/issue39).
#                     Needs nnunetv2 and the cases in $FDSEG_HIPPOCAMPUS (default
#                     ../shared/data/msd-hippocampus, 16 MB: carry them to the machine)
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="$(mkdir -p "${OUT:-gpu-results}" && cd "${OUT:-gpu-results}" && pwd)"
mkdir -p "$RESULTS/logs" "$RESULTS/e2e"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
BUDGET="${FDSEG_GPU_BUDGET:-420}"
CUDA=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit and a log of its own
  local name="$1" limit="$2"
  shift 2
  if [ "$CUDA" != 1 ]; then
    echo "== $name: skipped (no CUDA device)"
    return 0
  fi
  if [ $((SECONDS + limit)) -gt "$BUDGET" ]; then
    echo "== $name: skipped (its ${limit}s would pass the ${BUDGET}s budget at ${SECONDS}s)"
    return 0
  fi
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$RESULTS/logs/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$RESULTS/logs/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0))s"
}

{
  echo "== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && CUDA=1
  if compgen -G ".whl/*.whl" > /dev/null; then  # carried wheels first on the path
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/fdseg-site .whl/*.whl
    export PYTHONPATH="/tmp/fdseg-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PY" -c "import nibabel" || echo "nibabel is missing: carry its wheel in .whl/"
  # fdseg from this checkout (already there when it imports from here)
  if ! "$PY" -c "import fdseg_cli, sys; sys.exit(0 if fdseg_cli.__file__.startswith('$PWD/') else 1)" 2> /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
  fi
  FDSEG=("$PY" -m fdseg_cli)
  E2E="$RESULTS/e2e"
  export FDSEG_CACHE="$E2E/cache"  # the built-in phantom, generated once here

  # the main job on CUDA, small: train (AMP), predict with TTA, export and ONNX, a tiny
  # experiment with two runs at once, one epoch of the nnU-Net trainer compiled
  step e2e-train 100 "${FDSEG[@]}" train --out "$E2E/run" --device cuda --epochs 3 --no-progress
  PHANTOM_TEST="$(ls -d "$E2E"/cache/Dataset501_*/imagesTs 2> /dev/null | head -n 1)"
  step e2e-predict 50 "${FDSEG[@]}" predict "$E2E/run/best.pt" "$PHANTOM_TEST" \
    --out "$E2E/pred" --tta --device cuda --no-progress
  step e2e-export 60 bash -c "'$PY' -m fdseg_cli export '$E2E/run/best.pt' --out '$E2E/model.onnx' \
    && '$PY' -m fdseg_cli predict --onnx '$E2E/model.onnx' '$PHANTOM_TEST' --out '$E2E/pred-onnx' --no-progress"
  step e2e-experiment 90 "${FDSEG[@]}" experiment "$(dirname "$PHANTOM_TEST")" --out "$E2E/exp" \
    --train-sizes 2 --fusion none,late --seeds 1 --epochs 2 --iters-per-epoch 5 \
    --val-every 1 --jobs 2 --device cuda --bootstrap 200 --no-progress
  if "$PY" -c "import nnunetv2" 2> /dev/null; then
    step e2e-nnunet 100 "$PY" benchmarks/nnunet_gpu_epoch.py "$E2E/nnunet"
  else
    echo "== e2e-nnunet: skipped (nnunetv2 is not installed: pip install 'fdseg[nnunet]')"
  fi

  step tests 80 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/kernels tests/core/bands
  step designs 60 "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_bands_gpu.py \
    -k "kernel_designs" --benchmark-json "$RESULTS/designs.json"
  step bench 90 "${FDSEG[@]}" bench --device cuda --shape 2x8x160x160x128 \
    --backend matmul --backend triton --mode compiled --mode cuda-graph \
    --repeats 20 --warmup 3 --no-progress --json "$RESULTS/bench.json"
  # the training-step tables: eager at both sizes, then CUDA graphs (torch.compile's
  # reduce-overhead: one compilation per fusion) at 64^3, where the step is launch-bound
  step steps 60 "${FDSEG[@]}" bench --device cuda --backend triton --op split \
    --shape 1x1x32x32x32 --train-step 64 --train-step 128 \
    --repeats 10 --warmup 3 --no-progress --json "$RESULTS/steps.json"
  step steps-graph 120 "${FDSEG[@]}" bench --device cuda --backend triton --op split \
    --shape 1x1x32x32x32 --train-step 64 --mode cuda-graph \
    --repeats 10 --warmup 3 --no-progress --json "$RESULTS/steps_graph.json"
  HIPPO="${FDSEG_HIPPOCAMPUS:-$(dirname "$PWD")/shared/data/msd-hippocampus}"
  if "$PY" -c "import nnunetv2" 2> /dev/null && [ -f "$HIPPO/dataset.json" ]; then
    step nnunet-hippocampus 240 env FDSEG_HIPPOCAMPUS="$HIPPO" PYTHON="$PY" \
      bash experiments/issue39/nnunet_gpu_epochs.sh "$RESULTS/nnunet-hippocampus"
  else
    echo "== nnunet-hippocampus: skipped (needs nnunetv2 and the MSD hippocampus cases in $HIPPO)"
  fi
  echo "== done"
} 2>&1 | tee "$RESULTS/session.log"
