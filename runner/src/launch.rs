//! Starting a pod from `rkt run`: the pod's init (the `rkt-pod-init` program beside rkt, or rkt
//! itself) is copied into a sealed memfd and executed from there in new namespaces, so that
//! nothing in the pod can reach a host binary through `/proc/<pid>/exe` (runc's CVE-2019-5736).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::spec::NetMode;

/// The hidden subcommand under which the rkt binary runs as a pod's init.
pub const INIT_SUBCOMMAND: &str = "__pod-init";

/// The init program installed beside the rkt binary.
pub const INIT_PROGRAM: &str = "rkt-pod-init";

/// The program to run as init, and the arguments that come before the pod's: the small init
/// program beside this executable, else this executable itself.
fn init_program() -> (std::path::PathBuf, Vec<&'static str>) {
    if let Some(beside) = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(INIT_PROGRAM))) {
        if beside.metadata().is_ok_and(|m| m.is_file()) {
            return (beside, vec![INIT_PROGRAM]);
        }
    }
    ("/proc/self/exe".into(), vec!["rkt", INIT_SUBCOMMAND])
}

/// A read-only, sealed copy of `program`.
fn sealed_copy(program: &Path) -> io::Result<OwnedFd> {
    let fd = memfd_create(c"rkt-pod-init", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut copy = File::from(fd);
    let mut exe = File::open(program)?;
    io::copy(&mut exe, &mut copy)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd this function owns.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(copy))
}

/// A started pod init, waiting for the go-ahead.
pub struct Started {
    pub pid: Pid,
    go: File,
}

/// Clones the pod's init into new mount, PID, UTS and IPC namespaces (and a network namespace
/// unless `net` is the host's). `lock_fd`, the pod's flock, is inherited, so that the pod stays
/// locked while its init lives.
pub fn start(pod_dir: &Path, net: NetMode, lock_fd: RawFd) -> io::Result<Started> {
    let (program, leading) = init_program();
    let exe = sealed_copy(&program)?;
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"));
    let mut argv: Vec<CString> = leading.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
    argv.push(cstr(pod_dir.as_os_str().as_bytes())?);
    argv.push(cstr(go_read.as_raw_fd().to_string().as_bytes())?);
    argv.push(cstr(lock_fd.to_string().as_bytes())?);
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok())
        .collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    if net != NetMode::Host {
        flags |= libc::CLONE_NEWNET;
    }
    let (exe_fd, go_fd) = (exe.as_raw_fd(), go_read.as_raw_fd());
    let nofile = crate::limits::started_with();
    // SAFETY: a fork-like clone (no new stack). Between it and fexecve the child calls only
    // async-signal-safe functions on memory prepared above.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::fcntl(go_fd, libc::F_SETFD, 0);
            libc::fcntl(lock_fd, libc::F_SETFD, 0);
            crate::limits::restore_open_files(nofile);
            libc::fexecve(exe_fd, argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            libc::_exit(254);
        }
    }
    drop(go_read);
    Ok(Started { pid: Pid::from_raw(pid as i32), go: File::from(go_write) })
}

static FORWARD: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: libc::c_int) {
    FORWARD.store(sig, Ordering::SeqCst);
}

impl Started {
    /// Lets the init set the pod up and start the apps.
    pub fn go(mut self) -> io::Result<Running> {
        self.go.write_all(b"1")?;
        Ok(Running { pid: self.pid })
    }
}

pub struct Running {
    pub pid: Pid,
}

impl Running {
    /// Waits for the pod to end, passing SIGINT and SIGTERM on to its init; returns the exit
    /// status of `rkt run`.
    pub fn wait(self) -> io::Result<i32> {
        let action = SigAction::new(SigHandler::Handler(remember_signal), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            sigaction(Signal::SIGINT, &action)?;
            sigaction(Signal::SIGTERM, &action)?;
        }
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => {
                    let sig = FORWARD.swap(0, Ordering::SeqCst);
                    if let Ok(sig) = Signal::try_from(sig) {
                        let _ = kill(self.pid, sig);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Takes ownership of an fd number passed on the command line.
///
/// # Safety
/// `fd` must be an open file descriptor that nothing else owns.
pub unsafe fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: as the caller promises.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
