//! `rkt run`, `rkt prepare` and `rkt run-prepared`.

use std::path::Path;

use rkt_runner::cgroups::PodCgroups;
use rkt_runner::plan::{self, ResolvedApp};
use rkt_runner::pod::{PodLock, Pods};
use rkt_runner::spec::{NetMode, PodPaths, PodSpec};
use rkt_runner::{copy_up, launch, network};
use rkt_store::appc::pod::{PodManifest, RuntimeApp, RuntimeImage, Volume};

use crate::cli::RunPreparedArgs;
use crate::commands::fetch::fetch_one;
use crate::commands::Context;
use crate::run_args::{self, RunRequest};
use crate::{CliError, CliResult};

pub fn require_root() -> CliResult {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(CliError::msg("cannot run as unprivileged user"))
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> CliResult {
    let text = serde_json::to_vec_pretty(value)?;
    std::fs::write(path, text).map_err(|e| CliError::msg(format!("{}: {e}", path.display())))
}

/// Resolves, renders and plans the pod; leaves it prepared in `prepare/`, locked.
async fn prepare_pod(ctx: &Context, req: &RunRequest) -> Result<(PodLock, PodSpec), CliError> {
    let store = ctx.open_store()?;
    let mut resolved = Vec::new();
    let mut runtime_apps = Vec::new();
    for (app, signature) in req.apps.iter().zip(&req.signatures) {
        let fetched = fetch_one(ctx, &store, &app.image, signature.clone(), &req.pull_policy).await?;
        let id = fetched.id.clone();
        let tree = match store.render_tree(&id).await {
            Ok(tree) => tree,
            Err(e) => {
                // As `rkt fetch` does: an image that cannot be rendered leaves the store as it was.
                fetched.take_back(&store)?;
                return Err(e.into());
            }
        };
        let manifest = store.manifest(&id)?;
        runtime_apps.push((id, manifest.clone()));
        resolved.push(ResolvedApp { options: app.clone(), manifest, rootfs: tree.rootfs() });
    }
    let pods = Pods::new(&ctx.data_dir());
    let pod = pods.create()?;
    let host_env: Vec<(String, String)> = std::env::vars().collect();
    let spec = plan::build(&pod.uuid, &resolved, &req.pod, &host_env).map_err(CliError::msg)?;
    // Empty volumes, including the implicit ones of mount points without a volume: those of an
    // image converted from Docker start with what the image holds there.
    for (app, resolved) in spec.apps.iter().zip(&resolved) {
        let from_docker = resolved.manifest.annotation(copy_up::DOCKER_ANNOTATION).is_some();
        for m in app.mounts.iter().filter(|m| m.source.is_relative()) {
            let dir = pod.dir.join(&m.source);
            std::fs::create_dir_all(&dir)?;
            if m.implicit && from_docker {
                copy_up::copy_up(&app.lower, &m.target, &dir).map_err(|e| {
                    CliError::msg(format!("filling the volume at {} with the image's content: {e}", m.target))
                })?;
            }
        }
    }
    for volume in req.pod.volumes.iter().filter(|v| v.source.is_none()) {
        let dir = pod.dir.join(PodPaths::volume_in_pod(&volume.name));
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(volume.uid), Some(volume.gid))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(volume.mode))?;
    }
    let manifest = PodManifest {
        ac_version: rkt_store::appc::manifest::APPC_VERSION.into(),
        ac_kind: "PodManifest".into(),
        apps: spec
            .apps
            .iter()
            .zip(&runtime_apps)
            .map(|(app, (id, manifest))| RuntimeApp {
                name: app.name.clone(),
                image: RuntimeImage {
                    id: id.to_string(),
                    name: Some(manifest.name.clone()),
                    labels: manifest.labels.clone(),
                },
                app: manifest.app.clone(),
                read_only_root_fs: app.read_only_rootfs,
                mounts: Vec::new(),
                annotations: Vec::new(),
            })
            .collect(),
        volumes: req
            .pod
            .volumes
            .iter()
            .map(|v| Volume {
                name: v.name.clone(),
                kind: if v.source.is_some() { "host".into() } else { "empty".into() },
                source: v.source.as_ref().map(|s| s.display().to_string()),
                read_only: Some(v.read_only),
                recursive: Some(v.recursive),
                mode: v.source.is_none().then(|| format!("{:04o}", v.mode)),
                uid: v.source.is_none().then_some(v.uid),
                gid: v.source.is_none().then_some(v.gid),
            })
            .collect(),
        isolators: Vec::new(),
        annotations: Vec::new(),
        ports: Vec::new(),
        user_annotations: Default::default(),
        user_labels: Default::default(),
    };
    write_json(&pod.dir.join("pod"), &manifest)?;
    Ok((pod, spec))
}

