-- Baseline Of Kubernetes Container Network IO Ratio (ESCU v4), lookup k8s_container_network_io_ratio_baseline.
--   | stats avg(eval(if(direction="transmit", io,null()))) as outbound_network_io
--           avg(eval(if(direction="receive", io,null()))) as inbound_network_io by key _time
--   | eval inbound:outbound = inbound_network_io/outbound_network_io
--   | eval outbound:inbound = outbound_network_io/inbound_network_io
--   | stats avg(*:*) as avg_*:* stdev(*:*) as stdev_*:* count latest(_time) as last_seen by key
-- The per-bucket means run across all pods of the service (the known flaw: each pod is later
-- tested against the spread of service-wide means). A ratio with a null side or a zero
-- denominator is null, as SPL's division by zero is.
CREATE OR REPLACE VIEW service_network_io AS
SELECT
    hour,
    key,
    bucket,
    outbound_network_io,
    inbound_network_io,
    inbound_network_io / nullif(outbound_network_io, 0) AS "inbound:outbound",
    outbound_network_io / nullif(inbound_network_io, 0) AS "outbound:inbound"
FROM (
    SELECT
        hour,
        key,
        bucket,
        exact_avg(CASE WHEN direction = 'transmit' THEN io END) AS outbound_network_io,
        exact_avg(CASE WHEN direction = 'receive' THEN io END) AS inbound_network_io
    FROM spans
    GROUP BY hour, key, bucket
);

CREATE OR REPLACE VIEW baseline AS
SELECT
    key,
    exact_avg("inbound:outbound") AS "avg_inbound:outbound",
    exact_avg("outbound:inbound") AS "avg_outbound:inbound",
    exact_stddev_samp("inbound:outbound") AS "stdev_inbound:outbound",
    exact_stddev_samp("outbound:inbound") AS "stdev_outbound:inbound",
    count(*) AS "count",
    to_unixtime(max(bucket)) AS last_seen
FROM service_network_io
GROUP BY key;

-- The same statistics per hour partition, as mergeable exact state.
CREATE OR REPLACE VIEW rollup AS
SELECT
    to_unixtime(hour) AS hour,
    key,
    count(*) AS "rows",
    to_unixtime(max(bucket)) AS last_seen,
    exact_moments("inbound:outbound") AS inbound_outbound,
    exact_moments("outbound:inbound") AS outbound_inbound
FROM service_network_io
GROUP BY hour, key;
