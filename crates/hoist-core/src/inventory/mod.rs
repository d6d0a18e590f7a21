//! Inventories: the hosts, how to reach them, their groups, and the variables attached to both.
//!
//! `inventory/<name>/hosts.yml` lists hosts and groups; `group_vars/` and `host_vars/` hold variables
//! (a `<name>.yml` file or a `<name>/` folder of files). A file named `secrets.yml` holds secret
//! values, usually encrypted in place by `hoist secrets encrypt`.

mod connection;
pub mod ini;
pub mod pattern;

pub use connection::normalize;
use connection::{Base, check_ssh_word, connection, connection_keys};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::source::Source;
use crate::vars::VarFile;
use crate::yaml::{self, Ctx};

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Connection {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// A jump host: `[user@]host[:port]` (another inventory host's name is resolved to that).
    pub jump: Option<String>,
    /// When the jump host is a host of the inventory: its own key and known hosts, for the hop to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jump_host: Option<JumpHost>,
    /// Run commands through `sudo` (for non-root users).
    pub r#become: bool,
}

/// A jump host that is a host of the inventory, as the hop to it needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JumpHost {
    /// The address ssh is given for it (what an ssh_config `Host` pattern matches).
    pub address: String,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            user: "root".into(),
            port: 22,
            identity_file: None,
            known_hosts_file: None,
            jump: None,
            jump_host: None,
            r#become: false,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub connection: Connection,
    /// Groups the host belongs to, sorted (`all` is implicit and not listed).
    pub groups: Vec<String>,
    #[serde(skip)]
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
}

#[derive(Debug)]
pub struct Inventory {
    pub name: String,
    pub dir: PathBuf,
    pub file: SourceName,
    pub hosts: BTreeMap<String, Host>,
    pub groups: BTreeMap<String, Group>,
    /// `vars:` of hosts.yml and `group_vars/all`, in precedence order.
    pub all_vars: Vec<VarFile>,
    /// Per group, `vars:` of the group then `group_vars/<group>`.
    pub group_vars: BTreeMap<String, Vec<VarFile>>,
    /// Per host, `vars:` of the host then `host_vars/<host>`.
    pub host_vars: BTreeMap<String, Vec<VarFile>>,
    /// `generated:`, what commands make for this inventory (keys, certificates) and git does not
    /// hold: until they ran, `hoist check` says so in one line each.
    pub generated: Vec<Generated>,
}

/// What a command generates for an inventory, by path relative to the inventory folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub by: String,
    pub paths: Vec<String>,
    pub loc: Loc,
}

impl Inventory {
    /// Each command whose generated paths are missing, with those paths.
    pub fn missing_generated(&self, src: &Source) -> Vec<(&Generated, Vec<&str>)> {
        self.generated
            .iter()
            .filter_map(|g| {
                let missing: Vec<&str> = g
                    .paths
                    .iter()
                    .filter(|p| !src.exists(&self.dir.join(p)))
                    .map(String::as_str)
                    .collect();
                (!missing.is_empty()).then_some((g, missing))
            })
            .collect()
    }
}

impl Inventory {
    /// The hosts matching an Ansible-style pattern (`all`, a group, a host, a glob, `a:b`, `a:&b`, `a:!b`).
    pub fn select(&self, pattern: &str) -> Result<Vec<String>, String> {
        pattern::select(self, pattern)
    }

    /// Group name -> host names, with `all`.
    pub fn group_members(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = self
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), g.hosts.clone()))
            .collect();
        out.insert("all".into(), self.hosts.keys().cloned().collect());
        out
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with(['-', '.'])
}

