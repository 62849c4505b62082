//! `docker://` images from registries that want credentials: Debian's docker-registry on
//! 127.0.0.1 behind basic auth, a token realm or client certificates, with the credentials
//! from rkt's auth.d, Docker's config and credential helpers, and certs.d.

mod common;

use common::oci::*;
use common::registry::{docker_auth, layer, render_fetched, Registry};
use common::web::Web;
use common::*;

/// A registry behind basic auth (alice, s3cret) holding an image of one layer (`etc/x` holding
/// `content`) as `repo_tag`, and that image's `docker://` reference.
fn private_image(env: &Env, repo_tag: &str, content: &str) -> Option<(Registry, String)> {
    let registry = Registry::start_with_basic_auth(&env.path("registry"), "alice", "s3cret")?;
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(layer(&[("etc/x", content)]), TGZ, gzip)], serde_json::json!({}));
    registry.push_as(&format!("oci:{}:v1", layout.dir.display()), repo_tag, Some("alice:s3cret"));
    let image = format!("docker://{}/{repo_tag}", registry.addr);
    Some((registry, image))
}

#[test]
fn a_registry_behind_basic_auth_takes_credentials_from_auth_d() {
    let env = Env::new();
    let Some((registry, image)) = private_image(&env, "priv/demo:v1", "private") else { return };
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["--insecure-options=image,http", "fetch", &image]);
    assert!(err.contains("401") && err.contains("UNAUTHORIZED"), "{err}");
    assert_eq!(env.snapshot(), before);
    let config = docker_auth(&env, &registry.addr, "alice", "s3cret");
    let out = env.rkt(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = docker_auth(&env, &registry.addr, "alice", "wrong");
    let fresh = Env::new();
    let out =
        fresh.rkt(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image]);
    assert_eq!(out.status.code(), Some(254));

    // Docker's client config, keyed as `docker login http://HOST/v2/` leaves it: from
    // $DOCKER_CONFIG, else from ~/.docker. podman's auth.json, keyed by a namespace of the
    // registry (the wrong password for the registry as a whole): from $REGISTRY_AUTH_FILE.
    let docker_config = fresh.path("home/.docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let login = |key: String, creds: &[u8]| serde_json::json!({"auths": {key: {"auth": base64(creds, false)}}});
    let auths = login(format!("http://{}/v2/", registry.addr), b"alice:s3cret");
    std::fs::write(docker_config.join("config.json"), auths.to_string()).unwrap();
    let mut auth_json = login(format!("{}/priv", registry.addr), b"alice:s3cret");
    auth_json["auths"][&registry.addr] = serde_json::json!({"auth": base64(b"alice:wrong", false)});
    let auth_file = fresh.write("auth.json", auth_json.to_string().as_bytes());
    for (variable, value) in
        [("DOCKER_CONFIG", docker_config.clone()), ("HOME", fresh.path("home")), ("REGISTRY_AUTH_FILE", auth_file)]
    {
        let fresh = Env::new();
        let out = fresh
            .cmd(&["--insecure-options=image,http", "fetch", &image])
            .env_remove("DOCKER_CONFIG")
            .env(variable, &value)
            .output()
            .unwrap();
        assert!(out.status.success(), "{variable}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Docker's credential helpers, named by `credHelpers` (one registry) or `credsStore` (all):
/// rkt runs `docker-credential-NAME get` from PATH, as Docker and podman do.
#[test]
fn registry_credentials_come_from_the_credential_helper_docker_names() {
    let env = Env::new();
    let Some((registry, image)) = private_image(&env, "priv/helped:v1", "helped") else { return };

    // A helper as the real ones behave: the server's address on stdin, JSON on stdout, and
    // "credentials not found" (exit 1) for a registry it holds nothing for.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = env.path("asked");
    let script = format!(
        "#!/bin/sh\nread -r server\necho \"$1 $server\" >> {asked}\nif [ \"$server\" = {addr} ]; then\n  \
         echo '{{\"ServerURL\": \"{addr}\", \"Username\": \"alice\", \"Secret\": \"s3cret\"}}'\nelse\n  \
         echo 'credentials not found in native keychain'; exit 1\nfi\n",
        asked = asked.display(),
        addr = registry.addr
    );
    let helper = bin.join("docker-credential-rkt-test");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let docker_config = env.path("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let fetch_in = |fresh: &Env, config: serde_json::Value| {
        std::fs::write(docker_config.join("config.json"), config.to_string()).unwrap();
        fresh
            .cmd(&["--insecure-options=image,http", "fetch", &image])
            .env("DOCKER_CONFIG", &docker_config)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let fetch = |config| fetch_in(&Env::new(), config);

    let out = fetch(serde_json::json!({"credHelpers": {registry.addr.clone(): "rkt-test"}}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), format!("get {}\n", registry.addr));
    // The default helper, with an `auths` entry as Docker leaves beside it (no secret in it).
    let out = fetch(serde_json::json!({"credsStore": "rkt-test", "auths": {registry.addr.clone(): {}}}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A registry's own helper comes first; one that holds nothing leaves the pull anonymous.
    let out = fetch(serde_json::json!({"credsStore": "rkt-test", "credHelpers": {"other.io": "absent"}}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&helper, "#!/bin/sh\necho 'credentials not found in native keychain'; exit 1\n").unwrap();
    let out = fetch(serde_json::json!({"credsStore": "rkt-test"}));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(254) && err.contains("UNAUTHORIZED"), "{err}");

    // A helper that is not installed, or fails: the pull stops and says which, the store as it was.
    for (config, expected) in [
        (serde_json::json!({"credsStore": "gone"}), "docker-credential-gone is not installed (not in PATH)"),
        (serde_json::json!({"credHelpers": {registry.addr.clone(): "rkt-test"}}), "docker-credential-rkt-test failed"),
    ] {
        std::fs::write(&helper, "#!/bin/sh\necho 'the keychain is locked' >&2; exit 3\n").unwrap();
        let fresh = Env::new();
        fresh.ok(&["image", "list"]);
        let before = fresh.snapshot();
        let out = fetch_in(&fresh, config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(254), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected) && err.contains("config.json"), "{err}");
        if expected.ends_with("failed") {
            assert!(err.contains("the keychain is locked"), "{err}");
        }
        assert_eq!(fresh.snapshot(), before);
    }
}

fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

/// A token docker-registry takes from `issuer` for `service`: a JWT signed (RS256) with the key
/// in `keys`, carrying its certificate, that grants `actions` on `repo`.
fn registry_token(keys: &std::path::Path, issuer: &str, service: &str, repo: &str, actions: &[&str]) -> String {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(keys).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let der = openssl(&["x509", "-in", "token.pem", "-outform", "DER"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64(&der, false)]});
    let claims = serde_json::json!({"iss": issuer, "sub": "alice", "aud": service, "exp": now + 3600,
        "nbf": now - 60, "iat": now - 60, "jti": format!("{repo}-{now}"),
        "access": [{"type": "repository", "name": repo, "actions": actions}]});
    let signed =
        format!("{}.{}", base64(header.to_string().as_bytes(), true), base64(claims.to_string().as_bytes(), true));
    std::fs::write(keys.join("signed"), &signed).unwrap();
    let signature = openssl(&["dgst", "-sha256", "-sign", "token.key", "signed"]);
    format!("{signed}.{}", base64(&signature, true))
}

/// The storage of a registry into which an image of one layer (`etc/x` holding `content`) was
/// pushed as `repo_tag`, for a registry started there afterwards with another configuration;
/// None when no registry can run here.
fn pushed_beforehand(env: &Env, repo_tag: &str, content: &str) -> Option<std::path::PathBuf> {
    let storage = env.path("registry");
    let open = Registry::start(&storage)?;
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(layer(&[("etc/x", content)]), TGZ, gzip)], serde_json::json!({}));
    open.push(&format!("oci:{}:v1", layout.dir.display()), repo_tag);
    Some(storage)
}

#[test]
fn a_registry_behind_token_auth_is_pulled_with_a_token_from_its_realm() {
    let env = Env::new();
    // Pushed before the registry wants tokens: skopeo then needs none.
    let Some(storage) = pushed_beforehand(&env, "test/tok:v1", "behind tokens") else { return };
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.pem"])
        .args(["-days", "2", "-subj", "/CN=rkt test token issuer"])
        .current_dir(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let realm = Web::start(&env.path("realm"), None);
    let (service, issuer) = ("test.registry", "rkt test token issuer");
    let registry =
        Registry::start_with_token_auth(&storage, &realm.url("/token"), service, issuer, &keys.join("token.pem"))
            .expect("docker-registry started a moment ago");
    let image = format!("docker://{}/test/tok:v1", registry.addr);
    let config = docker_auth(&env, &registry.addr, "alice", "s3cret");
    let fetch = |env: &Env| {
        env.rkt(&["--local-config", config.to_str().unwrap(), "--insecure-options=image,http", "fetch", &image])
    };
    let token_path = format!("/token?service={service}&scope=repository%3Atest%2Ftok%3Apull");

    // A token the realm gives for another repository: the registry refuses it, in its words.
    let other = registry_token(&keys, issuer, service, "test/other", &["pull"]);
    realm.route(&token_path, serde_json::json!({"body": serde_json::json!({"token": other}).to_string()}));
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let out = fetch(&env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("UNAUTHORIZED") || err.contains("DENIED"), "{err}");
    assert_eq!(env.snapshot(), before);

    // The token for this repository: the registry takes it, for the manifest and the blobs.
    let token = registry_token(&keys, issuer, service, "test/tok", &["pull"]);
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    realm.route(&token_path, serde_json::json!({"body": serde_json::json!({"token": forged}).to_string()}));
    assert_eq!(fetch(&env).status.code(), Some(254), "a token whose signature is wrong");
    realm.route(&token_path, serde_json::json!({"body": serde_json::json!({"token": token}).to_string()}));
    let out = fetch(&env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = render_fetched(&env, &out);
    assert_eq!(std::fs::read_to_string(tree.join("etc/x")).unwrap(), "behind tokens");
    // The realm was asked with the registry's credentials from auth.d.
    let asked: Vec<serde_json::Value> =
        realm.requests().into_iter().filter(|r| r["path"] == token_path.as_str()).collect();
    assert!(!asked.is_empty());
    let basic = format!("Basic {}", base64(b"alice:s3cret", false));
    assert!(asked.iter().all(|r| r["authorization"] == basic.as_str()), "{asked:?}");

    // An identity token that `docker login` kept (as Azure's registries give): exchanged at
    // the realm for an access token, as OAuth 2 refreshes one, by a POST with no credentials
    // in the URL or the headers. A realm that refuses it is shown, and nothing is stored.
    let docker_config = env.path("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let login = serde_json::json!({"auths": {registry.addr.clone(): {
        "auth": base64(b"00000000-0000-0000-0000-000000000000:", false), "identitytoken": "refresh-me"}}});
    std::fs::write(docker_config.join("config.json"), login.to_string()).unwrap();
    let with_token = |env: &Env| {
        env.cmd(&["--insecure-options=image,http", "fetch", &image])
            .env("DOCKER_CONFIG", &docker_config)
            .output()
            .unwrap()
    };
    let refused = serde_json::json!({"status": 400, "body": r#"{"error": "invalid_grant"}"#});
    realm.route("POST /token", refused);
    let fresh = Env::new();
    fresh.ok(&["image", "list"]);
    let before = fresh.snapshot();
    let out = with_token(&fresh);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("invalid_grant") && err.lines().count() == 1, "{err}");
    assert_eq!(fresh.snapshot(), before);
    realm.route("POST /token", serde_json::json!({"body": serde_json::json!({"access_token": token}).to_string()}));
    let out = with_token(&fresh);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = render_fetched(&fresh, &out);
    assert_eq!(std::fs::read_to_string(tree.join("etc/x")).unwrap(), "behind tokens");
    let posted: Vec<serde_json::Value> = realm.requests().into_iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(posted.len(), 2, "{posted:?}");
    for request in posted {
        assert_eq!(request["path"], "/token");
        assert_eq!(request["authorization"], serde_json::Value::Null);
        assert_eq!(request["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(
            request["form"],
            "grant_type=refresh_token&refresh_token=refresh-me&service=test.registry\
             &scope=repository%3Atest%2Ftok%3Apull&client_id=rkt"
        );
    }
}

/// A registry that takes only clients with a certificate its CA signed: rkt shows the one in
/// the host's certs.d directory (`NAME.cert` and `NAME.key`, as Docker and podman pair them).
#[test]
fn a_registry_that_wants_a_client_certificate_gets_the_one_in_certs_d() {
    let env = Env::new();
    let Some(storage) = pushed_beforehand(&env, "mtls/demo:v1", "mutual tls") else { return };
    let (ca, cert, key) = common::web::make_ca(&env.path("ca"));
    let (client_cert, client_key) = common::web::make_client_cert(&env.path("ca"));
    let registry = Registry::start_with_client_certs(&storage, &cert, &key, &ca).expect("started a moment ago");
    let image = format!("docker://{}/mtls/demo:v1", registry.addr);
    let config_home = env.path("config");
    let certs_d = config_home.join("containers/certs.d").join(&registry.addr);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(&ca, certs_d.join("ca.crt")).unwrap();
    let fetch = || {
        env.cmd(&["--insecure-options=image", "fetch", &image])
            .env("XDG_CONFIG_HOME", &config_home)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap()
    };

    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let out = fetch();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "the registry refuses a client without a certificate: {err}");
    // TLS 1.3 ends the handshake before the server judges the client: its alert (for which
    // rkt says what the server wants) may come back, or the connection may close under the
    // request first, which says no more than that.
    assert!(err.contains(&format!("https://{}/v2/mtls/demo/manifests/v1", registry.addr)), "{err}");
    assert_eq!(env.snapshot(), before);
    std::fs::copy(&client_cert, certs_d.join("client.cert")).unwrap();
    let out = fetch();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("client.key") && err.contains("the key of client certificate"), "{err}");
    assert_eq!(env.snapshot(), before);
    std::fs::copy(&client_key, certs_d.join("client.key")).unwrap();
    let out = fetch();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = render_fetched(&env, &out);
    assert_eq!(std::fs::read_to_string(rendered.join("etc/x")).unwrap(), "mutual tls");
}
