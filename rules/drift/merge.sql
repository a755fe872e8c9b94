-- drift_baseline from the hours' stored histograms (table `rollups`): the `baseline` view's
-- query over them, so a merged baseline has the very bits of a full recomputation.
WITH pod_slots AS (
    SELECT cluster, pod, workload, measure, (hour / 3600) % 24 AS slot, sum(spans) AS spans, histogram_sum(bins) AS bins
    FROM rollups
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
    FROM rollups
    UNION ALL
    SELECT cluster, 'workload' AS level, workload AS entity, measure, CAST(hour AS BIGINT) / 3600 AS hour, max(top) AS top, min(bottom) AS bottom
    FROM rollups
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
