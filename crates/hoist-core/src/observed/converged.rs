//! What a host reports once a desired state is applied exactly, spelled the way the engine spells
//! it: the planner's tests and offline snapshots compare against it, and the fake engine reports
//! its containers so.

use std::collections::BTreeMap;

use super::*;
use crate::desired::{ContainerSpec, IpamPool, ResourceOptions};

/// Network `n` as an engine reports it once created: labelled with its project, with the pool
/// it was given or one of the engine's choosing.
pub fn network_as_created(n: &crate::desired::NetworkSpec) -> ObservedNetwork {
    ObservedNetwork {
        driver: n.driver.clone(),
        labels: BTreeMap::from([(
            crate::desired::labels::PROJECT.to_owned(),
            n.project.clone(),
        )]),
        options: ResourceOptions {
            ipam: if n.options.ipam.is_empty() {
                vec![IpamPool {
                    subnet: "172.18.0.0/16".into(),
                    gateway: Some("172.18.0.1".into()),
                    ip_range: None,
                }]
            } else {
                n.options.ipam.clone()
            },
            ..n.options.clone()
        },
    }
}

/// The state a host reports once `want` is applied exactly, spelled the way the engine spells it
/// (image defaults merged in, both IPv4 and IPv6 port bindings, its own network aliases). Used to
/// check that a converged host plans no change, and to record snapshots for offline review.
pub fn converged(
    want: &crate::desired::HostDesired,
    image_defaults: &ImageDefaults,
) -> HostObserved {
    use crate::desired::{ImageSource, labels, sha256_hex};
    let files = want
        .files
        .values()
        .map(|f| {
            let o = ObservedFile {
                content: f.content.text().map(str::to_owned),
                sha256: f.sha256(),
                mode: format!("{:04o}", f.mode),
                owner: Some(f.owner.clone().unwrap_or_else(|| "root".into())),
                group: Some(f.group.clone().unwrap_or_else(|| "root".into())),
                uid: None,
                gid: None,
            };
            (f.path.clone(), o)
        })
        .collect();
    let engine = want.engine.as_ref().map(|e| EngineState {
        installed: true,
        version: Some("26.1.5".into()),
        running: true,
        daemon: Some(e.daemon.clone()),
    });
    let image_id = |r: &str| format!("sha256:{}", sha256_hex(r.as_bytes()));
    let images = want
        .images
        .values()
        .map(|i| {
            let mut labels = BTreeMap::new();
            if let ImageSource::Build { context_hash, .. } = &i.source {
                labels.insert(labels::CONTEXT_HASH.to_owned(), context_hash.clone());
            }
            ObservedImage {
                id: image_id(&i.reference),
                tags: vec![i.reference.clone()],
                labels,
            }
        })
        .collect();
    let project_labels = |p: &str| BTreeMap::from([(labels::PROJECT.to_owned(), p.to_owned())]);
    let networks = want
        .networks
        .values()
        .map(|n| (n.name.clone(), network_as_created(n)))
        .collect();
    let volumes = want
        .volumes
        .values()
        .map(|v| {
            (
                v.name.clone(),
                ObservedVolume {
                    driver: v.driver.clone(),
                    labels: project_labels(&v.project),
                    driver_opts: v.options.driver_opts.clone(),
                },
            )
        })
        .collect();
    let containers = want
        .containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                reported(c, image_id(&c.image), image_defaults),
            )
        })
        .collect();
    let docker = Some(DockerState {
        networks,
        volumes,
        images,
        containers,
    });
    HostObserved {
        engine,
        files,
        docker,
    }
}

