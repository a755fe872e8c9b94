//! DataFusion UDFs for iodrift's Kubernetes network-IO rules (the ESCU port and `drift`).
//! Register them in any `SessionContext` with [`register_all`]; each module holds one function.

mod anomaly;
mod dictionary_groups;
mod exact;
mod groups;
mod histogram;
mod number;
mod operator;
mod quantile;
mod service;
mod sorted_avg;
mod workload;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use anomaly::{ANOMALY_TEXT_UDF_NAME, AnomalyText, Measure, anomaly_text};
pub use dictionary_groups::{DictionaryGroupsExec, DictionaryGroupsRule};
pub use exact::{
    EXACT_AVG_UDAF_NAME, EXACT_M2_UDAF_NAME, EXACT_MERGE_AVG_UDAF_NAME,
    EXACT_MERGE_MOMENTS_UDAF_NAME, EXACT_MERGE_STDDEV_SAMP_UDAF_NAME, EXACT_MOMENTS_UDAF_NAME,
    EXACT_STDDEV_SAMP_UDAF_NAME, ExactAggregate, ExactSum, Input, Moments, Statistic, moments_type,
};
pub use histogram::{
    HISTOGRAM_QUANTILE_UDF_NAME, HISTOGRAM_SUM_UDAF_NAME, HISTOGRAM_UDAF_NAME, HistogramAggregate,
    HistogramQuantile, histogram_type,
};
pub use number::{format_number, round_half_away_from_zero, write_number};
pub use quantile::{Histogram, WEIGHTED_QUANTILE_UDAF_NAME, WeightedQuantile};
pub use service::{K8S_SERVICE_UDF_NAME, K8sService, service_name};
pub use sorted_avg::{SortedExactAvgExec, SortedExactAvgRule};
pub use workload::{K8S_WORKLOAD_UDF_NAME, K8sWorkload, workload_name};

/// A digest of this crate's source: results stored by an application (iodrift's hourly rollups)
/// record it, and are recomputed when the functions that computed them have changed.
pub const SOURCE_DIGEST: &str = env!("IODRIFT_UDFS_SOURCE_DIGEST");

/// Every UDF of this crate, ready to register.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(K8sService::new()),
        ScalarUDF::from(AnomalyText::new()),
        ScalarUDF::from(K8sWorkload::new()),
        HistogramQuantile::udf(),
    ]
}

/// Every aggregate function of this crate, ready to register.
pub fn all_aggregates() -> Vec<AggregateUDF> {
    let mut aggregates = vec![
        ExactAggregate::mean(),
        ExactAggregate::sample_stdev(),
        ExactAggregate::m2(),
        ExactAggregate::moments(),
        WeightedQuantile::udaf(),
        HistogramAggregate::of_values(),
        HistogramAggregate::of_histograms(),
    ];
    aggregates.extend(ExactAggregate::merging());
    aggregates
}

/// Registers every function of this crate in `ctx`, replacing functions of the same name.
pub fn register_all(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
    for udaf in all_aggregates() {
        ctx.register_udaf(udaf);
    }
}
