//! Names that go into SQL text. Values are always bound parameters; a table name cannot be, so it
//! is a [`TableName`], validated when it is parsed and written quoted, never spliced as given.

use std::fmt;
use std::str::FromStr;

/// A table, `name` or `schema.name`, each part a lower-case PostgreSQL identifier (letters, digits
/// and `_`, not starting with a digit, at most 63 bytes): quoted, it means what it means unquoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

fn identifier(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 63
        && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl FromStr for TableName {
    type Err = String;

    fn from_str(s: &str) -> Result<TableName, String> {
        let (schema, name) = match s.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, s),
        };
        if !identifier(name) || !schema.is_none_or(identifier) {
            return Err(format!(
                "{s:?} is not a table name: lower-case letters, digits and `_`, optionally `schema.table`"
            ));
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl TableName {
    /// The unquoted form (`schema.name`): safe to splice, since every part was validated, and
    /// how reports name the table.
    pub fn plain(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for TableName {
    /// The quoted form, for SQL text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "\"{s}\".\"{}\"", self.name),
            None => write!(f, "\"{}\"", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_qualified_names_are_quoted() {
        let t: TableName = "apm_events".parse().expect("valid");
        assert_eq!(t.to_string(), "\"apm_events\"");
        let t: TableName = "public.apm_events".parse().expect("valid");
        assert_eq!(t.to_string(), "\"public\".\"apm_events\"");
    }

    #[test]
    fn sql_in_a_name_is_refused() {
        for bad in [
            "events; DROP TABLE events",
            "events\" OR 1=1 --",
            "Events",
            "1events",
            "",
            "a.b.c",
            "events AS t",
        ] {
            assert!(bad.parse::<TableName>().is_err(), "{bad:?}");
        }
    }
}
