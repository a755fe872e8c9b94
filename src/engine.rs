//! What every DataFusion context of iodrift runs on, sessions and a cluster's processes alike:
//! the runtime (object stores, memory cap, spills), iodrift's functions and its local operators.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::location::S3Options;
use crate::object_stores::ObjectStores;

/// The runtime of every session, and of a cluster's processes: object stores resolved by
/// [`ObjectStores`] (S3 buckets configured with `s3`), memory capped at `memory_limit`, spills
/// in `spill_dir` (default: the system's temporary directory).
pub fn runtime_env(
    memory_limit: Option<usize>,
    s3: &S3Options,
    spill_dir: Option<&std::path::Path>,
) -> Result<Arc<RuntimeEnv>> {
    let mut runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(ObjectStores::new(s3.clone())));
    if let Some(dir) = spill_dir {
        runtime = runtime.with_temp_file_path(dir);
    }
    if let Some(bytes) = memory_limit {
        let pool = FairSpillPool::new(bytes);
        runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
            pool,
            NonZeroUsize::new(5).expect("not zero"),
        )));
    }
    runtime
        .build_arc()
        .map_err(Error::query("start the query engine"))
}

/// A context that runs its queries in this process: DataFusion's planning plus iodrift's own
/// operators (a cluster's scheduler plans with DataFusion's alone, which its executors know).
pub fn local_context(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_physical_optimizer_rule(Arc::new(iodrift_udfs::SortedExactAvgRule))
        .with_physical_optimizer_rule(Arc::new(iodrift_udfs::DictionaryGroupsRule))
        .build();
    SessionContext::new_with_state(state)
}

/// Adds iodrift's functions to `state`: every session's, and a cluster scheduler's (whose
/// sessions Ballista builds).
pub fn register_functions(state: &mut SessionState) -> Result<()> {
    for udf in iodrift_udfs::all() {
        state
            .register_udf(Arc::new(udf))
            .map_err(Error::query("register iodrift's functions"))?;
    }
    for udaf in iodrift_udfs::all_aggregates() {
        state
            .register_udaf(Arc::new(udaf))
            .map_err(Error::query("register iodrift's functions"))?;
    }
    Ok(())
}
