//! The command line of `rkt run` and `rkt prepare`, parsed by hand: rkt's per-app flags apply
//! to the image before them, and `--` … `---` hold each app's arguments, which clap cannot say.

use std::path::PathBuf;

use rkt_runner::plan::{parse_cpu, parse_size, AppOptions, PodOptions, VolumeOption};
use rkt_runner::spec::NetMode;

use crate::options::InsecureOptions;

#[derive(Debug)]
pub struct RunRequest {
    pub pod: PodOptions,
    pub apps: Vec<AppOptions>,
    /// Per-app `--signature` files, by app index.
    pub signatures: Vec<Option<PathBuf>>,
    pub uuid_file_save: Option<PathBuf>,
    pub pull_policy: String,
    /// Global flags given after the subcommand.
    pub dir: Option<PathBuf>,
    pub insecure: Option<InsecureOptions>,
}

fn bool_value(flag: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("--{flag} takes true or false, not {v:?}")),
    }
}

fn key_values(s: &str) -> Vec<(String, String)> {
    s.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn parse_volume(s: &str) -> Result<VolumeOption, String> {
    let (name, rest) = s
        .split_once(',')
        .ok_or_else(|| format!("--volume {s:?}: expected NAME,kind=host,source=PATH or NAME,kind=empty"))?;
    if !rkt_store::appc::ident::is_ac_name(name) {
        return Err(format!("--volume {s:?}: {name:?} is not a valid volume name"));
    }
    let kv = key_values(rest);
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| get(k).map(|v| v == "true").unwrap_or(false);
    let num = |k: &str, default: u32, radix: u32| -> Result<u32, String> {
        get(k)
            .map(|v| u32::from_str_radix(v, radix).map_err(|_| format!("--volume {s:?}: bad {k} {v:?}")))
            .unwrap_or(Ok(default))
    };
    let source = match get("kind") {
        Some("host") => {
            let source = get("source").ok_or_else(|| format!("--volume {s:?}: a host volume needs source=PATH"))?;
            if !source.starts_with('/') {
                return Err(format!("--volume {s:?}: source must be an absolute path"));
            }
            if std::fs::symlink_metadata(source).is_err() {
                return Err(format!("--volume {s:?}: source {source} does not exist"));
            }
            Some(PathBuf::from(source))
        }
        Some("empty") => None,
        other => return Err(format!("--volume {s:?}: kind must be host or empty, not {other:?}")),
    };
    Ok(VolumeOption {
        name: name.to_string(),
        source,
        read_only: flag("readOnly"),
        recursive: get("recursive").map(|v| v == "true").unwrap_or(true),
        mode: num("mode", 0o755, 8)?,
        uid: num("uid", 0, 10)?,
        gid: num("gid", 0, 10)?,
    })
}

/// `NAME:[HOSTIP:]HOSTPORT`.
pub fn parse_port(s: &str) -> Result<(String, Option<String>, u16), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("--port {s:?}: expected NAME:[HOSTIP:]HOSTPORT");
    let (name, ip, port) = match parts.as_slice() {
        [name, port] => (*name, None, *port),
        [name, ip, port] => (*name, Some(ip.to_string()), *port),
        _ => return Err(bad()),
    };
    if let Some(ip) = &ip {
        ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
    }
    Ok((name.to_string(), ip, port.parse().map_err(|_| bad())?))
}

fn env_pair(flag: &str, v: &str) -> Result<(String, String), String> {
    let (k, val) = v.split_once('=').ok_or_else(|| format!("--{flag} {v:?} is not NAME=VALUE"))?;
    Ok((k.to_string(), val.to_string()))
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Flags that take no value unless written `--flag=value`.
const BOOL_FLAGS: &[&str] =
    &["inherit-env", "interactive", "readonly-rootfs", "debug", "mds-register", "no-overlay", "private-users", "quiet"];

/// `--help` or `-h` before any app's `--` arguments.
pub fn wants_help(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| a == "--help" || a == "-h")
}

