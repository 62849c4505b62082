pub(crate) mod fetch;
mod image;
mod misc;
mod pods;
mod run;
mod trust;

use std::path::{Path, PathBuf};

use rkt_config::Config;
use rkt_store::Store;

use crate::cli::{Cli, Command, GlobalFlags, ImageCommand};
use crate::{CliError, CliResult};

/// The global flags with the configuration files read.
pub struct Context {
    pub flags: GlobalFlags,
    pub config: Config,
    pub keystore: rkt_trust::Keystore,
    /// Where downloads show their progress.
    pub progress: rkt_fetch::progress::ProgressHandle,
    /// Downloads at once per host, across every image of the command.
    pub slots: rkt_fetch::task::HostSlots,
}

impl Context {
    fn load(flags: GlobalFlags) -> Result<Self, CliError> {
        let user = (!flags.user_config.is_empty()).then(|| PathBuf::from(&flags.user_config));
        let mut dirs: Vec<&Path> = vec![&flags.system_config, &flags.local_config];
        dirs.extend(user.as_deref());
        let config = Config::load(&dirs)?;
        let keystore = rkt_trust::Keystore::new(&flags.system_config, &flags.local_config);
        let progress = crate::progress::handle(flags.quiet);
        Ok(Context { flags, config, keystore, progress, slots: Default::default() })
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
        Store::open(&self.data_dir()).map_err(|e| CliError::msg(format!("cannot open store: {e}")))
    }
}

const DEFAULT_DATA_DIR: &str = "/var/lib/rkt";

pub async fn run(cli: Cli) -> CliResult {
    let ctx = Context::load(cli.global)?;
    match cli.command {
        Command::Fetch(args) | Command::Image { command: ImageCommand::Fetch(args) } => fetch::run(&ctx, args).await,
        Command::Image { command } => image::run(&ctx, command).await,
        Command::Run { args } => run::run(&ctx, &args, false).await,
        Command::Prepare { args } => run::run(&ctx, &args, true).await,
        Command::RunPrepared(args) => run::run_prepared(&ctx, args).await,
        Command::Status { uuid, wait, format, uuid_file } => pods::status(&ctx, uuid, uuid_file, wait, format).await,
        Command::List { full, no_legend, format } => pods::list(&ctx, full, no_legend, format),
        Command::Rm { uuids, uuid_file } => pods::rm(&ctx, uuids, uuid_file),
        Command::Gc { grace_period, expire_prepared, mark_only } => {
            pods::gc(&ctx, grace_period, expire_prepared, mark_only)
        }
        Command::CatManifest { uuid, pretty_print, uuid_file } => {
            pods::cat_manifest(&ctx, uuid, uuid_file, pretty_print)
        }
        Command::Stop { uuids, force, uuid_file } => pods::stop(&ctx, uuids, uuid_file, force),
        Command::Enter { app, uuid, command } => pods::enter(&ctx, app, uuid, command),
        Command::Trust(args) => trust::run(&ctx, args).await,
        Command::Version => misc::version(),
        Command::Config { pretty_print } => misc::config(&ctx, pretty_print),
    }
}
