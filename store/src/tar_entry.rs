//! Turns tar entries into the few kinds an image may hold, with their metadata, refusing the rest.

use std::future::poll_fn;
use std::os::unix::ffi::OsStrExt;
use std::pin::Pin;

use futures_core::Stream;
use tokio::io::AsyncRead;
use tokio_tar::{Entries, Entry};

use crate::aci::{archive, clean_entry_path};
use crate::error::{Result, StoreError};
use crate::tree_writer::{Meta, Special, TreeWriter};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// The clean archive path of the entry linked to.
    HardLink(Vec<u8>),
    Special(SpecialKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Char(u64),
    Block(u64),
    Fifo,
}

pub struct EntryInfo {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub meta: Meta,
    /// Where this entry's data ends in the tar stream, padding included.
    pub end: u64,
}

/// The next entry of a tar stream, or `None` at its end.
pub async fn next_entry<R: AsyncRead + Unpin>(
    entries: &mut Entries<R>,
) -> Result<Option<Entry<tokio_tar::Archive<R>>>> {
    match poll_fn(|cx| Pin::new(&mut *entries).poll_next(cx)).await {
        None => Ok(None),
        Some(Ok(entry)) => Ok(Some(entry)),
        Some(Err(e)) => Err(archive(format!("unreadable tar: {e}"))),
    }
}

fn field<T>(value: std::io::Result<T>, path: &[u8], what: &str) -> Result<T> {
    value.map_err(|e| archive(format!("entry {:?} has a bad {what}: {e}", String::from_utf8_lossy(path))))
}

/// Where an entry's data ends in the tar stream, padding included: where the next entry starts.
pub fn entry_end<R: AsyncRead + Unpin>(entry: &Entry<R>) -> u64 {
    entry.raw_file_position() + entry.effective_size().div_ceil(512) * 512
}

/// Reads what an entry is. `None` for entries that carry nothing (the archive root, global
/// PAX headers).
pub async fn entry_info<R: AsyncRead + Unpin>(entry: &mut Entry<R>) -> Result<Option<EntryInfo>> {
    let etype = entry.header().entry_type();
    if etype.is_pax_global_extensions() {
        return Ok(None);
    }
    let raw = entry.path_bytes().map_err(|e| archive(format!("unreadable entry name: {e}")))?.into_owned();
    let legacy_directory = crate::go_tar::go_reads_alike(entry.header(), &raw, entry.effective_size())
        .map_err(|why| archive(format!("entry {:?} is {why}", String::from_utf8_lossy(&raw))))?;
    let Some(path) = clean_entry_path(&raw).map_err(archive)? else {
        if !etype.is_dir() && !legacy_directory {
            return Err(archive("an entry without a name that is not a directory".into()));
        }
        return Ok(None);
    };
    let header = entry.header();
    let mode = field(header.mode(), &path, "mode")?;
    let uid = field(header.uid(), &path, "uid")?;
    let gid = field(header.gid(), &path, "gid")?;
    let mut pax_mtime = None;
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(archive(format!("entry {:?} has an owner beyond 32 bits", String::from_utf8_lossy(&path))));
    };
    let device = || -> Result<u64> {
        let major = field(header.device_major(), &path, "device number")?.unwrap_or(0);
        let minor = field(header.device_minor(), &path, "device number")?.unwrap_or(0);
        Ok(nix::sys::stat::makedev(major.into(), minor.into()))
    };
    let link = || -> Result<Vec<u8>> {
        let target = entry.link_name_bytes().map_err(|e| archive(format!("unreadable link target: {e}")))?;
        match target {
            Some(t) if !t.is_empty() => Ok(t.into_owned()),
            _ => Err(archive(format!("link {:?} has no target", String::from_utf8_lossy(&path)))),
        }
    };
    let kind = if legacy_directory || etype.is_dir() {
        Kind::Dir
    } else if etype.is_file() || etype.is_contiguous() {
        Kind::File
    } else if etype.is_symlink() {
        Kind::Symlink(link()?)
    } else if etype.is_hard_link() {
        let target = link()?;
        let clean = clean_entry_path(&target)
            .map_err(archive)?
            .ok_or_else(|| archive("hard link to the archive root".into()))?;
        Kind::HardLink(clean)
    } else if etype.is_character_special() {
        Kind::Special(SpecialKind::Char(device()?))
    } else if etype.is_block_special() {
        Kind::Special(SpecialKind::Block(device()?))
    } else if etype.is_fifo() {
        Kind::Special(SpecialKind::Fifo)
    } else {
        return Err(archive(format!(
            "entry {:?} has an unsupported type {:?}",
            String::from_utf8_lossy(&path),
            etype.as_byte() as char
        )));
    };
    let end = entry_end(entry);
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().await.map_err(|e| archive(format!("bad PAX header: {e}")))? {
        for ext in extensions {
            let ext = ext.map_err(|e| archive(format!("bad PAX header: {e}")))?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
            if ext.key_bytes() == b"mtime" {
                pax_mtime = Some(ext.value_bytes().to_vec());
            }
            // Go's archive/tar (appc's tools, rkt) reads such an entry as another file, at the
            // path its records give; read as it stands, it would be something else.
            if ext.key_bytes().starts_with(b"GNU.sparse.") {
                return Err(archive(format!(
                    "entry {:?} is a GNU tar sparse file, which an ACI may not hold",
                    String::from_utf8_lossy(&path)
                )));
            }
        }
    }
    let mtime = crate::go_tar::entry_mtime(entry.header(), pax_mtime.as_deref())
        .map_err(|why| archive(format!("entry {:?}: {why}", String::from_utf8_lossy(&path))))?;
    Ok(Some(EntryInfo { path, kind, meta: Meta { mode, uid, gid, mtime, xattrs }, end }))
}

/// Writes one entry below `writer`'s root at `rel`, its path with the image prefix taken off;
/// `link_prefix` is taken off hard link targets the same way.
pub async fn write_entry<R: AsyncRead + Unpin>(
    writer: &mut TreeWriter,
    rel: &[u8],
    link_prefix: &[u8],
    info: &EntryInfo,
    entry: &mut Entry<R>,
) -> Result<()> {
    let shown = || String::from_utf8_lossy(rel).into_owned();
    let dest = writer.root_path().join(std::ffi::OsStr::from_bytes(rel));
    let io = |e: std::io::Error| StoreError::Io { path: dest.clone(), source: e };
    match &info.kind {
        Kind::Dir => writer.dir(rel, info.meta.clone()).map_err(io),
        Kind::File => writer.file(rel, &info.meta, entry).await.map_err(io),
        Kind::Symlink(target) => writer.symlink(rel, target, &info.meta).map_err(io),
        Kind::HardLink(target) => {
            let target = target
                .strip_prefix(link_prefix)
                .ok_or_else(|| archive(format!("hard link {:?} leaves the root", shown())))?;
            writer.hardlink(rel, target).map_err(io)
        }
        Kind::Special(s) => {
            let special = match *s {
                SpecialKind::Char(d) => Special::Char(d),
                SpecialKind::Block(d) => Special::Block(d),
                SpecialKind::Fifo => Special::Fifo,
            };
            writer.special(rel, special, &info.meta).map_err(io)
        }
    }
}
