//! `rkt version` and `rkt config`.

use crate::commands::Context;
use crate::CliResult;

pub fn version() -> CliResult {
    println!("rkt Version: {}", env!("CARGO_PKG_VERSION"));
    println!("appc Version: {}", rkt_store::appc::manifest::APPC_VERSION);
    println!("Rust OS/Arch: {}/{}", std::env::consts::OS, std::env::consts::ARCH);
    Ok(())
}

/// The merged configuration of the system, local and user directories.
pub fn config(ctx: &Context, pretty: bool) -> CliResult {
    let stage1_images = ctx.flags.system_config.join("stage1-images");
    let value = ctx.config.stage0_json(&ctx.data_dir(), &stage1_images);
    Ok(crate::output::print_json(&value, pretty)?)
}
