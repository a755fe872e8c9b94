//! `iodrift.toml`: where the schedule reads and writes, which rules run, and each job's cron
//! expression and window (by default each rule's own, from its manifest). Errors name the file
//! and key.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::location::{Location, S3Options};
use crate::output::Format;
use crate::rule::{self, JobDefaults, Rule, Rules};
use crate::security_lake::CustomSource;
use crate::time::{Window, resolve};

/// The file as written; [`Config::load`] checks it and resolves its paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    store: String,
    baselines: String,
    findings: String,
    #[serde(default)]
    rules: Option<Vec<String>>,
    /// A rule folder, or a folder of them, beside the built-in rules.
    rules_dir: Option<String>,
    memory_limit: Option<String>,
    cluster: Option<String>,
    s3_endpoint: Option<String>,
    lease: Option<String>,
    #[serde(default)]
    rollup: JobTable,
    #[serde(default)]
    baseline: JobTable,
    #[serde(default)]
    detect: JobTable,
    security_lake: Option<SecurityLakeTable>,
}

/// `[security_lake]`: an Amazon Security Lake custom source that the detections also write to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityLakeTable {
    /// The source's location as Security Lake shows it: `s3://<bucket>/ext/<source>`.
    location: String,
    region: String,
    account_id: String,
}

/// `[rollup]`, `[baseline]` or `[detect]`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobTable {
    enabled: Option<bool>,
    cron: Option<String>,
    earliest: Option<String>,
    latest: Option<String>,
    start: Option<String>,
    /// `[baseline]` only.
    full: Option<bool>,
    /// `[detect]` only.
    filter: Option<String>,
    /// `[detect]` only.
    format: Option<String>,
}

impl JobTable {
    /// Whether the file sets any key of the table.
    fn is_set(&self) -> bool {
        self.enabled.is_some()
            || self.cron.is_some()
            || self.earliest.is_some()
            || self.latest.is_some()
            || self.start.is_some()
            || self.full.is_some()
            || self.filter.is_some()
            || self.format.is_some()
    }

    /// The table's cron and window, when it sets all three.
    fn defaults(&self) -> Option<JobDefaults> {
        Some(JobDefaults {
            cron: self.cron.clone()?,
            earliest: self.earliest.clone()?,
            latest: self.latest.clone()?,
        })
    }
}

/// What a job does at each of its times.
#[derive(Debug, Clone)]
pub enum Task {
    /// Stores the hourly rollups of the window's closed hours that the store lacks (or whose
    /// files or logic changed), for the rules' next baseline to merge.
    Rollup,
    /// Writes the lookups of the rules over the window to `baselines`.
    Baseline { full: bool },
    /// Writes each rule's findings over the window to one object under `findings`.
    Detect {
        filter: Option<String>,
        format: Format,
    },
}

/// One scheduled job: rules run together, at a cron expression's times (UTC), over a window
/// relative to each time.
#[derive(Debug, Clone)]
pub struct Job {
    /// `baseline` or `detect`; when the rules' schedules differ, one job per schedule, named
    /// after its rules (`detect-drift`).
    pub name: String,
    pub rules: Vec<Rule>,
    pub task: Task,
    pub cron: Cron,
    pub earliest: String,
    pub latest: String,
    /// The first time to run when the store holds no state for the job; without it a new job
    /// starts at its latest due time.
    pub start: Option<DateTime<Utc>>,
}

/// A checked `iodrift.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: Location,
    pub baselines: Location,
    pub findings: Location,
    /// The rules the jobs run.
    pub rules: Vec<Rule>,
    /// Where the jobs' queries run: `memory_limit`, and `cluster` (a Ballista scheduler).
    pub engine: crate::session::Engine,
    /// The Security Lake custom source every detection's findings also go to, as OCSF.
    pub security_lake: Option<CustomSource>,
    /// How long a runner's claim on the store lasts without renewal.
    pub lease: Duration,
    /// Enabled jobs, rollups first and baselines next: at equal times a baseline merges the
    /// fresh rollups and a detection reads the fresh baseline.
    pub jobs: Vec<Job>,
}

const DEFAULT_LEASE: Duration = Duration::from_secs(600);

