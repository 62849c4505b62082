//! docker2aci's names, labels, annotations and app for a converted image.

use rkt_store::appc::ident::{sanitize_ac_identifier, sanitize_ac_name};
use rkt_store::appc::{App, ImageManifest, NameValue};

use super::types::ImageConfigFile;
use super::OciError;

pub const DEFAULT_REGISTRY: &str = "registry-1.docker.io";

/// The host's architecture as Docker and OCI name it.
pub fn host_go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Docker's os/arch as appc's labels (docker2aci's mapping).
pub fn appc_os_arch(config: &ImageConfigFile) -> (String, String) {
    let arch = match (config.architecture.as_str(), config.variant.as_deref()) {
        ("amd64", _) | ("", _) => "amd64",
        ("386", _) => "i386",
        ("arm64", _) => "aarch64",
        ("arm", Some("v6")) => "armv6l",
        ("arm", _) => "armv7l",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        (other, _) => other,
    };
    let os = if config.os.is_empty() { "linux" } else { config.os.as_str() };
    (os.to_string(), arch.to_string())
}

/// Splits a Docker reference as docker2aci normalizes it: `busybox` is
/// `registry-1.docker.io/library/busybox:latest`. Returns (registry, repository, tag).
pub fn parse_docker_ref(reference: &str) -> (String, String, String) {
    let (rest, tag) = match reference.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t.to_string()),
        _ => (reference, "latest".to_string()),
    };
    let rest = rest.split('@').next().unwrap_or(rest);
    let (registry, repo) = match rest.split_once('/') {
        Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (first.to_string(), path.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), rest.to_string()),
    };
    let registry =
        if registry == "docker.io" || registry == "index.docker.io" { DEFAULT_REGISTRY.to_string() } else { registry };
    let repo = if registry == DEFAULT_REGISTRY && !repo.contains('/') { format!("library/{repo}") } else { repo };
    (registry, repo, tag)
}

pub fn same_docker_ref(a: &str, b: &str) -> bool {
    parse_docker_ref(a) == parse_docker_ref(b)
}

/// The ACI name and version of an image: from its Docker reference when it has one, else from
/// the layout's or archive's file name (`oci.local/NAME`) with the reference as version.
pub fn name_for(reference: Option<&str>, file_name: &str) -> (String, String) {
    match reference {
        Some(r) if r.contains('/') || r.contains(':') => {
            let (registry, repo, tag) = parse_docker_ref(r);
            (sanitize_ac_identifier(&format!("{registry}/{repo}")), tag)
        }
        other => {
            let base = sanitize_ac_identifier(file_name);
            let base = if base.is_empty() { "image".to_string() } else { base };
            (format!("oci.local/{base}"), other.unwrap_or("latest").to_string())
        }
    }
}

pub struct Provenance<'a> {
    pub original: &'a str,
    pub config_digest: &'a str,
    pub manifest_digest: Option<&'a str>,
}

