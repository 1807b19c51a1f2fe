# The git worktree in which an experiment's code runs, shared by the experiments' run.sh:
#
#   source "$HERE/../worktree.sh"
#   pinned_worktree exp39 "$COMMIT"               # sets WT, FDSEG and PY
#   pinned_worktree exp42 "$COMMIT" robustness    # with fdseg's extras (comma-separated)
#
# The worktree is a detached checkout of COMMIT beside this repository
# (../fdseg-<name>-<first 10 hex digits>, or FDSEG_EXP_WORKTREE), with a virtual
# environment of its own, so that edits to this checkout never change a running
# experiment and a rerun on another machine runs the same code.
pinned_worktree() {
  local name="$1" commit="$2" extras="${3:-}" repo spec
  repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
  WT="${FDSEG_EXP_WORKTREE:-$(dirname "$repo")/fdseg-${name}-${commit:0:10}}"
  if [ ! -d "$WT" ]; then
    git -C "$repo" worktree add --detach "$WT" "$commit"
  fi
  if [ ! -x "$WT/.venv/bin/fdseg" ]; then
    python3 -m venv "$WT/.venv"
    "$WT/.venv/bin/pip" install --quiet torch==2.13.0
    spec="$WT"
    [ -z "$extras" ] || spec="$WT[$extras]"
    "$WT/.venv/bin/pip" install --quiet -e "$spec"
  fi
  FDSEG="$WT/.venv/bin/fdseg"
  PY="$WT/.venv/bin/python"
}
