//! The command line, as clap derive types. Flags keep the names Ansible users know (`-i`, `-e`,
//! `--limit`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about = "Declarative, agentless provisioner for the APM platform",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Project folder (holding inventory/, stacks/, templates/, playbooks/)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = ".",
        env = "HOIST_PROJECT"
    )]
    pub project: PathBuf,
    /// Inventory folder, as in Ansible
    #[arg(
        short,
        long,
        global = true,
        value_name = "DIR",
        env = "HOIST_INVENTORY"
    )]
    pub inventory: Option<PathBuf>,
    /// Extra variable (highest precedence), repeatable
    #[arg(
        short = 'e',
        long = "extra-vars",
        global = true,
        value_name = "NAME=VALUE"
    )]
    pub extra_vars: Vec<String>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// When to colour the output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Trust and record the host key of hosts never seen before (first contact)
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// How many hosts to work on at once
    #[arg(long, global = true, value_name = "N", default_value_t = 16)]
    pub forks: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check inventories, variables, templates, stacks and playbooks; report every problem
    Check,
    /// Show what applying a playbook would change, with diffs
    Plan(PlanArgs),
    /// Apply a playbook (or a saved plan) to the hosts: exactly the plan shown
    Apply(ApplyArgs),
    /// Show the services of every host with their state and health
    Status {
        /// Only these hosts (a pattern, as in Ansible)
        #[arg(short, long, value_name = "PATTERN")]
        limit: Option<String>,
    },
    /// List each host's releases (what every apply that changed it left running) and what changed
    /// between them
    Releases {
        /// Only these hosts (a pattern, as in Ansible)
        #[arg(short, long, value_name = "PATTERN")]
        limit: Option<String>,
    },
    /// Take hosts back to a release: the one before their current one, or `--to` (its
    /// containers, their images and its files), as a plan to review like an apply's
    #[command(mut_arg("target", |a| a.help("The playbook that deploys the hosts (a path, or a name under playbooks/)")))]
    Rollback {
        /// The release to go to (default: the one before each host's current release)
        #[arg(long, value_name = "RELEASE")]
        to: Option<u64>,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Print the logs of a service's container on a host
    Logs {
        host: String,
        /// The container name, or a service name
        service: String,
        /// How many lines from the end
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Inspect or import inventories
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Encrypt, decrypt and edit secrets files
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Compose stacks as hoist deploys them
    #[command(subcommand)]
    Stack(StackCommand),
    /// Prove the platform works: replication (streaming, lag, a canary row on every standby),
    /// backups (pgbackrest check, a recent backup in each repository, no WAL gap), the object
    /// store (TLS verified, buckets), the database roles and the API; exit 1 on any failure
    Validate {
        /// Only these checks (comma-separated): replication, backups, object_store, roles, api
        #[arg(long, value_delimiter = ',', value_name = "CHECKS")]
        only: Vec<String>,
    },
    /// The cluster's CA and TLS certificates, kept encrypted in the inventory
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Rehearse recoveries on the real hosts: a restore, an object-store outage, a failover
    #[command(subcommand)]
    Drill(DrillCommand),
    /// The local sandbox of test hosts
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (hoist.1 and one per command) into a folder
    Man {
        /// The folder to write them into (made when missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the command-line reference as Markdown (docs/cli.md is this output)
    #[command(hide = true)]
    Reference,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the CA and certificates, or update them to the inventory's hosts
    /// (group_vars/all/pki.secrets.yml; the names they carry in pki.yml, in clear)
    Issue {
        /// Re-issue the server and client certificates
        #[arg(long)]
        rotate: bool,
        /// Re-issue the CA, and so every certificate
        #[arg(long)]
        rotate_ca: bool,
        /// The client certificate's common name (pgBackRest's tls-server-auth)
        #[arg(long, default_value = "pgbr-client")]
        client_cn: String,
        /// Another name the server certificate must carry (a public host name, ...); kept for later runs
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Encrypt for these age recipients (default: the configured key's)
        #[arg(short, long = "recipient", value_name = "AGE1...")]
        recipient: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore a backup into a scratch container on the first data host, start PostgreSQL on
    /// it, and measure what came back; the container is removed afterwards
    Restore {
        /// The repository to restore from (1 hot, 2 cold)
        #[arg(long, default_value_t = 1)]
        repo: u32,
        /// A backup label (default: the repository's newest backup)
        #[arg(long, value_name = "LABEL")]
        set: Option<String>,
        /// Also report the row count and md5 of this table's rows, to compare with the primary
        #[arg(long, value_name = "TABLE")]
        checksum: Option<String>,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
        timeout: u64,
        /// Confirm the drill (it runs a restore on a data host)
        #[arg(long)]
        yes: bool,
    },
    /// Stop the bundled object store while the primary keeps writing, start it again, and prove
    /// that archiving caught up with nothing missing
    ObjectstoreOutage {
        /// How long the object store stays down
        #[arg(long = "for", default_value_t = 30, value_name = "SECONDS")]
        hold: u64,
        /// How long archiving may take to catch up once it is back
        #[arg(long, default_value_t = 180, value_name = "SECONDS")]
        catch_up: u64,
        /// Confirm that the object store may be stopped
        #[arg(long)]
        yes: bool,
    },
    /// Stop the primary, promote a standby, prove nothing committed was lost and that it takes
    /// writes, then start the primary again and re-clone the promoted standby from it. Writes
    /// fail while the primary is down
    Failover {
        /// The standby to promote, by its name on the primary (default: the one that replayed
        /// the most WAL)
        #[arg(long, value_name = "STANDBY")]
        to: Option<String>,
        /// How long each step (promotion, the primary's return, the re-clone) may take
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout: u64,
        /// Confirm that the primary may be stopped
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Generate the sandbox's SSH key and throwaway TLS material (kept out of git)
    Init,
    /// Start the sandbox hosts (building their image once), ready for `-i inventory/sandbox`
    Up {
        /// How many of the sandbox inventory's hosts to start
        #[arg(long, value_name = "N")]
        hosts: Option<usize>,
    },
    /// Remove the sandbox hosts, their engines' data and the network
    Down,
    /// Show each sandbox host and whether it runs
    Status,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The playbook (a path, or a name under playbooks/)
    pub playbook: PathBuf,
    /// Plan against a recorded observed-state snapshot (<DIR>/<host>.json) instead of live hosts
    #[arg(long, value_name = "DIR")]
    pub observed: Option<PathBuf>,
    /// Only these hosts (a pattern, as in Ansible)
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Also write the plan as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The playbook (a path, or a name under playbooks/), or a plan saved by `plan --out`
    pub target: PathBuf,
    /// Apply without asking (required when not on a terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// Also perform the plan's deletions (containers, volumes, networks no longer wanted)
    #[arg(long)]
    pub prune: bool,
    /// Only these hosts (a pattern, as in Ansible)
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// How long a dependency may take to become healthy or to complete, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub gate_timeout: u64,
    /// Take a host's lock even if another run holds it
    #[arg(long)]
    pub break_lock: bool,
}

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Print a stack as a plain compose file for one host: variables resolved, secrets as
    /// `${name}` references, the files hoist places as bind mounts, no `x-hoist`
    Export {
        /// The stack (the file stem under stacks/)
        stack: String,
        /// The host it is exported for
        #[arg(long)]
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Print the resolved variables of every host (secrets redacted)
    Show {
        /// Only this host
        #[arg(long)]
        host: Option<String>,
    },
    /// Convert an Ansible INI inventory into hosts.yml
    Import {
        /// The INI file (like Ansible's hosts.ini)
        ini: PathBuf,
        /// Write hosts.yml into this folder instead of printing it
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Encrypt every plaintext value of a vars file in place
    Encrypt {
        file: PathBuf,
        /// age recipient (age1...); defaults to the key in HOIST_AGE_KEY / HOIST_AGE_KEY_FILE
        #[arg(short, long)]
        recipient: Vec<String>,
    },
    /// Decrypt every value of a vars file in place (or into --out)
    Decrypt {
        file: PathBuf,
        /// Write the decrypted file here instead of replacing the original
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Decrypt into a private temporary file, open $EDITOR, and encrypt the result back
    Edit {
        file: PathBuf,
        #[arg(short, long)]
        recipient: Vec<String>,
    },
    /// Generate an age key; prints the public recipient, writes the private key to FILE
    Keygen {
        #[arg(value_name = "FILE")]
        out: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    use crate::guide;

    /// Every command the guides give (their indented `hoist ...` lines, comments left out) is one
    /// the command line takes: a renamed option or command fails here, not in a reader's shell.
    #[test]
    fn the_guides_commands_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for file in [
            "docs/operator-guide.md",
            "docs/migrating-from-ansible.md",
            "docs/console.md",
            "docs/releases.md",
        ] {
            let text = std::fs::read_to_string(root.join(file)).expect("a guide");
            for (line, words) in guide::commands(&text) {
                let mut argv = vec!["hoist".to_owned()];
                argv.extend(words);
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("{file}:{line}: `{}`: {e}", argv.join(" "));
                }
                seen += 1;
            }
        }
        assert!(seen >= 20, "the guides' commands were found: {seen}");
    }
}
