//! What is generated from the command definitions themselves: shell completions
//! (clap_complete), man pages (clap_mangen) and the Markdown reference in docs/cli.md.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::output::Output;

pub fn completions(shell: clap_complete::Shell, out: &Output) -> anyhow::Result<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hoist", &mut buf);
    out.print(&String::from_utf8_lossy(&buf));
    Ok(0)
}

/// `hoist.1`, then `hoist-<command>.1` for every command and subcommand.
pub fn man(dir: &Path, out: &Output) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    for (name, cmd) in commands() {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(name.clone())
            .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    out.eprint(&format!("wrote {written} man pages in {}\n", dir.display()));
    Ok(0)
}

/// Every command's long help, as Markdown: the reference in docs/cli.md.
pub fn markdown(out: &Output) -> anyhow::Result<u8> {
    let mut text = String::from(
        "# Command-line reference\n\nGenerated from the command definitions (`hoist reference`); \
         a test fails when this file is stale. `hoist completions <shell>` prints a completion \
         script and `hoist man --out DIR` writes the man pages.\n",
    );
    for (name, mut cmd) in commands() {
        let title = name.replace('-', " ");
        text.push_str(&format!("\n## `{title}`\n\n```text\n"));
        let help = cmd.render_long_help().to_string();
        text.push_str(help.trim_end());
        text.push_str("\n```\n");
    }
    out.print(&text);
    Ok(0)
}

/// The root command and every visible subcommand, depth first, named `hoist-a-b`.
fn commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        out.push((
            prefix.to_owned(),
            cmd.clone().bin_name(prefix.replace('-', " ")),
        ));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            walk(&format!("{prefix}-{}", sub.get_name()), sub, out);
        }
    }
    let mut root = Cli::command();
    root.build();
    let mut out = Vec::new();
    walk("hoist", &root, &mut out);
    out
}
