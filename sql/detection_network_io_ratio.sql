-- Stages 4 and 5 of "Kubernetes Anomalous Inbound to Outbound Network IO Ratio":
-- lookup k8s_container_network_io_ratio_baseline key, then `foreach stdev_*` writes
-- "<M> ratio higher than average by ...". Same null rules as the IO rule.
CREATE OR REPLACE VIEW network_io_ratio_anomalies AS
SELECT
    'network-io-ratio' AS rule,
    f.cluster,
    f.node,
    f.pod,
    f.service,
    f.bucket,
    escu_anomalies(
        'ratio higher than average',
        'inbound:outbound', f."inbound:outbound", b."avg_inbound:outbound", b."stdev_inbound:outbound",
        'outbound:inbound', f."outbound:inbound", b."avg_outbound:inbound", b."stdev_outbound:inbound"
    ) AS anomalies,
    -- See detection_network_io.sql.
    (f."inbound:outbound" > b."avg_inbound:outbound" + 4 * b."stdev_inbound:outbound"
        OR f."outbound:inbound" > b."avg_outbound:inbound" + 4 * b."stdev_outbound:inbound") IS TRUE AS fires
FROM k8s_container_network_io_ratio_baseline AS b
JOIN pod_network_io AS f ON f.key = b.key;
