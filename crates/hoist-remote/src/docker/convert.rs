//! Between the engine's API types and hoist's: a container as observed (with its image's
//! defaults), a create request from a spec, health and error codes.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceMapping, EndpointIpamConfig,
    EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use hoist_core::desired::{ContainerSpec, StaticAddress};

use crate::engine::Scratch;
use hoist_core::observed::{ImageDefaults, ObservedContainer, ObservedMount};
use hoist_core::stack::{DeviceRequest, Health, Logging, Port, Runtime};

pub(super) async fn image_defaults(d: &Docker, id: &str) -> ImageDefaults {
    let Ok(img) = d.inspect_image(id).await else {
        return ImageDefaults::default();
    };
    let Some(c) = img.config else {
        return ImageDefaults::default();
    };
    ImageDefaults {
        env: c.env.unwrap_or_default(),
        cmd: c.cmd,
        entrypoint: c.entrypoint,
        healthcheck: c.healthcheck.map(health_of),
        user: c.user.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        stop_signal: c.stop_signal,
        exposed: c.exposed_ports.unwrap_or_default(),
    }
}

pub(super) fn health_of(h: HealthConfig) -> Health {
    let ns = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Health {
        test: h.test.unwrap_or_default(),
        interval_ns: ns(h.interval),
        timeout_ns: ns(h.timeout),
        retries: ns(h.retries),
        start_period_ns: ns(h.start_period),
    }
}

pub(super) fn observed_container(
    i: ContainerInspectResponse,
    image_defaults: ImageDefaults,
) -> ObservedContainer {
    let config = i.config.unwrap_or_default();
    let host = i.host_config.unwrap_or_default();
    let runtime = reported_runtime(&config, &host);
    let state = i.state.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in host.port_bindings.unwrap_or_default() {
        let (target, protocol) = key.split_once('/').unwrap_or((&key, "tcp"));
        let Ok(target) = target.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let published = b
                .host_port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0);
            ports.push(Port {
                host_ip: b.host_ip.unwrap_or_default(),
                published,
                target,
                protocol: protocol.to_owned(),
            });
        }
    }
    ports.sort();
    // The engine lists mounts from a map, in no stable order: by target, so that a host's
    // fingerprint does not change between two looks.
    let mut mounts: Vec<ObservedMount> = i
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let kind = m.typ.map(|t| t.to_string()).unwrap_or_default();
            let source = if kind == "volume" {
                m.name.unwrap_or_default()
            } else {
                m.source.unwrap_or_default()
            };
            ObservedMount {
                kind,
                source,
                target: m.destination.unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
            }
        })
        .collect();
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let endpoints = i
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    // The addresses asked for (`IPAMConfig`), not the ones the engine gave from its pools.
    let addresses = endpoints
        .iter()
        .filter_map(|(name, e)| {
            let asked = e.ipam_config.as_ref()?;
            let address = StaticAddress {
                ipv4: asked.ipv4_address.clone().filter(|a| !a.is_empty()),
                ipv6: asked.ipv6_address.clone().filter(|a| !a.is_empty()),
            };
            (address != StaticAddress::default()).then(|| (name.clone(), address))
        })
        .collect();
    let mut networks: BTreeMap<String, Vec<String>> = endpoints
        .into_iter()
        .map(|(name, e)| {
            let mut a = e.aliases.unwrap_or_default();
            a.extend(e.dns_names.unwrap_or_default());
            a.sort();
            a.dedup();
            (name, a)
        })
        .collect();
    // In another container's network namespace it has no endpoint of its own: the mode says
    // whose, by that container's id (`container:<id>`; [`crate::observe::engine`] names it).
    if let Some(mode) = host
        .network_mode
        .as_deref()
        .filter(|m| m.starts_with("container:"))
    {
        networks.insert(mode.to_owned(), Vec::new());
    }
    let restart = match host.restart_policy {
        Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(n),
        }) if n > 0 => format!("on-failure:{n}"),
        Some(RestartPolicy { name: Some(n), .. }) => n.to_string(),
        _ => String::new(),
    };
    ObservedContainer {
        image: config.image.unwrap_or_default(),
        image_id: i.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty()),
        exit_code: state.exit_code,
        env: config.env.unwrap_or_default(),
        cmd: config.cmd,
        entrypoint: config.entrypoint,
        ports,
        mounts,
        networks,
        addresses,
        healthcheck: config.healthcheck.map(health_of),
        restart,
        extra_hosts: host.extra_hosts.unwrap_or_default(),
        user: config.user.unwrap_or_default(),
        working_dir: config.working_dir.unwrap_or_default(),
        hostname: config.hostname.unwrap_or_default(),
        stop_timeout: config.stop_timeout.and_then(|n| u64::try_from(n).ok()),
        runtime,
        image_defaults,
    }
}

