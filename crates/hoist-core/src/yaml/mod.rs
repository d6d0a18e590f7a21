//! A located YAML tree and the helpers that decode it into domain types.
//!
//! Input files are parsed once into [`Node`]s that remember their line and column (anchors, aliases and
//! `<<` merge keys already applied by serde-saphyr). Decoders then walk the tree with a [`Fields`]
//! reader that records every key it consumes, so that an unknown key anywhere becomes a diagnostic
//! naming its path, and one bad field never hides the others.

mod fields;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};

pub use fields::{Ctx, Fields, describe, index, join};

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
