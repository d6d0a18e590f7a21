//! The desired state a playbook asks of a project's hosts: step by step (engine, files, stacks,
//! actions), each host's files, images, networks, volumes and containers.

use std::collections::BTreeMap;

use crate::desired::{self, ActionSpec, Content, Desired, EngineSpec, FileSpec, HostDesired};
use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::playbook::{self, Action, Playbook, Wait};
use crate::stack::Stack;

use super::Project;
use super::stacks::{container_name, private};

/// A path on a host that hoist writes: absolute, normalised (no `.` or `..`, no `//`), and free of
/// the characters a remote script or a log line could be confused by.
pub(crate) fn host_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path == "/" {
        return Err("\"/\" is a folder, not a file".into());
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(format!("{path:?} holds a control character"));
    }
    if path.len() > 1
        && (path.ends_with('/')
            || path[1..]
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == ".."))
    {
        return Err(format!(
            "{path:?} is not a normal path (no `.`, `..`, empty parts or final `/`)"
        ));
    }
    Ok(())
}

impl Project {
    /// Whether a file step's `src` leads out of the project (`..`, an absolute path, a link).
    fn outside(&self, src: &str) -> bool {
        let path = std::path::Path::new(src);
        !path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) || !self.source.within(&self.root, &self.root.join(path))
    }

    /// The desired state of every host the playbook touches.
    pub fn desired(
        &self,
        book: &Playbook,
        limit: Option<&[String]>,
        diags: &mut Diagnostics,
    ) -> Desired {
        let mut out = Desired {
            plays: book.plays.iter().map(|p| p.name.clone()).collect(),
            ..Desired::default()
        };
        let mut lowered: BTreeMap<(String, String, Vec<String>), Option<Stack>> = BTreeMap::new();
        for (play_index, play) in book.plays.iter().enumerate() {
            let hosts = match self.inventory.select(&play.hosts) {
                Ok(h) => h,
                Err(e) => {
                    diags.error(&book.source, play.loc, "hosts", Kind::UnknownReference, e);
                    continue;
                }
            };
            if let Some(serial) = play.serial {
                out.serial.insert(
                    play_index,
                    desired::PlaySerial {
                        play: play.name.clone(),
                        serial,
                        hosts: hosts.clone(),
                    },
                );
            }
            for host in hosts.iter().filter(|h| limit.is_none_or(|l| l.contains(h))) {
                let address = self
                    .inventory
                    .hosts
                    .get(host)
                    .map(|h| h.address.clone())
                    .unwrap_or_default();
                let hd = out
                    .hosts
                    .entry(host.clone())
                    .or_insert_with(|| HostDesired {
                        address,
                        ..HostDesired::default()
                    });
                let (containers, actions) = (hd.containers.len(), hd.actions.len());
                for step in &play.steps {
                    self.apply_step(book, &play.name, step, host, hd, &mut lowered, diags);
                }
                hd.containers[containers..]
                    .iter_mut()
                    .for_each(|c| c.play = play_index);
                hd.actions[actions..]
                    .iter_mut()
                    .for_each(|a| a.play_index = play_index);
            }
        }
        one_build_per_image(book, &out, diags);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_step(
        &self,
        book: &Playbook,
        play: &str,
        step: &playbook::Step,
        host: &str,
        hd: &mut HostDesired,
        lowered: &mut BTreeMap<(String, String, Vec<String>), Option<Stack>>,
        diags: &mut Diagnostics,
    ) {
        let src = &book.source;
        let field = step.action.keyword();
        match &step.action {
            Action::Engine { daemon } => {
                let mut config = desired::default_daemon_config();
                if let (Some(base), Some(extra)) = (config.as_object_mut(), daemon.as_object()) {
                    base.extend(extra.clone());
                }
                hd.engine = Some(EngineSpec { daemon: config });
            }
            Action::File {
                template,
                src: file_src,
                dest,
                mode,
                owner,
                group,
            } => {
                let Some(dest) = self.render_field(dest, host, src, step.loc, "file.dest", diags)
                else {
                    return;
                };
                if let Err(why) = host_path(&dest) {
                    diags.error(src, step.loc, "file.dest", Kind::InvalidValue, why);
                    return;
                }
                let (content, origin) = match (template, file_src) {
                    (Some(t), _) => {
                        match self.render_template(t, host, src, step.loc, "file.template", diags) {
                            Some(c) => (Content::Text(c), format!("templates/{t}")),
                            None => return,
                        }
                    }
                    // Inside the project only: no `..`, no link that leads out of it.
                    (None, Some(s)) => {
                        // `./files/x` is `files/x`.
                        let inside: std::path::PathBuf = std::path::Path::new(s)
                            .components()
                            .filter(|c| !matches!(c, std::path::Component::CurDir))
                            .collect();
                        match self.source.read_inside_bytes(&self.root, &inside) {
                            Ok(c) => (Content::from_bytes(c), s.clone()),
                            Err(e) => {
                                let (kind, message) = if self.outside(s) {
                                    (
                                        Kind::InvalidValue,
                                        format!(
                                            "{s:?} is outside the project (links resolved): a file step reads only the repository's own files"
                                        ),
                                    )
                                } else {
                                    (Kind::UnknownReference, format!("cannot read {s}: {e}"))
                                };
                                diags.error(src, step.loc, "file.src", kind, message);
                                return;
                            }
                        }
                    }
                    (None, None) => return,
                };
                let spec = FileSpec {
                    path: dest.clone(),
                    sensitive: private(*mode),
                    content,
                    mode: *mode,
                    owner: owner.clone(),
                    group: group.clone(),
                    origin,
                };
                self.add_file(hd, spec, src, step.loc, host, diags);
            }
            Action::Stack { stack, .. } | Action::Images { stack } => {
                let (profiles, only_images) = match &step.action {
                    Action::Stack { profiles, .. } => (profiles.clone(), false),
                    _ => (Vec::new(), true),
                };
                let Some(file) = self.stacks.get(stack) else {
                    diags.error(
                        src,
                        step.loc,
                        field,
                        Kind::UnknownReference,
                        format!("no stack `{stack}` (stacks/{stack}.yml)"),
                    );
                    return;
                };
                match self.inventory.select(&file.hosts) {
                    _ if file.hosts.is_empty() => {}
                    Ok(bound) if !bound.iter().any(|h| h == host) => {
                        diags.error(src, step.loc, field, Kind::InvalidValue, format!("stack `{stack}` is bound to `{}`, which does not include host `{host}`", file.hosts));
                        return;
                    }
                    Err(_) => return,
                    Ok(_) => {}
                }
                let key = (stack.clone(), host.to_owned(), profiles.clone());
                let lowered_stack = lowered
                    .entry(key)
                    .or_insert_with(|| self.lower(file, host, &profiles, diags));
                let Some(st) = lowered_stack.clone() else {
                    return;
                };
                self.add_stack(hd, &st, only_images, src, step.loc, host, diags);
            }
            Action::Wait(w) => {
                if let Wait::Service { stack, service, .. } = w {
                    self.check_service(src, step.loc, field, stack, service, diags);
                }
                hd.actions.extend(ActionSpec::from_action(
                    play,
                    step.name.clone(),
                    &step.action,
                    None,
                ));
            }
            Action::Exec { stack, service, .. } => {
                let container = self.check_service(src, step.loc, field, stack, service, diags);
                hd.actions.extend(ActionSpec::from_action(
                    play,
                    step.name.clone(),
                    &step.action,
                    container,
                ));
            }
            Action::Validate { .. } => hd.actions.extend(ActionSpec::from_action(
                play,
                step.name.clone(),
                &step.action,
                None,
            )),
        }
    }

    /// Checks that `stack` has `service`; returns its container name.
    fn check_service(
        &self,
        src: &SourceName,
        loc: Loc,
        field: &str,
        stack: &str,
        service: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        let Some(file) = self.stacks.get(stack) else {
            diags.error(
                src,
                loc,
                field,
                Kind::UnknownReference,
                format!("no stack `{stack}`"),
            );
            return None;
        };
        let services = match &file.node.value {
            crate::yaml::Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some("services"))
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        let found = match services.as_ref().map(|s| &s.value) {
            Some(crate::yaml::Value::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some(service))
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        let Some(body) = found else {
            diags.error(
                src,
                loc,
                field,
                Kind::UnknownReference,
                format!("stack `{stack}` has no service `{service}`"),
            );
            return None;
        };
        let explicit = match &body.value {
            crate::yaml::Value::Map(e) => e
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some("container_name"))
                .and_then(|(_, v)| v.scalar_text()),
            _ => None,
        };
        Some(explicit.unwrap_or_else(|| container_name(&file.project, service)))
    }

    pub(super) fn add_file(
        &self,
        hd: &mut HostDesired,
        spec: FileSpec,
        src: &SourceName,
        loc: Loc,
        host: &str,
        diags: &mut Diagnostics,
    ) {
        match hd.files.get(&spec.path) {
            Some(existing)
                if existing.content != spec.content
                    || existing.mode != spec.mode
                    || existing.owner != spec.owner =>
            {
                diags.error(
                    src,
                    loc,
                    "",
                    Kind::Duplicate,
                    format!(
                        "{} is placed twice on host {host} with different content or mode",
                        spec.path
                    ),
                );
            }
            _ => {
                hd.files.insert(spec.path.clone(), spec);
            }
        }
    }
}