/// The help text of `rkt run` and `rkt prepare` after their usage line: the image kinds, the
/// pod flags (`$net` stands for run's network flags) and the app flags.
macro_rules! run_help {
    ($what:literal, $usage:literal, $net:literal) => {
        concat!(
            $what,
            "

Usage: rkt ",
            $usage,
            " [FLAGS] IMAGE [APP FLAGS] [-- APP ARGS... ---] [IMAGE [APP FLAGS] ...]

IMAGE: an image ID (sha512-...), a name (found in the store, else by appc discovery), an ACI
file or https URL, docker://[REGISTRY/]NAME[:TAG|@DIGEST], docker-archive:PATH[:NAME:TAG],
oci:PATH[:REF] or oci-archive:PATH[:REF].

Pod flags:
",
            $net,
            "  --dns=IP[,IP...]|host|none    resolv.conf name servers (host: the host's file)
  --dns-search=DOMAIN[,...]     resolv.conf search domains
  --hosts-entry=IP=HOST|host    /etc/hosts entries (host: the host's file)
  --hostname=NAME               the pod's host name (default: rkt-UUID)
  --volume=NAME,kind=host,source=PATH[,readOnly=true][,recursive=true]
  --volume=NAME,kind=empty[,mode=0755,uid=0,gid=0]
  --inherit-env                 pass rkt's environment on to the apps
  --set-env=K=V                 environment for every app (also --set-env-file=FILE)
  --interactive                 the app's stdin and terminal are rkt's (one app only)
  --uuid-file-save=FILE         write the pod's UUID to FILE
  --pull-policy=POLICY          when to fetch: never, new (the default) or update

App flags (after their image; before any image, for every app):
  --exec=PROGRAM                run PROGRAM instead of the image's app
  --user=UID|NAME, --group=GID|NAME, --supplementary-gids=GID[,...]
  --working-dir=DIR, --environment=K=V, --name=NAME, --readonly-rootfs
  --mount=volume=NAME,target=PATH
  --memory=128M, --cpu=500m     resource limits (cgroups)
  --caps-retain=CAP[,...], --caps-remove=CAP[,...]
  --signature=FILE              the image's detached signature
"
        )
    };
}

/// What `rkt run --help` (and `rkt help run`) print.
pub const RUN_HELP: &str = run_help!(
    "Run image(s) in a pod and return the first failing app's exit status",
    "run",
    "  --net=default|host|none       network: CNI's ptp (default), the host's, or only lo
  --port=NAME:[HOSTIP:]HOSTPORT publish the image's port NAME on the host (default network)
"
);

/// What `rkt prepare --help` (and `rkt help prepare`) print.
pub const PREPARE_HELP: &str =
    run_help!("Prepare a pod to run later with run-prepared; prints its UUID", "prepare", "");

pub fn help(prepare: bool) -> &'static str {
    if prepare {
        PREPARE_HELP
    } else {
        RUN_HELP
    }
}

