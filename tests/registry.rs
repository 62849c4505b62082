//! `docker://` images from a real registry: Debian's docker-registry on 127.0.0.1, images
//! pushed into it by skopeo from OCI layouts built here.

mod common;

use common::oci::*;
use common::registry::{docker_auth, layer, render_fetched, Registry};
use common::web::Web;
use common::*;

fn busybox_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("bin")
        .file_mode("bin/busybox", &std::fs::read("/bin/busybox").unwrap_or_default(), 0o755, 0, 0)
        .symlink("bin/sh", "busybox");
    t.finish()
}

/// The full ID of the top layer of the converted image `image`: the image its manifest depends on.
fn top_layer_id(env: &Env, image: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", image])).unwrap();
    let top_layer = manifest["dependencies"][0]["imageName"].as_str().unwrap().to_string();
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "list", "--all", "--format=json"])).unwrap();
    let found = listed.as_array().unwrap().iter().find(|i| i["name"] == top_layer.as_str()).unwrap();
    found["id"].as_str().unwrap().to_string()
}

fn flags() -> [&'static str; 1] {
    ["--insecure-options=image,http"]
}

#[test]
fn fetch_run_and_refetch_without_blob_traffic() {
    if !is_root() || !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let env = Env::new();
    let Some(registry) = Registry::start(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    let config = serde_json::json!({"Cmd": ["/bin/sh", "-c", "cat /etc/greeting"]});
    layout.image(
        "v1",
        &[(busybox_layer(), TGZ, gzip), (layer(&[("etc/greeting", "hello from the registry\n")]), TGZ, gzip)],
        config.clone(),
    );
    layout.image(
        "v2",
        &[(busybox_layer(), TGZ, gzip), (layer(&[("etc/greeting", "second image\n")]), TGZ, gzip)],
        config.clone(),
    );
    // v1's top layer over another layer: the same content under another chain.
    layout.image(
        "v3",
        &[
            (busybox_layer(), TGZ, gzip),
            (layer(&[("etc/motd", "between\n")]), TGZ, gzip),
            (layer(&[("etc/greeting", "hello from the registry\n")]), TGZ, gzip),
        ],
        serde_json::json!({"Cmd": ["/bin/sh", "-c", "cat /etc/motd /etc/greeting"]}),
    );
    for tag in ["v1", "v2", "v3"] {
        registry.push(&format!("oci:{}:{tag}", layout.dir.display()), &format!("test/demo:{tag}"));
    }
    let image = format!("docker://{}/test/demo:v1", registry.addr);

    let mut args = flags().to_vec();
    args.extend(["fetch", "--full", image.as_str()]);
    let id = env.ok(&args).trim().to_string();
    assert_eq!(registry.blob_requests(), 3, "a config and two layers");
    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", &id])).unwrap();
    assert_eq!(manifest["name"], format!("127.0.0.1_{}/test/demo", registry.addr.rsplit(':').next().unwrap()));
    assert_eq!(manifest["labels"][0]["value"], "v1");

    // Unchanged tag: one manifest request, a HEAD (Docker Hub counts GETs as pulls), no blob.
    let (before, gets) = (registry.manifest_requests(), registry.manifest_gets());
    assert_eq!(env.ok(&args).trim(), id);
    assert_eq!(registry.blob_requests(), 3);
    assert_eq!(registry.manifest_requests(), before + 1);
    assert_eq!(registry.manifest_gets(), gets);

    // Another image with the same base layer downloads only its own layer and config.
    let v2 = format!("docker://{}/test/demo:v2", registry.addr);
    let mut args2 = flags().to_vec();
    args2.extend(["fetch", v2.as_str()]);
    env.ok(&args2);
    assert_eq!(registry.blob_requests(), 5);
    // A stored layer over another chain is copied from the store, not downloaded again.
    let v3 = format!("docker://{}/test/demo:v3", registry.addr);
    let mut args3 = flags().to_vec();
    args3.extend(["fetch", v3.as_str()]);
    env.ok(&args3);
    assert_eq!(registry.blob_requests(), 7, "v3's config and its middle layer only");

    // A layer cannot be removed alone: v1 could no longer be rendered.
    let layer_id = top_layer_id(&env, &id);
    let out = env.rkt(&["image", "rm", &layer_id]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("depends on it: remove them too"));
    // A layer lost all the same (its blob removed by hand, its row dropped by `image verify`)
    // is brought back by the next fetch of the unchanged tag: here copied from v3's.
    let blob = env.store().join("cas/blob/sha512").join(&layer_id[7..9]).join(&layer_id);
    std::fs::remove_file(blob).unwrap();
    assert!(env.ok(&["image", "verify"]).contains("dropped from the index"));
    assert_eq!(env.ok(&args).trim(), id);
    assert_eq!(registry.blob_requests(), 8, "v1's config only");
    assert!(!env.ok(&["image", "verify"]).contains("dropped"));

    // A tag moved to another image: the HEAD tells, and a GET brings the new manifest.
    let moving = format!("docker://{}/test/demo:moving", registry.addr);
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "test/demo:moving");
    let first = env.ok(&["--insecure-options=image,http", "fetch", &moving]);
    registry.push(&format!("oci:{}:v2", layout.dir.display()), "test/demo:moving");
    let (before, gets) = (registry.manifest_requests(), registry.manifest_gets());
    let second = env.ok(&["--insecure-options=image,http", "fetch", &moving]);
    assert_ne!(first, second);
    assert_eq!((registry.manifest_requests(), registry.manifest_gets()), (before + 2, gets + 1));
    assert_eq!(env.ok(&["run", "--net=host", second.trim()]), "second image\n");

    // rkt run works from the store with the registry gone.
    drop(registry);
    let mut run = flags().to_vec();
    run.extend(["run", "--net=host", image.as_str()]);
    assert_eq!(env.ok(&run), "hello from the registry\n");
    let mut run3 = flags().to_vec();
    run3.extend(["run", "--net=host", v3.as_str()]);
    assert_eq!(env.ok(&run3), "between\nhello from the registry\n");
    env.ok(&["image", "verify"]);
    // The image commands take the reference an image was fetched by.
    let by_reference: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", &image])).unwrap();
    assert_eq!(by_reference, manifest);
    let exported = env.path("v1.aci");
    env.ok(&["image", "export", &image, exported.to_str().unwrap()]);
    assert!(std::fs::metadata(&exported).unwrap().len() > 1 << 20, "squashed with busybox");
    let unknown = image.replace(":v1", ":v9");
    let err = env.fails(&["image", "cat-manifest", &unknown]);
    assert!(err.contains(&format!("no image fetched as {unknown:?} is in the store")), "{err}");
    env.ok(&["image", "rm", &moving]);
    assert!(env.fails(&["image", "cat-manifest", &moving]).contains("no image fetched as"));
    let mut never = flags().to_vec();
    never.extend(["fetch", "--pull-policy=never", image.as_str()]);
    assert_eq!(env.ok(&never).trim(), &id[..39]);
    // As in rkt, only a pull needs --insecure-options=image: the stored image was taken with it.
    assert_eq!(env.ok(&["run", "--net=host", image.as_str()]), "hello from the registry\n");
    let err = env.fails(&["fetch", "--pull-policy=update", image.as_str()]);
    assert!(err.contains("Docker images are unsigned; fetch them with --insecure-options=image"), "{err}");
}

