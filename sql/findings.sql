-- Stages 6 and 7 of both detections, and the risk data of each rule.
--   | where anomalies!=""
--   | stats count values(anomalies) as anomalies by k8s.cluster.name k8s.node.name k8s.pod.name service
--   | rename service as k8s.service | where count > 5 | rename k8s.node.name as host
-- `anomalies` holds the distinct texts in lexical order (SPL values()); the six anomalous buckets
-- need not be consecutive. `fires` is true exactly when the text is not '' (null or a text), so
-- testing it first changes no result and spares writing the text of the quiet buckets. The rule's `..._filter` macro is `iodrift detect --filter`.
CREATE OR REPLACE VIEW anomalous_buckets AS
SELECT * FROM bucket_anomalies WHERE fires AND anomalies <> '';

CREATE OR REPLACE VIEW findings AS
SELECT
    p.cluster AS "k8s.cluster.name",
    p.node AS host,
    p.pod AS "k8s.pod.name",
    p.service AS "k8s.service",
    p."count",
    p.anomalies,
    p.rule,
    r.risk_score,
    replace(r.risk_message, '$host$', p.node) AS risk_message,
    r.mitre_attack_id
FROM (
    SELECT
        rule,
        cluster,
        node,
        pod,
        service,
        count(*) AS "count",
        array_agg(DISTINCT anomalies ORDER BY anomalies) AS anomalies
    FROM anomalous_buckets
    GROUP BY rule, cluster, node, pod, service
    HAVING count(*) > 5
) AS p
JOIN rules AS r ON p.rule = r.rule;