/// An image is built once per run, whichever host asks first, and that build goes to every host:
/// a reference two hosts would build differently (build args, secrets or files from each host's
/// variables) is an error, located at the play of the second host.
fn one_build_per_image(book: &Playbook, desired: &Desired, diags: &mut Diagnostics) {
    let mut first: BTreeMap<&str, (&str, &desired::ImageSpec)> = BTreeMap::new();
    for (host, hd) in &desired.hosts {
        for (reference, spec) in &hd.images {
            if !matches!(spec.source, desired::ImageSource::Build { .. }) {
                continue;
            }
            let Some((other, seen)) = first.get(reference.as_str()) else {
                first.insert(reference, (host.as_str(), spec));
                continue;
            };
            if *seen == spec {
                continue;
            }
            let user = hd.containers.iter().find(|c| &c.image == reference);
            let play = user
                .and_then(|c| book.plays.get(c.play))
                .or(book.plays.first());
            diags.error(
                &book.source,
                play.map(|p| p.loc).unwrap_or_default(),
                &format!(
                    "services.{}.image",
                    user.map_or("?", |c| c.service.as_str())
                ),
                Kind::Duplicate,
                format!(
                    "image {reference} would be built differently for hosts {other} and {host} (its build args, files or secrets differ), and one build goes to every host: give each variant a reference of its own (`image: name:${{variant}}`)"
                ),
            );
        }
    }
}
