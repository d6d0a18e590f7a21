//! Habits as checks: every module opens with its doc paragraph, the API depends on no hoist crate,
//! and a module with children is a folder with a `mod.rs` (one module-file style).

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file of the crates' `src/` folders and of `src/`.
fn sources() -> Vec<PathBuf> {
    let root = repo();
    let mut dirs = vec![root.join("src"), root.join("xtask/src")];
    for e in walkdir::WalkDir::new(root.join("crates"))
        .min_depth(1)
        .max_depth(1)
    {
        let e = e.expect("crates/ is readable");
        dirs.push(e.path().join("src"));
    }
    let mut out = Vec::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(&d) {
            let e = e.unwrap_or_else(|err| panic!("walking {}: {err}", d.display()));
            if e.path().extension().is_some_and(|x| x == "rs") {
                out.push(e.into_path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_module_has_its_doc_paragraph() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            !first.starts_with("//!")
        })
        .map(|p| p.strip_prefix(repo()).unwrap_or(&p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a //! paragraph: {missing:#?}"
    );
}

#[test]
fn the_api_depends_on_no_hoist_crate() {
    let manifest = std::fs::read_to_string(repo().join("crates/apm-api/Cargo.toml")).expect("read");
    let hoist: Vec<&str> = manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("hoist"))
        .collect();
    assert!(hoist.is_empty(), "apm-api depends on {hoist:?}");
}

#[test]
fn a_module_with_children_is_a_folder_with_mod_rs() {
    let mut wrong = Vec::new();
    for p in sources() {
        let dir = p.with_extension("");
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if dir.is_dir() && !matches!(name, "main.rs" | "lib.rs" | "mod.rs") {
            wrong.push(p.strip_prefix(repo()).unwrap_or(&p).display().to_string());
        }
    }
    assert!(wrong.is_empty(), "use <name>/mod.rs instead of: {wrong:#?}");
}

/// The `[dependencies]` of a manifest, by the name code uses (`-` as `_`).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.replace('-', "_"));
            }
        }
    }
    out
}

/// Every dependency of every crate is named in its code: none is left behind by a move.
#[test]
fn no_crate_has_an_unused_dependency() {
    let root = repo();
    let mut crates = vec![root.clone(), root.join("xtask")];
    for e in walkdir::WalkDir::new(root.join("crates"))
        .min_depth(1)
        .max_depth(1)
    {
        crates.push(e.expect("crates/ is readable").into_path());
    }
    let mut unused = Vec::new();
    for dir in crates {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        let mut code = String::new();
        let folders = if dir == root {
            vec![dir.join("src")]
        } else {
            vec![dir.join("src"), dir.join("benches")]
        };
        for folder in folders {
            for e in walkdir::WalkDir::new(folder).into_iter().flatten() {
                if e.path().extension().is_some_and(|x| x == "rs") {
                    code.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        for dep in dependencies(&manifest) {
            let used = [
                format!("{dep}::"),
                format!("use {dep}"),
                format!("{dep} as"),
            ]
            .iter()
            .any(|w| code.contains(w.as_str()));
            if !used {
                unused.push(format!(
                    "{}: {dep}",
                    dir.strip_prefix(&root).unwrap_or(&dir).display()
                ));
            }
        }
    }
    assert!(unused.is_empty(), "dependencies no code names: {unused:#?}");
}
