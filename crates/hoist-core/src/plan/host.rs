//! One host's plan: its engine, files, images, networks, volumes and containers, in that order.

use crate::desired::{HostDesired, ImageSource, labels};
use crate::observed::{DockerState, HostObserved};
use crate::secret::Redactor;

use super::deletions::{deletions, leftovers, surplus_replicas};
use super::file::{diff_file, unified};
use super::resources;
use super::{
    Change, ChangeAction, HostPlan, PlannedAction, Reason, ResourceKind, change, change_hashed,
    container, fingerprint, same_image,
};

pub(super) fn diff_host(
    name: &str,
    want: &HostDesired,
    have: &HostObserved,
    redactor: &Redactor,
) -> HostPlan {
    let mut changes = Vec::new();
    let mut notes = Vec::new();

    // The engine gates everything that lives in it.
    let mut docker_unknown = have.docker.is_none();
    if let Some(engine) = &want.engine {
        match &have.engine {
            None => {
                changes.push(change(
                    ResourceKind::Engine,
                    "docker",
                    ChangeAction::Install,
                    vec![Reason::new("engine", "state unknown")],
                    true,
                ));
                docker_unknown = true;
            }
            Some(e) if !e.installed => {
                changes.push(change(
                    ResourceKind::Engine,
                    "docker",
                    ChangeAction::Install,
                    vec![Reason::new("installed", "no -> yes")],
                    false,
                ));
                docker_unknown = true;
            }
            Some(e) => {
                let daemon_want =
                    serde_json::to_string_pretty(&engine.daemon).unwrap_or_default() + "\n";
                let daemon_have = e
                    .daemon
                    .as_ref()
                    .map(|d| serde_json::to_string_pretty(d).unwrap_or_default() + "\n");
                if e.daemon.as_ref() != Some(&engine.daemon) {
                    let mut c = change(
                        ResourceKind::Engine,
                        "docker",
                        ChangeAction::Configure,
                        vec![Reason::new("daemon.json", "content differs")],
                        false,
                    );
                    c.diff = Some(unified(
                        "/etc/docker/daemon.json",
                        daemon_have.as_deref().unwrap_or(""),
                        &daemon_want,
                        redactor,
                    ));
                    changes.push(c);
                } else if !e.running {
                    changes.push(change(
                        ResourceKind::Engine,
                        "docker",
                        ChangeAction::Start,
                        vec![Reason::new("running", "no -> yes")],
                        false,
                    ));
                }
            }
        }
    }
    if docker_unknown && (!want.containers.is_empty() || !want.images.is_empty()) {
        notes.push("the Docker engine is not installed or not answering: its images, networks, volumes and containers are known after engine setup".into());
    }

    for file in want.files.values() {
        if let Some(c) = diff_file(file, have.files.get(&file.path), redactor) {
            changes.push(c);
        }
    }

    let empty = DockerState::default();
    let docker = have.docker.as_ref().unwrap_or(&empty);
    let mut rebuilt = Vec::new();
    for img in want.images.values() {
        let present = docker
            .images
            .iter()
            .find(|i| i.tags.iter().any(|t| same_image(t, &img.reference)));
        let c = match (&img.source, present) {
            (
                ImageSource::Build {
                    context,
                    context_hash,
                    session,
                    ..
                },
                None,
            ) => Some(change_hashed(
                ResourceKind::Image,
                &img.reference,
                ChangeAction::Build,
                vec![Reason::new(
                    "image",
                    format!("not on host (built from {context}{})", reads(session)),
                )],
                docker_unknown,
                context_hash,
            )),
            (
                ImageSource::Build {
                    context,
                    context_hash,
                    session,
                    ..
                },
                Some(p),
            ) if p.labels.get(labels::CONTEXT_HASH) != Some(context_hash) => {
                rebuilt.push((img.reference.clone(), "is rebuilt".to_owned()));
                Some(change_hashed(
                    ResourceKind::Image,
                    &img.reference,
                    ChangeAction::Build,
                    vec![Reason::new(
                        "build context",
                        format!("{context} changed{}", reads(session)),
                    )],
                    docker_unknown,
                    context_hash,
                ))
            }
            (ImageSource::Pull, None) => Some(change(
                ResourceKind::Image,
                &img.reference,
                ChangeAction::Pull,
                vec![Reason::new("image", "not on host")],
                docker_unknown,
            )),
            (ImageSource::Release { id }, p) if p.is_none_or(|p| &p.id != id) => {
                rebuilt.push((
                    img.reference.clone(),
                    format!("goes back to {}", short_id(id)),
                ));
                Some(change_hashed(
                    ResourceKind::Image,
                    &img.reference,
                    ChangeAction::Update,
                    vec![Reason::new("image", format!("back to {}", short_id(id)))],
                    docker_unknown,
                    id,
                ))
            }
            _ => None,
        };
        changes.extend(c);
    }
    let mut recreated_networks = Vec::new();
    for net in want.networks.values().filter(|n| !n.external) {
        match docker.networks.get(&net.name) {
            None => changes.push(change(
                ResourceKind::Network,
                &net.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            )),
            Some(o) => {
                let reasons = resources::network_reasons(net, o);
                if !reasons.is_empty() {
                    recreated_networks.push(net.name.clone());
                    changes.push(change(
                        ResourceKind::Network,
                        &net.name,
                        ChangeAction::Recreate,
                        reasons,
                        docker_unknown,
                    ));
                }
            }
        }
    }
    for vol in want.volumes.values().filter(|v| !v.external) {
        match docker.volumes.get(&vol.name) {
            None => changes.push(change(
                ResourceKind::Volume,
                &vol.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            )),
            Some(o) => notes.extend(resources::volume_note(vol, o)),
        }
    }

    let changed_files: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == ResourceKind::File)
        .map(|c| c.name.clone())
        .collect();
    let completion_deps: Vec<&str> = want
        .containers
        .iter()
        .flat_map(|c| c.waits_for())
        .filter(|(_, k)| **k == crate::stack::ConditionKind::ServiceCompletedSuccessfully)
        .map(|(n, _)| n.as_str())
        .collect();
    for spec in &want.containers {
        let c = match docker.containers.get(&spec.name) {
            None => Some(change_hashed(
                ResourceKind::Container,
                &spec.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
                &spec.config_hash,
            )),
            Some(o) => {
                let mut reasons = container::explain(spec, o, redactor);
                for f in spec
                    .mounted_files
                    .keys()
                    .filter(|f| changed_files.contains(f))
                {
                    reasons.push(Reason::new("mounted file", format!("{f} content changed")));
                }
                if let Some((_, how)) = rebuilt.iter().find(|(r, _)| *r == spec.image) {
                    reasons.push(Reason::new("image", format!("{} {how}", spec.image)));
                } else if let Some(current) = docker
                    .images
                    .iter()
                    .find(|i| i.tags.iter().any(|t| same_image(t, &spec.image)))
                    && !o.image_id.is_empty()
                    && current.id != o.image_id
                {
                    reasons.push(Reason::new(
                        "image",
                        format!("{} now points to a newer image", spec.image),
                    ));
                }
                if reasons.is_empty()
                    && o.labels.get(labels::CONFIG_HASH) != Some(&spec.config_hash)
                {
                    reasons.push(Reason::new(
                        "config-hash",
                        "not created by hoist from this spec",
                    ));
                }
                if !reasons.is_empty() {
                    Some(change_hashed(
                        ResourceKind::Container,
                        &spec.name,
                        ChangeAction::Recreate,
                        reasons,
                        docker_unknown,
                        &spec.config_hash,
                    ))
                } else if o.state != "running"
                    && !(completion_deps.contains(&spec.name.as_str()) && o.exit_code == Some(0))
                {
                    let state = if o.state.is_empty() {
                        "stopped"
                    } else {
                        o.state.as_str()
                    };
                    Some(change_hashed(
                        ResourceKind::Container,
                        &spec.name,
                        ChangeAction::Start,
                        vec![Reason::new("state", format!("{state} -> running"))],
                        docker_unknown,
                        &spec.config_hash,
                    ))
                } else {
                    None
                }
            }
        };
        changes.extend(c);
    }

    follow_recreated_networks(
        want,
        docker,
        &recreated_networks,
        &mut changes,
        docker_unknown,
    );
    follow_network_namespaces(want, docker, &mut changes, docker_unknown);
    changes.extend(leftovers(want, docker));
    changes.extend(surplus_replicas(want, docker));
    let deletions = deletions(want, docker);
    let actions = want
        .actions
        .iter()
        .map(|a| PlannedAction {
            play: a.play.clone(),
            name: a.name.clone(),
            describe: a.describe.clone(),
        })
        .collect();
    HostPlan {
        host: name.to_owned(),
        address: want.address.clone(),
        changes,
        deletions,
        actions,
        notes,
        observed_hash: fingerprint(have),
    }
}

