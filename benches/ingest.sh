#!/usr/bin/env bash
# Ingest benchmark: OTLP/JSON lines into the store, iodrift against DuckDB (see benches/ingest.py).
#   benches/ingest.sh [--pods N] [--scrapes N] [--runs N]
# The input is generated once into ~/.cache/iodrift-bench; DuckDB comes from PyPI into a
# virtualenv there.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iodrift-target}"
cache="${IODRIFT_BENCH_DIR:-$HOME/.cache/iodrift-bench}"
mkdir -p "$cache"

cargo build --release --locked
if [ ! -x "$cache/venv/bin/python" ]; then
    python3 -m venv "$cache/venv"
fi
"$cache/venv/bin/python" -c 'import duckdb' 2>/dev/null || "$cache/venv/bin/pip" install --quiet duckdb

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -srm)"
"$cache/venv/bin/python" benches/ingest.py run --iodrift "$CARGO_TARGET_DIR/release/iodrift" \
    --cache "$cache" "$@"
