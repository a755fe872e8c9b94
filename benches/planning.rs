//! Criterion benches of hour-prefix planning on a 30-day store (720 hour partitions): listing a
//! window's exact hour prefixes vs listing the whole store, and building a session and planning
//! the findings for the last hour vs for the whole store.
//!
//! Run: `cargo bench --bench planning` (add `-- --quick` for a short run).

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use iodrift::generate::{self, Spec};
use iodrift::{Location, S3Options, SessionBuilder, Store, Window};

const HOURS: u32 = 720;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("store");
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let spec = Spec {
        clusters: 1,
        services: 1,
        replicas: 1,
        start,
        hours: HOURS,
        seed: 1,
    };
    let location = Location::parse(root.to_str().expect("a UTF-8 path"), &S3Options::default())
        .expect("a store location");
    let handle = runtime.handle().clone();
    std::thread::scope(|scope| {
        scope
            .spawn(|| generate::generate(&spec, &location, &handle))
            .join()
            .expect("generator thread")
    })
    .expect("generate the store");
    let store = Store::open(location).expect("open the store");
    let end = start + Duration::hours(i64::from(HOURS));
    let last_hour = Window {
        earliest: end - Duration::hours(1),
        latest: end,
    };
    let everything = Window {
        earliest: start,
        latest: end,
    };

    let mut listing = c.benchmark_group("list_hours_of_720h_store");
    listing.bench_function("whole store (peer)", |b| {
        b.to_async(&runtime)
            .iter(|| async { store.scan_all().await.expect("list") })
    });
    listing.bench_function("last hour's prefix", |b| {
        b.to_async(&runtime)
            .iter(|| async { store.scan_window(&last_hour).await.expect("list") })
    });
    listing.finish();

    let plan = |window: Window| {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move {
                let session = SessionBuilder::new(store)
                    .window(window)
                    .build()
                    .await
                    .expect("session");
                session
                    .ctx
                    .table("findings")
                    .await
                    .expect("findings")
                    .create_physical_plan()
                    .await
                    .expect("plan")
            }
        }
    };
    let mut planning = c.benchmark_group("session_and_plan_findings_720h_store");
    planning.sample_size(10);
    planning.bench_function("whole store (peer)", |b| {
        b.to_async(&runtime).iter(plan(everything))
    });
    planning.bench_function("last hour", |b| b.to_async(&runtime).iter(plan(last_hour)));
    planning.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
