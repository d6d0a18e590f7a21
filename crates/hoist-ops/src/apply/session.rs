//! One whole `hoist apply` from connected hosts to a report: lock every host, observe the locked
//! ones, plan, let the caller review the plan (print it, compare it with a saved one, ask), apply
//! exactly it, release the locks, whatever happened in between.

use std::collections::BTreeMap;

use hoist_core::desired::Desired;
use hoist_core::observed::Observed;
use hoist_core::plan::Plan;
use hoist_core::secret::Redactor;
use hoist_remote::Host;
use hoist_remote::error::RemoteError;
use hoist_remote::images::LocalImages;
use tokio_util::sync::CancellationToken;

use super::{ApplyOptions, ApplyReport, Events, Handles, Validator, lock};
use crate::observe;

/// What the caller decided once it saw the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    Apply,
    /// Nothing to do, or not wanted: the hosts are left as they are.
    Stop,
}

/// How a session went: the plan it made, the hosts it could not lock or observe, and the report
/// when it applied.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    pub unreachable: BTreeMap<String, RemoteError>,
    pub report: Option<ApplyReport>,
}

/// What a session works on: the connected hosts, what they should have, and what apply works
/// through (the locks are the session's own).
pub struct Session<'a, H: Host, L: LocalImages> {
    pub hosts: &'a BTreeMap<String, H>,
    pub desired: &'a Desired,
    /// Take the lock even if another run holds it.
    pub break_lock: bool,
    pub local: &'a L,
    pub validator: Option<&'a dyn Validator>,
    pub redactor: &'a Redactor,
    pub events: Events,
    pub cancel: CancellationToken,
}

impl<H: Host, L: LocalImages> std::fmt::Debug for Session<'_, H, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .field("break_lock", &self.break_lock)
            .finish_non_exhaustive()
    }
}

/// Runs the session; `plan` turns what was observed into the plan (the hosts that failed are
/// left out), `review` sees the plan while every host is locked. The locks are released on every
/// path, a review's error included.
pub async fn run<H, L, P, R, E>(
    s: Session<'_, H, L>,
    unreachable: BTreeMap<String, RemoteError>,
    opts: &ApplyOptions,
    plan: P,
    review: R,
) -> Result<Outcome, E>
where
    H: Host,
    L: LocalImages,
    P: FnOnce(&Observed, &BTreeMap<String, RemoteError>) -> Plan,
    R: AsyncFnOnce(&Plan, &BTreeMap<String, RemoteError>) -> Result<Review, E>,
{
    let mut unreachable = unreachable;
    let (locks, refused) = lock::acquire_all(s.hosts, s.break_lock, opts.forks, &s.events).await;
    unreachable.extend(refused);
    let mut desired = s.desired.clone();
    desired.hosts.retain(|h, _| locks.holds(h));
    let (observed, failed) = observe::all(s.hosts, &desired, opts.forks).await;
    unreachable.extend(failed);
    let plan = plan(&observed, &unreachable);
    let decided = review(&plan, &unreachable).await;
    let report = match decided {
        Ok(Review::Apply) => {
            let handles = Handles {
                hosts: s.hosts,
                locks: &locks,
                local: s.local,
                validator: s.validator,
                redactor: s.redactor,
                events: s.events.clone(),
                cancel: s.cancel.clone(),
            };
            Some(super::apply(&handles, s.desired, &plan, opts).await)
        }
        Ok(Review::Stop) | Err(_) => None,
    };
    lock::release_all(s.hosts, locks).await;
    decided.map(|_| Outcome {
        plan,
        unreachable,
        report,
    })
}
