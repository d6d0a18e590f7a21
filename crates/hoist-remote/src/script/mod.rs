//! The one place remote command lines are built: argument vectors, each word escaped by the SSH
//! layer, with user-controlled words (paths, modes, owners) passed as positional arguments to fixed
//! scripts, never spliced into them. [`container`] holds the commands run inside containers.

mod container;
#[cfg(test)]
mod on_sh;

pub use container::{Restore, pgbackrest, psql_local, restore_drill};

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

const REMOVE: &str = r#"for f do
  if [ -L "$f" ] || [ -d "$f" ]; then echo "$f is not a regular file: not removing it" >&2; exit 3; fi
done
rm -f -- "$@""#;

/// Removes the files `paths` (absent ones are fine); a symlink or a directory there is refused.
pub fn remove_files(paths: &[&str]) -> Vec<String> {
    sh(REMOVE, paths)
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
const LOCK: &str = r#"mkdir -p /var/lib/hoist && chmod 0700 /var/lib/hoist
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
    RemoveFiles,
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
        (REMOVE, Known::RemoveFiles),
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
    fn file_reads_keep_paths_as_arguments() {
        let expected = expect_test::expect![[r#"["sh", "-c", "sh", "/etc/a", "/etc/b c"]"#]];
        let r = read_files(&["/etc/a", "/etc/b c"]);
        expected.assert_eq(&format!("{:?}", [&r[0], &r[1], &r[3], &r[4], &r[5]]));
    }
}
