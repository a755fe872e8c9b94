-- The hour-of-day slot of each pod and measure in the window, with the pod's workload, as
-- plain strings: the joins with the lookup then convert these few rows, not the lookup's many.
CREATE OR REPLACE VIEW slots AS
SELECT
    CAST(p.cluster AS VARCHAR) AS cluster,
    CAST(p.pod AS VARCHAR) AS pod,
    CAST(p.workload AS VARCHAR) AS workload,
    CAST(m.measure AS VARCHAR) AS measure,
    p.slot
FROM measures AS m
CROSS JOIN (SELECT DISTINCT cluster, pod, workload, slot FROM pod_levels) AS p;

-- Each pod's reference for a measure and slot, the first with enough history: the pod's own
-- history at that hour (a long-lived pod keeps its name and role: a primary is not its
-- replica), else its workload's at that hour (a pod a rollout, a drain or a scale-out created
-- minutes ago), else its workload's over all hours. Beside it, the band a bucket must leave to be
-- hot: the floor, spread_factor robust standard deviations, and the history's usual daily peak
-- (trough), in doublings; and the bytes a bucket must move. Its keys are dictionaries again, as
-- the window's buckets have them: the millions of buckets that join it are then not converted.
CREATE OR REPLACE VIEW expectations AS
SELECT
    arrow_cast(cluster, 'Dictionary(Int32, Utf8)') AS cluster,
    arrow_cast(pod, 'Dictionary(Int32, Utf8)') AS pod,
    arrow_cast(measure, 'Dictionary(Int32, Utf8)') AS measure,
    slot, reference, reference_slot, history, q25, q50, q75, peak, trough, band_up, band_down, min_bytes
FROM (
    SELECT
        w.cluster,
        w.pod,
        w.measure,
        w.slot,
        b.level AS reference,
        b.slot AS reference_slot,
        b.spans AS history,
        b.q25,
        b.q50,
        b.q75,
        b.peak,
        b.trough,
        greatest(p.floor_doublings, p.spread_factor * (b.q75 - b.q25) / 1.349, b.peak - b.q50) AS band_up,
        greatest(p.floor_doublings, p.spread_factor * (b.q75 - b.q25) / 1.349, b.q50 - b.trough) AS band_down,
        p.min_bytes,
        -- (by name among a pod's workloads, should the window give it two: one source naming
        -- its owner and another not)
        row_number() OVER (PARTITION BY w.cluster, w.pod, w.measure, w.slot ORDER BY w.preference, w.entity) AS choice
    FROM parameters AS p
    CROSS JOIN (
        SELECT
            cluster,
            pod,
            measure,
            slot,
            preference,
            CASE preference WHEN 1 THEN 'pod' ELSE 'workload' END AS level,
            CASE preference WHEN 1 THEN pod ELSE workload END AS entity,
            CASE preference WHEN 3 THEN -1 ELSE slot END AS wanted_slot
        -- 1: the pod at this hour, 2: its workload at this hour, 3: its workload at all hours.
        FROM (SELECT *, unnest([1, 2, 3]) AS preference FROM slots)
    ) AS w
    JOIN drift_baseline AS b
      ON b.cluster = w.cluster
     AND b.level = w.level
     AND b.entity = w.entity
     AND b.measure = w.measure
     AND b.slot = w.wanted_slot
    WHERE b.spans >= CASE w.preference WHEN 3 THEN p.min_spans ELSE p.min_slot_spans END
)
WHERE choice = 1;

-- The workloads in the window that have no reference for some pod: too little history to be
-- scored (no finding; `detect` counts them in its summary).
CREATE OR REPLACE VIEW unscored AS
SELECT DISTINCT s.cluster, s.workload
FROM slots AS s
WHERE NOT EXISTS (
    SELECT 1 FROM expectations AS r
    WHERE r.cluster = s.cluster AND r.pod = s.pod AND r.measure = s.measure AND r.slot = s.slot
);

