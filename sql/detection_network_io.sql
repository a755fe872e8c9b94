-- Stages 4 and 5 of "Kubernetes Anomalous Inbound Outbound Network IO"
-- (ESCU 4f3b0c97-657e-4547-a89a-9a50c656e3cd): lookup k8s_container_network_io_baseline key,
-- then `foreach stdev_*` builds the anomaly text of each bucket. Keys without a baseline row
-- never fire (inner join). The text is '' when nothing fires and null when a firing measure
-- has stdev 0 (SPL's null + string).
CREATE OR REPLACE VIEW network_io_anomalies AS
SELECT
    'network-io' AS rule,
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
