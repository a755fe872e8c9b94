//! Criterion benches of the UDFs through DataFusion SQL, each beside its built-in peer in the
//! same run: `k8s_service` vs `regexp_replace`, `exact_avg`/`exact_stddev_samp` vs `avg`/`stddev_samp`.
//!
//! Run: `cargo bench --bench udfs` (add `-- --quick` for a short run).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::arrow::array::{ArrayRef, DictionaryArray, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

const ROWS: usize = 1 << 20;

/// Pod names as a store holds them: ~600 pods, each repeated over many rows.
fn pods() -> Vec<String> {
    (0..ROWS)
        .map(|i| {
            let pod = i % 613;
            match pod % 4 {
                0 => format!("checkout-{:x}-{:05}", 0x5d8c9b7f6d_u64 + pod as u64, pod),
                1 => format!("fluent-bit-b{:04}", pod),
                2 => format!("postgres-{}", pod % 3),
                _ => format!("kube-proxy-gke-prod-default-pool-{pod:08x}-h5k7"),
            }
        })
        .collect()
}

fn context(runtime: &tokio::runtime::Runtime) -> SessionContext {
    let pods = pods();
    let plain: ArrayRef = Arc::new(StringArray::from_iter_values(&pods));
    let dictionary: ArrayRef = Arc::new(
        pods.iter()
            .map(String::as_str)
            .collect::<DictionaryArray<Int32Type>>(),
    );
    let values: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..ROWS).map(|i| ((i * 7919) % 100_003) as f64 * 1.37),
    ));
    let groups: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..ROWS).map(|i| (i % 5000) as f64),
    ));
    let batch = RecordBatch::try_from_iter([
        ("pod", plain),
        ("pod_dict", dictionary),
        ("value", values),
        ("grp", groups),
    ])
    .expect("bench batch");
    let chunks: Vec<RecordBatch> = (0..ROWS)
        .step_by(8192)
        .map(|start| batch.slice(start, 8192.min(ROWS - start)))
        .collect();
    let ctx = SessionContext::new();
    iodrift_udfs::register_all(&ctx);
    let table = MemTable::try_new(batch.schema(), vec![chunks]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("register");
    runtime.block_on(async {
        ctx.sql("SELECT 1").await.expect("warm up");
    });
    ctx
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ctx = context(&runtime);
    let run = |sql: &'static str| {
        let ctx = ctx.clone();
        move || {
            let ctx = ctx.clone();
            async move {
                ctx.sql(sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run")
            }
        }
    };

    let mut service = c.benchmark_group("service_name_1M_rows");
    for (name, sql) in [
        (
            "regexp_replace (peer)",
            r"SELECT count(DISTINCT regexp_replace(pod, '-\w{5}$|-[abcdef0-9]{8,10}-\w{5}$', '')) FROM t",
        ),
        (
            "k8s_service utf8",
            "SELECT count(DISTINCT k8s_service(pod)) FROM t",
        ),
        (
            "k8s_service dictionary",
            "SELECT count(DISTINCT k8s_service(pod_dict)) FROM t",
        ),
    ] {
        service.bench_function(name, |b| b.to_async(&runtime).iter(run(sql)));
    }
    service.finish();

    let mut text = c.benchmark_group("anomaly_text_1M_rows");
    text.bench_function("concat with round (peer)", |b| {
        b.to_async(&runtime).iter(run(
            "SELECT count(CASE WHEN value > 100.0 + 4 * 20.0 THEN 'v higher than average by ' || \
             CAST(round((value - 100.0) / 20.0, 2) AS VARCHAR) || ' Standard Deviations. v=' || \
             CAST(value AS VARCHAR) END) FROM t",
        ))
    });
    text.bench_function("escu_anomalies", |b| {
        b.to_async(&runtime).iter(run(
            "SELECT count(escu_anomalies('higher than average', 'v', value, 100.0, 20.0)) FROM t",
        ))
    });
    text.finish();

    let mut moments = c.benchmark_group("mean_stdev_5000_groups_1M_rows");
    moments.bench_function("avg, stddev_samp (peer)", |b| {
        b.to_async(&runtime).iter(run(
            "SELECT grp, avg(value), stddev_samp(value) FROM t GROUP BY grp",
        ))
    });
    moments.bench_function("exact_avg, exact_stddev_samp", |b| {
        b.to_async(&runtime).iter(run(
            "SELECT grp, exact_avg(value), exact_stddev_samp(value) FROM t GROUP BY grp",
        ))
    });
    moments.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
