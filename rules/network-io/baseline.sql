-- Baseline Of Kubernetes Container Network IO (ESCU v5), lookup k8s_container_network_io_baseline.
--   | stats avg(eval(if(direction="transmit", io,null()))) as avg_outbound_network_io
--           avg(eval(if(direction="receive", io,null()))) as avg_inbound_network_io
--           stdev(eval(if(direction="transmit", io,null()))) as stdev_outbound_network_io
--           stdev(eval(if(direction="receive", io,null()))) as stdev_inbound_network_io
--           count latest(_time) as last_seen by key
-- stdev is the sample standard deviation (n - 1), null below two values; count counts the spans
-- of the key in both directions; last_seen is the latest bucket start in epoch seconds.
CREATE OR REPLACE VIEW baseline AS
SELECT
    key,
    exact_avg(CASE WHEN direction = 'transmit' THEN io END) AS avg_outbound_network_io,
    exact_avg(CASE WHEN direction = 'receive' THEN io END) AS avg_inbound_network_io,
    exact_stddev_samp(CASE WHEN direction = 'transmit' THEN io END) AS stdev_outbound_network_io,
    exact_stddev_samp(CASE WHEN direction = 'receive' THEN io END) AS stdev_inbound_network_io,
    count(*) AS "count",
    to_unixtime(max(bucket)) AS last_seen
FROM spans
GROUP BY key;

-- The same statistics per hour partition, as mergeable exact state (merge.sql merges the hours
-- into exactly what `baseline` gives over them: a 10 s span never crosses an hour).
CREATE OR REPLACE VIEW rollup AS
SELECT
    to_unixtime(hour) AS hour,
    key,
    count(*) AS "rows",
    to_unixtime(max(bucket)) AS last_seen,
    exact_moments(CASE WHEN direction = 'transmit' THEN io END) AS outbound,
    exact_moments(CASE WHEN direction = 'receive' THEN io END) AS inbound
FROM spans
GROUP BY hour, key;