/// Loads `dir` (an inventory folder holding `hosts.yml`). `root` is the project root, for file names.
pub fn load(
    src: &Source,
    root: &Path,
    dir: &Path,
    home: Option<&Path>,
    diags: &mut Diagnostics,
) -> Option<Inventory> {
    let base = Base { dir, home };
    let path = dir.join("hosts.yml");
    let missing = format!("no inventory here: {} does not exist", path.display());
    let (file, node) = yaml::load(src, root, &path, &missing, diags)?;
    let mut ctx = Ctx::new(file.clone(), diags);
    let mut top = ctx.fields(&node, "")?;

    let defaults = match top.get("connection") {
        Some(n) => connection(&mut ctx, n, "connection", &Connection::default(), &base),
        None => Connection::default(),
    };

    let mut hosts = BTreeMap::new();
    let mut host_vars: BTreeMap<String, Vec<VarFile>> = BTreeMap::new();
    if let Some(n) = top.require(&mut ctx, "hosts") {
        for (name, loc, body) in ctx.entries(n, "hosts") {
            let path = yaml::join("hosts", &name);
            if !valid_name(&name) {
                ctx.error(
                    loc,
                    &path,
                    Kind::InvalidValue,
                    "host names use letters, digits, '-', '_' and '.'",
                );
                continue;
            }
            let Some(mut f) = ctx.fields(body, &path) else {
                continue;
            };
            let address = f.string(&mut ctx, "address");
            if let (Some(a), Some(node)) = (&address, f.get("address")) {
                check_ssh_word(
                    &mut ctx,
                    node,
                    &yaml::join(&path, "address"),
                    "host address",
                    a,
                );
            }
            if address.is_none() && !f.has("address") {
                ctx.error(
                    loc,
                    &path,
                    Kind::MissingKey,
                    "missing required key `address`",
                );
            }
            let mut conn = defaults.clone();
            connection_keys(&mut ctx, &mut f, &mut conn, &path, &base);
            if let Some(v) = f.get("vars") {
                host_vars
                    .entry(name.clone())
                    .or_default()
                    .push(VarFile::from_node(
                        &mut ctx,
                        v,
                        &yaml::join(&path, "vars"),
                        false,
                    ));
            }
            f.finish(&mut ctx, false);
            let address = address.unwrap_or_default();
            hosts.insert(
                name.clone(),
                Host {
                    name,
                    address,
                    connection: conn,
                    groups: Vec::new(),
                    loc,
                },
            );
        }
    }

    // A jump named after another host of the inventory is that host's user, address and port
    // (ssh would look the name up in DNS).
    // Its key and known hosts serve the hop to it.
    let resolved: BTreeMap<String, (String, JumpHost)> = hosts
        .values()
        .map(|h| {
            let c = &h.connection;
            let address = if h.address.contains(':') {
                format!("[{}]", h.address)
            } else {
                h.address.clone()
            };
            let jump = JumpHost {
                address: h.address.clone(),
                identity_file: c.identity_file.clone(),
                known_hosts_file: c.known_hosts_file.clone(),
            };
            (
                h.name.clone(),
                (format!("{}@{address}:{}", c.user, c.port), jump),
            )
        })
        .collect();
    for host in hosts.values_mut() {
        if let Some((spec, jump)) = host.connection.jump.as_ref().and_then(|j| resolved.get(j)) {
            host.connection.jump = Some(spec.clone());
            host.connection.jump_host = Some(jump.clone());
        }
    }

    let mut groups = BTreeMap::new();
    let mut group_vars: BTreeMap<String, Vec<VarFile>> = BTreeMap::new();
    if let Some(n) = top.get("groups") {
        for (name, loc, body) in ctx.entries(n, "groups") {
            let path = yaml::join("groups", &name);
            if !valid_name(&name) || name == "all" {
                ctx.error(
                    loc,
                    &path,
                    Kind::InvalidValue,
                    "group names use letters, digits, '-', '_' and '.', and `all` is implicit",
                );
                continue;
            }
            if hosts.contains_key(&name) {
                ctx.error(
                    loc,
                    &path,
                    Kind::Duplicate,
                    format!("`{name}` is both a host and a group"),
                );
            }
            let Some(mut f) = ctx.fields(body, &path) else {
                continue;
            };
            let mut members = Vec::new();
            if let Some(list) = f.get("hosts") {
                let list_path = yaml::join(&path, "hosts");
                for (i, item) in ctx.seq(list, &list_path).iter().enumerate() {
                    let item_path = yaml::index(&list_path, i);
                    let Some(h) = ctx.string(item, &item_path) else {
                        continue;
                    };
                    match hosts.get_mut(&h) {
                        Some(host) => {
                            if !host.groups.contains(&name) {
                                host.groups.push(name.clone());
                                members.push(h);
                            }
                        }
                        None => ctx.error(
                            item.loc,
                            &item_path,
                            Kind::UnknownReference,
                            format!("no host named `{h}` in `hosts`"),
                        ),
                    }
                }
            }
            if let Some(v) = f.get("vars") {
                group_vars
                    .entry(name.clone())
                    .or_default()
                    .push(VarFile::from_node(
                        &mut ctx,
                        v,
                        &yaml::join(&path, "vars"),
                        false,
                    ));
            }
            f.finish(&mut ctx, false);
            members.sort();
            groups.insert(
                name.clone(),
                Group {
                    name,
                    hosts: members,
                },
            );
        }
    }
    for host in hosts.values_mut() {
        host.groups.sort();
    }

    let mut all_vars = Vec::new();
    if let Some(v) = top.get("vars") {
        all_vars.push(VarFile::from_node(&mut ctx, v, "vars", false));
    }
    let mut generated = Vec::new();
    if let Some(list) = top.get("generated") {
        for (i, g) in ctx.seq(list, "generated").iter().enumerate() {
            let p = yaml::index("generated", i);
            let Some(mut f) = ctx.fields(g, &p) else {
                continue;
            };
            let by = f
                .require(&mut ctx, "by")
                .and_then(|n| ctx.string(n, &yaml::join(&p, "by")));
            let paths = f
                .require(&mut ctx, "paths")
                .map(|n| ctx.string_list(n, &yaml::join(&p, "paths")))
                .unwrap_or_default();
            f.finish(&mut ctx, false);
            if let Some(by) = by {
                generated.push(Generated {
                    by,
                    paths,
                    loc: g.loc,
                });
            }
        }
    }
    top.finish(&mut ctx, false);
    drop(ctx);

    // group_vars/ and host_vars/: files or folders named after a group or host.
    for (folder, is_group) in [("group_vars", true), ("host_vars", false)] {
        for (name, files) in crate::vars::load_folder(src, root, &dir.join(folder), diags) {
            let known = if is_group {
                name == "all" || groups.contains_key(&name)
            } else {
                hosts.contains_key(&name)
            };
            if !known {
                let what = if is_group { "group" } else { "host" };
                for f in &files {
                    diags.error(
                        &f.source,
                        Loc::UNKNOWN,
                        "",
                        Kind::UnknownReference,
                        format!("no {what} named `{name}` in the inventory"),
                    );
                }
                continue;
            }
            let target = match (is_group, name.as_str()) {
                (true, "all") => &mut all_vars,
                (true, _) => group_vars.entry(name).or_default(),
                (false, _) => host_vars.entry(name).or_default(),
            };
            target.extend(files);
        }
    }

    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "inventory".into());
    Some(Inventory {
        name,
        dir: dir.to_path_buf(),
        file,
        hosts,
        groups,
        all_vars,
        group_vars,
        host_vars,
        generated,
    })
}

