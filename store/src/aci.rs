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

/// Checks that Go's archive/tar (Docker's, podman's, umoci's, appc's tools') reads an entry
/// as the tar reader here does, where the two part ways; `Ok(true)` for a legacy regular entry
/// (type NUL) named with a trailing slash, which Go reads as a directory. Refused:
/// - a directory, link, device or fifo that gives a size: Go reads no data after such a
///   header and takes what follows for the next header, where the reader here skips it;
/// - a GNU header whose access and change time fields hold what is not a number: Go then
///   reads them as a ustar path prefix (for archives of Go before 1.8), the reader here not;
/// - a star header (ustar with `tar` at its end) whose path prefix fills its 131 bytes: Go
///   stops there, the reader here goes on into the time fields after it.
pub fn go_reads_alike(header: &tokio_tar::Header, name: &[u8], size: u64) -> Result<bool, String> {
    let kind = header.entry_type();
    // The type byte itself: the reader here counts NUL as '0'.
    let legacy_directory = header.as_bytes()[156] == 0 && name.ends_with(b"/");
    let header_only = legacy_directory
        || kind.is_dir()
        || kind.is_symlink()
        || kind.is_hard_link()
        || kind.is_character_special()
        || kind.is_block_special()
        || kind.is_fifo();
    if header_only && size > 0 {
        return Err(format!("a {} that claims {size} bytes of data", kind_name(kind, legacy_directory)));
    }
    let block = header.as_bytes();
    if &block[257..265] == b"ustar  \0" {
        let unreadable = |field: &[u8]| field[0] != 0 && go_numeric(field).is_none();
        if unreadable(&block[345..357]) || unreadable(&block[357..369]) {
            let prefix = &block[345..500];
            let prefix = &prefix[..prefix.iter().position(|b| *b == 0).unwrap_or(prefix.len())];
            if !prefix.is_empty() && prefix.is_ascii() {
                return Err(format!(
                    "a GNU header whose time fields Go reads as the path prefix {:?}",
                    String::from_utf8_lossy(prefix)
                ));
            }
        }
    }
    let star = &block[257..265] == b"ustar\x0000" && &block[508..512] == b"tar\0";
    if star && !block[345..476].contains(&0) && block[476] != 0 {
        return Err("a star header whose path prefix fills its 131 bytes".into());
    }
    Ok(legacy_directory)
}

fn kind_name(kind: tokio_tar::EntryType, legacy_directory: bool) -> &'static str {
    match kind {
        _ if legacy_directory => "directory",
        k if k.is_dir() => "directory",
        k if k.is_symlink() => "symlink",
        k if k.is_hard_link() => "hard link",
        k if k.is_fifo() => "fifo",
        _ => "device",
    }
}

/// A numeric header field as Go reads it: base 256 when its first bit is set, else octal
/// digits between spaces and NULs (up to the first NUL inside); `None` where Go fails.
fn go_numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let invert = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut value: u64 = 0;
        for (i, byte) in field.iter().enumerate() {
            let byte = (byte ^ invert) & if i == 0 { 0x7f } else { 0xff };
            if value >> 56 > 0 {
                return None;
            }
            value = value << 8 | u64::from(byte);
        }
        return (value >> 63 == 0).then_some(value);
    }
    let padding = |b: &u8| *b == 0 || *b == b' ';
    let Some(start) = field.iter().position(|b| !padding(b)) else { return Some(0) };
    let end = field.iter().rposition(|b| !padding(b)).map_or(start, |e| e + 1);
    let inner = &field[start..end];
    let digits = &inner[..inner.iter().position(|b| *b == 0).unwrap_or(inner.len())];
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

/// The whole seconds of a PAX `mtime` record (`-315619200`, `1700000000.25`), rounded down as
/// Go's archive/tar gives them; `None` for a value it refuses.
pub fn pax_time(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = seconds.strip_prefix(['+', '-']).unwrap_or(seconds);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = seconds.parse().ok()?;
    let below_zero = seconds.starts_with('-') && fraction.bytes().any(|b| b != b'0');
    Some(if below_zero { whole.checked_sub(1)? } else { whole })
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

    #[test]
    fn pax_times_round_down_as_go_reads_them() {
        assert_eq!(pax_time(b"-315619200"), Some(-315_619_200));
        assert_eq!(pax_time(b"1796597816.737665754"), Some(1_796_597_816));
        assert_eq!(pax_time(b"-0.5"), Some(-1));
        assert_eq!(pax_time(b"-7.000"), Some(-7));
        assert_eq!(pax_time(b"+5"), Some(5));
        for bad in [&b""[..], b"-", b"1.2x", b"1e9", b" 5", b"99999999999999999999"] {
            assert_eq!(pax_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn numeric_fields_as_go_reads_them() {
        assert_eq!(go_numeric(b"00000001750\0"), Some(0o1750));
        assert_eq!(go_numeric(b"  1750 \0\0\0\0\0"), Some(0o1750));
        assert_eq!(go_numeric(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(go_numeric(b"12\x0034\0\0\0\0\0\0"), Some(0o12));
        assert_eq!(go_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        for bad in
            [&b"pre\0\0\0\0\0\0\0\0\0"[..], b"+1750\0\0\0\0\0\0\0", b"12 34\0\0\0\0\0\0\0", b"8\0\0\0\0\0\0\0\0\0\0\0"]
        {
            assert_eq!(go_numeric(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(go_numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "past 63 bits");
    }
}
