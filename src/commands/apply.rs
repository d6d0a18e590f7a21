//! `hoist apply`: show the plan, ask (unless --yes), then apply exactly that plan.
//!
//! `apply plan.json` applies a plan saved by `plan --out`: it observes the hosts again and refuses
//! when a host or the inputs changed since the plan was made.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hoist_core::desired;
use hoist_core::plan::Plan;
use hoist_core::release::Choice;
use hoist_core::render;
use hoist_ops::apply::session::{self, Review, Session};
use hoist_ops::apply::{self, ApplyOptions, Event};
use hoist_ops::validate::PlayChecks;
use hoist_remote::RemoteError;
use hoist_remote::images::LocalEngine;

use crate::cli::{ApplyArgs, Global};
use crate::commands::{plan as planning, remote, validate};
use crate::output::Output;

pub fn run(global: &Global, args: &ApplyArgs, out: &Output) -> anyhow::Result<u8> {
    let saved: Option<Plan> = match args.target.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let text = std::fs::read_to_string(&args.target)
                .with_context(|| format!("reading {}", args.target.display()))?;
            let plan: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a hoist plan", args.target.display()))?;
            if plan.schema != hoist_core::plan::SCHEMA {
                bail!(
                    "{}: plan schema {:?} is not {:?}",
                    args.target.display(),
                    plan.schema,
                    hoist_core::plan::SCHEMA
                );
            }
            Some(plan)
        }
        _ => None,
    };
    let playbook = match &saved {
        Some(p) => global.project.join(&p.playbook),
        None => args.target.clone(),
    };
    let limit = match &saved {
        Some(p) => Some(
            p.hosts
                .iter()
                .map(|h| h.host.as_str())
                .collect::<Vec<_>>()
                .join(":"),
        ),
        None => args.limit.clone(),
    };
    let loaded = match planning::load(global, &playbook, limit.as_deref(), out)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    execute(global, args, saved, loaded, None, out)
}

/// `hoist rollback`: each host of the playbook back to one of its releases (the one before its
/// current one, or `to`), as a plan reviewed and applied like any other.
pub fn rollback(
    global: &Global,
    args: &ApplyArgs,
    to: Option<u64>,
    out: &Output,
) -> anyhow::Result<u8> {
    if args.target.extension().is_some_and(|e| e == "json") {
        bail!("hoist rollback takes the playbook that deploys the hosts, not a saved plan");
    }
    let loaded = match planning::load(global, &args.target, args.limit.as_deref(), out)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    execute(global, args, None, loaded, Some(to), out)
}

