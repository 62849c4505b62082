//! From images and flags to a `PodSpec`: users and groups looked up in the image's own files,
//! rkt's environment precedence, volumes, capabilities and resources.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use rkt_store::appc::ident::sanitize_ac_name;
use rkt_store::appc::ImageManifest;
use rkt_store::tree_writer::open_dir_at;

use crate::caps;
use crate::spec::{AppSpec, BindMount, NetMode, PodPaths, PodSpec};

/// What the user asked of one app (`rkt run IMAGE [per-app flags] [-- args]`).
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    pub image: String,
    pub exec: Option<String>,
    pub args: Option<Vec<String>>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub supplementary_gids: Vec<u32>,
    pub working_dir: Option<String>,
    pub environment: Vec<(String, String)>,
    pub mounts: Vec<(String, String)>,
    pub caps_retain: Option<Vec<String>>,
    pub caps_remove: Vec<String>,
    pub memory: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub readonly_rootfs: bool,
}

#[derive(Debug, Clone)]
pub struct VolumeOption {
    pub name: String,
    /// `Some(path)` for a host volume, `None` for an empty one.
    pub source: Option<PathBuf>,
    pub read_only: bool,
    pub recursive: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the user asked of the pod; by default, what `rkt run` does unasked (the default
/// network, nothing else).
#[derive(Debug, Clone, Default)]
pub struct PodOptions {
    pub net: NetMode,
    pub hostname: Option<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub hosts_entries: Vec<String>,
    pub inherit_env: bool,
    pub set_env: Vec<(String, String)>,
    pub set_env_file: Option<PathBuf>,
    pub volumes: Vec<VolumeOption>,
    pub interactive: bool,
    /// `--port=NAME:[HOSTIP:]HOSTPORT`: (port name, host IP, host port).
    pub ports: Vec<(String, Option<String>, u16)>,
}

/// An app whose image is in the store and rendered.
pub struct ResolvedApp {
    pub options: AppOptions,
    pub manifest: ImageManifest,
    pub rootfs: PathBuf,
}

/// The resource limits of one app, for the cgroup that `rkt run` makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub memory: Option<u64>,
    pub cpu_millis: Option<u64>,
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Reads `rel` (such as `etc/passwd`) in the image's root filesystem without following any
/// symlink, so that an image cannot make rkt read a host file.
fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    let root_fd =
        nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir_fd = open_dir_at(root_fd.as_fd(), dir.as_bytes(), false).ok()?;
    let fd = openat(&dir_fd, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ok()?;
    Some(text)
}

/// A passwd or group entry's fields, by name.
fn lookup(root: &Path, file: &str, name: &str) -> Option<Vec<String>> {
    let text = read_in_root(root, file)?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.first().map(String::as_str) == Some(name))
}

/// A user as appc allows it: a number, a name from the image's `/etc/passwd`, or `/path` (the
/// owner of that file in the image).
pub fn resolve_user(root: &Path, user: &str) -> Result<u32, String> {
    if let Ok(n) = user.parse() {
        return Ok(n);
    }
    if let Some(path) = user.strip_prefix('/') {
        return owner_in_root(root, path).map(|(u, _)| u);
    }
    let entry = lookup(root, "etc/passwd", user)
        .ok_or_else(|| format!("user {user:?} not found in the image's /etc/passwd"))?;
    entry.get(2).and_then(|u| u.parse().ok()).ok_or_else(|| format!("bad /etc/passwd entry for {user:?}"))
}

pub fn resolve_group(root: &Path, group: &str) -> Result<u32, String> {
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    if let Some(path) = group.strip_prefix('/') {
        return owner_in_root(root, path).map(|(_, g)| g);
    }
    if let Some(entry) = lookup(root, "etc/group", group) {
        return entry.get(2).and_then(|g| g.parse().ok()).ok_or_else(|| format!("bad /etc/group entry for {group:?}"));
    }
    // Docker's `User: name` names no group; docker2aci makes it the user's name, which here means
    // that user's primary group.
    let user = lookup(root, "etc/passwd", group)
        .ok_or_else(|| format!("group {group:?} not found in the image's /etc/group"))?;
    user.get(3).and_then(|g| g.parse().ok()).ok_or_else(|| format!("bad /etc/passwd entry for {group:?}"))
}

fn owner_in_root(root: &Path, rel: &str) -> Result<(u32, u32), String> {
    let root_fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| e.to_string())?;
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir_fd = open_dir_at(root_fd.as_fd(), dir.as_bytes(), false).map_err(|e| format!("/{rel}: {e}"))?;
    let st = nix::sys::stat::fstatat(&dir_fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| format!("/{rel}: {e}"))?;
    Ok((st.st_uid, st.st_gid))
}

