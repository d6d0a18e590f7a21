//! Every migration runs while the previous release of the API still serves (docs/releases.md):
//! it may add, never take away or change what that release reads, unless its file says it is a
//! contract step (`-- contract: <why the previous release no longer needs it>`).

use std::path::Path;

/// Statements the previous release may not survive: what it reads, removed, renamed or changed.
const CONTRACTING: &[&str] = &[
    "DROP TABLE",
    "DROP COLUMN",
    "DROP VIEW",
    "DROP MATERIALIZED VIEW",
    "DROP FUNCTION",
    "DROP SCHEMA",
    "DROP TYPE",
    "RENAME ",
    " TYPE ",
    "SET NOT NULL",
    "SET DATA TYPE",
    "DROP DEFAULT",
    "REVOKE ",
    "TRUNCATE",
];

/// The contracting statements of a migration's text, as `line: statement`, unless it is marked.
fn contracting(sql: &str) -> Vec<String> {
    if sql
        .lines()
        .any(|l| l.trim_start().starts_with("-- contract:"))
    {
        return Vec::new();
    }
    sql.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let code = line
                .split("--")
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let upper = format!(
                " {} ",
                code.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            // `ALTER ... TYPE` changes a column; `CREATE TYPE` is new.
            let hit = CONTRACTING
                .iter()
                .find(|s| upper.contains(*s) && (s.trim() != "TYPE" || upper.contains("ALTER")))?;
            Some(format!("{}: {} ({})", i + 1, line.trim(), hit.trim()))
        })
        .collect()
}

#[test]
fn every_migration_expands_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut problems = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("migrations/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        seen += 1;
        let sql = std::fs::read_to_string(&path).expect("readable");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        problems.extend(contracting(&sql).into_iter().map(|p| format!("{name}:{p}")));
    }
    assert!(seen >= 5, "the migrations were read from {}", dir.display());
    assert!(
        problems.is_empty(),
        "statements the running release may not survive (docs/releases.md), in files not marked `-- contract:`:\n{}",
        problems.join("\n")
    );
}

#[test]
fn contracting_statements_are_found_and_a_marked_file_passes() {
    let sql = "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b; -- tidy\nALTER TABLE t ALTER COLUMN b TYPE bigint;\nCREATE TYPE mood AS ENUM ('ok');\n-- DROP TABLE t; only a comment\nALTER TABLE t DROP COLUMN b;\n";
    assert_eq!(
        contracting(sql),
        [
            "2: ALTER TABLE t RENAME COLUMN a TO b; -- tidy (RENAME)",
            "3: ALTER TABLE t ALTER COLUMN b TYPE bigint; (TYPE)",
            "6: ALTER TABLE t DROP COLUMN b; (DROP COLUMN)",
        ]
    );
    let marked = format!("-- contract: release 12 reads b no more\n{sql}");
    assert!(contracting(&marked).is_empty());
}
