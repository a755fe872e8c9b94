-- drift_baseline from the hours' stored histograms (table `rollups`): the `baseline` view's
-- query over them, so a merged baseline has the very bits of a full recomputation.
WITH histograms AS (
    SELECT
        r.cluster,
        s.level,
        CASE s.level WHEN 'pod' THEN r.pod ELSE r.workload END AS entity,
        r.measure,
        CASE WHEN s.by_hour THEN (r.hour / 3600) % 24 ELSE -1 END AS slot,
        r.bin,
        sum(r.spans) AS spans
    FROM rollups AS r
    CROSS JOIN (VALUES ('pod', true), ('workload', true), ('workload', false)) AS s(level, by_hour)
    GROUP BY 1, 2, 3, 4, 5, 6
),
cumulative AS (
    SELECT
        *,
        sum(spans) OVER (PARTITION BY cluster, level, entity, measure, slot ORDER BY bin
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS below,
        sum(spans) OVER (PARTITION BY cluster, level, entity, measure, slot) AS total
    FROM histograms
)
SELECT
    cluster,
    level,
    entity,
    measure,
    CAST(slot AS BIGINT) AS slot,
    CAST(max(total) AS BIGINT) AS spans,
    min(CASE WHEN below * 100 >= total THEN bin END) AS q01,
    min(CASE WHEN below * 4 >= total THEN bin END) AS q25,
    min(CASE WHEN below * 2 >= total THEN bin END) AS q50,
    min(CASE WHEN below * 4 >= total * 3 THEN bin END) AS q75,
    min(CASE WHEN below * 100 >= total * 99 THEN bin END) AS q99
FROM cumulative
GROUP BY cluster, level, entity, measure, slot