/// A container in another's network namespace (`network_mode: service:`) loses its network with
/// that container: when the other is created or recreated, it is recreated after it (start order
/// puts it later), naming why.
fn follow_network_namespaces(
    want: &HostDesired,
    docker: &DockerState,
    changes: &mut Vec<Change>,
    docker_unknown: bool,
) {
    let replaced = |changes: &[Change], name: &str| {
        changes.iter().any(|c| {
            c.kind == ResourceKind::Container
                && c.name == name
                && matches!(c.action, ChangeAction::Create | ChangeAction::Recreate)
        })
    };
    for spec in &want.containers {
        let Some(other) = spec
            .networks
            .keys()
            .find_map(|n| n.strip_prefix("container:"))
        else {
            continue;
        };
        if !replaced(changes, other) || !docker.containers.contains_key(&spec.name) {
            continue;
        }
        let reason = Reason::new("network_mode", format!("joins {other}, which is replaced"));
        recreate_too(changes, spec, reason, docker_unknown);
    }
}

/// A network is recreated with its containers on the host: removing it takes them off it, and
/// each is recreated on the new one, naming why.
fn follow_recreated_networks(
    want: &HostDesired,
    docker: &DockerState,
    recreated: &[String],
    changes: &mut Vec<Change>,
    docker_unknown: bool,
) {
    for spec in &want.containers {
        let Some(net) = spec.networks.keys().find(|n| recreated.contains(n)) else {
            continue;
        };
        if docker.containers.contains_key(&spec.name) {
            let reason = Reason::new("networks", format!("network {net} is recreated"));
            recreate_too(changes, spec, reason, docker_unknown);
        }
    }
}

