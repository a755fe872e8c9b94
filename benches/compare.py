#!/usr/bin/env python3
"""Side-by-side benchmark: iodrift against DuckDB on the same Parquet store.

Both engines run the same semantics (escu-semantics.md): both baselines over the whole store,
and both detections over the last hour. Their answers are checked against each other before
any time is printed; each task runs several times, alternating engines, and the median counts.

Run through benches/run.sh, which builds iodrift, installs DuckDB into its own virtualenv and
generates the store:  benches/run.sh [--services 500 --hours 168 --runs 3]
"""

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

SERVICE_REGEX = r"-\w{5}$|-[abcdef0-9]{8,10}-\w{5}$"

# The rules DuckDB runs beside iodrift: the ESCU port (drift has no DuckDB twin; its rows are
# iodrift's alone, measured against iodrift's own ESCU baseline and detection of the same run).
ESCU_RULES = "network-io,network-io-ratio"

DUCKDB_SPANS = """
CREATE TEMP TABLE spans AS
SELECT cluster, pod, node, direction, bucket, io, service, cluster || ':' || service AS key
FROM (
    SELECT cluster, pod, node, direction,
           time_bucket(INTERVAL 10 SECOND, time::TIMESTAMP, TIMESTAMP '1970-01-01') AS bucket,
           avg(value) AS io,
           regexp_replace(pod, '{regex}', '') AS service
    FROM read_parquet({files})
    WHERE metric = 'k8s.pod.network.io'
      AND time >= TIMESTAMPTZ '{earliest}' AND time < TIMESTAMPTZ '{latest}'
      AND cluster IS NOT NULL AND pod IS NOT NULL AND node IS NOT NULL
      AND direction IS NOT NULL AND value IS NOT NULL
    GROUP BY ALL
);
"""

DUCKDB_BASELINES = """
COPY (
    SELECT key,
           avg(io) FILTER (direction = 'transmit') AS avg_outbound_network_io,
           avg(io) FILTER (direction = 'receive') AS avg_inbound_network_io,
           stddev_samp(io) FILTER (direction = 'transmit') AS stdev_outbound_network_io,
           stddev_samp(io) FILTER (direction = 'receive') AS stdev_inbound_network_io,
           count(*) AS count,
           epoch(max(bucket))::BIGINT AS last_seen
    FROM spans GROUP BY key ORDER BY key
) TO '{out}/k8s_container_network_io_baseline.csv' (HEADER);
COPY (
    WITH per_bucket AS (
        SELECT key, bucket,
               avg(io) FILTER (direction = 'transmit') AS o,
               avg(io) FILTER (direction = 'receive') AS i
        FROM spans GROUP BY key, bucket
    ), ratios AS (
        SELECT key, bucket, i / nullif(o, 0) AS io_ratio, o / nullif(i, 0) AS oi_ratio FROM per_bucket
    )
    SELECT key,
           avg(io_ratio) AS "avg_inbound:outbound", avg(oi_ratio) AS "avg_outbound:inbound",
           stddev_samp(io_ratio) AS "stdev_inbound:outbound",
           stddev_samp(oi_ratio) AS "stdev_outbound:inbound",
           count(*) AS count, epoch(max(bucket))::BIGINT AS last_seen
    FROM ratios GROUP BY key ORDER BY key
) TO '{out}/k8s_container_network_io_ratio_baseline.csv' (HEADER);
"""

