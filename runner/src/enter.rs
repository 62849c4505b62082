//! `rkt enter`: a command in a running app's namespaces, cgroups, credentials, capabilities and
//! no_new_privs, so that it is never stronger than the app (rkt's CVE-2019-10144 and kin).

use std::io;
use std::os::fd::OwnedFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::init::app::{become_app, exec_with_app_env};
use crate::spec::AppSpec;

fn wait_status(pid: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 254,
        }
    }
}

/// Runs `command` inside the app whose host PID is `app_pid`; returns its exit status.
pub fn enter(app_pid: i32, app: &AppSpec, command: &[String]) -> io::Result<i32> {
    let namespaces: Vec<(OwnedFd, CloneFlags)> = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ]
    .into_iter()
    .map(|(name, flag)| {
        let path = format!("/proc/{app_pid}/ns/{name}");
        nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(|fd| (fd, flag))
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{path}: {e}")))
    })
    .collect::<io::Result<_>>()?;
    let cgroups: Vec<OwnedFd> =
        app.cgroups.iter().map(|p| crate::init::app::open_cgroup_procs(p)).collect::<io::Result<_>>()?;
    // A child of its own: setns into a mount namespace needs a single-threaded process.
    // SAFETY: the child only makes system calls and then execs or exits.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(wait_status(child)),
        ForkResult::Child => {
            let code = match join_and_run(&namespaces, &cgroups, app, command) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("enter: {e}");
                    254
                }
            };
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) }
        }
    }
}

fn join_and_run(
    namespaces: &[(OwnedFd, CloneFlags)],
    cgroups: &[OwnedFd],
    app: &AppSpec,
    command: &[String],
) -> io::Result<i32> {
    for fd in cgroups {
        nix::unistd::write(fd, b"0")?;
    }
    for (fd, flag) in namespaces {
        setns(fd, *flag)?;
    }
    // Entering the PID namespace applies to children: one more fork.
    // SAFETY: single-threaded here.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(wait_status(child)),
        ForkResult::Child => {
            let err = (|| -> io::Result<crate::init::app::Never> {
                nix::unistd::chdir(app.working_dir.as_str()).or_else(|_| nix::unistd::chdir("/"))?;
                become_app(app)?;
                exec_with_app_env(app, command)
            })();
            let Err(e) = err;
            eprintln!("enter: {e}");
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(254) }
        }
    }
}
