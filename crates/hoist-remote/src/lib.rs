//! hoist's IO edge: everything that touches a host, behind two seams.
//!
//! - [`host`]: the [`Host`] seam (run an argument vector with stdin; reach the engine).
//! - [`engine`]: the [`Engine`] seam (containers, networks, volumes, images, exec, logs, state).
//! - [`ssh`]: the real [`Host`]: one multiplexed OpenSSH master per host (the `openssh` crate,
//!   native mux), reused for every command, file transfer and the forwarded Docker socket.
//! - [`docker`]: the real [`Engine`]: the engine's API through the forwarded socket (bollard).
//! - [`fake`]: in-memory [`Host`] and [`Engine`] that record every call and fail or stall on
//!   request, for the operations' tests.
//! - [`script`]: the one place remote command lines are built, as argument vectors.
//! - [`files`]: reading managed files and putting them atomically, verified.
//! - [`setup`]: observing, installing, configuring and starting the Docker engine.
//! - [`observe`]: a host's observed state in few round trips.
//! - [`images`]: building images locally and streaming them to hosts without a registry.
//! - [`binaries`]: the binaries a build context gets first (workspace packages, crates.io crates).
//! - [`https`]: HTTPS through a forwarded port, verified as the service's own name.
//! - [`local`]: the controller's own engine and programs (installed and started when needed).
//!
//! Only this crate spawns processes or opens sockets to hosts.

// The transport crate is where processes are spawned (ssh, docker, cargo for image binaries).
#![allow(clippy::disallowed_methods)]

pub mod binaries;
pub mod docker;
pub mod engine;
pub mod error;
pub mod fake;
pub mod files;
pub mod host;
pub mod https;
pub mod images;
pub mod local;
pub mod observe;
pub mod script;
pub mod setup;
pub mod ssh;

pub use engine::Engine;
pub use error::{ErrorKind, RemoteError};
pub use host::Host;
pub use ssh::{ConnectOptions, SshHost};