DUCKDB_DETECTIONS = """
CREATE TEMP TABLE io_lookup AS SELECT * FROM read_csv('{baselines}/k8s_container_network_io_baseline.csv', header = true);
CREATE TEMP TABLE ratio_lookup AS SELECT * FROM read_csv('{baselines}/k8s_container_network_io_ratio_baseline.csv', header = true);
CREATE TEMP TABLE pods AS
SELECT cluster, node, pod, service, key, bucket, o, i, i / nullif(o, 0) AS io_ratio, o / nullif(i, 0) AS oi_ratio
FROM (
    SELECT cluster, node, pod, service, key, bucket,
           avg(io) FILTER (direction = 'transmit') AS o,
           avg(io) FILTER (direction = 'receive') AS i
    FROM spans GROUP BY ALL
);
CREATE MACRO part(m, v, a, s, phrase) AS
    CASE WHEN v IS NULL OR a IS NULL OR s IS NULL OR NOT (v > a + 4 * s) THEN ''
         WHEN s = 0 THEN NULL
         ELSE m || ' ' || phrase || ' by ' || round((v - a) / s, 2)::VARCHAR || ' Standard Deviations. '
              || m || '=' || v::VARCHAR || ' avg_' || m || '=' || a::VARCHAR
              || ' ''stdev_' || m || '''=' || s::VARCHAR || ', ' END;
CREATE TEMP TABLE buckets AS
SELECT 'network-io' AS rule, cluster, node, pod, service,
       regexp_replace(part('inbound_network_io', p.i, b.avg_inbound_network_io, b.stdev_inbound_network_io, 'higher than average')
                   || part('outbound_network_io', p.o, b.avg_outbound_network_io, b.stdev_outbound_network_io, 'higher than average'),
                   ',\\s$', '') AS anomalies
FROM pods p JOIN io_lookup b USING (key)
UNION ALL
SELECT 'network-io-ratio', cluster, node, pod, service,
       regexp_replace(part('inbound:outbound', p.io_ratio, b."avg_inbound:outbound", b."stdev_inbound:outbound", 'ratio higher than average')
                   || part('outbound:inbound', p.oi_ratio, b."avg_outbound:inbound", b."stdev_outbound:inbound", 'ratio higher than average'),
                   ',\\s$', '')
FROM pods p JOIN ratio_lookup b USING (key);
COPY (
    SELECT rule, cluster AS "k8s.cluster.name", node AS host, pod AS "k8s.pod.name", service AS "k8s.service",
           count(*) AS count, list_sort(list_distinct(list(anomalies))) AS anomalies
    FROM buckets WHERE anomalies IS NOT NULL AND anomalies <> ''
    GROUP BY ALL HAVING count(*) > 5 ORDER BY ALL
) TO '{out}/findings.json' (FORMAT json, ARRAY true);
"""


DUCKDB_WRITE = """
COPY (SELECT * FROM read_parquet({files})) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1);
"""


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_files(store, earliest, latest):
    """The Parquet files of the hour partitions a window touches, as iodrift lists them."""
    files = []
    hour = earliest.replace(minute=0, second=0, microsecond=0)
    while hour < latest:
        directory = store / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        if directory.is_dir():
            files += sorted(str(p) for p in directory.glob("*.parquet"))
        hour += timedelta(hours=1)
    return files


def duckdb_task(args):
    """Runs one task inside this (child) process: `duckdb-task baseline|detect ...`."""
    import duckdb

    earliest = datetime.fromisoformat(args.earliest.replace("Z", "+00:00"))
    latest = datetime.fromisoformat(args.latest.replace("Z", "+00:00"))
    files = hour_files(Path(args.store), earliest, latest)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if args.task == "write":
        for index, file in enumerate(files):
            con.execute(DUCKDB_WRITE.format(files=[file], out=Path(args.out) / f"{index:05}.parquet"))
        return
    con.execute(DUCKDB_SPANS.format(regex=SERVICE_REGEX, files=files, earliest=args.earliest, latest=args.latest))
    if args.task == "baseline":
        con.execute(DUCKDB_BASELINES.format(out=args.out))
    else:
        con.execute(DUCKDB_DETECTIONS.format(out=args.out, baselines=args.baselines))


def measure(command, env=None):
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{stderr}")
    return seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def read_lookup(path):
    with open(path, newline="") as f:
        return {row["key"]: row for row in csv.DictReader(f)}


def same_number(a, b):
    if a in ("", None) or b in ("", None):
        return a in ("", None) and b in ("", None)
    x, y = float(a), float(b)
    return x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def check_baselines(ours, theirs):
    for name in ("k8s_container_network_io_baseline.csv", "k8s_container_network_io_ratio_baseline.csv"):
        a, b = read_lookup(ours / name), read_lookup(theirs / name)
        if a.keys() != b.keys():
            sys.exit(f"{name}: keys differ: {sorted(a.keys() ^ b.keys())[:5]}")
        for key in a:
            for column, value in a[key].items():
                exact = column in ("key", "count", "last_seen")
                if (exact and value != b[key][column]) or (not exact and not same_number(value, b[key][column])):
                    sys.exit(f"{name} {key} {column}: iodrift {value} vs duckdb {b[key][column]}")


def check_findings(ours, theirs):
    def keyed(path, fields):
        rows = json.loads(Path(path).read_text())
        return sorted(tuple(r[f] for f in fields) for r in rows)

    fields = ("rule", "k8s.cluster.name", "host", "k8s.pod.name", "k8s.service", "count")
    a, b = keyed(ours, fields), keyed(theirs, fields)
    if a != b:
        sys.exit(f"findings differ: iodrift {len(a)} vs duckdb {len(b)}; first difference {sorted(set(a) ^ set(b))[:3]}")
    return len(a)


