//! iodrift: Kubernetes network-IO detection rules (the Splunk ESCU ports and users' own, each a
//! folder of SQL and a manifest) on Apache Arrow and DataFusion, over an hour-partitioned
//! Parquet store of pod metrics.

pub mod aws_profile;
pub mod baseline;
pub mod cli;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod compact;
pub mod detect;
pub mod engine;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod failpoint;
pub mod finding;
pub mod generate;
pub mod ingest;
pub mod location;
pub mod lookup;
pub mod materialized;
pub mod object_stores;
pub mod ocsf;
pub mod output;
pub mod repl;
pub mod rollup;
pub mod rule;
pub mod schedule;
pub mod security_lake;
pub mod session;
pub mod store;
pub mod store_writer;
pub mod table;
pub mod tables;
pub mod time;

pub use error::{Error, Result};
pub use finding::Finding;
pub use location::{Location, S3Options};
pub use lookup::Baseline;
pub use rule::{Rule, Rules};
pub use session::{Session, SessionBuilder};
pub use store::Store;
pub use time::Window;