/// Reads each host's history, chooses where it goes (`hoist_core::release::choose`) and makes its
/// desired state that release; a host left as it is is left out of the plan, and said so. A
/// history that cannot be read, or a release that cannot be rebuilt, stops the rollback before
/// anything changes, naming every host it happened on.
async fn restore(
    hosts: &BTreeMap<String, hoist_remote::SshHost>,
    loaded: &mut planning::Loaded,
    to: Option<u64>,
    out: &Output,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut histories = BTreeMap::new();
    let mut failed = Vec::new();
    for name in loaded.desired.hosts.keys() {
        if let Some(host) = hosts.get(name) {
            match hoist_ops::release::history(host).await {
                Ok(h) => {
                    histories.insert(name.clone(), h);
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    let mut restores = BTreeMap::new();
    for (name, choice) in hoist_core::release::choose(&histories, to) {
        let (from, to) = match choice {
            Choice::GoTo { from, to } => (from, to),
            Choice::Leave(why) => {
                out.eprint(&format!("{name}: {why}: left as it is\n"));
                loaded.desired.hosts.remove(&name);
                continue;
            }
        };
        let now = &loaded.desired.hosts[&name];
        match hoist_ops::release::restore(&hosts[&name], &histories[&name], now, to).await {
            Ok(want) => {
                out.eprint(&format!("{name}: release {from} -> release {to}\n"));
                restores.insert(name.clone(), to);
                loaded.desired.hosts.insert(name, want);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        bail!("nothing was changed:\n  {}", failed.join("\n  "));
    }
    Ok(restores)
}

fn execute(
    global: &Global,
    args: &ApplyArgs,
    saved: Option<Plan>,
    mut loaded: planning::Loaded,
    rollback: Option<Option<u64>>,
    out: &Output,
) -> anyhow::Result<u8> {
    let redactor = loaded.project.redactor.clone();
    // The validate steps' settings are read before anything is applied: a missing variable
    // fails here, not after the platform was changed.
    let checks = desired::validations(loaded.desired.hosts.values(), None);
    let validation = if checks.is_empty() {
        None
    } else {
        Some(validate::config(&loaded.project, &checks)?)
    };
    let mut opts = ApplyOptions {
        prune: args.prune,
        gate_timeout: Duration::from_secs(args.gate_timeout),
        forks: global.forks,
        applier: applier(global),
        ..ApplyOptions::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let code = rt.block_on(async {
        let cancel = super::cancellation();
        let names: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
        let (hosts, unreachable) = remote::connect(&loaded.project.inventory, &names, global).await;
        if let Some(to) = rollback {
            match restore(&hosts, &mut loaded, to, out).await {
                Ok(r) => opts.restores = r,
                Err(e) => {
                    remote::close(hosts).await;
                    return Err(e);
                }
            }
        }
        let loaded = &loaded;
        let opts = &opts;
        // Progress lines until the plan is known (a lock broken, say), then bars on a terminal.
        let bars: Arc<OnceLock<Bars>> = Arc::default();
        let printer = out.clone();
        let shown = bars.clone();
        let events: apply::Events = Arc::new(move |e: Event| {
            if printer.json {
                printer.print(&(serde_json::to_string(&e).unwrap_or_default() + "\n"));
            } else if let Some(bars) = shown.get() {
                bars.show(&e, &printer);
            } else if !matches!(e, Event::ImageProgress { .. }) {
                printer.eprint(&(line(&e) + "\n"));
            }
        });
        let local = LocalEngine::new(&global.project);
        let checks = validation.as_ref().map(|config| PlayChecks {
            hosts: &hosts,
            config,
        });
        let session = Session {
            hosts: &hosts,
            desired: &loaded.desired,
            break_lock: args.break_lock,
            local: &local,
            validator: checks.as_ref().map(|c| c as &dyn apply::Validator),
            redactor: &redactor,
            events,
            cancel: cancel.clone(),
        };
        let review = async |plan: &Plan, failed: &BTreeMap<String, RemoteError>| {
            if let Some(saved) = &saved {
                check_saved(saved, plan)?;
            } else if !out.json {
                out.print(&render::plan_text(plan, out.color(), &redactor));
            }
            for e in failed.values() {
                out.error(&e.to_string());
            }
            let work = plan.has_changes() || plan.hosts.iter().any(|h| !h.actions.is_empty());
            if !work {
                return Ok(Review::Stop);
            }
            if !args.yes {
                // Asked on a thread of its own, so that Ctrl-C at the prompt still ends the run
                // (and releases the locks).
                let (question, asker) = (prompt(plan)?, out.clone());
                let answer = tokio::task::spawn_blocking(move || ask(&question, &asker));
                tokio::select! {
                    a = answer => a??,
                    () = cancel.cancelled() => bail!("cancelled: nothing was applied"),
                }
            }
            if !out.json && std::io::stderr().is_terminal() {
                let _ = bars.set(Bars::new(plan));
            }
            Ok::<Review, anyhow::Error>(Review::Apply)
        };
        let outcome = session::run(
            session,
            unreachable,
            opts,
            |observed, failed| planning::make_plan(loaded, observed, failed),
            review,
        )
        .await;
        remote::close(hosts).await;
        let outcome = outcome?;
        let failed = &outcome.unreachable;
        let Some(report) = outcome.report else {
            return Ok(if failed.is_empty() { 0 } else { 1 });
        };
        let ok = failed.is_empty() && report.ok();
        if out.json {
            let summary = serde_json::json!({"event": "summary", "ok": ok, "hosts": report.hosts, "checks_failed": report.checks.iter().filter(|c| !c.ok).count(), "unreachable": failed.keys().collect::<Vec<_>>()});
            out.print(&(redactor.redact(&summary.to_string()) + "\n"));
        } else {
            for r in &report.hosts {
                match &r.error {
                    None => out.eprint(&format!("{}: ok, {} change(s)\n", r.host, r.changes)),
                    Some(e) => out.error(e),
                }
            }
            let red: Vec<String> = report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} {}", c.check, c.target))
                .collect();
            if !red.is_empty() {
                out.error(&format!("validation failed: {}", red.join(", ")));
            }
        }
        Ok::<u8, anyhow::Error>(if ok { 0 } else { 1 })
    });
    // A prompt cut short by Ctrl-C still blocks its thread on the terminal: do not wait for it.
    rt.shutdown_background();
    code
}

/// A saved plan applies only to hosts and inputs as they were when it was made.
fn check_saved(saved: &Plan, fresh: &Plan) -> anyhow::Result<()> {
    let by_host: BTreeMap<&str, _> = fresh.hosts.iter().map(|h| (h.host.as_str(), h)).collect();
    for h in &saved.hosts {
        let Some(now) = by_host.get(h.host.as_str()) else {
            bail!(
                "{}: not reachable now; the saved plan cannot be applied",
                h.host
            )
        };
        if now.observed_hash != h.observed_hash {
            bail!(
                "{}: the host changed since the plan was made; plan again",
                h.host
            );
        }
        let key = |c: &hoist_core::plan::Change| {
            (c.kind, c.name.clone(), c.action, c.desired_hash.clone())
        };
        let a: Vec<_> = h.changes.iter().chain(&h.deletions).map(key).collect();
        let b: Vec<_> = now.changes.iter().chain(&now.deletions).map(key).collect();
        if a != b {
            bail!(
                "{}: the inputs changed since the plan was made; plan again",
                h.host
            );
        }
    }
    Ok(())
}

/// The confirmation question, or why none can be asked.
fn prompt(plan: &Plan) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("not on a terminal: pass --yes to apply without confirmation");
    }
    Ok(format!("Apply to {} host(s)? [y/N] ", plan.hosts.len()))
}

pub(super) fn ask(question: &str, out: &Output) -> anyhow::Result<()> {
    out.eprint(question);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not applied");
    }
    Ok(())
}

fn line(e: &Event) -> String {
    match e {
        Event::HostStarted { host } => format!("{host}: applying"),
        Event::ChangeDone {
            host,
            kind,
            name,
            action,
            ms,
        } => format!("{host}: {action} {kind} {name} ({ms} ms)"),
        Event::ImageProgress { host, image, bytes } => {
            format!(
                "{host}: sending image {image} ({:.1} MB)",
                *bytes as f64 / 1e6
            )
        }
        Event::ImageSent { host, image, bytes } if *bytes == 0 => {
            format!("{host}: image {image} already there")
        }
        Event::ImageSent { host, image, bytes } => {
            format!("{host}: sent image {image} ({:.1} MB)", *bytes as f64 / 1e6)
        }
        Event::ActionDone { host, describe, ms } => format!("{host}: {describe} ({ms} ms)"),
        Event::Note { host, message } => format!("{host}: {message}"),
        Event::Released { host, release } => format!("{host}: release {release} recorded"),
        Event::HostFailed { host, error } => format!(
            "{host}: FAILED: {}",
            error.strip_prefix(&format!("{host}: ")).unwrap_or(error)
        ),
        Event::HostDone { host, changes, ms } => format!(
            "{host}: done, {changes} change(s) in {:.1} s",
            *ms as f64 / 1000.0
        ),
        Event::Validated { checks, .. } => {
            format!("validate:\n{}", hoist_core::check::table(checks).trim_end())
        }
        Event::PhaseDone { phase, ms } => {
            format!("took {:.1} s: {phase}", *ms as f64 / 1000.0)
        }
    }
}

/// One progress line per host, on a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    hosts: BTreeMap<String, indicatif::ProgressBar>,
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let hosts = plan
            .hosts
            .iter()
            .map(|h| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(h.host.clone());
                bar.set_message("waiting");
                bar.enable_steady_tick(Duration::from_millis(120));
                (h.host.clone(), bar)
            })
            .collect();
        Bars { multi, hosts }
    }

    fn show(&self, e: &Event, out: &Output) {
        let host = match e {
            Event::HostStarted { host }
            | Event::ChangeDone { host, .. }
            | Event::ImageSent { host, .. }
            | Event::ImageProgress { host, .. }
            | Event::ActionDone { host, .. }
            | Event::Note { host, .. }
            | Event::HostFailed { host, .. }
            | Event::HostDone { host, .. }
            | Event::Released { host, .. } => host,
            Event::Validated { .. } | Event::PhaseDone { .. } => {
                let _ = self.multi.println(out.redacted(&line(e)));
                return;
            }
        };
        let Some(bar) = self.hosts.get(host) else {
            return;
        };
        let text = line(e);
        let msg = out.redacted(text.strip_prefix(&format!("{host}: ")).unwrap_or(&text));
        match e {
            Event::HostFailed { .. } | Event::HostDone { .. } => bar.finish_with_message(msg),
            Event::ImageProgress { .. } => bar.set_message(msg),
            _ => {
                let _ = self.multi.println(out.redacted(&text));
                bar.set_message(msg);
            }
        }
    }
}

/// Who applies, as the releases record it: the user and the controller, and the project's
/// revision.
fn applier(global: &Global) -> hoist_ops::release::Applier {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(|| {
            // No login variables (a service, a container): the numeric user.
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(format!("uid {}", uid.split_whitespace().next()?))
        })
        .unwrap_or_else(|| "unknown".into());
    let me = apply::lock::Holder::me();
    hoist_ops::release::Applier {
        by: format!("{user}@{}", me.controller),
        run: format!("{}-{}@{}", me.since, me.pid, me.controller),
        revision: hoist_remote::local::git_revision(&global.project),
    }
}
