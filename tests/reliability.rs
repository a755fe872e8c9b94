//! The defects of issue 18, each reproduced as a user met it: compaction after an interrupted
//! compaction, times outside the supported range, rollups of other logic, `--s3-endpoint` for
//! buckets resolved on demand.

mod common;

use std::path::{Path, PathBuf};

use common::s3::{CREDENTIALS, S3Server};
use common::{iodrift, query, stdout_of};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

/// The sample store of `data/`, copied into a temporary directory.
fn sample_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store"),
        &store,
    );
    (dir, store)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn files_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Rewrites the one file of `hour` as two files holding its rows split at the middle.
fn split_hour(hour: &Path) -> Vec<String> {
    let [only] = files_of(hour).try_into().unwrap();
    let file = hour.join(&only);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let all = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
    let middle = all.num_rows() / 2;
    let halves = [
        ("a.parquet", all.slice(0, middle)),
        ("b.parquet", all.slice(middle, all.num_rows() - middle)),
    ];
    for (name, half) in &halves {
        let out = std::fs::File::create(hour.join(name)).unwrap();
        let mut writer = ArrowWriter::try_new(out, schema.clone(), None).unwrap();
        writer.write(half).unwrap();
        writer.close().unwrap();
    }
    std::fs::remove_file(file).unwrap();
    files_of(hour)
}

fn rows_of_hour_five(store: &Path) -> i64 {
    let rows = query(
        store,
        None,
        "SELECT count(*) AS n FROM metrics WHERE hour = TIMESTAMP '2026-03-01T05:00:00Z'",
    );
    rows[0]["n"].as_i64().unwrap()
}

fn compact(store: &Path) -> String {
    stdout_of(
        iodrift()
            .args(["compact", "--before", "2026-03-01T06:00:00Z", "--store"])
            .arg(store),
    )
}

#[test]
fn compaction_after_an_interrupted_compaction_counts_every_row_once() {
    let (_dir, store) = sample_store();
    let hour = store.join("dt=2026-03-01/hour=05");
    assert_eq!(rows_of_hour_five(&store), 24_109);
    let split = split_hour(&hour);
    assert_eq!(split, ["a.parquet", "b.parquet"]);
    let originals: Vec<Vec<u8>> = split
        .iter()
        .map(|name| std::fs::read(hour.join(name)).unwrap())
        .collect();

    let out = compact(&store);
    assert!(
        out.contains("compacted 1 hours (2 files, 24109 rows)"),
        "{out}"
    );
    // What a crash between writing the merged file and deleting the originals leaves.
    for (name, bytes) in split.iter().zip(&originals) {
        std::fs::write(hour.join(name), bytes).unwrap();
    }
    assert_eq!(rows_of_hour_five(&store), 24_109, "readers hide them");

    let out = compact(&store);
    assert!(
        out.contains("deleted 2 files an interrupted compaction had replaced"),
        "{out}"
    );
    assert_eq!(
        rows_of_hour_five(&store),
        24_109,
        "compaction hides them too"
    );
    let left = files_of(&hour);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("compacted-"), "{left:?}");

    // A third compaction finds nothing to do and changes nothing.
    let out = compact(&store);
    assert!(out.contains("compacted 0 hours"), "{out}");
    assert_eq!(files_of(&hour), left);
    assert_eq!(rows_of_hour_five(&store), 24_109);
}

#[test]
fn a_compaction_of_a_compacted_hour_keeps_what_the_first_replaced_hidden() {
    let (_dir, store) = sample_store();
    let hour = store.join("dt=2026-03-01/hour=05");
    let split = split_hour(&hour);
    let originals: Vec<Vec<u8>> = split
        .iter()
        .map(|name| std::fs::read(hour.join(name)).unwrap())
        .collect();
    compact(&store);
    // The leftovers of an interrupted first compaction, and a late file of the same hour.
    for (name, bytes) in split.iter().zip(&originals) {
        std::fs::write(hour.join(name), bytes).unwrap();
    }
    std::fs::write(hour.join("late.parquet"), &originals[0]).unwrap();
    let expected = 24_109 + rows_in(&hour.join("late.parquet"));
    assert_eq!(rows_of_hour_five(&store), expected);
    let out = compact(&store);
    assert!(out.contains("compacted 1 hours (2 files"), "{out}");
    assert_eq!(rows_of_hour_five(&store), expected);
    assert_eq!(files_of(&hour).len(), 1, "{:?}", files_of(&hour));
}

