//! The schedule: the rules' jobs (ESCU's: weekly baselines, hourly detections) run unattended
//! over a store, every due window once and in time order, by one runner at a time.

pub mod config;
pub mod lease;
pub mod state;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;

pub use config::{Config, Job, Task};
pub use lease::Lease;
pub use state::JobState;

use crate::detect::Detection;
use crate::error::{Error, Result};
use crate::output::Format;
use crate::rule::Rule;
use crate::store::Store;
use crate::time::{Window, rfc3339};

/// What one run wrote for one rule.
#[derive(Debug, Clone)]
pub struct Output {
    /// The rule; for a baseline, the rule and its table.
    pub rule: String,
    /// Lookup rows (keys) of a baseline, findings of a detection, hours computed by a rollup.
    pub rows: usize,
    pub object: String,
}

/// One completed run of a job.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: String,
    pub time: DateTime<Utc>,
    pub window: Window,
    pub seconds: f64,
    pub outputs: Vec<Output>,
}

/// What a pass over the due runs did: the runs completed, and the jobs stopped by an error
/// (their later runs wait for the next pass).
#[derive(Debug, Default)]
pub struct Pass {
    pub runs: Vec<Run>,
    pub failed: Vec<(String, DateTime<Utc>, Error)>,
}

/// Runs every job's due times up to `now`, all jobs together in time order (baselines first
/// at equal times). Each run's state is committed after its outputs, while `lease` holds.
pub async fn run_due(config: &Config, now: DateTime<Utc>, lease: &Lease) -> Result<Pass> {
    let mut due = Vec::new();
    for (index, job) in config.jobs.iter().enumerate() {
        let last = JobState::read(&config.store, &job.name).await?;
        for time in job.due(last.map(|s| s.last_time), now) {
            due.push((time, index));
        }
    }
    due.sort();
    tracing::info!(
        config = %config.path.display(),
        now = %rfc3339(now),
        due = due.len(),
        "pass started"
    );
    let mut pass = Pass::default();
    for (time, index) in due {
        let job = &config.jobs[index];
        if pass.failed.iter().any(|(name, _, _)| *name == job.name) {
            continue;
        }
        match run(config, job, time).await {
            Ok(run) => {
                lease.check().await?;
                JobState {
                    job: job.name.clone(),
                    last_time: time,
                    window_start: run.window.earliest,
                    window_end: run.window.latest,
                    finished_at: Utc::now(),
                    seconds: run.seconds,
                }
                .write(&config.store)
                .await?;
                tracing::info!(
                    job = job.name.as_str(),
                    time = %rfc3339(time),
                    window_start = %rfc3339(run.window.earliest),
                    window_end = %rfc3339(run.window.latest),
                    seconds = run.seconds,
                    rows = run.outputs.iter().map(|o| o.rows).sum::<usize>(),
                    "run completed"
                );
                pass.runs.push(run);
            }
            Err(error) => {
                tracing::error!(job = job.name.as_str(), time = %rfc3339(time), %error, "run failed; the job's later times wait for the next pass");
                pass.failed.push((job.name.clone(), time, error));
            }
        }
    }
    Ok(pass)
}

/// One run of `job` at `time`.
async fn run(config: &Config, job: &Job, time: DateTime<Utc>) -> Result<Run> {
    let started = Instant::now();
    let window = job.window(time)?;
    let store = Store::open(config.store.clone())?;
    let outputs = match &job.task {
        Task::Rollup => rollup(config, &job.rules, store, window).await?,
        Task::Baseline { full } => baseline(config, &job.rules, store, window, *full).await?,
        Task::Detect { filter, format } => {
            detect(config, job, store, window, filter.as_deref(), *format).await?
        }
    };
    Ok(Run {
        job: job.name.clone(),
        time,
        window,
        seconds: started.elapsed().as_secs_f64(),
        outputs,
    })
}

/// Stores the window's missing rollups: one output per rule, its rows the hours computed.
async fn rollup(
    config: &Config,
    rules: &[Rule],
    store: Store,
    window: Window,
) -> Result<Vec<Output>> {
    let object = store.place().display_at(crate::rollup::ROLLUP_DIR);
    let summary =
        crate::baseline::store_rollups(&store, &window, rules, &config.engine, Utc::now()).await?;
    tracing::info!(
        reused_hours = summary.reused,
        rebuilt_hours = summary.rebuilt(),
        rebuilt_because = summary.reasons(),
        %object,
        "hourly rollups stored"
    );
    Ok(rules
        .iter()
        .map(|rule| Output {
            rule: rule.name.clone(),
            rows: summary.rebuilt(),
            object: object.clone(),
        })
        .collect())
}

async fn baseline(
    config: &Config,
    rules: &[Rule],
    store: Store,
    window: Window,
    full: bool,
) -> Result<Vec<Output>> {
    let (baselines, source) =
        crate::baseline::compute_over(store, window, rules, full, &config.engine).await?;
    if let crate::baseline::Source::Rollups(summary) = source {
        tracing::info!(
            reused_hours = summary.reused,
            rebuilt_hours = summary.rebuilt(),
            rebuilt_because = summary.reasons(),
            "hourly rollups merged"
        );
    }
    let mut outputs = Vec::new();
    for baseline in baselines {
        let written = baseline.write(&config.baselines).await?;
        let object = written.into_iter().next().unwrap_or_default();
        tracing::info!(
            rule = baseline.table.rule.as_str(),
            table = baseline.table.name.as_str(),
            keys = baseline.len(),
            %object,
            "baseline written"
        );
        outputs.push(Output {
            rule: baseline.table.rule.clone(),
            rows: baseline.len(),
            object,
        });
    }
    Ok(outputs)
}

