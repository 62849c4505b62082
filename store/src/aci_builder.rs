//! ACIs written into the store entry by entry (a converted Docker layer, say): each entry is
//! checked against the ACI layout rules and hashed as it is written, so the image is imported
//! without a pipe between the writer and the store and without reading its tar back.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::aci::{archive, EntryClass, LayoutCheck};
use crate::appc::manifest::MAX_MANIFEST_BYTES;
use crate::appc::ImageManifest;
use crate::blob::{InPlaceFile, Tee, TempBlob};
use crate::blob_hasher::FedWriter;
use crate::error::{IoContext, Result, StoreError};
use crate::growing_blob::{GrowingBlob, ProgressGuard};
use crate::image_id::ImageId;
use crate::repeats::{RepeatError, WrittenIndex};
use crate::store::{Imported, Store, StoreLock};
use crate::tar_entry::{entry_info, next_entry, EntryInfo, Kind, SpecialKind};
use crate::tar_out::{header_blocks, padding, OutEntry};
use crate::tree_writer::Meta;

/// How much of the blob is gathered before it is written (and handed to the hasher).
const OUT_BUFFER: usize = 256 * 1024;
/// How much of a donor image's blob is read at once.
const DONOR_READ: usize = 256 * 1024;

/// An ACI being written into the store's temp area; dropped unfinished, it leaves nothing.
pub struct AciBuilder {
    store: Store,
    _lock: StoreLock,
    temp: TempBlob,
    /// Writes the blob file and takes its SHA-512 (its ID), on a thread of its own.
    writer: FedWriter,
    check: LayoutCheck,
    manifest: ImageManifest,
    manifest_json: String,
    /// The blob's next bytes, its first `filled` not yet written to the blob file. Entries'
    /// data is read straight into it: each byte is copied once on its way to the file.
    out: Box<[u8]>,
    filled: usize,
    /// Tells a reader that follows the blob file when the writing ends.
    progress: ProgressGuard,
    /// Bytes handed to the writer: once `finish` has flushed, the blob's size.
    flushed: u64,
    /// The entries written, by path: made at the first entry given again (see `repeats`).
    written: Option<WrittenIndex>,
    /// What the `rootfs` entry was written with, once written: it goes before the first entry
    /// under it.
    root_written: Option<RootMeta>,
}

/// The metadata a `rootfs` entry gives the image root.
#[derive(PartialEq)]
struct RootMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RootMeta {
    fn of(entry: &OutEntry<'_>) -> Self {
        RootMeta {
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            xattrs: entry.xattrs.to_vec(),
        }
    }
}

impl Store {
    /// Starts an ACI with this manifest and a `rootfs` directory: mode 0755, owned by root,
    /// unless `AciBuilder::root` gives it other metadata before the first entry.
    pub fn build_aci(&self, manifest: &[u8]) -> Result<AciBuilder> {
        if manifest.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(archive(format!("manifest is {} bytes, over the 1 MiB limit", manifest.len())));
        }
        let parsed = ImageManifest::parse(manifest)?;
        let manifest_json =
            String::from_utf8(manifest.to_vec()).map_err(|_| archive("manifest is not UTF-8".into()))?;
        let lock = self.lock_shared()?;
        let tmp = self.tmp_dir();
        let temp = TempBlob::create(&tmp).at(&tmp)?;
        let progress = ProgressGuard(Arc::default());
        let writer = FedWriter::start(temp.file.try_clone().at(&tmp)?, progress.0.clone()).at(&tmp)?;
        let mut builder = AciBuilder {
            store: self.clone(),
            _lock: lock,
            temp,
            writer,
            check: LayoutCheck::default(),
            manifest: parsed,
            manifest_json,
            out: vec![0u8; OUT_BUFFER].into_boxed_slice(),
            filled: 0,
            progress,
            flushed: 0,
            written: None,
            root_written: None,
        };
        builder.small(b"manifest", b'0', 0o644, manifest)?;
        Ok(builder)
    }
}