/// Parses `K=V` lines; `#` and `;` start comments, blank lines are skipped (rkt's
/// `--set-env-file`).
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("environment line {line:?} is not NAME=VALUE"))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A size as rkt's `--memory` takes it: `512M`, `1G`, `1Gi`, or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("bad size {s:?} (examples: 512M, 1G, 1Gi)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// CPU as rkt's `--cpu` takes it: `500m` (millicores) or `2` (cores).
pub fn parse_cpu(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().map_err(|_| format!("bad cpu amount {s:?}"));
    }
    s.parse::<u64>().map(|c| c * 1000).map_err(|_| format!("bad cpu amount {s:?} (examples: 500m, 2)"))
}

fn isolator_value<'a>(manifest: &'a ImageManifest, name: &str) -> Option<&'a serde_json::Value> {
    manifest.app.as_ref()?.isolators.iter().find(|i| i.name == name).map(|i| &i.value)
}

/// Builds the pod's spec. `host_env` is what `--inherit-env` passes on.
pub fn build(
    uuid: &str,
    apps: &[ResolvedApp],
    pod: &PodOptions,
    host_env: &[(String, String)],
) -> Result<PodSpec, String> {
    if apps.is_empty() {
        return Err("pod must contain at least one application".into());
    }
    let set_env_file = match &pod.set_env_file {
        Some(path) => parse_env_file(&std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)?,
        None => Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    let mut specs = Vec::new();
    for app in apps {
        let image_app = app.manifest.app.clone().unwrap_or_default();
        let name = match &app.options.name {
            Some(n) => n.clone(),
            None => sanitize_ac_name(app.manifest.name.rsplit('/').next().unwrap_or(&app.manifest.name)),
        };
        if !rkt_store::appc::ident::is_ac_name(&name) {
            return Err(format!("invalid app name {name:?}"));
        }
        if names.contains(&name) {
            return Err(format!("multiple apps with name {name}"));
        }
        names.push(name.clone());

        let mut exec = image_app.exec.clone();
        if let Some(e) = &app.options.exec {
            exec = vec![e.clone()];
            exec.extend(app.options.args.clone().unwrap_or_default());
        } else if let Some(args) = &app.options.args {
            exec.truncate(1);
            exec.extend(args.clone());
        }
        if exec.is_empty() {
            return Err(format!("image {} has no app to run: give one with --exec", app.manifest.name));
        }

        let user = app.options.user.clone().unwrap_or_else(|| {
            if image_app.user.is_empty() {
                "0".into()
            } else {
                image_app.user.clone()
            }
        });
        let group = app.options.group.clone().unwrap_or_else(|| {
            if image_app.group.is_empty() {
                "0".into()
            } else {
                image_app.group.clone()
            }
        });
        let uid = resolve_user(&app.rootfs, &user)?;
        let gid = resolve_group(&app.rootfs, &group)?;
        let mut supplementary: Vec<u32> = image_app.supplementary_gids.clone();
        supplementary.extend(&app.options.supplementary_gids);

        // Later sources win: host (--inherit-env) < image < --set-env-file < --set-env <
        // --environment; the first place a name appears keeps its position.
        let mut env: Vec<(String, String)> = Vec::new();
        let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        };
        if pod.inherit_env {
            host_env.iter().for_each(|(k, v)| set(&mut env, k, v));
        }
        image_app.environment.iter().for_each(|nv| set(&mut env, &nv.name, &nv.value));
        set_env_file.iter().for_each(|(k, v)| set(&mut env, k, v));
        pod.set_env.iter().for_each(|(k, v)| set(&mut env, k, v));
        app.options.environment.iter().for_each(|(k, v)| set(&mut env, k, v));
        set(&mut env, "AC_APP_NAME", &name);
        let passwd = if uid == 0 { None } else { read_in_root(&app.rootfs, "etc/passwd") };
        let account = passwd.as_deref().and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 7 && f[2].parse() == Ok(uid))
                .map(|f| (f[0].to_string(), f[5].to_string()))
        });
        let (user_name, home) = match (uid, account) {
            (0, _) => ("root".to_string(), "/root".to_string()),
            (_, Some((n, h))) => (n, h),
            (u, None) => (u.to_string(), "/".to_string()),
        };
        for (k, v) in [
            ("PATH", DEFAULT_PATH),
            ("SHELL", "/bin/sh"),
            ("USER", &user_name),
            ("LOGNAME", &user_name),
            ("HOME", &home),
        ] {
            if !env.iter().any(|(name, _)| name == k) {
                set(&mut env, k, v);
            }
        }

        let mut mounts = Vec::new();
        for mp in &image_app.mount_points {
            let target = app.options.mounts.iter().find(|(v, _)| *v == mp.name).map(|(_, t)| t.clone());
            if target.is_some() {
                continue;
            }
            mounts.push(if pod.volumes.iter().any(|v| v.name == mp.name) {
                volume_mount(pod, &mp.name, &mp.path, mp.read_only)?
            } else {
                implicit_volume(&format!("{name}-{}", mp.name), &mp.path, mp.read_only)?
            });
        }
        for (volume, target) in &app.options.mounts {
            mounts.push(volume_mount(pod, volume, target, false)?);
        }

        let retain_iso: Option<Vec<String>> = isolator_value(&app.manifest, "os/linux/capabilities-retain-set")
            .and_then(|v| v.get("set"))
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let remove_iso: Vec<String> = isolator_value(&app.manifest, "os/linux/capabilities-remove-set")
            .and_then(|v| v.get("set"))
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let capabilities = if app.options.caps_retain.is_some() || !app.options.caps_remove.is_empty() {
            caps::app_set(app.options.caps_retain.as_deref(), &app.options.caps_remove)?
        } else {
            caps::app_set(retain_iso.as_deref(), &remove_iso)?
        };

        let iso_str = |name: &str| {
            isolator_value(&app.manifest, name)
                .and_then(|v| v.get("limit"))
                .and_then(|l| l.as_str())
                .map(str::to_string)
        };
        let memory = match (app.options.memory, iso_str("resource/memory")) {
            (Some(m), _) => Some(m),
            (None, Some(s)) => Some(parse_size(&s)?),
            _ => None,
        };
        let cpu_millis = match (app.options.cpu_millis, iso_str("resource/cpu")) {
            (Some(c), _) => Some(c),
            (None, Some(s)) => Some(parse_cpu(&s)?),
            _ => None,
        };

        let working_dir = app.options.working_dir.clone().unwrap_or_else(|| {
            if image_app.working_directory.is_empty() {
                "/".into()
            } else {
                image_app.working_directory.clone()
            }
        });
        if !working_dir.starts_with('/') {
            return Err(format!("working directory {working_dir:?} must be absolute"));
        }
        specs.push(AppSpec {
            name,
            lower: app.rootfs.clone(),
            exec,
            env,
            uid,
            gid,
            supplementary_gids: supplementary,
            working_dir,
            mounts,
            capabilities,
            read_only_rootfs: app.options.readonly_rootfs,
            limits: Resources { memory, cpu_millis },
            cgroups: Vec::new(),
        });
    }
    let hostname = pod.hostname.clone().unwrap_or_else(|| format!("rkt-{uuid}"));
    let (hosts, resolv_conf) = network_files(&hostname, pod)?;
    Ok(PodSpec {
        uuid: uuid.to_string(),
        hosts,
        resolv_conf,
        hostname,
        net: pod.net,
        interactive: pod.interactive,
        ports: port_mappings(apps, &pod.ports)?,
        apps: specs,
    })
}

