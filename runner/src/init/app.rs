//! The last steps of an app's process, between fork and exec: its own root, its credentials,
//! its capabilities, no new privileges, and no file descriptor but 0, 1 and 2.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::mounts::pivot_into;
use crate::spec::AppSpec;

/// The capability header and data for `capset` (version 3: two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

pub(crate) fn drop_bounding_set(keep: &[u32]) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // Past the last capability this kernel knows.
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    Ok(())
}

pub(crate) fn set_capabilities(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for cap in keep {
        let (word, bit) = ((cap / 32) as usize, cap % 32);
        data[word].effective |= 1 << bit;
        data[word].permitted |= 1 << bit;
    }
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    // SAFETY: header and two data words laid out as the kernel expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Finds `program` as execvp would, in the app's PATH.
pub(crate) fn resolve_program(program: &str, env: &[(String, String)]) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(crate::plan::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{program}");
        if nix::unistd::access(candidate.as_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
            return candidate;
        }
    }
    program.to_string()
}

/// Runs in the forked child: never returns.
pub fn exec_app(app: &AppSpec, root_in_stage1: &Path, cgroup_procs: &[OwnedFd], interactive: bool) -> ! {
    let err = match setup_and_exec(app, root_in_stage1, cgroup_procs, interactive) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("rkt: app {}: {err}", app.name);
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(254) }
}

pub(crate) enum Never {}

fn setup_and_exec(app: &AppSpec, root: &Path, cgroup_procs: &[OwnedFd], interactive: bool) -> io::Result<Never> {
    for fd in cgroup_procs {
        nix::unistd::write(fd, b"0")
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("joining cgroup: {e}")))?;
    }
    // Each app pivots into its own root, which takes a mount namespace of its own.
    unshare(CloneFlags::CLONE_NEWNS)?;
    pivot_into(root)?;
    nix::unistd::chdir(app.working_dir.as_str()).map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("working directory {}: {e}", app.working_dir))
    })?;
    if !interactive {
        let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
        nix::unistd::dup2_stdin(&null)?;
    }
    become_app(app)?;
    exec_with_app_env(app, &app.exec)
}

/// The app's groups, user, capabilities and no_new_privs, in the order that keeps each step
/// possible: the bounding set is cut while CAP_SETPCAP is still held, the user changes last.
pub(crate) fn become_app(app: &AppSpec) -> io::Result<()> {
    let mut groups: Vec<Gid> = app.supplementary_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    if groups.is_empty() {
        groups.push(Gid::from_raw(app.gid));
    }
    setgroups(&groups)?;
    setresgid(Gid::from_raw(app.gid), Gid::from_raw(app.gid), Gid::from_raw(app.gid))?;
    drop_bounding_set(&app.capabilities)?;
    setresuid(Uid::from_raw(app.uid), Uid::from_raw(app.uid), Uid::from_raw(app.uid))?;
    if app.uid == 0 {
        set_capabilities(&app.capabilities)?;
    }
    nix::sys::prctl::set_no_new_privs()?;
    Ok(())
}

/// Executes `command` with the app's environment, every fd but 0, 1 and 2 closed.
pub(crate) fn exec_with_app_env(app: &AppSpec, command: &[String]) -> io::Result<Never> {
    let program = resolve_program(&command[0], &app.env);
    let cstr = |s: &str| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"));
    let path = cstr(&program)?;
    let argv: Vec<CString> = command.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    let envp: Vec<CString> = app.env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect::<io::Result<_>>()?;
    crate::limits::restore_open_files(crate::limits::started_with());
    // Nothing of rkt's, the pod's or the host's stays open in the app.
    // SAFETY: closes every fd from 3 up; nothing here uses them afterwards.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    if err == nix::errno::Errno::ENOENT && !program.contains('/') {
        let path = app.env.iter().find(|(k, _)| k == "PATH").map_or(crate::plan::DEFAULT_PATH, |(_, v)| v.as_str());
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{program:?} is not in the app's PATH ({path})")));
    }
    Err(io::Error::new(io::Error::from(err).kind(), format!("exec {program}: {err}")))
}

/// The fd of a cgroup.procs file, opened before the init leaves the host's root.
pub fn open_cgroup_procs(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}
