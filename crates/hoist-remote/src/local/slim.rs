//! What makes a debootstrapped tree a slim Debian base, as the registry's `debian:*-slim` images
//! are: no package caches or lists, no documentation, manual pages or translations (dpkg told to
//! keep leaving them out of every later install), and apt told to clean its caches after itself
//! in every image built on it. Every platform image starts from this base, so what it leaves out
//! is left out of every image a host receives.

use std::io;
use std::path::Path;

/// apt's settings, as the registry's Debian images carry them.
const APT_CONF: [(&str, &str); 4] = [
    (
        "etc/apt/apt.conf.d/docker-clean",
        concat!(
            "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n",
            "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n",
            "Dir::Cache::pkgcache \"\";\n",
            "Dir::Cache::srcpkgcache \"\";\n",
        ),
    ),
    (
        "etc/apt/apt.conf.d/docker-autoremove-suggests",
        "Apt::AutoRemove::SuggestsImportant \"false\";\n",
    ),
    (
        "etc/apt/apt.conf.d/docker-no-languages",
        "Acquire::Languages \"none\";\n",
    ),
    (
        "etc/apt/apt.conf.d/docker-gzip-indexes",
        "Acquire::GzipIndexes \"true\";\n",
    ),
];

/// The folders dpkg leaves out from now on (a package's copyright notice stays).
const LEFT_OUT: [&str; 6] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/groff",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
];

/// What the bootstrap left that no image needs: folder, and the file names kept in it (apt's
/// lock; folders always stay, apt expects its `partial` ones).
const CLEARED: [(&str, &[&str]); 3] = [
    // apt-get update makes the lists again, and docker-clean keeps the caches out.
    ("var/cache/apt", &[]),
    ("var/lib/apt/lists", &["lock"]),
    // debootstrap's and dpkg's logs of the bootstrap itself.
    ("var/log", &[]),
];

/// The name kept in [`LEFT_OUT`].
const COPYRIGHT: &str = "copyright";

/// The image's command, as the registry's Debian images have it.
pub const CMD: &str = "CMD [\"bash\"]";

/// dpkg's side of [`LEFT_OUT`].
fn dpkg_excludes() -> String {
    let mut s = String::new();
    for dir in LEFT_OUT {
        s.push_str(&format!("path-exclude /{dir}/*\n"));
    }
    s.push_str(&format!("path-include /usr/share/doc/*/{COPYRIGHT}\n"));
    s
}

const DPKG_CONF: &str = "etc/dpkg/dpkg.cfg.d/docker-slim";

/// A hash of everything [`apply`] and the import do: a base made by another recipe is made again.
pub fn recipe() -> String {
    let mut all = format!("{CMD}\n{DPKG_CONF}\n{}", dpkg_excludes());
    for (path, body) in APT_CONF {
        all.push_str(&format!("{path}\n{body}"));
    }
    for (dir, kept) in CLEARED {
        all.push_str(&format!("{dir} {}\n", kept.join(" ")));
    }
    for dir in LEFT_OUT {
        all.push_str(&format!("{dir} {COPYRIGHT}\n"));
    }
    hoist_core::desired::sha256_hex(all.as_bytes())
}

/// Slims the tree at `root` in place.
pub fn apply(root: &Path) -> io::Result<()> {
    for (path, body) in APT_CONF {
        write(&root.join(path), body)?;
    }
    write(&root.join(DPKG_CONF), &dpkg_excludes())?;
    for (dir, kept) in CLEARED {
        remove_files(&root.join(dir), &|name| !kept.contains(&name))?;
    }
    for dir in LEFT_OUT {
        remove_files(&root.join(dir), &|name| name != COPYRIGHT)?;
    }
    Ok(())
}

fn write(path: &Path, body: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, body)
}

/// Removes every file under `dir` (at any depth) whose name `remove` accepts; folders stay (apt
/// expects its `partial` folders). A missing `dir` is nothing to do.
fn remove_files(dir: &Path, remove: &dyn Fn(&str) -> bool) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_dir() && remove(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_docs_and_translations_go_and_copyrights_stay() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for file in [
            "var/cache/apt/archives/bash_5.2_amd64.deb",
            "var/cache/apt/pkgcache.bin",
            "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages",
            "var/lib/apt/lists/lock",
            "var/log/bootstrap.log",
            "usr/share/doc/bash/copyright",
            "usr/share/doc/bash/changelog.Debian.gz",
            "usr/share/man/man1/bash.1.gz",
            "usr/share/locale/fr/LC_MESSAGES/bash.mo",
            "usr/bin/bash",
        ] {
            write(&root.join(file), "x").expect("write");
        }
        apply(root).expect("slim");
        let exists = |p: &str| root.join(p).exists();
        for gone in [
            "var/cache/apt/archives/bash_5.2_amd64.deb",
            "var/cache/apt/pkgcache.bin",
            "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages",
            "var/log/bootstrap.log",
            "usr/share/doc/bash/changelog.Debian.gz",
            "usr/share/man/man1/bash.1.gz",
            "usr/share/locale/fr/LC_MESSAGES/bash.mo",
        ] {
            assert!(!exists(gone), "{gone} is left out");
        }
        for kept in [
            "usr/share/doc/bash/copyright",
            "var/lib/apt/lists/lock",
            "usr/bin/bash",
            "var/cache/apt/archives",
        ] {
            assert!(exists(kept), "{kept} stays");
        }
        let dpkg = std::fs::read_to_string(root.join(DPKG_CONF)).expect("dpkg config");
        assert!(dpkg.contains("path-exclude /usr/share/doc/*\n"), "{dpkg}");
        assert!(
            dpkg.ends_with("path-include /usr/share/doc/*/copyright\n"),
            "{dpkg}"
        );
        let clean = std::fs::read_to_string(root.join("etc/apt/apt.conf.d/docker-clean"))
            .expect("apt config");
        assert!(clean.contains("Dir::Cache::pkgcache \"\";"), "{clean}");
    }
}
