//! The `iodrift` command: parse flags → build session → plan SQL → write output.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, ValueEnum};
use datafusion::arrow::array::RecordBatch;

use iodrift::cli::{
    BallistaCommand, BaselineArgs, Cli, Command, CompactArgs, DemoArgs, DetectArgs, EvalArgs,
    GenerateArgs, IngestArgs, LogFormat, RulesArg, RunDueArgs, SqlArgs,
};
use iodrift::detect::Detection;
use iodrift::error::{Error, Result};
use iodrift::generate::{self, Spec};
use iodrift::ingest;
use iodrift::location::{Location, S3Options};
use iodrift::output::{Format, Stdout, write_batches};
use iodrift::repl::Repl;
use iodrift::rule::{Job, Rule, Rules, shared_window};
use iodrift::schedule::{Config, Lease, lease};
use iodrift::session::{Engine, SessionBuilder};
use iodrift::store::Store;
use iodrift::time::{Window, resolve, resolve_now, rfc3339};

/// DataFusion's own CLI makes the same choice: far fewer page faults than glibc's allocator on
/// the large, short-lived buffers of hash tables and Parquet pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    init_logs(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("iodrift: error: {error}");
            match error {
                // EX_TEMPFAIL: cron's next run will find the store free.
                Error::LeaseHeld { .. } => 75,
                _ => 1,
            }
        }
    };
    exit_now(code)
}

/// Ends the process once its output is flushed, without tearing down the async runtime or the
/// allocator: everything the command wrote is already whole (written to a temporary name, then
/// renamed), and mimalloc's destructor would otherwise hand its pages back to the kernel one by
/// one, which the kernel does at once anyway (about 50 ms after merging a week of rollups, a
/// few per cent of the command).
fn exit_now(code: u8) -> ExitCode {
    use std::io::Write;
    let flushed = std::io::stdout().flush().is_ok() && std::io::stderr().flush().is_ok();
    if !flushed {
        return ExitCode::from(code.max(1));
    }
    // SAFETY: _exit ends the process; no Rust code runs after it, so nothing observes the
    // skipped destructors.
    unsafe { libc::_exit(i32::from(code)) }
}

/// Turns off transparent huge pages for this process (as `MIMALLOC_ALLOW_THP=0` would): mimalloc
/// asks for them on its arenas, and the kernel then zeroes 2 MiB on the first touch of each, most
/// of it never used by the short-lived buffers of hash aggregations. Merging a week of drift's
/// rollups spent a third of its time in that zeroing (`clear_page_erms` under `perf`).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours; a failure
    // (an old kernel) leaves the default, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Warnings only for interactive commands; the schedule logs every run, with times, as text
