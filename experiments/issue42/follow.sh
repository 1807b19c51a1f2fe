#!/usr/bin/env bash
# Audit issue 39's final runs as they finish, on the machine they train on (their
# checkpoints are never committed; README.md, amendment):
#
#   bash experiments/issue42/follow.sh PGID [INTERVAL_S]
#
# PGID is the process group of issue 39's grid (run.sh started with setsid: its pid).
# Every INTERVAL_S seconds (default 900), when a finished run (result.json and best.pt)
# has no scores yet in final/robustness.scores.json, the grid is paused (SIGSTOP to its
# process group), `run.sh final` scores the new runs with both cores, and the grid goes
# on (SIGCONT), also when this script is stopped. Each pause is a line of
# final/pauses.log (UTC start, end, seconds): a run's time_s includes the pauses that
# fell within it. The script ends when the grid has.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
PY="${PY:-python3}"
PGID="${1:?give the process group of issue 39's grid}"
INTERVAL="${2:-900}"
mkdir -p "$HERE/final"
resume() { kill -CONT -- "-$PGID" 2>/dev/null || true; }
trap resume EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

unscored() {  # the finished runs with a checkpoint and no stored scores, one per line
  "$PY" - "$REPO/experiments/issue39/final/runs" "$HERE/final/robustness.scores.json" <<'PY'
import json, pathlib, sys
runs, store = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
scored = set(json.loads(store.read_text())["models"]) if store.is_file() else set()
for run in sorted(runs.glob("*")):
    if (run / "result.json").is_file() and (run / "best.pt").is_file() and run.name not in scored:
        print(run.name)
PY
}

while kill -0 -- "-$PGID" 2>/dev/null; do
  new="$(unscored | wc -l)"
  if [ "$new" -gt 0 ]; then
    start="$(date -u +%FT%TZ)"; t0="$(date +%s)"
    echo "== $start: $new new run(s): pausing the grid to audit them"
    kill -STOP -- "-$PGID"
    status=0
    bash "$HERE/run.sh" final || status=$?
    resume
    echo "$start $(date -u +%FT%TZ) $(( $(date +%s) - t0 ))" >> "$HERE/final/pauses.log"
    [ "$status" -eq 0 ] || { echo "the audit failed (exit $status)" >&2; exit "$status"; }
  fi
  sleep "$INTERVAL"
done
echo "== $(date -u +%FT%TZ): the grid has ended"
# the runs that ended last
[ "$(unscored | wc -l)" -eq 0 ] || bash "$HERE/run.sh" final
