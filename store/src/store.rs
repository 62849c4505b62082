//! The store: blobs under `cas/blob`, their SQLite index, rendered trees under `cas/tree`.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};

use tokio::io::AsyncRead;

use crate::aci::{self, archive, Compression, EntryClass, LayoutCheck};
use crate::appc::manifest::MAX_MANIFEST_BYTES;
use crate::appc::{AppString, ImageManifest};
use crate::blob::{sync_dir, Tee, TempBlob};
use crate::error::{IoContext, Result, StoreError};
use crate::image_id::{IdQuery, ImageId};
use crate::index::{db, image_row, insert_image_row, now_ns, ImageRecord, Index};
use crate::tar_entry::{entry_info, next_entry, Kind};
use crate::tmp_area::{lock_file, unique_name};

/// What may follow an archive's end-of-archive marker (tar pads to 10 KiB records).
const MAX_TRAILING: u64 = 1 << 20;

/// A handle on a store; clones share one index connection, so that tasks of their own (one per
/// layer of a Docker image, say) can import at the same time.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    cas: PathBuf,
    index: Arc<Mutex<Index>>,
    /// Blobs this handle (or a clone) hashed as it wrote them: rendering them right after the
    /// import need not hash them again.
    hashed: Arc<Mutex<HashSet<ImageId>>>,
}

/// How an image enters the store.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The import fails unless the data hashes to this ID.
    pub expected: Option<ImageId>,
    /// Marks the image as the `latest` of its name (fetched by name without a version).
    pub latest: bool,
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub id: ImageId,
    pub manifest: ImageManifest,
    pub size: u64,
    pub compression: Compression,
    /// The store had this image before the import.
    pub already_stored: bool,
    /// When this import wrote the image's row (nanoseconds since the epoch).
    pub import_time: i64,
}

impl Imported {
    /// What a fetch that fails takes back: the image, unless the store had it before.
    pub fn brought_in(&self) -> Option<BroughtIn> {
        (!self.already_stored).then(|| BroughtIn { id: self.id.clone(), import_time: self.import_time })
    }
}

/// An image a fetch brought into the store, as that fetch imported it: a fetch beside it that
/// imports the same image again makes it its own too (see `Store::take_back`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroughtIn {
    pub id: ImageId,
    pub import_time: i64,
}