/// Names of every group, for messages.
pub fn names(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the project at `.`, a key four levels up kept only `keys/id`: ssh got another file.
    #[test]
    fn a_path_that_climbs_out_keeps_every_leading_parent() {
        let n = |p: &str| normalize(Path::new(p)).display().to_string();
        assert_eq!(n("inventory/lan/../../../../keys/id"), "../../keys/id");
        assert_eq!(n("../../keys/id"), "../../keys/id");
        assert_eq!(n("./a/./b/../c"), "a/c");
        assert_eq!(n("/etc/../../x"), "/x");
    }

    /// A jump named after an inventory host is that host's user, address and port, and carries
    /// its key and known hosts for the hop to it.
    #[test]
    fn a_jump_host_of_the_inventory_brings_its_own_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let inv = dir.path().join("inventory/jump");
        std::fs::create_dir_all(&inv).expect("mkdir");
        std::fs::write(
            inv.join("hosts.yml"),
            "hosts:\n  bastion: {address: 10.0.0.1, user: ops, port: 2222, identity_file: keys/bastion, known_hosts_file: keys/known}\n  db: {address: 10.0.1.5, identity_file: keys/db, jump: bastion}\n  edge: {address: 10.0.1.6, jump: admin@gateway.example:22}\n",
        )
        .expect("write");
        let mut diags = Diagnostics::default();
        let inventory = load(&Source::disk(), dir.path(), &inv, None, &mut diags).expect("loads");
        assert!(!diags.has_errors(), "{diags:?}");
        let db = &inventory.hosts["db"].connection;
        assert_eq!(db.jump.as_deref(), Some("ops@10.0.0.1:2222"));
        let jump = db.jump_host.as_ref().expect("the jump's settings");
        assert_eq!(jump.address, "10.0.0.1");
        assert!(
            jump.identity_file
                .as_ref()
                .is_some_and(|k| k.ends_with("keys/bastion"))
        );
        assert!(
            jump.known_hosts_file
                .as_ref()
                .is_some_and(|k| k.ends_with("keys/known"))
        );
        let edge = &inventory.hosts["edge"].connection;
        assert_eq!(edge.jump.as_deref(), Some("admin@gateway.example:22"));
        assert_eq!(
            edge.jump_host, None,
            "not an inventory host: ssh's own config applies"
        );
    }

    /// A host address that is an ssh option, or a value that would end a word of ssh's command
    /// line or of a generated ssh_config, is refused where it is written.
    #[test]
    fn what_reaches_ssh_is_checked_at_load() {
        let root = Path::new("/project");
        let text = "//- inventory/bad/hosts.yml\nhosts:\n  a: {address: \"-oProxyCommand=touch /tmp/x\"}\n  b: {address: 10.0.0.2, user: \"root -v\"}\n  c: {address: 10.0.0.3, jump: \"-J evil\"}\n  d: {address: 10.0.0.4, identity_file: \"keys/a\\\"\\nProxyCommand x\"}\n  e: {address: \"fe80::1%eth0\", user: deploy, jump: \"ops@[2001:db8::1]:22\"}\n";
        let mut diags = Diagnostics::default();
        load(
            &Source::fixture(root, text),
            root,
            &root.join("inventory/bad"),
            None,
            &mut diags,
        );
        let shown: Vec<String> = diags.sorted().iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        for (host, key) in [
            ("a", "address"),
            ("b", "user"),
            ("c", "jump"),
            ("d", "identity_file"),
        ] {
            assert!(
                shown
                    .iter()
                    .any(|d| d.contains(&format!("hosts.{host}.{key}"))),
                "{host}.{key}: {shown:#?}"
            );
        }
    }
}
