//! rkt's configuration: `*.json` files directly in the `auth.d`, `paths.d` and `stage1.d`
//! subdirectories of the system, local and (optional) user directories. A later directory
//! overrides an earlier one per domain, registry or field; within one directory a domain or
//! registry defined twice, or two paths or stage1 files, are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
#[error("configuration {}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_path_buf(), message: message.into() }
}

/// How rkt authenticates to one host (`auth` kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    OAuth { token: String },
}

impl Credentials {
    fn to_json(&self) -> (&'static str, Value) {
        match self {
            Credentials::Basic { user, password } => ("basic", json!({ "user": user, "password": password })),
            Credentials::OAuth { token } => ("oauth", json!({ "token": token })),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    pub data: Option<PathBuf>,
    pub stage1_images: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stage1 {
    pub name: Option<String>,
    pub version: Option<String>,
    pub location: Option<String>,
}

/// The merged configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// By host (and port), as rkt keys `auth` domains.
    pub auth: BTreeMap<String, Credentials>,
    /// By registry host, from `dockerAuth` files.
    pub docker_auth: BTreeMap<String, BasicCredentials>,
    pub paths: Paths,
    pub stage1: Stage1,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    rkt_kind: String,
    rkt_version: String,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct DockerAuthFile {
    #[serde(default)]
    registries: Vec<String>,
    // rkt's documentation shows `domains` in one dockerAuth example; accept it as registries.
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PathsFile {
    data: Option<PathBuf>,
    #[serde(rename = "stage1-images")]
    stage1_images: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Stage1File {
    name: Option<String>,
    version: Option<String>,
    location: Option<String>,
}

fn required(creds: &BTreeMap<String, String>, key: &str, path: &Path) -> Result<String, ConfigError> {
    match creds.get(key) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(err(path, format!("credentials.{key} is missing or empty"))),
    }
}

/// The `.json` regular files directly in `dir`, sorted; none when `dir` does not exist.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, e.to_string())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, e.to_string()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") && path.metadata().is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<(Header, Value), ConfigError> {
    let text = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| err(path, format!("not valid JSON: {e}")))?;
    let header: Header =
        serde_json::from_value(value.clone()).map_err(|_| err(path, "rktKind and rktVersion are required"))?;
    if header.rkt_kind.is_empty() || header.rkt_version.is_empty() {
        return Err(err(path, "rktKind and rktVersion cannot be empty"));
    }
    if header.rkt_version != "v1" {
        return Err(err(
            path,
            format!("unsupported rktVersion {:?} of kind {:?}", header.rkt_version, header.rkt_kind),
        ));
    }
    Ok((header, value))
}

/// The one configuration file of `kind` in `dir/sub`: two are an error.
fn single_file(dir: &Path, sub: &str, kind: &str) -> Result<Option<(PathBuf, Value)>, ConfigError> {
    let mut found: Option<(PathBuf, Value)> = None;
    for path in json_files(&dir.join(sub))? {
        let (header, value) = read(&path)?;
        if header.rkt_kind != kind {
            return Err(err(&path, format!("kind {:?} does not belong in {sub}", header.rkt_kind)));
        }
        if let Some((first, _)) = &found {
            return Err(err(&path, format!("{kind} configuration is already defined in {}", first.display())));
        }
        found = Some((path, value));
    }
    Ok(found)
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, path: &Path) -> Result<T, ConfigError> {
    serde_json::from_value(value).map_err(|e| err(path, e.to_string()))
}

impl Config {
    /// Reads `system`, then `local`, then `user` (each may be missing), later ones overriding.
    pub fn load(dirs: &[&Path]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for dir in dirs {
            config.merge_dir(dir)?;
        }
        Ok(config)
    }

    fn merge_dir(&mut self, dir: &Path) -> Result<(), ConfigError> {
        let mut auth_seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut docker_seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let twice = |what: &str, name: &str, first: &Path, path: &Path| {
            err(path, format!("{what} {name:?} is already defined in {}", first.display()))
        };
        for path in json_files(&dir.join("auth.d"))? {
            let (header, value) = read(&path)?;
            match header.rkt_kind.as_str() {
                "auth" => {
                    let file: AuthFile = parse(value, &path)?;
                    if file.domains.is_empty() {
                        return Err(err(&path, "domains cannot be empty"));
                    }
                    let creds = match file.kind.as_str() {
                        "basic" => Credentials::Basic {
                            user: required(&file.credentials, "user", &path)?,
                            password: required(&file.credentials, "password", &path)?,
                        },
                        "oauth" => Credentials::OAuth { token: required(&file.credentials, "token", &path)? },
                        "" => return Err(err(&path, "type is required")),
                        other => return Err(err(&path, format!("unknown auth type {other:?} (basic or oauth)"))),
                    };
                    for domain in file.domains {
                        if let Some(first) = auth_seen.insert(domain.clone(), path.clone()) {
                            return Err(twice("domain", &domain, &first, &path));
                        }
                        self.auth.insert(domain, creds.clone());
                    }
                }
                "dockerAuth" => {
                    let file: DockerAuthFile = parse(value, &path)?;
                    let registries: Vec<String> = file.registries.into_iter().chain(file.domains).collect();
                    if registries.is_empty() {
                        return Err(err(&path, "registries cannot be empty"));
                    }
                    let creds = BasicCredentials {
                        user: required(&file.credentials, "user", &path)?,
                        password: required(&file.credentials, "password", &path)?,
                    };
                    for registry in registries {
                        if let Some(first) = docker_seen.insert(registry.clone(), path.clone()) {
                            return Err(twice("registry", &registry, &first, &path));
                        }
                        self.docker_auth.insert(registry, creds.clone());
                    }
                }
                other => return Err(err(&path, format!("kind {other:?} does not belong in auth.d"))),
            }
        }
        if let Some((path, value)) = single_file(dir, "paths.d", "paths")? {
            let file: PathsFile = parse(value, &path)?;
            if file.data.is_some() {
                self.paths.data = file.data;
            }
            if file.stage1_images.is_some() {
                self.paths.stage1_images = file.stage1_images;
            }
        }
        if let Some((path, value)) = single_file(dir, "stage1.d", "stage1")? {
            let file: Stage1File = parse(value, &path)?;
            for (slot, value) in [
                (&mut self.stage1.name, file.name),
                (&mut self.stage1.version, file.version),
                (&mut self.stage1.location, file.location),
            ] {
                if value.is_some() {
                    *slot = value;
                }
            }
        }
        Ok(())
    }

    /// What `rkt config` prints: `{"stage0": [...]}`, one entry per auth domain and per
    /// Docker registry, then paths and stage1, each a valid configuration file of its own.
    pub fn stage0_json(&self, data_dir: &Path, stage1_images: &Path) -> Value {
        let mut entries = Vec::new();
        for (domain, creds) in &self.auth {
            let (kind, credentials) = creds.to_json();
            entries.push(json!({"rktVersion": "v1", "rktKind": "auth", "domains": [domain], "type": kind, "credentials": credentials}));
        }
        for (registry, creds) in &self.docker_auth {
            entries.push(json!({"rktVersion": "v1", "rktKind": "dockerAuth", "registries": [registry],
                "credentials": {"user": creds.user, "password": creds.password}}));
        }
        entries.push(json!({"rktVersion": "v1", "rktKind": "paths", "data": data_dir,
            "stage1-images": self.paths.stage1_images.as_deref().unwrap_or(stage1_images)}));
        let mut stage1 = json!({"rktVersion": "v1", "rktKind": "stage1"});
        for (key, value) in
            [("name", &self.stage1.name), ("version", &self.stage1.version), ("location", &self.stage1.location)]
        {
            if let Some(v) = value {
                stage1[key] = json!(v);
            }
        }
        entries.push(stage1);
        json!({ "stage0": entries })
    }
}

#[cfg(test)]
mod tests;
