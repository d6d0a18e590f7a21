//! What hoist owns on a host that the playbook no longer wants, and the scratch leftovers of
//! an interrupted replacement.

use std::collections::BTreeMap;

use crate::desired::{self, HostDesired, labels};
use crate::observed::DockerState;

use super::{Change, ChangeAction, Reason, ResourceKind, change};

/// Scratch containers an interrupted replacement left behind: removing them is part of
/// converging (they are hoist's own, never the user's), so they are changes, not deletions.
pub(super) fn leftovers(want: &HostDesired, docker: &DockerState) -> Vec<Change> {
    docker
        .containers
        .keys()
        .filter(|name| {
            desired::scratch::base(name)
                .is_some_and(|b| want.containers.iter().any(|c| c.name == b))
        })
        .map(|name| {
            change(
                ResourceKind::Container,
                name,
                ChangeAction::Delete,
                vec![Reason::new("name", "left by an interrupted replacement")],
                false,
            )
        })
        .collect()
}

/// Replicas above a service's count (`deploy.replicas` lowered): removing them is part of
/// converging that service, not a deletion left for `--prune`, since they would keep its name
/// on the network and take its traffic.
pub(super) fn surplus_replicas(want: &HostDesired, docker: &DockerState) -> Vec<Change> {
    docker
        .containers
        .iter()
        .filter(|(name, c)| surplus(want, name, &c.labels))
        .map(|(name, _)| {
            change(
                ResourceKind::Container,
                name,
                ChangeAction::Delete,
                vec![Reason::new("replicas", "scaled down")],
                false,
            )
        })
        .collect()
}

/// A container of a wanted service (by hoist's project and service labels) that is not one of
/// its wanted containers.
fn surplus(want: &HostDesired, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let (Some(project), Some(service)) = (labels.get(labels::PROJECT), labels.get(labels::SERVICE))
    else {
        return false;
    };
    desired::scratch::base(name).is_none()
        && !want.containers.iter().any(|c| c.name == name)
        && want
            .containers
            .iter()
            .any(|c| &c.project == project && &c.service == service)
}

/// What hoist owns on the host (labelled with one of its projects) that the playbook no longer wants.
pub(super) fn deletions(want: &HostDesired, docker: &DockerState) -> Vec<Change> {
    let mut out = Vec::new();
    let owned = |l: &BTreeMap<String, String>| {
        l.get(labels::PROJECT)
            .is_some_and(|p| want.projects.contains(p))
    };
    let wanted: Vec<&str> = want.containers.iter().map(|c| c.name.as_str()).collect();
    for (name, c) in &docker.containers {
        let leftover = desired::scratch::base(name).is_some_and(|b| wanted.contains(&b));
        if owned(&c.labels)
            && !wanted.contains(&name.as_str())
            && !leftover
            && !surplus(want, name, &c.labels)
        {
            out.push(change(
                ResourceKind::Container,
                name,
                ChangeAction::Delete,
                vec![Reason::new("service", "no longer in the stack")],
                false,
            ));
        }
    }
    for (name, v) in &docker.volumes {
        if owned(&v.labels) && !want.volumes.contains_key(name) {
            out.push(change(
                ResourceKind::Volume,
                name,
                ChangeAction::Delete,
                vec![Reason::new(
                    "volume",
                    "no longer in the stack (its data is lost)",
                )],
                false,
            ));
        }
    }
    for (name, n) in &docker.networks {
        if owned(&n.labels) && !want.networks.contains_key(name) {
            out.push(change(
                ResourceKind::Network,
                name,
                ChangeAction::Delete,
                vec![Reason::new("network", "no longer in the stack")],
                false,
            ));
        }
    }
    out
}
