#!/usr/bin/env bash
# Both baselines (--full) over the first HOURS hours of the bench store, then both detections over
# the last of those hours, embedded and on a local Ballista cluster of 1 and then 2 executors
# (each running one task at a time), checking that every run gives the embedded run's lookups
# and findings.
#   benches/cluster.sh [--hours N] [--runs N]
# The store is the one benches/run.sh generates (2,000 pods, 168 hours) into ~/.cache/iodrift-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

hours=48 runs=1
while [ $# -gt 0 ]; do
    case "$1" in
        --hours) hours=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iodrift-target}"
cache="${IODRIFT_BENCH_DIR:-$HOME/.cache/iodrift-bench}"
store="$cache/store-v7-s220-r3-h168-seed1"
[ -d "$store" ] || benches/run.sh --runs 1 --engines iodrift --tasks write >/dev/null
cargo build --release --locked
iodrift="$CARGO_TARGET_DIR/release/iodrift"

work=$(mktemp -d)
pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; rm -rf "$work"' EXIT

wait_port() {
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

earliest=2026-03-01T00:00:00Z
latest=$(date -u -d "$earliest + $hours hours" +%Y-%m-%dT%H:%M:%SZ)
now=$(date -u -d "$latest + 10 minutes" +%Y-%m-%dT%H:%M:%SZ) # detect's window: -70m@m..-10m@m
baseline() { # OUT [--cluster URL]
    local out=$1
    shift
    "$iodrift" baseline --full --store "$store" --earliest "$earliest" --latest "$latest" \
        --out "$out" "$@" >/dev/null
}
detect() { # OUT [--cluster URL]: findings of the window's last hour against the embedded lookups
    local out=$1
    shift
    "$iodrift" detect --store "$store" --baselines "$work/out-embedded-1" --now "$now" \
        --format ndjson --output "$out" "$@" >/dev/null 2>&1
}
same() { # A B: the files are identical
    cmp -s "$1" "$2" || {
        echo "$1 differs from $2" >&2
        exit 1
    }
}
seconds() { # COMMAND...: wall seconds of the command
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_cluster() { # EXECUTORS: a scheduler on 50150 and executors on 50151..
    stop
    pids=()
    "$iodrift" ballista scheduler --bind 127.0.0.1:50150 2>"$work/scheduler.log" &
    pids+=($!)
    wait_port 50150
    for i in $(seq "$1"); do
        "$iodrift" ballista executor --scheduler 127.0.0.1:50150 \
            --bind "127.0.0.1:$((50150 + 2 * i))" --grpc-port "$((50151 + 2 * i))" \
            --concurrent-tasks 1 --work-dir "$(mktemp -d -p "$work")" 2>"$work/executor-$i.log" &
        pids+=($!)
        wait_port "$((50150 + 2 * i))"
        wait_port "$((50151 + 2 * i))"
    done
}

rows=$("$iodrift" sql --store "$store" --earliest "$earliest" --latest "$latest" --format csv \
    -c "SELECT count(*) FROM metrics" | tail -1)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -srm)"
echo "workload: both baselines (--full) over [$earliest, $latest) of $store: $rows rows; median of $runs runs"
echo "workload: both detections over [$(date -u -d "$latest - 1 hour" +%H:%M), $(date -u -d "$latest" +%H:%M)) of the last day against the embedded lookups"
echo "| task | engine | wall s | rows/s | speed-up over 1 executor |"
echo "|---|---|---:|---:|---:|"
declare -A wall
for setup in embedded 1 2; do
    base_times=() detect_times=()
    [ "$setup" = embedded ] || start_cluster "$setup"
    for run in $(seq "$runs"); do
        out="$work/out-$setup-$run"
        cluster=()
        [ "$setup" = embedded ] || cluster=(--cluster df://127.0.0.1:50150)
        base_times+=("$(seconds baseline "$out" "${cluster[@]}")")
        detect_times+=("$(seconds detect "$out.ndjson" "${cluster[@]}")")
        for file in k8s_container_network_io_baseline.csv k8s_container_network_io_ratio_baseline.csv; do
            same "$out/$file" "$work/out-embedded-1/$file"
        done
        same "$out.ndjson" "$work/out-embedded-1.ndjson"
    done
    wall[baseline-$setup]=$(printf '%s\n' "${base_times[@]}" | median)
    wall[detect-$setup]=$(printf '%s\n' "${detect_times[@]}" | median)
done
stop
[ -s "$work/out-embedded-1.ndjson" ] || echo "note: the last hour has no findings" >&2
detect_rows=$("$iodrift" sql --store "$store" --earliest "$(date -u -d "$latest - 1 hour" +%Y-%m-%dT%H:%M:%SZ)" \
    --latest "$latest" --format csv -c "SELECT count(*) FROM metrics" | tail -1)
for task in baseline detect; do
    task_rows=$([ "$task" = baseline ] && echo "$rows" || echo "$detect_rows")
    for setup in embedded 1 2; do
        name=$([ "$setup" = embedded ] && echo "embedded (one process, all cores)" || echo "Ballista, $setup executor(s) x 1 task")
        awk -v task="$task" -v name="$name" -v wall="${wall[$task-$setup]}" -v rows="$task_rows" \
            -v one="${wall[$task-1]}" \
            'BEGIN { printf "| %s | %s | %.2f | %.0f | %.2f |\n", task, name, wall, rows / wall, one / wall }'
    done
done
