-- Stages 4 and 5 of "Kubernetes Anomalous Inbound Outbound Network IO":
--   | lookup k8s_container_network_io_baseline key
--   | foreach stdev_* [eval anomalies = if(<<FIELD>> > avg + 4 * stdev,
--         anomalies + "<M> higher than average by Z Standard Deviations. ...", anomalies)]
-- Keys without a baseline row never fire (inner join). The text is '' when nothing fires and
-- null when a firing measure has stdev 0 (SPL's null + string); a measure with a null avg or
-- stdev is skipped.
CREATE OR REPLACE VIEW bucket_anomalies AS
SELECT
    f.cluster,
    f.node,
    f.pod,
    f.service,
    f.bucket,
    escu_anomalies(
        'higher than average',
        'inbound_network_io', f.inbound_network_io, b.avg_inbound_network_io, b.stdev_inbound_network_io,
        'outbound_network_io', f.outbound_network_io, b.avg_outbound_network_io, b.stdev_outbound_network_io
    ) AS anomalies,
    -- Whether any measure is above avg + 4 x stdev: the same test as escu_anomalies', cheap to
    -- evaluate first, so the text is only written for the buckets that can have one.
    (f.inbound_network_io > b.avg_inbound_network_io + 4 * b.stdev_inbound_network_io
        OR f.outbound_network_io > b.avg_outbound_network_io + 4 * b.stdev_outbound_network_io) IS TRUE AS fires
FROM k8s_container_network_io_baseline AS b
JOIN pod_network_io AS f ON f.key = b.key;

--   | where anomalies!=""
-- `fires` is true exactly when the text is not '' (null or a text), so testing it first changes
-- no result.
CREATE OR REPLACE VIEW anomalous_buckets AS
SELECT cluster, node, pod, service, bucket, anomalies
FROM bucket_anomalies
WHERE fires AND anomalies <> '';

-- Not a stage of ESCU's: what an analyst needs to judge each measure that fired on a finding's
-- pod (the OCSF output's anomaly analyses). Over the buckets the finding counted, each measure
-- above its band: how many, the first and last, the median observed value, and the baseline's
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
    concat('k8s_container_network_io_baseline ', max(key)) AS reference
FROM (
    SELECT
        f.cluster, f.pod, f.bucket, f.key, m.measure,
        CASE m.measure WHEN 'inbound_network_io' THEN f.inbound_network_io ELSE f.outbound_network_io END AS observed,
        CASE m.measure WHEN 'inbound_network_io' THEN b.avg_inbound_network_io ELSE b.avg_outbound_network_io END AS expected,
        CASE m.measure
            WHEN 'inbound_network_io' THEN b.avg_inbound_network_io + 4 * b.stdev_inbound_network_io
            ELSE b.avg_outbound_network_io + 4 * b.stdev_outbound_network_io
        END AS upper
    FROM (VALUES ('inbound_network_io'), ('outbound_network_io')) AS m(measure)
    CROSS JOIN anomalous_buckets AS a
    JOIN pod_network_io AS f
      ON f.cluster = a.cluster AND f.pod = a.pod AND f.node = a.node AND f.bucket = a.bucket
    JOIN k8s_container_network_io_baseline AS b ON b.key = f.key
)
WHERE observed > upper
GROUP BY cluster, pod, measure;
