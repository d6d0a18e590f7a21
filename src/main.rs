//! `hoist`: a declarative, agentless provisioner for the APM platform.
//!
//! This file parses the command line, sets up logging and colour, runs one command and maps its
//! outcome to an exit code. Commands live in `commands/`, one file each; the work they do lives in
//! `hoist-core`.

mod cli;
mod commands;
/// The guides' `hoist` commands, shared with the e2e suite.
#[cfg(test)]
#[path = "../tests/common/guide.rs"]
mod guide;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let out = output::Output::new(&cli.global);
    match commands::run(cli, &out) {
        Ok(code) => code.into(),
        Err(err) => {
            out.error(&format!("{err:#}"));
            ExitCode::from(1)
        }
    }
}
