//! Entries a layer gives twice. Docker and umoci apply a tar's entries in turn, so a second
//! entry that is the first again (the same kind, metadata, link or content) changes nothing;
//! an ACI may hold each path once. The builder leaves such repeats out, and reports the others
//! (`EntryError::GivenAgain`): the layer's converter then keeps only each path's last entry.
//!
//! A repeat is compared with the entry already in the blob: repeats are rare enough that the
//! blob is indexed only at the first one, and the earlier entry read back.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::aci::archive;
use crate::error::{Result, StoreError};
use crate::keyed_hash::{HashedMap, HashedSet, KeyedHash};
use crate::tar_entry::{entry_end, entry_info, next_entry, Kind};
use crate::tar_out::OutEntry;

/// Where each entry of the blob written so far starts, by path, and the paths that hard links
/// point to (an entry linked to cannot be given again alike: Docker's second entry is a new
/// file, and the link keeps the first).
pub(crate) struct WrittenIndex {
    hash: KeyedHash,
    starts: HashedMap<u64>,
    linked: HashedSet,
}

impl WrittenIndex {
    /// Indexes the first `len` bytes of the blob `file`: whole entries, as the builder wrote them.
    pub(crate) async fn of_blob(file: &File, len: u64) -> Result<Self> {
        let mut index =
            WrittenIndex { hash: KeyedHash::default(), starts: HashedMap::default(), linked: HashedSet::default() };
        let reader = tokio::io::BufReader::new(ReadAt { file, pos: 0, end: len });
        let mut archive = tokio_tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(|e| archive_error(&e))?;
        let mut start = 0u64;
        while let Some(mut entry) = next_entry(&mut entries).await? {
            let end = entry_end(&entry);
            if let Some(info) = entry_info(&mut entry).await? {
                let link = match &info.kind {
                    Kind::HardLink(target) => Some(target.as_slice()),
                    _ => None,
                };
                index.add(&info.path, start, link);
            }
            start = end;
        }
        Ok(index)
    }

    /// Records an entry written at `start`, and the path it links to if it is a hard link.
    pub(crate) fn add(&mut self, path: &[u8], start: u64, hardlink_to: Option<&[u8]>) {
        self.starts.insert(self.hash.of(path), start);
        if let Some(target) = hardlink_to {
            self.linked.insert(self.hash.of(target));
        }
    }

    /// Reads `entry`'s data from `data` to its end and checks that `entry` is the one the blob
    /// `file` (its first `len` bytes written) holds at its path: `Err` when it is not, or when a
    /// hard link points to the one written.
    pub(crate) async fn check_repeat<R: AsyncRead + Unpin>(
        &self,
        file: &File,
        len: u64,
        entry: &OutEntry<'_>,
        data: &mut R,
    ) -> std::result::Result<(), RepeatError> {
        let shown = String::from_utf8_lossy(entry.path);
        let key = self.hash.of(entry.path);
        let differs = || RepeatError::Refused(archive(format!("duplicate entry {shown:?}: given again otherwise")));
        // Every path the layout check holds was written, so indexed; `differs` only for safety.
        let start = *self.starts.get(&key).ok_or_else(differs)?;
        if self.linked.contains(&key) {
            return Err(RepeatError::Refused(archive(format!(
                "duplicate entry {shown:?}: given again after a hard link to it"
            ))));
        }
        let mut archive = tokio_tar::Archive::new(ReadAt { file, pos: start, end: len });
        let mut entries = archive.entries().map_err(|e| RepeatError::Refused(archive_error(&e)))?;
        let Some(mut first) = next_entry(&mut entries).await.map_err(RepeatError::Refused)? else {
            return Err(differs());
        };
        let Some(info) = entry_info(&mut first).await.map_err(RepeatError::Refused)? else {
            return Err(differs());
        };
        let size = if info.kind == Kind::File { first.effective_size() } else { 0 };
        let written = crate::aci_builder::out_entry(&info, size);
        if info.path != entry.path || !alike(&written, entry) {
            return Err(differs());
        }
        if same_bytes(&mut first, data, entry.size).await? {
            Ok(())
        } else {
            Err(differs())
        }
    }
}

/// Why an entry given again cannot be left out: the new entry's data could not be read, or it
/// is not the entry written.
pub(crate) enum RepeatError {
    Read(io::Error),
    Refused(StoreError),
}

fn alike(a: &OutEntry<'_>, b: &OutEntry<'_>) -> bool {
    a.kind == b.kind
        && a.mode & 0o7777 == b.mode & 0o7777
        && (a.uid, a.gid, a.mtime, a.size, a.dev) == (b.uid, b.gid, b.mtime, b.size, b.dev)
        && a.link == b.link
        && a.xattrs == b.xattrs
}

/// Reads `size` bytes of both and compares them; all of `new`'s are read, whatever they hold.
async fn same_bytes<A: AsyncRead + Unpin, B: AsyncRead + Unpin>(
    written: &mut A,
    new: &mut B,
    size: u64,
) -> std::result::Result<bool, RepeatError> {
    const CHUNK: usize = 64 * 1024;
    let (mut ours, mut theirs) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut same = true;
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        new.read_exact(&mut theirs[..n]).await.map_err(RepeatError::Read)?;
        if same {
            let read = written.read_exact(&mut ours[..n]).await;
            same = read.is_ok() && ours[..n] == theirs[..n];
        }
        left -= n as u64;
    }
    Ok(same)
}

fn archive_error(e: &io::Error) -> StoreError {
    archive(format!("the blob being written: {e}"))
}

/// Reads a file by offset, from `pos` up to `end`, leaving the file's own offset (where the
/// builder writes) alone.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl AsyncRead for ReadAt<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let want = self.end.saturating_sub(self.pos).min(buf.remaining() as u64) as usize;
        let n = self.file.read_at(buf.initialize_unfilled_to(want), self.pos)?;
        buf.advance(n);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}
