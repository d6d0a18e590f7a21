//! Releases: what an apply left running on a host, recorded there after each apply that changed
//! it, so that `hoist releases` can say what changed between two and `hoist rollback` can go back.
//!
//! A host keeps its history in one file ([`HISTORY`], private to root): the last [`KEEP`]
//! releases, each naming every container hoist runs there (its configuration hash and the id of
//! the image it ran) and every file hoist placed (its sha256), and the normalised specs of those
//! containers, shared between the releases that ran them. Specs hold the containers' environment,
//! secrets included, as the host's engine already does; nothing of a release is printed but
//! names, times and the kinds of what changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::desired::{ContainerSpec, FileSpec, HostDesired, ImageSource, ImageSpec};

/// The history's file on each host.
pub const HISTORY: &str = "/var/lib/hoist/releases.json";

/// Where a host keeps the content of each file a release placed, by its sha256 (private to root).
pub const FILES: &str = "/var/lib/hoist/release-files";

/// Releases kept per host.
pub const KEEP: usize = 10;

/// The path of the kept content of a file whose sha256 is `sum`.
pub fn kept_file(sum: &str) -> String {
    format!("{FILES}/{sum}")
}

const VERSION: u32 = 1;

/// A host's releases, oldest first, and the specs they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub version: u32,
    pub releases: Vec<Release>,
    /// Config hash -> the container spec of that hash.
    pub specs: BTreeMap<String, ContainerSpec>,
}

/// What one apply left on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// 1, 2, ... on this host.
    pub id: u64,
    /// Seconds since the epoch.
    pub time: u64,
    /// Who applied it: the user and the controller.
    pub by: String,
    /// The apply that made it (the same on every host it changed).
    #[serde(default)]
    pub run: String,
    /// The sha256 of the plan that apply ran (as `plan --out` writes it).
    #[serde(default)]
    pub plan: String,
    /// The project's git revision (`git describe --always --dirty`), when it is a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The release it was made from (`hoist rollback --to`), when it was not an apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// The changes the apply made, as `kind name: action`.
    pub changes: Vec<String>,
    /// Container name -> what ran.
    pub containers: BTreeMap<String, Ran>,
    /// Path -> each file hoist placed.
    pub files: BTreeMap<String, Placed>,
}

/// A file of a release: its content's sha256 (the content is kept on the host, [`kept_file`]),
/// and how it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub sha256: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub origin: String,
    pub sensitive: bool,
}

/// A container of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    pub project: String,
    pub service: String,
    pub config_hash: String,
    /// The image as the stack names it, and the id the host had for it.
    pub image: String,
    pub image_id: String,
}

/// Who and what made a release, besides the host's desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub time: u64,
    pub by: String,
    pub run: String,
    pub plan: String,
    pub revision: Option<String>,
    pub restores: Option<u64>,
    pub changes: Vec<String>,
}

impl History {
    /// Reads a history file; an empty one is an empty history.
    pub fn parse(bytes: &[u8]) -> Result<History, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(History::default());
        }
        let h: History = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if h.version != VERSION {
            return Err(format!(
                "version {} (this hoist reads version {VERSION})",
                h.version
            ));
        }
        Ok(h)
    }

    pub fn to_json(&self) -> String {
        // Only maps with keys other than strings fail to serialise, and a history has none: an
        // empty text here would write over every release the host keeps.
        serde_json::to_string_pretty(self).expect("a release history serialises") + "\n"
    }

    pub fn last(&self) -> Option<&Release> {
        self.releases.last()
    }

    pub fn get(&self, id: u64) -> Option<&Release> {
        self.releases.iter().find(|r| r.id == id)
    }

    /// Records what `want` runs as the next release (`image_ids` by image reference), keeps the
    /// last [`KEEP`], and the specs only those reference. Returns its id.
    pub fn record(
        &mut self,
        want: &HostDesired,
        image_ids: &BTreeMap<String, String>,
        origin: Origin,
    ) -> u64 {
        self.version = VERSION;
        let id = self.last().map_or(1, |r| r.id + 1);
        let containers = want
            .containers
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Ran {
                        project: c.project.clone(),
                        service: c.service.clone(),
                        config_hash: c.config_hash.clone(),
                        image: c.image.clone(),
                        image_id: image_ids.get(&c.image).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        for c in &want.containers {
            self.specs
                .entry(c.config_hash.clone())
                .or_insert_with(|| c.clone());
        }
        self.releases.push(Release {
            id,
            time: origin.time,
            by: origin.by,
            run: origin.run,
            plan: origin.plan,
            revision: origin.revision,
            restores: origin.restores,
            changes: origin.changes,
            containers,
            files: want
                .files
                .values()
                .map(|f| {
                    (
                        f.path.clone(),
                        Placed {
                            sha256: f.sha256(),
                            mode: f.mode,
                            owner: f.owner.clone(),
                            group: f.group.clone(),
                            origin: f.origin.clone(),
                            sensitive: f.sensitive,
                        },
                    )
                })
                .collect(),
        });
        let surplus = self.releases.len().saturating_sub(KEEP);
        self.releases.drain(..surplus);
        let used: BTreeSet<&String> = self
            .releases
            .iter()
            .flat_map(|r| r.containers.values().map(|c| &c.config_hash))
            .collect();
        self.specs.retain(|hash, _| used.contains(hash));
        id
    }
}