impl AciBuilder {
    /// Queues `bytes` for the blob file.
    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.filled == self.out.len() {
                self.flush()?;
            }
            let n = bytes.len().min(self.out.len() - self.filled);
            self.out[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Hands what is queued to the writing thread.
    fn flush(&mut self) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.out = self.writer.feed(out, self.filled).map_err(|source| self.io_error(source))?;
        self.flushed += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Waits until the blob file holds all that was handed over, for a read of it.
    fn flush_to_file(&mut self) -> Result<()> {
        self.flush()?;
        self.writer.wait_written(self.flushed).map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.store.tmp_dir(), source }
    }

    /// A reader of the blob as it is written, which ends when `finish` has written it all and
    /// fails if the builder is dropped before. Each entry it reads has passed the layout rules,
    /// but the image as a whole is judged only by the caller's checks and `finish`: keep
    /// nothing made from it unless `finish` succeeds.
    pub fn follow(&self) -> Result<GrowingBlob> {
        let file =
            self.temp.file.try_clone().map_err(|source| StoreError::Io { path: self.store.tmp_dir(), source })?;
        Ok(GrowingBlob::new(file, self.progress.0.clone()))
    }

    fn checked(&mut self, entry: &OutEntry<'_>) -> Result<()> {
        let class = if entry.kind == b'5' { EntryClass::Directory } else { EntryClass::Other };
        let hardlink = (entry.kind == b'1').then_some(entry.link);
        self.check.entry(entry.path, class, hardlink)?;
        if let Some(written) = &mut self.written {
            written.add(entry.path, self.flushed + self.filled as u64, hardlink);
        }
        self.write(&header_blocks(entry))
    }

    fn pad(&mut self, written: u64) -> Result<()> {
        self.write(&[0u8; 512][..padding(written)])
    }

    fn small(&mut self, path: &[u8], kind: u8, mode: u32, data: &[u8]) -> Result<()> {
        self.checked(&OutEntry::plain(path, kind, mode, data.len() as u64))?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    /// Writes the `rootfs` directory with the mode, owner, time and extended attributes of
    /// `root` (a Docker layer's own root entry, say), unless an entry is written already: then
    /// it returns false and the root keeps what it has.
    pub fn root(&mut self, root: &OutEntry<'_>) -> Result<bool> {
        if self.root_written.is_some() {
            return Ok(false);
        }
        self.root_written = Some(RootMeta::of(root));
        let entry = OutEntry { path: b"rootfs", kind: b'5', size: 0, link: b"", dev: (0, 0), ..*root };
        self.checked(&entry)?;
        Ok(true)
    }

    /// Whether the `rootfs` entry is written with the mode, owner, time and extended attributes
    /// of `root`.
    pub fn root_is(&self, root: &OutEntry<'_>) -> bool {
        self.root_written.as_ref().is_some_and(|written| *written == RootMeta::of(root))
    }

    /// Gives the root the metadata of the first of the stored `images` (topmost first) whose
    /// root is not the default one `build_aci` writes, as `root` does: a converted image takes
    /// the root of its topmost layer that had a root entry, as umoci and podman keep the root
    /// a lower layer set when the layers above hold none.
    pub async fn root_of_first(&mut self, images: &[ImageId]) -> Result<bool> {
        for image in images {
            let file = InPlaceFile(self.store.open_blob(image)?);
            let mut archive = tokio_tar::Archive::new(tokio::io::BufReader::new(file));
            let mut entries = archive.entries().map_err(|e| archive_error(image, e))?;
            while let Some(mut entry) = next_entry(&mut entries).await? {
                let Some(info) = entry_info(&mut entry).await? else { continue };
                if info.path == b"rootfs" && info.kind == Kind::Dir {
                    if is_default_root(&info.meta) {
                        break;
                    }
                    return self.root(&out_entry(&info, 0));
                }
                if info.path.starts_with(b"rootfs/") {
                    break;
                }
            }
        }
        Ok(false)
    }

    fn default_root(&mut self) -> Result<()> {
        if self.root_written.is_none() {
            self.root(&OutEntry::plain(b"rootfs", b'5', DEFAULT_ROOT_MODE, 0))?;
        }
        Ok(())
    }

    /// Adds an entry whose `data` yields exactly `entry.size` bytes. A failure to read `data` is
    /// `EntryError::Read`, so that the caller can tell its own stream's failures from the
    /// store's refusals. An entry that repeats one written, alike, is left out (its data read);
    /// one that repeats it otherwise is `EntryError::GivenAgain`.
    pub async fn entry<R: AsyncRead + Unpin>(
        &mut self,
        entry: &OutEntry<'_>,
        data: &mut R,
    ) -> std::result::Result<(), EntryError> {
        self.default_root().map_err(EntryError::Store)?;
        // An entry given again (see `crate::repeats`): compared with the one written when both
        // are directories or neither is.
        match self.check.taken(entry.path) {
            Some(class) if (class == EntryClass::Directory) == (entry.kind == b'5') => {
                return self.repeats(entry, data).await
            }
            Some(_) => {
                let shown = String::from_utf8_lossy(entry.path);
                return Err(EntryError::GivenAgain(archive(format!(
                    "duplicate entry {shown:?}: given again otherwise"
                ))));
            }
            None => {}
        }
        self.checked(entry).map_err(EntryError::Store)?;
        let mut left = entry.size;
        while left > 0 {
            if self.filled == self.out.len() {
                self.flush().map_err(EntryError::Store)?;
            }
            let want = left.min((self.out.len() - self.filled) as u64) as usize;
            let n = data.read(&mut self.out[self.filled..self.filled + want]).await.map_err(EntryError::Read)?;
            if n == 0 {
                return Err(EntryError::Read(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a layer entry ended early",
                )));
            }
            self.filled += n;
            left -= n as u64;
        }
        self.pad(entry.size).map_err(EntryError::Store)
    }

