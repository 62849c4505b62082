//! `rkt fetch`: brings images into the store and prints their IDs.

use rkt_fetch::{fetch_file, FetchOptions, ImageString};

use crate::cli::FetchArgs;
use crate::commands::Context;
use crate::{CliError, CliResult};

pub async fn run(ctx: &Context, args: FetchArgs) -> CliResult {
    if args.signature.len() > args.images.len() {
        return Err(CliError::msg("more --signature flags than images"));
    }
    let store = ctx.open_store()?;
    for (i, image) in args.images.iter().enumerate() {
        let id = match ImageString::classify(image)? {
            ImageString::Id(id) => store.resolve_id(&id)?,
            ImageString::Path(path) => {
                let options = FetchOptions {
                    skip_verify: ctx.flags.insecure_options.image,
                    signature: args.signature.get(i).cloned(),
                    keystore: Some(&ctx.keystore),
                };
                let (imported, signers) = fetch_file(&store, &path, &options).await?;
                report_signers(&signers);
                let checked = match fetch_dependencies(ctx, &store, &imported.id, &args.pull_policy).await {
                    Ok(()) => render_if_root(&store, &imported.id).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
                    if !imported.already_stored {
                        // An image whose dependencies cannot be had, or that cannot be rendered, is
                        // bad input: the store stays as it was.
                        store.remove_image(&imported.id)?;
                    }
                    return Err(e);
                }
                imported.id
            }
            ImageString::Name(app) => {
                let id = name_image(ctx, &store, &app, &args.pull_policy).await?;
                fetch_dependencies(ctx, &store, &id, &args.pull_policy).await?;
                render_if_root(&store, &id).await?;
                id
            }
            ImageString::Oci(source) => {
                if !ctx.flags.insecure_options.image {
                    return Err(CliError::msg(format!(
                        "{image}: Docker and OCI images are unsigned; fetch them with --insecure-options=image"
                    )));
                }
                let id = rkt_fetch::oci::import(&store, &source).await?;
                render_if_root(&store, &id).await?;
                id
            }
            ImageString::Url(url) => {
                let id = url_image(ctx, &store, &url, &args.pull_policy).await?;
                fetch_dependencies(ctx, &store, &id, &args.pull_policy).await?;
                render_if_root(&store, &id).await?;
                id
            }
            ImageString::Docker(reference) => {
                let id = docker_image(ctx, &store, image, &reference, &args.pull_policy).await?;
                render_if_root(&store, &id).await?;
                id
            }
        };
        println!("{}", if args.full { id.to_string() } else { id.short(32) });
    }
    Ok(())
}

/// Fetches the appc dependencies of `top` (`--pull-policy=never`: from the store only), breadth first, each by its name and labels (a stored
/// match is used as it is) or by its image ID. A dependency that leads back to an image on its
/// own path is a cycle, refused rather than followed.
pub async fn fetch_dependencies(
    ctx: &Context,
    store: &rkt_store::Store,
    top: &rkt_store::ImageId,
    policy: &str,
) -> CliResult {
    // Dependencies are taken from the store when there; `never` forbids looking further.
    let policy = if policy == "never" { "never" } else { "new" };
    const MAX_IMAGES: usize = 1024;
    let mut queue = std::collections::VecDeque::new();
    queue.push_back((top.clone(), vec![store.manifest(top)?.name]));
    let mut seen = std::collections::HashSet::new();
    while let Some((id, path)) = queue.pop_front() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if seen.len() > MAX_IMAGES {
            return Err(CliError::msg(format!("{} has more than {MAX_IMAGES} dependencies", path[0])));
        }
        for dep in store.manifest(&id)?.dependencies {
            if path.contains(&dep.image_name) {
                return Err(CliError::msg(format!("dependency cycle: {} -> {}", path.join(" -> "), dep.image_name)));
            }
            let stored = dep.image_id.as_deref().and_then(|i| store.resolve_id(i).ok());
            let dep_id = match stored {
                Some(i) => i,
                None => {
                    let app = rkt_store::appc::AppString { name: dep.image_name.clone(), labels: dep.labels.clone() };
                    name_image(ctx, store, &app, policy).await?
                }
            };
            let mut next = path.clone();
            next.push(dep.image_name.clone());
            queue.push_back((dep_id, next));
        }
    }
    Ok(())
}

