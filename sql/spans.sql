-- Stages 1 and 2 of every rule (schema public, seen from every rule's schema).
--   | mstats avg(k8s.pod.network.io) as io by k8s.cluster.name k8s.pod.name k8s.node.name direction span=10s
--   | eval service = replace('k8s.pod.name', "-\w{5}$|-[abcdef0-9]{8,10}-\w{5}$", "")
--   | eval key = 'k8s.cluster.name' + ":" + 'service'
-- One row per (cluster, pod, node, direction, 10 s bucket): io is the mean over interfaces and
-- over the 0, 1 or 2 scrapes of the span. A point missing any `by` field (or its value) is dropped.
-- A span never crosses an hour, so grouping by the store's `hour` partition as well changes no
-- span and lets each partition of the scan emit its spans as soon as an hour ends.
-- Over the store's sorted hours such a grouping of exact_avg runs as iodrift's SortedExactAvgExec
-- (crate iodrift-udfs, put in place of DataFusion's aggregation by a physical optimizer rule):
-- the same groups and bits, without encoding every key of every row.
-- Every mean and standard deviation of the rules uses exact_avg / exact_stddev_samp (crate
-- iodrift-udfs): exact sums rounded once, so results never depend on row order or parallelism.
-- The points stage 1 reads: the network IO metric, with every `by` field and a value; and the
-- pod's owning workload where the store has it (null otherwise; ESCU's rules do not read it).
CREATE OR REPLACE VIEW network_io_points AS
SELECT hour, cluster, pod, node, direction, time, value, workload
FROM metrics
WHERE metric = 'k8s.pod.network.io'
  AND cluster IS NOT NULL
  AND pod IS NOT NULL
  AND node IS NOT NULL
  AND direction IS NOT NULL
  AND value IS NOT NULL;

CREATE OR REPLACE VIEW spans AS
SELECT
    hour,
    cluster,
    pod,
    node,
    direction,
    bucket,
    io,
    k8s_service(pod) AS service,
    cluster || ':' || k8s_service(pod) AS key
FROM (
    SELECT
        hour,
        cluster,
        pod,
        node,
        direction,
        date_bin(INTERVAL '10 seconds', time) AS bucket,
        exact_avg(value) AS io
    FROM network_io_points
    GROUP BY hour, cluster, pod, node, direction, date_bin(INTERVAL '10 seconds', time)
);
