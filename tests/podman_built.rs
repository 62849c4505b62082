//! An image built by a real image builder, Debian's podman (buildah inside), from a Containerfile
//! whose steps make what builders' layers hold: hard links (to a file of the step and to one
//! of a layer below, which the builder copies up), whiteouts, opaque directories, modes and
//! owners changed on lower files, a set-group-ID directory, a fifo, a file replaced by a
//! directory, a directory by a symlink; and a config with every field rkt maps. It is pushed
//! into Debian's docker-registry and saved as `docker save` and OCI archives. Fetched each way,
//! rkt's tree must equal what umoci unpacks, its manifest must carry the config, and `rkt run`
//! must start the app as the config says.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::oci::*;
use common::registry::Registry;
use common::*;

const CONTAINERFILE: &str = r#"FROM localhost/rkt-test-base:1
RUN mkdir -p /data/keep /data/gone /opt/app/old && echo one > /data/keep/a && echo two > /data/gone/b \
 && echo lower > /data/lower && ln /data/keep/a /data/keep/a-link && echo old > /opt/app/old/f \
 && mkdir -m 2775 /srv && chgrp 33 /srv && echo plain > /data/replaced
RUN ln /data/lower /data/lower-link && rm -rf /data/gone /data/keep/a-link && chmod 4755 /data/lower \
 && chown 1000:1000 /data/keep/a && touch -t 202311142213.20 /data/keep/a && mkfifo /data/fifo \
 && mkdir -p /srv/x/y && echo 'bob:x:1001:33::/data:/bin/sh' >> /etc/passwd
RUN rm -rf /opt/app && mkdir -p /opt/app/new && echo new > /opt/app/new/f && rm /data/replaced \
 && mkdir /data/replaced && rm -rf /srv/x && ln -s /data/lower /srv/x && ln /data/keep/a /data/a-again
ENV GREETING=hello PATH=/bin
WORKDIR /data
USER bob:33
EXPOSE 8080/tcp
VOLUME /var/cache/app
LABEL org.example.team=images
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["id; pwd; echo $GREETING; ls /data"]
"#;

/// Podman with its storage (overlay, its default driver) and run state in `dir`.
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root").arg(dir.join("storage")).arg("--runroot").arg(dir.join("run")).args([
        "--storage-driver",
        "overlay",
        "--events-backend",
        "none",
        "--cgroup-manager",
        "cgroupfs",
    ]);
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A root filesystem of busybox, its applets as symlinks, and the files `id` reads.
fn busybox_rootfs() -> Vec<u8> {
    let applets = run(
        {
            let mut c = Command::new("/bin/busybox");
            c.arg("--list");
            c
        },
        "busybox --list",
    );
    let mut tar = Tar::new();
    tar.dir("bin").file_mode("bin/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755, 0, 0);
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.dir("etc")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/group", b"root:x:0:\nwww-data:x:33:\n")
        .dir_mode("tmp", 0o1777, 0, 0)
        .dir("var")
        .dir("var/cache");
    tar.finish()
}

/// Builds the test image with podman; returns its saved archives (docker, OCI).
fn build(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let base = dir.join("base.tar");
    std::fs::write(&base, busybox_rootfs()).unwrap();
    let mut import = podman(dir);
    import.arg("import").arg("-q").arg(&base).arg("localhost/rkt-test-base:1");
    run(import, "podman import");
    let context = dir.join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Containerfile"), CONTAINERFILE).unwrap();
    // Chroot isolation: the steps run without an OCI runtime or cgroups, on the host's network
    // (they use none).
    let mut build = podman(dir);
    build.args(["build", "-q", "--isolation", "chroot", "-t", "localhost/rkt-test-built:1"]).arg(&context);
    run(build, "podman build");
    let saved = |format: &str, name: &str| {
        let path = dir.join(name);
        let mut save = podman(dir);
        save.args(["save", "-q", "--format", format, "-o"]).arg(&path).arg("localhost/rkt-test-built:1");
        run(save, "podman save");
        path
    };
    (saved("docker-archive", "built.docker.tar"), saved("oci-archive", "built.oci.tar"))
}

fn available() -> bool {
    let ok = is_root()
        && ["podman", "skopeo", "umoci", "docker-registry"]
            .iter()
            .all(|t| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()))
        && Path::new("/bin/busybox").exists();
    if !ok {
        eprintln!(
            "skipping: needs root, podman, skopeo, umoci, docker-registry and /bin/busybox \
             (apt-get install podman skopeo umoci docker-registry busybox-static)"
        );
    }
    ok
}

