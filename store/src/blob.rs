//! Blob files: written into the store's temp area while they are hashed, and made visible under
//! their ID only when complete and synced.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncRead, ReadBuf};

/// A file being written in `cas/tmp`. With `O_TMPFILE` it has no name until `persist`, so a
/// crash leaves nothing behind; elsewhere it has a locked temp name that the next run sweeps.
pub struct TempBlob {
    pub file: File,
    named: Option<(PathBuf, Flock<File>)>,
}

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

impl TempBlob {
    pub fn create(tmp_dir: &Path) -> io::Result<Self> {
        let dir: OwnedFd =
            nix::fcntl::open(tmp_dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        match openat(&dir, ".", OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644)) {
            Ok(fd) => return Ok(TempBlob { file: File::from(fd), named: None }),
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
            Err(e) => return Err(e.into()),
        }
        let path = tmp_dir.join(unique_name("blob-"));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        // The lock tells the sweep of a later run that this writer is still alive.
        let lock = lock_file(file.try_clone()?, FlockArg::LockExclusiveNonblock)?;
        Ok(TempBlob { file, named: Some((path, lock)) })
    }

    /// Syncs the data and gives it the name `dest`. When `dest` exists already it holds the same
    /// bytes (names are content hashes), and this copy is dropped.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        let result = match self.named.take() {
            Some((path, _lock)) => std::fs::rename(&path, dest),
            None => {
                let proc_path = format!("/proc/self/fd/{}\0", self.file.as_raw_fd());
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
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(err)
                    }
                }
            }
        };
        result?;
        if let Some(dir) = dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if let Some((path, _)) = &self.named {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Passes a stream through while hashing it and, optionally, copying it into a file.
pub struct Tee<R> {
    inner: R,
    hasher: Sha512,
    size: u64,
    out: Option<File>,
    write_error: Option<io::Error>,
}

impl<R> Tee<R> {
    pub fn new(inner: R, out: Option<File>) -> Self {
        Tee { inner, hasher: Sha512::new(), size: 0, out, write_error: None }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The error of the copy, if writing it failed; reading then failed too.
    pub fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    pub fn finish(self) -> (Sha512, u64) {
        (self.hasher, self.size)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        let fresh = &buf.filled()[before..];
        this.hasher.update(fresh);
        this.size += fresh.len() as u64;
        if let Some(out) = &mut this.out {
            // A plain write: the data is in the page cache at once, and a task of its own would
            // cost a copy of every buffer.
            if let Err(e) = out.write_all(fresh) {
                let shown = io::Error::new(e.kind(), format!("writing the image blob: {e}"));
                this.write_error = Some(e);
                return Poll::Ready(Err(shown));
            }
        }
        Poll::Ready(Ok(()))
    }
}
