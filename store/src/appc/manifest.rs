//! The appc image manifest: its JSON shape and the validation rules of the appc spec.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ident::{is_ac_identifier, is_ac_name, is_env_name};
use super::semver::is_semver;
use crate::image_id::ImageId;

/// The largest manifest the store accepts, in bytes: anything bigger is a hostile input.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The appc spec version this implementation writes and reads.
pub const APPC_VERSION: &str = "0.8.11";

/// What is wrong with a manifest: the field, the offending value and the rule it breaks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} {value:?}: {rule}")]
pub struct ManifestError {
    pub field: String,
    pub value: String,
    pub rule: String,
}

fn bad(field: impl Into<String>, value: impl Into<String>, rule: impl Into<String>) -> ManifestError {
    ManifestError { field: field.into(), value: value.into(), rule: rule.into() }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// The parsed `manifest` file of an ACI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub ac_kind: String,
    pub ac_version: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub labels: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub path_whitelist: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub annotations: Vec<NameValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub exec: Vec<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
    #[serde(
        default,
        rename = "supplementaryGIDs",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub supplementary_gids: Vec<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_directory: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub environment: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub isolators: Vec<Isolator>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub event_handlers: Vec<EventHandler>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub user_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub name: String,
    pub protocol: String,
    pub port: u32,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub socket_activated: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isolator {
    pub name: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHandler {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub exec: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub image_name: String,
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub labels: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// JSON `null` where a list is expected means the empty list, as Go's encoder writes it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The os/arch pairs the appc spec accepts (`ValidOSArch`).
pub const VALID_OS_ARCH: &[(&str, &[&str])] = &[
    ("linux", &["amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b", "ppc64", "ppc64le", "s390x"]),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

impl ImageManifest {
    /// Parses and validates manifest bytes; the error names the field and the bad value.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(bad("manifest", format!("{} bytes", bytes.len()), "larger than the 1 MiB limit"));
        }
        let manifest: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| bad("manifest", "JSON", format!("not a valid image manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The value of label `name`, if the manifest has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.ac_kind != "ImageManifest" {
            return Err(bad("acKind", &self.ac_kind, "must be \"ImageManifest\""));
        }
        if !is_semver(&self.ac_version) {
            return Err(bad("acVersion", &self.ac_version, "must be a semantic version such as 0.8.11"));
        }
        if !is_ac_identifier(&self.name) {
            return Err(bad("name", &self.name, AC_IDENTIFIER_RULE));
        }
        validate_labels("labels", &self.labels)?;
        if let Some(app) = &self.app {
            app.validate()?;
        }
        for (i, dep) in self.dependencies.iter().enumerate() {
            let field = format!("dependencies[{i}]");
            if !is_ac_identifier(&dep.image_name) {
                return Err(bad(format!("{field}.imageName"), &dep.image_name, AC_IDENTIFIER_RULE));
            }
            if let Some(id) = &dep.image_id {
                if ImageId::parse_full(id).is_none() {
                    return Err(bad(
                        format!("{field}.imageID"),
                        id,
                        "must be sha512- followed by 64 or 128 hex digits",
                    ));
                }
            }
            validate_labels(&format!("{field}.labels"), &dep.labels)?;
        }
        for (i, path) in self.path_whitelist.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(bad(format!("pathWhitelist[{i}]"), path, "must be an absolute path"));
            }
        }
        validate_unique_identifiers("annotations", &self.annotations)
    }
}

const AC_IDENTIFIER_RULE: &str = "must be an AC identifier (lowercase a-z and 0-9, joined by single -._~/)";
const AC_NAME_RULE: &str = "must be an AC name (lowercase a-z and 0-9, joined by single -)";

fn validate_unique_identifiers(field: &str, items: &[NameValue]) -> Result<(), ManifestError> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        if !is_ac_identifier(&item.name) {
            return Err(bad(format!("{field}.name"), &item.name, AC_IDENTIFIER_RULE));
        }
        if !seen.insert(item.name.as_str()) {
            return Err(bad(format!("{field}.name"), &item.name, "appears more than once"));
        }
    }
    Ok(())
}

