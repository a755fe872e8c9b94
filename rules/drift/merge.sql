-- drift_baseline from the hours' stored histograms (table `rollups`): the `baseline` view's
-- query over them, so a merged baseline has the very bits of a full recomputation.
WITH pod_slots AS (
    SELECT cluster, pod, workload, measure, (hour / 3600) % 24 AS slot, bin, sum(spans) AS spans
    FROM rollups
    GROUP BY cluster, pod, workload, measure, (hour / 3600) % 24, bin
),
quantiles AS (
    SELECT
        r.cluster,
        s.level,
        CASE s.level WHEN 'pod' THEN r.pod ELSE r.workload END AS entity,
        r.measure,
        CAST(CASE WHEN s.by_hour THEN r.slot ELSE -1 END AS BIGINT) AS slot,
        sum(r.spans) AS spans,
        weighted_quantile(r.bin, r.spans, 0.25) AS q25,
        weighted_quantile(r.bin, r.spans, 0.5) AS q50,
        weighted_quantile(r.bin, r.spans, 0.75) AS q75
    FROM (VALUES ('pod', true), ('workload', true), ('workload', false)) AS s(level, by_hour)
    CROSS JOIN pod_slots AS r
    GROUP BY 1, 2, 3, 4, 5
),
pod_hours AS (
    SELECT cluster, pod, workload, measure, CAST(hour AS BIGINT) / 3600 AS hour, max(bin) AS top, min(bin) AS bottom
    FROM rollups
    GROUP BY cluster, pod, workload, measure, CAST(hour AS BIGINT) / 3600
),
hourly AS (
    SELECT
        r.cluster,
        s.level,
        CASE s.level WHEN 'pod' THEN r.pod ELSE r.workload END AS entity,
        r.measure,
        r.hour,
        max(r.top) AS top,
        min(r.bottom) AS bottom
    FROM (VALUES ('pod'), ('workload')) AS s(level)
    CROSS JOIN pod_hours AS r
    GROUP BY 1, 2, 3, 4, 5
),
periods AS (
    SELECT
        h.cluster,
        h.level,
        h.entity,
        h.measure,
        CASE WHEN n.by_hour THEN (h.hour + n.shift) % 24 ELSE -1 END AS slot,
        CASE WHEN n.by_hour THEN (h.hour + n.shift) / 24 ELSE h.hour END AS period,
        max(h.top) AS top,
        min(h.bottom) AS bottom
    FROM (VALUES (true, -1), (true, 0), (true, 1), (false, 0)) AS n(by_hour, shift)
    CROSS JOIN hourly AS h
    WHERE n.by_hour OR h.level = 'workload'
    GROUP BY 1, 2, 3, 4, 5, 6
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
SELECT q.cluster, q.level, q.entity, q.measure, q.slot, q.spans, q.q25, q.q50, q.q75, e.peak, e.trough
FROM quantiles AS q
JOIN extremes AS e
  ON e.cluster = q.cluster
 AND e.level = q.level
 AND e.entity = q.entity
 AND e.measure = q.measure
 AND e.slot = q.slot;