-- Each pod's expectations of the three measures side by side, one row per pod and slot: the
-- window's buckets join them once, not once per measure.
CREATE OR REPLACE VIEW pod_expectations AS
SELECT
    cluster,
    pod,
    slot,
    max(CASE WHEN measure = 'outbound_network_io' THEN q50 END) AS outbound_expected,
    max(CASE WHEN measure = 'outbound_network_io' THEN band_up END) AS outbound_band_up,
    max(CASE WHEN measure = 'inbound_network_io' THEN q50 END) AS inbound_expected,
    max(CASE WHEN measure = 'inbound_network_io' THEN band_up END) AS inbound_band_up,
    max(CASE WHEN measure = 'outbound:inbound' THEN q50 END) AS balance_expected,
    max(CASE WHEN measure = 'outbound:inbound' THEN band_up END) AS balance_band_up,
    max(CASE WHEN measure = 'outbound:inbound' THEN band_down END) AS balance_band_down,
    max(min_bytes) AS min_bytes
FROM expectations
GROUP BY cluster, pod, slot;

-- Each bucket's excess over its expected level (the reference's median) for each measure, in
-- doublings (null where the pod has no reference for the measure), and whether it is hot for
-- some measure: beyond the band and moving the bytes a hot bucket must move. Volumes are hot
-- upwards only (a pod falling quiet is not an attack); the balance both ways.
CREATE OR REPLACE VIEW pod_excess AS
SELECT
    cluster,
    node,
    pod,
    workload,
    t,
    outbound_excess,
    inbound_excess,
    balance_excess,
    moves AND (outbound_excess > outbound_band_up
               OR inbound_excess > inbound_band_up
               OR balance_excess > balance_band_up
               OR -balance_excess > balance_band_down) AS hot
FROM (
    SELECT
        l.cluster,
        l.node,
        l.pod,
        l.workload,
        l.t,
        l.outbound_level - e.outbound_expected AS outbound_excess,
        l.inbound_level - e.inbound_expected AS inbound_excess,
        (l.outbound_level - l.inbound_level) - e.balance_expected AS balance_excess,
        l.bytes >= e.min_bytes AS moves,
        e.outbound_band_up,
        e.inbound_band_up,
        e.balance_band_up,
        e.balance_band_down
    FROM pod_levels AS l
    JOIN pod_expectations AS e
      ON e.cluster = l.cluster
     AND e.pod = l.pod
     AND e.slot = l.slot
);

-- The buckets hot against their history, each measure that is hot a row, with its excess
-- beside its reference and band. Only the few hot buckets become three measure rows.
CREATE OR REPLACE VIEW history_hot AS
SELECT *
FROM (
    SELECT
        l.cluster,
        l.node,
        l.pod,
        l.service,
        l.workload,
        l.bucket,
        l.t,
        m.measure,
        CASE m.measure
            WHEN 'outbound_network_io' THEN l.outbound_level
            WHEN 'inbound_network_io' THEN l.inbound_level
            ELSE l.outbound_level - l.inbound_level
        END AS level,
        CASE m.measure
            WHEN 'outbound_network_io' THEN l.outbound_network_io
            WHEN 'inbound_network_io' THEN l.inbound_network_io
            ELSE l."outbound:inbound"
        END AS observed,
        l.bytes,
        r.reference,
        r.reference_slot,
        r.history,
        r.q50 AS expected,
        CASE m.measure
            WHEN 'outbound_network_io' THEN x.outbound_excess
            WHEN 'inbound_network_io' THEN x.inbound_excess
            ELSE x.balance_excess
        END AS excess,
        r.band_up,
        r.band_down,
        l.bytes >= r.min_bytes AS moves
    FROM measures AS m
    CROSS JOIN (SELECT * FROM pod_excess WHERE hot) AS x
    JOIN pod_levels AS l
      ON l.cluster = x.cluster
     AND l.pod = x.pod
     AND l.node = x.node
     AND l.t = x.t
    JOIN expectations AS r
      ON r.cluster = x.cluster
     AND r.pod = x.pod
     AND r.measure = m.measure
     AND r.slot = l.slot
)
WHERE moves
  AND (excess > band_up OR (measure = 'outbound:inbound' AND -excess > band_down));

