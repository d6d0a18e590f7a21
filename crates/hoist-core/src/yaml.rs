//! A located YAML tree and the helpers that decode it into domain types.
//!
//! Input files are parsed once into [`Node`]s that remember their line and column (anchors, aliases and
//! `<<` merge keys already applied by serde-saphyr). Decoders then walk the tree with a [`Fields`]
//! reader that records every key it consumes, so that an unknown key anywhere becomes a diagnostic
//! naming its path, and one bad field never hides the others.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};

/// A YAML value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
    /// Byte range of the node's text in the source, when known (used to rewrite values in place).
    pub bytes: Option<std::ops::Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The text of a scalar, as a string (`5432` and `"5432"` read the same); `None` for collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Converts to JSON (map keys become strings), dropping positions.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Value> = Spanned::deserialize(deserializer)?;
        let at = spanned.referenced;
        let span = at.span();
        let bytes = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => Some(start as usize..(start + len) as usize),
            _ => None,
        };
        Ok(Node {
            value: spanned.value,
            loc: Loc::new(at.line() as u32, at.column() as u32),
            bytes,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            // Later keys win, as in YAML merges and compose; keep the first position for messages.
            if let Some(slot) = entries.iter_mut().find(|(k, _)| k.value == key.value) {
                slot.1 = value;
            } else {
                entries.push((key, value));
            }
        }
        Ok(Value::Map(entries))
    }
}

/// Reads and parses the YAML file at `path` (reported relative to `root`). A missing file is
/// reported as `missing`; other read and syntax errors as themselves.
pub fn load(
    src: &crate::source::Source,
    root: &std::path::Path,
    path: &std::path::Path,
    missing: &str,
    diags: &mut Diagnostics,
) -> Option<(SourceName, Node)> {
    let source = SourceName::new(root, path);
    let text = match src.read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                missing.to_owned()
            } else {
                format!("cannot read: {e}")
            };
            diags.error(&source, Loc::UNKNOWN, "", Kind::Io, what);
            return None;
        }
    };
    let node = parse(&source, &text, diags)?;
    Some((source, node))
}

/// Parses `text` (the content of `file`) into a located tree; a syntax error becomes a diagnostic.
pub fn parse(file: &SourceName, text: &str, diags: &mut Diagnostics) -> Option<Node> {
    if text.trim().is_empty() {
        return Some(Node {
            value: Value::Null,
            loc: Loc::new(1, 1),
            bytes: None,
        });
    }
    // YAML 1.2 scalars: `no`, `on` and `y` stay strings (compose's `restart: no`), and `0644` stays the
    // text the user wrote rather than becoming 644.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(node) => Some(node),
        Err(err) => {
            let loc = err
                .location()
                .map(|l| Loc::new(l.line() as u32, l.column() as u32))
                .unwrap_or_default();
            let message = first_line(&err.without_snippet().to_string());
            diags.error(file, loc, "", Kind::Syntax, message);
            None
        }
    }
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    // serde-saphyr appends " at line N column M"; the location is reported separately.
    match line.find(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        let mut diags = Diagnostics::new();
        let node = parse(&SourceName("t.yml".into()), text, &mut diags);
        assert!(!diags.has_errors(), "{:?}", diags.sorted());
        node.expect("parsed")
    }

    #[test]
    fn positions_and_merge_keys() {
        let node = parse_ok("base: &b\n  a: 1\n  b: x\nsvc:\n  <<: *b\n  b: y\n");
        let Value::Map(top) = &node.value else {
            panic!("map")
        };
        let svc = &top[1].1;
        assert_eq!(svc.to_json(), serde_json::json!({"a": 1, "b": "y"}));
        assert_eq!(top[1].0.loc.line, 4);
    }

    #[test]
    fn syntax_error_is_located() {
        let mut diags = Diagnostics::new();
        parse(
            &SourceName("bad.yml".into()),
            "a: [1, 2\nb: 3\n",
            &mut diags,
        );
        let all = diags.sorted();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, Kind::Syntax);
        assert!(all[0].line > 0);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let node = parse_ok("image: x\nimgae: y\nx-ext: 1\n");
        let mut diags = Diagnostics::new();
        let mut ctx = Ctx::new(SourceName("s.yml".into()), &mut diags);
        let mut f = ctx.fields(&node, "services.web").expect("map");
        assert_eq!(f.string(&mut ctx, "image").as_deref(), Some("x"));
        f.finish(&mut ctx, true);
        let all = diags.sorted();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].field, "services.web.imgae");
        assert_eq!((all[0].line, all[0].column), (2, 1));
    }
}