#[test]
fn an_image_podman_built_renders_as_umoci_unpacks_it_and_runs_as_configured() {
    if !available() {
        return;
    }
    let work = Env::new();
    let (docker_archive, oci_archive) = build(&work.path("podman"));
    let Some(registry) = Registry::start(&work.path("registry")) else { return };
    let mut push = podman(&work.path("podman"));
    push.args(["push", "-q", "--tls-verify=false", "localhost/rkt-test-built:1"])
        .arg(format!("docker://{}/podman/built:1", registry.addr));
    run(push, "podman push");
    let layout = work.path("layout");
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "-q"])
        .arg(format!("oci-archive:{}", oci_archive.display()))
        .arg(format!("oci:{}:v1", layout.display()));
    run(copy, "skopeo copy");
    let theirs = describe(&umoci_unpack(&work, &layout));
    // The builder's layers hold what this test is about; were it to change how it writes them,
    // the comparison below would no longer cover it.
    let links = [
        vec!["data/a-again".to_string(), "data/keep/a".to_string()],
        vec!["data/lower".to_string(), "data/lower-link".to_string()],
    ];
    assert_eq!(theirs.1, links, "hard link groups of umoci's tree");
    assert_eq!(theirs.0["data/lower"].split(' ').nth(2), Some("4755"), "{:?}", theirs.0["data/lower"]);
    assert!(theirs.0["data/fifo"].starts_with("fifo"));
    assert!(theirs.0["srv"].starts_with("dir 2775 0:33"), "{:?}", theirs.0["srv"]);
    assert!(theirs.0["srv/x"].starts_with("link /data/lower 0 0:33"), "{:?}", theirs.0["srv/x"]);
    assert!(theirs.0.contains_key("opt/app/new/f") && !theirs.0.contains_key("opt/app/old"));
    assert!(theirs.0["data/replaced"].starts_with("dir") && !theirs.0.contains_key("data/gone"));

    let sources = [
        format!("docker://{}/podman/built:1", registry.addr),
        format!("docker-archive:{}", docker_archive.display()),
        format!("oci-archive:{}", oci_archive.display()),
    ];
    for source in &sources {
        let env = Env::new();
        let id = env.ok(&["--insecure-options=image,http", "fetch", "--full", source]).trim().to_string();
        let ours = env.path("ours");
        env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
        assert_eq!(describe(&ours), theirs, "{source}: rkt image render");
        let trees: Vec<_> =
            std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(trees.len(), 1, "{source}");
        assert_eq!(describe(&trees[0].join("rootfs")), theirs, "{source}: the tree store's tree");

        let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["image", "cat-manifest", &id])).unwrap();
        let app = &manifest["app"];
        let command = "id; pwd; echo $GREETING; ls /data";
        assert_eq!(app["exec"], serde_json::json!(["/bin/sh", "-c", command]), "{source}");
        assert_eq!((&app["user"], &app["group"]), (&serde_json::json!("bob"), &serde_json::json!("33")), "{source}");
        assert_eq!(app["workingDirectory"], "/data", "{source}");
        let env_vars = app["environment"].as_array().unwrap();
        assert!(env_vars.contains(&serde_json::json!({"name": "GREETING", "value": "hello"})), "{source}");
        assert_eq!(
            app["ports"],
            serde_json::json!([{"name": "8080-tcp", "protocol": "tcp", "port": 8080, "count": 1, "socketActivated": false}])
        );
        assert_eq!(
            app["mountPoints"],
            serde_json::json!([{"name": "volume-var-cache-app", "path": "/var/cache/app", "readOnly": false}])
        );
        assert_eq!(app["userLabels"]["org.example.team"], "images", "{source}");

        let out = env.ok(&["run", "--net=host", &id]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.first().is_some_and(|l| l.starts_with("uid=1001(bob) gid=33(www-data)")), "{source}: {out}");
        assert_eq!(
            lines[1..],
            ["/data", "hello", "a-again", "fifo", "keep", "lower", "lower-link", "replaced"],
            "{out}"
        );
    }
}
