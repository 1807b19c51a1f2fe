#!/usr/bin/env bash
# Issue 42: the perturbation audit of issue 39's runs (experiments/issue42/README.md).
#   bash experiments/issue42/run.sh ablation [pilot] [final] [decisive]
# Each part audits experiments/issue39/<part> (for ablation: its default arm; for
# decisive: issue 27's decisive runs trained again, experiments/issue27/rebuild) into
# experiments/issue42/<part>/. The final audit runs the code of a git worktree at the
# commit in COMMIT, with a virtual environment of its own (../worktree.sh), so that edits
# to this checkout never change the scores of a running audit; the ablation was audited
# with the code of the commit that added these files.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
if [ -z "${FDSEG:-}" ]; then
  source "$HERE/../worktree.sh"
  pinned_worktree exp42 "$(tr -d '[:space:]' < "$HERE/COMMIT")" robustness
fi
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(ablation)
for part in "${PARTS[@]}"; do
  case "$part" in
    ablation) exp="../issue39/ablation/default" ;;
    pilot | final) exp="../issue39/$part" ;;
    decisive) exp="../issue27/rebuild" ;;
    *) echo "unknown part $part: expected ablation, pilot, final or decisive" >&2; exit 2 ;;
  esac
  cd "$HERE"  # relative paths: the results name no machine's absolute path
  [ -f "$exp/experiment.json" ] || { echo "$exp has not run yet" >&2; exit 1; }
  echo "== robustness $part ($(date -u +%FT%TZ))"
  # the final and decisive audits: the clean image and each kind's strongest level
  # (README, amendment)
  levels=()
  [ "$part" = final ] || [ "$part" = decisive ] && levels=(--levels 3)
  "$FDSEG" robustness "$exp" --out "$part" --seed 42 "${levels[@]}" --no-progress
done