/// A layer the pull would copy from the store (the same content under another chain) whose
/// stored copy is damaged is downloaded instead: the pull succeeds and says so.
#[test]
fn a_damaged_stored_layer_is_downloaded_instead_of_copied() {
    let env = Env::new();
    let Some(registry) = Registry::start(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    let greeting = layer(&[("etc/greeting", "hello from the registry\n")]);
    let config = serde_json::json!({});
    layout.image("v1", &[(layer(&[("etc/base", "base\n")]), TGZ, gzip), (greeting.clone(), TGZ, gzip)], config.clone());
    layout.image("v2", &[(layer(&[("etc/other", "other\n")]), TGZ, gzip), (greeting, TGZ, gzip)], config);
    for tag in ["v1", "v2"] {
        registry.push(&format!("oci:{}:{tag}", layout.dir.display()), &format!("test/damage:{tag}"));
    }
    let fetch = |tag: &str| {
        let image = format!("docker://{}/test/damage:{tag}", registry.addr);
        env.rkt(&["--insecure-options=image,http", "fetch", "--full", &image])
    };
    let v1 = fetch("v1");
    assert!(v1.status.success(), "{}", String::from_utf8_lossy(&v1.stderr));
    assert_eq!(registry.blob_requests(), 3);

    // Bit rot in v1's top layer, the one v2 would copy.
    let layer_id = top_layer_id(&env, String::from_utf8_lossy(&v1.stdout).trim());
    let blob = env.store().join("cas/blob/sha512").join(&layer_id[7..9]).join(&layer_id);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    std::fs::write(&blob, bytes).unwrap();

    let v2 = fetch("v2");
    let stderr = String::from_utf8_lossy(&v2.stderr);
    assert!(v2.status.success(), "{stderr}");
    let warning = format!(
        "warning: stored layer {} is damaged, its content was fetched instead (its data no longer hashes to its ID)",
        &layer_id[..39]
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert_eq!(registry.blob_requests(), 6, "v2's config and both its layers");
    let rendered = render_fetched(&env, &v2);
    assert_eq!(std::fs::read_to_string(rendered.join("etc/greeting")).unwrap(), "hello from the registry\n");
    assert_eq!(std::fs::read_to_string(rendered.join("etc/other")).unwrap(), "other\n");
    // The damage itself is left for `image verify` to report.
    let verified = env.rkt(&["image", "verify"]);
    assert_eq!(verified.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&verified.stdout).contains(&format!("{layer_id}: CORRUPT")));
}

/// A Docker schema 1 manifest (skopeo still writes one, and registries still serve old ones)
/// is refused by its name, with how to make it schema 2, and nothing is stored.
#[test]
fn a_schema_1_manifest_is_named_and_refused() {
    let env = Env::new();
    let Some(registry) = Registry::start_with_schema1(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    let tar = layer(&[("etc/x", "x")]);
    let (layer_digest, layer_size) = layout.blob(&gzip(&tar));
    // Schema 1 carries a history entry per layer, which skopeo makes from the config's.
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        "history": [{"created": "2019-01-01T00:00:00Z", "created_by": "COPY x /etc/x"}]});
    let (config_digest, config_size) = layout.blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": TGZ, "digest": layer_digest, "size": layer_size}]});
    layout.add("v1", "application/vnd.oci.image.manifest.v1+json", &manifest);
    let pushed = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--format", "v2s1"])
        .arg(format!("oci:{}:v1", layout.dir.display()))
        .arg(format!("docker://{}/old/one:v1", registry.addr))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{}/old/one:v1", registry.addr)]);
    assert!(err.contains("Docker schema 1") && err.contains("--format v2s2"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn digests_errors_and_plain_http_are_checked() {
    let env = Env::new();
    let Some(registry) = Registry::start(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    let manifest_digest = layout.image("v1", &[(layer(&[("etc/x", "x")]), TGZ, gzip)], serde_json::json!({}));
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "test/plain:v1");
    env.ok(&["image", "list"]);

    // By digest: the manifest must hash to it.
    let by_digest = format!("docker://{}/test/plain@{manifest_digest}", registry.addr);
    let out = env.rkt(&["--insecure-options=image,http", "fetch", &by_digest]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wrong = format!("docker://{}/test/plain@sha256:{}", registry.addr, "0".repeat(64));
    let before = env.snapshot();
    let err = env.fails(&["--insecure-options=image,http", "fetch", &wrong]);
    assert!(err.contains("MANIFEST_UNKNOWN") || err.contains("does not match its digest"), "{err}");
    // Named as it was written: a digest after `@`, a tag after `:`.
    assert!(err.contains(&format!("test/plain@sha256:{}", "0".repeat(64))), "{err}");
    let err =
        env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{}/test/nothing:v1", registry.addr)]);
    assert!(err.contains("NAME_UNKNOWN") || err.contains("MANIFEST_UNKNOWN"), "the registry's own words: {err}");
    assert!(err.contains("manifest test/nothing:v1: "), "{err}");
    // References outside Docker's grammar never reach the registry.
    let asked = registry.manifest_requests();
    for (bad, why) in [
        ("test/Plain:v1", "must be lowercase"),
        ("test/../plain:v1", "component \"..\""),
        ("test/plain:v1?x=y", "tag \"v1?x=y\""),
    ] {
        let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{}/{bad}", registry.addr)]);
        assert!(err.contains("is not a Docker image reference") && err.contains(why), "{bad}: {err}");
    }
    assert_eq!(registry.manifest_requests(), asked);
    assert_eq!(env.snapshot(), before);

    // Without --insecure-options=http, no plain http.
    let err = env.fails(&["--insecure-options=image", "fetch", &format!("docker://{}/test/plain:v1", registry.addr)]);
    assert!(err.contains("https://"), "{err}");
    assert!(err.contains("does not speak TLS") && err.contains("--insecure-options=http"), "the cause: {err}");

    // A layer blob changed in the registry's storage after the push.
    let blobs = registry.dir.join("data/docker/registry/v2/blobs/sha256");
    let mut tampered = 0;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let bytes = std::fs::read(&data).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                std::fs::write(&data, gzip(&layer(&[("etc/x", "evil")]))).unwrap();
                tampered += 1;
            }
        }
    }
    assert_eq!(tampered, 1);
    let fresh = Env::new();
    fresh.ok(&["image", "list"]);
    let before = fresh.snapshot();
    let err =
        fresh.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{}/test/plain:v1", registry.addr)]);
    // Caught by its size when the new bytes are longer or shorter, else by its digest.
    let refused = ["does not match its digest", "bytes its manifest gives", "ended after"];
    assert!(refused.iter().any(|why| err.contains(why)), "{err}");
    assert_eq!(fresh.snapshot(), before);
}

#[test]
fn a_manifest_list_gives_the_host_platform() {
    let env = Env::new();
    let Some(registry) = Registry::start(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    let amd64 = layout.image("amd64", &[(layer(&[("etc/arch", "amd64")]), TGZ, gzip)], serde_json::json!({}));
    let arm64 = layout.image("arm64", &[(layer(&[("etc/arch", "arm64")]), TGZ, gzip)], serde_json::json!({}));
    layout.platform_index("multi", &[(&arm64, "arm64"), (&amd64, "amd64")]);
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", layout.dir.display()),
            &format!("docker://{}/test/multi:v1", registry.addr),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = env
        .ok(&["--insecure-options=image,http", "fetch", "--full", &format!("docker://{}/test/multi:v1", registry.addr)])
        .trim()
        .to_string();
    let rendered = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &id, rendered.to_str().unwrap()]);
    let expected = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "amd64" };
    assert_eq!(std::fs::read_to_string(rendered.join("etc/arch")).unwrap(), expected);

    // An index without the host's platform says which it has.
    layout.platform_index("foreign", &[(&arm64, "s390x"), (&amd64, "ppc64le")]);
    let err = env.fails(&["--insecure-options=image", "fetch", &format!("oci:{}:foreign", layout.dir.display())]);
    assert!(
        err.contains("has no manifest for linux/") && err.contains("(it has: linux/s390x, linux/ppc64le)"),
        "{err}"
    );
}

