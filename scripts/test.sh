#!/usr/bin/env bash
# Every check, in order: library and notebooks in sync, every notebook runs, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# one torch thread per process: nbdev_test runs notebooks in parallel and several tests start processes of their own
export OMP_NUM_THREADS=1
# label caches of the test fixtures go to a throw-away folder, not the user's cache (aeft.voc.cache_dir)
export AEFT_CACHE="$(mktemp -d)"; trap 'rm -rf "$AEFT_CACHE"' EXIT
scripts/check_sync.sh
echo "== nbdev_test: every notebook"
nbdev_test --do_print
echo "== pytest tests/"
python -m pytest tests/ -q   # exit code 5 (no tests collected) fails like any other