/// Maps `--port` names to the ports the images declare.
fn port_mappings(
    apps: &[ResolvedApp],
    ports: &[(String, Option<String>, u16)],
) -> Result<Vec<crate::cni::PortMapping>, String> {
    ports
        .iter()
        .map(|(name, host_ip, host_port)| {
            let declared = apps
                .iter()
                .filter_map(|a| a.manifest.app.as_ref())
                .flat_map(|a| a.ports.iter())
                .find(|p| p.name == *name)
                .ok_or_else(|| format!("port name {name:?} is not declared by any app of the pod"))?;
            Ok(crate::cni::PortMapping {
                host_ip: host_ip.clone(),
                host_port: *host_port,
                pod_port: declared.port as u16,
                protocol: declared.protocol.clone(),
            })
        })
        .collect()
}

/// A place for a volume: absolute, within the app's root, and not the root itself (an image's
/// `VOLUME /`), refused here rather than when the pod is already starting.
fn mount_target(target: &str) -> Result<(), String> {
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if !target.starts_with('/') {
        Err(format!("mount target {target:?} must be absolute"))
    } else if parts.contains(&"..") {
        Err(format!("mount target {target:?} climbs out with .."))
    } else if parts.is_empty() {
        Err(format!("mount target {target:?} would cover the app's whole root"))
    } else {
        Ok(())
    }
}

/// A volume given with `--volume`, mounted at `target`; as in rkt, a `--mount` of a volume
/// not given is refused rather than made empty.
fn volume_mount(pod: &PodOptions, volume: &str, target: &str, read_only: bool) -> Result<BindMount, String> {
    mount_target(target)?;
    let v = pod.volumes.iter().find(|v| v.name == volume).ok_or_else(|| {
        format!("no volume named {volume:?} for {target}: give one with --volume={volume},kind=host,source=PATH or kind=empty")
    })?;
    Ok(BindMount {
        source: v.source.clone().unwrap_or_else(|| PodPaths::volume_in_pod(volume)),
        target: target.to_string(),
        read_only: v.read_only || read_only,
        recursive: v.recursive,
        implicit: false,
    })
}

