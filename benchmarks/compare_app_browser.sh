#!/usr/bin/env bash
# Before/after of bench_app_browser.py in one run: this checkout's benchmarks/ against two commits, one after
# the other, each in a fresh clone with a fresh data directory and a fresh numba cache (what a fresh venv has).
# The "after" cache is filled first by the step `make` runs after installing (warm_umap), when that commit has
# it. Usage: bash benchmarks/compare_app_browser.sh BEFORE AFTER [OUT]   (OUT: results folder, default
# .unlearn_data/compare). Run it alone on an idle machine; each side prints its load average.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${1:?before commit}; AFTER=${2:?after commit}; OUT=${3:-$REPO/.unlearn_data/compare}
mkdir -p "$OUT"
for side in before after; do
  ref=$BEFORE; [ "$side" = after ] && ref=$AFTER
  dir=$(mktemp -d /tmp/compare-$side-XXXXXX)
  git clone -q "$REPO" "$dir"; git -C "$dir" checkout -q "$ref"
  rm -rf "$dir/benchmarks"; cp -r "$REPO/benchmarks" "$dir/benchmarks"
  ln -s "$REPO/.venv" "$dir/.venv"
  rm -rf "$OUT/data-$side" "$OUT/numba-$side"; mkdir -p "$OUT/data-$side" "$OUT/numba-$side"
  export NUMBA_CACHE_DIR="$OUT/numba-$side" UNLEARN_DATA_DIR="$OUT/data-$side"
  warm_module=$(grep -l "def warm_umap" "$dir/unlearn_core/umapfit.py" "$dir/unlearn_core/embeddings.py" 2>/dev/null \
                | head -1 | sed 's|.*/unlearn_core/\(.*\)\.py|unlearn_core.\1|' || true)
  if [ -n "$warm_module" ] && grep -q "warm_umap" "$dir/Makefile"; then
    (cd "$dir" && .venv/bin/python -W ignore -c "from $warm_module import warm_umap; print(f'install warm {warm_umap():.1f} s')")
  fi
  echo "$side $ref load $(cat /proc/loadavg)"
  (cd "$dir" && .venv/bin/python benchmarks/bench_app_browser.py --rounds 3 > "$OUT/$side.json" 2> "$OUT/$side.err")
  echo "$side done load $(cat /proc/loadavg)"
  rm -rf "$dir"
done
