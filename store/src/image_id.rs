//! Image IDs as appc and rkt define them: `sha512-` and the first 64 hex digits of the SHA-512 of
//! the uncompressed image tar.

use std::fmt;

/// The hex digits rkt keeps of a SHA-512 (half of them).
pub const ID_HEX_LEN: usize = 64;
const PREFIX: &str = "sha512-";

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

/// The SHA-512 of an image's uncompressed tar, as it streams by. SHA-512 is the slowest stage
/// of an import, and no SHA-512 instruction exists on the CPUs this runs on: the system
/// libcrypto's AVX2 code (OpenSSL 3) hashes 0.87 GB/s on one core of this project's machines,
/// against 0.61 for aws-lc (whose AVX code is for Intel CPUs only) and for the `sha2` crate.
pub struct ImageHasher(openssl::sha::Sha512);

impl ImageHasher {
    pub fn new() -> Self {
        ImageHasher(openssl::sha::Sha512::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> ImageId {
        let digest = self.0.finish();
        let mut hex = String::with_capacity(ID_HEX_LEN);
        for byte in &digest[..ID_HEX_LEN / 2] {
            hex.push_str(&format!("{byte:02x}"));
        }
        ImageId(hex)
    }
}

impl Default for ImageHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageId {
    /// Parses a complete ID: `sha512-` with 64 hex digits, or the 128 of a full appc image ID
    /// (kept to 64, as rkt does).
    pub fn parse_full(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(PREFIX)?;
        if !(hex.len() == ID_HEX_LEN || hex.len() == 2 * ID_HEX_LEN) || !is_lower_hex(hex) {
            return None;
        }
        Some(ImageId(hex[..ID_HEX_LEN].to_string()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// `sha512-` and the first `digits` hex digits, as rkt prints IDs (12 in lists, 32 after fetch).
    pub fn short(&self, digits: usize) -> String {
        format!("{PREFIX}{}", &self.0[..digits.min(ID_HEX_LEN)])
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0)
    }
}

impl fmt::Debug for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a user typed as an image ID, reduced to the hex prefix that selects images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdQuery {
    /// Not an ID at all (no `sha512-` prefix): the caller should treat it as a name or path.
    NotAnId,
    TooShort,
    Prefix(String),
}

impl IdQuery {
    pub fn parse(input: &str) -> Self {
        let Some(hex) = input.strip_prefix(PREFIX) else {
            return IdQuery::NotAnId;
        };
        let hex = hex.to_ascii_lowercase();
        if !is_lower_hex(&hex) {
            return IdQuery::NotAnId;
        }
        if hex.len() < 2 {
            return IdQuery::TooShort;
        }
        IdQuery::Prefix(hex[..hex.len().min(ID_HEX_LEN)].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_empty_input() {
        let id = ImageHasher::new().finish();
        assert_eq!(id.hex(), "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce");
        assert_eq!(id.short(12), "sha512-cf83e1357eef");
        assert_eq!(ImageId::parse_full(&id.to_string()), Some(id.clone()));
        let full = format!("{id}47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
        assert_eq!(ImageId::parse_full(&full), Some(id));
    }

    #[test]
    fn streamed_id_is_the_sha512_of_the_whole() {
        use sha2::Digest;
        // Pieces that straddle the 128-byte blocks, and an end that needs a block of padding.
        let bytes: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut hasher = ImageHasher::new();
        for piece in bytes.chunks(1_000 + 7) {
            hasher.update(piece);
        }
        let expected: String = sha2::Sha512::digest(&bytes)[..32].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hasher.finish().hex(), expected);
    }

    #[test]
    fn queries() {
        assert_eq!(IdQuery::parse("busybox"), IdQuery::NotAnId);
        assert_eq!(IdQuery::parse("sha512-"), IdQuery::TooShort);
        assert_eq!(IdQuery::parse("sha512-a"), IdQuery::TooShort);
        assert_eq!(IdQuery::parse("sha512-AB"), IdQuery::Prefix("ab".into()));
        assert_eq!(IdQuery::parse(&format!("sha512-{}", "1".repeat(128))), IdQuery::Prefix("1".repeat(64)));
        assert_eq!(IdQuery::parse("sha512-xyz"), IdQuery::NotAnId);
    }
}
