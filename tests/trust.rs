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
