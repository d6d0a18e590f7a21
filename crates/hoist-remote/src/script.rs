//! The one place remote command lines are built: argument vectors, each word escaped by the SSH
//! layer, with user-controlled words (paths, modes, owners) passed as positional arguments to fixed
//! scripts, never spliced into them.

/// Prefix for commands run with `become` as a non-root user.
pub const SUDO: [&str; 3] = ["sudo", "-n", "--"];

/// The Docker engine's socket on hosts.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Where hoist keeps its own state on hosts (the apply lock).
pub const STATE_DIR: &str = "/var/lib/hoist";

/// The engine's configuration file.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Marks the start of each file in the output of [`read_files`].
pub const READ_MARK: &str = "==hoist==";

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "sh".to_owned(),
    ];
    v.extend(args.iter().map(|a| (*a).to_owned()));
    v
}

const READ: &str = r#"for f do
  if [ -L "$f" ]; then
    printf '==hoist== symlink\n'
  elif [ -d "$f" ]; then
    printf '==hoist== directory\n'
  elif [ -f "$f" ]; then
    meta=$(stat -c '%a %U %G %s %u %g' -- "$f") || exit 1
    printf '==hoist== %s\n' "$meta"
    rest=${meta#* * * }; size=${rest%% *}
    # Exactly `size` bytes, whatever the file does meanwhile (shrinks, grows, is replaced).
    { head -c "$size" -- "$f"; head -c "$size" /dev/zero; } | head -c "$size"
  elif [ -e "$f" ]; then
    printf '==hoist== special\n'
  else
    printf '==hoist== missing\n'
  fi
done"#;

/// Prints, for each path, `==hoist== <mode> <owner> <group> <size> <uid> <gid>` and exactly that
/// many bytes of content (a file that grows meanwhile cannot shift the next header), or
/// `==hoist== missing`, or the kind of what is there instead of a file (`symlink`, `directory`,
/// `special`): a symlink is never followed, so its target's size cannot desynchronise the framing.
pub fn read_files(paths: &[&str]) -> Vec<String> {
    sh(READ, paths)
}

const PUT: &str = r#"set -e
f=$1; mode=$2; owner=$3; size=$4; sum=$5
if [ -L "$f" ]; then echo "$f is a symlink: not writing through it" >&2; exit 3; fi
if [ -d "$f" ]; then echo "$f is a directory: not replacing it" >&2; exit 3; fi
d=$(dirname -- "$f")
mkdir -p -- "$d"
t=$(mktemp -- "$d/.hoist.XXXXXX")
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$t"
got=$(wc -c < "$t")
if [ "$got" -ne "$size" ]; then echo "$f: received $got of $size bytes; the file was not replaced" >&2; exit 4; fi
got=$(sha256sum < "$t")
if [ "${got%% *}" != "$sum" ]; then echo "$f: the content's checksum differs; the file was not replaced" >&2; exit 4; fi
# chown clears setuid and setgid: the mode comes after it.
if [ -n "$owner" ]; then chown -- "$owner" "$t"; fi
chmod -- "$mode" "$t"
sync -- "$t" 2>/dev/null || true
mv -fT -- "$t" "$f"
trap - EXIT"#;

/// Writes stdin to `path` atomically (a temporary file in the same folder, then a rename), with
/// `mode` (octal) and `owner` (`user[:group]`, empty to keep the default), once the temporary
/// file has exactly `size` bytes with the sha256 `sum`: a transfer cut short (Ctrl-C, a dropped
/// connection) leaves the old file in place and fails. A symlink or a directory at `path` is
/// refused, never written through or into.
pub fn put_file(path: &str, mode: u32, owner: &str, size: usize, sum: &str) -> Vec<String> {
    sh(
        PUT,
        &[path, &format!("{mode:04o}"), owner, &size.to_string(), sum],
    )
}

const FACTS: &str = r#". /etc/os-release 2>/dev/null || true
echo "os=${ID:-unknown}"
echo "os_like=${ID_LIKE:-}"
echo "codename=${VERSION_CODENAME:-}"
if command -v dockerd >/dev/null 2>&1; then echo installed=yes; else echo installed=no; fi
echo "version=$(dpkg-query -W -f='${Version}' docker.io 2>/dev/null || true)"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=other; fi
if pgrep -x dockerd >/dev/null 2>&1 || pidof dockerd >/dev/null 2>&1; then echo running=yes; else echo running=no; fi
if [ -S /var/run/docker.sock ]; then echo socket=yes; else echo socket=no; fi"#;

/// Prints `key=value` facts about the OS and the Docker engine.
pub fn engine_facts() -> Vec<String> {
    sh(FACTS, &[])
}

const INSTALL: &str = r#"set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
pkgs=docker.io
# Debian 13 ships the client separately.
if apt-cache show docker-cli >/dev/null 2>&1; then pkgs="$pkgs docker-cli"; fi
apt-get install -y -q --no-install-recommends $pkgs"#;

/// Installs the engine from the distribution's packages (Debian and derivatives).
pub fn install_engine() -> Vec<String> {
    sh(INSTALL, &[])
}

const START: &str = r#"set -e
if [ -d /run/systemd/system ]; then
  systemctl enable docker >/dev/null 2>&1 || true
  systemctl "$1" docker
else
  if [ "$1" = restart ]; then
    service docker stop >/dev/null 2>&1 || true
    pkill -x dockerd 2>/dev/null || true
    for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -x dockerd >/dev/null 2>&1 || break; sleep 1; done
  fi
  # The init script raises ulimits, which containers without CAP_SYS_RESOURCE may not do:
  # then start the daemon directly, as the script would.
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    if [ ! -x /etc/init.d/docker ] || ! service docker start >/dev/null 2>&1; then
      nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    fi
  fi
fi"#;

/// Starts (or restarts) the engine with systemd where it runs, with the init script otherwise.
pub fn start_engine(restart: bool) -> Vec<String> {
    sh(START, &[if restart { "restart" } else { "start" }])
}

// Taking, reading and breaking the lock happen under one mutex (flock, util-linux, on every
// Debian), so a lock is never seen without its owner and a compare-and-delete cannot remove a
// lock taken meanwhile.
const LOCK: &str = r#"mkdir -p /var/lib/hoist
exec 9>/var/lib/hoist/.lock-mutex
if command -v flock >/dev/null 2>&1; then flock 9; fi
if mkdir /var/lib/hoist/apply.lock 2>/dev/null; then
  if printf '%s\n' "$1" > /var/lib/hoist/apply.lock/owner; then
    echo acquired
  else
    rm -rf /var/lib/hoist/apply.lock
    echo "cannot record the lock's owner" >&2
    exit 1
  fi
else
  echo held
  cat /var/lib/hoist/apply.lock/owner 2>/dev/null || true
fi"#;

/// Takes the apply lock, recording `owner`; prints `acquired`, or `held` and the holder.
pub fn lock(owner: &str) -> Vec<String> {
    sh(LOCK, &[owner])
}

const UNLOCK: &str = r#"mkdir -p /var/lib/hoist
exec 9>/var/lib/hoist/.lock-mutex
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -n "$1" ] && [ "$(cat /var/lib/hoist/apply.lock/owner 2>/dev/null)" = "$1" ]; then
  rm -rf /var/lib/hoist/apply.lock
  echo released
