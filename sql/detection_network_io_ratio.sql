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
    ) AS anomalies
FROM pod_network_io AS f
JOIN k8s_container_network_io_ratio_baseline AS b ON f.key = b.key;
