//! The embedded default image, built by testdata/make-busybox-aci.sh from Debian's
//! busybox-static, through every image command.

mod common;

use common::*;

#[test]
fn busybox_aci_through_every_image_command() {
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox is missing (apt-get install busybox-static)");
        return;
    }
    let env = Env::new();
    let aci = env.path("busybox.aci");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/make-busybox-aci.sh");
    let built = std::process::Command::new("bash").arg(script).arg(&aci).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let short = env.ok(&["--insecure-options=image", "fetch", aci.to_str().unwrap()]);
    assert_eq!(short.trim().len(), 7 + 32);
    let full = env.ok(&["image", "list", "--full", "--no-legend", "--fields=id"]).trim().to_string();
    assert!(full.starts_with(short.trim()));
    assert!(env.ok(&["image", "list"]).contains("rkt.local/busybox:"));
    let manifest: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "cat-manifest", "rkt.local/busybox"])).unwrap();
    assert_eq!(manifest["app"]["exec"][0], "/bin/sh");

    let exported = env.path("export.aci");
    env.ok(&["image", "export", "rkt.local/busybox", exported.to_str().unwrap()]);
    assert_eq!(image_id(&std::fs::read(&exported).unwrap()), full);

    let rendered = env.path("rendered");
    env.ok(&["image", "render", &full, rendered.to_str().unwrap()]);
    assert!(rendered.join("manifest").is_file());
    let sh = rendered.join("rootfs/bin/sh");
    assert_eq!(std::fs::read_link(&sh).unwrap().to_str(), Some("busybox"));
    let out = std::process::Command::new(rendered.join("rootfs/bin/busybox")).args(["echo", "alive"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alive\n");
    let tmp_mode =
        std::os::unix::fs::PermissionsExt::mode(&rendered.join("rootfs/tmp").metadata().unwrap().permissions());
    assert_eq!(tmp_mode & 0o7777, 0o1777);

    if is_root() {
        let trees = std::fs::read_dir(env.store().join("cas/tree")).unwrap().count();
        assert_eq!(trees, 1, "rendered at fetch time as root");
        assert!(env.ok(&["image", "verify", "rkt.local/busybox"]).contains("1 tree(s) checked"));
    } else {
        eprintln!("skipping tree store checks: not root");
    }
    env.ok(&["image", "rm", "rkt.local/busybox"]);
    assert_eq!(env.ok(&["image", "list", "--no-legend"]), "");
}