/// Makes `spec`'s change a recreate for `reason` besides its own ones (a start becomes one).
fn recreate_too(
    changes: &mut Vec<Change>,
    spec: &crate::desired::ContainerSpec,
    reason: Reason,
    docker_unknown: bool,
) {
    match changes
        .iter_mut()
        .find(|c| c.kind == ResourceKind::Container && c.name == spec.name)
    {
        Some(c) if c.action == ChangeAction::Recreate => c.reasons.push(reason),
        Some(c) => {
            c.action = ChangeAction::Recreate;
            c.reasons = vec![reason];
        }
        None => changes.push(change_hashed(
            ResourceKind::Container,
            &spec.name,
            ChangeAction::Recreate,
            vec![reason],
            docker_unknown,
            &spec.config_hash,
        )),
    }
}

/// An image id as the engine prints it short (`sha256:` and twelve digits).
fn short_id(id: &str) -> &str {
    let digits = id.strip_prefix("sha256:").unwrap_or(id);
    digits.get(..12).unwrap_or(digits)
}

/// What a build reads besides its context, as a plan shows it before apply runs it: the secrets by
/// id, and the operator's SSH agent.
fn reads(session: &crate::desired::BuildSession) -> String {
    let mut what: Vec<String> = session
        .secrets
        .iter()
        .map(|s| format!("secret `{}`", s.id))
        .collect();
    if session.ssh {
        what.push("the SSH agent hoist runs with".to_owned());
    }
    if what.is_empty() {
        String::new()
    } else {
        format!("; the build reads {}", what.join(", "))
    }
}
