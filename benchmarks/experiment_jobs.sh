#!/usr/bin/env bash
# Runs per hour of `fdseg experiment --jobs 1` against `--jobs 2` on the same tiny grid,
# measured one after the other in one session (benchmarks/README.md, "Parallel runs").
#
#   bash benchmarks/experiment_jobs.sh DATASET [OUT]     # DATASET: e.g. a 2 mm phantom
set -euo pipefail
DATA="$1"
OUT="${2:-$(mktemp -d)}"
mkdir -p "$OUT"
GRID=(--train-sizes 2 --fusion none --seeds 4 --epochs 3 --iters-per-epoch 10
  --patch-size 48 48 32 --val-every 1 --bootstrap 200 --no-progress --no-plan)
for jobs in 1 2; do
  t0=$(date +%s.%N)
  fdseg experiment "$DATA" --out "$OUT/jobs$jobs" "${GRID[@]}" --jobs "$jobs" > "$OUT/jobs$jobs.log" 2>&1
  t1=$(date +%s.%N)
  python3 - "$jobs" "$t0" "$t1" <<'PY'
import sys
jobs, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
runs = 4
print(f"--jobs {jobs}: {runs} runs in {t1 - t0:.0f} s, {3600 * runs / (t1 - t0):.1f} runs per hour")
PY
done
