-- drift's parameters: every threshold of the rule, in one place.
--   min_slot_spans   a pod's (or workload's) hour-of-day history is used from this many 10 s
--                    spans on (about 2.5 days of one pod); below it the workload's is used
--   min_spans        a workload's all-hours history is used from this many spans (one hour of
--                    one pod: a CronJob's short runs reach it within a day or two); below it the
--                    workload has too little history and is not scored
--   floor_doublings  a bucket is hot only this far above (or below, for the balance) its
--                    expected level, in doublings: 1 is twice or half the expected bytes
--   spread_factor    ... and this many robust standard deviations ((q75 - q25) / 1.349) of its
--                    history, and beyond the history's usual daily peak (trough)
--   min_bytes        ... and moves at least this many bytes in the bucket (the larger direction)
--   persistence_hot  a hot bucket fires only with this many hot buckets of the same measure
--                    within 10 minutes (60 spans; detect.sql's RANGE 590) around it
CREATE OR REPLACE VIEW parameters AS
SELECT
    CAST(800 AS BIGINT) AS min_slot_spans,
    CAST(360 AS BIGINT) AS min_spans,
    1.0 AS floor_doublings,
    3.0 AS spread_factor,
    4096.0 AS min_bytes,
    CAST(8 AS BIGINT) AS persistence_hot;

-- The three measures of a bucket: outbound and inbound bytes and their balance. A dictionary:
-- the millions of rows that repeat a measure's name hash and compare it once per batch.
CREATE OR REPLACE VIEW measures AS
SELECT arrow_cast(measure, 'Dictionary(Int32, Utf8)') AS measure
FROM (VALUES ('outbound_network_io'), ('inbound_network_io'), ('outbound:inbound')) AS m(measure);

-- Each pod's 10 s bucket with both directions (each the mean over interfaces and scrapes, as
-- ESCU's pod_network_io has it), on a log scale (log2(1 + bytes)), its pod's workload (the
-- store's `workload` column where ingest filled it, else k8s_workload: Kubernetes' naming rules
-- on the pod and node names), the bucket's hour of day (its slot) and its time in seconds:
-- everything per bucket, computed once.
CREATE OR REPLACE VIEW pod_levels AS
SELECT
    cluster,
    node,
    pod,
    k8s_service(pod) AS service,
    coalesce(workload, k8s_workload(pod, node)) AS workload,
    bucket,
    to_unixtime(bucket) / 3600 % 24 AS slot,
    to_unixtime(bucket) AS t,
    log2(1 + greatest(outbound_network_io, 0)) AS outbound_level,
    log2(1 + greatest(inbound_network_io, 0)) AS inbound_level,
    greatest(outbound_network_io, inbound_network_io) AS bytes,
    outbound_network_io,
    inbound_network_io,
    outbound_network_io / nullif(inbound_network_io, 0) AS "outbound:inbound"
FROM (
    SELECT
        hour,
        cluster,
        pod,
        node,
        workload,
        date_bin(INTERVAL '10 seconds', time) AS bucket,
        exact_avg(CASE WHEN direction = 'transmit' THEN value END) AS outbound_network_io,
        exact_avg(CASE WHEN direction = 'receive' THEN value END) AS inbound_network_io
    FROM network_io_points
    GROUP BY hour, cluster, pod, node, workload, date_bin(INTERVAL '10 seconds', time)
)
WHERE outbound_network_io IS NOT NULL
  AND inbound_network_io IS NOT NULL;

-- Each pod's 10 s bucket as the three measures: the level of outbound and inbound bytes, and
-- their balance (log2 of outbound over inbound, each plus one).
-- Every CROSS JOIN in drift's SQL names its small side first: DataFusion's CrossJoinExec holds
-- its left input in memory and emits a batch per left row, so a big left side means millions
-- of batches of three rows (the full baseline of 130 M rows ran 17 minutes and 7 GB before).
CREATE OR REPLACE VIEW levels AS
SELECT
    p.cluster,
    p.node,
    p.pod,
    p.service,
    p.workload,
    p.bucket,
    p.slot,
    p.t,
    m.measure,
    CASE m.measure
        WHEN 'outbound_network_io' THEN p.outbound_level
        WHEN 'inbound_network_io' THEN p.inbound_level
        ELSE p.outbound_level - p.inbound_level
    END AS level,
    p.bytes,
    CASE m.measure
        WHEN 'outbound_network_io' THEN p.outbound_network_io
        WHEN 'inbound_network_io' THEN p.inbound_network_io
        ELSE p."outbound:inbound"
    END AS observed
FROM measures AS m
CROSS JOIN pod_levels AS p;

-- Per hour: a histogram of each pod's levels in bins of 1/8 doubling (a bin is its lower edge,
-- a multiple of 0.125, exact in a double), as one value per pod and measure (histogram, an
-- iodrift function: the bins in order with their counts), with the hour's highest and lowest
-- bin. Histograms merge by adding counts (histogram_sum): exactly, in any order, which is what
-- makes the incremental baseline equal to the full one. A pod belongs to one workload within an
-- hour (the greatest name, should two sources name it differently): so a pod's hour is one row,
-- which the baseline's per-pod extremes (`hourly`) take as it is.
CREATE OR REPLACE VIEW rollup AS
SELECT
    to_unixtime(date_trunc('hour', bucket)) AS hour,
    cluster,
    pod,
    max(workload) AS workload,
    measure,
    count(*) AS spans,
    histogram(floor(level * 8) / 8) AS bins,
    max(floor(level * 8) / 8) AS top,
    min(floor(level * 8) / 8) AS bottom
