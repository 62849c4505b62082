//! `rkt fetch`: brings images into the store and prints their IDs.

use rkt_fetch::{fetch_file, FetchOptions, ImageString};

use crate::cli::FetchArgs;
use crate::commands::Context;
use crate::{CliError, CliResult};

/// Images fetched at once by one `rkt fetch`, and dependencies looked up at once.
const PARALLEL_IMAGES: usize = 8;

pub async fn run(ctx: &Context, args: FetchArgs) -> CliResult {
    if args.signature.len() > args.images.len() {
        return Err(CliError::msg("more --signature flags than images"));
    }
    let store = ctx.open_store()?;
    // Downloads run side by side; rendering (CPU and disk bound) and the IDs follow in the
    // order given, up to the first failure, as rkt printed them.
    let jobs: Vec<rkt_fetch::task::Job<'_, Fetched, CliError>> = args
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let (store, args) = (&store, &args);
            Box::pin(
                async move { fetch_one(ctx, store, image, args.signature.get(i).cloned(), &args.pull_policy).await },
            ) as rkt_fetch::task::Job<'_, Fetched, CliError>
        })
        .collect();
    for result in rkt_fetch::task::join_bounded(jobs, PARALLEL_IMAGES).await {
        let fetched = result?;
        if let Err(e) = render_if_root(&store, &fetched.id).await {
            // An image that cannot be rendered is bad input: the store stays as it was.
            fetched.take_back(&store)?;
            return Err(e);
        }
        println!("{}", if args.full { fetched.id.to_string() } else { fetched.id.short(32) });
    }
    Ok(())
}

/// An image brought into the store by `fetch_one`.
pub struct Fetched {
    pub id: rkt_store::ImageId,
    /// What the fetch changed, to be taken back if the image cannot be rendered.
    undo: Undo,
}

impl Fetched {
    /// Takes back what the fetch stored: the image turned out unusable.
    pub fn take_back(self, store: &rkt_store::Store) -> CliResult {
        self.undo.apply(store)
    }
}

/// What a fetch changed in the store: taken back when the image turns out unusable (its
/// dependencies cannot be had, or it cannot be rendered), so that bad input leaves the store as
/// it was.
#[derive(Default)]
struct Undo {
    /// A local ACI file imported now.
    file_image: Option<rkt_store::BroughtIn>,
    /// The images fetched by URL (the image itself, and its dependencies by discovery).
    urls: std::sync::Mutex<Vec<rkt_fetch::url_fetch::UrlUndo>>,
    /// A Docker or OCI image converted now: its layers, itself and its remote row.
    converted: Option<rkt_fetch::oci::ConvertUndo>,
}

