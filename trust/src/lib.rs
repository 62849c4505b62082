//! rkt's trust: the keystore (`trustedkeys/root.d` and `trustedkeys/prefix.d/<prefix>` in the
//! system and local configuration directories, each key named by its fingerprint) and the
//! verification of detached OpenPGP signatures against the keys trusted for an image's name.
//! A key for `acme.com/foo` covers `acme.com/foo` and `acme.com/foo/bar`, never `acme.com/foobar`.

use std::io::Read;
use std::path::{Path, PathBuf};

use sequoia_openpgp as openpgp;

use openpgp::cert::Cert;
use openpgp::parse::stream::{DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationHelper};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::KeyHandle;

/// An OpenPGP certificate (a public key with its identities).
pub type KeyCert = Cert;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("not an OpenPGP public key: {0}")]
    BadKey(String),
    #[error("{}: fingerprint mismatch: the key in it is {found}", path.display())]
    FingerprintMismatch { path: PathBuf, found: String },
    #[error("invalid prefix {0:?}: it must be an AC identifier without a URL scheme")]
    BadPrefix(String),
    #[error("openpgp: signature made by unknown entity")]
    UnknownEntity,
    #[error("openpgp: bad signature: {0}")]
    BadSignature(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrustError {
    TrustError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// The first certificate of an armored or binary key file.
pub fn parse_key(bytes: &[u8]) -> Result<Cert, TrustError> {
    Cert::from_bytes(bytes).map_err(|e| TrustError::BadKey(e.to_string()))
}

/// The fingerprint as rkt names key files: 40 lowercase hex digits.
pub fn fingerprint_hex(cert: &Cert) -> String {
    cert.fingerprint().to_hex().to_ascii_lowercase()
}

/// The fingerprint as rkt shows it for review: groups of four, a double space in the middle.
pub fn fingerprint_display(cert: &Cert) -> String {
    let hex = cert.fingerprint().to_hex();
    let groups: Vec<&str> = (0..hex.len()).step_by(4).map(|i| &hex[i..(i + 4).min(hex.len())]).collect();
    let half = groups.len() / 2;
    format!("{}  {}", groups[..half].join(" "), groups[half..].join(" "))
}

/// The identities (user IDs) of a certificate.
pub fn identities(cert: &Cert) -> Vec<String> {
    cert.userids().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()).collect()
}

fn valid_prefix(prefix: &str) -> bool {
    !prefix.contains("://")
        && !prefix.is_empty()
        && prefix.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~/".contains(c))
}

/// The keystore of a system and a local configuration directory (`/usr/lib/rkt`, `/etc/rkt`).
pub struct Keystore {
    system: PathBuf,
    local: PathBuf,
}

impl Keystore {
    pub fn new(system: &Path, local: &Path) -> Self {
        Keystore { system: system.join("trustedkeys"), local: local.join("trustedkeys") }
    }

    /// The directories whose keys apply to `name`: root.d, then prefix.d/<p> for every prefix
    /// `p` of the name made of whole path components.
    fn dirs_for(base: &Path, name: &str) -> Vec<PathBuf> {
        let mut dirs = vec![base.join("root.d")];
        let mut prefix = PathBuf::from("prefix.d");
        for part in name.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                break;
            }
            prefix.push(part);
            dirs.push(base.join(&prefix));
        }
        dirs
    }

    /// The keys trusted for an image named `name`. An empty file in the local directory masks
    /// the system key of the same fingerprint.
    pub fn keys_for(&self, name: &str) -> Result<Vec<Cert>, TrustError> {
        let mut masked = Vec::new();
        let mut files = Vec::new();
        for (base, is_local) in [(&self.system, false), (&self.local, true)] {
            for dir in Self::dirs_for(base, name) {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Ok(meta) = std::fs::metadata(&path) else { continue };
                    if !meta.is_file() {
                        continue;
                    }
                    let fp = entry.file_name().to_string_lossy().to_ascii_lowercase();
                    if is_local && meta.len() == 0 {
                        masked.push(fp);
                        continue;
                    }
                    files.push((fp, path));
                }
            }
        }
        let mut certs: Vec<Cert> = Vec::new();
        for (fp, path) in files {
            if masked.contains(&fp) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
            let cert = parse_key(&bytes).map_err(|e| io_err(&path, e))?;
            let found = fingerprint_hex(&cert);
            if found != fp {
                return Err(TrustError::FingerprintMismatch { path, found });
            }
            if !certs.iter().any(|c| c.fingerprint() == cert.fingerprint()) {
                certs.push(cert);
            }
        }
        Ok(certs)
    }

    /// Trusts `key` for `prefix` (or for every image when `None`), in the local directory; returns
    /// where it was written.
    pub fn add(&self, prefix: Option<&str>, key: &[u8]) -> Result<(PathBuf, Cert), TrustError> {
        let cert = parse_key(key)?;
        let dir = match prefix {
            None => self.local.join("root.d"),
            Some(p) => {
                if !valid_prefix(p) {
                    return Err(TrustError::BadPrefix(p.to_string()));
                }
                self.local.join("prefix.d").join(p)
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let path = dir.join(fingerprint_hex(&cert));
        let temp = dir.join(format!(".{}.tmp", fingerprint_hex(&cert)));
        std::fs::write(&temp, key).map_err(|e| io_err(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| io_err(&path, e))?;
        Ok((path, cert))
    }
}

struct Helper<'a> {
    certs: &'a [Cert],
    signers: Vec<String>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    /// Every signature must be good, and there must be at least one: a bad signature beside a
    /// good one, or a message that is more than detached signatures, fails.
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut good = 0;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::SignatureGroup { results } => {
                    for result in results {
                        match result {
                            Ok(checksum) => {
                                // Valid when it signed is not enough: the key must still be alive,
                                // unrevoked and for signing now (rkt never checked expiry).
                                let policy = StandardPolicy::new();
                                let cert = checksum.ka.cert();
                                let now = cert.with_policy(&policy, None)?;
                                now.alive()?;
                                if let openpgp::types::RevocationStatus::Revoked(_) = now.revocation_status() {
                                    return Err(anyhow_like("the signing key's certificate is revoked".into()));
                                }
                                let handle = checksum.ka.key().key_handle();
                                let usable =
                                    now.keys().key_handle(handle).alive().revoked(false).for_signing().next().is_some();
                                if !usable {
                                    return Err(anyhow_like(
                                        "the signing key has expired, was revoked or cannot sign".into(),
                                    ));
                                }
                                good += 1;
                                let ids: Vec<String> = cert
                                    .userids()
                                    .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                                    .collect();
                                self.signers.extend(ids);
                            }
                            Err(e) => return Err(anyhow_like(format!("{e}"))),
                        }
                    }
                }
                _ => return Err(anyhow_like("not a detached signature".into())),
            }
        }
        if good == 0 {
            return Err(anyhow_like("no signature".into()));
        }
        Ok(())
    }
}

