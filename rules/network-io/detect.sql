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
