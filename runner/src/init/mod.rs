//! The pod's init: PID 1 of the pod. It sets the pod up, starts the apps, reaps every child,
//! passes SIGTERM and SIGINT on to the apps, records each app's exit status, and exits with
//! rkt's status for the pod: the first failing app's, else 0.

pub(crate) mod app;
pub mod mounts;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{openat, OFlag};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::spec::{NetMode, PodPaths, PodSpec};

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Entry point of the hidden `__pod-init` subcommand. Returns the process exit status.
pub fn main(args: &[String]) -> i32 {
    let [pod_dir, go_fd, _lock_fd] = args else {
        eprintln!("rkt: pod init: bad arguments");
        return 254;
    };
    let Ok(go_fd) = go_fd.parse::<i32>() else { return 254 };
    // SAFETY: the fd number was handed to this process, open, by rkt run.
    let mut go = File::from(unsafe { crate::launch::owned_fd(go_fd) });
    let mut byte = [0u8; 1];
    if !matches!(go.read(&mut byte), Ok(1)) {
        // rkt run went away before the pod was ready.
        return 254;
    }
    drop(go);
    match run(Path::new(pod_dir)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rkt: pod init: {e}");
            254
        }
    }
}

fn run(pod_dir: &Path) -> io::Result<i32> {
    let paths = PodPaths(pod_dir);
    let spec: PodSpec = serde_json::from_slice(&std::fs::read(paths.runtime_spec())?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("runtime.json: {e}")))?;
    mounts::make_mounts_private()?;
    nix::unistd::sethostname(&spec.hostname)?;
    if spec.net != NetMode::Host {
        mounts::loopback_up()?;
    }
    let stage1 = paths.stage1_root();
    mounts::mount_stage1_root(&stage1)?;
    std::fs::create_dir_all(paths.status_dir())?;
    let status_dir =
        nix::fcntl::open(&paths.status_dir(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let console = if spec.interactive && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        std::fs::read_link("/proc/self/fd/0").ok()
    } else {
        None
    };
    let mut cgroups: Vec<Vec<OwnedFd>> = Vec::new();
    for app in &spec.apps {
        let root = stage1.join(PodPaths::app_root_in_stage1(&app.name));
        mounts::mount_app_root(&root, &app.lower, &paths.upper(&app.name), &paths.work(&app.name))?;
        mounts::prepare_app(&root, pod_dir, &spec, app, console.as_deref())?;
        if app.read_only_rootfs {
            mounts::read_only_root(&root)?;
        }
        cgroups.push(app.cgroups.iter().map(|p| app::open_cgroup_procs(p)).collect::<io::Result<_>>()?);
    }
    // The init leaves the host's root too: nothing of it stays reachable from the pod.
    mounts::pivot_into(&stage1)?;
    // Not dumpable: no process of the pod may open this one's /proc entries (exe, root, fds).
    nix::sys::prctl::set_dumpable(false)?;
    let action = SigAction::new(SigHandler::Handler(remember), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            sigaction(sig, &action)?;
        }
    }
    let mut running: Vec<(Pid, String)> = Vec::new();
    for (app, cg) in spec.apps.iter().zip(&cgroups) {
        let root = PathBuf::from("/").join(PodPaths::app_root_in_stage1(&app.name));
        // SAFETY: this process is single-threaded.
        match unsafe { fork() }? {
            ForkResult::Child => app::exec_app(app, &root, cg, spec.interactive),
            ForkResult::Parent { child } => {
                // The PID in the pod's namespace, which `rkt enter` maps back to the host's.
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let file = openat(
                    status_dir.as_fd(),
                    format!("{}.pid", app.name).as_str(),
                    flags,
                    Mode::from_bits_truncate(0o644),
                )?;
                File::from(file).write_all(child.to_string().as_bytes())?;
                running.push((child, app.name.clone()))
            }
        }
    }
    drop(cgroups);
    reap(running, status_dir)
}

fn record(status_dir: &OwnedFd, app: &str, code: i32) -> io::Result<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(status_dir.as_fd(), app, flags, Mode::from_bits_truncate(0o644))?);
    file.write_all(code.to_string().as_bytes())
}

/// Waits for every child. When an app fails, the others are stopped and the pod's status is
/// the failed app's; an app stopped that way does not count as a failure.
fn reap(mut running: Vec<(Pid, String)>, status_dir: OwnedFd) -> io::Result<i32> {
    let mut pod_status = 0;
    let mut stopping = false;
    while !running.is_empty() {
        let status = match waitpid(None::<Pid>, None) {
            Ok(s) => s,
            Err(nix::errno::Errno::EINTR) => {
                let sig = PENDING.swap(0, Ordering::SeqCst);
                if let Ok(sig) = Signal::try_from(sig) {
                    for (pid, _) in &running {
                        let _ = kill(*pid, sig);
                    }
                }
                continue;
            }
            Err(nix::errno::Errno::ECHILD) => break,
            Err(e) => return Err(e.into()),
        };
        let (pid, code) = match status {
            WaitStatus::Exited(pid, code) => (pid, code),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32),
            _ => continue,
        };
        let Some(index) = running.iter().position(|(p, _)| *p == pid) else { continue };
        let (_, name) = running.remove(index);
        record(&status_dir, &name, code)?;
        if code != 0 && !stopping {
            pod_status = code;
            stopping = true;
            for (pid, _) in &running {
                let _ = kill(*pid, Signal::SIGTERM);
            }
        }
    }
    Ok(pod_status)
}
