//! Playbooks: ordered plays, each a host pattern and steps, for what is not plain desired state.
//!
//! A step is a map with an optional `name` and exactly one action: `engine`, `file`, `stack`,
//! `images`, `wait`, `exec` or `validate`. Steps that describe state (engine, file, stack, images)
//! feed the desired state; the others (wait, exec, validate) are actions the plan lists and `apply`
//! runs in order.

use std::path::Path;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::source::Source;
use crate::stack::{ConditionKind, service_condition};
use crate::yaml::{self, Ctx, Node, Value};

#[derive(Debug, Clone)]
pub struct Playbook {
    pub source: SourceName,
    pub plays: Vec<Play>,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    /// How many of its hosts apply converges at once (`serial`), one batch after the other.
    pub serial: Option<Serial>,
    pub loc: Loc,
    pub steps: Vec<Step>,
}

/// A play's `serial`: a number of hosts, or a percentage of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serial {
    Hosts(u32),
    Percent(u32),
}

impl Serial {
    /// The size of a batch out of `hosts` hosts: at least one.
    pub fn batch(self, hosts: usize) -> usize {
        let n = match self {
            Serial::Hosts(n) => n as usize,
            Serial::Percent(p) => (hosts * p as usize).div_ceil(100),
        };
        n.clamp(1, hosts.max(1))
    }
}

/// Decodes `serial`: a positive number of hosts, or a percentage (`30%`).
fn serial(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Serial> {
    let text = ctx.string(v, p)?;
    let parsed = match text.strip_suffix('%') {
        Some(pct) => pct
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .map(Serial::Percent),
        None => text
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .map(Serial::Hosts),
    };
    if parsed.is_none() {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("{text:?} is not a number of hosts or a percentage (like 1 or 30%)"),
        );
    }
    parsed
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub name: Option<String>,
    #[serde(flatten)]
    pub action: Action,
    #[serde(skip)]
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Install or check the Docker engine; `daemon` is written to daemon.json.
    Engine { daemon: serde_json::Value },
    /// Put a file: a rendered template (relative to templates/) or a repository file.
    File {
        template: Option<String>,
        src: Option<String>,
        dest: String,
        mode: u32,
        owner: Option<String>,
        group: Option<String>,
    },
    /// Deploy a stack on the play's hosts.
    Stack {
        stack: String,
        profiles: Vec<String>,
    },
    /// Only deliver the images of a stack.
    Images { stack: String },
    /// Wait for a service condition, a URL or a TCP port.
    Wait(Wait),
    /// Run a command in a service's container.
    Exec {
        stack: String,
        service: String,
        command: Vec<String>,
        user: Option<String>,
        /// Skip the command when this one, run first in the same container, exits 0.
        unless: Option<Vec<String>>,
    },
    /// Run validation checks.
    Validate { checks: Vec<Topic> },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "on")]
pub enum Wait {
    Service {
        stack: String,
        service: String,
        condition: ConditionKind,
        timeout_s: u64,
    },
    Url {
        url: String,
        status: u16,
        timeout_s: u64,
    },
    Port {
        port: u16,
        timeout_s: u64,
    },
}

/// A topic of `validate`'s checks, parsed once from the playbook or `--only`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Replication,
    Backups,
    ObjectStore,
    Roles,
    Api,
    Monitoring,
}

impl Topic {
    /// Every topic, in the order their checks run.
    pub const ALL: [Topic; 6] = [
        Topic::Replication,
        Topic::Backups,
        Topic::ObjectStore,
        Topic::Roles,
        Topic::Api,
        Topic::Monitoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Replication => "replication",
            Topic::Backups => "backups",
            Topic::ObjectStore => "object_store",
            Topic::Roles => "roles",
            Topic::Api => "api",
            Topic::Monitoring => "monitoring",
        }
    }

    pub fn parse(word: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == word)
    }

    /// The topics' names, for messages.
    pub fn known() -> String {
        Topic::ALL.map(Topic::as_str).join(", ")
    }

    /// `topics` as a list for messages.
    pub fn list(topics: &[Topic]) -> String {
        topics
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const ACTIONS: &[&str] = &[
    "engine", "file", "stack", "images", "wait", "exec", "validate",
];

impl Action {
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Engine { .. } => "engine",
            Action::File { .. } => "file",
            Action::Stack { .. } => "stack",
            Action::Images { .. } => "images",
            Action::Wait(_) => "wait",
            Action::Exec { .. } => "exec",
            Action::Validate { .. } => "validate",
        }
    }
}