    /// Reads `entry`, given again, to the end of its data: `Ok` if it is the entry written at its
    /// path, alike in every respect (see `crate::repeats`).
    async fn repeats<R: AsyncRead + Unpin>(
        &mut self,
        entry: &OutEntry<'_>,
        data: &mut R,
    ) -> std::result::Result<(), EntryError> {
        self.flush_to_file().map_err(EntryError::Store)?;
        let written = match self.written.take() {
            Some(written) => written,
            None => WrittenIndex::of_blob(&self.temp.file, self.flushed).await.map_err(EntryError::Store)?,
        };
        let checked = written.check_repeat(&self.temp.file, self.flushed, entry, data).await;
        self.written = Some(written);
        checked.map_err(|e| match e {
            RepeatError::Read(e) => EntryError::Read(e),
            RepeatError::Refused(e) => EntryError::GivenAgain(e),
        })
    }

    /// Adds the entries of the stored image `donor`'s root filesystem, read from its blob and
    /// checked against its ID on the way (a Docker layer stored before under another chain: its
    /// content need not be fetched again). A donor that cannot be read whole, or not as the
    /// image it was stored as, is `CopyError::Damaged`: the caller may fetch the content instead.
    pub async fn copy_rootfs_of(&mut self, donor: &ImageId) -> std::result::Result<(), CopyError> {
        let damaged = CopyError::Damaged;
        let file = InPlaceFile(self.store.open_blob(donor).map_err(damaged)?);
        let mut tee = Tee::new(tokio::io::BufReader::with_capacity(DONOR_READ, file));
        {
            let mut archive = tokio_tar::Archive::new(&mut tee);
            let mut entries = archive.entries().map_err(|e| damaged(archive_error(donor, e)))?;
            while let Some(mut entry) = next_entry(&mut entries).await.map_err(damaged)? {
                let Some(info) = entry_info(&mut entry).await.map_err(damaged)? else { continue };
                // The manifest is this image's own; `rootfs` gives the root what the layer did.
                if info.path == b"rootfs" && info.kind == Kind::Dir {
                    self.root(&out_entry(&info, 0)).map_err(CopyError::Store)?;
                    continue;
                }
                if !info.path.starts_with(b"rootfs/") {
                    continue;
                }
                let size = if info.kind == Kind::File { entry.effective_size() } else { 0 };
                let out = out_entry(&info, size);
                self.entry(&out, &mut entry).await.map_err(|e| match e {
                    EntryError::Read(e) => damaged(archive_error(donor, e)),
                    // Writing the copy failed: the store's trouble, not the donor's.
                    EntryError::Store(e @ StoreError::Io { .. }) => CopyError::Store(e),
                    // The donor's entries passed these same rules when it was stored.
                    EntryError::Store(e) | EntryError::GivenAgain(e) => damaged(e),
                })?;
            }
        }
        tee.check_rest(donor).await.map_err(damaged)
    }

