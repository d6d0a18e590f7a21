//! hoist's operations: what a command calls once its arguments are options. Each operation takes
//! an options struct and the handles it works through (the [`hoist_remote::Host`] and
//! [`hoist_remote::Engine`] seams, a cancellation token), never concrete transports, so its logic
//! is tested on the in-memory fakes of `hoist_remote::fake`.
//!
//! - [`apply`]: executing a reviewed plan, health-gated, play by play, under per-host locks.
//! - [`drill`]: rehearsals on the real hosts (restore, object-store outage, failover).
//! - [`observe`]: many hosts observed at once, per-host failures kept as results.
//! - [`status`]: what hoist manages on a host, and a service's logs.
//! - [`validate`]: the checks behind `hoist validate` and a playbook's `validate` step.

pub mod apply;
pub mod drill;
pub mod error;
pub mod observe;
pub mod release;
pub mod sandbox;
pub mod status;
pub mod validate;

pub use error::{Error, Result};