/// Where `hoist rollback` takes a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// From the release it runs to another one it keeps.
    GoTo { from: u64, to: u64 },
    /// Left as it is, and why.
    Leave(String),
}

/// Where each host goes, from each host's history: with `to`, every host that keeps release `to`
/// goes to it; without, the hosts the latest apply changed (the run of the newest release of
/// all) go to the release before their current one.
pub fn choose(histories: &BTreeMap<String, History>, to: Option<u64>) -> BTreeMap<String, Choice> {
    let last_run = histories
        .values()
        .filter_map(History::last)
        .max_by_key(|r| r.time)
        .map(|r| r.run.as_str());
    histories
        .iter()
        .map(|(host, h)| {
            let choice = match (h.last(), to) {
                (None, _) => Choice::Leave("no release recorded".into()),
                (Some(current), Some(id)) if h.get(id).is_some() => Choice::GoTo {
                    from: current.id,
                    to: id,
                },
                (Some(_), Some(id)) => {
                    Choice::Leave(format!("has no release {id} (it keeps {})", h.ids()))
                }
                (Some(current), None) if Some(current.run.as_str()) != last_run => {
                    Choice::Leave("the latest apply did not change it".into())
                }
                (Some(current), None) => match h.releases.iter().rev().nth(1) {
                    Some(before) => Choice::GoTo {
                        from: current.id,
                        to: before.id,
                    },
                    None => Choice::Leave("no earlier release recorded".into()),
                },
            };
            (host.clone(), choice)
        })
        .collect()
}

impl History {
    /// The sha256 of every file content the kept releases placed: what the host keeps.
    pub fn kept_files(&self) -> BTreeSet<&str> {
        self.releases
            .iter()
            .flat_map(|r| r.files.values().map(|f| f.sha256.as_str()))
            .collect()
    }

    /// What the host should run to be release `id` again: `now` (what the project wants there
    /// today, for its networks, volumes and how its containers are updated) with the release's
    /// containers, their images by the ids they ran, and its files, whose contents `kept` holds
    /// by sha256. A container the release did not run is not wanted (a deletion, with
    /// `--prune`); a file it did not place is left as the project has it.
    pub fn restore(
        &self,
        id: u64,
        now: &HostDesired,
        kept: &BTreeMap<String, Vec<u8>>,
    ) -> Result<HostDesired, String> {
        let release = self
            .get(id)
            .ok_or_else(|| format!("no release {id} (the host keeps {})", self.ids()))?;
        let mut want = now.clone();
        want.containers.clear();
        want.images.clear();
        for (name, ran) in &release.containers {
            let mut spec = self
                .specs
                .get(&ran.config_hash)
                .cloned()
                .ok_or_else(|| format!("release {id}: the spec of {name} is not kept"))?;
            if ran.image_id.is_empty() {
                return Err(format!("release {id}: the image {name} ran is not known"));
            }
            // What is not in a spec's hash comes from the project as it is today.
            if let Some(today) = now.containers.iter().find(|c| c.name == *name) {
                spec.update = today.update.clone();
                spec.reload = today.reload.clone();
                spec.play = today.play;
                spec.depends_on_replicas = today.depends_on_replicas.clone();
            }
            want.images.insert(
                spec.image.clone(),
                ImageSpec {
                    reference: spec.image.clone(),
                    source: ImageSource::Release {
                        id: ran.image_id.clone(),
                    },
                },
            );
            want.containers.push(spec);
        }
        // The order containers start in is the project's, then the release's own.
        let rank = |name: &str| now.containers.iter().position(|c| c.name == name);
        want.containers
            .sort_by_key(|c| (rank(&c.name).unwrap_or(usize::MAX), c.name.clone()));
        for (path, f) in &release.files {
            let content = kept
                .get(&f.sha256)
                .ok_or_else(|| format!("release {id}: the content of {path} is no longer kept"))?;
            want.files.insert(
                path.clone(),
                FileSpec {
                    path: path.clone(),
                    content: crate::desired::Content::from_bytes(content.clone()),
                    mode: f.mode,
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    origin: f.origin.clone(),
                    // Never shown: it may hold a secret from before a rotation, which the
                    // redactor of today's inputs does not know.
                    sensitive: true,
                },
            );
        }
        Ok(want)
    }

