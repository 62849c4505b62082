//! The HTTP clients every fetch uses: one for plain http, one that verifies TLS against the
//! system's roots, and, for a host with certificates of its own in a `certs.d` directory (as
//! podman, skopeo and Docker keep them for a private registry), one that also trusts its CAs
//! (`*.crt`) and shows its client certificate (`NAME.cert` with its key `NAME.key`) to it alone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Certificate, Client, Identity, Url};

use crate::http::host_key;

/// How every client of rkt talks HTTP: redirects are followed by hand (to check each hop).
fn builder(skip_tls_verify: bool) -> reqwest::ClientBuilder {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rkt/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .danger_accept_invalid_certs(skip_tls_verify)
}

/// A client for plain http and, built on the first https URL, one that verifies TLS. Loading
/// the system's root certificates takes a few milliseconds: a third of a warm `rkt fetch` from
/// a plain-http registry, which never needs them.
#[derive(Clone)]
pub struct Clients {
    plain: Client,
    tls: Arc<std::sync::OnceLock<Client>>,
    /// By host: a client with the host's `certs.d` CAs and client certificate, or none when
    /// it has neither.
    per_host: Arc<Mutex<HashMap<String, Option<Client>>>>,
    skip_tls_verify: bool,
}

impl Clients {
    pub fn new(skip_tls_verify: bool) -> reqwest::Result<Self> {
        // No roots at all: this client is never given an https URL.
        let plain = builder(skip_tls_verify).tls_certs_only([]).build()?;
        Ok(Clients { plain, tls: Arc::default(), per_host: Arc::default(), skip_tls_verify })
    }

    pub fn for_url(&self, url: &Url) -> Result<Client, String> {
        if url.scheme() != "https" {
            return Ok(self.plain.clone());
        }
        let host = host_key(url);
        let mut per_host = self.per_host.lock().expect("not poisoned");
        if !per_host.contains_key(&host) {
            let dirs = certs_d_dirs(&host);
            let (roots, identity) = (roots_in(&dirs)?, identity_in(&dirs)?);
            let client = match (roots.is_empty(), identity) {
                (true, None) => None,
                (_, identity) => {
                    let mut builder = builder(self.skip_tls_verify).tls_certs_merge(roots);
                    if let Some(identity) = identity {
                        builder = builder.identity(identity);
                    }
                    Some(builder.build().map_err(|e| format!("certs.d of {host}: {e}"))?)
                }
            };
            per_host.insert(host.clone(), client);
        }
        if let Some(client) = &per_host[&host] {
            return Ok(client.clone());
        }
        drop(per_host);
        if let Some(client) = self.tls.get() {
            return Ok(client.clone());
        }
        let client = builder(self.skip_tls_verify).build().map_err(|e| e.to_string())?;
        Ok(self.tls.get_or_init(|| client).clone())
    }
}

/// The `certs.d` directories of `host` (`HOST` or `HOST:PORT`), where containers-certs.d(5)
/// and Docker look: the user's `$XDG_CONFIG_HOME` (`~/.config`) `/containers/certs.d`,
/// `/etc/containers/certs.d` and `/etc/docker/certs.d`.
fn certs_d_dirs(host: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = crate::user_config_dir().into_iter().map(|c| c.join("containers/certs.d")).collect();
    dirs.extend(["/etc/containers/certs.d", "/etc/docker/certs.d"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(host)).collect()
}

/// The CA certificates (`*.crt`, PEM) in the host's `certs.d` directories. One that cannot be
/// read is an error naming it: trusting less than the user set up would only fail later, less
/// clearly.
fn roots_in(dirs: &[PathBuf]) -> Result<Vec<Certificate>, String> {
    let mut roots = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "crt")) {
            let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate in it", file.display()));
            }
            roots.extend(certs);
        }
    }
    Ok(roots)
}

/// The client certificate in the first of the host's `certs.d` directories that has one:
/// `NAME.cert` (PEM, its chain) and `NAME.key` (PEM, its private key), as Docker and podman
/// pair them. A certificate without its key, or a key without its certificate, is an error.
fn identity_in(dirs: &[PathBuf]) -> Result<Option<Identity>, String> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        let with = |file: &PathBuf, ext: &str| file.extension().is_some_and(|e| e == ext);
        for key in files.iter().filter(|f| with(f, "key")) {
            if !files.contains(&key.with_extension("cert")) {
                let cert = key.with_extension("cert");
                return Err(format!("{}: a client key without its certificate {}", key.display(), cert.display()));
            }
        }
        let Some(cert) = files.iter().find(|f| with(f, "cert")) else { continue };
        let key = cert.with_extension("key");
        let read = |file: &PathBuf| std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()));
        let mut pem = read(&key).map_err(|e| format!("{e} (the key of client certificate {})", cert.display()))?;
        pem.push(b'\n');
        pem.extend(read(cert)?);
        let identity = Identity::from_pem(&pem)
            .map_err(|e| format!("client certificate {} with key {}: {e}", cert.display(), key.display()))?;
        return Ok(Some(identity));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_takes_crt_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("registry.example:5000");
        std::fs::create_dir(&host).unwrap();
        assert!(roots_in(&[host.clone(), dir.path().join("missing")]).unwrap().is_empty());
        // Client certificates and keys (`*.cert`, `*.key`) are not CAs.
        std::fs::write(host.join("client.cert"), "not read").unwrap();
        std::fs::write(host.join("client.key"), "not read").unwrap();
        assert!(roots_in(std::slice::from_ref(&host)).unwrap().is_empty());
        std::fs::write(host.join("ca.crt"), "not a certificate").unwrap();
        let err = roots_in(&[host]).unwrap_err();
        assert!(err.contains("ca.crt") && err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_key_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("registry.example:5000");
        std::fs::create_dir(&host).unwrap();
        assert!(identity_in(std::slice::from_ref(&host)).unwrap().is_none());
        std::fs::write(host.join("client.cert"), "a certificate").unwrap();
        let err = identity_in(std::slice::from_ref(&host)).unwrap_err();
        assert!(err.contains("client.key") && err.contains("the key of client certificate"), "{err}");
        std::fs::rename(host.join("client.cert"), host.join("other.cert")).unwrap();
        std::fs::write(host.join("client.key"), "a key").unwrap();
        let err = identity_in(std::slice::from_ref(&host)).unwrap_err();
        assert!(err.contains("a client key without its certificate") && err.contains("client.cert"), "{err}");
        std::fs::rename(host.join("other.cert"), host.join("client.cert")).unwrap();
        let err = identity_in(&[dir.path().join("missing"), host]).unwrap_err();
        assert!(err.starts_with("client certificate ") && err.contains("client.key"), "{err}");
    }
}
