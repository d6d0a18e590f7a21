//! In-memory [`Host`](crate::Host) and [`Engine`](crate::Engine) for the operations' tests: state
//! held in memory, every call recorded in order, and faults on request (fail, stall, cut a
//! transfer short) at the call that matches.
//!
//! A [`FakeHost`] interprets the fixed scripts of [`crate::script`] (files, lock, engine facts,
//! install, start), so what an operation sends is what a real host would receive. Its
//! [`FakeEngine`] shares the host's call log and faults: a test reads one ordered list of calls.

mod engine;
mod host;

use std::sync::{Arc, Mutex, MutexGuard};

pub use engine::{Behaviour, FakeEngine};
pub use host::{FakeFile, FakeHost};

use crate::error::{ErrorKind, RemoteError, Result};

/// What a fault does at the call it matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The call fails with this kind and detail.
    Fail(ErrorKind, String),
    /// The call never returns (until the test's future is dropped or cancelled).
    Stall,
    /// The call's standard input is cut after this many bytes (a dropped connection).
    Truncate(usize),
}

#[derive(Debug)]
struct Rule {
    /// Matches a call whose description starts with it.
    prefix: String,
    fault: Fault,
    /// How many more calls it applies to.
    times: usize,
}

/// The call log and the faults, shared by a host and its engine.
#[derive(Debug, Default)]
struct Journal {
    calls: Vec<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<Journal>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `call` and returns the fault it meets, if any.
    fn record(&self, call: String) -> Option<Fault> {
        let mut j = self.lock();
        let fault = j
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && call.starts_with(&r.prefix))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            });
        j.calls.push(call);
        fault
    }

    /// Records `call` and acts out a failure or a stall; a truncation is the caller's to apply.
    async fn enter(&self, host: &str, call: String) -> Result<Option<usize>> {
        match self.record(call) {
            None => Ok(None),
            Some(Fault::Fail(kind, detail)) => Err(RemoteError::new(host, kind, detail)),
            Some(Fault::Stall) => std::future::pending().await,
            Some(Fault::Truncate(n)) => Ok(Some(n)),
        }
    }
}
