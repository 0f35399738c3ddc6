#!/usr/bin/env bash
# The unit tier on several Python versions: one venv per version (.venv-X.Y at the repository
# root), installed from the lock (requirements/lock.txt, hashes checked), then
# `pytest tests/unit` in each.
#
# Usage: deploy/local/test-pythons.sh [--except PYTHON] VERSION...
#   --except PYTHON   skip the version that interpreter runs (the main .venv's, already tested)
#
# An interpreter is `pythonX.Y` on PATH, else pyenv's newest X.Y.* (pyenv's shims answer only
# for the active version). A version that is not found is skipped, and said so.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LOCK="$REPO/requirements/lock.txt"

log() { printf '[test-pythons] %s\n' "$*" >&2; }

# The path of a working interpreter of version $1, or nothing.
find_python() {
  local version="$1" candidate root
  local check="import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))"
  candidate="$(command -v "python$version" || true)"
  if [[ -n "$candidate" ]] && "$candidate" -c "$check" 2>/dev/null; then
    printf '%s' "$candidate"; return
  fi
  if command -v pyenv >/dev/null; then
    root="$(pyenv root)"
    # shellcheck disable=SC2012  # (pyenv's dirs are plain version numbers)
    candidate="$(ls -d "$root/versions/$version".* 2>/dev/null | sort -V | tail -n 1 || true)"
    candidate="$candidate/bin/python$version"
    if [[ -x "$candidate" ]] && "$candidate" -c "$check" 2>/dev/null; then
      printf '%s' "$candidate"
    fi
  fi
}

# Create or refresh .venv-$1 with interpreter $2 when the lock or pyproject.toml changed.
prepare_venv() {
  local version="$1" python="$2" venv="$REPO/.venv-$1"
  local stamp="$venv/.installed"
  if [[ -f "$stamp" && "$stamp" -nt "$LOCK" && "$stamp" -nt "$REPO/pyproject.toml" ]]; then
    return
  fi
  log "$version: installing $venv from the lock ($python)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet --require-hashes -r "$LOCK"
  (cd "$REPO" && "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e .)
  touch "$stamp"
}

skip_version=""
if [[ "${1:-}" == --except ]]; then
  skip_version="$("$2" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  shift 2
fi
(( $# > 0 )) || { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

ran=() skipped=()
for version in "$@"; do
  if [[ "$version" == "$skip_version" ]]; then
    log "$version: already tested by the main venv"
    continue
  fi
  python="$(find_python "$version")"
  if [[ -z "$python" ]]; then
    log "$version: NOT FOUND (no working python$version on PATH nor in pyenv): skipped"
    skipped+=("$version")
    continue
  fi
  prepare_venv "$version" "$python"
  log "$version: pytest tests/unit ($("$REPO/.venv-$version/bin/python" --version))"
  (cd "$REPO" && "$REPO/.venv-$version/bin/pytest" -q -p no:cacheprovider tests/unit)
  ran+=("$version")
done
log "unit tier passed on: ${ran[*]:-none}${skipped:+; skipped (not found): ${skipped[*]}}"
