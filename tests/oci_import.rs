//! Docker and OCI images without a registry: OCI layouts built here, turned into `docker save`
//! and OCI archives by Debian's skopeo, rendered and compared with Debian's umoci.

mod common;

use std::path::Path;

use common::oci::*;
use common::*;

fn base_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("bin")
        .file_mode(
            "bin/busybox",
            &std::fs::read("/bin/busybox").unwrap_or_else(|_| b"not busybox".to_vec()),
            0o755,
            0,
            0,
        )
        .symlink("bin/sh", "busybox")
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
        .file("etc/group", b"root:x:0:\napp:x:1000:\n")
        .file("etc/gone", b"deleted by the next layer")
        .dir("opaque")
        .file("opaque/old", b"hidden by an opaque whiteout")
        .dir_mode("srv", 0o750, 1000, 1000)
        .file_mode("srv/data", b"owned", 0o640, 1000, 1000)
        .hardlink("srv/link", "srv/data")
        .dir("tmp")
        .symlink("lib64", "/lib")
        .dir("cache")
        .file("cache/entry", b"removed with its directory");
    t.finish()
}

fn top_layer() -> Vec<u8> {
    let mut t = Tar::new();
    // Its root first, with an absolute name, as `umoci insert` writes it: relative to the
    // image's root, and the image root's mode, owner and time.
    t.dir("/")
        .dir("etc")
        .file("etc/.wh.gone", b"")
        .dir("opaque")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"after the opaque whiteout")
        .file("etc/motd", b"hello from the top layer\n")
        .file_mode("usr-bin-tool", b"#!/bin/sh\necho tool\n", 0o4755, 0, 0)
        // Entries that replace the lower layer's: a file, a symlink (by a file of another
        // owner), a directory and what it held (by a symlink).
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n")
        .file_mode("lib64", b"not a link any more\n", 0o640, 1000, 1000)
        .symlink("cache", "/tmp")
        // A directory listed again: this layer's mode wins.
        .dir_mode("srv", 0o770, 1000, 1000)
        // More absolute names.
        .file("/etc/absolute", b"written with an absolute name\n")
        .hardlink("//etc/absolute-link", "/etc/absolute");
    t.finish()
}

fn config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["cat /etc/motd; echo $GREETING; id -u"],
        "Env": ["GREETING=hi", "PATH=/bin"], "WorkingDir": "/srv", "User": "app:app",
        "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "Labels": {"org.example": "yes"},
    })
}

#[test]
fn oci_layout_renders_as_umoci_unpacks_it() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(base_layer(), TGZ, gzip), (top_layer(), TAR, plain)], config());
    let (id, ours) = fetch_and_render(&env, &layout.dir);
    // `extract` writes the image alone, as appc says: the top image's files are its layers'.
    let alone = env.path("alone");
    let out = env.rkt(&["image", "extract", "--rootfs-only", &id, alone.to_str().unwrap()]);
    assert!(out.status.success() && std::fs::read_dir(&alone).unwrap().next().is_none());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no files of its own; `rkt image render`"));
    let unpacked = umoci_unpack(&env, &layout.dir);
    let (theirs, their_links) = describe(&unpacked);
    let (mine, my_links) = describe(&ours);
    assert_eq!(mine, theirs);
    assert_eq!(root_meta(&ours), root_meta(&unpacked));
    assert_eq!(my_links, their_links);
    assert!(mine.contains_key("opaque/new") && !mine.contains_key("opaque/old") && !mine.contains_key("etc/gone"));
    assert!(my_links.contains(&vec!["etc/absolute".to_string(), "etc/absolute-link".to_string()]), "{my_links:?}");
    assert!(!Path::new("/etc/absolute").exists(), "an absolute name reached the host");
    // So is the tree `rkt run` uses, rendered in the tree store while the layers were fetched.
    let trees: Vec<_> = std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    assert_eq!(describe(&trees[0].join("rootfs")), (theirs, their_links));

    // Exported, the image is one ACI that a store without its layers renders the same.
    let (other, copy, again) = exported_and_rendered(&env, &id);
    assert_eq!(describe(&again), (mine.clone(), my_links.clone()));
    let copied: serde_json::Value = serde_json::from_str(&other.ok(&["image", "cat-manifest", &copy])).unwrap();
    assert!(copied.get("dependencies").is_none());
    assert_eq!(copied["app"]["user"], "app");

    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", &id])).unwrap();
    assert_eq!(manifest["name"], "oci.local/layout");
    let app = &manifest["app"];
    assert_eq!(app["exec"], serde_json::json!(["/bin/sh", "-c", "cat /etc/motd; echo $GREETING; id -u"]));
    assert_eq!(
        (app["user"].as_str(), app["group"].as_str(), app["workingDirectory"].as_str()),
        (Some("app"), Some("app"), Some("/srv"))
    );
    assert_eq!(app["ports"][0]["name"], "80-tcp");
    assert_eq!(app["mountPoints"][0]["path"], "/data");
    if std::path::Path::new("/bin/busybox").exists() {
        let out = env.ok(&["run", "--net=host", &id]);
        assert_eq!(out, "hello from the top layer\nhi\n1000\n");
    }
}

