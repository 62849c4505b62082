//! `rkt`: the command line of the App Container toolkit. Each subcommand lives in `commands/`;
//! this file parses the flags, runs the subcommand and turns its error into rkt's exit code.

mod cli;
mod commands;
mod options;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ImageCommand};

/// rkt's exit status for every failure.
const EXIT_FAILURE: u8 = 254;

/// An error for the user: one line, shown after the subcommand's name.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Fetch(_) => "fetch",
        Command::Image { command } => match command {
            ImageCommand::List(_) => "image list",
            ImageCommand::Rm { .. } => "image rm",
            ImageCommand::Gc { .. } => "image gc",
            ImageCommand::Export { .. } => "image export",
            ImageCommand::Extract(_) => "image extract",
            ImageCommand::Render(_) => "image render",
            ImageCommand::CatManifest { .. } => "image cat-manifest",
            ImageCommand::Verify { .. } => "image verify",
            ImageCommand::Fetch(_) => "fetch",
        },
        Command::Version => "version",
        Command::Config { .. } => "config",
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rkt: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(message)) => {
            eprintln!("{name}: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
