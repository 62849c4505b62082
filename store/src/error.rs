use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::appc::ManifestError;
use crate::image_id::ImageId;

/// Everything the store can refuse or fail at. Messages are one line and name what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid image manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("bad image archive: {0}")]
    Archive(String),
    #[error("{}: {source}", Shown(path))]
    Io { path: PathBuf, source: io::Error },
    #[error("reading image data: {0}")]
    Stream(io::Error),
    #[error("store index {}: {source}", path.display())]
    Index { path: PathBuf, source: rusqlite::Error },
    #[error("store index {}: schema version {found} is newer than this rkt understands ({known})", path.display())]
    IndexTooNew { path: PathBuf, found: i64, known: i64 },
    #[error("image ID too short")]
    IdTooShort,
    #[error("no image IDs found")]
    NoImageIdsFound,
    #[error("ambiguous image ID")]
    AmbiguousImageId,
    #[error("no image named {0} in the store")]
    NoSuchImage(String),
    #[error("image hashes to {actual}, not to the requested {expected}")]
    IdMismatch { expected: ImageId, actual: ImageId },
    #[error("stored image {id} is corrupt: its data hashes to {actual}")]
    Corrupt { id: ImageId, actual: ImageId },
    #[error("dependency {name} of image {of} is not in the store (fetch it first)")]
    MissingDependency { name: String, of: String },
    #[error("dependency cycle: {0}")]
    DependencyCycle(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A path as an error line shows it: one of a deep tree's, up to PATH_MAX long, is cut in the
/// middle, so that the line stays readable and still names both ends.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEEP: usize = 100;
        let text = self.0.to_string_lossy();
        if text.len() <= 3 * KEEP {
            return f.write_str(&text);
        }
        let mut head = KEEP;
        while !text.is_char_boundary(head) {
            head -= 1;
        }
        let mut tail = text.len() - KEEP;
        while !text.is_char_boundary(tail) {
            tail += 1;
        }
        write!(f, "{}…({} bytes)…{}", &text[..head], text.len(), &text[tail..])
    }
}

/// Attaches a path to an I/O error, which the user needs to act on it.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { path: path.into(), source })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| StoreError::Io { path: path.into(), source: io::Error::from(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_path_is_shown_by_its_ends() {
        let deep = format!("/var/lib/rkt/cas/tmp/render-1{}/é-last-file", "/d".repeat(2000));
        let error = StoreError::Io { path: deep.clone().into(), source: io::Error::from_raw_os_error(36) };
        let line = error.to_string();
        assert!(line.starts_with("/var/lib/rkt/cas/tmp/render-1/d/d"), "{line}");
        assert!(line.contains(&format!("({} bytes)", deep.len())), "{line}");
        assert!(line.ends_with("/d/d/é-last-file: File name too long (os error 36)"), "{line}");
        assert!(line.len() < 300, "{line}");
        let short = StoreError::Io { path: "/var/lib/rkt/cas/lock".into(), source: io::Error::from_raw_os_error(13) };
        assert_eq!(short.to_string(), "/var/lib/rkt/cas/lock: Permission denied (os error 13)");
    }
}
