#!/usr/bin/env bash
# Stage the small files of every finished run (one with result.json) of issue 39's
# experiments, and nothing of a run still in progress: config, metrics log, split and
# result; never checkpoints (.gitignore keeps *.pt out).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
for result in ablation/*/runs/*/result.json pilot/runs/*/result.json final/runs/*/result.json \
  schedule/*/runs/*/result.json; do
  [ -e "$result" ] || continue
  run="$(dirname "$result")"
  git add -f -- "$run"/result.json "$run"/config.json "$run"/metrics.jsonl "$run"/metrics.csv \
    "$run"/splits_final.json 2>/dev/null || true
done
for result in nnunet/*/result.json; do
  [ -e "$result" ] || continue
  run="$(dirname "$result")"
  git add -f -- "$run"/result.json "$run"/progress.json "$run"/training_log.txt 2>/dev/null || true
done
for exp in ablation/*/ pilot/ final/ schedule/*/; do
  [ -d "$exp" ] || continue
  for f in experiment.json plans.json table.csv table.md summary.json dice_vs_size.png \
    training_curves.png; do
    [ -e "$exp$f" ] && git add -f -- "$exp$f"
  done
done
for f in CHOICE.md RECIPE SEEDS SEEDS.md FUSION.md SCHEDULE.md REPORT.md; do
  [ -e "$f" ] && git add -- "$f"
done
# the machine of each call of run.sh (*.log is ignored here)
[ -e machines.log ] && git add -f -- machines.log
git status --short -- . | grep -v '^??' || true
