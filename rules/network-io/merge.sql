-- The lookup from the hours' rollups (table `rollups`): the same bits as `baseline` over them.
SELECT
    key,
    exact_merge_avg(outbound) AS avg_outbound_network_io,
    exact_merge_avg(inbound) AS avg_inbound_network_io,
    exact_merge_stddev_samp(outbound) AS stdev_outbound_network_io,
    exact_merge_stddev_samp(inbound) AS stdev_inbound_network_io,
    sum("rows") AS "count",
    max(last_seen) AS last_seen
FROM rollups
GROUP BY key
