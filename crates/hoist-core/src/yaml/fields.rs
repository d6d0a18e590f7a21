//! Decoding a located tree: field paths, the per-file context that reports problems, and
//! [`Fields`], the reader that records every key it consumes so an unknown one is reported.

use super::{Node, Value};
use crate::diag::{Diagnostics, Kind, Loc, SourceName};

/// Appends `key` to a dotted field path.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends a list index to a field path.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The decoding context of one file: where problems are reported.
#[derive(Debug)]
pub struct Ctx<'d> {
    pub file: SourceName,
    pub diags: &'d mut Diagnostics,
}

impl<'d> Ctx<'d> {
    pub fn new(file: SourceName, diags: &'d mut Diagnostics) -> Ctx<'d> {
        Ctx { file, diags }
    }

    pub fn error(&mut self, loc: Loc, field: &str, kind: Kind, message: impl Into<String>) {
        self.diags.error(&self.file, loc, field, kind, message);
    }

    pub fn warning(&mut self, loc: Loc, field: &str, kind: Kind, message: impl Into<String>) {
        self.diags.warning(&self.file, loc, field, kind, message);
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = node.type_name();
        self.error(
            node.loc,
            path,
            Kind::WrongType,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Reads a map's fields; `null` reads as an empty map. Reports anything else.
    pub fn fields<'n>(&mut self, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Fields::new(node, entries, path)),
            Value::Null => Some(Fields::new(node, &[], path)),
            _ => {
                self.wrong_type(node, path, "a map");
                None
            }
        }
    }

    /// Reads a map as ordered `(key, value)` pairs with string keys.
    pub fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Vec<(String, Loc, &'n Node)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .filter_map(|(k, v)| match k.scalar_text() {
                    Some(name) => Some((name, k.loc, v)),
                    None => {
                        self.error(k.loc, path, Kind::WrongType, "map keys must be strings");
                        None
                    }
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(node, path, "a map");
                Vec::new()
            }
        }
    }

    /// Reads a list; `null` reads as empty.
    pub fn seq<'n>(&mut self, node: &'n Node, path: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.wrong_type(node, path, "a list");
                &[]
            }
        }
    }

    /// Reads a scalar as a string (numbers and booleans are accepted as their text).
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Seq(_) | Value::Map(_) | Value::Null => {
                self.wrong_type(node, path, "a string");
                None
            }
            _ => node.scalar_text(),
        }
    }

    /// Reads a string or a list of strings.
    pub fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &index(path, i)))
                .collect(),
            Value::Null => Vec::new(),
            _ => self.string(node, path).into_iter().collect(),
        }
    }

    /// Reads a list of strings (a single string is a wrong type).
    pub fn string_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        self.seq(node, path)
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(item, &index(path, i)))
            .collect()
    }

    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                self.wrong_type(node, path, "true or false");
                None
            }
        }
    }

    pub fn u64(&mut self, node: &Node, path: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.loc,
                path,
                Kind::InvalidValue,
                format!("expected a non-negative integer, found {}", describe(node)),
            );
        }
        parsed
    }
}

/// A short description of a node for messages: its scalar text in quotes, or its type.
pub fn describe(node: &Node) -> String {
    match node.scalar_text() {
        Some(text) if !node.is_null() => format!("{text:?}"),
        _ => node.type_name().to_owned(),
    }
}

/// The fields of one map being decoded. Call [`Fields::finish`] to report the keys nobody asked for.
#[derive(Debug)]
pub struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    pub path: String,
}

impl<'n> Fields<'n> {
    fn new(node: &'n Node, entries: &'n [(Node, Node)], path: &str) -> Fields<'n> {
        Fields {
            node,
            entries,
            used: vec![false; entries.len()],
            path: path.to_owned(),
        }
    }

    /// The value of `key`, if present; marks it as understood.
    pub fn get(&mut self, key: &str) -> Option<&'n Node> {
        let entries = self.entries;
        let i = entries
            .iter()
            .position(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))?;
        self.used[i] = true;
        Some(&entries[i].1)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
    }

    /// The field path of `key` inside this map.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Like [`Fields::get`], reporting a missing key.
    pub fn require(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            let loc = self.node.loc;
            ctx.error(
                loc,
                &self.path,
                Kind::MissingKey,
                format!("missing required key `{key}`"),
            );
        }
        found
    }

    pub fn string(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Option<String> {
        let node = self.get(key)?;
        ctx.string(node, &self.path_of(key))
    }

    pub fn bool(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let node = self.get(key)?;
        ctx.bool(node, &self.path_of(key))
    }

    /// Reports every key that was not consumed. Keys starting with `x-` are extension fields when
    /// `allow_extensions` is set, and are skipped as compose does.
    pub fn finish(self, ctx: &mut Ctx<'_>, allow_extensions: bool) {
        for ((key, _), used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            let name = key.scalar_text().unwrap_or_default();
            if allow_extensions && name.starts_with("x-") {
                continue;
            }
            ctx.error(
                key.loc,
                &join(&self.path, &name),
                Kind::UnknownKey,
                format!("unknown key `{name}`"),
            );
        }
    }

    /// The keys not yet consumed, for callers that treat the rest as free-form.
    pub fn remaining(&self) -> Vec<(&'n Node, &'n Node)> {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|((k, v), _)| (k, v))
            .collect()
    }
}
