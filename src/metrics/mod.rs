//! Metrics: per-worker shards of plain counters (`shard`), the names and
//! help texts of the contract (`names`), and the collector that turns shards
//! into labelled Prometheus families when a scrape comes (`collector`).

pub mod collector;
pub mod names;
pub mod shard;

pub use collector::Exporter;
pub use shard::{SeriesIds, Shard, DEFAULT_MAX_SERIES};
