//! Incremental baselines: merging the hours' stored rollups gives what a full rescan gives, byte
//! for byte (exact states merged), later runs read only the hours whose files changed, and
//! `--full` still rescans.

mod common;

use std::path::Path;

use common::{DAY_END, START, iodrift, point, write_parquet};

/// Rows of a lookup CSV: key, then the other cells.
fn lookup(dir: &Path, name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

const LOOKUPS: [&str; 2] = [
    "k8s_container_network_io_baseline.csv",
    "k8s_container_network_io_ratio_baseline.csv",
];

/// Same keys, counts and last_seen; statistics within 1e-9 relative; and in fact the same bytes.
fn assert_close(full: &Path, incremental: &Path) {
    for name in LOOKUPS {
        assert_eq!(
            std::fs::read_to_string(full.join(name)).unwrap(),
            std::fs::read_to_string(incremental.join(name)).unwrap(),
            "{name}: merged rollups give the full recomputation's bytes"
        );
        let (a, b) = (lookup(full, name), lookup(incremental, name));
        assert_eq!(a.len(), b.len(), "{name}");
        assert!(!a.is_empty(), "{name} has keys");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x[0], y[0], "{name}: keys");
            assert_eq!(x[5..], y[5..], "{name} {}: count, last_seen", x[0]);
            for column in 1..5 {
                match (x[column].parse::<f64>(), y[column].parse::<f64>()) {
                    (Ok(p), Ok(q)) => assert!(
                        (p - q).abs() <= 1e-9 * p.abs().max(q.abs()),
                        "{name} {} column {column}: {p} vs {q}",
                        x[0]
                    ),
                    _ => assert_eq!(x[column], y[column], "{name} {} column {column}", x[0]),
                }
            }
        }
    }
}

fn baseline(store: &Path, out: &Path, extra: &[&str]) -> String {
    let output = iodrift()
        .args(["baseline", "--earliest", START, "--latest", DAY_END])
        .args(extra)
        .arg("--store")
        .arg(store)
        .arg("--out")
        .arg(out)
        .assert()
        .success()
        .get_output()
        .clone();
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn merged_rollups_equal_a_full_rescan_and_only_changed_hours_are_read_again() {
    let generated = common::generate(3);
    let dir = generated.dir.path();
    let store = &generated.store;
    baseline(store, &dir.join("full"), &["--full"]);

    let first = baseline(store, &dir.join("first"), &[]);
    assert!(
        first.contains("0 hours merged from stored rollups, 24 read from raw rows"),
        "{first}"
    );
    assert_close(&dir.join("full"), &dir.join("first"));
    assert!(
        store
            .join("_rollups/k8s_container_network_io_baseline/dt=2026-03-01/hour=05.parquet")
            .exists()
    );

    let second = baseline(store, &dir.join("second"), &[]);
    assert!(
        second.contains("24 hours merged from stored rollups, 0 read from raw rows"),
        "{second}"
    );
    for name in LOOKUPS {
        assert_eq!(
            std::fs::read(dir.join("first").join(name)).unwrap(),
            std::fs::read(dir.join("second").join(name)).unwrap(),
            "{name}: rollups read back give the same lookup"
        );
    }

    // Late data lands in one hour: a new pod and more spans of the same service key.
    let hour = store.join("dt=2026-03-01/hour=07");
    write_parquet(
        &hour.join("late.parquet"),
        &[
            &point(
                "2026-03-01T07:10:01Z",
                "late-pod-7d4b9c8f6d-x2x2x",
                "receive",
                5e6,
            ),
            &point(
                "2026-03-01T07:10:02Z",
                "late-pod-7d4b9c8f6d-x2x2x",
                "transmit",
                1e3,
            ),
            &point(
                "2026-03-01T07:20:03Z",
                "late-pod-7d4b9c8f6d-x2x2x",
                "receive",
                7e6,
            ),
            &point(
                "2026-03-01T07:20:04Z",
                "late-pod-7d4b9c8f6d-x2x2x",
                "transmit",
                2e3,
            ),
        ],
    );
    let third = baseline(store, &dir.join("third"), &[]);
    assert!(
        third.contains("23 hours merged from stored rollups, 1 read from raw rows"),
        "{third}"
    );
    baseline(store, &dir.join("full-again"), &["--full"]);
    assert_close(&dir.join("full-again"), &dir.join("third"));
    assert_ne!(
        lookup(&dir.join("full"), LOOKUPS[0]).len(),
        lookup(&dir.join("third"), LOOKUPS[0]).len(),
        "the late pod's key is in the lookup"
    );

    // A window that does not start on an hour is rescanned, as --full would.
    let partial = iodrift()
        .args([
            "baseline",
            "--earliest",
            "2026-03-01T00:30:00Z",
            "--latest",
            DAY_END,
        ])
        .arg("--store")
        .arg(store)
        .arg("--out")
        .arg(dir.join("partial"))
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        !String::from_utf8(partial.stderr)
            .unwrap()
            .contains("hourly rollups")
    );
}
