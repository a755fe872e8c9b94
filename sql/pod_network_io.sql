-- Stage 3 of the ESCU detections, shared by any rule: per-pod features of each 10 s bucket.
--   | stats avg(eval(if(direction="transmit", io,null()))) as outbound_network_io
--           avg(eval(if(direction="receive", io,null()))) as inbound_network_io
--           by k8s.cluster.name k8s.node.name k8s.pod.name service _time
--   | eval inbound:outbound = inbound_network_io/outbound_network_io      (ratio rule)
--   | eval outbound:inbound = outbound_network_io/inbound_network_io      (ratio rule)
CREATE OR REPLACE VIEW pod_network_io AS
SELECT
    cluster,
    node,
    pod,
    service,
    key,
    bucket,
    outbound_network_io,
    inbound_network_io,
    inbound_network_io / nullif(outbound_network_io, 0) AS "inbound:outbound",
    outbound_network_io / nullif(inbound_network_io, 0) AS "outbound:inbound"
FROM (
    SELECT
        hour,
        cluster,
        node,
        pod,
        service,
        key,
        bucket,
        exact_avg(CASE WHEN direction = 'transmit' THEN io END) AS outbound_network_io,
        exact_avg(CASE WHEN direction = 'receive' THEN io END) AS inbound_network_io
    FROM spans
    GROUP BY hour, cluster, node, pod, service, key, bucket
);