/// The same image pushed by skopeo into Debian's docker-registry, its top layer zstd, fetched
/// with docker:// (rendered while its layers arrive) gives the tree umoci unpacks from a gzip
/// twin of the layout.
#[test]
fn through_a_registry_it_renders_as_umoci_unpacks_it() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let Some(registry) = common::registry::Registry::start(&env.path("registry")) else { return };
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(base_layer(), TGZ, gzip), (top_layer(), TZST, zstd)], config());
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "rich/demo:v1");
    let image = format!("docker://{}/rich/demo:v1", registry.addr);
    let id = env.ok(&["--insecure-options=image,http", "fetch", "--full", &image]).trim().to_string();
    let ours = env.path("ours");
    env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
    let mut gzip_layout = Layout::new(env.path("layout-gzip"));
    gzip_layout.image("v1", &[(base_layer(), TGZ, gzip), (top_layer(), TGZ, gzip)], config());
    assert_eq!(describe(&ours), describe(&umoci_unpack(&env, &gzip_layout.dir)));
    let verified = env.ok(&["image", "verify", &id]);
    assert!(verified.contains("ok (1 tree(s) checked)"), "the tree rendered during the pull: {verified}");
}

/// A layer whose own root entry comes after other entries, twice: umoci and podman apply each
/// where it comes, so the last gives the image root its mode and owner. rkt converts such a
/// layer a second time with that root first, from the layout as from the registry.
#[test]
fn a_late_root_entry_sets_the_root_as_umoci_sets_it() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let mut late = Tar::new();
    late.dir("etc")
        .file("etc/before", b"before the root entry\n")
        .dir_mode("./", 0o700, 5, 6)
        .file("etc/between", b"between the root entries\n")
        .dir_mode("./", 0o750, 7, 8)
        .file_mode("etc/after", b"after the root entries\n", 0o600, 7, 8);
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(base_layer(), TGZ, gzip), (late.finish(), TGZ, gzip)], config());
    let unpacked = umoci_unpack(&env, &layout.dir);
    assert_eq!(root_meta(&unpacked).0, 0o750, "umoci applies the last root entry");
    let Some(registry) = common::registry::Registry::start(&env.path("registry")) else { return };
    registry.push(&format!("oci:{}:v1", layout.dir.display()), "late/root:v1");
    let sources = [format!("oci:{}:v1", layout.dir.display()), format!("docker://{}/late/root:v1", registry.addr)];
    for source in sources {
        let fresh = Env::new();
        let id = fresh.ok(&["--insecure-options=image,http", "fetch", "--full", &source]).trim().to_string();
        let ours = fresh.path("ours");
        fresh.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
        assert_eq!(describe(&ours), describe(&unpacked), "{source}");
        assert_eq!(root_meta(&ours), root_meta(&unpacked), "{source}");
        // The first conversion, abandoned, left nothing: the base layer, the late one, the image.
        let listed = fresh.ok(&["image", "list", "--all", "--no-legend", "--fields=id"]);
        assert_eq!(listed.lines().count(), 3, "{source}: {listed}");
        assert!(fresh.ok(&["image", "verify", &id]).contains("ok"), "{source}");
    }
}