    /// Ends the archive and imports it: synced, named by its hash, then indexed; with `latest`,
    /// as the `latest` image of its name (see `ImportOptions`).
    pub fn finish(mut self, latest: bool) -> Result<Imported> {
        self.default_root()?;
        self.write(&[0u8; 1024])?;
        self.flush()?;
        let tmp = self.store.tmp_dir();
        let id = self.writer.finish(self.flushed).at(&tmp)?;
        self.progress.0.complete();
        self.check.finish(true)?;
        let store = self.store.clone();
        store.commit_blob(self.temp, id, self.manifest, self.manifest_json, self.flushed, latest)
    }
}

/// Why a stored image's root filesystem could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The stored image is damaged: missing, unreadable, or no longer what its ID says.
    #[error("{0}")]
    Damaged(StoreError),
    /// The copy could not be written.
    #[error("{0}")]
    Store(StoreError),
}

/// Why an entry could not be added: its data could not be read, or the store refused it.
#[derive(Debug)]
pub enum EntryError {
    Read(std::io::Error),
    Store(StoreError),
    /// The entry's path was written before, and this entry is not that one again: the ACI can
    /// hold only one of them, and which is the caller's to say.
    GivenAgain(StoreError),
}

fn archive_error(image: &ImageId, e: std::io::Error) -> StoreError {
    archive(format!("stored image {}: {e}", image.short(32)))
}

const DEFAULT_ROOT_MODE: u32 = 0o755;

/// Whether a `rootfs` entry is the one `build_aci` writes when given none. A layer whose own
/// root entry is exactly that (0755, root's, time 0, no extended attributes) cannot be told
/// from one without: both leave the root to the layers below.
fn is_default_root(meta: &Meta) -> bool {
    meta.mode & 0o7777 == DEFAULT_ROOT_MODE
        && meta.uid == 0
        && meta.gid == 0
        && meta.mtime == 0
        && meta.xattrs.is_empty()
}

/// The tar entry that writes `info` again, with `size` bytes of data.
pub(crate) fn out_entry(info: &EntryInfo, size: u64) -> OutEntry<'_> {
    let (kind, link, dev): (u8, &[u8], u64) = match &info.kind {
        Kind::File => (b'0', b"", 0),
        Kind::Dir => (b'5', b"", 0),
        Kind::Symlink(target) => (b'2', target, 0),
        Kind::HardLink(target) => (b'1', target, 0),
        Kind::Special(SpecialKind::Char(dev)) => (b'3', b"", *dev),
        Kind::Special(SpecialKind::Block(dev)) => (b'4', b"", *dev),
        Kind::Special(SpecialKind::Fifo) => (b'6', b"", 0),
    };
    OutEntry {
        path: &info.path,
        kind,
        mode: info.meta.mode,
        uid: u64::from(info.meta.uid),
        gid: u64::from(info.meta.gid),
        mtime: info.meta.mtime,
        size,
        link,
        dev: (nix::sys::stat::major(dev) as u32, nix::sys::stat::minor(dev) as u32),
        xattrs: &info.meta.xattrs,
    }
}