/// or JSON lines. `IODRIFT_LOG` (e.g. `debug`, `iodrift=info`) overrides the level.
fn init_logs(command: &Command) {
    let (level, format) = match command {
        Command::Schedule(args) => ("info", Some(args.log_format)),
        Command::RunDue(args) => ("info", Some(args.schedule.log_format)),
        Command::Ballista(_) => ("info", Some(LogFormat::Text)),
        _ => ("warn", None),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IODRIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        None => logs.without_time().init(),
        Some(LogFormat::Text) => logs.init(),
        Some(LogFormat::Json) => logs.json().init(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let s3 = S3Options {
        endpoint: cli.s3.s3_endpoint,
    };
    let rules = &cli.rules;
    match cli.command {
        Command::Baseline(args) => baseline(args, rules, &s3).await,
        Command::Detect(args) => detect(args, rules, &s3).await,
        Command::Sql(args) => sql(args, rules, &s3).await,
        Command::Generate(args) => generate(args, &s3).await,
        Command::Demo(args) => demo(args, rules, &s3).await,
        Command::Eval(args) => eval(args, rules, &s3).await,
        Command::Ingest(args) => ingest(args, &s3).await,
        Command::Compact(args) => compact(args, &s3).await,
        Command::Schedule(args) => {
            let config = Config::load(&args.config, &s3, rules.rules_dir.as_deref())?;
            iodrift::schedule::serve(&config).await
        }
        Command::RunDue(args) => run_due(args, rules, &s3).await,
        Command::Ballista(command) => ballista(command, &s3).await,
    }
}

#[cfg(feature = "ballista")]
async fn ballista(command: BallistaCommand, s3: &S3Options) -> Result<()> {
    use iodrift::cluster::{ExecutorOptions, SchedulerOptions};
    match command {
        BallistaCommand::Scheduler(args) => {
            let options = SchedulerOptions {
                bind: args.bind,
                external_host: args.external_host,
                executor_timeout: args.executor_timeout,
            };
            iodrift::cluster::run_scheduler(options, s3).await
        }
        BallistaCommand::Executor(args) => {
            let options = ExecutorOptions {
                scheduler: args.scheduler,
                bind: args.bind,
                grpc_port: args.grpc_port,
                external_host: args.external_host,
                concurrent_tasks: args.concurrent_tasks,
                work_dir: args.work_dir,
                heartbeat_interval: args.heartbeat_interval,
                memory_limit: args.memory_limit,
            };
            iodrift::cluster::run_executor(options, s3).await
        }
    }
}

#[cfg(not(feature = "ballista"))]
async fn ballista(_: BallistaCommand, _: &S3Options) -> Result<()> {
    Err(Error::Usage(
        "this iodrift was built without the `ballista` feature".into(),
    ))
}

fn window(earliest: &str, latest: &str, now: Option<&str>) -> Result<Window> {
    Window::parse(earliest, latest, resolve_now(now)?)
}

/// The rules `--rule` chooses among the built-in ones and those of `--rules`.
fn chosen_rules(arg: &RulesArg, names: &[String]) -> Result<Vec<Rule>> {
    Rules::load(arg.rules_dir.as_deref())?
        .select(names)
        .map_err(|e| Error::Usage(format!("--rule: {e}")))
}

/// The window of `--earliest`/`--latest`, each defaulting to the rules' window for `job`.
fn rules_window(
    rules: &[Rule],
    job: Job,
    earliest: Option<&str>,
    latest: Option<&str>,
    now: Option<&str>,
) -> Result<Window> {
    let (default_earliest, default_latest) = match (earliest, latest) {
        (Some(_), Some(_)) => (String::new(), String::new()),
        _ => shared_window(rules, job)
            .map_err(|e| Error::Usage(format!("{e}: give --earliest and --latest")))?,
    };
    window(
        earliest.unwrap_or(&default_earliest),
        latest.unwrap_or(&default_latest),
        now,
    )
}

/// The rules grouped by the window their baselines cover: `--earliest`/`--latest` where given,
/// each rule's own default otherwise (drift's 14 days to today, ESCU's 30 days to yesterday).
fn baseline_windows(
    rules: &[Rule],
    earliest: Option<&str>,
    latest: Option<&str>,
    now: Option<&str>,
) -> Result<Vec<(Window, Vec<Rule>)>> {
    let now = resolve_now(now)?;
    let mut groups: Vec<(Window, Vec<Rule>)> = Vec::new();
    for rule in rules {
        let defaults = &rule.schedule.baseline;
        let window = Window::parse(
            earliest.unwrap_or(&defaults.earliest),
            latest.unwrap_or(&defaults.latest),
            now,
        )?;
        match groups.iter_mut().find(|(w, _)| *w == window) {
            Some((_, group)) => group.push(rule.clone()),
            None => groups.push((window, vec![rule.clone()])),
        }
    }
    Ok(groups)
}

async fn baseline(args: BaselineArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let rules = chosen_rules(rules, &args.rule)?;
    let windows = baseline_windows(
        &rules,
        args.earliest.as_deref(),
        args.latest.as_deref(),
        args.now.now.as_deref(),
    )?;
    let out = Location::parse(&args.out, s3)?;
    let engine = args.engine.engine();
    for (window, rules) in windows {
        let store = Store::open(Location::parse(&args.store, s3)?)?;
        write_baselines(store, window, &rules, args.full, &engine, &out).await?;
    }
    Ok(())
}

/// Runs the baseline operation and writes its lookups to `out`, saying what it read and wrote.
async fn write_baselines(
    store: Store,
    window: Window,
    rules: &[Rule],
    full: bool,
    engine: &Engine,
    out: &Location,
) -> Result<()> {
    let (baselines, source) =
        iodrift::baseline::compute_over(store, window, rules, full, engine).await?;
    if let iodrift::baseline::Source::Rollups(summary) = source {
        let why = match summary.reasons() {
            reasons if reasons.is_empty() => String::new(),
            reasons => format!(" ({reasons})"),
        };
        eprintln!(
            "hourly rollups: {} hours merged from stored rollups, {} read from raw rows{why}",
            summary.reused,
            summary.rebuilt()
        );
    }
    for baseline in baselines {
        for path in baseline.write(out).await? {
            println!("{}: {} keys -> {path}", baseline.table.name, baseline.len());
        }
    }
    Ok(())
}

async fn detect(args: DetectArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let rules = chosen_rules(rules, &args.rule)?;
    let window = rules_window(
        &rules,
        Job::Detect,
        args.earliest.as_deref(),
        args.latest.as_deref(),
        args.now.now.as_deref(),
    )?;
    let output = args
        .output
        .as_deref()
        .map(|o| Location::parse(o, s3))
        .transpose()?;
    let detection = Detection::open(
        Store::open(Location::parse(&args.store, s3)?)?,
        window,
        Location::parse(&args.baselines, s3)?,
        &rules,
        &args.engine.engine(),
    )
    .await?;
    let findings = detection.findings(&rules, args.filter.as_deref()).await?;
    let bytes = detection.render(&rules, &findings, args.format).await?;
    write_output(&bytes, output.as_ref()).await?;
    let count: usize = findings.iter().map(RecordBatch::num_rows).sum();
    eprintln!(
        "{count} findings from {} over [{}, {})",
        rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        rfc3339(window.earliest),
        rfc3339(window.latest)
    );
    for (rule, unscored) in detection.unscored(&rules).await? {
        if unscored > 0 {
            eprintln!("{rule}: {unscored} workloads with too little history, not scored");
        }
    }
    Ok(())
}

/// Writes `bytes` to `output` (whole or not at all), or to standard output.
async fn write_output(bytes: &[u8], output: Option<&Location>) -> Result<()> {
    match output {
        Some(output) => output.write("", |file| file.write_all(bytes)).await,
        None => {
            let mut stdout = Stdout::lock();
            stdout
                .write_all(bytes)
                .map_err(Error::io("standard output"))?;
            stdout.flush().map_err(Error::io("standard output"))
        }
    }
}

async fn sql(args: SqlArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let mut builder = SessionBuilder::new(Store::open(Location::parse(&args.store, s3)?)?)
        .rules(&Rules::load(rules.rules_dir.as_deref())?)
        .engine(&args.engine.engine());
    if let (Some(earliest), Some(latest)) = (&args.earliest, &args.latest) {
        builder = builder.window(window(earliest, latest, args.now.now.as_deref())?);
    }
    if let Some(dir) = &args.baselines {
        builder = builder.baselines(Location::parse(dir, s3)?, &[]);
    }
    let session = builder.build().await?;
    session.warn_about_empty_hours();
    let mut repl = Repl::new(session, args.format);
    for command in &args.commands {
        repl.run(command).await?;
    }
    if let Some(file) = &args.file {
        repl.run_file(file).await?;
    }
    if args.commands.is_empty() && args.file.is_none() {
        repl.interactive().await?;
    }
    Ok(())
}

async fn generate(args: GenerateArgs, s3: &S3Options) -> Result<()> {
    let spec = Spec {
        clusters: args.clusters,
        services: args.services,
        replicas: args.replicas,
        start: resolve(&args.start, Utc::now(), "--start")?,
        hours: args.hours,
        seed: args.seed,
    };
    generate_store(spec, Location::parse(&args.out, s3)?).await?;
    Ok(())
}

/// Runs the generator and says what it wrote.
async fn generate_store(spec: Spec, out: Location) -> Result<generate::Summary> {
    let started = std::time::Instant::now();
    let summary = generate::run(spec, out.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {} rows ({} pods, {} hours, {} scenarios) into {} in {seconds:.1} s ({:.1} M rows/s); labels: {}",
        summary.rows,
        summary.pods,
        summary.files,
        summary.labels.scenarios.len(),
        out.as_str(),
        summary.rows as f64 / seconds / 1e6,
        summary.labels_path
    );
    Ok(summary)
}

async fn ingest(args: IngestArgs, s3: &S3Options) -> Result<()> {
    let now = Utc::now();
    let needs_cluster = matches!(
        args.format,
        ingest::Format::KubeletSummary | ingest::Format::Prometheus
    );
    if needs_cluster && args.cluster.is_none() {
        let format = args.format.to_possible_value().expect("no skipped formats");
        return Err(Error::Usage(format!(
            "--format {} carries no cluster name: give --cluster",
            format.get_name()
        )));
    }
    let request = ingest::Request {
        store: Location::parse(&args.store, s3)?,
        format: args.format,
        context: ingest::Context {
            cluster: args.cluster,
            node: args.node,
            time: args.time.map(|t| resolve(&t, now, "--time")).transpose()?,
        },
        inputs: args.inputs,
        now,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let started = std::time::Instant::now();
    let report = ingest::ingest(&request, s3).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingested {} inputs ({} skipped as already ingested, {:.1} MB in {seconds:.2} s): {} points, {} rows written in {} files, {} rejected, {} ignored (other metrics), {} first points of a series, {} counter resets, {} repeated points{}",
        report.inputs,
        report.skipped_inputs,
        report.bytes as f64 / 1e6,
        report.points,
        report.rows,
        report.files.len(),
        report.rejected,
        report.ignored,
        report.first_points,
        report.resets,
        report.duplicates,
        report
            .batch
            .as_deref()
            .map(|b| format!("; batch {b}"))
            .unwrap_or_default(),
    );
    match report.rejects_file {
        Some(file) => Err(Error::Rejected {
            count: report.rejected,
            file,
        }),
        None => Ok(()),
    }
}

async fn compact(args: CompactArgs, s3: &S3Options) -> Result<()> {
    let now = Utc::now();
    let before = resolve(args.before.as_deref().unwrap_or("@h"), now, "--before")?;
    let summary = iodrift::compact::compact(&Location::parse(&args.store, s3)?, before).await?;
    let mut line = format!(
        "compacted {} hours ({} files, {} rows)",
        summary.hours, summary.files_merged, summary.rows
    );
    if summary.leftovers_deleted > 0 {
        line += &format!(
            "; deleted {} files an interrupted compaction had replaced",
            summary.leftovers_deleted
        );
    }
    if summary.uncommitted_files > 0 {
        line += &format!(
            "; left alone {} files of ingest batches not yet committed",
            summary.uncommitted_files
        );
    }
    println!("{line}");
    Ok(())
}

/// One pass of the schedule under its own lease: prints a line per completed run.
async fn run_due(args: RunDueArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let config = Config::load(&args.schedule.config, s3, rules.rules_dir.as_deref())?;
    let now = resolve_now(args.now.as_deref())?;
    let lease = Lease::acquire(&config.store, &lease::owner(), config.lease).await?;
    let pass = iodrift::schedule::run_due(&config, now, &lease).await;
    lease.release().await?;
    let pass = pass?;
    for run in &pass.runs {
        let outputs: Vec<String> = run
            .outputs
            .iter()
            .map(|o| format!("{} {} -> {}", o.rule, o.rows, o.object))
            .collect();
        println!(
            "{} {} [{}, {}) {:.2} s: {}",
            run.job,
            rfc3339(run.time),
            rfc3339(run.window.earliest),
            rfc3339(run.window.latest),
            run.seconds,
            outputs.join(", ")
        );
    }
    if pass.runs.is_empty() && pass.failed.is_empty() {
        println!("nothing due by {}", rfc3339(now));
    }
    match pass.failed.into_iter().next() {
        None => Ok(()),
        Some((job, time, error)) => Err(Error::Usage(format!(
            "{job} run at {}: {error}; it runs again on the next pass",
            rfc3339(time)
        ))),
    }
}

/// The main job on an embedded default: a small cluster, every rule's baseline and detection.
async fn demo(args: DemoArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let store = args.dir.join("store");
    let baselines = args.dir.join("baselines");
    let findings_path = args.dir.join("findings.json");
    let place = |path: &std::path::Path| Location::parse(&path.display().to_string(), s3);
    let spec = Spec {
        clusters: 1,
        services: 12,
        replicas: 3,
        start: resolve("2026-03-01T00:00:00Z", Utc::now(), "--start")?,
        // Two days and two hours: the detection window falls after the last midnight, which is
        // where a daily baseline's history ends.
        hours: 50,
        seed: 1,
    };
    let generated = generate_store(spec, place(&store)?).await?;
    let now = rfc3339(generated.labels.end);
    let rules = chosen_rules(rules, &["all".to_string()])?;
    let engine = Engine::default();
    for (window, rules) in baseline_windows(&rules, None, None, Some(&now))? {
        write_baselines(
            Store::open(place(&store)?)?,
            window,
            &rules,
            false,
            &engine,
            &place(&baselines)?,
        )
        .await?;
    }
    let detection_window = rules_window(&rules, Job::Detect, None, None, Some(&now))?;
    let detection = Detection::open(
        Store::open(place(&store)?)?,
        detection_window,
        place(&baselines)?,
        &rules,
        &engine,
    )
    .await?;
    let findings = detection.findings(&rules, None).await?;
    let bytes = detection.render(&rules, &findings, Format::Json).await?;
    write_output(&bytes, Some(&place(&findings_path)?)).await?;
    eprintln!(
        "{} findings from {} over [{}, {})",
        findings.iter().map(RecordBatch::num_rows).sum::<usize>(),
        rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        rfc3339(detection_window.earliest),
        rfc3339(detection_window.latest)
    );
    let summary = findings
        .iter()
        .map(|batch| {
            let schema = batch.schema();
            let columns = [
                "rule",
                "k8s.cluster.name",
                "host",
                "k8s.pod.name",
                "k8s.service",
                "count",
                "risk_score",
            ]
            .map(|name| {
                schema
                    .index_of(name)
                    .expect("findings carry the output fields")
            });
            batch.project(&columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::query("demo summary")(e.into()))?;
    println!(
        "\nFindings of every rule over its default detection window (ESCU's -70m@m to -10m@m before {now}):"
    );
    write_batches(&mut Stdout::lock(), &summary, Format::Table)?;
    let found = iodrift::finding::collect(detection.session(), &rules, None).await?;
    println!(
        "\nScenarios injected into that window (labels), and the rules that reported the pod:"
    );
    let batch = scenarios_batch(&generated.labels, &detection_window, &rules, &found)?;
    write_batches(&mut Stdout::lock(), &[batch], Format::Table)?;
    println!(
        "\nstore:     {}\nlabels:    {}\nbaselines: {}\nfindings:  {} (with anomaly texts)",
        store.display(),
        generated.labels_path,
        baselines.display(),
        findings_path.display()
    );
    println!(
        "explore:   iodrift sql --store {} --baselines {}",
        store.display(),
        baselines.display()
    );
    Ok(())
}

/// The labels active in `window`, one row each, with what every rule made of the pod: `found`
/// (a finding on it), or nothing; then a row per rule counting its findings on pods that no
/// attack covers (false alerts).
fn scenarios_batch(
    labels: &generate::Labels,
    window: &Window,
    rules: &[Rule],
    findings: &[iodrift::finding::Finding],
) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use std::sync::Arc;
    let reported = |rule: &str, cluster: &str, pod: &str| {
        findings
            .iter()
            .any(|f| f.rule == rule && f.cluster == cluster && f.pod == pod)
    };
    let active: Vec<&generate::Label> = labels
        .scenarios
        .iter()
        .filter(|l| l.overlap(window) > chrono::Duration::zero())
        .filter(|l| l.scenario != generate::ScenarioKind::HeavyTail)
        .collect();
    let mut columns: Vec<(String, Vec<String>)> = vec![
        ("scenario".into(), vec![]),
        ("pod".into(), vec![]),
        ("kind".into(), vec![]),
    ];
    for rule in rules {
        columns.push((rule.name.clone(), vec![]));
    }
    for label in &active {
        let scenario = serde_json::to_value(label.scenario)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        columns[0].1.push(scenario);
        columns[1].1.push(label.pod.clone());
        let kind = if label.attack { "attack" } else { "benign" };
        columns[2].1.push(kind.into());
        for (i, rule) in rules.iter().enumerate() {
            let mark = if reported(&rule.name, &label.cluster, &label.pod) {
                "found"
            } else {
                ""
            };
            columns[3 + i].1.push(mark.into());
        }
    }
    let attacked = |f: &iodrift::finding::Finding| {
        active
            .iter()
            .any(|l| l.attack && l.cluster == f.cluster && l.pod == f.pod)
    };
    columns[0].1.push("(false alerts)".into());
    columns[1]
        .1
        .push("findings on pods without an attack".into());
    columns[2].1.push(String::new());
    for (i, rule) in rules.iter().enumerate() {
        let false_alerts = findings
            .iter()
            .filter(|f| f.rule == rule.name && !attacked(f))
            .count();
        columns[3 + i].1.push(false_alerts.to_string());
    }
    RecordBatch::try_from_iter(
        columns
            .into_iter()
            .map(|(name, values)| (name, Arc::new(StringArray::from(values)) as ArrayRef)),
    )
    .map_err(|e| Error::query("demo scenarios")(e.into()))
}

/// Replays the hourly schedule of the detections over a labelled store and prints the scores.
async fn eval(args: EvalArgs, rules: &RulesArg, s3: &S3Options) -> Result<()> {
    let labels = generate::Labels::read(&Location::parse(&args.labels, s3)?).await?;
    let store = Location::parse(&args.store, s3)?;
    let rules = chosen_rules(rules, &args.rule)?;
    let from = match &args.from {
        Some(t) => resolve(t, Utc::now(), "--from")?,
        None => iodrift::eval::default_test_start(&labels)
            .ok_or_else(|| Error::Usage(format!("labels {}: start out of range", args.labels)))?,
    };
    let to = match &args.to {
        Some(t) => resolve(t, Utc::now(), "--to")?,
        None => labels.end,
    };
    let computed = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let baselines = match &args.baselines {
        Some(dir) => Location::parse(dir, s3)?,
        None => {
            let first_day = Window::parse(&rfc3339(labels.start), &rfc3339(from), Utc::now())?;
            // From raw rows: the backtest writes no rollups into the store it scores.
            let (computed_baselines, _) = iodrift::baseline::compute_over(
                Store::open(store.clone())?,
                first_day,
                &rules,
                true,
                &args.engine.engine(),
            )
            .await?;
            let dir = Location::parse(&computed.path().display().to_string(), s3)?;
            for baseline in computed_baselines {
                baseline.write(&dir).await?;
            }
            eprintln!(
                "baselines computed over [{}, {})",
                rfc3339(labels.start),
                rfc3339(from)
            );
            dir
        }
    };
    let runs = iodrift::eval::schedule(from, to);
    eprintln!("{}", iodrift::eval::describe(&runs));
    let tally = iodrift::eval::backtest(
        &Store::open(store)?,
        &labels,
        &rules,
        &baselines,
        &runs,
        &args.engine.engine(),
        args.format == Format::Ocsf,
    )
    .await?;
    let test_days = (to - from).num_seconds() as f64 / 86_400.0;
    let batch = scores_batch(&tally.scores(&labels, test_days))?;
    if args.format == Format::Ocsf {
        // The findings go to standard output, for a SIEM; the scores to the terminal.
        let mut stdout = Stdout::lock();
        iodrift::ocsf::write(&mut stdout, &tally.events)?;
        stdout.flush().map_err(Error::io("standard output"))?;
        let mut scores = Vec::new();
        write_batches(&mut scores, &[batch], Format::Table)?;
        eprint!("{}", String::from_utf8_lossy(&scores));
        return Ok(());
    }
    write_batches(&mut Stdout::lock(), &[batch], args.format)
}

fn scores_batch(scores: &[iodrift::eval::Score]) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
    use iodrift::eval::Score;
    use std::sync::Arc;
    let text = |f: fn(&Score) -> &str| -> ArrayRef {
        Arc::new(scores.iter().map(|s| Some(f(s))).collect::<StringArray>())
    };
    let count = |f: fn(&Score) -> u64| -> ArrayRef {
        Arc::new(scores.iter().map(f).collect::<UInt64Array>())
    };
    let share = |f: fn(&Score) -> Option<f64>| -> ArrayRef {
        Arc::new(
            scores
                .iter()
                .map(|s| f(s).map(|v| (v * 1000.0).round() / 1000.0))
                .collect::<Float64Array>(),
        )
    };
    RecordBatch::try_from_iter([
        ("rule", text(|s| &s.rule)),
        ("scenario", text(|s| &s.scenario)),
        ("findings", count(|s| s.findings)),
        ("true_positives", count(|s| s.true_positives)),
        ("false_positives", count(|s| s.false_positives)),
        ("expected_windows", count(|s| s.expected_windows)),
        ("windows_found", count(|s| s.windows_found)),
        ("attacks", count(|s| s.attacks)),
        ("attacks_found", count(|s| s.attacks_found)),
        ("precision", share(|s| s.precision)),
        ("window_recall", share(|s| s.window_recall)),
        ("f1", share(|s| s.f1)),
        ("false_alerts_per_day", share(|s| s.false_alerts_per_day)),
    ])
    .map_err(|e| Error::query("eval scores")(e.into()))
}
