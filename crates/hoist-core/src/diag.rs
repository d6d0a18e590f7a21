//! Diagnostics: every problem found while loading inputs, with the file, line and field it belongs to.
//!
//! Loading never stops at the first problem: each loader pushes into a [`Diagnostics`] and carries on
//! with what it could read, so `hoist check` shows everything at once.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A position in a source file (1-based; 0 means unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub const UNKNOWN: Loc = Loc { line: 0, column: 0 };

    pub fn new(line: u32, column: u32) -> Loc {
        Loc { line, column }
    }
}

/// What kind of problem a diagnostic reports; stable names for `--json` consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The file could not be read.
    Io,
    /// The file is not valid YAML (or INI, for imports).
    Syntax,
    /// A key that the format does not support.
    UnknownKey,
    /// A value of the wrong type (a list where a map was expected, ...).
    WrongType,
    /// A key of the format that hoist refuses or ignores, and says why.
    Unsupported,
    /// A required key is absent.
    MissingKey,
    /// A value of the right type that is not acceptable (a bad duration, port, mode...).
    InvalidValue,
    /// A name that refers to nothing (a group, host, stack, template, service...).
    UnknownReference,
    /// The same name defined twice.
    Duplicate,
    /// A variable that is used but defined nowhere.
    UndefinedVariable,
    /// A template that does not render.
    Template,
    /// A dependency cycle (services, variables).
    Cycle,
    /// An encrypted value that cannot be decrypted.
    Secret,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Io => "io",
            Kind::Syntax => "syntax",
            Kind::UnknownKey => "unknown-key",
            Kind::WrongType => "wrong-type",
            Kind::Unsupported => "unsupported",
            Kind::MissingKey => "missing-key",
            Kind::InvalidValue => "invalid-value",
            Kind::UnknownReference => "unknown-reference",
            Kind::Duplicate => "duplicate",
            Kind::UndefinedVariable => "undefined-variable",
            Kind::Template => "template",
            Kind::Cycle => "cycle",
            Kind::Secret => "secret",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path relative to the project root, with `/` separators.
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Dotted field path inside the file (`services.db.healthcheck.interval`), empty when not applicable.
    pub field: String,
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]: {}", self.kind.as_str(), self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The diagnostics of one load, in the order they were found (sorted for display).
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }

    /// Reports an error at `loc` in `file` about `field`.
    pub fn error(
        &mut self,
        file: &SourceName,
        loc: Loc,
        field: &str,
        kind: Kind,
        message: impl Into<String>,
    ) {
        self.push(Diagnostic {
            severity: Severity::Error,
            file: file.0.clone(),
            line: loc.line,
            column: loc.column,
            field: field.to_owned(),
            kind,
            message: message.into(),
        });
    }

    pub fn warning(
        &mut self,
        file: &SourceName,
        loc: Loc,
        field: &str,
        kind: Kind,
        message: impl Into<String>,
    ) {
        self.push(Diagnostic {
            severity: Severity::Warning,
            file: file.0.clone(),
            line: loc.line,
            column: loc.column,
            field: field.to_owned(),
            kind,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// These diagnostics but those of `kinds`.
    pub fn without(self, kinds: &[Kind]) -> Diagnostics {
        Diagnostics {
            items: self
                .items
                .into_iter()
                .filter(|d| !kinds.contains(&d.kind))
                .collect(),
        }
    }

    pub fn extend(&mut self, other: Diagnostics) {
        for d in other.items {
            self.push(d);
        }
    }

    /// Diagnostics sorted by file, position and message: the order users read them in.
    pub fn sorted(&self) -> Vec<Diagnostic> {
        let mut items = self.items.clone();
        items.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.field, &a.message)
                .cmp(&(&b.file, b.line, b.column, &b.field, &b.message))
        });
        items
    }
}

/// The name a file is reported under: its path relative to the project root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceName(pub String);

impl SourceName {
    /// Names `path` relative to `root` when it lies inside it, as written otherwise.
    pub fn new(root: &Path, path: &Path) -> SourceName {
        let shown: PathBuf = path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf());
        SourceName(shown.to_string_lossy().replace('\\', "/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
