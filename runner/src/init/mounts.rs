//! The mounts of a pod, one small step each. Every target inside an app's root is opened from
//! the root's fd one component at a time without following symlinks, and the mount is made
//! onto that fd: an image whose `/dev`, `/proc` or `/etc/hosts` is a symlink cannot send a
//! mount, or a write, anywhere else.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknodat, Mode, SFlag};
use nix::unistd::symlinkat;
use rkt_store::tree_writer::{open_dir_at, remove_entry};

use crate::spec::{AppSpec, BindMount, PodSpec};

const NONE: Option<&str> = None;

fn fd_path(fd: BorrowedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn ctx<T>(what: &str, r: nix::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))
}

fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// A directory inside `root`, made if missing; a symlink or file in its way is replaced.
fn dir_in(root: &Path, rel: &str) -> io::Result<OwnedFd> {
    let root_fd = open_root(root)?;
    open_dir_at(root_fd.as_fd(), rel.trim_start_matches('/').as_bytes(), true)
        .map_err(|e| io::Error::new(e.kind(), format!("{}/{}: {e}", root.display(), rel.trim_start_matches('/'))))
}

/// A regular file inside `root`, made if missing; a symlink or directory in its way is replaced.
fn file_in(root: &Path, rel: &str) -> io::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = dir_in(root, parent)?;
    match openat(&dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => {
            let st = nix::sys::stat::fstat(&fd)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                return Ok(fd);
            }
            remove_entry(dir.as_fd(), name.as_bytes())?;
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    drop(openat(&dir, name, flags, Mode::from_bits_truncate(0o644))?);
    Ok(openat(&dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// Writes `content` to a file inside `root`, replacing whatever stood there.
fn write_in(root: &Path, rel: &str, content: &str) -> io::Result<()> {
    let rel = rel.trim_start_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = dir_in(root, parent)?;
    remove_entry(dir.as_fd(), name.as_bytes())?;
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(&dir, name, flags, Mode::from_bits_truncate(0o644))?);
    file.write_all(content.as_bytes())
}

/// Nothing mounted in the pod propagates to the host, and nothing from the host into the pod.
pub fn make_mounts_private() -> io::Result<()> {
    ctx("making mounts private", mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE))
}

/// The stage1 root: a tmpfs that holds each app's root at `opt/stage2/<app>/rootfs`.
pub fn mount_stage1_root(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    ctx(
        "mounting the stage1 tmpfs",
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755")),
    )
}

/// The app's root: its image's rendered tree as the read-only lower layer, with the pod's own
/// upper layer, so that trees are shared between pods and never copied.
pub fn mount_app_root(target: &Path, lower: &Path, upper: &Path, work: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    std::fs::create_dir_all(upper)?;
    std::fs::create_dir_all(work)?;
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    ctx(
        "mounting the overlay root",
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str())),
    )
}

pub fn mount_proc(root: &Path) -> io::Result<()> {
    mount_in(root, "proc", "proc", MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None)?;
    // The kernel knobs stay readable but not writable.
    let proc_fd = dir_in(root, "proc")?;
    for name in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        read_only_bind(proc_fd.as_fd(), name)?;
    }
    Ok(())
}

/// Binds `dir/name` onto itself and makes that bind read-only; absent entries are skipped.
fn read_only_bind(dir: BorrowedFd, name: &str) -> io::Result<()> {
    let open = || openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty());
    let Ok(fd) = open() else { return Ok(()) };
    let what = format!("/proc/{name}");
    let path = fd_path(fd.as_fd());
    ctx(&what, mount(Some(path.as_str()), path.as_str(), NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE))?;
    // Opened again: the earlier fd names the covered entry, the new one the bind on top.
    let bound = open()?;
    let path = fd_path(bound.as_fd());
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ctx(&what, mount(NONE, path.as_str(), NONE, flags | MsFlags::MS_NOEXEC, NONE))
        .or_else(|_| ctx(&what, mount(NONE, path.as_str(), NONE, flags, NONE)))
}

