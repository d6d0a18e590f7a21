//! hoist's IO edge: everything that touches a host.
//!
//! - [`apply`]: executing a reviewed plan, health-gated, play by play.
//! - [`ssh`]: one multiplexed OpenSSH master per host (the `openssh` crate, native mux), reused for
//!   every command, file transfer and the forwarded Docker socket.
//! - [`script`]: the one place remote command lines are built, as argument vectors.
//! - [`files`]: reading managed files and putting them atomically.
//! - [`engine`]: observing, installing, configuring and starting the Docker engine.
//! - [`drill`]: rehearsals on the real hosts (restore a backup into a scratch container).
//! - [`docker`]: the engine's API through the forwarded socket (bollard): observe and apply.
//! - [`observe`]: a host's observed state in few round trips.
//! - [`https`]: HTTPS through a forwarded port, verified as the service's own name.
//! - [`images`]: building images locally and streaming them to hosts without a registry.
//! - [`sandbox`]: the local sandbox of test hosts (containers with sshd and their own engine).
//!
//! Only this crate spawns processes or opens sockets to hosts.

pub mod apply;
pub mod binaries;
pub mod docker;
pub mod drill;
pub mod engine;
pub mod error;
pub mod files;
pub mod https;
pub mod images;
pub mod observe;
pub mod sandbox;
pub mod script;
pub mod ssh;
pub mod validate;

pub use error::RemoteError;
pub use ssh::{ConnectOptions, SshHost};
