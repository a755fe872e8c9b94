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

-- Not a stage of ESCU's: what an analyst needs to judge each measure that fired on a finding's
-- pod (the OCSF output's anomaly analyses). Over the buckets the finding counted, each ratio
-- above its band: how many, the first and last, the median observed ratio, and the baseline's
-- average and band edge (avg + 4 x stdev) for the pod's key.
CREATE OR REPLACE VIEW evidence AS
SELECT
    cluster,
    pod,
    measure,
    count(*) AS buckets,
    min(bucket) AS first_bucket,
    max(bucket) AS last_bucket,
    median(observed) AS observed,
    max(expected) AS expected,
    CAST(NULL AS DOUBLE) AS lower,
    max(upper) AS upper,
    concat('k8s_container_network_io_ratio_baseline ', max(key)) AS reference
FROM (
    SELECT
        f.cluster, f.pod, f.bucket, f.key, m.measure,
        CASE m.measure WHEN 'inbound:outbound' THEN f."inbound:outbound" ELSE f."outbound:inbound" END AS observed,
        CASE m.measure WHEN 'inbound:outbound' THEN b."avg_inbound:outbound" ELSE b."avg_outbound:inbound" END AS expected,
        CASE m.measure
            WHEN 'inbound:outbound' THEN b."avg_inbound:outbound" + 4 * b."stdev_inbound:outbound"
            ELSE b."avg_outbound:inbound" + 4 * b."stdev_outbound:inbound"
        END AS upper
    FROM (VALUES ('inbound:outbound'), ('outbound:inbound')) AS m(measure)
    CROSS JOIN anomalous_buckets AS a
    JOIN pod_network_io AS f
      ON f.cluster = a.cluster AND f.pod = a.pod AND f.node = a.node AND f.bucket = a.bucket
    JOIN k8s_container_network_io_ratio_baseline AS b ON b.key = f.key
)
WHERE observed > upper
GROUP BY cluster, pod, measure;
