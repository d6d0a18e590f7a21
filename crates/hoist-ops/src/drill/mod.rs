//! Drills: rehearsals that prove the platform can recover, run against the real hosts.
//!
//! [`restore`] restores a repository's backup into a scratch container and proves it is a working
//! database; [`objectstore_outage`] stops the object store while the primary keeps committing and
//! proves archiving caught up; [`failover`] loses the primary, promotes a standby and puts the
//! declared topology back. Each takes the host and engine seams and reports one check per step,
//! failures included; each puts back what it stopped, even when cancelled.

mod failover;
mod outage;
mod restore;

pub use failover::{FailoverConfig, failover};
pub use outage::{OutageConfig, objectstore_outage};
pub use restore::{RestoreConfig, SCRATCH, restore};

/// The label every scratch container of a drill carries, valued with the drill's name.
const LABEL: &str = "io.hoist.drill";