pub fn load(src: &Source, root: &Path, path: &Path, diags: &mut Diagnostics) -> Option<Playbook> {
    let (source, node) = yaml::load(src, root, path, "no such playbook", diags)?;
    let mut ctx = Ctx::new(source.clone(), diags);
    let mut plays = Vec::new();
    if !matches!(node.value, Value::Seq(_)) {
        ctx.error(
            node.loc,
            "",
            Kind::WrongType,
            format!("a playbook is a list of plays, found {}", node.type_name()),
        );
        return None;
    }
    for (i, item) in ctx.seq(&node, "").iter().enumerate() {
        let path = format!("[{i}]");
        let Some(mut f) = ctx.fields(item, &path) else {
            continue;
        };
        let name = f
            .string(&mut ctx, "name")
            .unwrap_or_else(|| format!("play {}", i + 1));
        let hosts = f
            .require(&mut ctx, "hosts")
            .and_then(|h| ctx.string(h, &yaml::join(&path, "hosts")))
            .unwrap_or_default();
        let serial = f
            .get("serial")
            .and_then(|v| serial(&mut ctx, v, &yaml::join(&path, "serial")));
        let mut steps = Vec::new();
        if let Some(s) = f.require(&mut ctx, "steps") {
            let sp = yaml::join(&path, "steps");
            for (j, step) in ctx.seq(s, &sp).iter().enumerate() {
                if let Some(st) = decode_step(&mut ctx, step, &yaml::index(&sp, j)) {
                    steps.push(st);
                }
            }
        }
        f.finish(&mut ctx, true);
        plays.push(Play {
            name,
            hosts,
            serial,
            loc: item.loc,
            steps,
        });
    }
    Some(Playbook { source, plays })
}

fn decode_step(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Step> {
    let mut f = ctx.fields(node, path)?;
    let name = f.string(ctx, "name");
    let present: Vec<&str> = ACTIONS.iter().copied().filter(|a| f.has(a)).collect();
    if present.len() != 1 {
        let msg = if present.is_empty() {
            format!("a step needs one action: {}", ACTIONS.join(", "))
        } else {
            format!(
                "a step has exactly one action, found {}",
                present.join(" and ")
            )
        };
        ctx.error(node.loc, path, Kind::InvalidValue, msg);
        for a in present {
            let _ = f.get(a);
        }
        f.finish(ctx, true);
        return None;
    }
    let keyword = present[0];
    let body = f.get(keyword)?;
    let p = yaml::join(path, keyword);
    let action = match keyword {
        "engine" => {
            let mut daemon = serde_json::json!({});
            if let Some(mut ef) = ctx.fields(body, &p) {
                if let Some(d) = ef.get("daemon") {
                    if matches!(d.value, Value::Map(_)) {
                        daemon = d.to_json();
                    } else {
                        ctx.error(
                            d.loc,
                            &yaml::join(&p, "daemon"),
                            Kind::WrongType,
                            "expected a map (the content of daemon.json)",
                        );
                    }
                }
                ef.finish(ctx, true);
            }
            Some(Action::Engine { daemon })
        }
        "file" => file_step(ctx, body, &p),
        "stack" => match &body.value {
            Value::Map(_) => {
                let mut sf = ctx.fields(body, &p)?;
                let stack = sf
                    .require(ctx, "name")
                    .and_then(|n| ctx.string(n, &yaml::join(&p, "name")));
                let profiles = sf
                    .get("profiles")
                    .map(|n| ctx.string_list(n, &yaml::join(&p, "profiles")))
                    .unwrap_or_default();
                sf.finish(ctx, true);
                stack.map(|stack| Action::Stack { stack, profiles })
            }
            _ => ctx.string(body, &p).map(|stack| Action::Stack {
                stack,
                profiles: Vec::new(),
            }),
        },
        "images" => ctx.string(body, &p).map(|stack| Action::Images { stack }),
        "wait" => wait_step(ctx, body, &p).map(Action::Wait),
        "exec" => {
            let mut ef = ctx.fields(body, &p)?;
            let stack = ef
                .require(ctx, "stack")
                .and_then(|n| ctx.string(n, &yaml::join(&p, "stack")));
            let service = ef
                .require(ctx, "service")
                .and_then(|n| ctx.string(n, &yaml::join(&p, "service")));
            // A list is the argv; a string runs through `sh -c`.
            let argv = |ctx: &mut Ctx<'_>, n: &Node, field: &str| match &n.value {
                Value::Seq(_) => ctx.string_list(n, &yaml::join(&p, field)),
                _ => ctx
                    .string(n, &yaml::join(&p, field))
                    .map(|s| vec!["sh".into(), "-c".into(), s])
                    .unwrap_or_default(),
            };
            let command = ef.require(ctx, "command").map(|n| argv(ctx, n, "command"));
            let unless = ef.get("unless").map(|n| argv(ctx, n, "unless"));
            let user = ef.string(ctx, "user");
            ef.finish(ctx, true);
            match (stack, service, command) {
                (Some(stack), Some(service), Some(command)) if !command.is_empty() => {
                    Some(Action::Exec {
                        stack,
                        service,
                        command,
                        user,
                        unless: unless.filter(|u| !u.is_empty()),
                    })
                }
                _ => None,
            }
        }
        "validate" => {
            let mut checks = Vec::new();
            for c in ctx.strings(body, &p) {
                match Topic::parse(&c) {
                    Some(t) => checks.push(t),
                    None => ctx.error(
                        body.loc,
                        &p,
                        Kind::InvalidValue,
                        format!("unknown check `{c}` (known: {})", Topic::known()),
                    ),
                }
            }
            Some(Action::Validate { checks })
        }
        _ => None,
    };
    f.finish(ctx, true);
    action.map(|action| Step {
        name,
        action,
        loc: node.loc,
    })
}

