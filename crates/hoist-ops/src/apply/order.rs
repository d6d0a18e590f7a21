//! Start order: which containers of a play on a host go together. A container starts in the wave
//! after the last of its dependencies on the same host and play; containers of one wave do not
//! depend on each other and are created concurrently (as compose does), each still waiting for
//! the gates of what it depends on. Plays go one after the other, across every host.

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
    fn a_dependency_elsewhere_does_not_delay_the_wave() {
        let (api, worker) = (spec("api", &["db-on-another-host"]), spec("worker", &[]));
        assert_eq!(names(&waves(&[&api, &worker])), [vec!["api", "worker"]]);
    }
}