/// A registry behind basic auth (alice:s3cret) whose blob downloads redirect to a web server.
fn redirecting_registry(env: &Env) -> Option<(Web, Registry)> {
    let web = Web::start(&env.path("web"), None);
    let registry = Registry::start_redirecting(&env.path("registry"), "alice", "s3cret", &web.url("/"))?;
    Some((web, registry))
}

/// `rkt fetch --full docker://REGISTRY/REPO_TAG` with alice's credentials in auth.d.
fn fetch_as_alice(env: &Env, registry: &Registry, repo_tag: &str) -> std::process::Output {
    let config = docker_auth(env, &registry.addr, "alice", "s3cret");
    let image = format!("docker://{}/{repo_tag}", registry.addr);
    env.rkt(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", "--full", &image])
}

/// `rkt fetch` of `repo_tag` as alice, which must fail as rkt fails and leave the store as it
/// was; returns the error line.
fn refused_as_alice(env: &Env, registry: &Registry, repo_tag: &str) -> String {
    let config = docker_auth(env, &registry.addr, "alice", "s3cret");
    let image = format!("docker://{}/{repo_tag}", registry.addr);
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err =
        env.fails(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image]);
    assert_eq!(env.snapshot(), before, "nothing stored");
    err
}

/// Routes the registry's own blob files on `web`, where its redirect middleware points.
fn serve_blobs(registry: &Registry, web: &Web, route: impl Fn(&std::path::Path) -> serde_json::Value) {
    let storage = registry.dir.join("data");
    let mut stack = vec![storage.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "data") {
                let rel = path.strip_prefix(&storage).unwrap().to_string_lossy().into_owned();
                web.route(&format!("/{rel}"), route(&path));
            }
        }
    }
}

