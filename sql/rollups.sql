-- Incremental baselines: for each hour partition and key, mergeable statistics of each rule's
-- two measures (count, mean and M2, the sum of squared deviations, which Chan et al.'s update
-- merges across hours), the rows the baseline counts and its latest bucket.
-- Measure a is the lookup's first avg_/stdev_ pair, measure b its second. A 10 s span never
-- crosses an hour, so the hours of a window merge into exactly the window's baseline.
-- `hour` and `last_seen` are epoch seconds.

CREATE OR REPLACE VIEW rollup_network_io AS
SELECT
    to_unixtime(hour) AS hour,
    key,
    count(*) AS "rows",
    to_unixtime(max(bucket)) AS last_seen,
    count(CASE WHEN direction = 'transmit' THEN io END) AS n_a,
    exact_avg(CASE WHEN direction = 'transmit' THEN io END) AS mean_a,
    exact_m2(CASE WHEN direction = 'transmit' THEN io END) AS m2_a,
    count(CASE WHEN direction = 'receive' THEN io END) AS n_b,
    exact_avg(CASE WHEN direction = 'receive' THEN io END) AS mean_b,
    exact_m2(CASE WHEN direction = 'receive' THEN io END) AS m2_b
FROM spans
GROUP BY hour, key;

CREATE OR REPLACE VIEW rollup_network_io_ratio AS
SELECT
    to_unixtime(date_trunc('hour', bucket)) AS hour,
    key,
    count(*) AS "rows",
    to_unixtime(max(bucket)) AS last_seen,
    count("inbound:outbound") AS n_a,
    exact_avg("inbound:outbound") AS mean_a,
    exact_m2("inbound:outbound") AS m2_a,
    count("outbound:inbound") AS n_b,
    exact_avg("outbound:inbound") AS mean_b,
    exact_m2("outbound:inbound") AS m2_b
FROM service_network_io
GROUP BY date_trunc('hour', bucket), key;