fn rows_in(file: &Path) -> i64 {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows()
}

/// `detect` over the sample data at `--now now`: exit status and standard error.
fn detect_at(now: &str) -> (std::process::ExitStatus, String) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let output = iodrift()
        .args(["detect", "--now", now, "--store"])
        .arg(data.join("store"))
        .arg("--baselines")
        .arg(data.join("baselines"))
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn times_outside_the_supported_range_are_one_line_naming_the_flag() {
    for now in [
        "2300-01-01T00:00:00Z",
        "99999999999",
        "1500-01-01T00:00:00Z",
    ] {
        let (status, stderr) = detect_at(now);
        assert_ne!(status.code(), Some(101), "{now}: {stderr}");
        assert!(!status.success(), "{now}: {stderr}");
        assert!(!stderr.contains("panicked"), "{now}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{now}: {stderr}");
        assert!(stderr.contains("--now"), "{now}: {stderr}");
    }
    // At the edge of the range, a window with no data: no findings, no panic.
    let (status, stderr) = detect_at("2262-04-11T23:00:00Z");
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let store = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    for value in ["2300-01-01T00:00:00Z", "+999y"] {
        let output = iodrift()
            .args(["compact", "--before", value, "--store"])
            .arg(&store)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && output.status.code() != Some(101));
        assert!(stderr.contains("--before"), "{stderr}");
    }
}

/// Rewrites the rollup file at `path` with every mean doubled and its footer's `computed_by`
/// replaced by `computed_by`: a rollup an older iodrift would have left.
fn forge_rollup(path: &Path, computed_by: &str) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let mut footer: Vec<KeyValue> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| kv.key != "iodrift.rollup.computed_by" && kv.key != "ARROW:schema")
        .collect();
    footer.push(KeyValue::new(
        "iodrift.rollup.computed_by".into(),
        computed_by.to_string(),
    ));
    let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let doubled: Vec<_> = batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| {
                    if field.name().starts_with("mean_") {
                        datafusion::arrow::compute::kernels::numeric::mul(
                            column,
                            &datafusion::arrow::array::Float64Array::new_scalar(2.0),
                        )
                        .unwrap()
                    } else {
                        column.clone()
                    }
                })
                .collect();
            datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(footer))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema.clone(),
        Some(properties),
    )
    .unwrap();
    for batch in &doubled {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
}

