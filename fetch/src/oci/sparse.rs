//! GNU tar's sparse files in PAX form (formats 0.0, 0.1 and 1.0), in layers. Go's archive/tar,
//! and with it Docker, containerd, podman and umoci, reads such an entry as the whole file it
//! stands for, its holes as zeros, under the name its records give; read as a plain entry, it
//! would be another file at another path (`d/GNUSparseFile.123/f`, the map and data as its
//! bytes). A converted layer carries the whole file, so every later reader of the ACI sees it.
//! Maps are checked as Go checks them: whatever Go refuses, this refuses.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The most a 1.0 map may take of the entry's data (Go's limit for such side data).
const MAX_MAP_BYTES: usize = 1 << 20;

/// An entry that stands for a sparse file, as its PAX records describe it.
pub struct SparseRecords {
    /// The file's name, when the records give one.
    pub name: Option<Vec<u8>>,
    /// The file's size, holes included; without one, the entry's own.
    size: Option<u64>,
    /// The data regions (offset, length), when the records carry them; format 1.0 keeps them
    /// at the start of the entry's data.
    regions: Option<Vec<(u64, u64)>>,
}

/// Reads an entry's PAX records for a sparse file. `Ok(None)`: the entry is not one (for Go
/// neither, including records of a version it does not know).
pub fn sparse_records(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<SparseRecords>, String> {
    let last = |key: &[u8]| records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice());
    let text = |key: &[u8]| last(key).map(|v| String::from_utf8_lossy(v).into_owned());
    // Format 0.0 repeats `offset` and `numbytes` records, in turn, one pair per region.
    let mut pairs = Vec::new();
    for (key, value) in records {
        let want: &[u8] = if pairs.len() % 2 == 0 { b"GNU.sparse.offset" } else { b"GNU.sparse.numbytes" };
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            if key != want || value.contains(&b',') {
                return Err("its GNU.sparse.offset and numbytes records are out of turn".into());
            }
            pairs.push(String::from_utf8_lossy(value).into_owned());
        }
    }
    let map = if pairs.is_empty() { text(b"GNU.sparse.map") } else { Some(pairs.join(",")) };
    let version_1 = match (text(b"GNU.sparse.major").as_deref(), text(b"GNU.sparse.minor").as_deref()) {
        (Some("0"), Some("0" | "1")) => false,
        (Some("1"), Some("0")) => true,
        (None, None) if map.as_deref().is_some_and(|m| !m.is_empty()) => false,
        _ => return Ok(None),
    };
    let size_text = text(b"GNU.sparse.size").or_else(|| text(b"GNU.sparse.realsize"));
    let size = match size_text {
        Some(s) => Some(number(&s).ok_or_else(|| format!("its sparse size {s:?} is not a size"))?),
        None => None,
    };
    let name = last(b"GNU.sparse.name").filter(|n| !n.is_empty()).map(<[u8]>::to_vec);
    let regions = if version_1 { None } else { Some(regions_0x(&text(b"GNU.sparse.numblocks"), &map)?) };
    Ok(Some(SparseRecords { name, size, regions }))
}

/// A number as Go's `strconv.ParseInt(s, 10, 64)` reads it, when it is not negative.
fn number(s: &str) -> Option<u64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<i64>().ok()?;
    match negative {
        true if n == 0 => Some(0),
        true => None,
        false => Some(n as u64),
    }
}

fn regions_0x(count: &Option<String>, map: &Option<String>) -> Result<Vec<(u64, u64)>, String> {
    let count = count.as_deref().and_then(number).ok_or("its sparse map has no valid count")?;
    let map = map.as_deref().unwrap_or("");
    let fields: Vec<&str> = if map.is_empty() { Vec::new() } else { map.split(',').collect() };
    if count.checked_mul(2) != Some(fields.len() as u64) {
        return Err("its sparse map does not hold as many regions as it says".into());
    }
    pairs(&fields)
}

fn pairs(fields: &[&str]) -> Result<Vec<(u64, u64)>, String> {
    fields
        .chunks(2)
        .map(|p| match (number(p[0]), number(p[1])) {
            (Some(offset), Some(length)) => Ok((offset, length)),
            _ => Err(format!("its sparse map has a region {},{} that is not one", p[0], p[1])),
        })
        .collect()
}

