#!/usr/bin/env bash
# Fail if aeft/ is not exactly what nbdev_export makes from nbs/, or if nbdev_clean would change a notebook.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
snap=$(mktemp -d); trap 'rm -rf "$snap"' EXIT

same_after() {  # same_after DIR CMD...: run CMD, fail if it changed anything in DIR
  local dir=$1; shift
  cp -a "$dir" "$snap/$dir"
  "$@"
  if ! diff -r -q --no-dereference -x __pycache__ -x _proc -x .ipynb_checkpoints "$snap/$dir" "$dir"; then
    echo "FAIL: '$*' changed $dir/ (files above): the notebooks are the source; run it and commit the result." >&2
    exit 1
  fi
}

echo "== aeft/ is what nbdev_export makes from nbs/"
same_after aeft nbdev_export
echo "== notebooks are clean (nbdev_clean)"
same_after nbs nbdev_clean
