//! Registry credentials that `podman login`, `skopeo login` and `docker login` left behind,
//! read where those tools read them (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/0/auth.json` for root without
//! it), then `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/auth.json`), then
//! Docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`). The first file with an
//! entry for the image wins.

use std::path::PathBuf;

use super::base64_decode;
use crate::oci::naming::DEFAULT_REGISTRY;
use crate::{env_path, user_config_dir};

/// Credentials for `repository` on `registry` from the login files, if one has them.
pub fn stored_credentials(registry: &str, repository: &str) -> Option<(String, String)> {
    auth_files().iter().find_map(|file| credentials_in(&std::fs::read(file).ok()?, registry, repository))
}

fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = env_path("REGISTRY_AUTH_FILE") {
        files.push(file);
    } else if let Some(runtime) = env_path("XDG_RUNTIME_DIR") {
        files.push(runtime.join("containers/auth.json"));
    } else if nix::unistd::geteuid().is_root() {
        files.push(PathBuf::from("/run/containers/0/auth.json"));
    }
    if let Some(config) = user_config_dir() {
        files.push(config.join("containers/auth.json"));
    }
    if let Some(docker) = env_path("DOCKER_CONFIG").or_else(|| env_path("HOME").map(|h| h.join(".docker"))) {
        files.push(docker.join("config.json"));
    }
    files
}

/// The `auths` entry that covers `registry/repository`: the longest key that names the
/// registry alone or a namespace of it (`quay.io/org`). Docker writes keys as `docker login`
/// was given them, with scheme and path (`https://index.docker.io/v1/`): a URL's path is
/// not a namespace.
fn credentials_in(file: &[u8], registry: &str, repository: &str) -> Option<(String, String)> {
    let file: serde_json::Value = serde_json::from_slice(file).ok()?;
    let image = format!("{registry}/{repository}");
    let scope = |key: &str| -> String {
        let (key, is_url) = match key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")) {
            Some(rest) => (rest, true),
            None => (key, false),
        };
        let (host, path) = key.split_once('/').unwrap_or((key, ""));
        let host = match host {
            "index.docker.io" | "docker.io" => DEFAULT_REGISTRY,
            other => other,
        };
        let path = path.trim_end_matches('/');
        if is_url || path.is_empty() {
            host.to_string()
        } else {
            format!("{host}/{path}")
        }
    };
    let covers = |scope: &str| scope == registry || image == scope || image.starts_with(&format!("{scope}/"));
    let (_, entry) = file["auths"]
        .as_object()?
        .iter()
        .map(|(key, entry)| (scope(key), entry))
        .filter(|(scope, _)| covers(scope))
        .max_by_key(|(s, _)| s.len())?;
    let decoded = String::from_utf8(base64_decode(entry["auth"].as_str()?)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::base64;

    fn file(entries: &[(&str, &str)]) -> Vec<u8> {
        let auths: serde_json::Map<_, _> = entries
            .iter()
            .map(|(key, creds)| (key.to_string(), serde_json::json!({"auth": base64(creds.as_bytes())})))
            .collect();
        serde_json::json!({"auths": auths}).to_string().into_bytes()
    }

    #[test]
    fn docker_keys_name_a_host() {
        let me = Some(("me".to_string(), "pw".to_string()));
        for (key, registry) in [
            ("https://index.docker.io/v1/", DEFAULT_REGISTRY),
            ("docker.io", DEFAULT_REGISTRY),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            ("http://r.io", "r.io"),
        ] {
            let creds = file(&[("other.io", "x:y"), (key, "me:pw")]);
            assert_eq!(credentials_in(&creds, registry, "library/busybox"), me, "{key}");
        }
        assert_eq!(credentials_in(&file(&[("r.io", "me:pw")]), "r.io:5000", "a"), None);
        assert_eq!(credentials_in(&file(&[("r.io.evil", "me:pw")]), "r.io", "a"), None);
        assert_eq!(credentials_in(b"not json", "r.io", "a"), None);
    }

    #[test]
    fn the_narrowest_namespace_wins() {
        let creds = file(&[("quay.io", "all:1"), ("quay.io/org", "org:2"), ("quay.io/org/team", "team:3")]);
        let user = |repo: &str| credentials_in(&creds, "quay.io", repo).map(|(u, _)| u);
        assert_eq!(user("org/team/app").as_deref(), Some("team"));
        assert_eq!(user("org/app").as_deref(), Some("org"));
        assert_eq!(user("organic/app").as_deref(), Some("all"));
        assert_eq!(credentials_in(&file(&[("quay.io/org", "org:2")]), "quay.io", "other/app"), None);
    }
}