/// Go's rules: regions in order, none overlapping another or ending past the file.
fn check(regions: &[(u64, u64)], size: u64) -> Result<(), String> {
    let mut end_before = 0;
    for &(offset, length) in regions {
        let end = offset.checked_add(length).filter(|e| *e <= i64::MAX as u64).ok_or("a sparse region overflows")?;
        if end > size {
            return Err("a sparse region ends past the end of the file".into());
        }
        if offset < end_before {
            return Err("its sparse regions overlap or are out of order".into());
        }
        end_before = end;
    }
    Ok(())
}

/// A 1.0 map: decimal numbers a line each (the count, then offset and length per region), in
/// whole 512-byte blocks at the start of the data. Returns the regions and the bytes it took.
async fn read_map_1x0<R: AsyncRead + Unpin>(data: &mut R) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut buffer = Vec::new();
    let (mut lines, mut wanted) = (0, 1);
    let mut count = None;
    loop {
        while lines < wanted {
            if buffer.len() + 512 > MAX_MAP_BYTES {
                return Err("its sparse map is over 1 MiB".into());
            }
            let mut block = [0u8; 512];
            data.read_exact(&mut block).await.map_err(|_| "its sparse map runs past its data".to_string())?;
            lines += block.iter().filter(|b| **b == b'\n').count();
            buffer.extend_from_slice(&block);
        }
        let tokens: Vec<&str> =
            buffer.split(|b| *b == b'\n').take(wanted).map(|t| std::str::from_utf8(t).unwrap_or("?")).collect();
        if count.is_some() {
            return Ok((pairs(&tokens[1..])?, buffer.len() as u64));
        }
        // Two lines a region, and no more lines than 1 MiB holds.
        let n =
            number(tokens[0]).filter(|n| *n <= MAX_MAP_BYTES as u64 / 2).ok_or("its sparse map has no valid count")?;
        count = Some(n);
        wanted = 1 + 2 * n as usize;
    }
}

impl SparseRecords {
    /// The file's content: `data` (the entry's, of `stored` bytes) expanded, after the map is
    /// read from it where the format keeps it there, and checked against what is stored.
    pub async fn expand<R: AsyncRead + Unpin>(&self, mut data: R, stored: u64) -> Result<Expanded<R>, String> {
        let (regions, map_bytes) = match &self.regions {
            Some(r) => (r.clone(), 0),
            None => read_map_1x0(&mut data).await?,
        };
        let size = self.size.unwrap_or(stored);
        check(&regions, size)?;
        let dense: u64 = regions.iter().map(|r| r.1).sum();
        if map_bytes.checked_add(dense) != Some(stored) {
            return Err(format!(
                "its sparse map accounts for {dense} bytes of data, and the entry holds {}",
                stored.saturating_sub(map_bytes)
            ));
        }
        Ok(Expanded { inner: data, regions, next: 0, pos: 0, size })
    }
}

/// The whole file: zeros where the map has holes, the entry's data where it has regions.
pub struct Expanded<R> {
    inner: R,
    regions: Vec<(u64, u64)>,
    next: usize,
    pos: u64,
    size: u64,
}

impl<R> Expanded<R> {
    /// The file's size, holes included.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Expanded<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.regions.get(this.next).is_some_and(|(offset, length)| offset + length <= this.pos) {
            this.next += 1;
        }
        let room = buf.remaining() as u64;
        if this.pos == this.size || room == 0 {
            return Poll::Ready(Ok(()));
        }
        match this.regions.get(this.next) {
            Some(&(offset, length)) if this.pos >= offset => {
                let want = (offset + length - this.pos).min(room) as usize;
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(want));
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
                let n = part.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
                }
                buf.advance(n);
                this.pos += n as u64;
            }
            next => {
                let hole_end = next.map_or(this.size, |r| r.0);
                let n = (hole_end - this.pos).min(room).min(ZEROS.len() as u64) as usize;
                buf.put_slice(&ZEROS[..n]);
                this.pos += n as u64;
            }
        }
        Poll::Ready(Ok(()))
    }
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