/// A layer download that breaks off is resumed with `Range` from where it stopped.
#[test]
fn broken_blob_downloads_resume_where_they_stopped() {
    let env = Env::new();
    let Some((web, registry)) = redirecting_registry(&env) else { return };
    // Incompressible bytes (xorshift), so that the compressed layer is larger than the cut.
    let payload = incompressible(300_000, 0x2545_f491_4f6c_dd1d);
    let mut t = Tar::new();
    t.dir("etc").file("etc/big", &payload);
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(t.finish(), TGZ, gzip)], serde_json::json!({}));
    registry.push_as(&format!("oci:{}:v1", layout.dir.display()), "big/demo:v1", Some("alice:s3cret"));
    serve_blobs(
        &registry,
        &web,
        |path| serde_json::json!({"file": path, "mode": "cut", "cut": 100_000, "ranges": true}),
    );
    let out = fetch_as_alice(&env, &registry, "big/demo:v1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ranges: Vec<String> = web.requests().iter().filter_map(|r| r["range"].as_str().map(str::to_string)).collect();
    assert_eq!(ranges, vec!["bytes=100000-".to_string()], "one resumed request, from the cut on");
    let rendered = render_fetched(&env, &out);
    assert_eq!(std::fs::read(rendered.join("etc/big")).unwrap(), payload);
}

