//! DataFusion UDFs for the Splunk ESCU Kubernetes network-IO rules.
//! Register them in any `SessionContext` with [`register_all`]; each module holds one function.

mod anomaly;
mod number;
mod service;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use anomaly::{ANOMALY_TEXT_UDF_NAME, AnomalyText, Measure, anomaly_text};
pub use number::{format_number, round_half_away_from_zero};
pub use service::{K8S_SERVICE_UDF_NAME, K8sService, service_name};

/// Every UDF of this crate, ready to register.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(K8sService::new()),
        ScalarUDF::from(AnomalyText::new()),
    ]
}

/// Registers every UDF of this crate in `ctx`, replacing functions of the same name.
pub fn register_all(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
}