/// Writes each rule's findings over the window to its object under `findings`, and with
/// `[security_lake]` all of them as one custom-source object.
async fn detect(
    config: &Config,
    job: &Job,
    store: Store,
    window: Window,
    filter: Option<&str>,
    format: Format,
) -> Result<Vec<Output>> {
    let rules = &job.rules;
    let detection = Detection::open(
        store,
        window,
        config.baselines.clone(),
        rules,
        &config.engine,
    )
    .await?;
    let session = detection.session();
    let files = session.scan.files().count();
    let store_rows: usize = session
        .scan
        .files()
        .filter_map(|file| file.statistics.as_ref()?.num_rows.get_value().copied())
        .sum();
    let mut found = Vec::with_capacity(rules.len());
    for rule in rules {
        found.push(
            detection
                .findings(std::slice::from_ref(rule), filter)
                .await?,
        );
    }
    // Every rule's OCSF events at once: the findings' pods are read from the window once.
    let events = if format == Format::Ocsf || config.security_lake.is_some() {
        let mut findings = Vec::new();
        for batches in &found {
            findings.extend(crate::finding::from_batches(batches)?);
        }
        crate::ocsf::events(session, rules, &findings).await?
    } else {
        Vec::new()
    };
    let mut outputs = Vec::new();
    let mut first_event = 0;
    for (rule, findings) in rules.iter().zip(&found) {
        let rows: usize = findings.iter().map(RecordBatch::num_rows).sum();
        let relative = findings_object(rule, &window, format);
        let bytes = match format {
            Format::Ocsf => {
                let mut bytes = Vec::new();
                crate::ocsf::write(&mut bytes, &events[first_event..first_event + rows])?;
                bytes
            }
            format => {
                detection
                    .render(std::slice::from_ref(rule), findings, format)
                    .await?
            }
        };
        first_event += rows;
        config
            .findings
            .write(&relative, |file| file.write_all(&bytes))
            .await?;
        let object = config.findings.display_at(&relative);
        tracing::info!(
            rule = rule.name.as_str(),
            findings = rows,
            store_files = files,
            store_rows,
            %object,
            "findings written"
        );
        outputs.push(Output {
            rule: rule.name.clone(),
            rows,
            object,
        });
    }
    if let Some(lake) = &config.security_lake {
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        let name = format!(
            "{}_{}_{}",
            job.name,
            stamp(window.earliest),
            stamp(window.latest)
        );
        if let Some(object) = lake.write(&events, window.latest, &name).await? {
            tracing::info!(findings = events.len(), %object, "Security Lake object written");
            outputs.push(Output {
                rule: "security_lake".into(),
                rows: events.len(),
                object,
            });
        }
    }
    Ok(outputs)
}

/// The object of `rule`'s findings over `window`, below the findings location: the same for
/// every run of that window, so a rerun replaces it.
pub fn findings_object(rule: &Rule, window: &Window, format: Format) -> String {
    let extension = match format {
        Format::Table => "txt",
        Format::Csv => "csv",
        Format::Json => "json",
        Format::Ndjson => "ndjson",
        Format::Ocsf => "ocsf.json",
    };
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "{}/dt={}/{}_{}.{extension}",
        rule.name,
        window.earliest.format("%Y-%m-%d"),
        stamp(window.earliest),
        stamp(window.latest)
    )
}

/// Runs the schedule until SIGINT or SIGTERM: waits for the lease (a second service stands by
/// until the first stops), then runs each pass at the jobs' next time. A failed run is retried
/// at the next pass, a minute later at most.
pub async fn serve(config: &Config) -> Result<()> {
    let mut stop = Stop::on_signals();
    let owner = lease::owner();
    tracing::info!(%owner, store = config.store.as_str(), jobs = config.jobs.len(), "schedule started");
    let lease = loop {
        match Lease::acquire(&config.store, &owner, config.lease).await {
            Ok(lease) => break lease,
            Err(Error::LeaseHeld { owner, until, .. }) => {
                tracing::info!(holder = %owner, until = %rfc3339(until), "standing by: another runner holds the store");
                let wait =
                    (until - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
                if stop.sleep(wait).await {
                    return Ok(());
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot claim the store; trying again in 30 s");
                if stop.sleep(Duration::from_secs(30)).await {
                    return Ok(());
                }
            }
        }
    };
    tracing::info!(%owner, "lease acquired");
    loop {
        let now = Utc::now();
        let pass = tokio::select! {
            pass = run_due(config, now, &lease) => pass,
            _ = stop.requested() => break,
        };
        let retry = match pass {
            Ok(pass) => !pass.failed.is_empty(),
            Err(error @ Error::LeaseLost { .. }) => return Err(error),
            Err(error) => {
                tracing::error!(%error, "pass failed");
                true
            }
        };
        let next = config.jobs.iter().filter_map(|job| job.next(now)).min();
        let mut wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(Duration::from_secs(3600));
        if retry {
            wait = wait.min(Duration::from_secs(60));
        }
        if let Some(next) = next {
            tracing::info!(next = %rfc3339(next), "waiting for the next time");
        }
        if stop.sleep(wait).await {
            break;
        }
    }
    tracing::info!("stopping: releasing the lease");
    lease.release().await
}

/// Whether SIGINT or SIGTERM came, from the moment the service started.
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    fn on_signals() -> Stop {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            tracing::info!("stop signal received");
            let _ = sender.send(true);
        });
        Stop(receiver)
    }

    async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `wait`; `true` when a stop came first.
    async fn sleep(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.requested() => true,
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
