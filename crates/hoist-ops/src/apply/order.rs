//! Start order: which containers of a play on a host go together. A container starts in the wave
//! after the last of its dependencies on the same host and play; containers of one wave do not
//! depend on each other and are created concurrently (as compose does), each still waiting for
//! the gates of what it depends on. Plays go one after the other, across every host. Within a
//! wave, the replicas of a service that are replaced go in batches of its
//! `deploy.update_config.parallelism`.

use hoist_core::desired::ContainerSpec;

/// `containers` (in the desired state's dependency order) grouped into waves.
pub fn waves<'a>(containers: &[&'a ContainerSpec]) -> Vec<Vec<&'a ContainerSpec>> {
    let mut level: Vec<usize> = Vec::with_capacity(containers.len());
    for (i, c) in containers.iter().enumerate() {
        let after = containers[..i]
            .iter()
            .zip(&level)
            .filter(|(d, _)| c.waits_for().any(|(n, _)| n == &d.name))
            .map(|(_, l)| l + 1)
            .max()
            .unwrap_or(0);
        level.push(after);
    }
    let mut out: Vec<Vec<&ContainerSpec>> = Vec::new();
    for (c, l) in containers.iter().zip(level) {
        if out.len() <= l {
            out.resize_with(l + 1, Vec::new);
        }
        out[l].push(c);
    }
    out
}

/// A wave's work (each container, and whether it is replaced) as groups that run concurrently,
/// each a list of batches run one after the other: one group per service, whose replaced
/// containers go `parallelism` at a time (all at once for 0) after the ones it creates or starts.
/// Indexes are into `work`.
pub fn batches(work: &[(&ContainerSpec, bool)]) -> Vec<Vec<Vec<usize>>> {
    let mut services: Vec<(&str, &str)> = Vec::new();
    for (c, _) in work {
        if !services.contains(&(c.project.as_str(), c.service.as_str())) {
            services.push((&c.project, &c.service));
        }
    }
    services
        .into_iter()
        .map(|(project, service)| {
            let of = |replaced: bool| -> Vec<usize> {
                work.iter()
                    .enumerate()
                    .filter(|(_, (c, r))| {
                        c.project == project && c.service == service && *r == replaced
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            let (fresh, replaced) = (of(false), of(true));
            let size = match replaced.first().map(|&i| work[i].0.update.parallelism) {
                Some(0) | None => replaced.len().max(1),
                Some(n) => n as usize,
            };
            let mut out: Vec<Vec<usize>> = Vec::new();
            if !fresh.is_empty() {
                out.push(fresh);
            }
            out.extend(replaced.chunks(size).map(<[usize]>::to_vec));
            out
        })
        .collect()
}

/// The plays to run, in order: every play index up to the last one any host has work in.
pub fn plays<'a>(
    hosts: impl IntoIterator<Item = &'a hoist_core::desired::HostDesired>,
) -> std::ops::Range<usize> {
    let last = hosts
        .into_iter()
        .flat_map(|h| {
            h.containers
                .iter()
                .map(|c| c.play)
                .chain(h.actions.iter().map(|a| a.play_index))
        })
        .max();
    0..last.map_or(0, |l| l + 1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hoist_core::stack::ConditionKind;

    use super::*;

    fn spec(name: &str, deps: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            project: "p".into(),
            service: name.into(),
            number: 1,
            image: "i".into(),
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            networks: BTreeMap::new(),
            addresses: BTreeMap::new(),
            healthcheck: None,
            restart: String::new(),
            labels: BTreeMap::new(),
            extra_hosts: Vec::new(),
            user: None,
            working_dir: None,
            hostname: None,
            stop_grace_period_s: None,
            runtime: Default::default(),
            depends_on: deps
                .iter()
                .map(|d| ((*d).to_owned(), ConditionKind::ServiceHealthy))
                .collect(),
            depends_on_replicas: BTreeMap::new(),
            mounted_files: BTreeMap::new(),
            config_hash: String::new(),
            play: 0,
            update: hoist_core::stack::UpdateConfig::compose_default(),
            reload: None,
        }
    }

    fn names<'a>(w: &[Vec<&'a ContainerSpec>]) -> Vec<Vec<&'a str>> {
        w.iter()
            .map(|wave| wave.iter().map(|c| c.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn independent_containers_share_a_wave_dependents_follow() {
        let (db, cache, api, proxy) = (
            spec("db", &[]),
            spec("cache", &[]),
            spec("api", &["db", "cache"]),
            spec("proxy", &["api"]),
        );
        let all = [&db, &cache, &api, &proxy];
        assert_eq!(
            names(&waves(&all)),
            [vec!["db", "cache"], vec!["api"], vec!["proxy"]]
        );
    }

    #[test]
    fn replaced_replicas_go_in_batches_of_their_parallelism() {
        let replica = |service: &str, n: u32, parallelism: u32| {
            let mut c = spec(&format!("p-{service}-{n}"), &[]);
            c.service = service.into();
            c.update.parallelism = parallelism;
            c
        };
        let (w1, w2, w3, w4) = (
            replica("worker", 1, 2),
            replica("worker", 2, 2),
            replica("worker", 3, 2),
            replica("worker", 4, 2),
        );
        let (a1, a2) = (replica("api", 1, 0), replica("api", 2, 0));
        let work = [
            (&w1, true),
            (&a1, true),
            (&w2, true),
            (&w3, true),
            (&w4, false),
            (&a2, true),
        ];
        // worker: the new replica at once, then the three replaced two by two; api: all at once.
        assert_eq!(
            batches(&work),
            [vec![vec![4], vec![0, 2], vec![3]], vec![vec![1, 5]]]
        );
    }

    #[test]
    fn a_dependency_elsewhere_does_not_delay_the_wave() {
        let (api, worker) = (spec("api", &["db-on-another-host"]), spec("worker", &[]));
        assert_eq!(names(&waves(&[&api, &worker])), [vec!["api", "worker"]]);
    }
}