impl Config {
    /// Reads and checks `path`. Relative paths are taken from the file's directory. `s3`
    /// applies unless the file names its own `s3_endpoint`; `rules_dir` (`--rules`) replaces
    /// the file's.
    pub fn load(path: &Path, s3: &S3Options, rules_dir: Option<&Path>) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Config::parse(&text, path, s3, rules_dir)
    }

    /// Checks `text`, the contents of the config file at `path` (which need not exist: relative
    /// locations are taken from its directory).
    pub fn parse(
        text: &str,
        path: &Path,
        s3: &S3Options,
        rules_dir: Option<&Path>,
    ) -> Result<Config> {
        let fail = |reason: String| Error::Config {
            path: path.display().to_string(),
            reason,
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = &text[..span.start];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line} column {column}: ")
            });
            fail(format!("{}{}", at.unwrap_or_default(), e.message().trim()))
        })?;
        let s3 = match &file.s3_endpoint {
            Some(endpoint) => S3Options {
                endpoint: Some(endpoint.clone()),
            },
            None => s3.clone(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let place = |key: &str, text: &str| -> Result<Location> {
            let text = if text.contains("://") || Path::new(text).is_absolute() {
                text.to_string()
            } else {
                dir.join(text).display().to_string()
            };
            Location::parse(&text, &s3).map_err(|e| fail(format!("{key}: {e}")))
        };
        let rules_dir: Option<PathBuf> = match (rules_dir, &file.rules_dir) {
            (Some(dir), _) => Some(dir.to_path_buf()),
            (None, Some(text)) => Some(dir.join(text)),
            (None, None) => None,
        };
        let loaded = Rules::load(rules_dir.as_deref())?;
        let rules = loaded
            .select(file.rules.as_deref().unwrap_or(&["all".to_string()]))
            .map_err(|e| fail(format!("rules: {e}")))?;
        let memory_limit = file
            .memory_limit
            .as_deref()
            .map(|text| {
                crate::cli::parse_memory_limit(text).map_err(|e| fail(format!("memory_limit: {e}")))
            })
            .transpose()?;
        let lease = match &file.lease {
            None => DEFAULT_LEASE,
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| fail(format!("lease: {e}: expected a duration such as 10m")))?,
        };
        if lease < Duration::from_secs(1) {
            return Err(fail("lease: must be at least 1s".into()));
        }
        let mut jobs = Vec::new();
        for (name, table, which) in [
            ("rollup", &file.rollup, rule::Job::Rollup),
            ("baseline", &file.baseline, rule::Job::Baseline),
            ("detect", &file.detect, rule::Job::Detect),
        ] {
            if table.enabled == Some(false) {
                continue;
            }
            // Rules sharing a schedule (after the file's overrides) run as one job.
            let mut groups: Vec<(JobDefaults, Vec<Rule>)> = Vec::new();
            for rule in &rules {
                // A rule schedules its rollups in its manifest; the file's [rollup] with a
                // cron and a window schedules those of any rule whose tables have rollups.
                let fallback = (which == rule::Job::Rollup
                    && rule.tables.iter().any(|t| t.rollup.is_some()))
                .then(|| table.defaults())
                .flatten();
                let Some(defaults) = rule.schedule.job(which).cloned().or(fallback) else {
                    continue;
                };
                let effective = JobDefaults {
                    cron: table.cron.clone().unwrap_or(defaults.cron.clone()),
                    earliest: table.earliest.clone().unwrap_or(defaults.earliest.clone()),
                    latest: table.latest.clone().unwrap_or(defaults.latest.clone()),
                };
                match groups.iter_mut().find(|(d, _)| *d == effective) {
                    Some((_, members)) => members.push(rule.clone()),
                    None => groups.push((effective, vec![rule.clone()])),
                }
            }
            if groups.is_empty() && table.is_set() {
                return Err(fail(format!(
                    "[{name}]: no rule schedules a {name} job; give cron, earliest and latest \
                     to store the rollups of every rule whose tables have them"
                )));
            }
            let single = groups.len() == 1;
            for (defaults, members) in groups {
                let job_name = if single {
                    name.to_string()
                } else {
                    let names: Vec<&str> = members.iter().map(|r| r.name.as_str()).collect();
                    format!("{name}-{}", names.join("-"))
                };
                let job =
                    Job::from_table(name, job_name, members, table, &defaults).map_err(&fail)?;
                jobs.push(job);
            }
        }
        let security_lake = match &file.security_lake {
            None => None,
            Some(lake) => {
                let partition = |key: &str, value: &str| {
                    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                    if value.is_empty() || !value.chars().all(allowed) {
                        return Err(fail(format!(
                            "security_lake.{key}: {value:?} is not a partition value (letters, \
                             digits, '-' and '_')"
                        )));
                    }
                    Ok(value.to_string())
                };
                Some(CustomSource {
                    location: place("security_lake.location", &lake.location)?,
                    region: partition("region", &lake.region)?,
                    account_id: partition("account_id", &lake.account_id)?,
                })
            }
        };
        Ok(Config {
            security_lake,
            path: path.to_path_buf(),
            store: place("store", &file.store)?,
            baselines: place("baselines", &file.baselines)?,
            findings: place("findings", &file.findings)?,
            rules,
            engine: crate::session::Engine {
                memory_limit,
                cluster: file.cluster.clone(),
            },
            lease,
            jobs,
        })
    }
}

