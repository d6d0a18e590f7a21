//! Where a project's files are read from: the disk, or memory (a test's multi-file fixture). The
//! core reads its inputs through this one place, so a planner test needs no folder on disk, and
//! an unreadable folder or file is a diagnostic, never silently skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};

/// What a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    File,
    Dir,
}

/// A read-only file tree.
trait Files: Send + Sync + fmt::Debug {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn entry(&self, path: &Path) -> Option<Entry>;
    /// The direct children of `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// `path` with every symlink resolved.
    fn real(&self, path: &Path) -> io::Result<PathBuf>;
}

#[derive(Debug)]
struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() { Entry::Dir } else { Entry::File })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.path());
        }
        out.sort();
        Ok(out)
    }

    fn real(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }
}

/// Files in memory, by path; folders are implied by the paths under them.
#[derive(Debug, Default)]
struct Memory {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Files for Memory {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| {
            let kind = if self.entry(path) == Some(Entry::Dir) {
                io::ErrorKind::IsADirectory
            } else {
                io::ErrorKind::NotFound
            };
            io::Error::from(kind)
        })
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        if self.files.contains_key(path) {
            return Some(Entry::File);
        }
        self.files
            .keys()
            .any(|p| p.starts_with(path) && p != path)
            .then_some(Entry::Dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if self.entry(dir) != Some(Entry::Dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut out: Vec<PathBuf> = self
            .files
            .keys()
            .filter_map(|p| {
                let rest = p.strip_prefix(dir).ok()?;
                let first = rest.components().next()?;
                Some(dir.join(first))
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    fn real(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }
}

/// The project's files, wherever they are.
#[derive(Debug, Clone)]
pub struct Source(Arc<dyn Files>);

impl Default for Source {
    fn default() -> Source {
        Source::disk()
    }
}

impl Source {
    /// The real file system.
    pub fn disk() -> Source {
        Source(Arc::new(Disk))
    }

    /// A multi-file fixture under `root`: each file starts with a `//- path` line (relative to
    /// `root`), and its content runs to the next such line.
    pub fn fixture(root: &Path, text: &str) -> Source {
        let mut files = BTreeMap::new();
        let mut current: Option<(PathBuf, String)> = None;
        for line in text.lines() {
            if let Some(path) = line.trim_start().strip_prefix("//- ") {
                if let Some((p, content)) = current.take() {
                    files.insert(p, content.into_bytes());
                }
                current = Some((root.join(path.trim()), String::new()));
            } else if let Some((_, content)) = &mut current {
                content.push_str(line);
                content.push('\n');
            }
        }
        if let Some((p, content)) = current {
            files.insert(p, content.into_bytes());
        }
        Source(Arc::new(Memory { files }))
    }

    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.read(path)
    }

    /// Reads `name` inside `dir` only: a name that climbs out (`..`, an absolute path) or a
    /// symlink that leads outside `dir` is not found.
    pub fn read_inside(&self, dir: &Path, name: &Path) -> io::Result<String> {
        String::from_utf8(self.read_inside_bytes(dir, name)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// [`Source::read_inside`], the bytes as they are.
    pub fn read_inside_bytes(&self, dir: &Path, name: &Path) -> io::Result<Vec<u8>> {
        let outside = || io::Error::from(io::ErrorKind::NotFound);
        if !name
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(outside());
        }
        let path = dir.join(name);
        let (real, base) = (self.0.real(&path)?, self.0.real(dir)?);
        if !real.starts_with(&base) {
            return Err(outside());
        }
        self.0.read(&path)
    }

    /// Whether `path` is inside `root` once links are resolved (lexically, for a path that does
    /// not exist): what a project may read is its own files, never the operator's others.
    pub fn within(&self, root: &Path, path: &Path) -> bool {
        match (self.0.real(path), self.0.real(root)) {
            (Ok(real), Ok(base)) => real.starts_with(base),
            _ => crate::inventory::normalize(path).starts_with(crate::inventory::normalize(root)),
        }
    }

    /// The cargo workspace `dir` is in: the nearest folder from `dir` up whose Cargo.toml has a
    /// `[workspace]` table. A workspace binary's inputs may lie anywhere in it, and nowhere else.
    pub fn cargo_workspace(&self, dir: &Path) -> Option<PathBuf> {
        let start = self
            .0
            .real(dir)
            .unwrap_or_else(|_| crate::inventory::normalize(dir));
        start.ancestors().find_map(|d| {
            let manifest = self.read_to_string(&d.join("Cargo.toml")).ok()?;
            manifest
                .lines()
                .any(|l| l.trim() == "[workspace]")
                .then(|| d.to_path_buf())
        })
    }

    pub fn read_to_string(&self, path: &Path) -> io::Result<String> {
        String::from_utf8(self.0.read(path)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn is_file(&self, path: &Path) -> bool {
        self.0.entry(path) == Some(Entry::File)
    }

    pub fn is_dir(&self, path: &Path) -> bool {
        self.0.entry(path) == Some(Entry::Dir)
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.0.entry(path).is_some()
    }

    /// The direct children of `dir`, sorted; a folder that is not there has none, any other
    /// failure to read it is reported (against `root`-relative names).
    pub fn children(&self, root: &Path, dir: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
        match self.0.list(dir) {
            Ok(list) => list,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                diags.error(
                    &SourceName::new(root, dir),
                    Loc::UNKNOWN,
                    "",
                    Kind::Io,
                    format!("cannot read the folder: {e}"),
                );
                Vec::new()
            }
        }
    }

    /// The YAML files of `dir`, sorted by name.
    pub fn yaml_files(&self, root: &Path, dir: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
        self.children(root, dir, diags)
            .into_iter()
            .filter(|p| self.is_file(p) && is_yaml(p))
            .collect()
    }

    /// Every file under `dir`, as paths relative to it with `/` separators, sorted; unreadable
    /// folders are skipped (the caller hashes or lists what it can read).
    pub fn files_under(&self, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(dir, dir, &mut out);
        out.sort();
        out
    }

    fn walk(&self, root: &Path, dir: &Path, out: &mut Vec<String>) {
        for p in self.0.list(dir).unwrap_or_default() {
            if self.is_dir(&p) {
                self.walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_is_a_tree_of_files() {
        let root = Path::new("/p");
        let src = Source::fixture(
            root,
            "//- inventory/t/hosts.yml\nhosts: {}\n//- vars/a.yml\nx: 1\n//- vars/b.txt\n",
        );
        assert_eq!(
            src.read_to_string(&root.join("inventory/t/hosts.yml"))
                .ok()
                .as_deref(),
            Some("hosts: {}\n")
        );
        assert!(src.is_dir(&root.join("inventory")));
        let mut diags = Diagnostics::new();
        assert_eq!(
            src.yaml_files(root, &root.join("vars"), &mut diags),
            [root.join("vars/a.yml")]
        );
        assert!(
            src.children(root, &root.join("absent"), &mut diags)
                .is_empty()
        );
        assert!(diags.is_empty());
        assert_eq!(src.files_under(root).len(), 3);
    }

    /// A template named `../x`, or a symlink in templates/ pointing at the controller's files,
    /// reads nothing outside templates/.
    #[test]
    fn nothing_outside_a_folder_is_read_through_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let templates = dir.path().join("templates");
        std::fs::create_dir(&templates).expect("mkdir");
        std::fs::write(dir.path().join("secret"), "key").expect("write");
        std::fs::write(templates.join("ok.j2"), "fine").expect("write");
        std::os::unix::fs::symlink(dir.path(), templates.join("up")).expect("symlink");
        let src = Source::disk();
        assert_eq!(
            src.read_inside(&templates, Path::new("ok.j2"))
                .ok()
                .as_deref(),
            Some("fine")
        );
        for name in ["../secret", "up/secret", "/etc/hostname"] {
            let e = src
                .read_inside(&templates, Path::new(name))
                .expect_err(name);
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{name}");
        }
    }
}