else
  echo kept
fi"#;

/// Releases the apply lock only while `holder` holds it (compare, then delete): ours at the end
/// of a run, or the exact stale holder a run read before breaking it, never whoever took the
/// lock in between. Prints `released` or `kept`.
pub fn unlock(holder: &str) -> Vec<String> {
    sh(UNLOCK, &[holder])
}

const HTTP_STATUS: &str = r#"if command -v curl >/dev/null 2>&1; then
  curl -s -o /dev/null -m 5 -w '%{http_code}' -- "$1" || true
elif command -v wget >/dev/null 2>&1; then
  wget -q -S -O /dev/null -T 5 -- "$1" 2>&1 | awk '/HTTP\//{c=$2} END{print c}'
else
  echo "neither curl nor wget" >&2; exit 1
fi"#;

/// Prints the HTTP status `url` answers with, from the host itself.
pub fn http_status(url: &str) -> Vec<String> {
    sh(HTTP_STATUS, &[url])
}

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

/// A command line as a user would type it, for messages.
pub fn display(argv: &[String]) -> String {
    if argv.len() > 2 && argv[0] == "sh" && argv[1] == "-c" {
        let first = argv[2].lines().next().unwrap_or_default();
        return format!("sh -c '{first}...'");
    }
    argv.join(" ")
}

