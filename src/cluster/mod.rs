//! The same plans on Apache DataFusion Ballista: a client context that sends every query to a
//! scheduler, and the scheduler and executor processes, with iodrift's functions and tables.

mod codec;
mod process;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use codec::TableCodec;
pub use process::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::rule::Rules;

/// The port a scheduler listens on unless told otherwise, as in Ballista.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The host and port of a scheduler given as `df://HOST[:PORT]` (or `HOST[:PORT]`).
pub fn scheduler_address(url: &str) -> Result<(String, u16)> {
    let fail = |reason: &str| Error::Usage(format!("--cluster {url}: {reason}"));
    let rest = url.strip_prefix("df://").unwrap_or(url);
    if rest.contains("://") {
        return Err(fail("expected df://HOST:PORT"));
    }
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| fail("the port is not a number from 1 to 65535"))?,
        ),
        None => (rest, DEFAULT_SCHEDULER_PORT),
    };
    if host.is_empty() || port == 0 {
        return Err(fail("expected df://HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

/// A context whose queries the scheduler at `url` plans and its executors run. The baseline
/// tables of `rules` are read there from `baselines`; iodrift's functions are registered by the
/// caller afterwards (Ballista replaces the state's function list).
pub async fn client_context(
    url: &str,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    baselines: Option<Location>,
    rules: &Rules,
) -> Result<SessionContext> {
    let (host, port) = scheduler_address(url)?;
    // Ballista connects on the first query; a scheduler that is not there fails here, clearly.
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Error::Usage(format!(
                "--cluster {url}: no scheduler answers at {host}:{port}: {e}"
            )));
        }
        Err(_) => {
            return Err(Error::Usage(format!(
                "--cluster {url}: no answer from {host}:{port} within 10 s"
            )));
        }
    }
    let tables: Vec<_> = rules.tables().cloned().collect();
    let codec = Arc::new(TableCodec::client(baselines, tables.clone()));
    let config = static_planner(config).with_ballista_logical_extension_codec(codec);
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build();
    let context = SessionContext::remote_with_state(&format!("df://{host}:{port}"), state)
        .await
        .map_err(Error::query(format!("connect to the scheduler at {url}")))?;
    context.add_analyzer_rule(Arc::new(codec::SendableTables { tables }));
    Ok(context)
}

/// Plans jobs with Ballista's static stage planner. Its adaptive planner (the default in 55.0)
/// drops the leading `rule` key from the findings' final sort, so a cluster would hand the
/// findings back in pod order instead of rule, cluster, host and pod order.
pub(crate) fn static_planner(config: SessionConfig) -> SessionConfig {
    config
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses() {
        assert_eq!(
            scheduler_address("df://127.0.0.1:50050").unwrap(),
            ("127.0.0.1".to_string(), 50050)
        );
        assert_eq!(
            scheduler_address("df://sched").unwrap(),
            ("sched".to_string(), DEFAULT_SCHEDULER_PORT)
        );
        assert_eq!(
            scheduler_address("sched:7000").unwrap(),
            ("sched".to_string(), 7000)
        );
        for bad in [
            "http://x:1",
            "df://:1",
            "df://x:port",
            "df://x:0",
            "df://x:70000",
        ] {
            assert!(scheduler_address(bad).is_err(), "{bad}");
        }
    }
}
