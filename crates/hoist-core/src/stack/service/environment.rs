//! `command`, `environment` and `env_file`: the words a container runs and the variables it
//! gets, env files read (and rendered when `.j2`) from the repository.

use std::collections::BTreeMap;
use std::path::Path;

use crate::desired::Content;
use crate::diag::Kind;
use crate::inventory::normalize;
use crate::template;
use crate::yaml::{self, Ctx, Node, Value};

use super::super::LowerCtx;

/// A command in string form is split like a shell would, without running one (compose's rule).
pub(super) fn command(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Vec<String>> {
    match &v.value {
        Value::Seq(_) => Some(ctx.string_list(v, p)),
        Value::Null => None,
        _ => {
            let s = ctx.string(v, p)?;
            match shlex::split(&s) {
                Some(words) => Some(words),
                None => {
                    ctx.error(v.loc, p, Kind::InvalidValue, "unbalanced quotes in command");
                    None
                }
            }
        }
    }
}

/// A map (`KEY: value`) or a list (`KEY=value`) of strings.
pub(in crate::stack) fn string_map(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
) -> BTreeMap<String, String> {
    pairs(ctx, v, p, false)
}

/// `labels`: a string map where a bare `name` in the list form is a label with an empty value,
/// as compose reads it.
pub(in crate::stack) fn labels(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, String> {
    pairs(ctx, v, p, true)
}

fn pairs(ctx: &mut Ctx<'_>, v: &Node, p: &str, bare_is_empty: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = yaml::index(p, i);
                let Some(s) = ctx.string(item, &ip) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, val)) => {
                        out.insert(k.to_owned(), val.to_owned());
                    }
                    None if bare_is_empty && !s.is_empty() => {
                        out.insert(s, String::new());
                    }
                    None => ctx.error(
                        item.loc,
                        &ip,
                        Kind::InvalidValue,
                        format!("expected `name=value`, found {s:?}"),
                    ),
                }
            }
        }
        _ => {
            for (k, _, val) in ctx.entries(v, p) {
                let vp = yaml::join(p, &k);
                let text = if val.is_null() {
                    Some(String::new())
                } else {
                    ctx.string(val, &vp)
                };
                if let Some(t) = text {
                    out.insert(k, t);
                }
            }
        }
    }
    out
}

/// `environment`: like a string map, but a bare `KEY` (or `KEY:` with no value) takes the variable of
/// the same name (the inventory's, then the stack's `.env`), as compose takes it from its
/// environment.
pub(super) fn environment(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    lc: &LowerCtx<'_>,
    dotenv: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut bare = Vec::new();
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = yaml::index(p, i);
                let Some(s) = ctx.string(item, &ip) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, val)) => {
                        out.insert(k.to_owned(), val.to_owned());
                    }
                    None => bare.push((s, item.loc, ip)),
                }
            }
        }
        _ => {
            for (k, loc, val) in ctx.entries(v, p) {
                let vp = yaml::join(p, &k);
                if val.is_null() {
                    bare.push((k, loc, vp));
                } else if let Some(t) = ctx.string(val, &vp) {
                    out.insert(k, t);
                }
            }
        }
    }
    for (k, loc, vp) in bare {
        match crate::stack::lookup(lc.vars, dotenv, &k) {
            Some((val, _)) => {
                out.insert(k, val);
            }
            None => ctx.error(
                loc,
                &vp,
                Kind::UndefinedVariable,
                format!(
                    "`{k}` has no value and no variable `{k}` is defined (host {})",
                    lc.host
                ),
            ),
        }
    }
    out
}

pub(super) fn env_files(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<(String, bool)> {
    match &v.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match &item.value {
                Value::Map(_) => {
                    let ip = yaml::index(p, i);
                    let mut f = ctx.fields(item, &ip)?;
                    let path = f
                        .require(ctx, "path")
                        .and_then(|n| ctx.string(n, &yaml::join(&ip, "path")));
                    let required = f.bool(ctx, "required").unwrap_or(true);
                    f.finish(ctx, true);
                    path.map(|s| (s, required))
                }
                _ => ctx.string(item, &yaml::index(p, i)).map(|s| (s, true)),
            })
            .collect(),
        _ => ctx
            .string(v, p)
            .map(|s| vec![(s, true)])
            .unwrap_or_default(),
    }
}

