//! How Go's archive/tar reads a tar header, where it parts ways with the tar reader here
//! (astral-tokio-tar). Go's reading is what Docker, containerd, podman and umoci unpack and
//! what appc's tools built: an entry the two read otherwise is the parser differential
//! hostile-inputs row 4 warns of, so rkt reads it as Go does or refuses it.

/// Checks that Go's archive/tar reads an entry as the tar reader here does, where the two
/// part ways; `name` is the entry's name as the reader here gives it. `Ok(true)` for a legacy
/// regular entry (type NUL) named with a trailing slash, which Go reads as a directory.
/// Refused:
/// - a directory, link, device or fifo that gives a size: Go reads no data after such a
///   header and takes what follows for the next header, where the reader here skips it;
/// - a header whose name Go reads otherwise: a GNU header whose time fields hold text (Go
///   then takes them for a ustar path prefix, for archives of Go before 1.8), a star header
///   whose 131-byte prefix has no NUL (the reader here runs on into the times after it), a
///   ustar magic of another version (Go reads its prefix, the reader here not);
/// - an empty GNU long name, which Go passes over for the header's own name;
/// - a numeric field Go cannot read: Go refuses the archive.
pub fn go_reads_alike(header: &tokio_tar::Header, name: &[u8], size: u64) -> Result<bool, String> {
    let kind = header.entry_type();
    let block = header.as_bytes();
    // The type byte itself: the reader here counts NUL as '0'.
    let legacy_directory = block[156] == 0 && name.ends_with(b"/");
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
    let format = Format::of(block);
    // v7 headers have no device numbers.
    let fields = &NUMERIC_FIELDS[..if format == Format::V7 { 5 } else { 7 }];
    if let Some((_, _, what)) = fields.iter().find(|(start, end, _)| go_numeric(&block[*start..*end]).is_none()) {
        return Err(format!("a header whose {what} field Go cannot read"));
    }
    let own_name = header.path_bytes();
    // An empty GNU long name Go passes over for the header's name, the reader here not.
    if name.is_empty() && !own_name.is_empty() {
        let own_name = String::from_utf8_lossy(&own_name);
        return Err(format!("an entry whose long name is empty, which Go names {own_name:?}"));
    }
    // Where a GNU long name or a PAX path names the entry, both readers take it.
    let (prefix, base) = go_header_name(block, format);
    let go_names_it = match prefix.is_empty() {
        true => name == base,
        false => {
            name.len() == prefix.len() + 1 + base.len()
                && name.starts_with(prefix)
                && name[prefix.len()] == b'/'
                && name.ends_with(base)
        }
    };
    if *own_name == *name && !go_names_it {
        let go_name = [prefix, b"/", base].concat();
        return Err(format!("a header whose name Go reads as {:?}", String::from_utf8_lossy(&go_name)));
    }
    Ok(legacy_directory)
}

/// The numeric fields of a header Go reads (start, end, name), the device numbers last.
const NUMERIC_FIELDS: [(usize, usize, &str); 7] = [
    (100, 108, "mode"),
    (108, 116, "uid"),
    (116, 124, "gid"),
    (124, 136, "size"),
    (136, 148, "mtime"),
    (329, 337, "device major"),
    (337, 345, "device minor"),
];

/// The header formats Go tells apart, by magic, version and star's trailer.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

impl Format {
    fn of(block: &[u8; 512]) -> Format {
        match (&block[257..263], &block[263..265], &block[508..512]) {
            (b"ustar\0", _, b"tar\0") => Format::Star,
            (b"ustar\0", _, _) => Format::Ustar,
            (b"ustar ", b" \0", _) => Format::Gnu,
            _ => Format::V7,
        }
    }
}

/// A field's text up to its first NUL.
fn c_string(field: &[u8]) -> &[u8] {
    &field[..field.iter().position(|b| *b == 0).unwrap_or(field.len())]
}

/// The name Go's archive/tar gives a header block of its own (no long name or PAX path): a
/// path prefix, empty or joined with a slash, and the name field.
fn go_header_name(block: &[u8; 512], format: Format) -> (&[u8], &[u8]) {
    let name = c_string(&block[..100]);
    let prefix = match format {
        Format::Ustar => c_string(&block[345..500]),
        Format::Star => c_string(&block[345..476]),
        Format::Gnu => {
            let unreadable = |field: &[u8]| field[0] != 0 && go_numeric(field).is_none();
            let prefix = c_string(&block[345..500]);
            match (unreadable(&block[345..357]) || unreadable(&block[357..369])) && prefix.is_ascii() {
                true => prefix,
                false => b"",
            }
        }
        Format::V7 => b"",
    };
    (prefix, name)
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

/// Checks what follows the first zero block of a tar (a whole block, part of one, or
/// nothing): Go's archive/tar reads the next block, which the tar reader here does not, and
/// takes the archive as ended only if it is zeros or absent; a broken block or more entries
/// make the archive broken for Go.
pub fn after_first_zero_block(next: &[u8]) -> Result<(), &'static str> {
    match next.is_empty() || (next.len() == 512 && next.iter().all(|b| *b == 0)) {
        true => Ok(()),
        false => Err("the tar goes on after a zero block that is not a whole end-of-archive marker"),
    }
}

/// An entry's time as Go reads it: its PAX `mtime` record when it has one, else its header's
/// (a negative base-256 number, GNU tar's for a time before 1970, reads as two's complement).
pub fn entry_mtime(header: &tokio_tar::Header, pax_mtime: Option<&[u8]>) -> Result<i64, &'static str> {
    match pax_mtime {
        Some(value) => pax_time(value).ok_or("its PAX mtime is not a time"),
        None => header.mtime().map(|t| t as i64).map_err(|_| "its mtime is not a number"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
