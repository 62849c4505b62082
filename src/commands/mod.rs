mod fetch;
mod image;
mod misc;

use rkt_store::Store;

use crate::cli::{Cli, Command, GlobalFlags, ImageCommand};
use crate::{CliError, CliResult};

pub async fn run(cli: Cli) -> CliResult {
    let global = &cli.global;
    match cli.command {
        Command::Fetch(args) | Command::Image { command: ImageCommand::Fetch(args) } => fetch::run(global, args).await,
        Command::Image { command } => image::run(global, command).await,
        Command::Version => misc::version(),
        Command::Config { pretty_print } => misc::config(global, pretty_print),
    }
}

pub fn open_store(global: &GlobalFlags) -> Result<Store, CliError> {
    Store::open(&global.dir).map_err(|e| CliError(format!("cannot open store: {e}")))
}
