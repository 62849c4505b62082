//! `rkt trust` and signature verification, with keys made by GnuPG: the negative matrix of
//! ../shared/reference/hostile-inputs.md row 12 and rkt's prefix rules.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(dir: &Path, uid: &str) -> Option<Gpg> {
        let home = dir.join(uid.split('@').next().unwrap().replace(' ', "_"));
        std::fs::create_dir_all(&home).ok()?;
        let gpg = Gpg { home };
        gpg.run(&["--quick-gen-key", uid, "ed25519", "sign", "never"]).filter(|o| o.status.success())?;
        Some(gpg)
    }

    fn run(&self, args: &[&str]) -> Option<std::process::Output> {
        Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .ok()
    }

    fn export(&self, dest: &Path) {
        let out = self.run(&["--armor", "--export"]).unwrap();
        std::fs::write(dest, out.stdout).unwrap();
    }

    fn sign(&self, file: &Path) {
        let sig = PathBuf::from(format!("{}.asc", file.display()));
        let out =
            self.run(&["--armor", "--detach-sign", "--output", sig.to_str().unwrap(), file.to_str().unwrap()]).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(&self.home).args(["--kill", "gpg-agent"]).output();
    }
}

#[test]
fn trusted_prefixes_decide_which_signatures_count() {
    let env = Env::new();
    let Some(alice) = Gpg::new(env.tmp.path(), "Alice <alice@example.com>") else {
        eprintln!("skipping: gpg is missing or cannot make keys");
        return;
    };
    let mallory = Gpg::new(env.tmp.path(), "Mallory <mallory@example.com>").unwrap();
    let (system, local) = (env.path("system"), env.path("local"));
    let cfg = ["--system-config", system.to_str().unwrap(), "--local-config", local.to_str().unwrap()];
    let rkt = |args: &[&str]| env.rkt(&[&cfg[..], args].concat());
    let alice_key = env.path("alice.asc");
    alice.export(&alice_key);

    // rkt trust's rules.
    for (args, why) in [
        (vec!["trust", alice_key.to_str().unwrap()], "implicit unbounded trust"),
        (vec!["trust", "--root", "--prefix=example.com/app", alice_key.to_str().unwrap()], "mutually exclusive"),
        (vec!["trust", "--prefix=https://example.com/app", alice_key.to_str().unwrap()], "URL scheme"),
        (vec!["trust", "--prefix=example.com/app", alice_key.to_str().unwrap()], "not a terminal"),
    ] {
        let out = rkt(&args);
        assert_eq!(out.status.code(), Some(254));
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{why}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = rkt(&["trust", "--prefix=example.com/app", "--skip-fingerprint-review", alice_key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Added key for prefix \"example.com/app\" at"), "{stdout}");
    assert!(stdout.contains("trustedkeys/prefix.d/example.com/app/"));

    let signed = |name: &str, signer: &Gpg, file: &str| {
        let path = env.write(file, &gzip(&simple_aci(name, file)));
        signer.sign(&path);
        path
    };
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    // Trusted: the prefix itself and below it.
    for (name, file) in [("example.com/app", "a.aci"), ("example.com/app/worker", "b.aci")] {
        let path = signed(name, &alice, file);
        let out = rkt(&["fetch", path.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("signature verified:") && err.contains("Alice <alice@example.com>"), "{err}");
    }
    let after_good = env.snapshot();
    // Not trusted: a name that only shares a string prefix, another signer, changed bytes,
    // a missing signature, a signature that is not one.
    let appx = signed("example.com/appx", &alice, "c.aci");
    let by_mallory = signed("example.com/app", &mallory, "d.aci");
    let changed = signed("example.com/app", &alice, "e.aci");
    std::fs::write(&changed, gzip(&simple_aci("example.com/app", "changed"))).unwrap();
    let unsigned = env.write("f.aci", &simple_aci("example.com/app", "f"));
    let garbage = env.write("g.aci", &simple_aci("example.com/app", "g"));
    std::fs::write(env.path("g.aci.asc"), "-----BEGIN PGP SIGNATURE-----\nnonsense\n-----END PGP SIGNATURE-----\n")
        .unwrap();
    for (path, why) in [
        (&appx, "unknown entity"),
        (&by_mallory, "unknown entity"),
        (&changed, "bad signature"),
        (&unsigned, "error opening signature file"),
        (&garbage, "bad signature"),
    ] {
        let out = rkt(&["fetch", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(254), "{}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{}: expected {why:?} in {err}", path.display());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(env.snapshot(), after_good, "{} changed the store", path.display());
    }
    assert_ne!(before, after_good);

    // A root key covers every name; an empty local file masks a system key.
    let mallory_key = env.path("mallory.asc");
    mallory.export(&mallory_key);
    let out = rkt(&["trust", "--root", "--skip-fingerprint-review", mallory_key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rkt(&["fetch", by_mallory.to_str().unwrap()]).status.success());
    let root_key = std::fs::read_dir(local.join("trustedkeys/root.d")).unwrap().next().unwrap().unwrap();
    std::fs::create_dir_all(system.join("trustedkeys/root.d")).unwrap();
    std::fs::rename(root_key.path(), system.join("trustedkeys/root.d").join(root_key.file_name())).unwrap();
    std::fs::write(root_key.path(), b"").unwrap();
    let other = signed("other.org/tool", &mallory, "h.aci");
    let out = rkt(&["fetch", other.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown entity"), "a masked system key does not count");
}

/// Signed images by URL: several fetched at once, each signature downloaded while its image
/// is, a 202 on a signature asked again after the image, progress lines on stderr (none with
/// --quiet), and an endless signed body refused with nothing stored.
#[test]
fn signed_urls_download_side_by_side() {
    let env = Env::new();
    let Some(alice) = Gpg::new(env.tmp.path(), "Alice <alice@example.com>") else {
        eprintln!("skipping: gpg is missing or cannot make keys");
        return;
    };
    let web = common::web::Web::start(&env.path("web"), None);
    let local = env.path("local");
    let cfg = ["--local-config", local.to_str().unwrap(), "--insecure-options=http"];
    let rkt = |args: &[&str]| env.rkt(&[&cfg[..], args].concat());
    let key = env.path("alice.asc");
    alice.export(&key);
    let out = rkt(&["trust", "--prefix=example.com/app", "--skip-fingerprint-review", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ids = Vec::new();
    for (name, file) in [("example.com/app", "a.aci"), ("example.com/app/b", "b.aci"), ("example.com/app/c", "c.aci")] {
        let aci = simple_aci(name, file);
        ids.push(image_id(&aci));
        let path = env.write(file, &gzip(&aci));
        alice.sign(&path);
        web.route(&format!("/{file}"), serde_json::json!({"file": path}));
        web.route(&format!("/{file}.asc"), serde_json::json!({"file": format!("{}.asc", path.display())}));
    }
    // The first image is slow to come; its signature is deferred once.
    web.route("/a.aci", serde_json::json!({"file": env.path("a.aci"), "delay": 1.5}));
    web.route("/a.aci.asc", serde_json::json!({"file": env.path("a.aci.asc"), "first_status": 202}));
    let out = rkt(&["fetch", "--full", &web.url("/a.aci"), &web.url("/b.aci")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ids[..2].to_vec(), "IDs in order");
    assert!(err.contains(&format!("Downloading {}", web.url("/a.aci"))), "{err}");
    assert!(err.contains(&format!("Downloaded {}", web.url("/b.aci"))), "{err}");
    let requests = web.requests();
    let at = |path: &str| -> Vec<f64> {
        requests.iter().filter(|r| r["path"] == path).map(|r| r["time"].as_f64().unwrap()).collect()
    };
    let (a, a_sig, b) = (at("/a.aci")[0], at("/a.aci.asc"), at("/b.aci")[0]);
    assert!(b < a + 1.0, "the second image waited for the first: {requests:?}");
    assert_eq!(a_sig.len(), 2, "the deferred signature was asked for twice: {requests:?}");
    assert!(a_sig[0] < a + 1.0, "the signature was asked for while the image downloaded");
    assert!(a_sig[1] >= a + 1.4, "the deferred signature was asked again after the image");

    let out = rkt(&["--quiet", "fetch", &web.url("/c.aci")]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Download"), "--quiet shows no progress");

    // A missing signature stops the download at once, not after the (slow) image.
    let slow = env.write("s.aci", &gzip(&simple_aci("example.com/app/s", "s")));
    web.route("/s.aci", serde_json::json!({"file": slow, "delay": 3.0}));
    let before = env.snapshot();
    let started = std::time::Instant::now();
    let out = rkt(&["--quiet", "fetch", &web.url("/s.aci")]);
    assert_eq!(out.status.code(), Some(254));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad HTTP status code: 404"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "it waited for the image");
    assert_eq!(env.snapshot(), before);

    // An endless body under a good name: refused at the import's bound, nothing kept.
    let endless = env.write("e.aci", &simple_aci("example.com/app/e", "e"));
    alice.sign(&endless);
    web.route("/e.aci", serde_json::json!({"file": endless, "mode": "endless"}));
    web.route("/e.aci.asc", serde_json::json!({"file": format!("{}.asc", endless.display())}));
    let before = env.snapshot();
    let out = rkt(&["--quiet", "fetch", &web.url("/e.aci")]);
    assert_eq!(out.status.code(), Some(254));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than 1 MiB"), "{err}");
    assert_eq!(env.snapshot(), before);

    // A key served without end is refused at 16 MiB, and nothing is trusted.
    web.route("/endless.asc", serde_json::json!({"mode": "endless", "body": "-----BEGIN PGP PUBLIC KEY BLOCK-----"}));
    let keys_before = Snapshot::of(&local);
    let endless_key = web.url("/endless.asc");
    let out = rkt(&[
        "trust",
        "--prefix=example.com/endless",
        "--skip-fingerprint-review",
        "--insecure-allow-http",
        &endless_key,
    ]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("over the 16777216-byte limit"), "{out:?}");
    assert_eq!(Snapshot::of(&local), keys_before);
}
