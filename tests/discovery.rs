//! Fetching by name through appc discovery, for real: `example.com` resolves to 127.0.0.1 in a
//! network and mount namespace of the test's own (its own /etc/hosts), where a web server with
//! a certificate from the test's CA takes port 443. Nothing in rkt knows it is a test.

mod common;

use std::process::Command;

use common::web::make_ca;
use common::*;

#[test]
fn fetch_by_name_through_discovery() {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and unshare");
        return;
    }
    let env = Env::new();
    let (ca, cert, key) = make_ca(&env.path("ca"));
    let site = env.path("site");
    std::fs::create_dir_all(&site).unwrap();
    let labels = r#""labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]"#;
    let with_dep = |dep: &str| {
        format!(r#"{labels},"dependencies":[{{"imageName":"{dep}","labels":[{{"name":"version","value":"1.0.0"}}]}}]"#)
    };
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/app", &with_dep("example.com/base")))
        .dir("rootfs")
        .file("rootfs/hello", b"discovered");
    let aci = env.write("app.aci", &gzip(&t.finish()));
    let mut base = Tar::new();
    base.manifest(&manifest_json("example.com/base", labels)).dir("rootfs").file("rootfs/base", b"from the dependency");
    let base_aci = env.write("base.aci", &base.finish());
    let mut loop_a = Tar::new();
    loop_a.manifest(&manifest_json("example.com/loop-a", &with_dep("example.com/loop-b"))).dir("rootfs");
    let loop_a = env.write("loop-a.aci", &loop_a.finish());
    let mut loop_b = Tar::new();
    loop_b.manifest(&manifest_json("example.com/loop-b", &with_dep("example.com/loop-a"))).dir("rootfs");
    let loop_b = env.write("loop-b.aci", &loop_b.finish());
    // pair -> extra -> absent: extra is fetched, then absent cannot be found.
    let mut pair = Tar::new();
    pair.manifest(&manifest_json("example.com/pair", &with_dep("example.com/extra"))).dir("rootfs");
    let pair = env.write("pair.aci", &pair.finish());
    let mut extra = Tar::new();
    extra.manifest(&manifest_json("example.com/extra", &with_dep("example.com/absent"))).dir("rootfs");
    let extra = env.write("extra.aci", &extra.finish());
    let mut wrong = Tar::new();
    wrong.manifest(&manifest_json("example.com/other", labels)).dir("rootfs");
    let wrong_aci = env.write("wrong.aci", &wrong.finish());
    // A signed image under a prefix whose key rkt trust finds by discovery.
    let mut signed = Tar::new();
    signed.manifest(&manifest_json("example.com/app/signed", labels)).dir("rootfs").file("rootfs/s", b"signed");
    let signed_aci = env.write("signed.aci", &gzip(&signed.finish()));
    let gpg_home = env.path("gnupg");
    std::fs::create_dir_all(&gpg_home).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&gpg_home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg (Debian's gnupg) is installed by test.sh");
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    gpg(&["--quick-gen-key", "Dave <dave@example.com>", "ed25519", "sign", "never"]);
    let pubkeys = env.write("pubkeys.gpg", &gpg(&["--armor", "--export"]));
    let signature = env.path("signed.aci.asc");
    gpg(&["--armor", "--detach-sign", "--output", signature.to_str().unwrap(), signed_aci.to_str().unwrap()]);
    let _ = Command::new("gpgconf").arg("--homedir").arg(&gpg_home).args(["--kill", "gpg-agent"]).output();
    let html = r#"<html><head><meta name="ac-discovery" content="example.com https://example.com/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg"></head></html>"#;
    let routes = serde_json::json!({
        "/?ac-discovery=1": {"body": html},
        "/app?ac-discovery=1": {"status": 404, "body": "no"},
        "/endless?ac-discovery=1": {"mode": "endless", "body": "<html><head>"},
        "/images/example.com/app-1.0.0-linux-amd64.aci": {"file": aci},
        "/images/example.com/app-2.0.0-linux-amd64.aci": {"file": wrong_aci},
        "/images/example.com/base-1.0.0-linux-amd64.aci": {"file": base_aci},
        "/images/example.com/loop-a-1.0.0-linux-amd64.aci": {"file": loop_a},
        "/images/example.com/pair-1.0.0-linux-amd64.aci": {"file": pair},
        "/images/example.com/extra-1.0.0-linux-amd64.aci": {"file": extra},
        "/images/example.com/loop-b-1.0.0-linux-amd64.aci": {"file": loop_b},
        "/images/example.com/app/signed-1.0.0-linux-amd64.aci": {"file": signed_aci},
        "/images/example.com/app/signed-1.0.0-linux-amd64.aci.asc": {"file": signature},
        "/pubkeys.gpg": {"file": pubkeys},
    });
    std::fs::write(site.join("routes.json"), routes.to_string()).unwrap();
    std::fs::write(site.join("hosts"), "127.0.0.1 localhost example.com\n").unwrap();
    let script = format!(
        r#"set -e
ip link set lo up
mount --bind {hosts} /etc/hosts
PORT=443 python3 {server} {routes} {log} {portfile} {cert} {key} >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for i in $(seq 100); do [ -f {portfile} ] && break; sleep 0.05; done
export SSL_CERT_FILE={ca}
rkt="{rkt} --dir {store} --insecure-options=image"
$rkt fetch --full example.com/app:1.0.0 > {out}
$rkt image render --rootfs-only example.com/app:1.0.0 {rendered}
if $rkt fetch example.com/app:2.0.0 2> {err}; then echo unexpected; exit 1; fi
if $rkt fetch example.com/loop-a:1.0.0 2> {cycle}; then echo unexpected; exit 1; fi
if $rkt fetch example.com/endless:1.0.0 2> {endless}; then echo unexpected; exit 1; fi
$rkt image list --no-legend --fields=id > {ids_before}
if $rkt fetch example.com/pair:1.0.0 2> {absent}; then echo unexpected; exit 1; fi
$rkt image list --no-legend --fields=id > {ids_after}
$rkt image list --no-legend --fields=name > {list}
signed="{rkt} --dir {store} --local-config {config} --quiet"
if $signed fetch example.com/app/signed:1.0.0 2> {untrusted}; then echo unexpected; exit 1; fi
$signed trust --prefix example.com/app --skip-fingerprint-review > {trusted}
$signed fetch example.com/app/signed:1.0.0 2> {verified}
"#,
        hosts = site.join("hosts").display(),
        server = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/http_server.py"),
        routes = site.join("routes.json").display(),
        log = site.join("log").display(),
        portfile = site.join("port").display(),
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
        rkt = env!("CARGO_BIN_EXE_rkt"),
        store = env.store().display(),
        out = env.path("out").display(),
        rendered = env.path("rendered").display(),
        err = env.path("err").display(),
        list = env.path("list").display(),
        cycle = env.path("cycle").display(),
        endless = env.path("endless").display(),
        ids_before = env.path("ids_before").display(),
        absent = env.path("absent").display(),
        ids_after = env.path("ids_after").display(),
        config = env.path("config").display(),
        untrusted = env.path("untrusted").display(),
        trusted = env.path("trusted").display(),
        verified = env.path("verified").display(),
    );
    let out = Command::new("unshare").args(["--net", "--mount", "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let id = std::fs::read_to_string(env.path("out")).unwrap();
    assert!(id.starts_with("sha512-") && id.trim().len() == 71, "{id}");
    assert_eq!(std::fs::read_to_string(env.path("rendered/hello")).unwrap(), "discovered");
    assert_eq!(
        std::fs::read_to_string(env.path("rendered/base")).unwrap(),
        "from the dependency",
        "the dependency was fetched too"
    );
    let cycle = std::fs::read_to_string(env.path("cycle")).unwrap();
    assert!(
        cycle.contains("dependency cycle: example.com/loop-a -> example.com/loop-b -> example.com/loop-a"),
        "{cycle}"
    );
    let endless = std::fs::read_to_string(env.path("endless")).unwrap();
    assert!(endless.contains("endless?ac-discovery=1: the answer is over the 4194304-byte limit"), "{endless}");
    let absent = std::fs::read_to_string(env.path("absent")).unwrap();
    assert!(absent.contains("example.com/absent"), "{absent}");
    assert_eq!(
        std::fs::read_to_string(env.path("ids_after")).unwrap(),
        std::fs::read_to_string(env.path("ids_before")).unwrap(),
        "a fetch whose dependency's dependency cannot be had leaves the store as it was"
    );
    let err = std::fs::read_to_string(env.path("err")).unwrap();
    assert!(err.contains("named \"example.com/other\""), "{err}");
    let list = std::fs::read_to_string(env.path("list")).unwrap();
    assert!(!list.contains("example.com/other"), "the mismatching image was not kept: {list}");
    let requests = std::fs::read_to_string(site.join("log")).unwrap();
    assert!(
        requests.contains("/app?ac-discovery=1") && requests.contains("\"/?ac-discovery=1\""),
        "walked up from the full name: {requests}"
    );
    let untrusted = std::fs::read_to_string(env.path("untrusted")).unwrap();
    assert!(untrusted.contains("trust its signer with rkt trust --prefix"), "{untrusted}");
    let trusted = std::fs::read_to_string(env.path("trusted")).unwrap();
    assert!(trusted.contains("Added key for prefix \"example.com/app\""), "the key was discovered: {trusted}");
    let verified = std::fs::read_to_string(env.path("verified")).unwrap();
    assert!(verified.contains("signature verified:") && verified.contains("Dave <dave@example.com>"), "{verified}");
}
