#!/usr/bin/env bash
# Stage the small files of every finished run (one with result.json) of issue 27's
# experiments, and nothing of a run still in progress: config, metrics log, split and
# result; never checkpoints (.gitignore keeps *.pt out).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
# the ablation's runs (ablation/<arm>-n<size>/runs/<run>) and part 3's (decisive/runs/<run>,
# and rebuild/runs/<run>, the same runs trained again)
for result in */*/runs/*/result.json decisive/runs/*/result.json rebuild/runs/*/result.json; do
  [ -e "$result" ] || continue
  run="$(dirname "$result")"
  git add -f -- "$run"/result.json "$run"/config.json "$run"/metrics.jsonl "$run"/metrics.csv \
    "$run"/splits_final.json 2>/dev/null || true
done
for exp in */*/ decisive/ rebuild/; do
  [ "${exp%%/*}" = data ] && continue
  [ "$exp" = decisive/runs/ ] || [ "$exp" = rebuild/runs/ ] && continue
  for f in experiment.json table.csv table.md summary.json dice_vs_size.png training_curves.png; do
    [ -e "$exp$f" ] && git add -f -- "$exp$f"
  done
done
[ -e REPORT.md ] && git add -- REPORT.md report
for f in rebuild/REBUILD.md rebuild/not_the_same_run.txt rebuild-machines.log; do
  [ -e "$f" ] && git add -f -- "$f"
done
git status --short -- . | grep -v '^??' || true
