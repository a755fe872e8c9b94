-- Stages 4 and 5 of "Kubernetes Anomalous Inbound to Outbound Network IO Ratio":
--   | lookup k8s_container_network_io_ratio_baseline key
--   | foreach stdev_* [eval anomalies = if(<<FIELD>> > avg + 4 * stdev,
--         anomalies + "<M> ratio higher than average by Z Standard Deviations. ...", anomalies)]
-- Keys without a baseline row never fire (inner join). The text is '' when nothing fires and
-- null when a firing measure has stdev 0 (SPL's null + string).
CREATE OR REPLACE VIEW bucket_anomalies AS
SELECT
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
    (f."inbound:outbound" > b."avg_inbound:outbound" + 4 * b."stdev_inbound:outbound"
        OR f."outbound:inbound" > b."avg_outbound:inbound" + 4 * b."stdev_outbound:inbound") IS TRUE AS fires
FROM k8s_container_network_io_ratio_baseline AS b
JOIN pod_network_io AS f ON f.key = b.key;

--   | where anomalies!=""
CREATE OR REPLACE VIEW anomalous_buckets AS
SELECT cluster, node, pod, service, bucket, anomalies
FROM bucket_anomalies
WHERE fires AND anomalies <> '';