/// The fixed scripts of this module, as a host that interprets them (the fake) tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    ReadFiles,
    PutFile,
    EngineFacts,
    InstallEngine,
    StartEngine,
    Lock,
    Unlock,
    HttpStatus,
}

/// Which fixed script `argv` runs, and its positional arguments.
pub fn known(argv: &[String]) -> Option<(Known, &[String])> {
    let [sh, c, script, _zero, args @ ..] = argv else {
        return None;
    };
    if sh != "sh" || c != "-c" {
        return None;
    }
    let kind = [
        (READ, Known::ReadFiles),
        (PUT, Known::PutFile),
        (FACTS, Known::EngineFacts),
        (INSTALL, Known::InstallEngine),
        (START, Known::StartEngine),
        (LOCK, Known::Lock),
        (UNLOCK, Known::Unlock),
        (HTTP_STATUS, Known::HttpStatus),
    ]
    .into_iter()
    .find(|(text, _)| text == script)?
    .1;
    Some((kind, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_words_are_arguments_not_script() {
        let argv = put_file("/etc/apm/x; rm -rf /", 0o600, "999:999", 3, "abc");
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert!(!argv[2].contains("rm -rf /"));
        assert_eq!(
            argv[4..],
            ["/etc/apm/x; rm -rf /", "0600", "999:999", "3", "abc"]
        );
        let (kind, args) = known(&argv).expect("a fixed script");
        assert_eq!(kind, Known::PutFile);
        assert_eq!(args[0], "/etc/apm/x; rm -rf /");
    }

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
        let expected = expect_test::expect![[r#"["sh", "-c", "sh", "/etc/a", "/etc/b c"]"#]];
        let r = read_files(&["/etc/a", "/etc/b c"]);
        expected.assert_eq(&format!("{:?}", [&r[0], &r[1], &r[3], &r[4], &r[5]]));
    }
}

/// The scripts run for real, by the local `sh`, on files of a temporary folder: what a host does
/// with them (the fake only interprets them).
#[cfg(test)]
mod on_sh {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    fn run(argv: &[String], stdin: &[u8]) -> (bool, String, Vec<u8>) {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        // A script that refuses early does not read its input: the pipe may break.
        let _ = child.stdin.take().expect("stdin").write_all(stdin);
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.stdout,
        )
    }

    fn put(path: &std::path::Path, content: &[u8], sent: &[u8]) -> (bool, String) {
        let sum = hoist_core::desired::sha256_hex(content);
        let argv = put_file(&path.display().to_string(), 0o640, "", content.len(), &sum);
        let (ok, err, _) = run(&argv, sent);
        (ok, err)
    }

    #[test]
    fn a_whole_transfer_replaces_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("sub/app.env");
        assert!(put(&f, b"A=1\n", b"A=1\n").0);
        assert_eq!(std::fs::read(&f).expect("read"), b"A=1\n");
    }

    #[test]
    fn a_transfer_cut_short_leaves_the_old_file_and_fails() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("app.env");
        std::fs::write(&f, "OLD=1\n").expect("write");
        let (ok, err) = put(&f, b"NEW=1\nMORE=2\n", b"NEW=1\n");
        assert!(!ok);
        assert!(err.contains("received 6 of 13 bytes"), "{err}");
        let (ok, err) = put(&f, b"NEW=1\n", b"NEW=2\n");
        assert!(!ok);
        assert!(err.contains("checksum differs"), "{err}");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "OLD=1\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_symlink_or_a_directory_is_refused_not_written_through() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let (ok, err) = put(&link, b"x\n", b"x\n");
        assert!(!ok && err.contains("is a symlink"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "precious\n"
        );
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let (ok, err) = put(&sub, b"x\n", b"x\n");
        assert!(!ok && err.contains("is a directory"), "{err}");
        assert!(sub.is_dir());
    }

    #[test]
    fn a_symlink_cannot_shift_the_framing_of_the_files_after_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(100)).expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).expect("symlink");
        let next = dir.path().join("next");
        std::fs::write(&next, "hello\n").expect("write");
        let paths = [link.display().to_string(), next.display().to_string()];
        let argv = read_files(&[&paths[0], &paths[1]]);
        let (ok, _, out) = run(&argv, b"");
        assert!(ok);
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("==hoist== symlink"));
        assert!(lines.next().is_some_and(|l| l.starts_with("==hoist== ")));
        assert_eq!(lines.next(), Some("hello"));
    }
}
