//! Turns image strings into images in the store: local ACI files here; URLs, appc discovery,
//! Docker registries and archives, and OCI layouts in their own modules.

mod clients;
pub mod discovery;
pub mod http;
pub mod oci;
pub mod progress;
pub mod registry;
pub mod task;
pub mod url_fetch;

use std::path::{Path, PathBuf};

use rkt_store::appc::AppString;

/// A path from the environment; unset and empty are alike.
pub(crate) fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The user's configuration directory, where podman and skopeo keep theirs: `$XDG_CONFIG_HOME`,
/// else `~/.config`.
pub(crate) fn user_config_dir() -> Option<PathBuf> {
    env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|h| h.join(".config")))
}
use rkt_store::{ImportOptions, Imported, Store, StoreError};

/// What an image string names, classified in rkt's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageString {
    /// `sha512-…`: only ever looked up in the store.
    Id(String),
    Path(PathBuf),
    /// `name[:version][,label=value]…`, found by appc discovery.
    Name(AppString),
    /// `http://…`, `https://…` or `file://…`.
    Url(String),
    /// `docker://…` or `docker:…`.
    Docker(String),
    /// `docker-archive:PATH`, `oci:PATH[:REF]` or `oci-archive:PATH[:REF]`.
    Oci(oci::OciSource),
}

/// The URL scheme of `s` as Go's `url.Parse` finds it: letters, digits, `+-.` before the first
/// colon, starting with a letter.
fn scheme(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let candidate = &s[..colon];
    let mut chars = candidate.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(candidate)
}