/// Labels as appc's `Labels.assertValid`: unique AC identifiers, never `name`, and a known
/// os with an arch valid for it.
pub fn validate_labels(field: &str, labels: &[NameValue]) -> Result<(), ManifestError> {
    validate_unique_identifiers(field, labels)?;
    if labels.iter().any(|l| l.name == "name") {
        return Err(bad(format!("{field}.name"), "name", "is reserved and cannot be a label"));
    }
    let get = |n: &str| labels.iter().find(|l| l.name == n).map(|l| l.value.as_str());
    if let Some(os) = get("os") {
        let Some((_, arches)) = VALID_OS_ARCH.iter().find(|(o, _)| *o == os) else {
            let oses: Vec<&str> = VALID_OS_ARCH.iter().map(|(o, _)| *o).collect();
            return Err(bad(format!("{field}.os"), os, format!("bad os (must be one of: {})", oses.join(", "))));
        };
        if let Some(arch) = get("arch") {
            if !arches.contains(&arch) {
                return Err(bad(
                    format!("{field}.arch"),
                    arch,
                    format!("bad arch for {os} (must be one of: {})", arches.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

impl App {
    fn validate(&self) -> Result<(), ManifestError> {
        // appc 0.7 (spec#527) allows a relative exec[0]: the executor looks it up as exec(3)
        // does, in the app's PATH. docker2aci relies on it (busybox's CMD is `sh`).
        if self.exec.first().is_some_and(|first| first.is_empty()) {
            return Err(bad("app.exec[0]", "", "must not be empty"));
        }
        if self.user.is_empty() {
            return Err(bad("app.user", "", "is required"));
        }
        if self.group.is_empty() {
            return Err(bad("app.group", "", "is required"));
        }
        if !self.working_directory.is_empty() && !self.working_directory.starts_with('/') {
            return Err(bad("app.workingDirectory", &self.working_directory, "must be an absolute path"));
        }
        for env in &self.environment {
            if !is_env_name(&env.name) {
                return Err(bad("app.environment.name", &env.name, "must match [A-Za-z_][A-Za-z_0-9.-]*"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for mp in &self.mount_points {
            if !is_ac_name(&mp.name) {
                return Err(bad("app.mountPoints.name", &mp.name, AC_NAME_RULE));
            }
            if !names.insert(mp.name.as_str()) {
                return Err(bad("app.mountPoints.name", &mp.name, "appears more than once"));
            }
            if !mp.path.starts_with('/') {
                return Err(bad("app.mountPoints.path", &mp.path, "must be an absolute path"));
            }
        }
        names.clear();
        for port in &self.ports {
            if !is_ac_name(&port.name) {
                return Err(bad("app.ports.name", &port.name, AC_NAME_RULE));
            }
            if !names.insert(port.name.as_str()) {
                return Err(bad("app.ports.name", &port.name, "appears more than once"));
            }
            if !matches!(port.protocol.as_str(), "tcp" | "udp") {
                return Err(bad("app.ports.protocol", &port.protocol, "must be tcp or udp"));
            }
            if port.port == 0 || port.port > 65535 {
                return Err(bad("app.ports.port", port.port.to_string(), "must be between 1 and 65535"));
            }
            if port.count == 0 || port.port + port.count - 1 > 65535 {
                return Err(bad("app.ports.count", port.count.to_string(), "must be at least 1 and stay within 65535"));
            }
        }
        for iso in &self.isolators {
            if !is_ac_identifier(&iso.name) {
                return Err(bad("app.isolators.name", &iso.name, AC_IDENTIFIER_RULE));
            }
        }
        names.clear();
        for handler in &self.event_handlers {
            if !matches!(handler.name.as_str(), "pre-start" | "post-stop") {
                return Err(bad("app.eventHandlers.name", &handler.name, "must be pre-start or post-stop"));
            }
            if !names.insert(handler.name.as_str()) {
                return Err(bad("app.eventHandlers.name", &handler.name, "only one handler of each name is allowed"));
            }
            if handler.exec.is_empty() {
                return Err(bad("app.eventHandlers.exec", &handler.name, "must not be empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