/// hostile-inputs row 13: the registry sends blob downloads to another server, which must never
/// see the registry's credentials.
#[test]
fn blob_redirects_to_another_host_carry_no_credentials() {
    let env = Env::new();
    let Some((web, registry)) = redirecting_registry(&env) else { return };
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(layer(&[("etc/x", "redirected")]), TGZ, gzip)], serde_json::json!({}));
    registry.push_as(&format!("oci:{}:v1", layout.dir.display()), "priv/demo:v1", Some("alice:s3cret"));
    serve_blobs(&registry, &web, |path| serde_json::json!({"file": path}));
    let out = fetch_as_alice(&env, &registry, "priv/demo:v1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = web.requests();
    assert!(!requests.is_empty(), "the blobs came through the redirect");
    for request in &requests {
        assert_eq!(request["authorization"], serde_json::Value::Null, "credentials followed a redirect: {request}");
    }
    let rendered = render_fetched(&env, &out);
    assert_eq!(std::fs::read_to_string(rendered.join("etc/x")).unwrap(), "redirected");
}

/// A plain-http registry may send its blobs to an https server: that hop verifies the server's
/// certificate like any other (here against the test's own CA, given by SSL_CERT_FILE).
#[test]
fn blob_redirects_to_https_are_verified() {
    let env = Env::new();
    let (ca, cert, key) = common::web::make_ca(&env.path("ca"));
    let web = Web::start(&env.path("web"), Some((&cert, &key)));
    let Some(registry) = Registry::start_redirecting(&env.path("registry"), "alice", "s3cret", &web.url("/")) else {
        return;
    };
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(layer(&[("etc/x", "over tls")]), TGZ, gzip)], serde_json::json!({}));
    registry.push_as(&format!("oci:{}:v1", layout.dir.display()), "tls/demo:v1", Some("alice:s3cret"));
    serve_blobs(&registry, &web, |path| serde_json::json!({"file": path}));
    let err = refused_as_alice(&env, &registry, "tls/demo:v1");
    assert!(err.contains("https://127.0.0.1"), "names the https hop: {err}");
    let config = docker_auth(&env, &registry.addr, "alice", "s3cret");
    let image = format!("docker://{}/tls/demo:v1", registry.addr);
    let out = env
        .cmd(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image])
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!web.requests().is_empty(), "the blobs came over https");
    let rendered = render_fetched(&env, &out);
    assert_eq!(std::fs::read_to_string(rendered.join("etc/x")).unwrap(), "over tls");

    // The CA in a certs.d directory, as podman and Docker keep one for a private host: trusted
    // for that host, and only for it.
    let web_host = web.url("/").trim_start_matches("https://").trim_end_matches('/').to_string();
    for (host, trusted) in [("127.0.0.1:1", false), (web_host.as_str(), true)] {
        let fresh = Env::new();
        let config_home = fresh.path("config");
        let certs_d = config_home.join("containers/certs.d").join(host);
        std::fs::create_dir_all(&certs_d).unwrap();
        std::fs::copy(&ca, certs_d.join("ca.crt")).unwrap();
        let out = fresh
            .cmd(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image])
            .env("XDG_CONFIG_HOME", &config_home)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.success(), trusted, "{host}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A registry that answers no HEAD (the test web server here, as some older registries): a
