//! How a host is reached: its `ssh_*` keys (from the host, its groups and `all`), paths resolved
//! against the inventory's folder or the operator's home, and relative paths normalised without
//! losing a leading `..`.

use std::path::{Path, PathBuf};

use super::Connection;
use crate::diag::Kind;
use crate::yaml::{self, Ctx};

pub(super) fn connection(
    ctx: &mut Ctx<'_>,
    node: &yaml::Node,
    path: &str,
    base: &Connection,
    dir: &Base<'_>,
) -> Connection {
    let mut conn = base.clone();
    let Some(mut f) = ctx.fields(node, path) else {
        return conn;
    };
    connection_keys(ctx, &mut f, &mut conn, path, dir);
    f.finish(ctx, false);
    conn
}

/// The connection settings a host (or the `connection:` defaults) may set.
const CONNECTION_KEYS: [&str; 6] = [
    "user",
    "port",
    "identity_file",
    "known_hosts_file",
    "jump",
    "become",
];

/// Applies the connection keys present in `f` over `conn`.
pub(super) fn connection_keys(
    ctx: &mut Ctx<'_>,
    f: &mut yaml::Fields<'_>,
    conn: &mut Connection,
    path: &str,
    dir: &Base<'_>,
) {
    for key in CONNECTION_KEYS {
        if let Some(v) = f.get(key) {
            apply_connection_key(ctx, conn, key, v, &yaml::join(path, key), dir);
        }
    }
}

/// Whether `s` is a host address, a user or a jump (`user@host:port`) ssh can be given as it is:
/// no option (a leading `-`), no space, quote or control character that would end a word of its
/// command line or of a generated ssh_config.
pub(super) fn ssh_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'-' | b'_' | b':' | b'%' | b'[' | b']' | b'@')
        })
}

/// Reports `value` at `path` unless it is an [`ssh_word`]; whether it is.
pub(super) fn check_ssh_word(
    ctx: &mut Ctx<'_>,
    v: &yaml::Node,
    path: &str,
    what: &str,
    value: &str,
) -> bool {
    let ok = ssh_word(value);
    if !ok {
        ctx.error(
            v.loc,
            path,
            Kind::InvalidValue,
            format!("{value:?} is not a valid {what}: letters, digits, `.`, `-`, `_`, `:`, `@`, not starting with `-`"),
        );
    }
    ok
}

/// Whether a path can be written into an ssh_config between double quotes.
fn config_path(s: &str) -> bool {
    !s.contains('"') && !s.chars().any(char::is_control)
}

fn apply_connection_key(
    ctx: &mut Ctx<'_>,
    conn: &mut Connection,
    key: &str,
    v: &yaml::Node,
    path: &str,
    dir: &Base<'_>,
) {
    match key {
        "user" => {
            if let Some(s) = ctx.string(v, path)
                && check_ssh_word(ctx, v, path, "user", &s)
            {
                conn.user = s;
            }
        }
        "port" => {
            if let Some(p) = ctx.u64(v, path) {
                match u16::try_from(p) {
                    Ok(p) if p > 0 => conn.port = p,
                    _ => ctx.error(
                        v.loc,
                        path,
                        Kind::InvalidValue,
                        format!("{p} is not a TCP port"),
                    ),
                }
            }
        }
        "identity_file" | "known_hosts_file" => {
            let Some(s) = ctx.string(v, path) else {
                return;
            };
            if !config_path(&s) {
                ctx.error(
                    v.loc,
                    path,
                    Kind::InvalidValue,
                    "a path with a double quote or a control character cannot be given to ssh",
                );
                return;
            }
            let resolved = Some(resolve_path(dir, &s));
            if key == "identity_file" {
                conn.identity_file = resolved;
            } else {
                conn.known_hosts_file = resolved;
            }
        }
        "jump" => {
            conn.jump = ctx
                .string(v, path)
                .filter(|s| check_ssh_word(ctx, v, path, "jump host", s));
        }
        "become" => {
            if let Some(b) = ctx.bool(v, path) {
                conn.r#become = b;
            }
        }
        _ => {}
    }
}

/// What relative paths of an inventory are resolved against: its folder, and the user's home
/// for `~/` (given by the command layer, which reads the environment).
#[derive(Debug, Clone, Copy)]
pub(super) struct Base<'a> {
    pub(super) dir: &'a Path,
    pub(super) home: Option<&'a Path>,
}

/// Paths in an inventory are relative to its folder; `~/` is the user's home.
fn resolve_path(base: &Base<'_>, s: &str) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/")
        && let Some(home) = base.home
    {
        return home.join(rest);
    }
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        normalize(&base.dir.join(p))
    }
}

/// Removes `.` and `..` components without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            // Only a name of our own is popped: a `..` that climbs out of the start is kept,
            // and so is the root (`/..` is `/`).
            std::path::Component::ParentDir => match out.components().next_back() {
                Some(std::path::Component::Normal(_)) => {
                    out.pop();
                }
                Some(std::path::Component::RootDir | std::path::Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}
