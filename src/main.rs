//! `rkt`: the command line of the App Container toolkit. Each subcommand lives in `commands/`;
//! this file parses the flags, runs the subcommand and turns its error into rkt's exit code.

mod cli;
mod commands;
mod options;
mod output;
mod progress;
mod run_args;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ImageCommand};

/// rkt's exit status for every failure.
const EXIT_FAILURE: u8 = 254;

/// How a command ends other than with success: a one-line message for the user (exit 254),
/// or, for `rkt run`, the pod's own exit status with nothing to add.
#[derive(Debug)]
pub struct CliError {
    pub message: Option<String>,
    pub code: u8,
}

impl CliError {
    pub fn msg(message: impl Into<String>) -> Self {
        CliError { message: Some(message.into()), code: EXIT_FAILURE }
    }

    pub fn exit(code: i32) -> Self {
        CliError { message: None, code: u8::try_from(code).unwrap_or(EXIT_FAILURE) }
    }
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::msg(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

fn command_name(command: &Command) -> &'static str {
    match command {
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
        Command::Run { .. } => "run",
        Command::Prepare { .. } => "prepare",
        Command::RunPrepared(_) => "run-prepared",
        Command::Status { .. } => "status",
        Command::List { .. } => "list",
        Command::Rm { .. } => "rm",
        Command::Gc { .. } => "gc",
        Command::CatManifest { .. } => "cat-manifest",
        Command::Stop { .. } => "stop",
        Command::Enter { .. } => "enter",
        Command::Trust(_) => "trust",
        Command::Version => "version",
        Command::Config { .. } => "config",
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The pod's init is this binary too, started by `rkt run` before anything else happens.
    if args.get(1).map(String::as_str) == Some(rkt_runner::launch::INIT_SUBCOMMAND) {
        let code = rkt_runner::init::main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILURE));
    }
    rkt_runner::limits::raise_open_files();
    let cli = Cli::parse();
    let name = command_name(&cli.command);
    // Two workers: a layer's decompression and the store's hashing and writing run side by side.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rkt: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { message, code }) => {
            if let Some(message) = message {
                eprintln!("{name}: {}", output::one_line(&message));
            }
            ExitCode::from(code)
        }
    }
}
