//! Command-line flags of every `iodrift` command. Flag names are a contract: scripts call them.
//! Values are parsed here only as far as clap can; time expressions resolve in `time`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "iodrift",
    version,
    about = "Kubernetes pod network-IO anomaly detection: the Splunk ESCU rules, exactly, and drift, on DataFusion"
)]
pub struct Cli {
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub rules: RulesArg,
    #[command(subcommand)]
    pub command: Command,
}

/// How `s3://` locations are reached; credentials come from the standard AWS environment.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// S3-compatible server for every s3:// location (MinIO, moto, Ceph ...); an http:// URL
    /// allows plain HTTP.
    #[arg(long, global = true, value_name = "URL", env = "AWS_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

/// Where rules beyond the built-in ones come from.
#[derive(Debug, Clone, Default, Args)]
pub struct RulesArg {
    /// A rule folder (rule.toml and its SQL), or a folder of them, run beside the built-in
    /// rules (the schedule also takes `rules_dir` in its config).
    #[arg(
        id = "rules_dir",
        long = "rules",
        global = true,
        value_name = "DIR",
        env = "IODRIFT_RULES"
    )]
    pub rules_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the rules' baselines over a window and write their lookup CSVs (and Parquet twins).
    Baseline(BaselineArgs),
    /// Run the rules' detections over a window and print the findings.
    Detect(DetectArgs),
    /// SQL over the store, the baselines and every stage of both rules (a REPL without -c/-f).
    Sql(SqlArgs),
    /// Write a synthetic cluster, with injected attacks, straight into the store layout.
    Generate(GenerateArgs),
    /// Generate a small cluster, compute baselines, run both detections and show the findings.
    Demo(DemoArgs),
    /// Replay the hourly detection schedule over a labelled store and score it per scenario.
    Eval(EvalArgs),
    /// Turn OTLP, kubelet, Prometheus or Splunk exports into the store (each input once).
    Ingest(IngestArgs),
    /// Merge the files of each closed hour into one sorted file.
    Compact(CompactArgs),
    /// Run the baseline and detection jobs of a config file as a service, at their cron times.
    Schedule(ScheduleArgs),
    /// Run the config's due jobs once, each due window once and in order, then exit (for cron).
    /// Exits 75 when another runner holds the store.
    RunDue(RunDueArgs),
    /// Run a process of a Ballista cluster that `--cluster df://HOST:PORT` sends queries to.
    #[command(subcommand)]
    Ballista(BallistaCommand),
}

/// The processes of a Ballista cluster, with iodrift's functions and tables.
#[derive(Debug, Subcommand)]
pub enum BallistaCommand {
    /// The scheduler: plans each client's queries and hands their tasks to executors.
    Scheduler(SchedulerArgs),
    /// An executor: joins a scheduler and runs tasks, reading the store itself.
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address the scheduler's gRPC service listens on; clients use df://HOST:PORT of it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
    pub bind: std::net::SocketAddr,
    /// The host name executors and clients reach this scheduler by (default: the bind address).
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// Seconds without a heartbeat before an executor counts as lost and its tasks run again
    /// elsewhere (keep it above the executors' --heartbeat-interval).
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub executor_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to join: df://HOST:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub scheduler: String,
    /// Address of the executor's Arrow Flight service (shuffle and result partitions).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub bind: std::net::SocketAddr,
    /// Port of the executor's gRPC service, on the bind address's host.
    #[arg(long, value_name = "PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// The host name other processes reach this executor by (default: the bind address).
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Directory for shuffle files and spills (default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub heartbeat_interval: u64,
    /// Memory the executor's tasks hold together (e.g. 8GiB), split evenly across
    /// --concurrent-tasks; beyond its share a task's aggregations and sorts spill to the work
    /// dir. Default: 70 % of the host's (or the container's) memory.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory_limit: Option<usize>,
}

/// The window flags shared by the commands that read one.
#[derive(Debug, Clone, Args)]
pub struct NowArg {
    /// The time relative times are taken from: RFC 3339 or relative to the clock (default: the clock).
    #[arg(long, value_name = "T")]
    pub now: Option<String>,
}

/// How the query engine may use the machine.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Cap on the memory DataFusion's operators hold (e.g. 4GiB, 512MiB); beyond it,
    /// aggregations and sorts spill to temporary files. Default: no cap.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory_limit: Option<usize>,
    /// Run the queries on the Ballista cluster of this scheduler (see `iodrift ballista`)
    /// instead of in this process. The store and the lookups must be paths every process of
    /// the cluster sees alike, or S3.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
}

impl EngineArgs {
    pub fn engine(&self) -> crate::session::Engine {
        crate::session::Engine {
            memory_limit: self.memory_limit,
            cluster: self.cluster.clone(),
        }
    }
}

