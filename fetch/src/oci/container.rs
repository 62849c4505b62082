//! Where an image's files are: a directory (an OCI layout) or an uncompressed tar (an OCI
//! archive or `docker save`'s tarball), read in place through an index of its entries.

use std::collections::HashMap;
use std::future::poll_fn;
use std::future::Future;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use rkt_store::aci::{decompressed, Compression};
use rkt_store::{ScratchFile, SpaceGuard, Store};

use super::OciError;
use crate::progress::{Activity, ProgressHandle};

/// A stream of an image file or blob.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// Opens a blob again, from its start.
pub type Reopen = Box<dyn Fn(ReadAgain) -> Pin<Box<dyn Future<Output = Result<Reader, OciError>> + Send>> + Send>;

/// Whether the conversion will read a blob once more after the read it opens it again for: a
/// downloaded blob is then kept as it arrives, and the next read takes the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAgain {
    Perhaps,
    Surely,
}

/// A layer's blob, as its conversion reads it.
pub struct LayerBlob {
    pub reader: Reader,
    /// Its `sha256:` digest, checked when given.
    pub digest: Option<String>,
    /// Reads it anew: a layer whose own root entry comes after other entries is converted
    /// again, as the ACI's `rootfs` entry, which carries it, must come first; one that gives a
    /// path again, otherwise, is read twice more (see `last_entries`): the first of those two
    /// reads is `ReadAgain::Surely`.
    pub reopen: Reopen,
}

pub enum Container {
    Dir(PathBuf),
    /// `file` opens the archive, `shown` names it to the user: they differ when the archive
    /// came compressed and `_scratch` holds it decompressed (for as long as it is read).
    Tar {
        file: PathBuf,
        shown: PathBuf,
        index: HashMap<String, (u64, u64)>,
        _scratch: Option<ScratchFile>,
    },
}

