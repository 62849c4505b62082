mod fetch;
mod image;
mod misc;

use std::path::{Path, PathBuf};

use rkt_config::Config;
use rkt_store::Store;

use crate::cli::{Cli, Command, GlobalFlags, ImageCommand};
use crate::{CliError, CliResult};

/// The global flags with the configuration files read.
pub struct Context {
    pub flags: GlobalFlags,
    pub config: Config,
}

impl Context {
    fn load(flags: GlobalFlags) -> Result<Self, CliError> {
        let user = (!flags.user_config.is_empty()).then(|| PathBuf::from(&flags.user_config));
        let mut dirs: Vec<&Path> = vec![&flags.system_config, &flags.local_config];
        dirs.extend(user.as_deref());
        let config = Config::load(&dirs)?;
        Ok(Context { flags, config })
    }

    /// `--dir`, else `data` from paths.d, else rkt's default.
    pub fn data_dir(&self) -> PathBuf {
        self.flags
            .dir
            .clone()
            .or_else(|| self.config.paths.data.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    pub fn open_store(&self) -> Result<Store, CliError> {
        Store::open(&self.data_dir()).map_err(|e| CliError(format!("cannot open store: {e}")))
    }
}

const DEFAULT_DATA_DIR: &str = "/var/lib/rkt";

pub async fn run(cli: Cli) -> CliResult {
    let ctx = Context::load(cli.global)?;
    match cli.command {
        Command::Fetch(args) | Command::Image { command: ImageCommand::Fetch(args) } => fetch::run(&ctx, args).await,
        Command::Image { command } => image::run(&ctx, command).await,
        Command::Version => misc::version(),
        Command::Config { pretty_print } => misc::config(&ctx, pretty_print),
    }
}
