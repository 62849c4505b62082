use std::io;
use std::path::PathBuf;

use crate::appc::ManifestError;
use crate::image_id::ImageId;

/// Everything the store can refuse or fail at. Messages are one line and name what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid image manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("bad image archive: {0}")]
    Archive(String),
    #[error("{}: {source}", path.display())]
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