/// appc: a mount point without a volume gets an empty volume of its own, named (as rkt names
/// it) after the app and the mount point.
fn implicit_volume(name: &str, target: &str, read_only: bool) -> Result<BindMount, String> {
    mount_target(target)?;
    Ok(BindMount {
        source: PodPaths::volume_in_pod(name),
        target: target.to_string(),
        read_only,
        recursive: false,
        implicit: true,
    })
}

/// The contents of `/etc/hosts` and `/etc/resolv.conf` for the pod's network options.
pub fn network_files(hostname: &str, pod: &PodOptions) -> Result<(String, Option<String>), String> {
    Ok((hosts_file(hostname, &pod.hosts_entries)?, resolv_conf(pod)?))
}

fn hosts_file(hostname: &str, entries: &[String]) -> Result<String, String> {
    if entries.iter().any(|e| e == "host") {
        return std::fs::read_to_string("/etc/hosts").map_err(|e| format!("/etc/hosts: {e}"));
    }
    let mut out = format!(
        "127.0.0.1\tlocalhost localhost.localdomain {hostname}\n::1\tlocalhost localhost.localdomain {hostname}\n"
    );
    for e in entries {
        let (ip, host) = e.split_once('=').ok_or_else(|| format!("--hosts-entry {e:?} is not IP=HOSTNAME"))?;
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("--hosts-entry {e:?}: {ip:?} is not an IP address"));
        }
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    Ok(out)
}

fn resolv_conf(pod: &PodOptions) -> Result<Option<String>, String> {
    if pod.dns.iter().any(|d| d == "host") {
        return std::fs::read_to_string("/etc/resolv.conf").map(Some).map_err(|e| format!("/etc/resolv.conf: {e}"));
    }
    if pod.dns.iter().any(|d| d == "none") {
        return Ok(Some(String::new()));
    }
    if pod.dns.is_empty() {
        // The host's, for the host's network; the image's own otherwise.
        return Ok(if pod.net == NetMode::Host { std::fs::read_to_string("/etc/resolv.conf").ok() } else { None });
    }
    let mut out = String::new();
    for d in &pod.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("--dns {d:?} is not an IP address"));
        }
        out.push_str(&format!("nameserver {d}\n"));
    }
    if !pod.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", pod.dns_search.join(" ")));
    }
    Ok(Some(out))
}

/// Path bytes, for the fd-walking helpers.
pub fn rel_bytes(path: &str) -> &[u8] {
    std::ffi::OsStr::new(path.trim_start_matches('/')).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpu() {
        assert_eq!(parse_size("512M").unwrap(), 512_000_000);
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert!(parse_size("1X").is_err());
        assert_eq!(parse_cpu("500m").unwrap(), 500);
        assert_eq!(parse_cpu("2").unwrap(), 2000);
    }

    #[test]
    fn mounts_need_their_volume_and_mount_points_get_one_of_their_own() {
        let mut pod = PodOptions::default();
        let err = volume_mount(&pod, "data", "/data", false).unwrap_err();
        assert!(err.contains("no volume named \"data\" for /data"), "{err}");
        pod.volumes.push(VolumeOption {
            name: "data".into(),
            source: None,
            read_only: false,
            recursive: false,
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
        assert_eq!(volume_mount(&pod, "data", "/data", true).unwrap().source, PodPaths::volume_in_pod("data"));
        let implicit = implicit_volume("app-data", "/data", false).unwrap();
        assert!(implicit.implicit && implicit.source == PodPaths::volume_in_pod("app-data"));
        for (bad, why) in [("data", "must be absolute"), ("/a/../../etc", "climbs out"), ("/./", "whole root")] {
            let err = implicit_volume("app-data", bad, false).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn env_files() {
        let parsed = parse_env_file("# c\n; c\n\nA=1\nB=x=y\n").unwrap();
        assert_eq!(parsed, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert!(parse_env_file("novalue").is_err());
    }

    #[test]
    fn users_from_the_image_files_never_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:33:44::/srv:/bin/false\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nwww:x:55:\n").unwrap();
        assert_eq!(resolve_user(root, "web").unwrap(), 33);
        assert_eq!(resolve_user(root, "1000").unwrap(), 1000);
        assert_eq!(resolve_group(root, "www").unwrap(), 55);
        assert_eq!(resolve_group(root, "web").unwrap(), 44, "a user's name stands for its primary group");
        assert!(resolve_user(root, "nobody").is_err());
        std::fs::remove_file(root.join("etc/group")).unwrap();
        std::os::unix::fs::symlink("/etc/group", root.join("etc/group")).unwrap();
        assert!(resolve_group(root, "daemon").is_err(), "a symlink to the host's file must not be read");
    }
}
