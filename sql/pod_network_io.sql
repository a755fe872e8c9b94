-- Stages 1 to 3 of the ESCU detections, shared by any rule: per-pod features of each 10 s bucket.
--   | mstats avg(k8s.pod.network.io) as io by k8s.cluster.name k8s.pod.name k8s.node.name direction span=10s
--   | stats avg(eval(if(direction="transmit", io,null()))) as outbound_network_io
--           avg(eval(if(direction="receive", io,null()))) as inbound_network_io
--           by k8s.cluster.name k8s.node.name k8s.pod.name service _time
--   | eval inbound:outbound = inbound_network_io/outbound_network_io      (ratio rule)
--   | eval outbound:inbound = outbound_network_io/inbound_network_io      (ratio rule)
-- The stats after mstats averages a single span per direction (service is a function of the pod),
-- and the exact average of one value is that value: so each direction's average is the span's
-- io itself, computed here in one pass over the metrics (the same points and buckets as
-- `spans`) rather than by a second aggregation over the spans. Grouping by the pod before the
-- bucket follows the store's sort order, so each hour's groups are emitted pod by pod.
CREATE OR REPLACE VIEW pod_network_io AS
SELECT
    cluster,
    node,
    pod,
    k8s_service(pod) AS service,
    cluster || ':' || k8s_service(pod) AS key,
    bucket,
    outbound_network_io,
    inbound_network_io,
    inbound_network_io / nullif(outbound_network_io, 0) AS "inbound:outbound",
    outbound_network_io / nullif(inbound_network_io, 0) AS "outbound:inbound"
FROM (
    SELECT
        hour,
        cluster,
        pod,
        node,
        date_bin(INTERVAL '10 seconds', time) AS bucket,
        exact_avg(CASE WHEN direction = 'transmit' THEN value END) AS outbound_network_io,
        exact_avg(CASE WHEN direction = 'receive' THEN value END) AS inbound_network_io
    FROM network_io_points
    GROUP BY hour, cluster, pod, node, date_bin(INTERVAL '10 seconds', time)
);