impl Undo {
    fn url(&self, undo: rkt_fetch::url_fetch::UrlUndo) {
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).push(undo);
    }

    fn apply(self, store: &rkt_store::Store) -> CliResult {
        let urls = self.urls.into_inner().unwrap_or_else(|p| p.into_inner());
        // An image that one the fetch brought in still depends on would be kept: they all go
        // together, dependents first.
        let images: Vec<rkt_store::BroughtIn> =
            self.file_image.into_iter().chain(urls.iter().filter_map(|u| u.new_image().cloned())).collect();
        // One that another fetch of its URL took as its result meanwhile stays, for that fetch.
        let claimed = |id: &rkt_store::ImageId| -> Result<bool, rkt_store::StoreError> {
            for url in &urls {
                if url.claimed_by_another(store, id)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        store.take_back_all_unless(&images, &claimed)?;
        // Newest first, so that a URL fetched twice ends with the row it had before the first.
        for undo in urls.into_iter().rev() {
            undo.restore_row(store)?;
        }
        if let Some(converted) = self.converted {
            converted.undo(store)?;
        }
        Ok(())
    }
}

/// Finds or fetches one image and its dependencies, by pull policy (rkt fetch's, rkt run's).
/// When it fails, what it stored is taken back.
pub async fn fetch_one(
    ctx: &Context,
    store: &rkt_store::Store,
    image: &str,
    signature: Option<std::path::PathBuf>,
    policy: &str,
) -> Result<Fetched, CliError> {
    let mut undo = Undo::default();
    match find_or_fetch(ctx, store, image, signature, policy, &mut undo).await {
        Ok(id) => Ok(Fetched { id, undo }),
        Err(e) => {
            undo.apply(store)?;
            Err(e)
        }
    }
}

async fn find_or_fetch(
    ctx: &Context,
    store: &rkt_store::Store,
    image: &str,
    signature: Option<std::path::PathBuf>,
    policy: &str,
    undo: &mut Undo,
) -> Result<rkt_store::ImageId, CliError> {
    let id = match ImageString::classify(image)? {
        ImageString::Id(id) => store.resolve_id(&id)?,
        ImageString::Path(path) => {
            let options = FetchOptions {
                skip_verify: ctx.flags.insecure_options.image,
                signature,
                keystore: Some(&ctx.keystore),
            };
            let (imported, signers) = fetch_file(store, &path, &options).await?;
            report_signers(&signers);
            undo.file_image = imported.brought_in();
            fetch_dependencies(ctx, store, &imported.id, policy, undo).await?;
            imported.id
        }
        ImageString::Name(app) => {
            let id = name_image(ctx, store, &app, policy, undo).await?;
            fetch_dependencies(ctx, store, &id, policy, undo).await?;
            id
        }
        ImageString::Oci(source) => {
            if !ctx.flags.insecure_options.image {
                return Err(CliError::msg(format!(
                    "{image}: Docker and OCI images are unsigned; use them with --insecure-options=image"
                )));
            }
            let converted = rkt_fetch::oci::import(store, &source, renders_at_fetch(), &ctx.progress).await?;
            report_damaged(&converted.damaged);
            undo.converted = Some(converted.undo);
            converted.id
        }
        ImageString::Url(url) => {
            let id = url_image(ctx, store, &url, policy, undo).await?;
            fetch_dependencies(ctx, store, &id, policy, undo).await?;
            id
        }
        ImageString::Docker(reference) => {
            let converted = docker_image(ctx, store, image, &reference, policy).await?;
            report_damaged(&converted.damaged);
            undo.converted = Some(converted.undo);
            converted.id
        }
    };
    Ok(id)
}

/// Fetches the appc dependencies of `top` (`--pull-policy=never`: from the store only), breadth first, each by its name and labels (a stored
/// match is used as it is) or by its image ID. A dependency that leads back to an image on its
/// own path is a cycle, refused rather than followed.
async fn fetch_dependencies(
    ctx: &Context,
    store: &rkt_store::Store,
    top: &rkt_store::ImageId,
    policy: &str,
    undo: &Undo,
) -> CliResult {
    // Dependencies are taken from the store when there; `never` forbids looking further.
    let policy = if policy == "never" { "never" } else { "new" };
    const MAX_IMAGES: usize = 1024;
    let mut level = vec![(top.clone(), vec![store.manifest(top)?.name])];
    let mut seen = std::collections::HashSet::new();
    while !level.is_empty() {
        // The dependencies of one level are looked up (and downloaded) side by side.
        let mut wanted = Vec::new();
        for (id, path) in level {
            if !seen.insert(id.clone()) {
                continue;
            }
            if seen.len() > MAX_IMAGES {
                return Err(CliError::msg(format!("{} has more than {MAX_IMAGES} dependencies", path[0])));
            }
            for dep in store.manifest(&id)?.dependencies {
                if path.contains(&dep.image_name) {
                    return Err(CliError::msg(format!(
                        "dependency cycle: {} -> {}",
                        path.join(" -> "),
                        dep.image_name
                    )));
                }
                let mut next = path.clone();
                next.push(dep.image_name.clone());
                wanted.push((dep, next));
            }
        }
        let jobs: Vec<rkt_fetch::task::Job<'_, rkt_store::ImageId, CliError>> = wanted
            .iter()
            .map(|(dep, _)| {
                Box::pin(async move {
                    if let Some(id) = dep.image_id.as_deref().and_then(|i| store.resolve_id(i).ok()) {
                        return Ok(id);
                    }
                    let app = rkt_store::appc::AppString { name: dep.image_name.clone(), labels: dep.labels.clone() };
                    name_image(ctx, store, &app, policy, undo).await
                }) as rkt_fetch::task::Job<'_, rkt_store::ImageId, CliError>
            })
            .collect();
        let ids = rkt_fetch::task::try_join_bounded(jobs, PARALLEL_IMAGES).await?;
        level = ids.into_iter().zip(wanted).map(|(id, (_, path))| (id, path)).collect();
    }
    Ok(())
}

/// A `docker://` image by pull policy: `never` and `new` take the image stored for this
/// reference when there is one (fetched as this very string, else as the same reference
/// spelled otherwise); `update` asks the registry (one manifest request when unchanged).
pub async fn docker_image(
    ctx: &Context,
    store: &rkt_store::Store,
    typed: &str,
    reference: &str,
    policy: &str,
) -> Result<rkt_fetch::oci::Converted, CliError> {
    if policy != "update" {
        for remote in rkt_fetch::registry::stored_fetches(store, typed)? {
            // With `new`, an image missing one of its layers is pulled again (those there stay).
            let usable = match policy {
                "never" => store.image(&remote.image_id).is_ok(),
                _ => store.dependency_layers(&remote.image_id).is_ok(),
            };
            if usable {
                return Ok(rkt_fetch::oci::Converted::found(remote.image_id));
            }
        }
        if policy == "never" {
            return Err(CliError::msg(format!(
                "unable to find image {typed:?} in the local store (--pull-policy=never)"
            )));
        }
    }
    // As rkt: only a pull needs the flag; a stored image was taken with it when fetched.
    if !ctx.flags.insecure_options.image {
        return Err(CliError::msg(format!(
            "{typed}: Docker images are unsigned; fetch them with --insecure-options=image"
        )));
    }
    let parsed = rkt_fetch::registry::DockerRef::parse(reference)?;
    let credentials = match ctx.config.docker_auth.get(&parsed.registry) {
        Some(c) => Some((c.user.clone(), c.password.clone())),
        None => rkt_fetch::registry::stored_credentials(&parsed.registry, &parsed.repository)?,
    };
    let options = rkt_fetch::registry::RegistryOptions {
        plain_http: ctx.flags.insecure_options.http,
        skip_tls_verify: ctx.flags.insecure_options.tls,
        credentials,
        progress: ctx.progress.clone(),
        slots: ctx.slots.clone(),
        render: renders_at_fetch(),
    };
    Ok(rkt_fetch::registry::import(store, typed, &parsed, &options).await?)
}

/// An image by name, by pull policy: `never` and `new` take the best stored match (labels,
/// then latest, then newest); `update` runs appc discovery.
async fn name_image(
    ctx: &Context,
    store: &rkt_store::Store,
    app: &rkt_store::appc::AppString,
    policy: &str,
    undo: &Undo,
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
    let (id, signers, fetched) = rkt_fetch::fetch_name(store, app, &http_options(ctx), keystore).await?;
    undo.url(fetched);
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

/// Stored layers a conversion could not copy from: the fetch went on without them, but the
/// user should know that the store needs looking at.
fn report_damaged(damaged: &[rkt_fetch::oci::DamagedImage]) {
    for image in damaged {
        eprintln!(
            "warning: stored layer {} is damaged, its content was fetched instead ({}); `rkt image verify` lists damaged images",
            image.id.short(32),
            image.problem
        );
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
        progress: ctx.progress.clone(),
        slots: ctx.slots.clone(),
    }
}

/// An ACI by URL, by pull policy: `never` and `new` take the stored copy of this URL when there
/// is one; `update` follows the remote cache (max-age, then ETag).
async fn url_image(
    ctx: &Context,
    store: &rkt_store::Store,
    url: &str,
    policy: &str,
    undo: &Undo,
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
    let checks = rkt_fetch::url_fetch::UrlChecks { verify, expected: None };
    let (outcome, signers, fetched) = rkt_fetch::url_fetch::fetch_url(store, url, &http_options(ctx), checks).await?;
    undo.url(fetched);
    report_signers(&signers);
    if let rkt_fetch::url_fetch::UrlOutcome::Fresh(_) = outcome {
        eprintln!("image: image for {url} isn't expired, not fetching.");
    }
    Ok(outcome.id().clone())
}

/// rkt renders at fetch time when it can (as root: owners need it), so that a later run
/// starts at once.
fn renders_at_fetch() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn render_if_root(store: &rkt_store::Store, id: &rkt_store::ImageId) -> CliResult {
    if !renders_at_fetch() {
        return Ok(());
    }
    match store.render_tree(id).await {
        Ok(_) => Ok(()),
        // An image whose dependencies are not here yet is rendered when they are.
        Err(rkt_store::StoreError::MissingDependency { .. }) => Ok(()),
        Err(e) => Err(CliError::msg(format!("rendering {}: {e}", id.short(32)))),
    }
}
