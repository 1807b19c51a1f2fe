#!/usr/bin/env bash
# Stage the small files of every finished run (one with result.json) of issue 17's
# experiments, and nothing of a run still in progress: config, metrics log, split and
# result; never checkpoints (.gitignore keeps *.pt out).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
for result in */runs/*/result.json; do
  [ -e "$result" ] || continue
  run="$(dirname "$result")"
  git add -- "$run"/result.json "$run"/config.json "$run"/metrics.jsonl "$run"/metrics.csv \
    "$run"/splits_final.json 2>/dev/null || true
done
for part in */; do
  for f in experiment.json table.csv table.md dice_vs_size.png training_curves.png; do
    [ -e "$part$f" ] && git add -- "$part$f"
  done
done
# the running tables of report.py, when it has been run
[ -e REPORT.md ] && git add -- REPORT.md report
git status --short -- . | grep -v '^??' || true
