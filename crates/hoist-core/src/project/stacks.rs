//! A stack step of a playbook, lowered for one host into its images, networks, volumes,
//! containers and placed files.

use std::collections::BTreeMap;

use crate::desired::{
    self, ContainerSpec, FileSpec, HostDesired, ImageSource, ImageSpec, NetworkSpec, VolumeSpec,
};
use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::stack::{self, Stack};

use super::Project;
use super::context::context_hash;

impl Project {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_stack(
        &self,
        hd: &mut HostDesired,
        st: &Stack,
        only_images: bool,
        src: &SourceName,
        loc: Loc,
        host: &str,
        diags: &mut Diagnostics,
    ) {
        for (name, svc) in &st.services {
            let spec = match &svc.build {
                Some(b) => ImageSpec {
                    reference: svc.image.clone(),
                    source: ImageSource::Build {
                        context: b.context.clone(),
                        dockerfile: b.dockerfile.clone(),
                        args: b.args.clone(),
                        context_hash: context_hash(&self.source, &self.root, b),
                        binaries: b.binaries.clone(),
                        target: b.target.clone(),
                        session: b.session.clone(),
                    },
                },
                None => ImageSpec {
                    reference: svc.image.clone(),
                    source: ImageSource::Pull,
                },
            };
            match hd.images.get(&spec.reference) {
                Some(existing) if existing != &spec => diags.error(
                    src,
                    loc,
                    &format!("services.{name}.image"),
                    Kind::Duplicate,
                    format!(
                        "image {} is built two different ways on host {host}",
                        spec.reference
                    ),
                ),
                _ => {
                    hd.images.insert(spec.reference.clone(), spec);
                }
            }
        }
        if only_images {
            return;
        }
        hd.projects.insert(st.project.clone());
        for net in st.networks.values() {
            hd.networks.insert(
                net.name.clone(),
                NetworkSpec {
                    name: net.name.clone(),
                    driver: net.driver.clone().unwrap_or_else(|| "bridge".into()),
                    project: st.project.clone(),
                    external: net.external,
                    options: net.options.clone(),
                },
            );
        }
        let mut volume_names = BTreeMap::new();
        for (key, vol) in &st.volumes {
            volume_names.insert(key.clone(), vol.name.clone());
            hd.volumes.insert(
                vol.name.clone(),
                VolumeSpec {
                    name: vol.name.clone(),
                    driver: vol.driver.clone().unwrap_or_else(|| "local".into()),
                    project: st.project.clone(),
                    external: vol.external,
                    options: vol.options.clone(),
                },
            );
        }
        // Each service's containers, by replica number, as compose names them.
        let names: BTreeMap<&String, Vec<String>> = st
            .services
            .iter()
            .map(|(n, s)| {
                let names = match &s.container_name {
                    Some(c) => vec![c.clone()],
                    None => (1..=s.replicas)
                        .map(|i| replica_name(&st.project, n, i))
                        .collect(),
                };
                (n, names)
            })
            .collect();
        let order = stack::start_order(&st.services).unwrap_or_default();
        for name in order {
            let svc = &st.services[&name];
            let mut mounted = BTreeMap::new();
            for f in &svc.files {
                let spec = FileSpec {
                    path: f.path.clone(),
                    sensitive: f.secret || private(f.mode),
                    content: f.content.clone(),
                    mode: f.mode,
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    origin: f.origin.clone(),
                };
                mounted.insert(f.path.clone(), spec.sha256());
                self.add_file(hd, spec, src, loc, host, diags);
            }
            // A network of the stack by the name the engine knows it by.
            let engine_network = |n: &String| {
                st.networks
                    .get(n)
                    .map(|d| d.name.clone())
                    .unwrap_or_else(|| n.clone())
            };
            for (i, replica) in names[&name].iter().enumerate() {
                let mut spec = ContainerSpec {
                    name: replica.clone(),
                    number: u32::try_from(i + 1).unwrap_or(1),
                    project: st.project.clone(),
                    service: name.clone(),
                    image: svc.image.clone(),
                    command: svc.command.clone(),
                    entrypoint: svc.entrypoint.clone(),
                    env: svc.environment.clone(),
                    ports: svc.ports.clone(),
                    mounts: svc
                        .mounts
                        .iter()
                        .map(|m| {
                            desired::mount_spec(&m.source, &volume_names, &m.target, m.read_only)
                        })
                        .collect(),
                    // `network_mode`: the engine's own network, where a container has no alias.
                    networks: match &svc.network_mode {
                        // `service:<name>`: the engine's `container:` mode, with the name of
                        // that service's first container.
                        Some(mode) => {
                            let mode = match mode.strip_prefix("service:") {
                                Some(other) => format!(
                                    "container:{}",
                                    names
                                        .get(&other.to_owned())
                                        .and_then(|n| n.first())
                                        .map_or(other, String::as_str)
                                ),
                                None => mode.clone(),
                            };
                            BTreeMap::from([(mode, Vec::new())])
                        }
                        None => svc
                            .networks
                            .iter()
                            .map(|(n, aliases)| {
                                let mut a = aliases.clone();
                                a.push(name.clone());
                                a.sort();
                                a.dedup();
                                (engine_network(n), a)
                            })
                            .collect(),
                    },
                    // By the engine's network name, as `networks`.
                    addresses: svc
                        .addresses
                        .iter()
                        .map(|(n, a)| (engine_network(n), a.clone()))
                        .collect(),
                    healthcheck: svc.healthcheck.clone(),
                    restart: svc.restart.clone(),
                    labels: svc.labels.clone(),
                    extra_hosts: svc.extra_hosts.clone(),
                    user: svc.user.clone(),
                    working_dir: svc.working_dir.clone(),
                    hostname: svc.hostname.clone(),
                    stop_grace_period_s: svc.stop_grace_period_s,
                    runtime: {
                        let mut rt = svc.runtime.clone();
                        let published: Vec<String> = svc
                            .ports
                            .iter()
                            .map(|p| format!("{}/{}", p.target, p.protocol))
                            .collect();
                        rt.normalize(&published);
                        rt
                    },
                    // A dependency is on every replica of the service depended on.
                    depends_on: svc
                        .depends_on
                        .iter()
                        .filter_map(|(d, c)| names.get(d)?.first().map(|n| (n.clone(), c.kind)))
                        .collect(),
                    depends_on_replicas: svc
                        .depends_on
                        .iter()
                        .flat_map(|(d, c)| {
                            names
                                .get(d)
                                .into_iter()
                                .flat_map(|n| n.iter().skip(1))
                                .map(move |n| (n.clone(), c.kind))
                        })
                        .collect(),
                    mounted_files: mounted.clone(),
                    config_hash: String::new(),
                    play: 0,
                    update: svc.update.clone(),
                    reload: svc.reload.clone(),
                };
                spec.seal();
                hd.containers.retain(|c| c.name != spec.name);
                hd.containers.push(spec);
            }
        }
    }
}

/// A file only its owner may read is treated as holding secrets, whatever the redactor knows.
pub(super) fn private(mode: u32) -> bool {
    mode & 0o044 == 0
}

/// compose's container name for the first replica of a service.
pub fn container_name(project: &str, service: &str) -> String {
    replica_name(project, service, 1)
}

/// compose's container name for replica `n` of a service.
pub fn replica_name(project: &str, service: &str, n: u32) -> String {
    format!("{project}-{service}-{n}")
}