/// re-fetch of the stored tag asks with a GET, and keeps the stored image.
#[test]
fn a_registry_without_head_is_asked_with_a_get() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    let mut layout = Layout::new(env.path("layout"));
    let manifest = layout.image("v1", &[(layer(&[("etc/x", "no head")]), TGZ, gzip)], serde_json::json!({}));
    for blob in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        let path = format!("/v2/plain/app/blobs/sha256:{}", blob.file_name().to_string_lossy());
        web.route(&path, serde_json::json!({"file": blob.path()}));
    }
    let manifest_file = layout.dir.join("blobs/sha256").join(&manifest[7..]);
    let oci_manifest = serde_json::json!({"Content-Type": "application/vnd.oci.image.manifest.v1+json"});
    web.route("/v2/plain/app/manifests/v1", serde_json::json!({"file": manifest_file, "headers": oci_manifest}));
    let image = format!("docker://127.0.0.1:{}/plain/app:v1", web.port);
    let first = env.ok(&["--insecure-options=image,http", "fetch", &image]);
    assert_eq!(env.ok(&["--insecure-options=image,http", "fetch", &image]), first);
    let gets = web.requests().iter().filter(|r| r["path"] == "/v2/plain/app/manifests/v1").count();
    assert_eq!(gets, 2, "{:?}", web.requests());
}

/// hostile-inputs: replies no honest registry sends, from a server that answers the registry
/// API with what the test says: a Content-Type that contradicts the document, a manifest over
/// 4 MiB, a document that is both an index and a manifest, an error body shown to the user.
/// The same server also scripts a 503, which Debian's registry here does not give, and a
/// bearer-token challenge whose requests it records.
#[test]
fn hostile_and_unusual_registry_replies() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    let addr = web.url("/").trim_start_matches("http://").trim_end_matches('/').to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
        "layers": [],
    });
    let huge = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "annotations": {"padding": "x".repeat(5 << 20)},
    });
    let both = serde_json::json!({"schemaVersion": 2, "manifests": [], "layers": []});
    let routes = [
        (
            "liar",
            serde_json::json!({"body": manifest.to_string(),
            "headers": {"Content-Type": "application/vnd.oci.image.index.v1+json"}}),
            "says it is",
        ),
        (
            "huge",
            serde_json::json!({"body": huge.to_string(),
            "headers": {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}),
            "4194304-byte limit",
        ),
        (
            "both",
            serde_json::json!({"body": both.to_string(),
            "headers": {"Content-Type": "application/json"}}),
            "ambiguous",
        ),
        (
            "denied",
            serde_json::json!({"status": 403,
            "body": r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#}),
            "DENIED: requested access to the resource is denied",
        ),
        // An error body without end is left unread past 64 KiB: the status is shown.
        ("endless-error", serde_json::json!({"status": 404, "mode": "endless", "body": "{"}), "answered 404 Not Found"),
    ];
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    for (name, route, why) in routes {
        web.route(&format!("/v2/bad/{name}/manifests/v1"), route);
        let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{addr}/bad/{name}:v1")]);
        assert!(err.contains(why), "{name}: expected {why:?} in {err}");
        assert_eq!(env.snapshot(), before, "{name} changed the store");
    }
    // A bearer-token challenge: the token comes from the realm, with the service and the
    // repository's pull scope, and goes with the request asked again.
    web.route(
        "/token?service=test.registry&scope=repository%3Abad%2Ftok%3Apull",
        serde_json::json!({
        "body": r#"{"token":"t0k3n"}"#}),
    );
    let challenge = format!(r#"Bearer realm="{}",service="test.registry""#, web.url("/token"));
    web.route(
        "/v2/bad/tok/manifests/v1",
        serde_json::json!({"first_status": 401, "first_headers": {"WWW-Authenticate": challenge},
            "body": manifest.to_string(), "headers": {"Content-Type": "application/vnd.oci.image.index.v1+json"}}),
    );
    let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{addr}/bad/tok:v1")]);
    assert!(err.contains("says it is"), "the manifest came after the token: {err}");
    let asked: Vec<serde_json::Value> =
        web.requests().into_iter().filter(|r| r["path"] == "/v2/bad/tok/manifests/v1").collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1]["authorization"], "Bearer t0k3n");

    // A token reply without end is refused at 1 MiB.
    web.route(
        "/endless-token?service=test.registry&scope=repository%3Abad%2Fendless%3Apull",
        serde_json::json!({"mode": "endless", "body": "{"}),
    );
    let challenge = format!(r#"Bearer realm="{}",service="test.registry""#, web.url("/endless-token"));
    web.route(
        "/v2/bad/endless/manifests/v1",
        serde_json::json!({"status": 401, "headers": {"WWW-Authenticate": challenge}, "body": ""}),
    );
    let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{addr}/bad/endless:v1")]);
    assert!(err.contains("token from") && err.contains("over the 1048576-byte limit"), "{err}");
    assert_eq!(env.snapshot(), before);

    // A 503 is tried again: the second answer is the one judged.
    web.route(
        "/v2/bad/flaky/manifests/v1",
        serde_json::json!({"first_status": 503, "body": manifest.to_string(),
            "headers": {"Content-Type": "application/vnd.oci.image.index.v1+json"}}),
    );
    let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{addr}/bad/flaky:v1")]);
    assert!(err.contains("says it is"), "{err}");
    let tries = web.requests().iter().filter(|r| r["path"] == "/v2/bad/flaky/manifests/v1").count();
    assert_eq!(tries, 2, "one retry after the 503");

    // A layer blob longer than its descriptor's size: refused, though its bytes hash right.
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer(&[("etc/x", "x")]))]}})
    .to_string();
    let blob = gzip(&layer(&[("etc/x", "x")]));
    let blob_file = env.write("layer.tgz", &blob);
    let short_size = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&blob), "size": blob.len() - 1}],
    });
    web.route(
        "/v2/bad/size/manifests/v1",
        serde_json::json!({"body": short_size.to_string(), "headers": {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}),
    );
    web.route(&format!("/v2/bad/size/blobs/{}", sha256(config.as_bytes())), serde_json::json!({"body": config}));
    web.route(&format!("/v2/bad/size/blobs/{}", sha256(&blob)), serde_json::json!({"file": blob_file}));
    let err = env.fails(&["--insecure-options=image,http", "fetch", &format!("docker://{addr}/bad/size:v1")]);
    assert!(err.contains(&format!("is longer than the {} bytes its manifest gives", blob.len() - 1)), "{err}");
    assert_eq!(env.snapshot(), before);
}