/// The image's manifest: docker2aci's app from the config, its labels and annotations, and a
/// dependency on the top layer.
pub fn image_manifest(
    name: &str,
    version: &str,
    os: &str,
    arch: &str,
    config: &ImageConfigFile,
    top_layer: Option<&str>,
    provenance: &Provenance,
) -> Result<String, OciError> {
    let c = config.config.clone().unwrap_or_default();
    let entrypoint = c.entrypoint.clone().unwrap_or_default();
    let cmd = c.cmd.clone().unwrap_or_default();
    let exec: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    let (user, group) = match c.user.as_deref().filter(|u| !u.is_empty()) {
        None => ("0".to_string(), "0".to_string()),
        Some(u) => match u.split_once(':') {
            Some((user, group)) => (user.to_string(), group.to_string()),
            None => (u.to_string(), u.to_string()),
        },
    };
    let environment = c
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| NameValue { name: k.to_string(), value: v.to_string() })
        .collect();
    let mut ports = Vec::new();
    for spec in c.exposed_ports.iter().flat_map(|p| p.keys()) {
        let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let Ok(port) = port.parse::<u32>() else { continue };
        ports.push(rkt_store::appc::manifest::Port {
            name: sanitize_ac_name(&format!("{port}-{protocol}")),
            protocol: protocol.to_string(),
            port,
            count: 1,
            socket_activated: false,
        });
    }
    let mut mount_points: Vec<rkt_store::appc::manifest::MountPoint> = Vec::new();
    for path in c.volumes.iter().flat_map(|v| v.keys()) {
        let base = sanitize_ac_name(&format!("volume-{path}"));
        let mut name = base.clone();
        let mut n = 1;
        while mount_points.iter().any(|m| m.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        mount_points.push(rkt_store::appc::manifest::MountPoint { name, path: path.clone(), read_only: false });
    }
    mount_points.sort_by(|a, b| a.name.cmp(&b.name));
    let app = App {
        exec,
        user,
        group,
        working_directory: c.working_dir.clone().unwrap_or_default(),
        environment,
        mount_points,
        ports,
        user_labels: c.labels.clone().unwrap_or_default().into_iter().collect(),
        ..App::default()
    };
    let mut annotations = vec![];
    let mut annotate = |k: &str, v: &str| {
        if !v.is_empty() {
            annotations.push(NameValue { name: format!("appc.io/docker/{k}"), value: v.to_string() });
        }
    };
    let (registry, repo, _) = parse_docker_ref(provenance.original);
    annotate("originalname", provenance.original);
    annotate("registryurl", &registry);
    annotate("repository", &repo);
    annotate("imageid", provenance.config_digest);
    annotate("manifesthash", provenance.manifest_digest.unwrap_or_default());
    // As docker2aci: an empty Entrypoint or Cmd is no annotation, not `[]`.
    for (key, list) in [("entrypoint", &entrypoint), ("cmd", &cmd)] {
        if !list.is_empty() {
            annotate(key, &serde_json::to_string(list).unwrap_or_default());
        }
    }
    if let Some(created) = &config.created {
        annotations.push(NameValue { name: "created".into(), value: created.clone() });
    }
    if let Some(author) = config.author.as_deref().filter(|a| !a.is_empty()) {
        annotations.push(NameValue { name: "authors".into(), value: author.to_string() });
    }
    let manifest = ImageManifest {
        ac_kind: "ImageManifest".into(),
        ac_version: rkt_store::appc::manifest::APPC_VERSION.into(),
        name: name.to_string(),
        labels: super::labels(version, os, arch),
        app: Some(app),
        dependencies: top_layer
            .map(|t| {
                vec![rkt_store::appc::Dependency {
                    image_name: t.to_string(),
                    image_id: None,
                    labels: Vec::new(),
                    size: None,
                }]
            })
            .unwrap_or_default(),
        path_whitelist: Vec::new(),
        annotations,
    };
    manifest.validate().map_err(|e| OciError::Invalid(format!("the converted manifest is invalid: {e}")))?;
    serde_json::to_string(&manifest).map_err(|e| OciError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references() {
        assert_eq!(parse_docker_ref("busybox"), (DEFAULT_REGISTRY.into(), "library/busybox".into(), "latest".into()));
        assert_eq!(
            parse_docker_ref("docker.io/library/busybox:1"),
            (DEFAULT_REGISTRY.into(), "library/busybox".into(), "1".into())
        );
        assert_eq!(
            parse_docker_ref("gcr.io/google-samples/node-hello:1.0"),
            ("gcr.io".into(), "google-samples/node-hello".into(), "1.0".into())
        );
        assert_eq!(
            parse_docker_ref("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000".into(), "busybox".into(), "latest".into())
        );
        assert!(same_docker_ref("busybox:latest", "docker.io/library/busybox"));
        assert_eq!(
            name_for(Some("busybox:latest"), "x"),
            ("registry-1.docker.io/library/busybox".into(), "latest".into())
        );
        assert_eq!(name_for(Some("v1"), "My Layout"), ("oci.local/my_layout".into(), "v1".into()));
    }

    #[test]
    fn only_a_given_entrypoint_or_cmd_is_annotated() {
        let config: ImageConfigFile = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":[],"Cmd":["sh"]},"rootfs":{"diff_ids":[]}}"#,
        )
        .unwrap();
        let provenance = Provenance { original: "busybox", config_digest: "sha256:c", manifest_digest: None };
        let manifest = image_manifest("n", "latest", "linux", "amd64", &config, None, &provenance).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let names: Vec<&str> =
            manifest["annotations"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"appc.io/docker/cmd") && !names.contains(&"appc.io/docker/entrypoint"), "{names:?}");
        assert_eq!(manifest["app"]["exec"], serde_json::json!(["sh"]));
    }
}
