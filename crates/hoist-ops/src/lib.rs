//! hoist's operations: what a command calls once its arguments are options. Each operation takes
//! an options struct and the handles it works through (the [`hoist_remote::Host`] and
//! [`hoist_remote::Engine`] seams, a cancellation token), never concrete transports, so its logic
//! is tested on the in-memory fakes of `hoist_remote::fake`.
//!
//! - [`apply`]: executing a reviewed plan, health-gated, play by play, under per-host locks.
//! - [`drill`]: rehearsals on the real hosts (restore, object-store outage, failover).

pub mod apply;
pub mod drill;