impl Job {
    fn from_table(
        name: &str,
        job_name: String,
        rules: Vec<Rule>,
        table: &JobTable,
        defaults: &JobDefaults,
    ) -> std::result::Result<Job, String> {
        let key = |k: &str| format!("{name}.{k}");
        let task = match name {
            "rollup" => {
                if table.full.is_some() || table.filter.is_some() || table.format.is_some() {
                    return Err(format!(
                        "{}: full, filter and format belong to [baseline] and [detect]",
                        key("full")
                    ));
                }
                Task::Rollup
            }
            "baseline" => {
                if table.filter.is_some() || table.format.is_some() {
                    return Err(format!(
                        "{}: filter and format belong to [detect]",
                        key("filter")
                    ));
                }
                Task::Baseline {
                    full: table.full.unwrap_or(false),
                }
            }
            _ => {
                if table.full.is_some() {
                    return Err(format!("{}: full belongs to [baseline]", key("full")));
                }
                let format = match &table.format {
                    None => Format::Ndjson,
                    Some(text) => {
                        Format::parse(text).map_err(|e| format!("{}: {e}", key("format")))?
                    }
                };
                Task::Detect {
                    filter: table.filter.clone(),
                    format,
                }
            }
        };
        let pattern = defaults.cron.as_str();
        let cron = Cron::from_str(pattern)
            .map_err(|e| format!("{}: bad cron expression {pattern:?}: {e}", key("cron")))?;
        let job = Job {
            name: job_name,
            rules,
            task,
            cron,
            earliest: defaults.earliest.clone(),
            latest: defaults.latest.clone(),
            start: table
                .start
                .as_deref()
                .map(|t| resolve(t, Utc::now(), "start"))
                .transpose()
                .map_err(|e| format!("{}: {e}", key("start")))?,
        };
        job.window(Utc::now())
            .map_err(|e| format!("{}/{}: {e}", key("earliest"), key("latest")))?;
        // Rollups are per hour: a window that cuts an hour would store none of it.
        if matches!(job.task, Task::Rollup)
            && let Some(time) = job.next(Utc::now())
            && !job
                .window(time)
                .map_err(|e| format!("{}/{}: {e}", key("earliest"), key("latest")))?
                .is_whole_hours()
        {
            return Err(format!(
                "{}/{}: a rollup window must be whole hours at each cron time; snap both \
                 with @h (e.g. -3h@h and @h)",
                key("earliest"),
                key("latest")
            ));
        }
        Ok(job)
    }

    /// The window of the run at `time`: the job's earliest and latest, taken from `time`.
    pub fn window(&self, time: DateTime<Utc>) -> Result<Window> {
        Window::parse(&self.earliest, &self.latest, time)
    }

    /// The job's times after `last` (its last completed run) up to `now`, in order. A job that
    /// never ran starts at `start`, or else at its latest time up to `now`.
    pub fn due(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let first = match (last, self.start) {
            (Some(last), _) => self.cron.find_next_occurrence(&last, false).ok(),
            (None, Some(start)) => self.cron.find_next_occurrence(&start, true).ok(),
            (None, None) => self.cron.find_previous_occurrence(&now, true).ok(),
        };
        let Some(first) = first.filter(|t| *t <= now) else {
            return Vec::new();
        };
        std::iter::once(first)
            .chain(self.cron.iter_after(first).take_while(|t| *t <= now))
            .collect()
    }

    /// The job's first time after `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iodrift.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_rollup_window_that_cuts_an_hour_is_refused() {
        let (_dir, path) = write(
            "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n\
             [rollup]\ncron = \"5 * * * *\"\nearliest = \"-3h\"\nlatest = \"@h\"\n",
        );
        let error = Config::load(&path, &S3Options::default(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("rollup.earliest/rollup.latest"), "{error}");
        assert!(error.contains("whole hours"), "{error}");
    }

