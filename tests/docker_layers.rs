//! Docker layers in the store. A pull downloads a layer's blob once wherever it can: a layer an
//! image gives twice (the same content under two chains) is copied from the first, and a layer
//! whose conversion reads it again is downloaded once more at most (see also
//! `tar_differentials`). `image list` shows an image, not its layers, unless asked.

mod common;

use common::oci::*;
use common::registry::{layer, Registry};
use common::*;

#[test]
fn a_layer_given_twice_is_downloaded_once_and_listed_with_its_image() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let Some(registry) = Registry::start(&env.path("registry")) else { return };
    let base = layer(&[("etc/a", "a\n"), ("etc/b", "b\n")]);
    let mut over = Tar::new();
    over.file("etc/.wh.a", b"").file("etc/b", b"changed\n").file("etc/c", b"c\n");
    let mut layout = Layout::new(env.path("layout"));
    let layers: [LayerSpec; 3] = [(base.clone(), TGZ, gzip), (over.finish(), TGZ, gzip), (base, TGZ, gzip)];
    layout.image("v1", &layers, serde_json::json!({}));
    let theirs = describe(&umoci_unpack(&env, &layout.dir));
    assert!(theirs.0.contains_key("etc/a") && theirs.0.contains_key("etc/c"), "{theirs:?}");
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "layers/twice:v1");
    let image = format!("docker://{}/layers/twice:v1", registry.addr);
    let id = env.ok(&["--insecure-options=image,http", "fetch", "--full", &image]).trim().to_string();
    assert_eq!(registry.blob_requests(), 3, "the config and each of the two layers once");
    let ours = env.path("ours");
    env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
    assert_eq!(describe(&ours), theirs);
    // The rendered tree the pull made is the same tree.
    assert!(env.ok(&["image", "verify", &id]).contains("ok (1 tree(s) checked)"));
    let listed = env.ok(&["image", "list", "--all", "--no-legend", "--fields=id"]);
    assert_eq!(listed.lines().count(), 4, "three layers and the image: {listed}");

    // Pulled as `twice` (latest, implied), it is found as `twice:latest` with the registry
    // gone: by `fetch --pull-policy=new`, `run`'s default, and by the image commands.
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "layers/twice:latest");
    let implied = format!("docker://{}/layers/twice", registry.addr);
    let latest = env.ok(&["--insecure-options=image,http", "fetch", "--full", &implied]).trim().to_string();
    // Asked for again as `twice:latest`, unchanged: a HEAD, no blob.
    let (blobs, manifests) = (registry.blob_requests(), registry.manifest_requests());
    let spelled = format!("docker://{}/layers/twice:latest", registry.addr);
    let again = env.ok(&["--insecure-options=image,http", "fetch", "--full", "--pull-policy=update", &spelled]);
    assert_eq!(again.trim(), latest);
    assert_eq!((registry.blob_requests(), registry.manifest_requests()), (blobs, manifests + 1));
    let addr = registry.addr.clone();
    drop(registry);
    let spelled = format!("docker://{addr}/layers/twice:latest");
    let found = env.ok(&["--insecure-options=image,http", "fetch", "--full", "--pull-policy=new", &spelled]);
    assert_eq!(found.trim(), latest);
    assert!(env.ok(&["image", "cat-manifest", &spelled]).contains("appc.io/docker/originalname"));
    let out = env.rkt(&["--insecure-options=image,http", "fetch", "--pull-policy=update", &spelled]);
    assert_eq!(out.status.code(), Some(254), "update asks the registry, which is gone");
    env.ok(&["image", "rm", &spelled]);

    // Listed without --all: the image alone, its size counting its layers'.
    let rows = |args: &[&str]| -> Vec<(String, u64)> {
        env.listed(args).into_iter().map(|(id, _, size)| (id, size)).collect()
    };
    let all = rows(&["--all"]);
    let total: u64 = all.iter().map(|(_, size)| size).sum();
    assert_eq!(rows(&[]), vec![(id.clone(), total)]);
    // Layers no image is made of (here: the image's blob lost, its row dropped by `image
    // verify`) are listed all the same, as one: the top one, its size counting those below.
    let blob = env.store().join("cas/blob/sha512").join(&id[7..9]).join(&id);
    std::fs::remove_file(blob).unwrap();
    assert!(env.ok(&["image", "verify"]).contains("dropped from the index"));
    let own_size = all.iter().find(|(i, _)| *i == id).unwrap().1;
    let left = rows(&[]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, total - own_size);
    assert_eq!(rows(&["--all"]).len(), 3);
}

/// `image rm` of a Docker image takes the layers it is made of with it, but for those another
/// stored image is made of too.
#[test]
fn an_image_removed_takes_the_layers_no_other_image_is_made_of() {
    let env = Env::new();
    let base = layer(&[("etc/base", "base\n")]);
    let mut layout = Layout::new(env.path("layout"));
    layout.image("one", &[(base.clone(), TGZ, gzip), (layer(&[("etc/one", "1\n")]), TGZ, gzip)], serde_json::json!({}));
    layout.image("two", &[(base, TGZ, gzip), (layer(&[("etc/two", "2\n")]), TGZ, gzip)], serde_json::json!({}));
    let fetch = |tag: &str| {
        let image = format!("oci:{}:{tag}", layout.dir.display());
        env.ok(&["--insecure-options=image", "fetch", "--full", &image]).trim().to_string()
    };
    let (one, two) = (fetch("one"), fetch("two"));
    assert_eq!(env.image_ids().len(), 5, "two images, their own layers and the base they share");
    let out = env.rkt(&["image", "rm", &one]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 Docker layer(s) no other image is made of removed too"));
    let left = env.image_ids();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&two) && !left.contains(&one));
    let ours = env.path("ours");
    env.ok(&["image", "render", "--rootfs-only", &two, ours.to_str().unwrap()]);
    assert!(ours.join("etc/base").is_file() && ours.join("etc/two").is_file());
    env.ok(&["image", "rm", &two]);
    assert!(env.image_ids().is_empty());
    let blobs = walkdir(&env.store().join("cas/blob"));
    assert!(blobs.iter().all(|p| p.is_dir()), "{blobs:?}");
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(entry.path());
        if entry.path().is_dir() {
            out.extend(walkdir(&entry.path()));
        }
    }
    out
}
