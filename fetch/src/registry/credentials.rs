//! Registry credentials that `podman login`, `skopeo login` and `docker login` left behind,
//! read where those tools read them (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/0/auth.json` for root without
//! it), then `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/auth.json`), then
//! Docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`). The first file with an
//! entry for the image wins. A file may hand a registry to a credential helper, as Docker's
//! `credHelpers` (per registry) and `credsStore` (all of them) do: the program
//! `docker-credential-NAME` is asked for the credentials, by Docker's helper protocol.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::base64_decode;
use crate::oci::naming::DEFAULT_REGISTRY;
use crate::oci::OciError;
use crate::{env_path, user_config_dir};

/// What Docker's helpers answer when they hold nothing for the registry.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// A user name and password; or, with `IDENTITY_TOKEN_USER` for a name, an identity token (an
/// OAuth refresh token that `docker login` keeps for registries that give one).
pub type Credentials = (String, String);

/// The user name that marks an identity token, as Docker's credential helpers answer it.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Credentials for `repository` on `registry` from the login files or the credential helpers
/// they name, if one has them. A helper that is missing or fails is an error, as in Docker.
pub fn stored_credentials(registry: &str, repository: &str) -> Result<Option<Credentials>, OciError> {
    for file in auth_files() {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        let found = match helper_for(&json, registry) {
            Some(helper) => ask_helper(&helper, registry)
                .map_err(|e| OciError::Invalid(format!("registry credentials from {}: {e}", file.display())))?,
            None => credentials_in(&json, registry, repository),
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
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
fn credentials_in(file: &serde_json::Value, registry: &str, repository: &str) -> Option<Credentials> {
    let image = format!("{registry}/{repository}");
    let covers = |scope: &str| scope == registry || image == scope || image.starts_with(&format!("{scope}/"));
    let (_, entry) = file["auths"]
        .as_object()?
        .iter()
        .map(|(key, entry)| (key_scope(key), entry))
        .filter(|(scope, _)| covers(scope))
        .max_by_key(|(s, _)| s.len())?;
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some((IDENTITY_TOKEN_USER.to_string(), token.to_string()));
    }
    let decoded = String::from_utf8(base64_decode(entry["auth"].as_str()?)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The registry, or namespace of one, that a key of a login file names.
fn key_scope(key: &str) -> String {
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
}

/// The helper a login file names for `registry`: its `credHelpers` entry, else its
/// `credsStore`. Helper names are refused unless they are plain words, as they become part of
/// a program's name.
fn helper_for(file: &serde_json::Value, registry: &str) -> Option<String> {
    let named = file["credHelpers"]
        .as_object()
        .and_then(|helpers| helpers.iter().find(|(key, _)| key_scope(key) == registry))
        .and_then(|(_, name)| name.as_str())
        .or_else(|| file["credsStore"].as_str())
        .filter(|name| !name.is_empty())?;
    Some(named.to_string())
}

/// The address Docker files a registry's credentials under: Docker Hub's is its v1 index URL.
fn server_address(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY {
        "https://index.docker.io/v1/"
    } else {
        registry
    }
}

/// Runs `docker-credential-HELPER get` with the registry's address on its standard input. It
/// answers `{"Username": …, "Secret": …}`, or fails saying it holds nothing.
fn ask_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    let program = format!("docker-credential-{helper}");
    if !helper.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || helper.starts_with('.') {
        return Err(format!("{helper:?} is not a credential helper's name"));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{program} is not installed (not in PATH)"),
            _ => format!("{program}: {e}"),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    // A helper that exits without reading its input is judged by its answer, not by this write.
    let _ = stdin.write_all(server_address(registry).as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().lines().next().unwrap_or("").to_string();
    if !out.status.success() {
        if said(&out.stdout).contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let why = [said(&out.stderr), said(&out.stdout)].into_iter().find(|s| !s.is_empty());
        return Err(format!("{program} failed ({}): {}", out.status, why.unwrap_or_else(|| "it said nothing".into())));
    }
    helper_answer(&out.stdout).map(Some).map_err(|e| format!("{program}: {e}"))
}

fn helper_answer(stdout: &[u8]) -> Result<Credentials, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("its answer is not JSON: {e}"))?;
    let (Some(user), Some(secret)) = (answer["Username"].as_str(), answer["Secret"].as_str()) else {
        return Err("its answer has no Username and Secret".into());
    };
    Ok((user.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::base64;

    fn file(entries: &[(&str, &str)]) -> serde_json::Value {
        let auths: serde_json::Map<_, _> = entries
            .iter()
            .map(|(key, creds)| (key.to_string(), serde_json::json!({"auth": base64(creds.as_bytes())})))
            .collect();
        serde_json::json!({"auths": auths})
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
        assert_eq!(credentials_in(&serde_json::json!({"auths": []}), "r.io", "a"), None);
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

    #[test]
    fn a_registry_s_helper_comes_before_the_default_one() {
        let config = serde_json::json!({"credsStore": "desktop", "credHelpers": {
            "https://index.docker.io/v1/": "hub", "r.io:5000": "ecr-login", "bad.io": ""}});
        assert_eq!(helper_for(&config, DEFAULT_REGISTRY).as_deref(), Some("hub"));
        assert_eq!(helper_for(&config, "r.io:5000").as_deref(), Some("ecr-login"));
        assert_eq!(helper_for(&config, "r.io").as_deref(), Some("desktop"));
        assert_eq!(helper_for(&config, "bad.io"), None);
        assert_eq!(helper_for(&file(&[("r.io", "me:pw")]), "r.io"), None);
        assert_eq!(server_address(DEFAULT_REGISTRY), "https://index.docker.io/v1/");
        assert_eq!(server_address("r.io:5000"), "r.io:5000");
    }

    #[test]
    fn an_identity_token_comes_before_the_auth_it_sits_with() {
        let mut config = file(&[("r.io", "me:pw")]);
        config["auths"]["r.io"]["identitytoken"] = serde_json::json!("refresh-me");
        let expected = Some((IDENTITY_TOKEN_USER.to_string(), "refresh-me".to_string()));
        assert_eq!(credentials_in(&config, "r.io", "app"), expected);
        config["auths"]["r.io"]["identitytoken"] = serde_json::json!("");
        assert_eq!(credentials_in(&config, "r.io", "app"), Some(("me".into(), "pw".into())));
    }

    #[test]
    fn helper_answers() {
        let answer = br#"{"ServerURL": "r.io", "Username": "AWS", "Secret": "pw"}"#;
        assert_eq!(helper_answer(answer), Ok(("AWS".into(), "pw".into())));
        let token = helper_answer(br#"{"Username": "<token>", "Secret": "refresh"}"#);
        assert_eq!(token, Ok((IDENTITY_TOKEN_USER.into(), "refresh".into())));
        assert!(helper_answer(br#"{"Username": "me"}"#).unwrap_err().contains("no Username and Secret"));
        assert!(helper_answer(b"oops").unwrap_err().contains("not JSON"));
        assert!(ask_helper("../evil", "r.io").unwrap_err().contains("not a credential helper"));
        assert!(ask_helper("rkt-test-absent", "r.io").unwrap_err().contains("is not installed"));
    }
}