impl ImageString {
    pub fn classify(s: &str) -> Result<Self, FetchError> {
        if s.starts_with("sha512-") {
            return Ok(ImageString::Id(s.to_string()));
        }
        if let Some(source) = oci::OciSource::parse(s) {
            return Ok(ImageString::Oci(source));
        }
        match scheme(s) {
            None => {
                let path = Path::new(s);
                let is_file = path.metadata().map(|m| m.is_file()).unwrap_or(false);
                if path.is_absolute() || is_file || (!s.contains(':') && s.contains("./")) || s.ends_with(".aci") {
                    return Ok(ImageString::Path(path.to_path_buf()));
                }
            }
            Some("docker") => {
                return Ok(ImageString::Docker(s.trim_start_matches("docker:").trim_start_matches("//").to_string()))
            }
            Some("http" | "https" | "file") => return Ok(ImageString::Url(s.to_string())),
            Some(_) => {}
        }
        AppString::parse(s).map(ImageString::Name).map_err(FetchError::BadImageString)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    BadImageString(String),
    #[error("error opening image file {}: {source}", path.display())]
    OpenImage { path: PathBuf, source: std::io::Error },
    #[error("error opening signature file {}: {source} (fetch without verification with --insecure-options=image)", path.display())]
    OpenSignature { path: PathBuf, source: std::io::Error },
    #[error("{source} (for image {name}: trust its signer with rkt trust --prefix {name})")]
    Untrusted { name: String, source: rkt_trust::TrustError },
    #[error("{0}")]
    Trust(#[from] rkt_trust::TrustError),
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Mismatch(String),
}

#[derive(Default)]
pub struct FetchOptions<'a> {
    /// `--insecure-options=image`: skip signature verification.
    pub skip_verify: bool,
    /// `--signature=FILE`, in place of the file beside the image.
    pub signature: Option<PathBuf>,
    /// The trusted keys; required unless verification is skipped.
    pub keystore: Option<&'a rkt_trust::Keystore>,
}

/// Checks `signature` over the ACI in `file` against the keys trusted for the name in its
/// manifest; returns the signer's identities. The file is read twice and left at its start.
pub async fn verify_file(
    keystore: &rkt_trust::Keystore,
    file: &mut std::fs::File,
    signature: &[u8],
) -> Result<Vec<String>, FetchError> {
    use std::io::{Seek, SeekFrom};
    let io = |e: std::io::Error| FetchError::Http(e.to_string());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let manifest = rkt_store::read_manifest(tokio::fs::File::from_std(file.try_clone().map_err(io)?)).await?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let keys = keystore.keys_for(&manifest.name)?;
    let signers = rkt_trust::verify(&keys, file.try_clone().map_err(io)?, signature)
        .map_err(|source| FetchError::Untrusted { name: manifest.name.clone(), source })?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(signers)
}

/// The host's os and arch as appc labels.
pub fn host_os_arch() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "aarch64",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The name's labels with rkt's defaults for os and arch (the host's), checked as appc checks them.
pub fn with_default_os_arch(app: &AppString) -> Result<AppString, FetchError> {
    let mut app = app.clone();
    let (os, arch) = host_os_arch();
    for (name, value) in [("os", os), ("arch", arch)] {
        if !app.labels.iter().any(|l| l.name == name) {
            app.labels.push(rkt_store::appc::NameValue { name: name.into(), value: value.into() });
        }
    }
    rkt_store::appc::manifest::validate_labels("labels", &app.labels)
        .map_err(|e| FetchError::BadImageString(format!("{}: {e}", app.name)))?;
    Ok(app)
}

/// Fetches an image by name through appc discovery (its first endpoint, as rkt), then holds the
/// image to the name and labels asked for; an image that does not match is not kept.
pub async fn fetch_name(
    store: &Store,
    app: &AppString,
    options: &http::HttpOptions,
    keystore: Option<&rkt_trust::Keystore>,
) -> Result<(rkt_store::ImageId, Vec<String>, url_fetch::UrlUndo), FetchError> {
    let app = with_default_os_arch(app)?;
    let endpoints = discovery::discover(&app, options).await?;
    let (aci, asc) = &endpoints.aci[0];
    let checks = url_fetch::UrlChecks { verify: keystore.map(|k| (k, asc.as_str())), expected: Some(&app) };
    let (outcome, signers, undo) = url_fetch::fetch_url(store, aci, options, checks).await?;
    let id = outcome.id().clone();
    // A download was checked before it was named; an image the URL cache gave is checked here.
    if let Some(problem) = mismatch(&store.manifest(&id)?, &app, aci) {
        undo.undo(store)?;
        return Err(FetchError::Mismatch(problem));
    }
    Ok((id, signers, undo))
}

/// How the image fetched from `aci` differs from the name and labels asked for, if it does.
pub(crate) fn mismatch(manifest: &rkt_store::appc::ImageManifest, app: &AppString, aci: &str) -> Option<String> {
    if manifest.name != app.name {
        return Some(format!("the image at {aci} is named {:?}, not {:?}", manifest.name, app.name));
    }
    app.labels.iter().find_map(|want| match manifest.label(&want.name) {
        None => Some(format!("requested label {:?} not provided by the image manifest", want.name)),
        Some(v) if v != want.value => Some(format!(
            "requested value for label {:?}: {:?} differs from fetched aci label value: {v:?}",
            want.name, want.value
        )),
        _ => None,
    })
}

/// The signature file rkt expects beside a local image: `PATH.aci.asc` for `PATH.aci`.
pub fn signature_path(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    if image.extension().is_some_and(|e| e == "aci") {
        s.push(".asc");
    } else {
        s.push(".aci.asc");
    }
    PathBuf::from(s)
}

/// Imports a local ACI file. Its signature must be there and good unless verification is
/// skipped; returns the image and the signer's identities.
pub async fn fetch_file(
    store: &Store,
    path: &Path,
    options: &FetchOptions<'_>,
) -> Result<(Imported, Vec<String>), FetchError> {
    let open_err = |source| FetchError::OpenImage { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(open_err)?;
    if file.metadata().map_err(open_err)?.is_dir() {
        return Err(open_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory")));
    }
    let mut signers = Vec::new();
    if !options.skip_verify {
        let sig_path = options.signature.clone().unwrap_or_else(|| signature_path(path));
        let sig =
            std::fs::read(&sig_path).map_err(|source| FetchError::OpenSignature { path: sig_path.clone(), source })?;
        let keystore =
            options.keystore.ok_or_else(|| FetchError::Http("no keystore to verify signatures with".into()))?;
        signers = verify_file(keystore, &mut file, &sig).await?;
    }
    Ok((store.import(tokio::fs::File::from_std(file), &ImportOptions::default()).await?, signers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_rkt() {
        let id = format!("sha512-{}", "a".repeat(64));
        assert_eq!(ImageString::classify(&id).unwrap(), ImageString::Id(id.clone()));
        assert!(matches!(ImageString::classify("/abs/image").unwrap(), ImageString::Path(_)));
        assert!(matches!(ImageString::classify("./rel").unwrap(), ImageString::Path(_)));
        assert!(matches!(ImageString::classify("x.aci").unwrap(), ImageString::Path(_)));
        assert!(matches!(ImageString::classify("https://example.com/a.aci").unwrap(), ImageString::Url(_)));
        assert_eq!(ImageString::classify("docker://busybox").unwrap(), ImageString::Docker("busybox".into()));
        assert_eq!(ImageString::classify("docker:busybox").unwrap(), ImageString::Docker("busybox".into()));
        match ImageString::classify("example.com/app:1.0,os=linux").unwrap() {
            ImageString::Name(app) => assert_eq!(app.name, "example.com/app"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ImageString::classify("my-app:v1.0").unwrap(), ImageString::Name(_)));
        assert!(ImageString::classify("Not Valid").is_err());
    }

    #[test]
    fn signature_beside_image() {
        assert_eq!(signature_path(Path::new("/x/a.aci")), PathBuf::from("/x/a.aci.asc"));
        assert_eq!(signature_path(Path::new("/x/a")), PathBuf::from("/x/a.aci.asc"));
    }
}