/// A `docker://` image by pull policy: `never` and `new` take the image stored for this exact
/// string when there is one; `update` asks the registry (one manifest request when unchanged).
pub async fn docker_image(
    ctx: &Context,
    store: &rkt_store::Store,
    typed: &str,
    reference: &str,
    policy: &str,
) -> Result<rkt_store::ImageId, CliError> {
    if !ctx.flags.insecure_options.image {
        return Err(CliError::msg(format!(
            "{typed}: Docker images are unsigned; fetch them with --insecure-options=image"
        )));
    }
    let url = rkt_fetch::registry::remote_url(typed);
    if policy != "update" {
        if let Some(remote) = store.remote(&url)? {
            if store.image(&remote.image_id).is_ok() {
                return Ok(remote.image_id);
            }
        }
        if policy == "never" {
            return Err(CliError::msg(format!(
                "unable to find image {typed:?} in the local store (--pull-policy=never)"
            )));
        }
    }
    let parsed = rkt_fetch::registry::DockerRef::parse(reference)?;
    let credentials = ctx
        .config
        .docker_auth
        .get(&parsed.registry)
        .map(|c| (c.user.clone(), c.password.clone()))
        .or_else(|| rkt_fetch::registry::docker_config_credentials(&parsed.registry));
    let options = rkt_fetch::registry::RegistryOptions {
        plain_http: ctx.flags.insecure_options.http,
        skip_tls_verify: ctx.flags.insecure_options.tls,
        credentials,
    };
    Ok(rkt_fetch::registry::import(store, typed, &parsed, &options).await?)
}

/// An image by name, by pull policy: `never` and `new` take the best stored match (labels,
/// then latest, then newest); `update` runs appc discovery.
pub async fn name_image(
    ctx: &Context,
    store: &rkt_store::Store,
    app: &rkt_store::appc::AppString,
    policy: &str,
) -> Result<rkt_store::ImageId, CliError> {
    if policy != "update" {
        let with_defaults = rkt_fetch::with_default_os_arch(app)?;
        if let Some(id) = store.find(&with_defaults)?.or(store.find(app)?) {
            eprintln!("image: using image from local store for image name {}", app.name);
            return Ok(id);
        }
        if policy == "never" {
            return Err(CliError::msg(format!(
                "unable to find image {} in the local store (--pull-policy=never)",
                app.name
            )));
        }
    }
    let keystore = (!ctx.flags.insecure_options.image).then_some(&ctx.keystore);
    let (id, signers) = rkt_fetch::fetch_name(store, app, &http_options(ctx), keystore).await?;
    report_signers(&signers);
    Ok(id)
}

/// rkt's `signature verified:` and the signer's identities.
pub fn report_signers(signers: &[String]) {
    if !signers.is_empty() {
        eprintln!("signature verified:");
        for signer in signers {
            eprintln!("  {signer}");
        }
    }
}

/// The signature rkt looks for beside an image URL: `….aci` → `….aci.asc`.
fn signature_url(url: &str) -> String {
    if url.ends_with(".aci") {
        format!("{url}.asc")
    } else {
        format!("{url}.aci.asc")
    }
}

/// The HTTP options from the flags and auth.d.
pub fn http_options(ctx: &Context) -> rkt_fetch::http::HttpOptions {
    let auth = ctx
        .config
        .auth
        .iter()
        .map(|(host, creds)| {
            let value = match creds {
                rkt_config::Credentials::Basic { user, password } => {
                    format!("Basic {}", rkt_fetch::registry::base64(format!("{user}:{password}").as_bytes()))
                }
                rkt_config::Credentials::OAuth { token } => format!("Bearer {token}"),
            };
            (host.clone(), value)
        })
        .collect();
    rkt_fetch::http::HttpOptions {
        plain_http: ctx.flags.insecure_options.http,
        skip_tls_verify: ctx.flags.insecure_options.tls,
        auth,
    }
}

/// An ACI by URL, by pull policy: `never` and `new` take the stored copy of this URL when there
/// is one; `update` follows the remote cache (max-age, then ETag).
pub async fn url_image(
    ctx: &Context,
    store: &rkt_store::Store,
    url: &str,
    policy: &str,
) -> Result<rkt_store::ImageId, CliError> {
    if policy != "update" {
        if let Some(remote) = store.remote(url)?.filter(|r| store.image(&r.image_id).is_ok()) {
            eprintln!("image: using image from local store for url {url}");
            return Ok(remote.image_id);
        }
        if policy == "never" {
            return Err(CliError::msg(format!(
                "unable to find image {url:?} in the local store (--pull-policy=never)"
            )));
        }
    }
    let sig_url = signature_url(url);
    let verify = (!ctx.flags.insecure_options.image).then_some((&ctx.keystore, sig_url.as_str()));
    let (outcome, signers) = rkt_fetch::http::fetch_url(store, url, &http_options(ctx), verify).await?;
    report_signers(&signers);
    if let rkt_fetch::http::UrlOutcome::Fresh(_) = outcome {
        eprintln!("image: image for {url} isn't expired, not fetching.");
    }
    Ok(outcome.id().clone())
}

/// rkt renders at fetch time when it can (as root), so that a later run starts at once.
async fn render_if_root(store: &rkt_store::Store, id: &rkt_store::ImageId) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    match store.render_tree(id).await {
        Ok(_) => Ok(()),
        // An image whose dependencies are not here yet is rendered when they are.
        Err(rkt_store::StoreError::MissingDependency { .. }) => Ok(()),
        Err(e) => Err(CliError::msg(format!("rendering {}: {e}", id.short(32)))),
    }
}
