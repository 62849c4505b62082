use super::*;
use std::process::Command;

/// A key pair made by GnuPG in its own home: (home, armored public key).
fn gpg_key(dir: &Path, uid: &str) -> Option<(PathBuf, Vec<u8>)> {
    let home = dir.join(uid.replace(['@', ' ', '<', '>'], "_"));
    std::fs::create_dir_all(&home).ok()?;
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .ok()
    };
    let out = gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"])?;
    if !out.status.success() {
        return None;
    }
    let export = gpg(&["--armor", "--export", uid])?;
    Some((home, export.stdout))
}

fn sign(home: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--armor",
            "--detach-sign",
            "--output",
            "-",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn prefixes_match_whole_components_and_masks_work() {
    if Command::new("gpg").arg("--version").output().is_err() {
        eprintln!("skipping: gpg is missing");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (system, local) = (t.path().join("system"), t.path().join("local"));
    let Some((home, key)) = gpg_key(t.path(), "Test Signer <signer@example.com>") else {
        eprintln!("skipping: gpg could not make a key");
        return;
    };
    let data = t.path().join("data");
    std::fs::write(&data, b"image bytes").unwrap();
    let sig = sign(&home, &data);
    let store = Keystore::new(&system, &local);
    let (path, cert) = store.add(Some("acme.com/foo"), &key).unwrap();
    assert!(path.ends_with(format!("prefix.d/acme.com/foo/{}", fingerprint_hex(&cert))));
    assert_eq!(fingerprint_display(&cert).split("  ").count(), 2);
    let keys = store.keys_for("acme.com/foo/bar").unwrap();
    let ids = verify(&keys, &b"image bytes"[..], &sig).unwrap();
    assert_eq!(ids, vec!["Test Signer <signer@example.com>".to_string()]);
    assert!(matches!(
        verify(&store.keys_for("acme.com/foobar").unwrap(), &b"image bytes"[..], &sig),
        Err(TrustError::UnknownEntity)
    ));
    assert!(verify(&keys, &b"other bytes"[..], &sig).is_err(), "a signature over other bytes");
    assert!(verify(&keys, &b"image bytes"[..], b"not a signature").is_err());
    // A system root key, masked by an empty local file of the same name.
    let root = system.join("trustedkeys/root.d");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(fingerprint_hex(&cert)), &key).unwrap();
    assert_eq!(store.keys_for("other.com/x").unwrap().len(), 1);
    std::fs::create_dir_all(local.join("trustedkeys/root.d")).unwrap();
    std::fs::write(local.join("trustedkeys/root.d").join(fingerprint_hex(&cert)), b"").unwrap();
    assert!(store.keys_for("other.com/x").unwrap().is_empty());
    // A key file whose name is not its fingerprint is refused.
    std::fs::write(root.join("0000000000000000000000000000000000000000"), &key).unwrap();
    assert!(matches!(store.keys_for("other.com/x"), Err(TrustError::FingerprintMismatch { .. })));
    assert!(store.add(Some("https://acme.com"), &key).is_err());
    assert!(store.add(Some("acme.com/../x"), &key).is_err());
    let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "gpg-agent"]).output();
}

fn gpg_in(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .output()
        .unwrap()
}

/// Expired and revoked keys, SHA-1 signatures and a signed message in place of a detached
/// signature do not pass (hostile-inputs row 12).
#[test]
fn keys_and_signatures_that_do_not_count() {
    if Command::new("gpg").arg("--version").output().is_err() {
        eprintln!("skipping: gpg is missing");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::write(&data, b"image bytes").unwrap();
    let sign = |home: &Path, extra: &[&str]| -> Vec<u8> {
        let mut args = extra.to_vec();
        args.extend(["--armor", "--detach-sign", "--output", "-", data.to_str().unwrap()]);
        let out = gpg_in(home, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let cert_of = |home: &Path| parse_key(&gpg_in(home, &["--armor", "--export"]).stdout).unwrap();

    // A key that expired in 2020, with a signature made while it was valid.
    let old = t.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    assert!(gpg_in(
        &old,
        &[
            "--faked-system-time",
            "20200101T000000",
            "--quick-gen-key",
            "Old <old@example.com>",
            "ed25519",
            "sign",
            "1d"
        ]
    )
    .status
    .success());
    let sig = sign(&old, &["--faked-system-time", "20200101T120000"]);
    assert!(verify(&[cert_of(&old)], &b"image bytes"[..], &sig).is_err(), "an expired key does not count");

    // A revoked key.
    let Some((revoked, _)) = gpg_key(t.path(), "Revoked <revoked@example.com>") else { return };
    let sig = sign(&revoked, &[]);
    let cert = cert_of(&revoked);
    assert!(verify(std::slice::from_ref(&cert), &b"image bytes"[..], &sig).is_ok());
    let rev_dir = revoked.join("openpgp-revocs.d");
    let rev_file = std::fs::read_dir(&rev_dir).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&rev_file).unwrap().replace(":-----BEGIN", "-----BEGIN");
    std::fs::write(&rev_file, text).unwrap();
    assert!(gpg_in(&revoked, &["--import", rev_file.to_str().unwrap()]).status.success());
    assert!(verify(&[cert_of(&revoked)], &b"image bytes"[..], &sig).is_err(), "a revoked key does not count");

    // SHA-1, and a whole signed message where a detached signature belongs.
    let Some((signer, _)) = gpg_key(t.path(), "Signer <signer2@example.com>") else { return };
    let certs = [cert_of(&signer)];
    let sha1 = sign(&signer, &["--digest-algo", "SHA1"]);
    assert!(verify(&certs, &b"image bytes"[..], &sha1).is_err(), "SHA-1 signatures do not count");
    let inline = gpg_in(&signer, &["--armor", "--sign", "--output", "-", data.to_str().unwrap()]).stdout;
    assert!(verify(&certs, &b"image bytes"[..], &inline).is_err(), "a signed message is not a detached signature");
    for home in [&old, &revoked, &signer] {
        let _ = Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "gpg-agent"]).output();
    }
}
