-- Stages 4 and 5 of both detections, "Kubernetes Anomalous Inbound Outbound Network IO"
-- (ESCU 4f3b0c97-657e-4547-a89a-9a50c656e3cd) and "... Inbound to Outbound Network IO Ratio":
--   | lookup k8s_container_network_io_baseline key            (network-io)
--   | lookup k8s_container_network_io_ratio_baseline key      (network-io-ratio)
--   | foreach stdev_* [eval anomalies = if(<<FIELD>> > avg + 4 * stdev,
--         anomalies + "<M> [ratio ]higher than average by Z Standard Deviations. ...", anomalies)]
-- The rules differ only in data: their lookup, its two measures and the phrase of the text.
-- `rule_baselines` lays both lookups side by side, a row per rule and key, each row holding its
-- own rule's avg_*/stdev_* and nulls for the other rule's measures. One join of the per-pod
-- features against it then serves both rules in one pass, and the null measures drop out of
-- the text (a measure with a null avg or stdev is skipped, stage 5).
-- Keys without a baseline row never fire (inner join). The text is '' when nothing fires and
-- null when a firing measure has stdev 0 (SPL's null + string).
CREATE OR REPLACE VIEW rule_baselines AS
SELECT
    'network-io' AS rule,
    key,
    'higher than average' AS phrase,
    avg_inbound_network_io,
    stdev_inbound_network_io,
    avg_outbound_network_io,
    stdev_outbound_network_io,
    CAST(NULL AS DOUBLE) AS "avg_inbound:outbound",
    CAST(NULL AS DOUBLE) AS "stdev_inbound:outbound",
    CAST(NULL AS DOUBLE) AS "avg_outbound:inbound",
    CAST(NULL AS DOUBLE) AS "stdev_outbound:inbound"
FROM k8s_container_network_io_baseline
UNION ALL
SELECT
    'network-io-ratio' AS rule,
    key,
    'ratio higher than average' AS phrase,
    NULL,
    NULL,
    NULL,
    NULL,
    "avg_inbound:outbound",
    "stdev_inbound:outbound",
    "avg_outbound:inbound",
    "stdev_outbound:inbound"
FROM k8s_container_network_io_ratio_baseline;

CREATE OR REPLACE VIEW bucket_anomalies AS
SELECT
    b.rule,
    f.cluster,
    f.node,
    f.pod,
    f.service,
    f.bucket,
    escu_anomalies(
        b.phrase,
        'inbound_network_io', f.inbound_network_io, b.avg_inbound_network_io, b.stdev_inbound_network_io,
        'outbound_network_io', f.outbound_network_io, b.avg_outbound_network_io, b.stdev_outbound_network_io,
        'inbound:outbound', f."inbound:outbound", b."avg_inbound:outbound", b."stdev_inbound:outbound",
        'outbound:inbound', f."outbound:inbound", b."avg_outbound:inbound", b."stdev_outbound:inbound"
    ) AS anomalies,
    -- Whether any measure is above avg + 4 x stdev: the same test as escu_anomalies', cheap to
    -- evaluate first, so the text is only written for the buckets that can have one.
    (f.inbound_network_io > b.avg_inbound_network_io + 4 * b.stdev_inbound_network_io
        OR f.outbound_network_io > b.avg_outbound_network_io + 4 * b.stdev_outbound_network_io
        OR f."inbound:outbound" > b."avg_inbound:outbound" + 4 * b."stdev_inbound:outbound"
        OR f."outbound:inbound" > b."avg_outbound:inbound" + 4 * b."stdev_outbound:inbound") IS TRUE AS fires
FROM rule_baselines AS b
JOIN pod_network_io AS f ON f.key = b.key;