/// A layer descriptor's `urls` (Docker's foreign layers, OCI's non-distributable ones) name
/// hosts the user never chose: rkt never follows them (containerd CVE-2020-15157 sent registry
/// credentials there). The layer comes from the registry that served the manifest, with its
/// credentials, or the pull fails saying which layer is missing.
#[test]
fn layer_urls_are_never_followed() {
    let env = Env::new();
    let Some(registry) = Registry::start_allowing_layer_urls(&env.path("registry"), "alice", "s3cret") else { return };
    let elsewhere = Web::start(&env.path("elsewhere"), None);
    let tar = layer(&[("etc/x", "foreign\n")]);
    let packed = gzip(&tar);
    let mut layout = Layout::new(env.path("layout"));
    let (layer_digest, layer_size) = layout.blob(&packed);
    elsewhere.route("/layer", serde_json::json!({"body": String::from_utf8_lossy(&packed)}));
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]}});
    let (config_digest, config_size) = layout.blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "digest": layer_digest, "size": layer_size, "urls": [elsewhere.url("/layer")]}],
    });
    layout.add("v1", "application/vnd.oci.image.manifest.v1+json", &manifest);
    registry.push_as(&format!("oci:{}:v1", layout.dir.display()), "foreign/demo:v1", Some("alice:s3cret"));
    // skopeo pushed the descriptor without the blob, as Docker pushes foreign layers.
    let err = refused_as_alice(&env, &registry, "foreign/demo:v1");
    assert!(err.contains(&format!("blob {layer_digest}: the registry answered 404")), "{err}");
    assert_eq!(elsewhere.requests(), Vec::<serde_json::Value>::new(), "a layer URL was followed");
}