/// Mounts a filesystem of `fstype` on the directory `rel` inside `root`.
fn mount_in(root: &Path, rel: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> io::Result<()> {
    let dir = dir_in(root, rel)?;
    let what = format!("mounting /{rel}");
    ctx(&what, mount(Some(fstype), fd_path(dir.as_fd()).as_str(), Some(fstype), flags, data))
}

pub fn mount_sys(root: &Path) -> io::Result<()> {
    mount_in(
        root,
        "sys",
        "sysfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None,
    )
}

/// `/dev` as a tmpfs with the devices the ACE requires, `pts`, `shm` and the usual links.
pub fn mount_dev(root: &Path, console: Option<&Path>) -> io::Result<()> {
    mount_in(root, "dev", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=0755"))?;
    let dev = dir_in(root, "dev")?;
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        ctx(
            &format!("creating /dev/{name}"),
            mknodat(&dev, name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(major, minor)),
        )?;
        // The umask must not narrow device modes.
        nix::sys::stat::fchmodat(
            &dev,
            name,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .or_else(|_| {
            nix::sys::stat::fchmodat(
                &dev,
                name,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        })?;
    }
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlinkat(target, &dev, name)?;
    }
    let pts_options = Some("newinstance,ptmxmode=0666,mode=0620");
    mount_in(root, "dev/pts", "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, pts_options)?;
    mount_in(root, "dev/shm", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))?;
    let target = file_in(root, "dev/console")?;
    let source = console.unwrap_or(Path::new("/dev/null"));
    let src = CString::new(source.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    ctx(
        "binding /dev/console",
        mount(Some(src.as_c_str()), fd_path(target.as_fd()).as_str(), NONE, MsFlags::MS_BIND, NONE),
    )
}

/// `/etc/hosts`, `/etc/hostname` and (when set) `/etc/resolv.conf`, written into the app's
/// upper layer.
pub fn write_etc(root: &Path, pod: &PodSpec) -> io::Result<()> {
    write_in(root, "etc/hosts", &pod.hosts)?;
    write_in(root, "etc/hostname", &format!("{}\n", pod.hostname))?;
    if let Some(resolv) = &pod.resolv_conf {
        write_in(root, "etc/resolv.conf", resolv)?;
    }
    // rkt adds /etc/mtab when the image has none.
    let etc = dir_in(root, "etc")?;
    if nix::sys::stat::fstatat(&etc, "mtab", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
        symlinkat("/proc/self/mounts", &etc, "mtab")?;
    }
    Ok(())
}

/// A volume bound at its mount point in the app.
pub fn mount_volume(root: &Path, pod_dir: &Path, volume: &BindMount) -> io::Result<()> {
    let source_path = pod_dir.join(&volume.source);
    let source = nix::fcntl::open(&source_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("volume source {}: {e}", source_path.display()))
    })?;
    let is_dir = nix::sys::stat::fstat(&source)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let target = if is_dir { dir_in(root, &volume.target)? } else { file_in(root, &volume.target)? };
    let mut flags = MsFlags::MS_BIND;
    if volume.recursive {
        flags |= MsFlags::MS_REC;
    }
    let (src, dst) = (fd_path(source.as_fd()), fd_path(target.as_fd()));
    ctx(&format!("mounting volume at {}", volume.target), mount(Some(src.as_str()), dst.as_str(), NONE, flags, NONE))?;
    if volume.read_only {
        let mounted = if is_dir { dir_in(root, &volume.target)? } else { file_in(root, &volume.target)? };
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        ctx(
            &format!("making {} read-only", volume.target),
            mount(NONE, fd_path(mounted.as_fd()).as_str(), NONE, flags, NONE),
        )?;
    }
    Ok(())
}

/// Makes the app's root read-only, after everything that writes into it.
pub fn read_only_root(target: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    ctx("making the root read-only", mount(NONE, target, NONE, flags, NONE))
}

/// Everything one app needs inside its root before it starts.
pub fn prepare_app(
    root: &Path,
    pod_dir: &Path,
    pod: &PodSpec,
    app: &AppSpec,
    console: Option<&Path>,
) -> io::Result<()> {
    mount_proc(root)?;
    mount_sys(root)?;
    mount_dev(root, console)?;
    write_etc(root, pod)?;
    for volume in &app.mounts {
        mount_volume(root, pod_dir, volume)?;
    }
    let workdir = dir_in(root, &app.working_dir);
    drop(workdir?);
    Ok(())
}

/// Makes `new_root` the root of this mount namespace and lets go of the old one.
pub fn pivot_into(new_root: &Path) -> io::Result<()> {
    nix::unistd::chdir(new_root)?;
    ctx("pivot_root", nix::unistd::pivot_root(".", "."))?;
    ctx("detaching the old root", nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH))?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Brings up `lo` in a network namespace of the pod's own.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket and two ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