pub fn parse(args: &[String], prepare: bool) -> Result<RunRequest, String> {
    let mut pod = PodOptions::default();
    let mut req = RunRequest {
        pod: pod.clone(),
        apps: Vec::new(),
        signatures: Vec::new(),
        uuid_file_save: None,
        pull_policy: "new".into(),
        dir: None,
        insecure: None,
    };
    let mut shared = AppOptions::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            let app = req.apps.last_mut().ok_or("arguments after -- need an image before them")?;
            let mut app_args = Vec::new();
            while i < args.len() && args[i] != "---" {
                app_args.push(args[i].clone());
                i += 1;
            }
            i += 1;
            app.args = Some(app_args);
            continue;
        }
        let Some(flag) = arg.strip_prefix("--") else {
            let mut app = shared.clone();
            app.image = arg.clone();
            req.apps.push(app);
            req.signatures.push(None);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let is_bool = BOOL_FLAGS.contains(&name) || (name == "net" && inline.is_none());
        let value = if is_bool {
            inline
        } else {
            match inline {
                Some(v) => Some(v),
                None if i < args.len() => {
                    i += 1;
                    Some(args[i - 1].clone())
                }
                None => return Err(format!("--{name} needs a value")),
            }
        };
        let v = value.clone().unwrap_or_default();
        let app = if req.apps.is_empty() { &mut shared } else { req.apps.last_mut().expect("not empty") };
        match name {
            "net" if prepare => return Err("--net belongs to run-prepared, not prepare".into()),
            "net" => {
                pod.net = match value.as_deref() {
                    None | Some("default") => NetMode::Default,
                    Some("host") => NetMode::Host,
                    Some("none") => NetMode::None,
                    Some(other) => return Err(format!("--net={other}: only host, none and default are available")),
                }
            }
            "dns" => pod.dns.extend(list(&v)),
            "dns-search" => pod.dns_search.extend(list(&v)),
            "hosts-entry" => pod.hosts_entries.push(v),
            "hostname" => pod.hostname = Some(v),
            "port" if prepare => return Err("--port belongs to run-prepared, not prepare".into()),
            "port" => pod.ports.push(parse_port(&v)?),
            "volume" => pod.volumes.push(parse_volume(&v)?),
            "inherit-env" => pod.inherit_env = bool_value(name, value.as_deref())?,
            "set-env" => pod.set_env.push(env_pair(name, &v)?),
            "set-env-file" => pod.set_env_file = Some(PathBuf::from(v)),
            "interactive" => pod.interactive = bool_value(name, value.as_deref())?,
            "uuid-file-save" => req.uuid_file_save = Some(PathBuf::from(v)),
            "pull-policy" => {
                if !matches!(v.as_str(), "never" | "new" | "update") {
                    return Err(format!("--pull-policy must be never, new or update, not {v:?}"));
                }
                req.pull_policy = v
            }
            "mds-register" | "no-overlay" | "quiet" => {}
            "private-users" => return Err("--private-users is not available in this build".into()),
            "dir" => req.dir = Some(PathBuf::from(v)),
            "insecure-options" => req.insecure = Some(InsecureOptions::parse(&v)?),
            "debug" | "system-config" | "local-config" | "user-config" => {}
            "exec" => app.exec = Some(v),
            "user" => app.user = Some(v),
            "group" => app.group = Some(v),
            "supplementary-gids" => {
                app.supplementary_gids = list(&v)
                    .iter()
                    .map(|g| g.parse().map_err(|_| format!("bad gid {g:?}")))
                    .collect::<Result<_, _>>()?
            }
            "working-dir" => app.working_dir = Some(v),
            "environment" => app.environment.push(env_pair(name, &v)?),
            "mount" => {
                let kv = key_values(&v);
                let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, x)| x.clone());
                match (get("volume"), get("target")) {
                    (Some(vol), Some(target)) => app.mounts.push((vol, target)),
                    _ => return Err(format!("--mount {v:?}: expected volume=NAME,target=PATH")),
                }
            }
            "name" => app.name = Some(v),
            "signature" => {
                let idx = req.apps.len().checked_sub(1).ok_or("--signature must follow its image")?;
                req.signatures[idx] = Some(PathBuf::from(v));
            }
            "readonly-rootfs" => app.readonly_rootfs = bool_value(name, value.as_deref())?,
            "memory" => app.memory = Some(parse_size(&v)?),
            "cpu" => app.cpu_millis = Some(parse_cpu(&v)?),
            "caps-retain" | "cap-retain" => app.caps_retain = Some(list(&v)),
            "caps-remove" | "cap-remove" => app.caps_remove.extend(list(&v)),
            "annotation" | "user-annotation" | "user-label" | "cpu-shares" | "oom-score-adj" => {}
            "seccomp" => return Err("--seccomp is not available in this build".into()),
            other => return Err(format!("unknown flag --{other}")),
        }
    }
    if req.apps.is_empty() {
        return Err("at least one image is required".into());
    }
    req.pod = pod;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn help_is_asked_before_the_apps_arguments() {
        assert!(wants_help(&args(&["--help"])) && wants_help(&args(&["--net=host", "img", "-h"])));
        assert!(!wants_help(&args(&["img", "--", "--help", "---"])));
        assert!(help(true).contains("Usage: rkt prepare") && !help(true).contains("--net"));
    }

    #[test]
    fn per_app_flags_follow_their_image() {
        let r = parse(
            &args(&[
                "--net=host",
                "img1",
                "--exec=/bin/echo",
                "--user",
                "1000",
                "--",
                "a",
                "--b",
                "---",
                "img2",
                "--environment=X=1",
                "--memory=64M",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(r.pod.net, NetMode::Host);
        assert_eq!(r.apps.len(), 2);
        assert_eq!(r.apps[0].exec.as_deref(), Some("/bin/echo"));
        assert_eq!(r.apps[0].user.as_deref(), Some("1000"));
        assert_eq!(r.apps[0].args, Some(vec!["a".to_string(), "--b".to_string()]));
        assert_eq!(r.apps[1].environment, vec![("X".to_string(), "1".to_string())]);
        assert_eq!(r.apps[1].memory, Some(64_000_000));
        assert!(parse(&args(&["--bogus", "x"]), false).is_err());
        assert!(parse(&args(&[]), false).is_err());
        assert!(parse(&args(&["--net=host", "x"]), true).is_err());
    }

    #[test]
    fn volumes() {
        let v = parse_volume("data,kind=empty,mode=0700,uid=5").unwrap();
        assert_eq!((v.mode, v.uid, v.source), (0o700, 5, None));
        let v = parse_volume("etc,kind=host,source=/etc,readOnly=true").unwrap();
        assert!(v.read_only);
        assert!(parse_volume("x,kind=host,source=relative").is_err());
        assert!(parse_volume("x,kind=weird").is_err());
    }
}