    #[test]
    fn defaults_are_escus_schedules() {
        let (dir, path) = write("store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n");
        let config = Config::load(&path, &S3Options::default(), None).unwrap();
        assert_eq!(config.store.local(), Some(dir.path().join("s").as_path()));
        assert_eq!(config.rules.len(), 3);
        assert_eq!(config.lease, DEFAULT_LEASE);
        let [rollup, drift_baseline, baseline, detect] = &config.jobs[..] else {
            panic!(
                "four jobs: drift's hourly rollups, its daily baseline, ESCU's weekly one, every \
                 rule's hourly detection"
            )
        };
        assert_eq!(rollup.name, "rollup");
        assert!(matches!(rollup.task, Task::Rollup));
        assert_eq!(rollup.rules.len(), 1);
        let window = rollup.window(at("2026-03-08T05:05:00Z")).unwrap();
        assert_eq!(
            (window.earliest, window.latest),
            (at("2026-03-08T02:00:00Z"), at("2026-03-08T05:00:00Z"))
        );
        assert_eq!(baseline.rules.len(), 2);
        assert_eq!(baseline.name, "baseline-network-io-network-io-ratio");
        assert_eq!(drift_baseline.name, "baseline-drift");
        assert_eq!(detect.name, "detect");
        assert_eq!(detect.rules.len(), 3);
        let window = drift_baseline.window(at("2026-03-08T01:00:00Z")).unwrap();
        assert_eq!(
            (window.earliest, window.latest),
            (at("2026-02-22T00:00:00Z"), at("2026-03-08T00:00:00Z"))
        );
        // 2026-03-08 is a Sunday.
        let window = baseline.window(at("2026-03-08T02:00:00Z")).unwrap();
        assert_eq!(
            (window.earliest, window.latest),
            (at("2026-02-06T00:00:00Z"), at("2026-03-07T00:00:00Z"))
        );
        assert_eq!(
            baseline.due(None, at("2026-03-11T12:00:00Z")),
            vec![at("2026-03-08T02:00:00Z")]
        );
        let window = detect.window(at("2026-03-08T02:00:00Z")).unwrap();
        assert_eq!(
            (window.earliest, window.latest),
            (at("2026-03-08T00:50:00Z"), at("2026-03-08T01:50:00Z"))
        );
    }

    #[test]
    fn due_times_follow_the_last_run_in_order() {
        let (_dir, path) = write(
            "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[detect]\nstart = \"2026-03-02T03:00:00Z\"\n",
        );
        let config = Config::load(&path, &S3Options::default(), None).unwrap();
        let detect = config.jobs.iter().find(|j| j.name == "detect").unwrap();
        let now = at("2026-03-02T05:30:00Z");
        assert_eq!(
            detect.due(None, now),
            ["03", "04", "05"].map(|h| at(&format!("2026-03-02T{h}:00:00Z")))
        );
        assert_eq!(
            detect.due(Some(at("2026-03-02T04:00:00Z")), now),
            vec![at("2026-03-02T05:00:00Z")]
        );
        assert!(detect.due(Some(at("2026-03-02T05:00:00Z")), now).is_empty());
        assert_eq!(detect.next(now), Some(at("2026-03-02T06:00:00Z")));
    }

    #[test]
    fn seconds_patterns_catch_up_every_time() {
        let (_dir, path) = write(
            "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[detect]\ncron = \"*/2 * * * * *\"\n",
        );
        let config = Config::load(&path, &S3Options::default(), None).unwrap();
        let detect = config.jobs.iter().find(|j| j.name == "detect").unwrap();
        let last = at("2026-03-02T01:01:28Z");
        let now = at("2026-03-02T01:01:33.700Z");
        assert_eq!(
            detect.due(Some(last), now),
            ["30", "32"].map(|s| at(&format!("2026-03-02T01:01:{s}Z")))
        );
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let example = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a toml block");
        let (_dir, path) = write(example);
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
        };
        let config = Config::load(&path, &s3, None).unwrap();
        assert_eq!(config.store.as_str(), "s3://lake/metrics");
        assert_eq!(config.jobs.len(), 2);
        assert_eq!(config.jobs[0].cron.as_str(), "0 2 * * 0");
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        for (text, expected) in [
            ("store = 1", "line 1 column 9: invalid type"),
            (
                "baselines = \"b\"\nfindings = \"f\"\n",
                "missing field `store`",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\ncolour = 1\n",
                "line 4 column 1: unknown field `colour`",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[detect]\ncron = \"61 * * * *\"\n",
                "detect.cron",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[baseline]\nlatest = \"soon\"\n",
                "baseline.earliest/baseline.latest",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\nrules = [\"dns\"]\n",
                "unknown rule \"dns\"",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\nlease = \"often\"\n",
                "lease",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[baseline]\nfilter = \"x\"\n",
                "[detect]",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[security_lake]\n\
                 location = \"lake\"\nregion = \"us/east\"\naccount_id = \"1\"\n",
                "security_lake.region",
            ),
            (
                "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[security_lake]\n\
                 location = \"lake\"\nregion = \"us-east-1\"\n",
                "missing field `account_id`",
            ),
        ] {
            let (_dir, path) = write(text);
            let error = Config::load(&path, &S3Options::default(), None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("iodrift.toml"), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }
}
