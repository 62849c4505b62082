//! Image documents that Go's encoding/json reads otherwise than serde. Go matches keys to
//! fields without regard to case and the later of two such keys wins: a manifest with both
//! `layers` and `Layers` is one image for Docker, podman, skopeo and umoci and another for a
//! reader that matches exactly, under the same digest. rkt refuses such documents.

mod common;

use std::path::Path;

use common::oci::*;
use common::registry::Registry;
use common::*;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A one-layer layer tar holding `name`.
fn layer_with(name: &str) -> Vec<u8> {
    let mut t = Tar::new();
    t.file(name, name.as_bytes());
    t.finish()
}

/// Writes `layer`'s blob and a config for it; returns the layer's and the config's
/// descriptors as JSON text.
fn blobs_for(layout: &Layout, layer: &[u8], config: serde_json::Value) -> (String, String) {
    let (digest, size) = layout.blob(&gzip(layer));
    let layer_desc = serde_json::json!({"mediaType": TGZ, "digest": digest, "size": size}).to_string();
    let mut config = config;
    config["architecture"] = serde_json::json!("amd64");
    config["os"] = serde_json::json!("linux");
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": [sha256(layer)]});
    let (digest, size) = layout.blob(config.to_string().as_bytes());
    let config_desc =
        serde_json::json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": size});
    (layer_desc, config_desc.to_string())
}

fn refused(env: &Env, image: &str, why: &str) {
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["fetch", "--insecure-options=image,http", image]);
    assert!(err.contains(why), "{err}");
    assert_eq!(env.snapshot(), before);
}

fn umoci_bundle(env: &Env, layout: &Path) -> std::path::PathBuf {
    let bundle = env.path("bundle");
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:v1", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    bundle
}

#[test]
fn keys_go_folds_onto_a_field_are_refused() {
    if !tools() {
        return;
    }
    // `layers` and, later, `Layers`: Go takes the second, serde the first.
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    let (a_layer, a_config) = blobs_for(&layout, &layer_with("seen-by-exact-readers"), serde_json::json!({}));
    let (b_layer, b_config) = blobs_for(&layout, &layer_with("seen-by-go"), serde_json::json!({}));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{a_config},"layers":[{a_layer}],"Config":{b_config},"Layers":[{b_layer}]}}"#
    );
    layout.add_bytes("v1", MANIFEST, manifest.as_bytes());
    let bundle = umoci_bundle(&env, &layout.dir);
    assert!(bundle.join("rootfs/seen-by-go").exists(), "umoci reads the later keys");
    let image = format!("oci:{}:v1", layout.dir.display());
    refused(&env, &image, "which Go's JSON reader takes for");

    // The same manifest in a registry (pushed by skopeo, which copies it as written).
    if let Some(registry) = Registry::start(&env.path("registry")) {
        registry.push(&image, "json/twice:v1");
        refused(&env, &format!("docker://{}/json/twice:v1", registry.addr), "which Go's JSON reader takes for");
    }

    // A config with `Cmd` and, later, `cmd`: Go runs the second.
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    let (layer, _) = blobs_for(&layout, &layer_with("x"), serde_json::json!({}));
    let text = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/exact"],"cmd":["/bin/go"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha256(&layer_with("x"))
    );
    let (digest, size) = layout.blob(text.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":{size}}},"layers":[{layer}]}}"#
    );
    layout.add_bytes("v1", MANIFEST, manifest.as_bytes());
    let bundle = umoci_bundle(&env, &layout.dir);
    let runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["args"], serde_json::json!(["/bin/go"]), "umoci runs the later key");
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "it has both \"Cmd\" and \"cmd\"");

    // A descriptor whose size is spelled with a long s (U+017F), which Go folds to `size`.
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    let (layer, config) = blobs_for(&layout, &layer_with("x"), serde_json::json!({}));
    let layer = layer.replace("\"size\"", "\"\u{17F}ize\"");
    let manifest = format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{layer}]}}"#);
    layout.add_bytes("v1", MANIFEST, manifest.as_bytes());
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "which Go's JSON reader takes for \"size\"");

    // docker save's manifest.json with `Layers` and, later, `layers`.
    let env = Env::new();
    let (a, b) = (layer_with("a"), layer_with("b"));
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&a)]}});
    let manifest = r#"[{"Config":"config.json","RepoTags":["twice:1"],"Layers":["a.tar"],"layers":["b.tar"]}]"#;
    let mut archive = Tar::new();
    archive.file("manifest.json", manifest.as_bytes()).file("config.json", config.to_string().as_bytes());
    archive.file("a.tar", &a).file("b.tar", &b);
    let path = env.write("saved.tar", &archive.finish());
    refused(&env, &format!("docker-archive:{}", path.display()), "it has both \"Layers\" and \"layers\"");
}
