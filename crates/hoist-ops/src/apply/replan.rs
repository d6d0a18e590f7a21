//! After the engine is installed or started, what was unknown at review is known: the host is
//! observed and planned again, and [`resolve`] keeps only what resolves the reviewed unknowns.
//! Anything new (a change to a resource the reviewed plan did not touch, a deletion it did not
//! list) is refused: it was never shown to anyone.

use hoist_core::plan::{Change, HostPlan, ResourceKind};

/// Why a fresh plan cannot stand in for the reviewed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreviewed(pub Vec<String>);

impl std::fmt::Display for Unreviewed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "once the engine answered, the host needs changes the reviewed plan did not show ({}); plan again",
            self.0.join(", ")
        )
    }
}

fn key(c: &Change) -> (ResourceKind, &str) {
    (c.kind, c.name.as_str())
}

fn describe(c: &Change) -> String {
    format!("{} {} {}", c.action.as_str(), c.kind.as_str(), c.name)
}

/// The reviewed plan with its unknown changes replaced by what the fresh plan says of them.
/// Known reviewed changes stay as reviewed; a reviewed unknown that the fresh plan no longer needs
/// is dropped; the engine's own changes are done and left out. An unknown container may resolve
/// into a recreate: a host whose engine was down while one of its mounted files changed (a
/// reviewed, known change) catches up so.
pub fn resolve(reviewed: &HostPlan, fresh: &HostPlan, prune: bool) -> Result<HostPlan, Unreviewed> {
    let mut extra = Vec::new();
    let mut changes = Vec::new();
    for c in reviewed
        .changes
        .iter()
        .filter(|c| c.kind != ResourceKind::Engine)
    {
        if !c.unknown {
            changes.push(c.clone());
        } else if let Some(now) = fresh.changes.iter().find(|f| key(f) == key(c)) {
            changes.push(now.clone());
        }
    }
    for f in fresh
        .changes
        .iter()
        .filter(|c| c.kind != ResourceKind::Engine)
    {
        if !reviewed.changes.iter().any(|c| key(c) == key(f)) {
            extra.push(describe(f));
        }
    }
    let mut deletions = Vec::new();
    for d in &fresh.deletions {
        if reviewed.deletions.iter().any(|r| key(r) == key(d)) {
            deletions.push(d.clone());
        } else if prune {
            extra.push(describe(d));
        }
    }
    if !extra.is_empty() {
        return Err(Unreviewed(extra));
    }
    Ok(HostPlan {
        changes,
        deletions,
        ..reviewed.clone()
    })
}

#[cfg(test)]
mod tests {
    use hoist_core::plan::ChangeAction;

    use super::*;

    fn change(kind: ResourceKind, name: &str, action: ChangeAction, unknown: bool) -> Change {
        Change {
            kind,
            name: name.into(),
            action,
            reasons: Vec::new(),
            diff: None,
            unknown,
            desired_hash: String::new(),
        }
    }

    fn plan(changes: Vec<Change>, deletions: Vec<Change>) -> HostPlan {
        HostPlan {
            host: "h".into(),
            address: "h".into(),
            changes,
            deletions,
            actions: Vec::new(),
            notes: Vec::new(),
            observed_hash: String::new(),
        }
    }

    use ChangeAction::*;
    use ResourceKind::*;

    #[test]
    fn unknown_changes_take_what_the_engine_says() {
        let reviewed = plan(
            vec![
                change(Engine, "docker", Start, false),
                change(File, "/etc/a", Create, false),
                change(Container, "db", Create, true),
                change(Container, "api", Create, true),
            ],
            Vec::new(),
        );
        let fresh = plan(
            vec![
                change(File, "/etc/a", Create, false),
                change(Container, "db", Recreate, false),
            ],
            Vec::new(),
        );
        let got = resolve(&reviewed, &fresh, false).expect("resolves");
        let actions: Vec<String> = got.changes.iter().map(describe).collect();
        assert_eq!(actions, ["create file /etc/a", "recreate container db"]);
    }

    #[test]
    fn a_change_never_reviewed_is_refused() {
        let reviewed = plan(vec![change(Container, "db", Create, true)], Vec::new());
        let fresh = plan(
            vec![
                change(Container, "db", Create, false),
                change(Network, "legacy", Recreate, false),
            ],
            Vec::new(),
        );
        let e = resolve(&reviewed, &fresh, false).expect_err("refused");
        assert_eq!(e.0, ["recreate network legacy"]);
    }

    #[test]
    fn a_new_deletion_is_refused_only_when_deletions_would_run() {
        let reviewed = plan(vec![change(Container, "db", Create, true)], Vec::new());
        let fresh = plan(
            vec![change(Container, "db", Create, false)],
            vec![change(Container, "old", Delete, false)],
        );
        assert!(resolve(&reviewed, &fresh, false).is_ok_and(|p| p.deletions.is_empty()));
        let e = resolve(&reviewed, &fresh, true).expect_err("refused");
        assert_eq!(e.0, ["delete container old"]);
    }
}