fn baseline(store: &Path, out: &Path) -> String {
    let mut command = iodrift();
    command
        .args(["baseline", "--earliest", "2026-03-01T00:00:00Z"])
        .args([
            "--latest",
            "2026-03-02T00:00:00Z",
            "--now",
            "2026-03-02T02:00:00Z",
        ])
        .arg("--store")
        .arg(store)
        .arg("--out")
        .arg(out);
    let output = command.assert().success().get_output().clone();
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn rollups_computed_by_other_logic_are_rebuilt_and_counted() {
    let (dir, store) = sample_store();
    // Merged rollups equal a full recomputation within ulps (tests/rollups.rs), and each other
    // to the byte.
    let first = dir.path().join("first");
    let log = baseline(&store, &first);
    assert!(
        log.contains("0 hours merged from stored rollups, 24 read"),
        "{log}"
    );
    assert!(log.contains("24 without a rollup yet"), "{log}");

    // Two hours' rollups as an older iodrift (other SQL, functions or layout) computed them.
    for rule in [
        "k8s_container_network_io_baseline",
        "k8s_container_network_io_ratio_baseline",
    ] {
        for hour in ["03", "17"] {
            let path = store.join(format!("_rollups/{rule}/dt=2026-03-01/hour={hour}.parquet"));
            forge_rollup(&path, "an-older-iodrift");
        }
    }
    let second = dir.path().join("second");
    let log = baseline(&store, &second);
    assert!(
        log.contains("22 hours merged from stored rollups, 2 read"),
        "{log}"
    );
    assert!(
        log.contains("2 computed by another version of the rules or functions"),
        "{log}"
    );
    common::assert_same_lookups(&second, &first);

    // Once rebuilt, they are current again.
    let third = dir.path().join("third");
    let log = baseline(&store, &third);
    assert!(
        log.contains("24 hours merged from stored rollups, 0 read"),
        "{log}"
    );
    common::assert_same_lookups(&third, &first);
}

#[test]
fn an_unreadable_rollup_is_computed_again() {
    let (dir, store) = sample_store();
    let first = dir.path().join("first");
    baseline(&store, &first);
    let path =
        store.join("_rollups/k8s_container_network_io_baseline/dt=2026-03-01/hour=04.parquet");
    std::fs::write(&path, b"not parquet").unwrap();
    let out = dir.path().join("second");
    let log = baseline(&store, &out);
    assert!(log.contains("1 with an unreadable rollup"), "{log}");
    assert!(log.contains("hour=04.parquet"), "{log}");
    common::assert_same_lookups(&out, &first);
}

#[test]
fn the_s3_endpoint_flag_reaches_buckets_resolved_on_demand() {
    let server = S3Server::start();
    server.create_bucket("lake");
    server.create_bucket("another-bucket");
    server.put(
        "another-bucket",
        "owners.csv",
        b"pod,owner\ncheckout-1,team-a\ncheckout-2,team-b\n",
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let sql = "CREATE EXTERNAL TABLE owners STORED AS CSV \
               LOCATION 's3://another-bucket/owners.csv' OPTIONS ('format.has_header' 'true'); \
               SELECT count(*) AS n FROM owners";
    let mut command = iodrift();
    command
        .envs(CREDENTIALS)
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .args(["--s3-endpoint", &server.endpoint()])
        .args(["sql", "--format", "csv", "--store"])
        .arg(data.join("store"))
        .args(["-c", sql]);
    let out = stdout_of(&mut command);
    assert_eq!(out.trim(), "n\n2", "{out}");
}

#[test]
fn generate_and_eval_refuse_sizes_and_times_they_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [("--services", "4000000000"), ("--hours", "4000000000")] {
        let output = iodrift()
            .args(["generate", flag, value, "--out"])
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag}: {stderr}");
        assert_ne!(output.status.code(), Some(101), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
    // A labels file whose times chrono holds but iodrift does not.
    let labels = dir.path().join("labels.json");
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store.labels.json"),
    )
    .unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&sample).unwrap();
    value["start"] = serde_json::Value::from("+262000-01-01T00:00:00Z");
    std::fs::write(&labels, value.to_string()).unwrap();
    let output = iodrift()
        .args(["eval", "--labels"])
        .arg(&labels)
        .arg("--store")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && output.status.code() != Some(101),
        "{stderr}"
    );
    assert!(stderr.contains("labels"), "{stderr}");
}

#[test]
fn a_gzip_bomb_is_an_error_naming_the_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bomb.json.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&input).unwrap(),
        flate2::Compression::fast(),
    );
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..=1024 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap();
    let output = iodrift()
        .args(["ingest", "--format", "otlp-json", "--store"])
        .arg(dir.path().join("store"))
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("bomb.json.gz"), "{stderr}");
    assert!(stderr.contains("decompresses to more than"), "{stderr}");
    assert!(!dir.path().join("store").join("_ingest").exists());
}
