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
    ) AS anomalies
FROM pod_network_io AS f
JOIN k8s_container_network_io_baseline AS b ON f.key = b.key;
