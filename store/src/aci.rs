//! Reading ACI archives: compression detection, entry path rules and the layout check that
//! every imported archive passes before anything of it becomes visible.

use std::pin::Pin;

use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, XzDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::error::{Result, StoreError};
use crate::path_tree::PathTree;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    fn from_magic(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || is_zstd_skippable_frame(head) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A zstd stream may open with skippable frames (metadata, magic 0x184D2A50 to 0x184D2A5F,
/// little-endian), which `zstd -d` and the decoder pass over.
fn is_zstd_skippable_frame(head: &[u8]) -> bool {
    matches!(head, [low, 0x2a, 0x4d, 0x18, ..] if low & 0xf0 == 0x50)
}

pub type BoxedReader<'a> = Pin<Box<dyn AsyncRead + Send + 'a>>;

const READ_BUFFER: usize = 256 * 1024;

/// Wraps `src` in the decoder its first bytes call for; multi-member gzip (pigz) and
/// concatenated streams of the other formats decode whole.
pub async fn decompressed<'a, R: AsyncRead + Send + Unpin + 'a>(mut src: R) -> Result<(Compression, BoxedReader<'a>)> {
    let mut head = Vec::with_capacity(6);
    while head.len() < 6 {
        let mut byte = [0u8; 6];
        let want = 6 - head.len();
        let n = src.read(&mut byte[..want]).await.map_err(StoreError::Stream)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&byte[..n]);
    }
    let kind = Compression::from_magic(&head);
    let raw = BufReader::with_capacity(READ_BUFFER, std::io::Cursor::new(head).chain(src));
    let reader: BoxedReader<'a> = match kind {
        Compression::None => Box::pin(raw),
        Compression::Gzip => {
            let mut d = GzipDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Bzip2 => {
            let mut d = BzDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Xz => {
            let mut d = XzDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Zstd => {
            let mut d = ZstdDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(d)
        }
    };
    Ok((kind, reader))
}

/// Turns a tar entry name into clean components: `./` and repeated slashes go, while absolute
/// names, `..` and NUL bytes are refused. `None` is the archive's own root (`./`).
pub fn clean_entry_path(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let shown = String::from_utf8_lossy(raw);
    if raw.starts_with(b"/") {
        return Err(format!("entry {shown:?} has an absolute path"));
    }
    if raw.contains(&0) {
        return Err(format!("entry {shown:?} has a NUL byte in its name"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return Err(format!("entry {shown:?} climbs out with ..")),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The last component of a clean path.
pub fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

/// The parent of a clean path, `None` at the top.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|b| *b == b'/').map(|i| &path[..i])
}

pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// What a whiteout entry hides in the layers below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout {
    /// `.wh.NAME`: the sibling called NAME and all below it.
    Entry(Vec<u8>),
    /// `.wh..wh..opq`: everything inside the directory that holds it.
    Opaque(Vec<u8>),
}

/// Recognises a whiteout among clean paths; names that look like whiteouts but cannot be one
/// (`.wh.`, `.wh..`, other `.wh..wh.` markers) are refused.
pub fn whiteout(path: &[u8]) -> Result<Option<Whiteout>, String> {
    let name = base_name(path);
    let dir = parent(path).unwrap_or(b"");
    if name == OPAQUE_WHITEOUT {
        return Ok(Some(Whiteout::Opaque(dir.to_vec())));
    }
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(None);
    };
    if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(WHITEOUT_PREFIX) {
        return Err(format!("entry {:?} is not a valid whiteout", String::from_utf8_lossy(path)));
    }
    let mut target = dir.to_vec();
    if !target.is_empty() {
        target.push(b'/');
    }
    target.extend_from_slice(hidden);
    Ok(Some(Whiteout::Entry(target)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryClass {
    Directory,
    Other,
}

/// The longest path an entry may have inside `rootfs/`: with its leading `/` and the closing
/// NUL, the most a Linux path can hold (PATH_MAX). Longer ones could never be opened by name in
/// the container, and they are what deep-directory bombs are made of.
pub const MAX_ROOTFS_PATH: usize = 4094;

/// The rules of an ACI's layout, fed one entry at a time: only `manifest` and `rootfs/…` at
/// the top, no duplicates, nothing below a non-directory, hard links only to earlier entries,
/// no path longer than `MAX_ROOTFS_PATH`. Each entry costs about its path's length.
#[derive(Default)]
pub struct LayoutCheck {
    seen: PathTree<EntryClass>,
    has_rootfs: bool,
}

impl LayoutCheck {
    pub fn entry(&mut self, path: &[u8], class: EntryClass, hardlink_to: Option<&[u8]>) -> Result<()> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let top = path.split(|b| *b == b'/').next().unwrap_or(path);
        match top {
            b"manifest" if path == b"manifest" => {
                if class == EntryClass::Directory || hardlink_to.is_some() {
                    return Err(archive("manifest is not a regular file".into()));
                }
            }
            b"rootfs" => self.has_rootfs = true,
            _ => {
                return Err(archive(format!("unexpected entry {:?}: an ACI holds only manifest and rootfs/", shown())))
            }
        }
        if path.len() > b"rootfs/".len() + MAX_ROOTFS_PATH {
            let start = String::from_utf8_lossy(&path[..64]);
            return Err(archive(format!(
                "entry \"{start}…\" is {} bytes long, more than the {MAX_ROOTFS_PATH} a path inside rootfs/ may have",
                path.len() - b"rootfs/".len()
            )));
        }
        whiteout(path).map_err(archive)?;
        if let Some(dir) = parent(path) {
            if dir.split(|b| *b == b'/').any(|part| part.starts_with(WHITEOUT_PREFIX)) {
                return Err(archive(format!("entry {:?} lies below a whiteout", shown())));
            }
        }
        self.seen.walk(path);
        let walked = self.seen.walked();
        let (node, _) = *walked.last().expect("a path has at least one component");
        for &(dir, end) in &walked[..walked.len() - 1] {
            if self.seen.value(dir) == Some(&EntryClass::Other) {
                let dir = String::from_utf8_lossy(&path[..end]);
                return Err(archive(format!("entry {:?} lies below {dir:?}, which is not a directory", shown())));
            }
        }
        if let Some(target) = hardlink_to {
            let earlier_file = self.seen.find(target).and_then(|t| self.seen.value(t)) == Some(&EntryClass::Other);
            if !target.starts_with(b"rootfs/") || !earlier_file {
                let target = String::from_utf8_lossy(target);
                return Err(archive(format!(
                    "hard link {:?} points to {target:?}, which is not an earlier file of rootfs/",
                    shown()
                )));
            }
        }
        if self.seen.set(node, class).is_some() {
            return Err(archive(format!("duplicate entry {:?}", shown())));
        }
        Ok(())
    }

    /// What `path` was taken as before, if anything. It walks `path` as `entry` does, so that
    /// the two cost about one walk.
    pub fn taken(&mut self, path: &[u8]) -> Option<EntryClass> {
        self.seen.walk(path);
        let &(node, _) = self.seen.walked().last()?;
        self.seen.value(node).copied()
    }

    pub fn finish(&self, has_manifest: bool) -> Result<()> {
        if !has_manifest {
            return Err(archive("missing manifest".into()));
        }
        if !self.has_rootfs {
            return Err(archive("missing rootfs/".into()));
        }
        Ok(())
    }
}

pub(crate) fn archive(message: String) -> StoreError {
    StoreError::Archive(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        assert_eq!(clean_entry_path(b"./rootfs//bin/./sh").unwrap(), Some(b"rootfs/bin/sh".to_vec()));
        assert_eq!(clean_entry_path(b"./").unwrap(), None);
        assert!(clean_entry_path(b"/etc/passwd").is_err());
        assert!(clean_entry_path(b"rootfs/../../x").is_err());
        assert!(clean_entry_path(b"rootfs/a\0b").is_err());
    }

    #[test]
    fn whiteouts() {
        assert_eq!(whiteout(b"rootfs/etc/.wh.passwd").unwrap(), Some(Whiteout::Entry(b"rootfs/etc/passwd".to_vec())));
        assert_eq!(whiteout(b"rootfs/etc/.wh..wh..opq").unwrap(), Some(Whiteout::Opaque(b"rootfs/etc".to_vec())));
        assert_eq!(whiteout(b"rootfs/etc/passwd").unwrap(), None);
        for bad in [&b"rootfs/.wh."[..], b"rootfs/.wh..", b"rootfs/.wh...", b"rootfs/.wh..wh.plnk"] {
            assert!(whiteout(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn layout_rules() {
        let mut c = LayoutCheck::default();
        c.entry(b"manifest", EntryClass::Other, None).unwrap();
        c.entry(b"rootfs", EntryClass::Directory, None).unwrap();
        c.entry(b"rootfs/link", EntryClass::Other, None).unwrap();
        assert!(c.entry(b"rootfs/link/passwd", EntryClass::Other, None).is_err());
        assert!(c.entry(b"rootfs/link", EntryClass::Other, None).is_err());
        assert!(c.entry(b"etc/passwd", EntryClass::Other, None).is_err());
        assert!(c.entry(b"rootfs/hl", EntryClass::Other, Some(b"manifest")).is_err());
        assert!(c.entry(b"rootfs/hl", EntryClass::Other, Some(b"rootfs/missing")).is_err());
        c.entry(b"rootfs/hl", EntryClass::Other, Some(b"rootfs/link")).unwrap();
        c.finish(true).unwrap();
        assert!(LayoutCheck::default().finish(true).is_err());
    }
}