    fn ids(&self) -> String {
        match (self.releases.first(), self.last()) {
            (Some(a), Some(b)) if a.id == b.id => format!("release {}", a.id),
            (Some(a), Some(b)) => format!("releases {} to {}", a.id, b.id),
            _ => "none".into(),
        }
    }
}

/// How one resource differs between two releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `container` or `file`.
    pub kind: &'static str,
    pub name: String,
    /// `added`, `removed`, or what changed (`configuration`, `image`, `content`).
    pub what: Vec<&'static str>,
}

/// What `to` changed from `from` (everything added when there is no `from`).
pub fn differences(from: Option<&Release>, to: &Release) -> Vec<Difference> {
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    let before = from.map_or(&empty, |r| &r.containers);
    for (name, c) in &to.containers {
        let what = match before.get(name) {
            None => vec!["added"],
            Some(b) => {
                let mut w = Vec::new();
                if b.config_hash != c.config_hash {
                    w.push("configuration");
                }
                if b.image_id != c.image_id {
                    w.push("image");
                }
                w
            }
        };
        if !what.is_empty() {
            out.push(Difference {
                kind: "container",
                name: name.clone(),
                what,
            });
        }
    }
    for name in before.keys().filter(|n| !to.containers.contains_key(*n)) {
        out.push(Difference {
            kind: "container",
            name: name.clone(),
            what: vec!["removed"],
        });
    }
    let empty = BTreeMap::new();
    let before = from.map_or(&empty, |r| &r.files);
    for (path, f) in &to.files {
        let what = match before.get(path) {
            None => "added",
            Some(b) if b.sha256 != f.sha256 => "content",
            Some(b) if (b.mode, &b.owner, &b.group) != (f.mode, &f.owner, &f.group) => {
                "mode or owner"
            }
            Some(_) => continue,
        };
        out.push(Difference {
            kind: "file",
            name: path.clone(),
            what: vec![what],
        });
    }
    for path in before.keys().filter(|p| !to.files.contains_key(*p)) {
        out.push(Difference {
            kind: "file",
            name: path.clone(),
            what: vec!["removed"],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history whose releases were made by `runs`, one per run, at times 1, 2, ...
    fn history(runs: &[(&str, u64)]) -> History {
        let mut h = History::default();
        for (run, time) in runs {
            let origin = Origin {
                time: *time,
                run: (*run).into(),
                ..Origin::default()
            };
            h.record(&HostDesired::default(), &BTreeMap::new(), origin);
        }
        h
    }

    fn goto(from: u64, to: u64) -> Choice {
        Choice::GoTo { from, to }
    }

    #[test]
    fn rollback_takes_back_only_the_hosts_the_latest_apply_changed() {
        let histories = BTreeMap::from([
            ("app-1".to_owned(), history(&[("a", 1), ("b", 2), ("c", 3)])),
            ("data-1".to_owned(), history(&[("a", 1), ("b", 2)])),
            ("fresh".to_owned(), history(&[("c", 3)])),
            ("new".to_owned(), History::default()),
        ]);
        let chosen = choose(&histories, None);
        assert_eq!(chosen["app-1"], goto(3, 2));
        assert_eq!(
            chosen["data-1"],
            Choice::Leave("the latest apply did not change it".into())
        );
        assert_eq!(
            chosen["fresh"],
            Choice::Leave("no earlier release recorded".into())
        );
        assert_eq!(chosen["new"], Choice::Leave("no release recorded".into()));
    }

    #[test]
    fn rollback_to_a_release_takes_every_host_that_keeps_it() {
        let histories = BTreeMap::from([
            ("app-1".to_owned(), history(&[("a", 1), ("b", 2), ("c", 3)])),
            ("data-1".to_owned(), history(&[("a", 1)])),
        ]);
        let chosen = choose(&histories, Some(2));
        assert_eq!(chosen["app-1"], goto(3, 2));
        assert_eq!(
            chosen["data-1"],
            Choice::Leave("has no release 2 (it keeps release 1)".into())
        );
        // Going to the release a host runs is a plan with nothing in it, not an error.
        assert_eq!(choose(&histories, Some(1))["data-1"], goto(1, 1));
    }
}