def duckdb_fetch(sql):
    """One row of a DuckDB query, run in a child process: DuckDB in this process would raise
    the peak RSS that every later child inherits at fork (Linux keeps ru_maxrss across exec)."""
    output = subprocess.run([sys.executable, __file__, "duckdb-sql", sql],
                            check=True, capture_output=True, text=True).stdout
    return tuple(json.loads(output))


def check_written(store, ours, theirs):
    """Both engines wrote the store's rows: same count, value sum, times and pods."""
    def summary(files):
        return duckdb_fetch(
            "SELECT count(*), sum(value), epoch_ms(min(time)), epoch_ms(max(time)), count(DISTINCT pod) "
            f"FROM read_parquet({files})")

    # The store's hour partitions only: it may also hold `_rollups` of earlier baselines.
    expected = summary([f"{store}/dt=*/hour=*/*.parquet"])
    for engine, out in (("iodrift", ours), ("duckdb", theirs)):
        got = summary([f"{out}/**/*.parquet"])
        if got != expected:
            sys.exit(f"write: {engine} wrote {got}, the store holds {expected}")


def count_rows(store, earliest, latest):
    files = hour_files(store, earliest, latest)
    return duckdb_fetch(f"SELECT count(*) FROM read_parquet({files})")[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run")
    run.add_argument("--iodrift", required=True)
    run.add_argument("--store", required=True, type=Path)
    run.add_argument("--runs", type=int, default=3)
    run.add_argument("--engines", default="iodrift,duckdb",
                     help="comma-separated: iodrift, duckdb (answers are cross-checked only with both)")
    run.add_argument("--memory-limit", help="passed to iodrift's --memory-limit (e.g. 4GiB)")
    run.add_argument("--tasks", default="baseline,detect,write,drift",
                     help="comma-separated: baseline, detect, write, drift and eval (iodrift alone)")
    run.add_argument("--baselines", type=Path,
                     help="lookups the detections use (default: iodrift's output of the baseline task)")
    run.add_argument("--eval-days", type=int, default=2,
                     help="the eval task's test days: the store's last N days (the lookups come from the days before)")
    run.add_argument("--generate", nargs=argparse.REMAINDER, default=None,
                     help="also time writing: `iodrift generate` with these flags (those the store was "
                          "generated with) against DuckDB rewriting the store's files; must come last")
    fetch = sub.add_parser("duckdb-sql")
    fetch.add_argument("sql")
    task = sub.add_parser("duckdb-task")
    task.add_argument("task", choices=["baseline", "detect", "write"])
    for flag in ("--store", "--earliest", "--latest", "--out", "--baselines"):
        task.add_argument(flag)
    args = parser.parse_args()
    if args.mode == "duckdb-task":
        return duckdb_task(args)
    if args.mode == "duckdb-sql":
        import duckdb

        return print(json.dumps(list(duckdb.connect().execute(args.sql).fetchone())))

    labels = json.loads(Path(f"{args.store}.labels.json").read_text())
    start = datetime.fromisoformat(labels["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(labels["end"].replace("Z", "+00:00"))
    detect_now = end + timedelta(minutes=10)
    detect_window = (detect_now - timedelta(minutes=70), detect_now - timedelta(minutes=10))
    work = Path(tempfile.mkdtemp(prefix="iodrift-bench-"))
    engines = [e for e in ("iodrift", "duckdb") if e in args.engines.split(",")]
    if not engines:
        sys.exit("--engines names neither iodrift nor duckdb")
    limit = ["--memory-limit", args.memory_limit] if args.memory_limit else []
    lookups = args.baselines or work / "iodrift-baseline-0"
    tasks = {
        "baseline": ((start, end), lambda out: (
            [args.iodrift, "baseline", "--full", "--rule", ESCU_RULES, "--store", str(args.store),
             "--out", str(out), "--earliest", iso(start), "--latest", iso(end), *limit],
            [sys.executable, __file__, "duckdb-task", "baseline", "--store", str(args.store),
             "--earliest", iso(start), "--latest", iso(end), "--out", str(out)])),
        "detect (last hour)": (detect_window, lambda out: (
            [args.iodrift, "detect", "--rule", ESCU_RULES, "--store", str(args.store),
             "--baselines", str(lookups), "--now", iso(detect_now), "--format", "json", "--output", str(out / "findings.json"), *limit],
            [sys.executable, __file__, "duckdb-task", "detect", "--store", str(args.store),
             "--earliest", iso(detect_window[0]), "--latest", iso(detect_window[1]),
             "--baselines", str(lookups), "--out", str(out)])),
    }
    if args.generate is not None:
        tasks["write (generate)"] = ((start, end), lambda out: (
            [args.iodrift, "generate", "--out", str(out / "store"), *args.generate],
            [sys.executable, __file__, "duckdb-task", "write", "--store", str(args.store),
             "--earliest", iso(start), "--latest", iso(end), "--out", str(out)]))
    wanted = args.tasks.split(",")
    tasks = {name: task for name, task in tasks.items() if name.split()[0] in wanted}
    results = []
    for name, (window, commands) in tasks.items():
        rows = count_rows(args.store, *window)
        samples = {engine: [] for engine in engines}
        findings = None
        for run_index in range(args.runs):
            for engine in engines if run_index % 2 == 0 else engines[::-1]:
                out = work / f"{engine}-{name.split()[0]}-{run_index}"
                out.mkdir()
                command = commands(out)[0 if engine == "iodrift" else 1]
                samples[engine].append(measure(command))
            if len(engines) < 2:
                continue
            if name.startswith("write"):
                check_written(args.store, work / f"iodrift-write-{run_index}" / "store",
                              work / f"duckdb-write-{run_index}")
                for engine in engines:
                    subprocess.run(["rm", "-rf", str(work / f"{engine}-write-{run_index}")], check=True)
            elif name == "baseline":
                check_baselines(work / f"iodrift-baseline-{run_index}", work / f"duckdb-baseline-{run_index}")
            else:
                findings = check_findings(work / f"iodrift-detect-{run_index}" / "findings.json",
                                          work / f"duckdb-detect-{run_index}" / "findings.json")
        medians = {e: (statistics.median(s[0] for s in v), max(s[1] for s in v)) for e, v in samples.items()}
        results.append((name, rows, medians))
        if findings is not None:
            print(f"# {findings} findings, identical in both engines", file=sys.stderr)

    if "drift" in wanted:
        drift_rows = run_drift(args, work, start, end, detect_now, limit)
    if "eval" in wanted:
        eval_rows = run_eval(args, work, start, end, limit)
    pods = labels["pods"]
    hours = round((end - start).total_seconds() / 3600)
    limited = f"; iodrift --memory-limit {args.memory_limit}" if args.memory_limit else ""
    print(f"workload: {pods} pods, {hours} h, store {args.store}; median of {args.runs} runs, alternating{limited}")
    if results:
        print("| task | engine | rows scanned (written) | wall s | rows/s | peak RSS MiB | iodrift/DuckDB wall |")
        print("|---|---|---:|---:|---:|---:|---:|")
    for name, rows, medians in results:
        both = len(medians) == 2
        ratio = f"{medians['iodrift'][0] / medians['duckdb'][0]:.2f}" if both else "n/a"
        for engine in engines:
            wall, rss = medians[engine]
            print(f"| {name} | {engine} | {rows:,} | {wall:.2f} | {rows / wall:,.0f} | {rss / 2**20:,.0f} | "
                  f"{ratio if engine == 'iodrift' else ''} |")
    if "drift" in wanted:
        escu = {name: medians["iodrift"][0] for name, _, medians in results if "iodrift" in medians}
        print()
        print("drift, iodrift alone (peer: iodrift's ESCU task of this run; the target in brackets)")
        print("| task | rows in window | wall s | peak RSS MiB | ratio | against |")
        print("|---|---:|---:|---:|---:|---|")
        for name, rows, wall, rss, peer_name, peer, target in drift_rows(escu):
            ratio = f"{wall / peer:.3f}" if peer else "n/a"
            print(f"| {name} | {rows:,} | {wall:.2f} | {rss / 2**20:,.0f} | {ratio} | {peer_name} ({target}) |")
    if "eval" in wanted:
        print()
        print("eval, iodrift alone (peer: a full baseline of every rule over the same test days)")
        print("| task | rows in test days | wall s | peak RSS MiB | ratio | against |")
        print("|---|---:|---:|---:|---:|---|")
        for name, rows, wall, rss, peer_name, peer, target in eval_rows:
            print(f"| {name} | {rows:,} | {wall:.2f} | {rss / 2**20:,.0f} | {wall / peer:.3f} | {peer_name} ({target}) |")


def run_eval(args, work, start, end, limit):
    """`iodrift eval`'s hourly runs over the store's last `--eval-days` days (two by default,
    eval's own default test days), against lookups of every rule computed over the days before
    them (not timed), and its peer: one full baseline of every rule over those test days."""
    if not 0 < args.eval_days < (end - start).days:
        sys.exit(f"--eval-days {args.eval_days}: the store holds {(end - start).days} days; the lookups need the days before the test days")
    test_start = end - timedelta(days=args.eval_days)
    lookups = work / "eval-lookups"
    subprocess.run([args.iodrift, "baseline", "--full", "--rule", "all", "--store", str(args.store),
                    "--out", str(lookups), "--earliest", iso(start), "--latest", iso(test_start), *limit],
                   check=True, stdout=subprocess.DEVNULL)
    samples = {"eval": [], "baseline": []}
    for run_index in range(args.runs):
        out = work / f"eval-{run_index}"
        out.mkdir()
        samples["eval"].append(measure(["sh", "-c", " ".join(shlex.quote(a) for a in [
            args.iodrift, "eval", "--store", str(args.store), "--labels", f"{args.store}.labels.json",
            "--baselines", str(lookups), "--from", iso(test_start), "--to", iso(end), "--format", "csv",
            *limit]) + f" > {shlex.quote(str(out / 'scores.csv'))}"]))
        samples["baseline"].append(measure([
            args.iodrift, "baseline", "--full", "--rule", "all", "--store", str(args.store),
            "--out", str(out / "baseline"), "--earliest", iso(test_start), "--latest", iso(end), *limit]))
    median = {k: (statistics.median(s[0] for s in v), max(s[1] for s in v)) for k, v in samples.items()}
    rows = count_rows(args.store, test_start, end)
    return [
        (f"eval ({args.eval_days * 24} hourly runs, every rule)", rows, *median["eval"],
         "full baseline of every rule over the test days", median["baseline"][0], "at most 5"),
        ("full baseline of every rule over the test days", rows, *median["baseline"],
         "itself", median["baseline"][0], "peer"),
    ]


def run_drift(args, work, start, end, detect_now, limit):
    """drift's baseline in full, its daily recomputation (one new day over stored hourly
    rollups), the same with every hour's rollup stored, and its last-hour detection. The store's
    `_rollups` are removed before each run so that each starts from none."""
    day = timedelta(days=1)
    baseline = lambda out, a, b, *more: [
        args.iodrift, "baseline", "--rule", "drift", "--store", str(args.store), "--out", str(out),
        "--earliest", iso(a), "--latest", iso(b), *more, *limit]
    samples = {"full": [], "daily": [], "merge": [], "detect": []}
    for run_index in range(args.runs):
        out = work / f"drift-{run_index}"
        out.mkdir()
        subprocess.run(["rm", "-rf", str(args.store / "_rollups")], check=True)
        samples["full"].append(measure(baseline(out / "full", start, end, "--full")))
        measure(baseline(out / "setup", start, end - day))
        samples["daily"].append(measure(baseline(out / "daily", start + day, end)))
        samples["merge"].append(measure(baseline(out / "merge", start + day, end)))
        samples["detect"].append(measure([
            args.iodrift, "detect", "--rule", "drift", "--store", str(args.store),
            "--baselines", str(out / "full"), "--now", iso(detect_now), "--format", "json",
            "--output", str(out / "findings.json"), *limit]))
        if (out / "daily" / "drift_baseline.csv").read_bytes() != (out / "merge" / "drift_baseline.csv").read_bytes():
            sys.exit("drift: the baseline merged from stored rollups differs from the one that computed a day of them")
    subprocess.run(["rm", "-rf", str(args.store / "_rollups")], check=True)
    median = {k: (statistics.median(s[0] for s in v), max(s[1] for s in v)) for k, v in samples.items()}
    full_rows = count_rows(args.store, start, end)
    day_rows = count_rows(args.store, start + day, end)
    detect_rows = count_rows(args.store, detect_now - timedelta(minutes=70), detect_now - timedelta(minutes=10))

    def rows(escu):
        return [
            ("drift baseline (full)", full_rows, *median["full"], "ESCU baselines, full", escu.get("baseline"), "at most 2"),
            ("drift baseline (daily: one new day, the rest merged)", day_rows, *median["daily"],
             "drift baseline (full)", median["full"][0], "at most 0.05"),
            ("drift baseline (every hour's rollup stored)", day_rows, *median["merge"],
             "drift baseline (full)", median["full"][0], "at most 0.05"),
            ("drift detect (last hour)", detect_rows, *median["detect"], "ESCU detections, last hour",
             escu.get("detect (last hour)"), "under 1 s"),
        ]
    return rows


if __name__ == "__main__":
    main()
