#!/usr/bin/env bash
# The GPU measurements that kernels/README.md lists as remaining, as one prepared run that
# fits a short lease of a GPU machine (an H100 or H200; at most 9 minutes of work).
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
# Every step has its own time limit and the script goes on after a failure, so one slow
# or broken step does not lose the others' results. The results folder gets session.log
# (everything printed) and the JSON files of the steps (five files in all):
#   1 (log only)     compiled fused kernels, custom ops, CUDA-graph capture (tests -m gpu)
#   2 designs.json   per-axis vs fused kernels: GPU busy time, eager and CUDA-graph wall
#   3 bench.json     fdseg bench at the target shape, eager, compiled and CUDA graph
#   4 steps.json     the training-step overhead at 64^3 and 128^3, eager
#   5 steps_graph.json  the same at 64^3 with CUDA graphs (reduce-overhead)
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-gpu-results}"
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, report the exit status
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  echo "== $name: exit $? after $((SECONDS - t0))s"
}

{
  echo "== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
  if compgen -G ".whl/*.whl" > /dev/null; then  # carried wheels first on the path
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/fdseg-site .whl/*.whl
    export PYTHONPATH="/tmp/fdseg-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PY" -c "import nibabel" || echo "nibabel is missing: carry its wheel in .whl/"
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
  FDSEG=("$PY" -m fdseg_cli)

  step tests 110 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/kernels tests/core/bands
  step designs 80 "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_bands_gpu.py \
    -k "kernel_designs" --benchmark-json "$RESULTS/designs.json"
  step bench 120 "${FDSEG[@]}" bench --device cuda --shape 2x8x160x160x128 \
    --backend matmul --backend triton --mode compiled --mode cuda-graph \
    --repeats 20 --warmup 3 --no-progress --json "$RESULTS/bench.json"
  # the training-step tables: eager at both sizes, then CUDA graphs (torch.compile's
  # reduce-overhead: one compilation per fusion) at 64^3, where the step is launch-bound
  step steps 60 "${FDSEG[@]}" bench --device cuda --backend triton --op split \
    --shape 1x1x32x32x32 --train-step 64 --train-step 128 \
    --repeats 10 --warmup 3 --no-progress --json "$RESULTS/steps.json"
  step steps-graph 170 "${FDSEG[@]}" bench --device cuda --backend triton --op split \
    --shape 1x1x32x32x32 --train-step 64 --mode cuda-graph \
    --repeats 10 --warmup 3 --no-progress --json "$RESULTS/steps_graph.json"
  echo "== done"
} 2>&1 | tee "$RESULTS/session.log"