FROM levels
GROUP BY to_unixtime(date_trunc('hour', bucket)), cluster, pod, measure;

-- drift_baseline: the hours' histograms added up per pod and hour of day (slot 0-23, UTC), per
-- workload and hour of day, and per workload over all hours (slot -1), and read as quantiles:
-- the lowest bin whose cumulative count reaches the share (histogram_quantile). Beside them,
-- the history's usual extremes: for each day, the highest (lowest) bin of the slot's hour and
-- its two neighbours (periodic work drifts across an hour's edge), and the median of those over
-- the days (over the hours for slot -1). Work that recurs on most days (a nightly backup, a
-- heavy tail's daily spikes) sets them; an episode of a few days (an attack in the history)
-- does not, so the history's attacks stay out of the band. Each pod's hours are added up by
-- hour of day once (pod_slots): the three levels then add those few histograms, not every
-- hour's three times over; counts add and maxima of maxima are maxima, so the answer is the
-- same to the bit. merge.sql is this query over the stored hours (table `rollups` instead of
-- view `rollup`).
CREATE OR REPLACE VIEW baseline AS
WITH pod_slots AS (
    SELECT cluster, pod, workload, measure, (hour / 3600) % 24 AS slot, sum(spans) AS spans, histogram_sum(bins) AS bins
    FROM rollup
    GROUP BY cluster, pod, workload, measure, (hour / 3600) % 24
),
quantiles AS (
    SELECT
        r.cluster,
        s.level,
        CASE s.level WHEN 'pod' THEN r.pod ELSE r.workload END AS entity,
        r.measure,
        CAST(CASE WHEN s.by_hour THEN r.slot ELSE -1 END AS BIGINT) AS slot,
        sum(r.spans) AS spans,
        histogram_quantile(histogram_sum(r.bins), 0.25) AS q25,
        histogram_quantile(histogram_sum(r.bins), 0.5) AS q50,
        histogram_quantile(histogram_sum(r.bins), 0.75) AS q75
    FROM (VALUES ('pod', true), ('workload', true), ('workload', false)) AS s(level, by_hour)
    CROSS JOIN pod_slots AS r
    GROUP BY 1, 2, 3, 4, 5
),
hourly AS (
    SELECT cluster, 'pod' AS level, pod AS entity, measure, CAST(hour AS BIGINT) / 3600 AS hour, top, bottom
    FROM rollup
    UNION ALL
    SELECT cluster, 'workload' AS level, workload AS entity, measure, CAST(hour AS BIGINT) / 3600 AS hour, max(top) AS top, min(bottom) AS bottom
    FROM rollup
    GROUP BY cluster, workload, measure, CAST(hour AS BIGINT) / 3600
),
periods AS (
    SELECT
        h.cluster,
        h.level,
        h.entity,
        h.measure,
        (h.hour + n.shift) % 24 AS slot,
        (h.hour + n.shift) / 24 AS period,
        max(h.top) AS top,
        min(h.bottom) AS bottom
    FROM (VALUES (-1), (0), (1)) AS n(shift)
    CROSS JOIN hourly AS h
    GROUP BY 1, 2, 3, 4, 5, 6
    UNION ALL
    SELECT cluster, level, entity, measure, -1 AS slot, hour AS period, top, bottom
    FROM hourly
    WHERE level = 'workload'
),
extremes AS (
    SELECT
        cluster,
        level,
        entity,
        measure,
        CAST(slot AS BIGINT) AS slot,
        median(top) AS peak,
        median(bottom) AS trough
    FROM periods
    GROUP BY cluster, level, entity, measure, slot
)
SELECT
    q.cluster,
    q.level,
    q.entity,
    q.measure,
    q.slot,
    q.spans,
    q.q25,
    q.q50,
    q.q75,
    e.peak,
    e.trough
FROM quantiles AS q
JOIN extremes AS e
  ON e.cluster = q.cluster
 AND e.level = q.level
 AND e.entity = q.entity
 AND e.measure = q.measure
 AND e.slot = q.slot;
