-- Stages 6 and 7 of every rule, run in the rule's schema after its own SQL:
--   | stats count values(anomalies) as anomalies by k8s.cluster.name k8s.node.name k8s.pod.name service
--   | rename service as k8s.service | where count > 5 | rename k8s.node.name as host
-- `anomalous_buckets` is the rule's view (a row per anomalous bucket of a pod); `rule` is the
-- rule's row of the `rules` table, whose `min_buckets` is the persistence its manifest sets
-- (ESCU's `count > 5` is 6). `anomalies` holds the distinct texts in lexical order (SPL
-- values()); the anomalous buckets need not be consecutive.
CREATE OR REPLACE VIEW findings AS
SELECT
    p.cluster AS "k8s.cluster.name",
    p.node AS host,
    p.pod AS "k8s.pod.name",
    p.service AS "k8s.service",
    p."count",
    p.anomalies,
    r.rule,
    r.risk_score,
    replace(r.risk_message, '$host$', p.node) AS risk_message,
    r.mitre_attack_id
FROM (
    SELECT
        cluster,
        node,
        pod,
        service,
        count(*) AS "count",
        array_agg(DISTINCT anomalies ORDER BY anomalies) AS anomalies
    FROM anomalous_buckets
    GROUP BY cluster, node, pod, service
) AS p
JOIN rule AS r ON p."count" >= r.min_buckets;
