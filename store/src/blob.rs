//! Blob files: written into the store's temp area while they are hashed, and made visible under
//! their ID only when complete and synced.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::blob_hasher::BlobHasher;
use crate::error::{Result, StoreError};
use crate::image_id::{ImageHasher, ImageId};
use crate::space::SpaceGuard;
use crate::tmp_area::{link_into_place, unnamed_file, Claim};

/// A file being written in `cas/tmp`. With `O_TMPFILE` it has no name until `name`, so a
/// crash leaves nothing behind; elsewhere it has a claimed temp name that the next run sweeps.
pub struct TempBlob {
    pub file: File,
    claim: Option<Claim>,
}

impl TempBlob {
    pub fn create(tmp_dir: &Path) -> io::Result<Self> {
        if let Some(file) = unnamed_file(tmp_dir)? {
            return Ok(TempBlob { file, claim: None });
        }
        let claim = Claim::new(tmp_dir, "blob-")?;
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&claim.path)?;
        Ok(TempBlob { file, claim: Some(claim) })
    }

    /// Writes the data to the disk, before the blob is named (see `name`).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Gives the synced data the name `dest`; returns whether this created the name. When `dest`
    /// exists already it holds the same bytes (names are content hashes), and this copy is
    /// dropped. The name is on disk once its directory is synced (`sync_dir`).
    pub fn name(self, dest: &Path) -> io::Result<bool> {
        let result = match &self.claim {
            // rename would replace the name silently; the store names blobs one at a time.
            Some(_) if dest.exists() => Err(io::ErrorKind::AlreadyExists.into()),
            Some(claim) => std::fs::rename(&claim.path, dest),
            None => link_into_place(&self.file, dest),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Syncs the directory `dir`, so that the names made in it are on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file in the store's temp area for a command's own use (a compressed archive decompressed
/// to be read in place): gone once dropped, or, after a crash, at the next sweep.
pub struct ScratchFile(TempBlob);

impl ScratchFile {
    pub(crate) fn create(tmp_dir: &Path) -> io::Result<Self> {
        TempBlob::create(tmp_dir).map(ScratchFile)
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.0.file
    }

    /// A path that opens this file anew, with a file offset of its own.
    pub fn path(&self) -> PathBuf {
        match &self.0.claim {
            Some(claim) => claim.path.clone(),
            None => PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.0.file))),
        }
    }
}

/// Passes a stream through while hashing it and, optionally, copying it into a file.
pub struct Tee<R> {
    inner: R,
    hashing: bool,
    hasher: ImageHasher,
    size: u64,
    out: Option<File>,
    /// Hashes what is written to `out` on a thread of its own (see `copying`).
    behind: Option<BlobHasher>,
    space: SpaceGuard,
    write_error: Option<io::Error>,
}

impl<R> Tee<R> {
    /// Passes the stream through while hashing it.
    pub fn new(inner: R) -> Self {
        Tee {
            inner,
            hashing: true,
            hasher: ImageHasher::new(),
            size: 0,
            out: None,
            behind: None,
            space: SpaceGuard::default(),
            write_error: None,
        }
    }

    /// Passes the stream through while copying it into `out`, whose bytes are hashed on a
    /// thread of their own as they are written: the reader's thread (decompressing, say) does
    /// not hash. `finish_copy` gives the hash.
    pub fn copying(inner: R, out: File) -> io::Result<Self> {
        let behind = BlobHasher::start(out.try_clone()?)?;
        Ok(Tee { hashing: false, out: Some(out), behind: Some(behind), ..Tee::new(inner) })
    }

    /// Passes the stream through, counting it, hashing nothing.
    pub fn passthrough(inner: R) -> Self {
        Tee { hashing: false, ..Tee::new(inner) }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The error of the copy, if writing it failed; reading then failed too.
    pub fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    pub fn finish(self) -> (ImageHasher, u64) {
        (self.hasher, self.size)
    }

    /// The hash and size of what a `copying` tee wrote, once its thread has hashed all of it.
    pub fn finish_copy(self) -> io::Result<(ImageId, u64)> {
        let behind = self.behind.ok_or_else(|| io::Error::other("not a copying tee"))?;
        Ok((behind.finish(self.size)?, self.size))
    }
}

impl<R: AsyncRead + Unpin> Tee<R> {
    /// Reads the rest of a stored blob read through this tee and checks that all of it hashes
    /// to `id`, the ID it is stored under.
    pub async fn check_rest(mut self, id: &ImageId) -> Result<()> {
        tokio::io::copy(&mut self, &mut tokio::io::sink()).await.map_err(StoreError::Stream)?;
        let actual = self.hasher.finish();
        if actual != *id {
            return Err(StoreError::Corrupt { id: id.clone(), actual });
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        let fresh = &buf.filled()[before..];
        if this.hashing {
            this.hasher.update(fresh);
        }
        this.size += fresh.len() as u64;
        if let Some(out) = &mut this.out {
            // A plain write: the data is in the page cache at once, and a task of its own would
            // cost a copy of every buffer.
            if let Err(e) = this.space.write_all(out, fresh) {
                let shown = io::Error::new(e.kind(), format!("writing the image blob: {e}"));
                this.write_error = Some(e);
                return Poll::Ready(Err(shown));
            }
            if let Some(behind) = &this.behind {
                behind.wrote(this.size);
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A local file read with plain blocking reads, in place. The render reads blobs this way: it
/// writes its files with blocking calls on the same task anyway, and the blobs it reads were
/// mostly just written (in the page cache), where a read on tokio's blocking pool would cost a
/// thread hand-off and a copy for every buffer.
pub(crate) struct InPlaceFile(pub File);

impl AsyncRead for InPlaceFile {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = io::Read::read(&mut &self.0, buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}