/// The runtime options an engine reports, in hoist's types (compared after normalisation).
fn reported_runtime(config: &bollard::models::ContainerConfig, host: &HostConfig) -> Runtime {
    let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
    let mut expose = config.exposed_ports.clone().unwrap_or_default();
    expose.sort();
    Runtime {
        cap_add: host.cap_add.clone().unwrap_or_default(),
        cap_drop: host.cap_drop.clone().unwrap_or_default(),
        privileged: host.privileged.unwrap_or(false),
        read_only: host.readonly_rootfs.unwrap_or(false),
        init: host.init,
        tmpfs: host.tmpfs.clone().unwrap_or_default().into_iter().collect(),
        sysctls: host
            .sysctls
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        shm_size: positive(host.shm_size),
        ulimits: host
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| Some((u.name?, (u.soft.unwrap_or(0), u.hard.unwrap_or(0)))))
            .collect(),
        security_opt: host.security_opt.clone().unwrap_or_default(),
        devices: host
            .devices
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| {
                let source = d.path_on_host?;
                hoist_core::stack::device(
                    &source,
                    d.path_in_container.as_deref(),
                    d.cgroup_permissions.as_deref(),
                )
            })
            .collect(),
        dns: host.dns.clone().unwrap_or_default(),
        dns_search: host.dns_search.clone().unwrap_or_default(),
        dns_opt: host.dns_options.clone().unwrap_or_default(),
        group_add: host.group_add.clone().unwrap_or_default(),
        stop_signal: config.stop_signal.clone(),
        stdin_open: config.open_stdin.unwrap_or(false),
        tty: config.tty.unwrap_or(false),
        expose,
        logging: host.log_config.clone().and_then(|l| {
            Some(Logging {
                driver: l.typ?,
                options: l.config.unwrap_or_default().into_iter().collect(),
            })
        }),
        runtime: host.runtime.clone(),
        pid: host.pid_mode.clone().filter(|p| !p.is_empty()),
        ipc: host.ipc_mode.clone().filter(|p| !p.is_empty()),
        memory: positive(host.memory),
        memory_reservation: positive(host.memory_reservation),
        memswap_limit: host.memory_swap.filter(|n| *n != 0),
        nano_cpus: positive(host.nano_cpus),
        cpu_shares: positive(host.cpu_shares),
        pids_limit: host.pids_limit.filter(|n| *n > 0),
        device_requests: {
            let mut requests: Vec<DeviceRequest> = host
                .device_requests
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|r| {
                    let device_ids = r.device_ids.unwrap_or_default();
                    let mut capabilities: Vec<String> = r
                        .capabilities
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect();
                    capabilities.sort();
                    capabilities.dedup();
                    DeviceRequest {
                        driver: r.driver.unwrap_or_default(),
                        // The engine reports a count of 0 for a request by ids.
                        count: r.count.filter(|n| *n != 0 || device_ids.is_empty()),
                        device_ids,
                        capabilities,
                        options: r.options.unwrap_or_default().into_iter().collect(),
                    }
                })
                .collect();
            requests.sort();
            requests
        },
    }
}

/// Whether a failed call only says the thing is absent (404) or already in that state (304).
pub(super) fn absent(e: &bollard::errors::Error, codes: &[u16]) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

