//! Metrics: how a connection's labels are made (`labels`), where series
//! live and how many there may be (`series`), the counts themselves
//! (`counters`), per-worker shards of them (`shard`), per-connection
//! records for long-lived connections and the flow log (`conns`), the names
//! and help texts of the contract (`names`), the scrape that turns
//! shards into the text exposition (`collector`), and the live connection
//! table read from the records (`table`).

pub mod collector;
pub mod conns;
pub mod counters;
pub mod istio;
pub mod labels;
pub mod names;
pub mod series;
pub mod shard;
pub mod table;

pub use collector::Exporter;
pub use series::{DEFAULT_MAX_SERIES, DEFAULT_SERIES_TTL_SECS};
pub use shard::{SeriesIds, Shard, ShardConfig};