fn file_step(ctx: &mut Ctx<'_>, body: &Node, p: &str) -> Option<Action> {
    let mut f = ctx.fields(body, p)?;
    let template = f.string(ctx, "template");
    let src = f.string(ctx, "src");
    let dest = f
        .require(ctx, "dest")
        .and_then(|n| ctx.string(n, &yaml::join(p, "dest")));
    let mut mode = 0o644;
    if let Some(m) = f.get("mode") {
        let mp = yaml::join(p, "mode");
        if let Some(s) = ctx.string(m, &mp) {
            match u32::from_str_radix(&s, 8) {
                Ok(v) if v <= 0o7777 => mode = v,
                _ => ctx.error(
                    m.loc,
                    &mp,
                    Kind::InvalidValue,
                    format!("{s:?} is not an octal file mode (write it quoted, like \"0600\")"),
                ),
            }
        }
    }
    let owner = f.string(ctx, "owner");
    let group = f.string(ctx, "group");
    f.finish(ctx, true);
    if template.is_some() == src.is_some() {
        ctx.error(
            body.loc,
            p,
            Kind::InvalidValue,
            "a file step needs exactly one of `template` and `src`",
        );
        return None;
    }
    let dest = dest?;
    if !dest.starts_with('/') && !dest.starts_with("{{") {
        ctx.error(
            body.loc,
            &yaml::join(p, "dest"),
            Kind::InvalidValue,
            format!("{dest:?} must be an absolute path"),
        );
    }
    Some(Action::File {
        template,
        src,
        dest,
        mode,
        owner,
        group,
    })
}

fn wait_step(ctx: &mut Ctx<'_>, body: &Node, p: &str) -> Option<Wait> {
    let mut f = ctx.fields(body, p)?;
    let timeout_s = match f.get("timeout") {
        Some(t) => {
            let tp = yaml::join(p, "timeout");
            let s = ctx.string(t, &tp).unwrap_or_default();
            match crate::stack::parse_duration(&s) {
                Some(ns) => ns / 1_000_000_000,
                None => {
                    ctx.error(
                        t.loc,
                        &tp,
                        Kind::InvalidValue,
                        format!("{s:?} is not a duration (like 30s, 2m)"),
                    );
                    60
                }
            }
        }
        None => 60,
    };
    let wait = if f.has("url") {
        let url = f.string(ctx, "url")?;
        let status = f
            .get("status")
            .and_then(|s| ctx.u64(s, &yaml::join(p, "status")))
            .unwrap_or(200) as u16;
        Some(Wait::Url {
            url,
            status,
            timeout_s,
        })
    } else if f.has("port") {
        let n = f.get("port")?;
        let port = ctx
            .u64(n, &yaml::join(p, "port"))
            .and_then(|v| u16::try_from(v).ok())?;
        Some(Wait::Port { port, timeout_s })
    } else {
        let stack = f
            .require(ctx, "stack")
            .and_then(|n| ctx.string(n, &yaml::join(p, "stack")));
        let service = f
            .require(ctx, "service")
            .and_then(|n| ctx.string(n, &yaml::join(p, "service")));
        let word = f
            .string(ctx, "condition")
            .unwrap_or_else(|| "running".into());
        let condition = service_condition(&word);
        if condition.is_none() {
            ctx.error(
                body.loc,
                &yaml::join(p, "condition"),
                Kind::InvalidValue,
                format!("{word:?} is not a condition (running, healthy, completed)"),
            );
        }
        match (stack, service, condition) {
            (Some(stack), Some(service), Some(condition)) => Some(Wait::Service {
                stack,
                service,
                condition,
                timeout_s,
            }),
            _ => None,
        }
    };
    f.finish(ctx, true);
    wait
}
