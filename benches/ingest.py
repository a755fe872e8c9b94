#!/usr/bin/env python3
"""Ingest benchmark: OTLP/JSON lines into the hourly Parquet store, iodrift against DuckDB.

The input is what the Collector's file exporter writes for the kubeletstats receiver: one
ExportMetricsServiceRequest per node and scrape, a resource per pod with the k8s.* attributes,
`k8s.pod.network.io` as a cumulative monotonic sum (direction x interface) and
`k8s.pod.memory.working_set` as a gauge. Both engines turn the counters into per-interval
deltas (the first point of a series yields none, a drop is a reset) and write Parquet; their
row counts and value sums are checked against each other before any time is printed.

Run through benches/ingest.sh:  benches/ingest.sh [--pods 2000 --scrapes 60 --runs 3]
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compare import duckdb_fetch, measure

START_NS = 1_772_359_200 * 10**9  # 2026-03-01T10:00:00Z
NODES = 20

DUCKDB_INGEST = """
SET TimeZone = 'UTC';
CREATE TEMP TABLE points AS
WITH requests AS (
    SELECT unnest(resourceMetrics) AS r FROM read_json('{input}', format = 'newline_delimited',
        maximum_object_size = 1073741824)
), resources AS (
    SELECT r.resource.attributes AS ra, unnest(r.scopeMetrics) AS s FROM requests
), metrics AS (
    SELECT ra, unnest(s.metrics) AS m FROM resources
), attributed AS (
    SELECT ra, m.name AS metric, m.sum.aggregationTemporality AS temporality, m.sum.isMonotonic AS monotonic,
           unnest(coalesce(m.sum.dataPoints, m.gauge.dataPoints)) AS p,
           m.gauge IS NOT NULL AS gauge
    FROM metrics
)
SELECT metric, gauge,
       list_filter(ra, lambda a: a.key = 'k8s.cluster.name')[1].value.stringValue AS cluster,
       list_filter(ra, lambda a: a.key = 'k8s.namespace.name')[1].value.stringValue AS namespace,
       list_filter(ra, lambda a: a.key = 'k8s.node.name')[1].value.stringValue AS node,
       list_filter(ra, lambda a: a.key = 'k8s.pod.name')[1].value.stringValue AS pod,
       list_filter(p.attributes, lambda a: a.key = 'direction')[1].value.stringValue AS direction,
       list_filter(p.attributes, lambda a: a.key = 'interface')[1].value.stringValue AS interface,
       make_timestamp(p.timeUnixNano::BIGINT // 1000) AS time,
       p.asInt::DOUBLE AS value  -- the input writes integers (asInt), as kubeletstats does
FROM attributed;
COPY (
    SELECT time, metric, cluster, namespace, node, pod, direction, interface, delta AS value
    FROM (
        SELECT *, CASE WHEN gauge THEN value
                       WHEN value >= lag(value) OVER w THEN value - lag(value) OVER w END AS delta
        FROM points
        WINDOW w AS (PARTITION BY metric, cluster, namespace, node, pod, direction, interface ORDER BY time)
    )
    WHERE delta IS NOT NULL
    ORDER BY cluster, pod, direction, time
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1);
"""


def attribute(key, value):
    return {"key": key, "value": {"stringValue": value}}


def write_otlp(path, pods, scrapes, seed):
    """`scrapes` scrapes 10 s apart of `pods` pods spread over NODES nodes, as JSON lines."""
    rng = random.Random(seed)
    totals = {}
    with open(path, "w") as out:
        for scrape in range(scrapes):
            time_ns = START_NS + scrape * 10 * 10**9
            for node in range(NODES):
                resources = []
                for pod in range(node, pods, NODES):
                    name = f"svc{pod // 3:04d}-6d4cf56db6-{pod:05d}"
                    points = []
                    for direction in ("receive", "transmit"):
                        for interface in ("eth0", "eth1"):
                            key = (pod, direction, interface)
                            totals[key] = totals.get(key, rng.randrange(10**9)) + rng.randrange(10**6)
                            points.append({
                                "attributes": [attribute("direction", direction), attribute("interface", interface)],
                                "startTimeUnixNano": str(START_NS - 86_400 * 10**9),
                                "timeUnixNano": str(time_ns),
                                "asInt": str(totals[key]),
                            })
                    resources.append({
                        "resource": {"attributes": [
                            attribute("k8s.cluster.name", "bench"),
                            attribute("k8s.namespace.name", f"ns{pod % 7}"),
                            attribute("k8s.node.name", f"node-{node:02d}"),
                            attribute("k8s.pod.name", name),
                        ]},
                        "scopeMetrics": [{
                            "scope": {"name": "otelcol/kubeletstatsreceiver", "version": "0.120.0"},
                            "metrics": [
                                {"name": "k8s.pod.network.io", "unit": "By", "sum": {
                                    "dataPoints": points, "aggregationTemporality": 2, "isMonotonic": True}},
                                {"name": "k8s.pod.memory.working_set", "unit": "By", "gauge": {
                                    "dataPoints": [{"timeUnixNano": str(time_ns),
                                                    "asInt": str(rng.randrange(10**8, 10**9))}]}},
                            ],
                        }],
                    })
                out.write(json.dumps({"resourceMetrics": resources}, separators=(",", ":")))
                out.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run")
    run.add_argument("--iodrift", required=True)
    run.add_argument("--cache", required=True, type=Path)
    run.add_argument("--pods", type=int, default=2000)
    run.add_argument("--scrapes", type=int, default=60)
    run.add_argument("--runs", type=int, default=3)
    peer = sub.add_parser("duckdb-ingest")
    peer.add_argument("input")
    peer.add_argument("out")
    args = parser.parse_args()
    if args.mode == "duckdb-ingest":
        import duckdb

        return duckdb.connect().execute(DUCKDB_INGEST.format(input=args.input, out=args.out))

    source = args.cache / f"otlp-p{args.pods}-s{args.scrapes}.jsonl"
    if not source.exists():
        write_otlp(f"{source}.tmp", args.pods, args.scrapes, seed=1)
        os.rename(f"{source}.tmp", source)
    size = source.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="iodrift-ingest-bench-"))
    commands = {
        "iodrift": lambda out: [args.iodrift, "ingest", "--format", "otlp-json", "--store", str(out), str(source)],
        "duckdb": lambda out: [sys.executable, __file__, "duckdb-ingest", str(source), str(out / "out.parquet")],
    }
    samples = {engine: [] for engine in commands}
    for run_index in range(args.runs):
        engines = list(commands) if run_index % 2 == 0 else list(commands)[::-1]
        for engine in engines:
            out = work / f"{engine}-{run_index}"
            out.mkdir()
            samples[engine].append(measure(commands[engine](out)))
        summary = {engine: duckdb_fetch(
            "SELECT count(*), sum(value) FILTER (metric = 'k8s.pod.network.io'), count(DISTINCT pod) "
            f"FROM read_parquet('{work / f'{engine}-{run_index}'}/**/*.parquet')") for engine in commands}
        if summary["iodrift"] != summary["duckdb"]:
            sys.exit(f"the engines stored different rows: {summary}")
        subprocess.run(["rm", "-rf", str(work / f"iodrift-{run_index}"), str(work / f"duckdb-{run_index}")], check=True)
    rows = summary["iodrift"][0]
    print(f"workload: OTLP/JSON lines, {args.pods} pods on {NODES} nodes, {args.scrapes} scrapes, "
          f"{size / 1e6:,.0f} MB -> {rows:,} rows; median of {args.runs} runs, alternating")
    print("| task | engine | MB in | wall s | MB/s | CPU s | MB/s per CPU s | peak RSS MiB | iodrift/DuckDB wall |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    # measure() gives (wall s, peak RSS bytes, CPU s); the table shows wall, CPU, RSS.
    medians = {e: (statistics.median(s[0] for s in v), statistics.median(s[2] for s in v), max(s[1] for s in v))
               for e, v in samples.items()}
    ratio = medians["iodrift"][0] / medians["duckdb"][0]
    for engine, (wall, cpu, rss) in medians.items():
        print(f"| ingest otlp-json | {engine} | {size / 1e6:,.0f} | {wall:.2f} | {size / 1e6 / wall:,.1f} | {cpu:.2f} | "
              f"{size / 1e6 / cpu:,.1f} | {rss / 2**20:,.0f} | {f'{ratio:.2f}' if engine == 'iodrift' else ''} |")


if __name__ == "__main__":
    main()
