//! The pod commands: status, list, rm, gc, cat-manifest, stop and enter.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rkt_runner::cgroups::PodCgroups;
use rkt_runner::pod::{PodInfo, PodState, Pods};
use rkt_runner::spec::{PodPaths, PodSpec};
use serde_json::json;

use crate::commands::run::require_root;
use crate::commands::Context;
use crate::output::{full_time, human_time, tab_table};
use crate::{CliError, CliResult};

fn ns(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The UUID argument, or the contents of `--uuid-file`.
fn uuid_arg(uuid: Option<String>, file: Option<PathBuf>) -> Result<String, CliError> {
    match (uuid, file) {
        (Some(_), Some(_)) => Err(CliError::msg("give either a UUID or --uuid-file, not both")),
        (Some(u), None) => Ok(u),
        (None, Some(f)) => Ok(std::fs::read_to_string(&f)
            .map_err(|e| CliError::msg(format!("{}: {e}", f.display())))?
            .trim()
            .to_string()),
        (None, None) => Err(CliError::msg("UUID cannot be empty")),
    }
}

fn spec_of(pod: &PodInfo) -> Option<PodSpec> {
    serde_json::from_slice(&std::fs::read(PodPaths(&pod.dir).runtime_spec()).ok()?).ok()
}

fn app_images(pod: &PodInfo) -> Vec<(String, String, String)> {
    let manifest: serde_json::Value =
        std::fs::read(pod.dir.join("pod")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    manifest["apps"]
        .as_array()
        .map(|apps| {
            apps.iter()
                .map(|a| {
                    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                    (s(&a["name"]), s(&a["image"]["name"]), s(&a["image"]["id"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The images of the pods that are being prepared, prepared or running: `rkt image gc` keeps
/// them, and so their trees, which those pods mount or will mount (rkt kept running pods' too).
pub fn images_in_use(ctx: &Context) -> Vec<rkt_store::ImageId> {
    let live = [PodState::Embryo, PodState::Preparing, PodState::Prepared, PodState::Running];
    let pods = Pods::new(&ctx.data_dir()).list().unwrap_or_default();
    pods.iter()
        .filter(|pod| live.contains(&pod.state))
        .flat_map(app_images)
        .filter_map(|(_, _, id)| rkt_store::ImageId::parse_full(&id))
        .collect()
}

fn pod_json(pod: &PodInfo) -> serde_json::Value {
    let statuses = pod.app_statuses();
    let apps: Vec<serde_json::Value> = app_images(pod)
        .into_iter()
        .map(|(name, _, id)| {
            let code = statuses.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            let state = match (pod.state, code) {
                (PodState::Running, None) => "running",
                (_, Some(_)) => "exited",
                _ => "unknown",
            };
            let mut app = json!({"name": name, "state": state, "image_id": id});
            if let Some(code) = code {
                app["exit_code"] = json!(code);
            }
            app
        })
        .collect();
    let names: Vec<&str> = apps.iter().filter_map(|a| a["name"].as_str()).collect();
    json!({
        "name": pod.uuid,
        "state": pod.state.as_str(),
        "networks": rkt_runner::network::describe(&pod.dir).into_iter().collect::<Vec<_>>(),
        "app_names": names,
        "apps": apps,
        "created_at": ns(pod.created()),
        "started_at": ns(pod.started()),
    })
}

pub async fn status(
    ctx: &Context,
    uuid: Option<String>,
    file: Option<PathBuf>,
    wait: bool,
    format: Option<String>,
) -> CliResult {
    let pods = Pods::new(&ctx.data_dir());
    let mut pod = pods.find(&uuid_arg(uuid, file)?)?;
    if wait {
        // The pod's lock is free once its init is gone.
        drop(pods.lock(&pod, true)?);
        pod = pods.find(&pod.uuid)?;
    }
    if let Some(format) = format {
        let value = pod_json(&pod);
        crate::output::print_json(&value, format == "json-pretty")?;
        return Ok(());
    }
    println!("state={}", pod.state.as_str());
    if let Some(created) = pod.created() {
        println!("created={}", full_time(ns(Some(created))));
    }
    if let Some(started) = pod.started() {
        println!("started={}", full_time(ns(Some(started))));
    }
    if let Some(networks) = rkt_runner::network::describe(&pod.dir) {
        println!("networks={networks}");
    }
    if pod.state == PodState::Running {
        if let Some(pid) = pod.pid() {
            println!("pid={pid}");
        }
    }
    let exited = matches!(pod.state, PodState::Exited | PodState::ExitedGarbage | PodState::ExitedDeleting);
    println!("exited={exited}");
    if pod.state != PodState::Running {
        for (app, code) in pod.app_statuses() {
            println!("app-{app}={code}");
        }
    }
    Ok(())
}

pub fn list(ctx: &Context, full: bool, no_legend: bool, format: Option<String>) -> CliResult {
    let pods = Pods::new(&ctx.data_dir()).list()?;
    if let Some(format) = format {
        let value: Vec<serde_json::Value> = pods.iter().map(pod_json).collect();
        crate::output::print_json(&value, format == "json-pretty")?;
        return Ok(());
    }
    let mut rows = Vec::new();
    if !no_legend {
        let mut header = vec!["UUID", "APP", "IMAGE NAME"];
        if full {
            header.push("IMAGE ID");
        }
        header.extend(["STATE", "CREATED", "STARTED", "NETWORKS"]);
        rows.push(header.into_iter().map(String::from).collect());
    }
    let time = |t: Option<SystemTime>| match t {
        None => String::new(),
        Some(_) if full => full_time(ns(t)),
        Some(_) => human_time(ns(t)),
    };
    for pod in &pods {
        let mut apps = app_images(pod);
        if apps.is_empty() {
            // As rkt: a pod without its manifest yet (embryo, aborted prepare) is a row of dashes.
            apps.push(("-".into(), "-".into(), "-".into()));
        }
        let uuid = if full { pod.uuid.clone() } else { pod.uuid[..8].to_string() };
        let networks = rkt_runner::network::describe(&pod.dir).unwrap_or_default();
        let mut about_pod =
            Some([uuid, pod.state.as_str().to_string(), time(pod.created()), time(pod.started()), networks]);
        for (app, image, id) in apps {
            // As rkt: the pod's own columns on its first app's row only.
            let [uuid, state, created, started, networks] = about_pod.take().unwrap_or_default();
            let mut row = vec![uuid, app, image];
            if full {
                row.push(id.chars().take(19).collect());
            }
            row.extend([state, created, started, networks]);
            rows.push(row);
        }
    }
    print!("{}", tab_table(&rows));
    Ok(())
}

/// Deletes a pod that nobody holds: its cgroups, then its directory.
fn remove_pod(pods: &Pods, pod: &PodInfo) -> Result<(), CliError> {
    let Some(mut lock) = pods.lock(pod, false)? else {
        return Err(CliError::msg(format!("pod {:?} is in use", pod.uuid)));
    };
    if !pod.dir.starts_with(pods.root().join("garbage")) {
        lock.move_to(pods, "garbage")?;
    }
    rkt_runner::network::teardown(&lock.dir, &pod.uuid);
    PodCgroups::remove(&lock.dir);
    std::fs::remove_dir_all(&lock.dir).map_err(|e| CliError::msg(format!("{}: {e}", lock.dir.display())))?;
    Ok(())
}

pub fn rm(ctx: &Context, uuids: Vec<String>, file: Option<PathBuf>) -> CliResult {
    require_root()?;
    let pods = Pods::new(&ctx.data_dir());
    let mut uuids = uuids;
    if let Some(f) = file {
        uuids.push(uuid_arg(None, Some(f))?);
    }
    if uuids.is_empty() {
        return Err(CliError::msg("UUID cannot be empty"));
    }
    let mut failed = 0;
    for uuid in &uuids {
        let result = pods.find(uuid).map_err(CliError::from).and_then(|pod| match pod.state {
            PodState::Running | PodState::Preparing | PodState::Deleting | PodState::ExitedDeleting => {
                Err(CliError::msg(format!("pod {:?} is {} and cannot be removed", pod.uuid, pod.state.as_str())))
            }
            _ => remove_pod(&pods, &pod).map(|()| pod.uuid),
        });
        match result {
            Ok(uuid) => println!("{uuid:?}"),
            Err(e) => {
                eprintln!("rm: {}", e.message.unwrap_or_default());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::msg(format!("{failed} pod(s) could not be removed")));
    }
    Ok(())
}

pub fn gc(ctx: &Context, grace: Duration, expire_prepared: Duration, mark_only: bool) -> CliResult {
    require_root()?;
    let pods = Pods::new(&ctx.data_dir());
    let now = SystemTime::now();
    for pod in pods.list()? {
        let target = match pod.state {
            PodState::Exited => Some("exited-garbage"),
            PodState::AbortedPrepare => Some("garbage"),
            PodState::Prepared
                if !mark_only
                    && pod.created().is_some_and(|c| now.duration_since(c).unwrap_or_default() > expire_prepared) =>
            {
                Some("garbage")
            }
            _ => None,
        };
        if let (Some(target), Some(mut lock)) = (target, pods.lock(&pod, false)?) {
            eprintln!("gc: moving pod {:?} to garbage", pod.uuid);
            lock.move_to(&pods, target)?;
        }
    }
    if mark_only {
        return Ok(());
    }
    for pod in pods.list()? {
        let marked = std::fs::metadata(&pod.dir).map(|m| {
            let secs = std::os::unix::fs::MetadataExt::ctime(&m);
            UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
        });
        match pod.state {
            PodState::ExitedGarbage if marked.is_ok_and(|m| now.duration_since(m).unwrap_or_default() < grace) => {
                eprintln!(
                    "gc: pod {:?} not removed: still within grace period ({})",
                    pod.uuid,
                    crate::output::human_duration(grace)
                );
            }
            PodState::ExitedGarbage | PodState::Garbage => {
                eprintln!("gc: Garbage collecting pod {:?}", pod.uuid);
                if let Err(e) = remove_pod(&pods, &pod) {
                    eprintln!("gc: {}", e.message.unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn cat_manifest(ctx: &Context, uuid: Option<String>, file: Option<PathBuf>, pretty: bool) -> CliResult {
    let pod = Pods::new(&ctx.data_dir()).find(&uuid_arg(uuid, file)?)?;
    let value: serde_json::Value = serde_json::from_slice(
        &std::fs::read(pod.dir.join("pod"))
            .map_err(|e| CliError::msg(format!("pod {:?} has no manifest: {e}", pod.uuid)))?,
    )?;
    crate::output::print_json(&value, pretty)?;
    Ok(())
}

pub fn stop(ctx: &Context, uuids: Vec<String>, file: Option<PathBuf>, force: bool) -> CliResult {
    let pods = Pods::new(&ctx.data_dir());
    let mut uuids = uuids;
    if let Some(f) = file {
        uuids.push(uuid_arg(None, Some(f))?);
    }
    let mut failed = 0;
    for uuid in &uuids {
        let pod = match pods.find(uuid) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("stop: {e}");
                failed += 1;
                continue;
            }
        };
        if pod.state != PodState::Running {
            eprintln!("stop: pod {:?} is already stopped", pod.uuid);
            failed += 1;
            continue;
        }
        let sig = if force { nix::sys::signal::Signal::SIGKILL } else { nix::sys::signal::Signal::SIGTERM };
        match pod.pid() {
            Some(pid) if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok() => {
                println!("{:?}", pod.uuid)
            }
            _ => {
                eprintln!("stop: cannot signal pod {:?}", pod.uuid);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::msg(format!("{failed} pod(s) could not be stopped")));
    }
    Ok(())
}

pub fn enter(ctx: &Context, app: Option<String>, uuid: String, command: Vec<String>) -> CliResult {
    require_root()?;
    let pod = Pods::new(&ctx.data_dir()).find(&uuid)?;
    if pod.state != PodState::Running {
        return Err(CliError::msg(format!("pod {:?} is not running", pod.uuid)));
    }
    let spec = spec_of(&pod).ok_or_else(|| CliError::msg("the pod has no runtime.json"))?;
    let app_spec = match app {
        Some(name) => spec
            .apps
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| CliError::msg(format!("no app {name:?} in the pod")))?,
        None if spec.apps.len() == 1 => &spec.apps[0],
        None => return Err(CliError::msg("the pod has several apps: choose one with --app")),
    };
    let pid =
        pod.app_pid(&app_spec.name).ok_or_else(|| CliError::msg(format!("app {:?} is not running", app_spec.name)))?;
    let command = if command.is_empty() { vec!["/bin/bash".to_string()] } else { command };
    match rkt_runner::enter::enter(pid, app_spec, &command)? {
        0 => Ok(()),
        code => Err(CliError::exit(code)),
    }
}