-- For each bucket hot against its history: the workload's other pods present in the same bucket
-- or the two before (scrapes are not aligned, so a sibling's span may sit in a neighbour), and
-- their excesses in that measure, sorted. Load that moves every replica (a surge, a scale-in, a
-- refresh) moves them too; an exfiltration leaves them behind.
CREATE OR REPLACE VIEW sibling_excess AS
SELECT
    cluster,
    pod,
    measure,
    t,
    -- (as strings: DataFusion counts distinct dictionary values with its slow generic set)
    count(DISTINCT CAST(sibling AS VARCHAR)) AS siblings,
    array_sort(array_agg(excess)) AS sibling_excesses
FROM (
    SELECT
        h.cluster,
        h.pod,
        h.measure,
        h.t,
        x.pod AS sibling,
        CASE h.measure
            WHEN 'outbound_network_io' THEN x.outbound_excess
            WHEN 'inbound_network_io' THEN x.inbound_excess
            ELSE x.balance_excess
        END AS excess
    FROM (SELECT *, unnest([t, t - 10, t - 20]) AS sibling_t FROM history_hot) AS h
    JOIN pod_excess AS x
      ON x.cluster = h.cluster
     AND x.workload = h.workload
     AND x.t = h.sibling_t
    WHERE x.pod <> h.pod
)
WHERE excess IS NOT NULL
GROUP BY cluster, pod, measure, t;

-- Hot buckets: beyond the band against the pod's history, and beyond it against its siblings
-- when it has any present (a single sibling counts). Upwards the siblings' lower median is the
-- reference, downwards their upper median: with two siblings, the one that moved less, so an
-- attack on one sibling never hides an attack on another.
CREATE OR REPLACE VIEW hot AS
SELECT
    h.*,
    coalesce(s.siblings, 0) AS siblings,
    CASE WHEN h.excess > 0
        THEN array_element(s.sibling_excesses, (CAST(array_length(s.sibling_excesses) AS BIGINT) + 1) / 2)
        ELSE array_element(s.sibling_excesses, CAST(array_length(s.sibling_excesses) AS BIGINT) / 2 + 1)
    END AS sibling_excess
FROM history_hot AS h
LEFT JOIN sibling_excess AS s
  ON s.cluster = h.cluster AND s.pod = h.pod AND s.measure = h.measure AND s.t = h.t
WHERE s.siblings IS NULL
   OR (h.excess > 0
       AND h.excess - array_element(s.sibling_excesses, (CAST(array_length(s.sibling_excesses) AS BIGINT) + 1) / 2) > h.band_up)
   OR (h.excess < 0
       AND array_element(s.sibling_excesses, CAST(array_length(s.sibling_excesses) AS BIGINT) / 2 + 1) - h.excess > h.band_down);

-- Persistence: a hot bucket counts when some 10-minute stretch (60 spans) around it holds
-- persistence_hot hot buckets of the same measure: a sustained exfiltration or flood, a beacon
-- every minute or so; never one burst shorter than a minute (at most 7 buckets).
CREATE OR REPLACE VIEW hot_counts AS
SELECT
    *,
    count(*) OVER (PARTITION BY cluster, pod, measure ORDER BY t
                   RANGE BETWEEN 590 PRECEDING AND CURRENT ROW) AS hot_before
FROM hot;

CREATE OR REPLACE VIEW persistent AS
SELECT h.*
FROM parameters AS p
CROSS JOIN (
    SELECT
        *,
        max(hot_before) OVER (PARTITION BY cluster, pod, measure ORDER BY t
                              RANGE BETWEEN CURRENT ROW AND 590 FOLLOWING) AS hot_around
    FROM hot_counts
) AS h
WHERE h.hot_around >= p.persistence_hot;

-- What an analyst needs to judge each measure that fired on a pod: observed and expected
-- values, the band, the score (excess over band), siblings, the baseline slot and its history,
-- and the first and last anomalous bucket.
CREATE OR REPLACE VIEW episodes AS
SELECT
    cluster,
    pod,
    measure,
    count(*) AS buckets,
    min(bucket) AS first_bucket,
    max(bucket) AS last_bucket,
    median(observed) AS observed,
    median(excess) AS excess,
    median(expected) AS expected,
    median(CASE WHEN excess > 0 THEN expected + band_up ELSE expected - band_down END) AS band_edge,
    median(excess / CASE WHEN excess > 0 THEN band_up ELSE band_down END) AS score,
    max(siblings) AS siblings,
    median(sibling_excess) AS sibling_excess,
    max(reference) AS reference,
    max(reference_slot) AS reference_slot,
    max(history) AS history
FROM persistent
GROUP BY cluster, pod, measure;

CREATE OR REPLACE VIEW anomalous_buckets AS
SELECT
    p.cluster,
    p.node,
    p.pod,
    p.service,
    p.bucket,
    concat(
        e.measure, ' ', CAST(round(power(2, e.excess), 2) AS VARCHAR), 'x expected',
        ' in ', CAST(e.buckets AS VARCHAR), ' buckets from ',
        to_char(e.first_bucket, '%Y-%m-%dT%H:%M:%SZ'), ' to ', to_char(e.last_bucket, '%Y-%m-%dT%H:%M:%SZ'),
        ': observed ', CAST(round(e.observed, 3) AS VARCHAR),
        ' against expected ', CAST(round(CASE WHEN e.measure = 'outbound:inbound' THEN power(2, e.expected) ELSE power(2, e.expected) - 1 END, 3) AS VARCHAR),
        ' (band edge ', CAST(round(CASE WHEN e.measure = 'outbound:inbound' THEN power(2, e.band_edge) ELSE power(2, e.band_edge) - 1 END, 3) AS VARCHAR), ')',
        ', score ', CAST(round(e.score, 2) AS VARCHAR),
        ', ', CAST(e.siblings AS VARCHAR), ' siblings',
        CASE WHEN e.siblings > 0 THEN concat(' at ', CAST(round(power(2, e.sibling_excess), 2) AS VARCHAR), 'x their expected') ELSE '' END,
        ', baseline ', e.reference,
        CASE WHEN e.reference_slot < 0 THEN ' over all hours' ELSE concat(' at ', CAST(e.reference_slot AS VARCHAR), ':00 UTC') END,
        ' with ', CAST(e.history AS VARCHAR), ' spans'
    ) AS anomalies
FROM persistent AS p
JOIN episodes AS e
  ON e.cluster = p.cluster AND e.pod = p.pod AND e.measure = p.measure;

-- Each finding's measures against their reference (the OCSF output's anomaly analyses), from
-- `episodes`, in the measure's own units: bytes per 10 s bucket, or the outbound:inbound ratio.
-- Volumes are judged upwards only; the balance has a lower edge when it fell.
CREATE OR REPLACE VIEW evidence AS
SELECT
    cluster,
    pod,
    measure,
    buckets,
    first_bucket,
    last_bucket,
    observed,
    CASE WHEN measure = 'outbound:inbound' THEN power(2, expected) ELSE power(2, expected) - 1 END AS expected,
    CASE WHEN excess < 0 THEN power(2, band_edge) END AS lower,
    CASE WHEN excess > 0 THEN
        CASE WHEN measure = 'outbound:inbound' THEN power(2, band_edge) ELSE power(2, band_edge) - 1 END
    END AS upper,
    concat(
        'drift_baseline ', reference,
        CASE WHEN reference_slot < 0 THEN ' over all hours' ELSE concat(' at ', CAST(reference_slot AS VARCHAR), ':00 UTC') END,
        ' with ', CAST(history AS VARCHAR), ' spans'
    ) AS reference
FROM episodes;
