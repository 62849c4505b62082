//! The store's temp area, `cas/tmp`. Work in progress there is claimed by a lock file that
//! appears already locked; the sweep at the next start removes only what nobody holds.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A name no other process or thread will pick.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{}-{n}-{t:x}", std::process::id())
}

/// Takes a flock on `file`, held until the returned guard is dropped.
pub fn lock_file(file: File, arg: FlockArg) -> io::Result<Flock<File>> {
    Flock::lock(file, arg).map_err(|(_, errno)| io::Error::from(errno))
}

/// Takes an exclusive flock on `file`, waiting for it without blocking the thread, so that other
/// tasks of this process (the one holding the lock among them) go on meanwhile.
pub async fn lock_exclusive_waiting(file: File) -> io::Result<Flock<File>> {
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                file = back;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err((_, errno)) => return Err(io::Error::from(errno)),
        }
    }
}

const LOCK_SUFFIX: &str = ".lock";

/// A name in the temp area owned by this process until dropped, when the file or directory
/// at `path` is removed.
pub struct Claim {
    pub path: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

pub fn link_into_place(file: &File, dest: &Path) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}\0", file.as_raw_fd());
    let dest_c = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: both strings are NUL-terminated and live across the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr().cast(),
            libc::AT_FDCWD,
            dest_c.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), or `None` where the filesystem has no such thing.
pub fn unnamed_file(dir: &Path) -> io::Result<Option<File>> {
    let dir_fd = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    match openat(&dir_fd, ".", OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Claim {
    pub fn new(tmp: &Path, prefix: &str) -> io::Result<Claim> {
        loop {
            let name = unique_name(prefix);
            let path = tmp.join(&name);
            let lock_path = tmp.join(format!("{name}{LOCK_SUFFIX}"));
            if let Some(file) = unnamed_file(tmp)? {
                // Locked before it has a name: no sweep can ever see it unlocked.
                let lock = lock_file(file, FlockArg::LockExclusive)?;
                link_into_place(&lock, &lock_path)?;
                return Ok(Claim { path, lock_path, _lock: lock });
            }
            let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&lock_path)?;
            let lock = lock_file(file, FlockArg::LockExclusive)?;
            // A sweep may have removed the name between its creation and the lock: then retry.
            match lock_path.metadata() {
                Ok(m) if m.ino() == lock.metadata()?.ino() => return Ok(Claim { path, lock_path, _lock: lock }),
                _ => continue,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = remove_any(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes what interrupted runs left: claims whose lock nobody holds, and anything without a
/// claim. Errors are ignored; whatever stays is tried again next time.
pub fn sweep(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(base) = name.strip_suffix(LOCK_SUFFIX) {
            let Ok(file) = File::open(&path) else { continue };
            let Ok(_held) = lock_file(file, FlockArg::LockExclusiveNonblock) else { continue };
            let _ = remove_any(&tmp.join(base));
            let _ = std::fs::remove_file(&path);
        } else if !tmp.join(format!("{name}{LOCK_SUFFIX}")).exists() {
            let _ = remove_any(&path);
        }
    }
}

/// Moves `path` into the temp area, so that it disappears at once, then deletes it. The move is
/// what matters; a deletion cut short is finished by the next sweep.
pub fn discard(tmp: &Path, path: &Path) -> io::Result<()> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    let trash = tmp.join(unique_name("trash-"));
    std::fs::rename(path, &trash)?;
    let _ = remove_any(&trash);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_keeps_held_claims_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let held = Claim::new(tmp, "held-").unwrap();
        std::fs::create_dir(&held.path).unwrap();
        std::fs::write(held.path.join("f"), "x").unwrap();
        std::fs::create_dir(tmp.join("debris")).unwrap();
        std::fs::write(tmp.join("stale-1.lock"), "").unwrap();
        std::fs::write(tmp.join("stale-1"), "half").unwrap();
        sweep(tmp);
        let mut left: Vec<String> =
            std::fs::read_dir(tmp).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let name = held.path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(left, [name.clone(), format!("{name}.lock")]);
        drop(held);
        assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    }
}