/// Starts a prepared pod and waits for it; returns the pod's exit status.
fn start(pods: &Pods, mut pod: PodLock, mut spec: PodSpec) -> Result<i32, CliError> {
    pod.move_to(pods, "run")?;
    let named: Vec<(String, plan::Resources)> = spec.apps.iter().map(|a| (a.name.clone(), a.limits.clone())).collect();
    let (cgroups, procs) = PodCgroups::create(&spec.uuid, &named)?;
    if !cgroups.dirs.is_empty() {
        cgroups.save(&pod.dir)?;
    }
    for (app, files) in spec.apps.iter_mut().zip(procs) {
        app.cgroups = files;
    }
    write_json(&PodPaths(&pod.dir).runtime_spec(), &spec)?;
    let started = launch::start(&pod.dir, spec.net, pod.fd())?;
    std::fs::write(pod.dir.join("pid"), started.pid.to_string())?;
    if spec.net == NetMode::Default {
        if let Err(e) = network::setup(&pod.dir, &spec.uuid, started.pid.as_raw(), &spec.ports) {
            // Dropping the go-ahead ends the init before it starts anything.
            drop(started);
            PodCgroups::remove(&pod.dir);
            return Err(CliError::msg(e));
        }
    }
    let running = started.go()?;
    let code = running.wait();
    network::teardown(&pod.dir, &spec.uuid);
    PodCgroups::remove(&pod.dir);
    Ok(code?)
}

pub async fn run(ctx: &Context, args: &[String], prepare_only: bool) -> CliResult {
    if run_args::wants_help(args) {
        print!("{}", run_args::help(prepare_only));
        return Ok(());
    }
    require_root()?;
    let req = run_args::parse(args, prepare_only).map_err(CliError::msg)?;
    if req.dir.is_some() || req.insecure.is_some() {
        let mut flags = ctx.flags.clone();
        if let Some(dir) = &req.dir {
            flags.dir = Some(dir.clone());
        }
        if let Some(insecure) = req.insecure {
            flags.insecure_options = insecure;
        }
        let keystore = rkt_trust::Keystore::new(&flags.system_config, &flags.local_config);
        let ctx = Context {
            flags,
            config: ctx.config.clone(),
            keystore,
            progress: ctx.progress.clone(),
            slots: ctx.slots.clone(),
        };
        return run_with(&ctx, req, prepare_only).await;
    }
    run_with(ctx, req, prepare_only).await
}

async fn run_with(ctx: &Context, req: RunRequest, prepare_only: bool) -> CliResult {
    let (mut pod, spec) = prepare_pod(ctx, &req).await?;
    if let Some(path) = &req.uuid_file_save {
        std::fs::write(path, &pod.uuid).map_err(|e| CliError::msg(format!("{}: {e}", path.display())))?;
    }
    let pods = Pods::new(&ctx.data_dir());
    if prepare_only {
        write_json(&PodPaths(&pod.dir).runtime_spec(), &spec)?;
        pod.move_to(&pods, "prepared")?;
        println!("{}", pod.uuid);
        return Ok(());
    }
    match start(&pods, pod, spec)? {
        0 => Ok(()),
        code => Err(CliError::exit(code)),
    }
}

pub async fn run_prepared(ctx: &Context, args: RunPreparedArgs) -> CliResult {
    require_root()?;
    let pods = Pods::new(&ctx.data_dir());
    let info = pods.find(&args.uuid)?;
    if info.state != rkt_runner::pod::PodState::Prepared {
        return Err(CliError::msg(format!("pod {:?} is not prepared (it is {})", info.uuid, info.state.as_str())));
    }
    let pod = pods.lock(&info, false)?.ok_or_else(|| CliError::msg(format!("pod {:?} is in use", info.uuid)))?;
    let paths = PodPaths(&pod.dir);
    let mut spec: PodSpec = serde_json::from_slice(&std::fs::read(paths.runtime_spec())?)?;
    let opts = rkt_runner::plan::PodOptions {
        net: match args.net.as_str() {
            "host" => NetMode::Host,
            "none" => NetMode::None,
            "default" => NetMode::Default,
            other => return Err(CliError::msg(format!("--net={other}: only host, none and default are available"))),
        },
        hostname: args.hostname,
        dns: args.dns,
        dns_search: args.dns_search,
        hosts_entries: args.hosts_entry,
        interactive: args.interactive,
        ..Default::default()
    };
    spec.net = opts.net;
    spec.interactive = opts.interactive;
    spec.hostname = opts.hostname.clone().unwrap_or_else(|| format!("rkt-{}", spec.uuid));
    let (hosts, resolv) = plan::network_files(&spec.hostname, &opts).map_err(CliError::msg)?;
    spec.hosts = hosts;
    spec.resolv_conf = resolv;
    match start(&pods, pod, spec)? {
        0 => Ok(()),
        code => Err(CliError::exit(code)),
    }
}
