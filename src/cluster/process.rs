//! `iodrift ballista scheduler` and `iodrift ballista executor`: Ballista's own processes, whose
//! sessions get iodrift's functions, object stores and table codec.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use super::{TableCodec, scheduler_address, static_planner};
use crate::engine;
use crate::error::{Error, Result};
use crate::location::S3Options;

/// How a scheduler listens and when it gives up on a silent executor.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// The host executors and clients are told to reach this scheduler by.
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run
    /// elsewhere.
    pub executor_timeout: u64,
}

/// Where an executor serves, which scheduler it joins and how much it runs at once.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// `df://HOST:PORT` or `HOST:PORT` of the scheduler.
    pub scheduler: String,
    /// Address of the Arrow Flight service that serves shuffle and result partitions.
    pub bind: SocketAddr,
    /// Port of the executor's gRPC service (on the same host).
    pub grpc_port: u16,
    /// The host other processes reach this executor by (default: the bind address).
    pub external_host: Option<String>,
    /// Tasks run at once (default: the machine's cores).
    pub concurrent_tasks: usize,
    /// Shuffle files and spills (default: a fresh temporary directory).
    pub work_dir: Option<PathBuf>,
    pub heartbeat_interval: u64,
    /// Bytes all tasks hold together before spilling (default: Ballista's share of the host).
    pub memory_limit: Option<usize>,
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions, s3: &S3Options) -> Result<()> {
    let mut config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options
            .external_host
            .clone()
            .unwrap_or_else(|| options.bind.ip().to_string()),
        executor_timeout_seconds: options.executor_timeout,
        expire_dead_executor_interval_seconds: (options.executor_timeout / 3).clamp(1, 15),
        no_executors_grace_period_seconds: options.executor_timeout,
        ..SchedulerConfig::default()
    };
    let codec_s3 = s3.clone();
    config.override_logical_codec = Some(Arc::new(TableCodec::scheduler(codec_s3)));
    let state_s3 = s3.clone();
    config.override_session_builder = Some(Arc::new(move |config: SessionConfig| {
        let state = default_session_builder(static_planner(config))?;
        let runtime = engine::runtime_env(None, &state_s3, None)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        engine::register_functions(&mut state)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(state)
    }));
    let fail = |e: ballista_core::error::BallistaError| Error::Usage(format!("scheduler: {e}"));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(fail)?;
    tracing::info!("scheduler listening on {}", options.bind);
    start_server(cluster, options.bind, Arc::new(config))
        .await
        .map_err(fail)
}

/// Runs an executor until the process is stopped.
pub async fn run_executor(options: ExecutorOptions, s3: &S3Options) -> Result<()> {
    let (scheduler_host, scheduler_port) = scheduler_address(&options.scheduler)?;
    let mut functions = BallistaFunctionRegistry::default();
    // Ballista's default registry holds DataFusion's core functions, not its array functions
    // (make_array, array_sort ...), which rules' SQL uses as every session does.
    for udf in datafusion::functions_nested::all_default_nested_functions() {
        functions
            .scalar_functions
            .insert(udf.name().to_string(), udf);
    }
    for udf in iodrift_udfs::all() {
        functions
            .scalar_functions
            .insert(udf.name().to_string(), Arc::new(udf));
    }
    for udaf in iodrift_udfs::all_aggregates() {
        functions
            .aggregate_functions
            .insert(udaf.name().to_string(), Arc::new(udaf));
    }
    let work_dir = options.work_dir.clone();
    let s3 = s3.clone();
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        port: options.bind.port(),
        grpc_port: options.grpc_port,
        external_host: options.external_host.clone(),
        scheduler_host,
        scheduler_port,
        vcores: options.concurrent_tasks,
        work_dir: options
            .work_dir
            .as_ref()
            .map(|dir| dir.display().to_string()),
        executor_heartbeat_interval_seconds: options.heartbeat_interval,
        memory_pool_size: options.memory_limit.map(|bytes| bytes as u64),
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| {
            engine::runtime_env(None, &s3, work_dir.as_deref())
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        })),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(
        "executor serving on {}, joining the scheduler at {}",
        options.bind,
        options.scheduler
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Usage(format!("executor: {e}")))
}
