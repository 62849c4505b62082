//! Where an image's files are: a directory (an OCI layout) or an uncompressed tar (an OCI
//! archive or `docker save`'s tarball), read in place through an index of its entries.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::OciError;

/// A stream of an image file or blob.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

pub enum Container {
    Dir(PathBuf),
    Tar { file: PathBuf, index: HashMap<String, (u64, u64)> },
}

/// `a/./b//c` → `a/b/c`; names that climb out are not indexed.
fn clean(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl Container {
    pub fn dir(path: &Path) -> Self {
        Container::Dir(path.to_path_buf())
    }

    /// Indexes the regular files of an uncompressed tar by name: offset and size.
    pub async fn tar(path: &Path) -> Result<Self, OciError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        let mut head = [0u8; 2];
        let mut probe =
            tokio::fs::File::open(path).await.map_err(|e| OciError::Io(format!("{}: {e}", path.display())))?;
        if probe.read_exact(&mut head).await.is_ok() && (head == [0x1f, 0x8b] || head == [0x28, 0xb5]) {
            return Err(OciError::Invalid(format!(
                "{}: compressed archives are not supported; decompress it first",
                path.display()
            )));
        }
        let mut archive = tokio_tar::Archive::new(tokio::io::BufReader::with_capacity(256 * 1024, file));
        let mut entries = archive.entries().map_err(|e| OciError::Invalid(format!("{}: {e}", path.display())))?;
        let mut index = HashMap::new();
        while let Some(entry) = poll_fn(|cx| Pin::new(&mut entries).poll_next(cx)).await {
            let entry = entry.map_err(|e| OciError::Invalid(format!("{}: unreadable tar: {e}", path.display())))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let Ok(raw) = entry.path_bytes() else { continue };
            if let Some(name) = clean(&raw) {
                index.insert(name, (entry.raw_file_position(), entry.effective_size()));
            }
        }
        Ok(Container::Tar { file: path.to_path_buf(), index })
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
            Container::Tar { file, index } => {
                let (offset, size) = *index
                    .get(&clean_name)
                    .ok_or_else(|| OciError::Invalid(format!("{} has no {clean_name}", file.display())))?;
                let mut f =
                    tokio::fs::File::open(file).await.map_err(|e| OciError::Io(format!("{}: {e}", file.display())))?;
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
