//! One host's plan: its engine, files, images, networks, volumes and containers, in that order.

use crate::desired::{HostDesired, ImageSource, labels};
use crate::observed::{DockerState, HostObserved};
use crate::secret::Redactor;

use super::deletions::{deletions, leftovers, surplus_replicas};
use super::file::{diff_file, unified};
use super::{
    ChangeAction, HostPlan, PlannedAction, Reason, ResourceKind, change, change_hashed, container,
    fingerprint, same_image,
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
                    ..
                },
                None,
            ) => Some(change_hashed(
                ResourceKind::Image,
                &img.reference,
                ChangeAction::Build,
                vec![Reason::new(
                    "image",
                    format!("not on host (built from {context})"),
                )],
                docker_unknown,
                context_hash,
            )),
            (
                ImageSource::Build {
                    context,
                    context_hash,
                    ..
                },
                Some(p),
            ) if p.labels.get(labels::CONTEXT_HASH) != Some(context_hash) => {
                rebuilt.push((img.reference.clone(), "is rebuilt".to_owned()));
                Some(change_hashed(
                    ResourceKind::Image,
                    &img.reference,
                    ChangeAction::Build,
                    vec![Reason::new("build context", format!("{context} changed"))],
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
    for net in want.networks.values().filter(|n| !n.external) {
        match docker.networks.get(&net.name) {
            None => changes.push(change(
                ResourceKind::Network,
                &net.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            )),
            Some(o) if !o.driver.is_empty() && o.driver != net.driver => changes.push(change(
                ResourceKind::Network,
                &net.name,
                ChangeAction::Recreate,
                vec![Reason::new(
                    "driver",
                    format!("{} -> {}", o.driver, net.driver),
                )],
                docker_unknown,
            )),
            Some(_) => {}
        }
    }
    for vol in want.volumes.values().filter(|v| !v.external) {
        if !docker.volumes.contains_key(&vol.name) {
            changes.push(change(
                ResourceKind::Volume,
                &vol.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            ));
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

/// An image id as the engine prints it short (`sha256:` and twelve digits).
fn short_id(id: &str) -> &str {
    let digits = id.strip_prefix("sha256:").unwrap_or(id);
    digits.get(..12).unwrap_or(digits)
}