/// Reads (rendering `.j2` files) and parses one env file.
pub(super) fn env_file(
    ctx: &mut Ctx<'_>,
    item: &(String, bool),
    v: &Node,
    p: &str,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) -> BTreeMap<String, String> {
    let (rel, required) = item;
    let path = normalize(&stack_dir.join(rel));
    if !lc.src.within(lc.root, &path) {
        ctx.error(v.loc, p, Kind::InvalidValue, outside(rel));
        return BTreeMap::new();
    }
    if !lc.src.is_file(&path) {
        if *required {
            ctx.error(
                v.loc,
                p,
                Kind::UnknownReference,
                format!("env file {rel:?} does not exist"),
            );
        }
        return BTreeMap::new();
    }
    let Some(content) = read_source(ctx, &path, v, p, lc) else {
        return BTreeMap::new();
    };
    let Content::Text(text) = content else {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("env file {rel:?} is not text"),
        );
        return BTreeMap::new();
    };
    env_lines(ctx, &text, rel, v.loc, p)
}

/// The `KEY=value` lines of an env file; a bad line is reported by line and key, never shown.
pub(in crate::stack) fn env_lines(
    ctx: &mut Ctx<'_>,
    text: &str,
    rel: &str,
    loc: crate::diag::Loc,
    p: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Errors come in file order: each is looked for after the line of the one before.
    let mut after = 0;
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, val)) => {
                out.insert(k, val);
            }
            // Never the line itself: whatever file was named (a key, by mistake) stays unshown.
            Err(e) => {
                let said = bad_line(text, &e, &mut after);
                ctx.error(loc, p, Kind::InvalidValue, format!("{rel}: {said}"));
            }
        }
    }
    out
}

/// Where an env file's bad line is and what key it names, from the parser's error, without its
/// text; `after` is the line of the previous error (0 before the first), and becomes this one's.
fn bad_line(text: &str, e: &dotenvy::Error, after: &mut usize) -> String {
    let dotenvy::Error::LineParse(fragment, column) = e else {
        return "not readable as KEY=value lines".into();
    };
    // The parser gives the entry from its start (several lines for a quoted value): its first
    // line is a whole line of the file, after the previous error's.
    let first = fragment.lines().next().unwrap_or_default().trim();
    let lines = || text.lines().enumerate().skip(*after);
    let found = lines()
        .find(|(_, l)| !first.is_empty() && l.trim() == first)
        .or_else(|| lines().find(|(_, l)| !first.is_empty() && l.contains(first)));
    let Some((index, line)) = found else {
        return "a line is not KEY=value".into();
    };
    *after = index + 1;
    let key: String = line
        .trim_start()
        .trim_start_matches("export ")
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_default();
    let named = if key.is_empty() {
        String::new()
    } else {
        format!(" (key {key})")
    };
    format!(
        "line {}{named}: not a KEY=value line (at column {})",
        index + 1,
        column + 1
    )
}

/// Why a path the project names is not read.
pub(in crate::stack) fn outside(rel: &str) -> String {
    format!(
        "{rel:?} is outside the project (links resolved): a stack reads only the repository's own files"
    )
}

/// The content of a repository file: a `.j2` file is rendered for the host; any other file is
/// taken byte for byte, binary ones included.
pub(in crate::stack) fn read_source(
    ctx: &mut Ctx<'_>,
    path: &Path,
    v: &Node,
    p: &str,
    lc: &LowerCtx<'_>,
) -> Option<Content> {
    if !lc.src.within(lc.root, path) {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            outside(&path.to_string_lossy()),
        );
        return None;
    }
    let bytes = match lc.src.read(path) {
        Ok(b) => b,
        Err(e) => {
            ctx.error(
                v.loc,
                p,
                Kind::Io,
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    if path.extension().and_then(|e| e.to_str()) != Some("j2") {
        return Some(Content::from_bytes(bytes));
    }
    let Ok(text) = String::from_utf8(bytes) else {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("{} is a template (.j2) but not UTF-8 text", path.display()),
        );
        return None;
    };
    let templates = normalize(&template::templates_dir(lc.root));
    let rendered = lc
        .vars
        .render_tracked(lc.redactor, |ctx| match path.strip_prefix(&templates) {
            Ok(name) => template::render_file(lc.env, &name.to_string_lossy(), ctx),
            Err(_) => lc.env.render_named_str(&path.to_string_lossy(), &text, ctx),
        });
    match rendered {
        Ok(out) => Some(Content::Text(out)),
        Err(e) => {
            let origin = template::Origin {
                file: crate::diag::SourceName::new(lc.root, path),
                line_offset: 0,
                field: String::new(),
            };
            template::report(&e, &origin, ctx.diags);
            None
        }
    }
}
