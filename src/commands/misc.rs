//! `rkt version` and `rkt config`.

use serde_json::json;

use crate::cli::GlobalFlags;
use crate::CliResult;

pub fn version() -> CliResult {
    println!("rkt Version: {}", env!("CARGO_PKG_VERSION"));
    println!("appc Version: {}", rkt_store::appc::manifest::APPC_VERSION);
    println!("Rust OS/Arch: {}/{}", std::env::consts::OS, std::env::consts::ARCH);
    Ok(())
}

/// The merged configuration. Only the paths kind is read so far; the others arrive with the
/// commands that use them.
pub fn config(global: &GlobalFlags, pretty: bool) -> CliResult {
    let value = json!({
        "stage0": [{
            "rktVersion": "v1",
            "rktKind": "paths",
            "data": global.dir,
            "stage1-images": global.system_config.join("stage1-images"),
        }]
    });
    let text = if pretty { serde_json::to_string_pretty(&value)? } else { serde_json::to_string(&value)? };
    println!("{text}");
    Ok(())
}