#[test]
fn docker_archive_and_oci_archive_from_skopeo() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(base_layer(), TGZ, gzip), (top_layer(), TZST, zstd)], config());
    let src = format!("oci:{}:v1", layout.dir.display());
    // Docker images have no zstd layers: the docker archive is made from a gzip twin.
    let mut gzip_layout = Layout::new(env.path("layout-gzip"));
    gzip_layout.image("v1", &[(base_layer(), TGZ, gzip), (top_layer(), TGZ, gzip)], config());
    let gzip_src = format!("oci:{}:v1", gzip_layout.dir.display());
    let docker = env.path("saved.tar");
    let oci = env.path("oci.tar");
    for (from, dest) in [
        (&gzip_src, format!("docker-archive:{}:example.com/demo:2.0", docker.display())),
        (&src, format!("oci-archive:{}:v1", oci.display())),
    ] {
        let out = std::process::Command::new("skopeo").args(["copy", "-q", from, &dest]).output().unwrap();
        assert!(out.status.success(), "skopeo {dest}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let a = env.ok(&["fetch", "--insecure-options=image", "--full", &src]).trim().to_string();
    let b = env
        .ok(&["fetch", "--insecure-options=image", "--full", &format!("docker-archive:{}", docker.display())])
        .trim()
        .to_string();
    let c = env
        .ok(&["fetch", "--insecure-options=image", "--full", &format!("oci-archive:{}:v1", oci.display())])
        .trim()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", &b])).unwrap();
    assert_eq!(manifest["name"], "example.com/demo");
    assert_eq!(manifest["labels"][0], serde_json::json!({"name": "version", "value": "2.0"}));
    let mut trees = Vec::new();
    for id in [&a, &b, &c] {
        let out = env.path(&format!("r-{}", &id[7..19]));
        env.ok(&["image", "render", "--rootfs-only", id, out.to_str().unwrap()]);
        trees.push(describe(&out));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
    // The layers came three times and are stored once each (skopeo recompresses, so by content).
    let list = env.ok(&["image", "list", "--all", "--no-legend", "--fields=name"]);
    assert_eq!(list.lines().filter(|l| l.starts_with("layers.rkt.local/")).count(), 2, "{list}");
    // Without --all, each image once, its size counting its layers.
    let (images, everything) = (env.listed(&[]), env.listed(&["--all"]));
    let mut ids: Vec<&String> = images.iter().map(|(id, _, _)| id).collect();
    ids.sort();
    let mut expected = vec![&a, &b, &c];
    expected.sort();
    assert_eq!(ids, expected, "{images:?}");
    let is_layer = |name: &String| name.starts_with("layers.rkt.local/");
    let layers: u64 = everything.iter().filter(|(_, n, _)| is_layer(n)).map(|(_, _, s)| s).sum();
    for (id, _, size) in &images {
        let own = everything.iter().find(|(i, _, _)| i == id).unwrap().2;
        assert_eq!(*size, own + layers, "{id}: its own blob and its two layers");
    }

    // `docker save | gzip`, as `docker load` takes it, and the same in zstd: the same image, and
    // the scratch copy gone once read. A compressed archive cut short is refused by name.
    let whole = std::fs::read(&docker).unwrap();
    for (packed, ext) in [(gzip(&whole), "tar.gz"), (zstd(&whole), "tar.zst")] {
        let fresh = Env::new();
        let file = fresh.write(&format!("saved.{ext}"), &packed);
        let out =
            fresh.rkt(&["fetch", "--insecure-options=image", "--full", &format!("docker-archive:{}", file.display())]);
        assert!(out.status.success(), "{ext}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), b, "{ext}");
        // Told as it goes: the decompression, then each layer by its diff ID.
        let told = String::from_utf8_lossy(&out.stderr);
        assert!(told.contains(&format!("Decompressing saved.{ext}\nDecompressed saved.{ext}: ")), "{told}");
        assert_eq!(told.matches("Importing layer sha256:").count(), 2, "{told}");
        assert_eq!(told.matches("Imported layer sha256:").count(), 2, "{told}");
        assert_eq!(std::fs::read_dir(fresh.store().join("cas/tmp")).unwrap().count(), 0, "{ext}");
        let cut = fresh.write(&format!("cut.{ext}"), &packed[..packed.len() / 2]);
        let before = fresh.snapshot();
        let err = fresh.fails(&["fetch", "--insecure-options=image", &format!("docker-archive:{}", cut.display())]);
        assert!(err.starts_with(&format!("fetch: {}: decompressing the archive: ", cut.display())), "{err}");
        assert_eq!(fresh.snapshot(), before, "{ext}");
    }
    // Through a pipe (`docker save IMAGE | rkt fetch docker-archive:/dev/stdin`), compressed or not.
    for bytes in [whole.clone(), gzip(&whole)] {
        let fresh = Env::new();
        let mut child = fresh
            .cmd(&["fetch", "--insecure-options=image", "--full", "docker-archive:/dev/stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), b);
    }

    // An archive of two images (`podman save --multi-image-archive`): one is named or none.
    let unpacked = env.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("tar").args(args).output().unwrap();
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    };
    tar(&["-xf".as_ref(), docker.as_os_str(), "-C".as_ref(), unpacked.as_os_str()]);
    let mut entries: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let mut other = entries[0].clone();
    other["RepoTags"] = serde_json::json!(["example.com/other:1"]);
    // Its layers reached through links, as `docker save` writes a layer two images share once:
    // one image's by a symlink, the other's by a hard link.
    let first = entries[0]["Layers"][0].as_str().unwrap().to_string();
    std::fs::create_dir(unpacked.join("shared")).unwrap();
    std::fs::create_dir(unpacked.join("linked")).unwrap();
    std::fs::rename(unpacked.join(&first), unpacked.join("shared/layer.tar")).unwrap();
    std::os::unix::fs::symlink("../shared/layer.tar", unpacked.join("linked/layer.tar")).unwrap();
    std::fs::hard_link(unpacked.join("shared/layer.tar"), unpacked.join("copy.tar")).unwrap();
    entries[0]["Layers"][0] = "linked/layer.tar".into();
    other["Layers"][0] = "copy.tar".into();
    entries.as_array_mut().unwrap().push(other);
    std::fs::write(unpacked.join("manifest.json"), entries.to_string()).unwrap();
    let multi = env.path("multi.tar");
    let mut args = vec!["-cf".as_ref(), multi.as_os_str(), "-C".as_ref(), unpacked.as_os_str()];
    let names: Vec<_> = std::fs::read_dir(&unpacked).unwrap().map(|e| e.unwrap().file_name()).collect();
    args.extend(names.iter().map(|n| n.as_os_str()));
    tar(&args);
    let err = env.fails(&["fetch", "--insecure-options=image", &format!("docker-archive:{}", multi.display())]);
    assert!(err.contains("holds 2 images: name one") && err.contains("example.com/other:1"), "{err}");
    let err = env.fails(&["fetch", "--insecure-options=image", &format!("docker-archive:{}:nope:1", multi.display())]);
    assert!(err.contains("no image \"nope:1\" in the archive (it has: example.com/demo:2.0"), "{err}");
    let d = env.ok(&[
        "fetch",
        "--insecure-options=image",
        &format!("docker-archive:{}:example.com/other:1", multi.display()),
    ]);
    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", d.trim()])).unwrap();
    assert_eq!(manifest["name"], "example.com/other");
    // By its place in the archive, from 0, as skopeo names it.
    let by_index = env.ok(&["fetch", "--insecure-options=image", &format!("docker-archive:{}:@1", multi.display())]);
    assert_eq!(by_index, d);
    let err = env.fails(&["fetch", "--insecure-options=image", &format!("docker-archive:{}:@2", multi.display())]);
    assert!(err.contains("no image \"@2\" in the archive: it holds 2"), "{err}");
    // Each into a store of its own, or the second would find the shared layer stored.
    for name in ["example.com/demo:2.0", "example.com/other:1"] {
        let fresh = Env::new();
        let id =
            fresh.ok(&["fetch", "--insecure-options=image", &format!("docker-archive:{}:{name}", multi.display())]);
        let out = fresh.path(name);
        fresh.ok(&["image", "render", "--rootfs-only", id.trim(), out.to_str().unwrap()]);
        assert_eq!(describe(&out), trees[1], "{name}");
    }
}

/// Fetches `source` and expects a refusal that mentions `why`, with the store unchanged.
/// An image as Debian's umoci builds one: `umoci insert` names each layer's root `/` and, before
/// umoci 0.4.8, stops the layer right after its last file's data (umoci#436). podman and umoci
/// take such images; so does rkt, rendering them as umoci unpacks them.
#[test]
fn an_image_built_with_umoci_renders_and_runs() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let layout = env.path("layout");
    let image = format!("{}:v1", layout.display());
    let umoci = |args: &[&str]| {
        let out = std::process::Command::new("umoci").args(args).output().unwrap();
        assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let base = env.path("base");
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap_or_else(|_| {
        std::fs::write(base.join("bin/busybox"), b"not busybox").unwrap();
        0
    });
    std::os::unix::fs::symlink("busybox", base.join("bin/cat")).unwrap();
    std::fs::write(base.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let top = env.path("top");
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/motd"), b"made by umoci\n").unwrap();
    // Each layer's root entry carries its directory's mode and owner; the topmost one's is the
    // image root's (umoci applies them in turn, Docker shows the top layer's).
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&top, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&top, Some(1000), Some(1000)).unwrap();
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["insert", "--image", &image, base.to_str().unwrap(), "/"]);
    umoci(&["insert", "--image", &image, top.to_str().unwrap(), "/"]);
    // A layer of one file, without a root entry of its own: the root stays as the layer below
    // left it, in umoci as in podman.
    let issue = env.path("issue");
    std::fs::write(&issue, b"a file alone\n").unwrap();
    umoci(&["insert", "--image", &image, issue.to_str().unwrap(), "/etc/issue"]);
    // A relative command, looked up in the PATH as busybox's `sh` is.
    umoci(&["config", "--image", &image, "--config.cmd=cat", "--config.cmd=/etc/motd"]);

    let id = env.ok(&["fetch", "--insecure-options=image", &format!("oci:{image}")]).trim().to_string();
    let ours = env.path("ours");
    env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
    let mine = describe(&ours);
    let theirs = umoci_unpack(&env, &layout);
    assert_eq!(mine, describe(&theirs));
    assert!(["etc/motd", "etc/issue", "bin/cat"].iter().all(|p| mine.0.contains_key(*p)), "{mine:?}");
    assert_eq!(root_meta(&ours), root_meta(&theirs));
    assert_eq!(root_meta(&ours).0, 0o750);
    if std::path::Path::new("/bin/busybox").exists() {
        assert_eq!(env.ok(&["run", "--net=host", &id]), "made by umoci\n");
    }
}

/// rkt's Docker volume semantics: a mount point given no volume starts with what the image holds
/// there, with that directory's owner and mode, in a volume of the pod's own (the image's tree
/// stays as it was). An appc image's mount point gets a plain empty volume.
#[test]
fn docker_volumes_start_with_what_the_image_holds() {
    if !tools() || !Path::new("/bin/busybox").exists() {
        return;
    }
    let env = Env::new();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let root = |t: &mut Tar, prefix: &str| {
        t.dir(&format!("{prefix}bin"))
            .file_mode(&format!("{prefix}bin/busybox"), &busybox, 0o755, 0, 0)
            .symlink(&format!("{prefix}bin/sh"), "busybox")
            .dir(&format!("{prefix}etc"))
            .file(&format!("{prefix}etc/passwd"), b"root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
            .file(&format!("{prefix}etc/group"), b"root:x:0:\napp:x:1000:\n")
            .dir_mode(&format!("{prefix}data"), 0o770, 1000, 1000)
            .file_mode(&format!("{prefix}data/seed"), b"seeded\n", 0o640, 1000, 1000);
    };
    let script = "cat /data/seed; stat -c '%u %a' /data; echo new > /data/new && cat /data/new";
    let mut t = Tar::new();
    root(&mut t, "");
    let mut layout = Layout::new(env.path("layout"));
    let config = serde_json::json!({"Cmd": ["/bin/sh", "-c", script], "User": "app", "Volumes": {"/data": {}}});
    layout.image("v1", &[(t.finish(), TAR, plain)], config);
    let id = env.ok(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
    assert_eq!(env.ok(&["run", "--net=host", id.trim()]), "seeded\n1000 770\nnew\n");
    let trees: Vec<_> = std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
    let data: Vec<_> =
        std::fs::read_dir(trees[0].join("rootfs/data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(data, ["seed"]);

    let mut t = Tar::new();
    let app = r#""app":{"exec":["/bin/sh","-c","ls -A /data; stat -c '%u %a' /data"],"user":"0","group":"0",
        "mountPoints":[{"name":"data","path":"/data"}]}"#;
    t.manifest(&manifest_json("example.com/appc-volume", app)).dir("rootfs");
    root(&mut t, "rootfs/");
    let aci = env.fetch(&t.finish(), "appc.aci");
    assert_eq!(env.ok(&["run", "--net=host", &aci]), "0 755\n");
}

fn refused(env: &Env, source: &str, why: &str) {
    refused_any(env, source, &[why]);
}

/// How a blob whose bytes changed after its manifest was written is refused: by its size when
/// the new bytes are longer or shorter, else by its digest.
const CHANGED_BLOB: &[&str] = &["does not match its digest", "its descriptor says"];

fn refused_any(env: &Env, source: &str, whys: &[&str]) {
    let before = env.snapshot();
    let err = env.fails(&["fetch", "--insecure-options=image", source]);
    assert!(whys.iter().any(|why| err.contains(why)), "expected one of {whys:?} in {err}");
    assert_eq!(env.snapshot(), before, "the store changed after: {err}");
}

#[test]
fn tampered_and_hostile_images_are_refused() {
    if !is_root() {
        eprintln!("skipping: rendering needs root");
        return;
    }
    let env = Env::new();
    env.ok(&["image", "list"]);
    let plain_layer = || {
        let mut t = Tar::new();
        t.dir("etc").file("etc/x", b"x");
        t.finish()
    };
    // A layer blob whose bytes were changed after the manifest was written.
    let mut layout = Layout::new(env.path("tampered"));
    layout.image("v1", &[(plain_layer(), TGZ, gzip)], serde_json::json!({}));
    let layer = std::fs::read_dir(layout.dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]));
    let layer = layer.unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mut tampered = gzip(&{
        let mut t = Tar::new();
        t.dir("etc").file("etc/x", b"evil");
        t.finish()
    });
    std::mem::swap(&mut bytes, &mut tampered);
    std::fs::write(&layer, bytes).unwrap();
    refused_any(&env, &format!("oci:{}:v1", layout.dir.display()), CHANGED_BLOB);

    // A good layer below one whose content is not what the config's diff_id says: refused, and
    // the good layer, stored by then (it is small, the other 2 MiB), is taken back. The lie is
    // found only at the end of the second layer's stream.
    let mut layout = Layout::new(env.path("two"));
    let upper = || {
        let mut t = Tar::new();
        t.file("etc/y", &incompressible(2 << 20, 7));
        t.finish()
    };
    let digest = layout.image("v1", &[(plain_layer(), TGZ, gzip), (upper(), TGZ, gzip)], serde_json::json!({}));
    let blobs = layout.dir.join("blobs/sha256");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&digest[7..])).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&config_digest[7..])).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][1] = serde_json::json!(sha256(b"another layer"));
    let (config_digest, config_size) = layout.blob(config.to_string().as_bytes());
    manifest["config"]["digest"] = serde_json::json!(config_digest);
    manifest["config"]["size"] = serde_json::json!(config_size);
    let (digest, size) = layout.blob(manifest.to_string().as_bytes());
    let index_path = layout.dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(digest);
    index["manifests"][0]["size"] = serde_json::json!(size);
    std::fs::write(&index_path, index.to_string()).unwrap();
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "uncompressed content does not match its digest");

    // A layer whose descriptor gives a size one byte short of its (correctly hashed) blob.
    let mut layout = Layout::new(env.path("size"));
    layout.image("v1", &[(plain_layer(), TGZ, gzip)], serde_json::json!({}));
    let index_path = layout.dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.dir.join("blobs/sha256").join(&old_digest[7..])).unwrap())
            .unwrap();
    manifest["layers"][0]["size"] = serde_json::json!(manifest["layers"][0]["size"].as_u64().unwrap() - 1);
    let (digest, size) = layout.blob(manifest.to_string().as_bytes());
    index["manifests"][0]["digest"] = serde_json::json!(digest);
    index["manifests"][0]["size"] = serde_json::json!(size);
    std::fs::write(&index_path, index.to_string()).unwrap();
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "its descriptor says");

    // A config edited after its manifest was written.
    let mut layout = Layout::new(env.path("config"));
    let digest = layout.image("v1", &[(plain_layer(), TAR, plain)], serde_json::json!({}));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.dir.join("blobs/sha256").join(&digest[7..])).unwrap()).unwrap();
    let config_path = layout.dir.join("blobs/sha256").join(&manifest["config"]["digest"].as_str().unwrap()[7..]);
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["config"] = serde_json::json!({"User": "0"});
    std::fs::write(&config_path, config.to_string()).unwrap();
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "the image config");

    // More layers than an image can stack (one small layer, 1,024 times): refused before any
    // is stored. (Before, the layers and the image on top were stored, then the render failed.)
    let mut layout = Layout::new(env.path("many"));
    let layer = plain_layer();
    let many: Vec<LayerSpec> = (0..1024).map(|_| (layer.clone(), TAR, plain as fn(&[u8]) -> Vec<u8>)).collect();
    layout.image("v1", &many, serde_json::json!({}));
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "1024 layers, more than the 1023 an image can stack");

    // A config whose diff_id does not describe its layer.
    let mut layout = Layout::new(env.path("diffid"));
    layout.lie_about_diff_ids = true;
    layout.image("v1", &[(plain_layer(), TGZ, gzip)], serde_json::json!({}));
    refused(
        &env,
        &format!("oci:{}:v1", layout.dir.display()),
        "layer's uncompressed content does not match its digest",
    );

    // A manifest that is also an index (CVE-2021-41190).
    let mut layout = Layout::new(env.path("ambiguous"));
    let both = serde_json::json!({"schemaVersion": 2, "manifests": [], "layers": []});
    layout.add("v1", "application/vnd.oci.image.manifest.v1+json", &both);
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "both manifests and layers");

    // Layers with escaping names and odd whiteouts.
    for (n, name) in ["../../escape", "etc/.wh.../../x", "/../escape"].iter().enumerate() {
        let mut layout = Layout::new(env.path(&format!("hostile-{n}")));
        let mut t = Tar::new();
        t.file(name, b"x");
        layout.image("v1", &[(t.finish(), TAR, plain)], serde_json::json!({}));
        refused(&env, &format!("oci:{}:v1", layout.dir.display()), "climbs out");
    }
    let mut layout = Layout::new(env.path("whiteout"));
    let mut t = Tar::new();
    t.file("etc/.wh..wh.plnk", b"");
    layout.image("v1", &[(t.finish(), TAR, plain)], serde_json::json!({}));
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "whiteout");
    refused(&env, &format!("oci:{}:nope", layout.dir.display()), "no image \"nope\"");

    // BuildKit's zstd layer under Docker media types (`oci-mediatypes=false`) is a layer.
    let mut layout = Layout::new(env.path("docker-zstd"));
    let mut t = Tar::new();
    t.file("etc/zstd", b"docker zstd");
    layout.image(
        "v1",
        &[(t.finish(), "application/vnd.docker.image.rootfs.diff.tar.zstd", zstd)],
        serde_json::json!({}),
    );
    let id = env.ok(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
    let out = env.path("docker-zstd-tree");
    env.ok(&["image", "render", "--rootfs-only", id.trim(), out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("etc/zstd")).unwrap(), b"docker zstd");

    // OCI artifacts are not images: a Helm chart's content as a layer, a Helm config.
    let helm_layer = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
    let mut layout = Layout::new(env.path("helm"));
    let mut t = Tar::new();
    t.file("chart/Chart.yaml", b"name: x");
    layout.image("v1", &[(t.finish(), helm_layer, gzip)], serde_json::json!({}));
    refused(&env, &format!("oci:{}:v1", layout.dir.display()), "unsupported media type \"application/vnd.cncf.helm");
    let (config, config_size) = layout.blob(b"{\"name\":\"x\",\"version\":\"1\"}");
    let (chart, chart_size) = layout.blob(&gzip(b"not a tar"));
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": TGZ, "digest": chart, "size": chart_size}]});
    layout.add("chart", "application/vnd.oci.image.manifest.v1+json", &manifest);
    refused(
        &env,
        &format!("oci:{}:chart", layout.dir.display()),
        "not a container image: its config is \"application/vnd.cncf.helm.config.v1+json\"",
    );

    // A path given again after a hard link to it (podman refuses any path given twice; umoci
    // would keep the link's file apart, which an ACI cannot), with more after it than the pipe
    // between conversion and import holds: the refusal names the entry and the layer, not the
    // pipe the import stopped reading.
    let mut layout = Layout::new(env.path("duplicate"));
    let mut t = Tar::new();
    t.file("etc/x", b"one").hardlink("etc/h", "etc/x").file("etc/x", b"two").file("big", &incompressible(4 << 20, 7));
    let diff_id = sha256(&t.finish());
    layout.image("v1", &[(t.finish(), TGZ, gzip)], serde_json::json!({}));
    let source = format!("oci:{}:v1", layout.dir.display());
    refused(&env, &source, "hard link \"rootfs/etc/h\" points to \"rootfs/etc/x\"");
    refused(&env, &source, &format!("layer {diff_id}"));
    let out = env.rkt(&["fetch", &format!("oci:{}:v1", layout.dir.display())]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-options=image"));
}