fn anyhow_like(message: String) -> openpgp::anyhow::Error {
    openpgp::Error::InvalidOperation(message).into()
}

/// Verifies a detached signature (armored or binary) over `data` by one of `certs`; returns the
/// signer's identities.
pub fn verify(certs: &[Cert], data: impl Read + Send + Sync, signature: &[u8]) -> Result<Vec<String>, TrustError> {
    if certs.is_empty() {
        return Err(TrustError::UnknownEntity);
    }
    let policy = StandardPolicy::new();
    let helper = Helper { certs, signers: Vec::new() };
    let builder =
        DetachedVerifierBuilder::from_bytes(signature).map_err(|e| TrustError::BadSignature(e.to_string()))?;
    let mut verifier =
        builder.with_policy(&policy, None, helper).map_err(|e| TrustError::BadSignature(e.to_string()))?;
    match verifier.verify_reader(data) {
        Ok(()) => Ok(std::mem::take(&mut verifier.helper_mut().signers)),
        Err(e) => {
            let text = format!("{e:#}");
            if text.contains("Missing key") || text.contains("MissingKey") || text.contains("No key") {
                Err(TrustError::UnknownEntity)
            } else {
                Err(TrustError::BadSignature(text))
            }
        }
    }
}

#[cfg(test)]
mod tests;
