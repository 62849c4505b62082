//! `rkt trust`: adds a key to the local keystore, for one image name prefix or for all images,
//! after the user has reviewed its fingerprint.

use std::io::{BufRead, IsTerminal, Write};

use crate::cli::TrustArgs;
use crate::commands::fetch::http_options;
use crate::commands::Context;
use crate::{CliError, CliResult};

async fn key_bytes(ctx: &Context, location: &str, allow_http: bool) -> Result<Vec<u8>, CliError> {
    if location.starts_with("https://") || location.starts_with("http://") {
        let mut options = http_options(ctx);
        options.plain_http = allow_http;
        if location.starts_with("http://") && !allow_http {
            return Err(CliError::msg(format!("{location}: keys over plain http need --insecure-allow-http")));
        }
        let client = rkt_fetch::http::client(&options)?;
        let resp = rkt_fetch::http::get(&client, location, Default::default(), &options).await?;
        if !resp.status().is_success() {
            return Err(CliError::msg(format!("{location}: bad HTTP status code: {}", resp.status().as_u16())));
        }
        // Keys with many certifications run to a few MiB; a body without end is refused.
        return rkt_fetch::http::body_within(resp, 16 << 20)
            .await
            .map_err(|e| CliError::msg(format!("{location}: {e}")));
    }
    std::fs::read(location).map_err(|e| CliError::msg(format!("{location}: {e}")))
}

fn review(prefix: Option<&str>, location: &str, cert: &rkt_trust::KeyCert) -> Result<bool, CliError> {
    eprintln!(
        "{}",
        match prefix {
            Some(p) => format!("Prefix: {p:?}"),
            None => "Root key".to_string(),
        }
    );
    eprintln!("Key: {location:?}");
    eprintln!("GPG key fingerprint is: {}", rkt_trust::fingerprint_display(cert));
    for id in rkt_trust::identities(cert) {
        eprintln!("\t{id}");
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::msg(
            "cannot review the key's fingerprint: standard input is not a terminal (use --skip-fingerprint-review)",
        ));
    }
    loop {
        eprint!("Are you sure you want to trust this key (yes/no)? ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match answer.trim() {
            "yes" => return Ok(true),
            "no" => return Ok(false),
            _ => eprintln!("Please enter 'yes' or 'no'"),
        }
    }
}

pub async fn run(ctx: &Context, args: TrustArgs) -> CliResult {
    let prefix = match (&args.prefix, args.root) {
        (Some(_), true) => return Err(CliError::msg("--root and --prefix usage mutually exclusive")),
        (None, false) => {
            return Err(CliError::msg(
                "--prefix not provided; aborting due to implicit unbounded trust (root domain); use --root to trust a key for all images",
            ))
        }
        (Some(p), false) => {
            if p.contains("://") {
                return Err(CliError::msg("--prefix must not contain a URL scheme, omit http://, https://, etc."));
            }
            Some(p.clone())
        }
        (None, true) => None,
    };
    let locations = if args.keys.is_empty() {
        let Some(p) = &prefix else { return Err(CliError::msg("empty prefix: --root needs a key file or URL")) };
        let mut options = http_options(ctx);
        options.plain_http = args.insecure_allow_http;
        rkt_fetch::discovery::discover_keys(p, &options).await?
    } else {
        args.keys.clone()
    };
    for location in &locations {
        let bytes = key_bytes(ctx, location, args.insecure_allow_http).await?;
        let cert = rkt_trust::parse_key(&bytes)?;
        if !args.skip_fingerprint_review && !review(prefix.as_deref(), location, &cert)? {
            eprintln!("trust: not trusting key {location}");
            continue;
        }
        let (path, _) = ctx.keystore.add(prefix.as_deref(), &bytes)?;
        match &prefix {
            Some(p) => println!("Added key for prefix {p:?} at {:?}", path.display().to_string()),
            None => println!("Added root key at {:?}", path.display().to_string()),
        }
    }
    Ok(())
}