/// The engine's create request for `c`, with its first network (the others are connected after).
/// The engine's body for a scratch container: its argv as the entrypoint, no command.
pub(super) fn scratch_body(s: &Scratch) -> ContainerCreateBody {
    let mounts = s
        .read_only_binds
        .iter()
        .map(|(source, target)| Mount {
            source: Some(source.clone()),
            target: Some(target.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    ContainerCreateBody {
        image: Some(s.image.clone()),
        user: s.user.clone(),
        entrypoint: Some(s.argv.clone()),
        cmd: Some(Vec::new()),
        env: Some(s.env.clone()),
        labels: Some(s.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            extra_hosts: Some(s.extra_hosts.clone()),
            volumes_from: s.volumes_from.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn create_body(c: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &c.ports {
        let entry = port_bindings
            .entry(format!("{}/{}", p.target, p.protocol))
            .or_insert_with(|| Some(Vec::new()));
        if let Some(list) = entry {
            list.push(PortBinding {
                host_ip: Some(p.host_ip.clone()).filter(|s| !s.is_empty()),
                host_port: Some(p.published.map(|n| n.to_string()).unwrap_or_default()),
            });
        }
    }
    let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let rt = &c.runtime;
    exposed.extend(rt.expose.iter().cloned());
    exposed.sort();
    exposed.dedup();
    let some_list = |v: &[String]| Some(v.to_vec()).filter(|v| !v.is_empty());
    let some_map = |m: &BTreeMap<String, String>| {
        Some(m.clone().into_iter().collect::<HashMap<_, _>>()).filter(|m| !m.is_empty())
    };
    let signed = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
    let mounts = c
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(if m.kind == "volume" {
                MountType::VOLUME
            } else {
                MountType::BIND
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let (restart_name, retries) = match c.restart.split_once(':') {
        Some((_, n)) => (RestartPolicyNameEnum::ON_FAILURE, n.parse::<i64>().ok()),
        None => (
            match c.restart.as_str() {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            },
            None,
        ),
    };
    let first = c.networks.iter().next();
    ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: c.command.clone(),
        entrypoint: c.entrypoint.clone(),
        env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(c.engine_labels().into_iter().collect()),
        exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns.map(|n| n as i64),
            timeout: h.timeout_ns.map(|n| n as i64),
            retries: h.retries.map(|n| n as i64),
            start_period: h.start_period_ns.map(|n| n as i64),
            start_interval: None,
        }),
        user: c.user.clone(),
        working_dir: c.working_dir.clone(),
        hostname: c.hostname.clone(),
        stop_timeout: c.stop_grace_period_s.map(|n| n as i64),
        stop_signal: rt.stop_signal.clone(),
        tty: Some(rt.tty).filter(|t| *t),
        open_stdin: Some(rt.stdin_open).filter(|t| *t),
        host_config: Some(HostConfig {
            cap_add: some_list(&rt.cap_add),
            cap_drop: some_list(&rt.cap_drop),
            privileged: Some(rt.privileged).filter(|p| *p),
            readonly_rootfs: Some(rt.read_only).filter(|p| *p),
            init: rt.init,
            tmpfs: some_map(&rt.tmpfs),
            sysctls: some_map(&rt.sysctls),
            shm_size: signed(rt.shm_size),
            ulimits: Some(
                rt.ulimits
                    .iter()
                    .map(|(name, (soft, hard))| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect::<Vec<_>>(),
            )
            .filter(|u| !u.is_empty()),
            security_opt: some_list(&rt.security_opt),
            devices: Some(
                rt.devices
                    .iter()
                    .filter_map(|d| {
                        let mut parts = d.splitn(3, ':');
                        Some(DeviceMapping {
                            path_on_host: Some(parts.next()?.to_owned()),
                            path_in_container: Some(parts.next()?.to_owned()),
                            cgroup_permissions: Some(parts.next()?.to_owned()),
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .filter(|d| !d.is_empty()),
            dns: some_list(&rt.dns),
            dns_search: some_list(&rt.dns_search),
            dns_options: some_list(&rt.dns_opt),
            group_add: some_list(&rt.group_add),
            log_config: rt.logging.as_ref().map(|l| HostConfigLogConfig {
                typ: Some(l.driver.clone()),
                config: Some(l.options.clone().into_iter().collect()),
            }),
            runtime: rt.runtime.clone(),
            pid_mode: rt.pid.clone(),
            ipc_mode: rt.ipc.clone(),
            memory: signed(rt.memory),
            memory_reservation: signed(rt.memory_reservation),
            memory_swap: rt.memswap_limit,
            nano_cpus: signed(rt.nano_cpus),
            cpu_shares: signed(rt.cpu_shares),
            pids_limit: rt.pids_limit,
            device_requests: Some(
                rt.device_requests
                    .iter()
                    .map(|r| bollard::models::DeviceRequest {
                        driver: Some(r.driver.clone()).filter(|d| !d.is_empty()),
                        count: r.count,
                        device_ids: some_list(&r.device_ids),
                        capabilities: Some(vec![r.capabilities.clone()]),
                        options: Some(r.options.clone().into_iter().collect::<HashMap<_, _>>())
                            .filter(|o| !o.is_empty()),
                    })
                    .collect::<Vec<_>>(),
            )
            .filter(|d| !d.is_empty()),
            port_bindings: Some(port_bindings).filter(|p| !p.is_empty()),
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(restart_name),
                maximum_retry_count: retries,
            }),
            extra_hosts: Some(c.extra_hosts.clone()).filter(|e| !e.is_empty()),
            network_mode: first.map(|(n, _)| n.clone()),
            ..Default::default()
        }),
        // Another container's network namespace (`container:<name>`) takes no endpoint.
        networking_config: first
            .filter(|(n, _)| !n.starts_with("container:"))
            .map(|(n, a)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(n.clone(), endpoint(c, n, a))])),
            }),
        ..Default::default()
    }
}

/// How a container joins network `network`: its aliases, and the address it asked for there.
pub(super) fn endpoint(c: &ContainerSpec, network: &str, aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        // The engine's own networks (`network_mode: host`) take no alias at all.
        aliases: Some(aliases.to_vec()).filter(|a| !a.is_empty()),
        ipam_config: c.addresses.get(network).map(|a| EndpointIpamConfig {
            ipv4_address: a.ipv4.clone(),
            ipv6_address: a.ipv6.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn last_health(h: &Option<bollard::models::Health>) -> Option<String> {
    h.as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .map(|r| {
            format!(
                "exit {} {}",
                r.exit_code.unwrap_or(-1),
                r.output.clone().unwrap_or_default().trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerInspectResponse, MountPoint};

    use super::observed_container;

    /// The engine lists mounts in no stable order: two looks at one container are one state.
    #[test]
    fn mounts_are_observed_in_one_order() {
        let mount = |target: &str| MountPoint {
            typ: Some("bind".to_owned()),
            source: Some(format!("/opt/hoist/x{target}")),
            destination: Some(target.to_owned()),
            rw: Some(false),
            ..Default::default()
        };
        let inspect = |targets: [&str; 2]| ContainerInspectResponse {
            mounts: Some(targets.iter().map(|t| mount(t)).collect()),
            ..Default::default()
        };
        let a = observed_container(
            inspect(["/srv/index.html", "/run/secrets/t"]),
            Default::default(),
        );
        let b = observed_container(
            inspect(["/run/secrets/t", "/srv/index.html"]),
            Default::default(),
        );
        assert_eq!(a, b);
        assert_eq!(a.mounts[0].target, "/run/secrets/t");
    }

    /// What hoist creates a container with, the engine reports back as hoist wrote it: device
    /// requests (an engine's count of 0 for a request by ids), a static address, another
    /// container's network namespace (no endpoint of its own).
    #[test]
    fn device_requests_addresses_and_network_namespaces_read_back_as_asked() {
        use hoist_core::desired::{ContainerSpec, StaticAddress};
        use hoist_core::stack::DeviceRequest;
        use std::collections::{BTreeMap, HashMap};

        let mut spec: ContainerSpec = serde_json::from_value(serde_json::json!({
            "name": "p-gpu-1", "project": "p", "service": "gpu", "image": "i",
            "command": null, "entrypoint": null, "env": {}, "ports": [], "mounts": [],
            "networks": {"p_front": ["gpu"]}, "healthcheck": null, "restart": "no",
            "labels": {}, "extra_hosts": [], "user": null, "working_dir": null,
            "hostname": null, "stop_grace_period_s": null, "depends_on": {},
            "mounted_files": {}, "config_hash": ""
        }))
        .expect("spec");
        spec.addresses = BTreeMap::from([(
            "p_front".to_owned(),
            StaticAddress {
                ipv4: Some("172.28.0.10".into()),
                ipv6: None,
            },
        )]);
        spec.runtime.device_requests = vec![
            DeviceRequest {
                count: Some(-1),
                capabilities: vec!["gpu".into()],
                ..Default::default()
            },
            DeviceRequest {
                driver: "nvidia".into(),
                device_ids: vec!["0".into()],
                capabilities: vec!["gpu".into(), "utility".into()],
                ..Default::default()
            },
        ];
        let body = super::create_body(&spec);
        let mut host = body.host_config.clone().expect("host config");
        // The engine reports a request by ids with a count of 0.
        for r in host.device_requests.iter_mut().flatten() {
            r.count = r.count.or(Some(0));
        }
        let endpoints: HashMap<String, bollard::models::EndpointSettings> = body
            .networking_config
            .clone()
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default();
        let seen = observed_container(
            ContainerInspectResponse {
                host_config: Some(host),
                network_settings: Some(bollard::models::NetworkSettings {
                    networks: Some(endpoints),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Default::default(),
        );
        let mut want = spec.runtime.device_requests.clone();
        want.sort();
        assert_eq!(seen.runtime.device_requests, want);
        assert_eq!(seen.addresses, spec.addresses);

        spec.networks = BTreeMap::from([("container:p-vpn-1".to_owned(), Vec::new())]);
        let body = super::create_body(&spec);
        assert!(body.networking_config.is_none(), "no endpoint of its own");
        let seen = observed_container(
            ContainerInspectResponse {
                host_config: body.host_config,
                ..Default::default()
            },
            Default::default(),
        );
        assert_eq!(seen.networks, spec.networks);
    }
}
