//! The appc data model: identifiers, versions and the image manifest.

pub mod app_string;
pub mod ident;
pub mod manifest;
pub mod pod;
pub mod semver;

pub use app_string::AppString;
pub use manifest::{App, Dependency, ImageManifest, ManifestError, NameValue};
