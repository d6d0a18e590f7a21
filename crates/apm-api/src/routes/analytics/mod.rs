//! Analytics: `hourly`, `daily`, `kpis` and `top-endpoints` (spec §1.5-1.8, §3), read from the
//! rollups (migrations/0004_rollups.sql) or the events table, on a replica when one is healthy.
//!
//! Windows: rollup paths count the buckets that start within `[start, end]`, as the original's
//! aggregates did, and every figure of a response, p95 included, covers those same buckets (the
//! original took p95 from the exact window, so one KPI response could disagree with itself, spec
//! §11 #8). Raw paths use the exact window. A p95 over at most [`EXACT_P95_ROWS`] events is
//! `percentile_cont` in SQL, as the original; over more, it comes from the rollups' histograms
//! (exact below 256 ms, within 1/32 of the value above), so it stays fast over millions of rows.

mod params;
mod ranking;
mod series;
mod source;

pub(super) use params::{Form, Params};
pub use ranking::{kpis, top_endpoints};
pub use series::{daily, hourly};

/// Up to this many events, p95 is computed exactly from the events.
pub const EXACT_P95_ROWS: i64 = 10_000;

const DATE_MESSAGE: &str =
    "Must be an ISO datetime or date (e.g. 2025-12-14T10:00:00Z or 2025-12-14).";
const ORDER_MESSAGE: &str = "`start` must be <= `end`.";