/// `a/./b//c/../d` → `a/b/d`; names that climb out of the archive are not indexed.
fn clean(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// How many links a name may go through to reach a file.
const MAX_LINKS: usize = 16;

impl Container {
    pub fn dir(path: &Path) -> Self {
        Container::Dir(path.to_path_buf())
    }

    /// Indexes the regular files of a tar by name: offset and size. Links to them are indexed
    /// too: `docker save` writes a layer that two images share once and symlinks
    /// `ID/layer.tar` to it; a link out of the archive leads nowhere. A compressed archive (gzip,
    /// zstd, xz, bzip2: `docker save | gzip`, which `docker load` takes) is decompressed into a
    /// scratch file of the store first, as the files of an archive are read in place; so is
    /// an archive that comes through a pipe.
    pub async fn tar(path: &Path, store: &Store, progress: &ProgressHandle) -> Result<Self, OciError> {
        let shown = path.to_path_buf();
        let at = |e: &dyn std::fmt::Display| OciError::Io(format!("{}: {e}", shown.display()));
        let file = tokio::fs::File::open(path).await.map_err(|e| at(&e))?;
        // A pipe (`docker save IMAGE | rkt fetch docker-archive:/dev/stdin`) is read once.
        let seekable = file.metadata().await.map_err(|e| at(&e))?.is_file();
        let (compression, mut plain) = decompressed(file).await.map_err(|e| at(&e))?;
        let (file, scratch) = match compression {
            Compression::None if seekable => (path.to_path_buf(), None),
            _ => {
                let mut scratch = store.scratch_file()?;
                let what = if compression == Compression::None { "reading" } else { "decompressing" };
                let name = shown.file_name().unwrap_or(shown.as_os_str()).to_string_lossy();
                let mut counted = progress.track_as(Activity::Decompress, &name, None, &mut plain);
                decompress_into(&mut counted, scratch.file())
                    .await
                    .map_err(|e| OciError::Invalid(format!("{}: {what} the archive: {e}", shown.display())))?;
                (scratch.path(), Some(scratch))
            }
        };
        drop(plain);
        let reader = tokio::fs::File::open(&file).await.map_err(|e| at(&e))?;
        let mut archive = tokio_tar::Archive::new(tokio::io::BufReader::with_capacity(256 * 1024, reader));
        let mut entries = archive.entries().map_err(|e| OciError::Invalid(format!("{}: {e}", path.display())))?;
        let mut index = HashMap::new();
        let mut links = Vec::new();
        while let Some(entry) = poll_fn(|cx| Pin::new(&mut entries).poll_next(cx)).await {
            let entry = entry.map_err(|e| OciError::Invalid(format!("{}: unreadable tar: {e}", path.display())))?;
            let kind = entry.header().entry_type();
            let Ok(raw) = entry.path_bytes() else { continue };
            match rkt_store::go_tar::go_reads_alike(entry.header(), &raw, entry.effective_size()) {
                Err(why) => {
                    let name = String::from_utf8_lossy(&raw);
                    return Err(OciError::Invalid(format!("{}: entry {name:?} is {why}", path.display())));
                }
                // A directory, as Go reads it: no file of the archive.
                Ok(true) => continue,
                Ok(false) => {}
            }
            let Some(name) = clean(&raw) else { continue };
            if kind.is_file() {
                index.insert(name, (entry.raw_file_position(), entry.effective_size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Ok(Some(target)) = entry.link_name_bytes() else { continue };
                // A hard link names an archive path; a symlink, a path from its own directory.
                let target = match (kind.is_symlink(), name.rsplit_once('/')) {
                    (true, _) if target.starts_with(b"/") => continue,
                    (true, Some((dir, _))) => [dir.as_bytes(), b"/", &target].concat(),
                    _ => target.into_owned(),
                };
                if let Some(target) = clean(&target) {
                    links.push((name, target));
                }
            }
        }
        for _ in 0..MAX_LINKS {
            let before = index.len();
            for (name, target) in &links {
                if let Some(&found) = index.get(target) {
                    index.entry(name.clone()).or_insert(found);
                }
            }
            if index.len() == before {
                break;
            }
        }
        Ok(Container::Tar { file, shown, index, _scratch: scratch })
    }

    /// Opens a file of the image by its name inside the layout or archive; returns its size.
    pub async fn open(&self, name: &str) -> Result<(Reader, u64), OciError> {
        let clean_name = clean(name.as_bytes()).ok_or_else(|| OciError::Invalid(format!("bad file name {name:?}")))?;
        match self {
            Container::Dir(dir) => {
                let path = dir.join(&clean_name);
                let file =
                    tokio::fs::File::open(&path).await.map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
                let size = file.metadata().await.map_err(|e| OciError::Io(e.to_string()))?.len();
                Ok((Box::pin(tokio::io::BufReader::with_capacity(256 * 1024, file)), size))
            }
            Container::Tar { file, shown, index, .. } => {
                let (offset, size) = *index
                    .get(&clean_name)
                    .ok_or_else(|| OciError::Invalid(format!("{} has no {clean_name}", shown.display())))?;
                let mut f =
                    tokio::fs::File::open(file).await.map_err(|e| OciError::Io(format!("{}: {e}", shown.display())))?;
                f.seek(SeekFrom::Start(offset)).await.map_err(|e| OciError::Io(e.to_string()))?;
                Ok((Box::pin(tokio::io::BufReader::with_capacity(256 * 1024, f).take(size)), size))
            }
        }
    }

    /// Reads a small file whole, refusing one over `limit` bytes.
    pub async fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let (mut reader, size) = self.open(name).await?;
        if size > limit {
            return Err(OciError::Invalid(format!("{name} is {size} bytes, over the {limit}-byte limit")));
        }
        let mut out = Vec::with_capacity(size as usize);
        reader
            .as_mut()
            .take(limit + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| OciError::Io(format!("{name}: {e}")))?;
        Ok(out)
    }
}

/// Copies a decompressed archive into its scratch file, within the store's room on its disk.
async fn decompress_into(plain: &mut (impl AsyncRead + Unpin), out: &mut std::fs::File) -> std::io::Result<()> {
    let mut space = SpaceGuard::default();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = plain.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        space.write_all(out, &buffer[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn archive(entries: &[(&str, tokio_tar::EntryType, &str)]) -> (tempfile::TempDir, Container) {
        let mut builder = tokio_tar::Builder::new(Vec::new());
        for (name, kind, data_or_target) in entries {
            let mut header = tokio_tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            let data = if kind.is_file() {
                data_or_target.as_bytes()
            } else {
                header.set_link_name(data_or_target).unwrap();
                b""
            };
            header.set_size(data.len() as u64);
            header.set_path(name).unwrap();
            header.set_cksum();
            builder.append(&header, data).await.unwrap();
        }
        let bytes = builder.into_inner().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar"), bytes).unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let container = Container::tar(&dir.path().join("a.tar"), &store, &ProgressHandle::default()).await.unwrap();
        (dir, container)
    }

    #[tokio::test]
    async fn links_inside_the_archive_lead_to_their_files() {
        use tokio_tar::EntryType::{Link, Regular, Symlink};
        let (_dir, container) = archive(&[
            ("store/x.tar", Regular, "layer"),
            ("one/layer.tar", Symlink, "../store/x.tar"),
            ("two/layer.tar", Symlink, "../one/layer.tar"),
            ("copy.tar", Link, "store/x.tar"),
            ("out/layer.tar", Symlink, "../../x.tar"),
            ("abs/layer.tar", Symlink, "/store/x.tar"),
            ("loop/a", Symlink, "b"),
            ("loop/b", Symlink, "a"),
        ])
        .await;
        for name in ["store/x.tar", "one/layer.tar", "two/layer.tar", "copy.tar", "one/../copy.tar"] {
            assert_eq!(container.read_small(name, 100).await.unwrap(), b"layer", "{name}");
        }
        for name in ["out/layer.tar", "abs/layer.tar", "loop/a", "../store/x.tar"] {
            assert!(container.read_small(name, 100).await.is_err(), "{name}");
        }
    }
}
