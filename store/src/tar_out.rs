//! Writes the tar stream of a converted layer: ustar headers, with PAX records for long names,
//! long link targets, big numbers, times before 1970 or past ustar's, and extended attributes.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// What one entry of the output is.
pub struct OutEntry<'a> {
    pub path: &'a [u8],
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since 1970, before it too.
    pub mtime: i64,
    pub size: u64,
    pub link: &'a [u8],
    pub dev: (u32, u32),
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<'a> OutEntry<'a> {
    /// An entry owned by root with no link, device or attributes, dated 1970.
    pub fn plain(path: &'a [u8], kind: u8, mode: u32, size: u64) -> Self {
        OutEntry { path, kind, mode, uid: 0, gid: 0, mtime: 0, size, link: b"", dev: (0, 0), xattrs: &[] }
    }
}

/// The latest time ustar's 11 octal digits hold (year 2242).
const MAX_OCTAL_TIME: i64 = 0o77777777777;

fn octal(field: &mut [u8], value: u64) -> bool {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    if s.len() > field.len() - 1 {
        return false;
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
    true
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// The ustar block of `e`; what does not fit its fields travels in PAX records before it.
fn header(e: &OutEntry) -> [u8; 512] {
    let mut b = [0u8; 512];
    let (name, link) = (e.path, e.link);
    b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut b[100..108], u64::from(e.mode & 0o7777));
    octal(&mut b[108..116], e.uid.min(0o7777777));
    octal(&mut b[116..124], e.gid.min(0o7777777));
    octal(&mut b[124..136], e.size.min(0o77777777777));
    octal(&mut b[136..148], e.mtime.clamp(0, MAX_OCTAL_TIME) as u64);
    b[156] = e.kind;
    b[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], u64::from(e.dev.0));
    octal(&mut b[337..345], u64::from(e.dev.1));
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// The zeros that fill an entry's `size` bytes of data up to the next 512-byte block.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

async fn pad<W: AsyncWrite + Unpin>(out: &mut W, written: u64) -> std::io::Result<()> {
    out.write_all(&[0u8; 512][..padding(written)]).await
}

/// The blocks that come before an entry's data: PAX records for what ustar cannot hold, then
/// the ustar header.
pub fn header_blocks(entry: &OutEntry<'_>) -> Vec<u8> {
    let mut records = Vec::new();
    if entry.path.len() > 100 {
        records.extend(pax_record(b"path", entry.path));
    }
    if entry.link.len() > 100 {
        records.extend(pax_record(b"linkpath", entry.link));
    }
    if entry.uid > 0o7777777 {
        records.extend(pax_record(b"uid", entry.uid.to_string().as_bytes()));
    }
    if entry.gid > 0o7777777 {
        records.extend(pax_record(b"gid", entry.gid.to_string().as_bytes()));
    }
    if entry.size > 0o77777777777 {
        records.extend(pax_record(b"size", entry.size.to_string().as_bytes()));
    }
    if !(0..=MAX_OCTAL_TIME).contains(&entry.mtime) {
        records.extend(pax_record(b"mtime", entry.mtime.to_string().as_bytes()));
    }
    for (k, v) in entry.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        records.extend(pax_record(&key, v));
    }
    let mut out = Vec::with_capacity(512);
    if !records.is_empty() {
        let pax = OutEntry::plain(b"././@PaxHeader", b'x', 0o644, records.len() as u64);
        out.extend_from_slice(&header(&pax));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    out.extend_from_slice(&header(entry));
    out
}

/// Writes one entry; `data` must yield exactly `entry.size` bytes.
pub async fn write_entry<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    out: &mut W,
    entry: &OutEntry<'_>,
    data: &mut R,
) -> std::io::Result<()> {
    out.write_all(&header_blocks(entry)).await?;
    // tokio::io::copy moves 8 KiB at a time: a layer's data then costs a decoder call and a
    // pipe write per 8 KiB.
    let capacity = entry.size.clamp(1, 256 * 1024) as usize;
    let mut data = tokio::io::BufReader::with_capacity(capacity, tokio::io::AsyncReadExt::take(data, entry.size));
    let copied = tokio::io::copy_buf(&mut data, out).await?;
    if copied != entry.size {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a layer entry ended early"));
    }
    pad(out, entry.size).await
}

/// The end-of-archive marker, written only once everything before it has been verified.
pub async fn finish<W: AsyncWrite + Unpin>(out: &mut W) -> std::io::Result<()> {
    out.write_all(&[0u8; 1024]).await?;
    out.flush().await
}
