-- The lookup from the hours' rollups (table `rollups`): the same bits as `baseline` over them.
SELECT
    key,
    exact_merge_avg(inbound_outbound) AS "avg_inbound:outbound",
    exact_merge_avg(outbound_inbound) AS "avg_outbound:inbound",
    exact_merge_stddev_samp(inbound_outbound) AS "stdev_inbound:outbound",
    exact_merge_stddev_samp(outbound_inbound) AS "stdev_outbound:inbound",
    sum("rows") AS "count",
    max(last_seen) AS last_seen
FROM rollups
GROUP BY key
