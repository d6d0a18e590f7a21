//! Commands run inside containers (the restore drill's script, psql, pgBackRest), built as
//! argument vectors like the host scripts: user words are positional arguments.

/// Runs in the restore drill's scratch container as the image's user (PostgreSQL's). Arguments:
/// stanza, repo, set, database, the table to checksum, then the postgres server's own arguments;
/// the tables to count come in `COUNT_TABLES`. Each result is one line
/// starting with `hoist-drill`, which the drill reads back from the logs.
const RESTORE_DRILL: &str = r#"
stanza=$0 repo=$1 set=$2 db=$3 checksum=$4
shift 4
now() { date +%s.%N; }
out() { printf 'hoist-drill %s\n' "$*"; }
info=$(pgbackrest --stanza="$stanza" --repo="$repo" --output=json info)
out info "$info"
args=(--stanza="$stanza" --repo="$repo" --pg1-path=/tmp/restore --lock-path=/tmp --log-path=/tmp
      --log-level-console=warn --log-level-file=off --type=immediate --target-action=promote)
[ -n "$set" ] && args+=(--set="$set")
t0=$(now)
pgbackrest "${args[@]}" restore
out restored "$(now)" "$t0"
# The primary's own settings, then what a scratch copy needs: no archiving into the live
# repository, no connections until recovery has ended, only a local socket.
postgres -D /tmp/restore "$@" -c archive_mode=off -c hot_standby=off -c port=5499 \
  -c listen_addresses= -c unix_socket_directories=/tmp >/tmp/postgres.log 2>&1 &
t1=$(now)
until [ "$(psql -h /tmp -p 5499 -d "$db" -XAtc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  if ! kill -0 $! 2>/dev/null; then tail -20 /tmp/postgres.log >&2; exit 3; fi
  sleep 0.5
done
out recovered "$(now)" "$t1"
sql() { psql -h /tmp -p 5499 -d "$db" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
out size "$(sql "SELECT pg_database_size(current_database())")"
for t in ${COUNT_TABLES:-}; do
  out count "$t" "$(sql "SELECT count(*) FROM $t" 2>&1 | head -n1)"
done
if [ -n "$checksum" ]; then
  out checksum "$checksum" "$(sql "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '-') FROM $checksum AS t" 2>&1 | head -n1)"
fi
"#;

/// What the restore drill restores, and how its PostgreSQL starts.
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    pub stanza: &'a str,
    pub repo: u32,
    pub set: Option<&'a str>,
    pub database: &'a str,
    /// A table (already validated) whose rows are checksummed.
    pub checksum: Option<&'a str>,
    /// The source container's own server arguments (`-c config_file=...`).
    pub postgres: &'a [String],
}

/// The restore drill's command: bash with [`RESTORE_DRILL`] and its positional arguments.
pub fn restore_drill(r: &Restore<'_>) -> Vec<String> {
    let mut argv: Vec<String> = ["bash", "-euo", "pipefail", "-c", RESTORE_DRILL]
        .map(str::to_owned)
        .to_vec();
    argv.extend([
        r.stanza.to_owned(),
        r.repo.to_string(),
        r.set.unwrap_or_default().to_owned(),
        r.database.to_owned(),
        r.checksum.unwrap_or_default().to_owned(),
    ]);
    argv.extend(r.postgres.iter().cloned());
    argv
}

/// psql as the local superuser over the server's socket, stopping at the first error; each
/// statement its own `-c` argument.
pub fn psql_local(statements: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "psql",
        "-h",
        "/var/run/postgresql",
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
    ]
    .map(str::to_owned)
    .to_vec();
    for s in statements {
        argv.extend(["-c".to_owned(), (*s).to_owned()]);
    }
    argv
}

/// pgBackRest on `stanza` with `args` (`check`, `info --output=json`, ...).
pub fn pgbackrest(stanza: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["pgbackrest".to_owned(), format!("--stanza={stanza}")];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_commands_keep_user_words_as_arguments() {
        let hostile = "apm'; rm -rf / #";
        let argv = restore_drill(&Restore {
            stanza: hostile,
            repo: 2,
            set: Some("$(reboot)"),
            database: "apm",
            checksum: None,
            postgres: &["-c".into(), "config_file=/etc/pg.conf".into()],
        });
        assert_eq!(argv[..4], ["bash", "-euo", "pipefail", "-c"]);
        assert!(!argv[4].contains(hostile) && !argv[4].contains("reboot"));
        assert_eq!(
            argv[5..],
            [
                hostile,
                "2",
                "$(reboot)",
                "apm",
                "",
                "-c",
                "config_file=/etc/pg.conf"
            ]
        );
        let argv = psql_local(&["SELECT 1; DROP TABLE x", "SELECT 2"]);
        assert_eq!(
            argv[6..],
            ["-c", "SELECT 1; DROP TABLE x", "-c", "SELECT 2"]
        );
        assert_eq!(
            pgbackrest(hostile, &["check"]),
            ["pgbackrest", &format!("--stanza={hostile}"), "check"]
        );
    }
}