/// The runtime options as the engine reports them: its defaults filled in (`/dev/shm` of 64 MiB,
/// the `runc` runtime, a private IPC namespace), capabilities spelled `CAP_...`, the image's stop
/// signal and exposed ports merged with the container's, published ports exposed too.
fn engine_runtime(c: &ContainerSpec, image: &ImageDefaults) -> crate::stack::Runtime {
    let mut rt = c.runtime.clone();
    rt.cap_add = rt.cap_add.iter().map(|c| format!("CAP_{c}")).collect();
    rt.cap_drop = rt.cap_drop.iter().map(|c| format!("CAP_{c}")).collect();
    rt.shm_size = Some(rt.shm_size.unwrap_or(crate::stack::DEFAULT_SHM_SIZE));
    rt.runtime = Some(rt.runtime.unwrap_or_else(|| "runc".into()));
    rt.ipc = Some(rt.ipc.unwrap_or_else(|| "private".into()));
    rt.stop_signal = rt.stop_signal.or_else(|| image.stop_signal.clone());
    rt.expose.extend(image.exposed.iter().cloned());
    rt.expose.extend(
        c.ports
            .iter()
            .map(|p| format!("{}/{}", p.target, p.protocol)),
    );
    rt.expose.sort();
    rt.expose.dedup();
    rt
}

/// The container an engine reports once it created `c` from the image `image_id` and started it:
/// image defaults merged in, both IPv4 and IPv6 port bindings, its own network alias, `running`
/// (and `healthy` with a healthcheck).
pub fn reported(
    c: &ContainerSpec,
    image_id: String,
    image_defaults: &ImageDefaults,
) -> ObservedContainer {
    use crate::desired::sha256_hex;
    let mut env: Vec<String> = image_defaults
        .env
        .iter()
        .filter(|e| !c.env.keys().any(|k| e.starts_with(&format!("{k}="))))
        .cloned()
        .collect();
    env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut ports = Vec::new();
    for p in &c.ports {
        if p.host_ip.is_empty() {
            ports.push(Port {
                host_ip: "0.0.0.0".into(),
                ..p.clone()
            });
            ports.push(Port {
                host_ip: "::".into(),
                ..p.clone()
            });
        } else {
            ports.push(p.clone());
        }
    }
    let short_id: String = sha256_hex(c.name.as_bytes()).chars().take(12).collect();
    let networks = c
        .networks
        .iter()
        .map(|(n, a)| {
            let mut a = a.clone();
            a.push(short_id.clone());
            (n.clone(), a)
        })
        .collect();
    ObservedContainer {
        image: c.image.clone(),
        image_id,
        labels: c
            .engine_labels()
            .into_iter()
            .chain(image_defaults.labels.clone())
            .collect(),
        state: "running".into(),
        health: c
            .healthcheck
            .as_ref()
            .filter(|h| h.test.first().is_some_and(|t| t != "NONE"))
            .map(|_| "healthy".into()),
        exit_code: None,
        env,
        // The engine defaults the command to the image's only without an entrypoint.
        cmd: match (&c.command, &c.entrypoint) {
            (Some(cmd), _) => Some(cmd.clone()),
            (None, None) => image_defaults.cmd.clone(),
            (None, Some(_)) => None,
        },
        entrypoint: c
            .entrypoint
            .clone()
            .or_else(|| image_defaults.entrypoint.clone()),
        ports,
        mounts: c
            .mounts
            .iter()
            .map(|m| ObservedMount {
                kind: m.kind.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        networks,
        addresses: c.addresses.clone(),
        healthcheck: c
            .healthcheck
            .clone()
            .or_else(|| image_defaults.healthcheck.clone())
            .map(|mut h| {
                h.interval_ns = Some(h.interval_ns.unwrap_or(0));
                h.timeout_ns = Some(h.timeout_ns.unwrap_or(0));
                h.retries = Some(h.retries.unwrap_or(0));
                h.start_period_ns = Some(h.start_period_ns.unwrap_or(0));
                h
            }),
        restart: if c.restart == "no" {
            String::new()
        } else {
            c.restart.clone()
        },
        extra_hosts: c.extra_hosts.clone(),
        user: c
            .user
            .clone()
            .unwrap_or_else(|| image_defaults.user.clone()),
        working_dir: c.working_dir.clone().unwrap_or_else(|| {
            if image_defaults.working_dir.is_empty() {
                "/".into()
            } else {
                image_defaults.working_dir.clone()
            }
        }),
        hostname: c.hostname.clone().unwrap_or(short_id),
        stop_timeout: c.stop_grace_period_s,
        runtime: engine_runtime(c, image_defaults),
        image_defaults: image_defaults.clone(),
    }
}