pub fn parse_memory_limit(text: &str) -> Result<usize, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{e}: expected a size such as 4GiB, 512MiB or 1073741824"))?;
    usize::try_from(bytes).map_err(|_| format!("{text} is larger than this machine can address"))
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Store root: <root>/dt=YYYY-MM-DD/hour=HH/*.parquet, a directory or s3://bucket/prefix.
    #[arg(long, value_name = "S")]
    pub store: String,
    /// Directory or s3://bucket/prefix the lookups are written to.
    #[arg(long, value_name = "DIR")]
    pub out: String,
    /// The rules to run, by name, comma-separated; `all` for every rule.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "all",
        value_delimiter = ','
    )]
    pub rule: Vec<String>,
    /// Start of the window (inclusive): RFC 3339, epoch seconds or Splunk relative time
    /// (default: the rules' baseline window; ESCU's is -30d@d to -1d@d).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub earliest: Option<String>,
    /// End of the window (exclusive).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub latest: Option<String>,
    /// Rescan every raw row of the window instead of merging the hours' stored rollups
    /// (`<store>/_rollups/`, computed and kept for closed hours that lack a current one).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[arg(long, value_name = "S")]
    pub store: String,
    /// Directory or s3://bucket/prefix holding the lookup CSVs written by `iodrift baseline`.
    #[arg(long, value_name = "DIR")]
    pub baselines: String,
    /// The rules to run, by name, comma-separated; `all` for every rule.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "all",
        value_delimiter = ','
    )]
    pub rule: Vec<String>,
    /// Start of the window (default: the rules' detection window; ESCU's is -70m@m to -10m@m).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub earliest: Option<String>,
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub latest: Option<String>,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// How findings are written; `ocsf`: OCSF 1.1 Detection Findings, one JSON object per line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the findings to FILE or s3://bucket/key (whole or not at all) instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<String>,
    /// ESCU's filter macro: a SQL predicate over the output fields, e.g. `host <> 'node-1'`.
    #[arg(long, value_name = "SQL_PREDICATE")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[arg(long, value_name = "S")]
    pub store: String,
    /// Directory or s3://bucket/prefix holding lookup CSVs; without it the lookup tables are
    /// empty.
    #[arg(long, value_name = "DIR")]
    pub baselines: Option<String>,
    /// Run these statements and exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// Run the statements of FILE and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Restrict `metrics` to a window (both bounds needed); default: the whole store.
    #[arg(
        long,
        value_name = "T",
        allow_hyphen_values = true,
        requires = "latest"
    )]
    pub earliest: Option<String>,
    #[arg(
        long,
        value_name = "T",
        allow_hyphen_values = true,
        requires = "earliest"
    )]
    pub latest: Option<String>,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Store root to write (created if missing): a directory or s3://bucket/prefix.
    #[arg(long, value_name = "DIR")]
    pub out: String,
    #[arg(long, default_value_t = 1)]
    pub clusters: u32,
    /// Deployments per cluster (DaemonSets, StatefulSets, Jobs and static pods come on top).
    #[arg(long, default_value_t = 12)]
    pub services: u32,
    /// Replicas per Deployment.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// First hour of data: RFC 3339 or relative time.
    #[arg(
        long,
        value_name = "T",
        default_value = "2026-03-01T00:00:00Z",
        allow_hyphen_values = true
    )]
    pub start: String,
    #[arg(long, default_value_t = 48)]
    pub hours: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo store, baselines and findings go.
    #[arg(default_value = "iodrift-demo")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long, value_name = "S")]
    pub store: String,
    /// The labels file written by `iodrift generate` (`<store>.labels.json`).
    #[arg(long, value_name = "FILE")]
    pub labels: String,
    /// Baselines to detect against; default: every chosen rule's, computed from the store's
    /// training days (from the labels' start to --from).
    #[arg(long, value_name = "DIR")]
    pub baselines: Option<String>,
    /// The rules to run, by name, comma-separated; `all` for every rule.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "all",
        value_delimiter = ','
    )]
    pub rule: Vec<String>,
    /// Where the test days start: the first hourly run is the hour after it (default: two days
    /// before the labels' end for a store of three days or more, else one day after its start).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Last hourly run (default: the labels' end).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// How the scores are written; `ocsf` writes every run's findings instead, as OCSF 1.1
    /// Detection Findings one per line, and the scores as a table on standard error.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Store root to write into (created if missing): a directory or s3://bucket/prefix.
    #[arg(long, value_name = "S")]
    pub store: String,
    #[arg(long, value_enum)]
    pub format: crate::ingest::Format,
    /// Cluster name for inputs that carry none (`k8s.cluster.name`); required for
    /// kubelet-summary and prometheus.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Node name for inputs that carry none; required for prometheus unless samples have `node`.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Time of a snapshot whose samples carry no timestamp: RFC 3339 or relative time.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub time: Option<String>,
    /// Files, folders or s3://bucket/prefix (folders and prefixes walked in key order).
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Store root: a directory or s3://bucket/prefix.
    #[arg(long, value_name = "S")]
    pub store: String,
    /// Compact hours that ended at or before this time (default: the start of the current hour).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub before: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The schedule's config: store, baselines, findings, rules and the jobs' cron and windows.
    #[arg(long, value_name = "FILE", default_value = "iodrift.toml")]
    pub config: PathBuf,
    /// How the log lines on standard error look.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct RunDueArgs {
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// The time the jobs are due by: RFC 3339 or relative to the clock (default: the clock).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub now: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, with every field of the event.
    Json,
}