/// A flock on the store: shared while images are added or read, exclusive while they are removed.
pub struct StoreLock(#[allow(dead_code)] Flock<File>);

impl Store {
    /// Whether this process wrote the blob of `id` itself, hashing it on the way.
    pub(crate) fn hashed_here(&self, id: &ImageId) -> bool {
        self.hashed.lock().expect("not poisoned").contains(id)
    }

    /// Opens the store at `dir` (rkt's `--dir`), creating it if needed, and sweeps what an
    /// interrupted run left in the temp area.
    pub fn open(dir: &Path) -> Result<Self> {
        let cas = dir.join("cas");
        for sub in ["blob/sha512", "tree", "tmp", "db", "downloads"] {
            let path = cas.join(sub);
            std::fs::create_dir_all(&path).at(&path)?;
        }
        let index = Index::open(&cas.join("db").join("index.sqlite"))?;
        let store = Store { dir: dir.to_path_buf(), cas, index: Arc::new(Mutex::new(index)), hashed: Arc::default() };
        store.sweep_tmp();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn blob_path(&self, id: &ImageId) -> PathBuf {
        self.cas.join("blob/sha512").join(&id.hex()[..2]).join(id.to_string())
    }

    pub(crate) fn blob_root(&self) -> PathBuf {
        self.cas.join("blob/sha512")
    }

    pub(crate) fn cas_dir(&self) -> &Path {
        &self.cas
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.cas.join("tmp")
    }

    /// A scratch file in the store's temp area, on the store's filesystem.
    pub fn scratch_file(&self) -> Result<crate::ScratchFile> {
        let tmp = self.tmp_dir();
        crate::ScratchFile::create(&tmp).at(&tmp)
    }

    /// Where downloads wait to be complete (and can be resumed).
    pub fn downloads_dir(&self) -> PathBuf {
        self.cas.join("downloads")
    }

    pub fn tree_dir(&self) -> PathBuf {
        self.cas.join("tree")
    }

    fn lock(&self, arg: FlockArg) -> Result<StoreLock> {
        let path = self.cas.join("lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        Ok(StoreLock(lock_file(file, arg).at(&path)?))
    }

    pub fn lock_shared(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockShared)
    }

    pub fn lock_exclusive(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockExclusive)
    }

    /// Whether other commands are using the store (a fetch, a render), so that a removal or a
    /// collection would wait for them now.
    pub fn is_busy(&self) -> Result<bool> {
        match self.lock(FlockArg::LockExclusiveNonblock) {
            Ok(_) => Ok(false),
            Err(StoreError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Removes temp files and staging trees whose writer is gone (nobody holds their claim).
    fn sweep_tmp(&self) {
        crate::tmp_area::sweep(&self.tmp_dir());
    }

    /// Streams an ACI (plain tar, gzip, bzip2, xz or zstd) into the store. The data is hashed
    /// and checked while it is written to an unnamed temp file; only a complete, valid image is
    /// given its name and then its index row. On any error the store is as it was.
    pub async fn import<R: AsyncRead + Send + Unpin>(&self, src: R, options: &ImportOptions) -> Result<Imported> {
        self.import_gated(src, options, |_| std::future::ready(Ok(()))).await
    }

    /// As `import`, with a last check (a signature, say) that sees the manifest once the whole
    /// image has been read and hashed, and before anything is named: its error leaves the store
    /// as it was.
    pub async fn import_gated<R, G, F, E>(
        &self,
        src: R,
        options: &ImportOptions,
        gate: G,
    ) -> std::result::Result<Imported, E>
    where
        R: AsyncRead + Send + Unpin,
        G: FnOnce(&ImageManifest) -> F,
        F: std::future::Future<Output = std::result::Result<(), E>>,
        E: From<StoreError>,
    {
        let _lock = self.lock_shared()?;
        let tmp = self.tmp_dir();
        let temp = TempBlob::create(&tmp).at(&tmp)?;
        let copy = temp.file.try_clone().at(&tmp)?;
        let (compression, reader) = aci::decompressed(src).await?;
        let mut tee = Tee::copying(reader, copy).at(&tmp)?;
        let scanned = scan_aci(&mut tee).await;
        // Whatever follows the archive is hashed too, up to a bound: an endless body is refused.
        let drained =
            tokio::io::copy(&mut tokio::io::AsyncReadExt::take(&mut tee, MAX_TRAILING + 1), &mut tokio::io::sink())
                .await;
        if let Some(e) = tee.take_write_error() {
            return Err(StoreError::Io { path: tmp, source: e }.into());
        }
        let scan = scanned?;
        let trailing = drained.map_err(|e| archive(format!("unreadable data after the tar: {e}")))?;
        if trailing > MAX_TRAILING {
            return Err(archive("more than 1 MiB of data after the end of the archive".into()).into());
        }
        if tee.size() < scan.end + 512 {
            return Err(archive("truncated tar: the end-of-archive marker is missing".into()).into());
        }
        let (id, size) = tee.finish_copy().at(&tmp)?;
        check_end_marker(&temp.file, scan.end, size).at(&tmp)??;
        if let Some(expected) = &options.expected {
            if *expected != id {
                return Err(StoreError::IdMismatch { expected: expected.clone(), actual: id }.into());
            }
        }
        gate(&scan.manifest).await?;
        let imported = self.commit_blob(temp, id, scan.manifest, scan.manifest_json, size, options.latest)?;
        Ok(Imported { compression, ..imported })
    }

    /// Names a complete, checked blob by its ID and indexes it: after this, it is in the store.
    ///
    /// The name and the row are one step to other store users: the blob is named under the
    /// index's write lock and the row commits after it. When the row cannot be written (a full
    /// disk fails SQLite too), the name is taken back under that lock, unless another command
    /// has indexed the same blob meanwhile: a blob without a row is visible to nobody but takes
    /// room, and the store must be left as it was.
    pub(crate) fn commit_blob(
        &self,
        temp: TempBlob,
        id: ImageId,
        manifest: ImageManifest,
        manifest_json: String,
        size: u64,
        latest: bool,
    ) -> Result<Imported> {
        let dest = self.blob_path(&id);
        let parent = dest.parent().expect("blob paths have a parent");
        // Outside the lock: syncing the data is the slow part of naming a blob.
        temp.sync().at(&dest)?;
        let now = now_ns();
        let record = ImageRecord {
            id: id.clone(),
            name: manifest.name.clone(),
            manifest: manifest_json,
            size,
            import_time: now,
            last_used: now,
            latest,
        };
        let mut created = false;
        let mut index = self.index();
        let committed = index.write_with(|tx, index_path| {
            // The shard directory is made under the lock too, as `take_back_name` removes it.
            std::fs::create_dir_all(parent).at(parent)?;
            created = temp.name(&dest).at(&dest)?;
            sync_dir(parent).at(parent)?;
            let already_stored = image_row(tx, &id).map_err(|e| db(index_path, e))?.is_some();
            insert_image_row(tx, &record).map_err(|e| db(index_path, e))?;
            Ok(already_stored)
        });
        let already_stored = match committed {
            Ok(already_stored) => already_stored,
            Err(e) => {
                if created {
                    take_back_name(&mut index, &id, &dest);
                }
                return Err(e);
            }
        };
        drop(index);
        self.hashed.lock().expect("not poisoned").insert(id.clone());
        Ok(Imported { id, manifest, size, compression: Compression::None, already_stored, import_time: now })
    }

    /// Resolves an ID as typed (`sha512-` and at least two hex digits) as rkt's `ResolveKey` does.
    pub fn resolve_id(&self, input: &str) -> Result<ImageId> {
        match IdQuery::parse(input) {
            IdQuery::NotAnId => Err(StoreError::Invalid(format!("{input:?} is not an image ID"))),
            IdQuery::TooShort => Err(StoreError::IdTooShort),
            IdQuery::Prefix(prefix) => {
                let mut ids = self.index().ids_with_prefix(&prefix)?;
                match ids.len() {
                    0 => Err(StoreError::NoImageIdsFound),
                    1 => Ok(ids.remove(0)),
                    _ => Err(StoreError::AmbiguousImageId),
                }
            }
        }
    }

    /// Finds an image by name as rkt's `GetACI` does: its labels must include the requested
    /// ones; without a requested version the `latest` image wins, then the newest import.
    pub fn find(&self, app: &AppString) -> Result<Option<ImageId>> {
        let labels: Vec<(String, String)> = app.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
        let mut matching = self.index().images_labelled(&app.name, &labels)?;
        let wants_version = app.labels.iter().any(|l| l.name == "version");
        matching.sort_by_key(|r| (!wants_version && r.latest, r.import_time));
        Ok(matching.pop().map(|r| r.id))
    }

    /// An image whose name starts with `name_prefix` and that carries the annotation `key` =
    /// `value` (a Docker layer stored under another chain, by its diff ID).
    pub fn find_annotated(&self, name_prefix: &str, key: &str, value: &str) -> Result<Option<ImageId>> {
        self.index().image_annotated(name_prefix, key, value)
    }

    /// An image as the image commands take it: an ID prefix or a name with labels.
    pub fn resolve(&self, image: &str) -> Result<ImageId> {
        if image.starts_with("sha512-") {
            return self.resolve_id(image);
        }
        let app = AppString::parse(image).map_err(StoreError::Invalid)?;
        self.find(&app)?.ok_or_else(|| StoreError::NoSuchImage(image.to_string()))
    }

    pub fn image(&self, id: &ImageId) -> Result<ImageRecord> {
        self.index().image(id)?.ok_or(StoreError::NoImageIdsFound)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.index().images()
    }

    pub fn manifest(&self, id: &ImageId) -> Result<ImageManifest> {
        let record = self.image(id)?;
        Ok(ImageManifest::parse(record.manifest.as_bytes())?)
    }

    /// What the store remembers of a download from `url` whose image is still stored.
    pub fn remote(&self, url: &str) -> Result<Option<crate::index::RemoteRecord>> {
        self.index().remote(url)
    }

    /// The downloads the store remembers from URLs that start with `prefix` (`docker://`).
    pub fn remotes_starting(&self, prefix: &str) -> Result<Vec<crate::index::RemoteRecord>> {
        self.index().remotes_starting(prefix)
    }

    pub fn set_remote(&self, remote: &crate::index::RemoteRecord) -> Result<()> {
        self.index().set_remote(remote)
    }

    /// Forgets the download from `url`; its image stays.
    pub fn remove_remote(&self, url: &str) -> Result<()> {
        self.index().remove_remote(url)
    }

    /// Opens an image's blob for reading and records the use (rkt's `lastused`).
    pub fn open_blob(&self, id: &ImageId) -> Result<File> {
        let path = self.blob_path(id);
        let file = File::open(&path).at(&path)?;
        self.index().touch(std::slice::from_ref(id))?;
        Ok(file)
    }

    /// Writes the image's uncompressed ACI to `out`, which then hashes to the image's ID.
    pub async fn export(&self, id: &ImageId, out: &Path, overwrite: bool) -> Result<()> {
        if !overwrite && out.symlink_metadata().is_ok() {
            return Err(StoreError::Invalid(format!("{} already exists (use --overwrite)", out.display())));
        }
        let mut src = tokio::fs::File::from_std(self.open_blob(id)?);
        write_replacing(out, |mut dst, temp| async move {
            let mut tee = Tee::new(&mut src);
            tokio::io::copy(&mut tee, &mut dst).await.at(&temp)?;
            let (hasher, _) = tee.finish();
            let actual = hasher.finish();
            if actual != *id {
                return Err(StoreError::Corrupt { id: id.clone(), actual });
            }
            Ok(dst)
        })
        .await
    }
}

/// Removes the blob `dest` that `commit_blob` named but could not index, if no row names it by
/// now, and its shard directory if that is left empty. Best effort: a blob left behind is only
/// room taken.
fn take_back_name(index: &mut Index, id: &ImageId, dest: &Path) {
    let _ = index.write_with(|tx, index_path| {
        if image_row(tx, id).map_err(|e| db(index_path, e))?.is_none() {
            std::fs::remove_file(dest).at(dest)?;
            if let Some(shard) = dest.parent() {
                let _ = std::fs::remove_dir(shard);
            }
        }
        Ok(())
    });
}

/// Writes `out` through a temp file beside it, synced and renamed into place; the temp file is
/// removed if `write` fails. `write` gets the open temp file and its path, and hands the file back.
pub(crate) async fn write_replacing<F, Fut>(out: &Path, write: F) -> Result<()>
where
    F: FnOnce(tokio::fs::File, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<tokio::fs::File>>,
{
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = dir.join(format!(".{}", unique_name("export-")));
    let result = async {
        let file = tokio::fs::File::create(&temp).await.at(&temp)?;
        let file = write(file, temp.clone()).await?;
        file.sync_all().await.at(&temp)?;
        tokio::fs::rename(&temp, out).await.at(out)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The manifest of an ACI (any compression), read from the start of the archive.
pub async fn read_manifest<R: AsyncRead + Send + Unpin>(src: R) -> Result<ImageManifest> {
    let (_, reader) = aci::decompressed(src).await?;
    let mut archive_reader = tokio_tar::Archive::new(reader);
    let mut entries = archive_reader.entries().map_err(|e| archive(e.to_string()))?;
    while let Some(mut entry) = next_entry(&mut entries).await? {
        let Some(info) = entry_info(&mut entry).await? else { continue };
        if info.path == b"manifest" {
            if entry.effective_size() > MAX_MANIFEST_BYTES {
                return Err(archive("manifest is over the 1 MiB limit".into()));
            }
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut entry, &mut bytes)
                .await
                .map_err(|e| archive(format!("reading manifest: {e}")))?;
            return Ok(ImageManifest::parse(&bytes)?);
        }
    }
    Err(archive("missing manifest".into()))
}

pub(crate) struct Scan {
    pub manifest: ImageManifest,
    pub manifest_json: String,
    /// Where the last entry's data ends in the tar stream.
    pub end: u64,
}

/// How much of an entry's data `scan_aci` asks for at once: what `aci::decompressed` buffers,
/// so that its buffer is passed by.
const DATA_READ: usize = 256 * 1024;

/// What follows the first zero block of the archive, as Go's archive/tar would take it.
fn check_end_marker(file: &std::fs::File, end: u64, size: u64) -> std::io::Result<Result<()>> {
    let next = end + 512;
    let mut block = vec![0u8; size.saturating_sub(next).min(512) as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut block, next)?;
    Ok(crate::go_tar::after_first_zero_block(&block).map_err(|why| archive(why.into())))
}

/// Reads a whole ACI tar, checking its layout and reading its manifest.
pub(crate) async fn scan_aci<R: AsyncRead + Unpin>(reader: R) -> Result<Scan> {
    let mut archive_reader = tokio_tar::Archive::new(reader);
    let mut entries = archive_reader.entries().map_err(|e| archive(e.to_string()))?;
    let mut check = LayoutCheck::default();
    let mut manifest = None;
    let mut end = 0;
    // The entries' data is read here rather than skipped by the tar reader, which reads 32 KiB
    // at a time: in big reads the stream below hands its data over without another copy, and
    // the blob is written in big writes.
    let mut data = vec![0u8; DATA_READ];
    while let Some(mut entry) = next_entry(&mut entries).await? {
        let Some(info) = entry_info(&mut entry).await? else { continue };
        end = info.end;
        let class = if info.kind == Kind::Dir { EntryClass::Directory } else { EntryClass::Other };
        let hardlink = match &info.kind {
            Kind::HardLink(target) => Some(target.as_slice()),
            _ => None,
        };
        check.entry(&info.path, class, hardlink)?;
        if info.path == b"manifest" {
            if info.kind != Kind::File {
                return Err(archive("manifest is not a regular file".into()));
            }
            let size = entry.effective_size();
            if size > MAX_MANIFEST_BYTES {
                return Err(archive(format!("manifest is {size} bytes, over the 1 MiB limit")));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            tokio::io::AsyncReadExt::read_to_end(&mut entry, &mut bytes)
                .await
                .map_err(|e| archive(format!("reading manifest: {e}")))?;
            let parsed = ImageManifest::parse(&bytes)?;
            let json = String::from_utf8(bytes).map_err(|_| archive("manifest is not UTF-8".into()))?;
            manifest = Some((parsed, json));
        }
        while tokio::io::AsyncReadExt::read(&mut entry, &mut data)
            .await
            .map_err(|e| archive(format!("unreadable tar: {e}")))?
            > 0
        {}
    }
    check.finish(manifest.is_some())?;
    let (manifest, manifest_json) = manifest.expect("finish checked it");
    Ok(Scan { manifest, manifest_json, end })
}
