#!/usr/bin/env bash
# Side-by-side benchmark of iodrift and DuckDB on one synthetic store (see benches/compare.py).
#   benches/run.sh [--services N] [--replicas N] [--hours N] [--runs N] [--seed N]
#                  [--engines iodrift,duckdb] [--memory-limit SIZE]
#                  [--tasks baseline,detect,write,drift,eval] [--baselines DIR] [--eval-days N]
# --baselines gives the detections lookups of your own (e.g. over one day of a 30-day store)
# instead of the baseline task's output, so that --tasks detect runs alone.
# Defaults: 220 Deployments x 3 replicas (~2,000 pods with DaemonSets, StatefulSets and Jobs), 168 hours.
# Tasks: both baselines over the whole store, both detections over its last hour, and writing
# (iodrift generating the store again against DuckDB rewriting its files, hour by hour); drift
# (iodrift alone: its full baseline, its daily recomputation over stored hourly rollups and its
# last-hour detection, against iodrift's ESCU tasks of the same run); eval (iodrift alone: the
# backtest's hourly runs over the last --eval-days days (default 2), against one full baseline of
# every rule over those days; not in the default tasks).
# The store is generated once into ~/.cache/iodrift-bench and reused; DuckDB comes from PyPI
# into a virtualenv there too.
set -euo pipefail
cd "$(dirname "$0")/.."

services=220 replicas=3 hours=168 runs=3 seed=1 engines=iodrift,duckdb limit=() tasks=baseline,detect,write,drift
lookups=() eval_days=()
while [ $# -gt 0 ]; do
    case "$1" in
        --services) services=$2; shift 2 ;;
        --replicas) replicas=$2; shift 2 ;;
        --hours) hours=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --engines) engines=$2; shift 2 ;;
        --memory-limit) limit=(--memory-limit "$2"); shift 2 ;;
        --tasks) tasks=$2; shift 2 ;;
        --baselines) lookups=(--baselines "$(realpath "$2")"); shift 2 ;;
        --eval-days) eval_days=(--eval-days "$2"); shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iodrift-target}"
cache="${IODRIFT_BENCH_DIR:-$HOME/.cache/iodrift-bench}"
mkdir -p "$cache"

cargo build --release --locked
iodrift="$CARGO_TARGET_DIR/release/iodrift"

if [ ! -x "$cache/venv/bin/python" ]; then
    python3 -m venv "$cache/venv"
fi
"$cache/venv/bin/python" -c 'import duckdb' 2>/dev/null || "$cache/venv/bin/pip" install --quiet duckdb

# v7: the generator of #20 (benign changes, attack kinds, CronJobs attacked at most once in three days).
store="$cache/store-v7-s$services-r$replicas-h$hours-seed$seed"
if [ ! -f "$store.labels.json" ]; then
    rm -rf "$store.tmp"
    "$iodrift" generate --out "$store.tmp" --services "$services" --replicas "$replicas" \
        --hours "$hours" --seed "$seed" --start 2026-03-01T00:00:00Z
    mv "$store.tmp.labels.json" "$store.labels.json.tmp"
    mv "$store.tmp" "$store"
    mv "$store.labels.json.tmp" "$store.labels.json"
fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -srm)"
"$cache/venv/bin/python" benches/compare.py run --iodrift "$iodrift" --store "$store" --runs "$runs" \
    --engines "$engines" "${limit[@]}" --tasks "$tasks" "${lookups[@]}" "${eval_days[@]}" --generate --services "$services" --replicas "$replicas" \
    --hours "$hours" --seed "$seed" --start 2026-03-01T00:00:00Z
