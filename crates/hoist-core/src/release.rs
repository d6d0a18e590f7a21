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

use crate::desired::{ContainerSpec, HostDesired, sha256_hex};

/// The history's file on each host.
pub const HISTORY: &str = "/var/lib/hoist/releases.json";

/// Releases kept per host.
pub const KEEP: usize = 10;

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
    /// Who applied it: the controller's host name.
    pub by: String,
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
    /// Path -> sha256 of each file hoist placed.
    pub files: BTreeMap<String, String>,
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
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
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
            revision: origin.revision,
            restores: origin.restores,
            changes: origin.changes,
            containers,
            files: want
                .files
                .values()
                .map(|f| (f.path.clone(), sha256_hex(f.content.as_bytes())))
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
    for (path, sum) in &to.files {
        let what = match before.get(path) {
            None => "added",
            Some(b) if b != sum => "content",
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
