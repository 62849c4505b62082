//! ACIs by URL from a real web server on 127.0.0.1: the remote cache, bad answers, redirects,
//! credentials and TLS with a CA made by the test.

mod common;

use common::web::{make_ca, Web};
use common::*;

fn fetch_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--insecure-options=image,http"];
    args.extend_from_slice(extra);
    args.extend(["fetch", "--full", url]);
    args
}

#[test]
fn the_remote_cache_uses_max_age_then_etags() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    let v1 = env.write("v1.aci", &gzip(&simple_aci("example.com/app", "one")));
    web.route(
        "/app.aci",
        serde_json::json!({"file": v1, "etag": "\"v1\"", "headers": {"Cache-Control": "max-age=3600"}}),
    );
    let url = web.url("/app.aci");
    let first = env.ok(&fetch_args(&url, &[])).trim().to_string();
    assert_eq!(first, image_id(&simple_aci("example.com/app", "one")));
    assert_eq!(web.requests().len(), 1);
    // Within max-age: no request at all.
    let out = env.rkt(&fetch_args(&url, &[]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("isn't expired, not fetching"));
    assert_eq!(web.requests().len(), 1);
    // Expired: a conditional request, answered 304, and the stored image is used.
    web.route("/app.aci", serde_json::json!({"file": v1, "etag": "\"v1\"", "headers": {"Cache-Control": "no-cache"}}));
    let mut store = rusqlite::Connection::open(env.store().join("cas/db/index.sqlite")).unwrap();
    store.execute("UPDATE remotes SET download_time = 0", []).unwrap();
    drop(store.transaction().unwrap());
    assert_eq!(env.ok(&fetch_args(&url, &[])).trim(), first);
    let requests = web.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["if-none-match"], "\"v1\"");
    // Changed on the server: downloaded again.
    let v2 = env.write("v2.aci", &gzip(&simple_aci("example.com/app", "two")));
    web.route("/app.aci", serde_json::json!({"file": v2, "etag": "\"v2\""}));
    let second = env.ok(&fetch_args(&url, &[])).trim().to_string();
    assert_ne!(second, first);
    // rkt run (pull policy new) takes the stored image without asking.
    let before = web.requests().len();
    if is_root() && std::path::Path::new("/bin/busybox").exists() {
        let out = env.rkt(&["--insecure-options=image,http", "run", "--net=host", &url, "--exec=/bin/true"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("using image from local store"));
    }
    assert_eq!(web.requests().len(), before);
}

#[test]
fn bad_answers_are_refused_and_store_nothing() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    env.ok(&["image", "list"]);
    let good = env.write("good.aci", &simple_aci("example.com/app", "x"));
    web.route("/html.aci", serde_json::json!({"body": "<html>not an image</html>"}));
    web.route("/error.aci", serde_json::json!({"status": 500, "body": "oops"}));
    web.route("/short.aci", serde_json::json!({"file": good, "mode": "truncate"}));
    web.route("/endless.aci", serde_json::json!({"file": good, "mode": "endless"}));
    web.route("/to-https.aci", serde_json::json!({"status": 302, "location": "https://127.0.0.1:1/x.aci"}));
    let before = env.snapshot();
    for (path, why) in [
        ("/missing.aci", "bad HTTP status code: 404"),
        ("/html.aci", "bad image archive"),
        ("/error.aci", "bad HTTP status code: 500"),
        ("/short.aci", "response body"),
        ("/endless.aci", "after the end of the archive"),
    ] {
        let err = env.fails(&fetch_args(&web.url(path), &[]));
        assert!(err.contains(why), "{path}: expected {why:?} in {err}");
        assert_eq!(env.snapshot(), before, "{path} changed the store");
    }
    let errors = web.requests().iter().filter(|r| r["path"] == "/error.aci").count();
    assert_eq!(errors, 3, "a 5xx is tried three times");
    // Through a proxy that is not there, the error says the proxy was in the way.
    let out = env
        .cmd(&fetch_args(&web.url("/html.aci"), &[]))
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(through the proxy http://127.0.0.1:1 that HTTP_PROXY names)"), "{err}");
    // An image whose dependency cannot be had (discovery of a name under .invalid fails) is
    // refused, and the store keeps neither it nor its URL's row; nor does it lose the row of an
    // earlier download of that URL, when a fetch of a changed image there fails the same way.
    let lonely = |content: &str| {
        let mut t = Tar::new();
        t.manifest(&manifest_json("example.com/lonely", r#""dependencies":[{"imageName":"example.invalid/missing"}]"#))
            .dir("rootfs")
            .file("rootfs/x", content.as_bytes());
        t.finish()
    };
    let without = env.write("lonely.aci", &lonely("1"));
    web.route("/lonely.aci", serde_json::json!({"file": without}));
    let err = env.fails(&fetch_args(&web.url("/lonely.aci"), &[]));
    assert!(err.contains("example.invalid/missing"), "{err}");
    assert_eq!(env.snapshot(), before, "the image without its dependency was kept");
    let fine = env.write("fine.aci", &simple_aci("example.com/lonely", "fine"));
    web.route("/lonely.aci", serde_json::json!({"file": fine, "etag": "\"fine\""}));
    env.ok(&fetch_args(&web.url("/lonely.aci"), &[]));
    let with_fine = env.snapshot();
    let changed = env.write("changed.aci", &lonely("2"));
    web.route("/lonely.aci", serde_json::json!({"file": changed, "etag": "\"changed\""}));
    env.fails(&fetch_args(&web.url("/lonely.aci"), &[]));
    assert_eq!(env.snapshot(), with_fine, "the earlier download's row and image are as they were");

    let err = env.fails(&["--insecure-options=image", "fetch", &web.url("/html.aci")]);
    assert!(err.contains("--insecure-options=http"), "{err}");
    let err = env.fails(&["--insecure-options=http", "fetch", &web.url("/app.aci.missing")]);
    assert!(err.contains("bad HTTP status code: 404"), "{err}");
}

#[test]
fn tls_with_the_system_store_credentials_and_redirects() {
    let env = Env::new();
    let (ca, cert, key) = make_ca(&env.path("ca"));
    let secure = Web::start(&env.path("secure"), Some((&cert, &key)));
    let plain = Web::start(&env.path("plain"), None);
    let good = env.write("good.aci", &simple_aci("example.com/app", "tls"));
    secure.route("/app.aci", serde_json::json!({"file": good}));
    secure.route(
        "/elsewhere.aci",
        serde_json::json!({"status": 307, "location": format!("https://localhost:{}/app.aci", secure.port)}),
    );
    secure.route("/downgrade.aci", serde_json::json!({"status": 302, "location": plain.url("/app.aci")}));
    plain.route("/app.aci", serde_json::json!({"file": good}));
    let config = env.path("config");
    std::fs::create_dir_all(config.join("auth.d")).unwrap();
    std::fs::write(
        config.join("auth.d/test.json"),
        format!(r#"{{"rktKind":"auth","rktVersion":"v1","domains":["127.0.0.1:{}"],"type":"oauth","credentials":{{"token":"s3cret"}}}}"#, secure.port),
    )
    .unwrap();
    let with_ca = |args: &[&str]| {
        env.cmd(&["--local-config", config.to_str().unwrap()]).args(args).env("SSL_CERT_FILE", &ca).output().unwrap()
    };
    // Without the test's CA the certificate is refused; with it (SSL_CERT_FILE) it is trusted.
    let out = env.rkt(&["--insecure-options=image", "fetch", &secure.url("/app.aci")]);
    assert_eq!(out.status.code(), Some(254));
    let out = with_ca(&["--insecure-options=image", "fetch", &secure.url("/app.aci")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(secure.requests().last().unwrap()["authorization"], "Bearer s3cret");
    // A redirect to another host name gets no credentials.
    let out = with_ca(&["--insecure-options=image", "fetch", &secure.url("/elsewhere.aci")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = secure.requests().pop().unwrap();
    assert_eq!(last["path"], "/app.aci");
    assert_eq!(last["authorization"], serde_json::Value::Null);
    // A redirect from https to plain http is refused, even with http allowed.
    let out = with_ca(&["--insecure-options=image,http", "fetch", &secure.url("/downgrade.aci")]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain http"));
    assert!(plain.requests().is_empty());
    // --insecure-options=tls skips verification.
    let out = env.rkt(&["--insecure-options=image,tls", "fetch", &secure.url("/app.aci")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_broken_download_is_resumed() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    // Incompressible bytes (xorshift), so that the gzip file is larger than the cut.
    let payload = incompressible(300_000, 0x9e37_79b9_7f4a_7c15);
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/big", "")).dir("rootfs").file("rootfs/data", &payload);
    let tar = t.finish();
    let file = env.write("big.aci", &gzip(&tar));
    let url = web.url("/big.aci");
    web.route(
        "/big.aci",
        serde_json::json!({"file": file, "etag": "\"b1\"", "mode": "cut", "cut": 100_000, "ranges": true}),
    );
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let out = env.rkt(&fetch_args(&url, &[]));
    assert_eq!(out.status.code(), Some(254), "a cut connection fails the fetch");
    assert_eq!(env.snapshot(), before);
    web.route("/big.aci", serde_json::json!({"file": file, "etag": "\"b1\"", "ranges": true}));
    let id = env.ok(&fetch_args(&url, &[])).trim().to_string();
    assert_eq!(id, image_id(&tar));
    let last = web.requests().pop().unwrap();
    let range = last["range"].as_str().unwrap_or_default().to_string();
    let resumed_at: u64 = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap_or(0);
    assert!(
        range.starts_with("bytes=") && resumed_at > 50_000 && resumed_at <= 100_000,
        "the second attempt asked only for the rest: {range:?}"
    );
    assert_eq!(last["if-range"], "\"b1\"");
    assert_eq!(
        std::fs::read_dir(env.store().join("cas/downloads"))
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".lock"))
            .count(),
        0
    );
}

/// `rkt fetch A B C…`: the images download side by side, at most four at once from one host,
/// while another host's images do not wait; the IDs come out in the order given.
#[test]
fn several_images_download_at_once_bounded_per_host() {
    let env = Env::new();
    let (busy, other) = (Web::start(&env.path("busy"), None), Web::start(&env.path("other"), None));
    let mut urls = Vec::new();
    let mut ids = Vec::new();
    for i in 0..7 {
        let aci = simple_aci(&format!("example.com/app{i}"), "x");
        ids.push(image_id(&aci));
        let file = env.write(&format!("app{i}.aci"), &gzip(&aci));
        let web = if i < 6 { &busy } else { &other };
        web.route(&format!("/app{i}.aci"), serde_json::json!({"file": file, "delay": 1.0}));
        urls.push(web.url(&format!("/app{i}.aci")));
    }
    let mut args = vec!["--insecure-options=image,http", "fetch", "--full"];
    args.extend(urls.iter().map(String::as_str));
    let out = env.ok(&args);
    assert_eq!(out.lines().collect::<Vec<_>>(), ids, "IDs in the order given");
    let mut busy_times: Vec<f64> = busy.requests().iter().map(|r| r["time"].as_f64().unwrap()).collect();
    busy_times.sort_by(f64::total_cmp);
    let first = busy_times[0];
    assert!(busy_times[3] - first < 0.5, "four downloads from one host at once: {busy_times:?}");
    assert!(busy_times[4] - first >= 0.9, "the fifth waited for a free slot: {busy_times:?}");
    let other_time = other.requests()[0]["time"].as_f64().unwrap();
    assert!(other_time - first < 0.5, "another host's image did not wait: {other_time} against {first}");
}

/// Two rkt processes fetching one URL at the same time download it once: the second waits for
/// the first and takes what it stored.
#[test]
fn two_processes_download_one_url_once() {
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    let aci = simple_aci("example.com/shared", "x");
    let file = env.write("shared.aci", &gzip(&aci));
    web.route("/shared.aci", serde_json::json!({"file": file, "etag": "\"s1\"", "delay": 1.0}));
    let url = web.url("/shared.aci");
    env.ok(&["image", "list"]);
    let spawn = || env.cmd(&["--insecure-options=image,http", "--quiet", "fetch", "--full", &url]).output();
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for out in [&first, &second] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), image_id(&aci));
    }
    assert_eq!(web.requests().len(), 1, "one download: {:?}", web.requests());
}

/// On a terminal each download draws an indicatif bar (here through script(1)'s pseudo-terminal).
#[test]
fn a_terminal_gets_progress_bars() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: needs script(1) (bsdutils)");
        return;
    }
    let env = Env::new();
    let web = Web::start(&env.path("web"), None);
    let file = env.write("bar.aci", &gzip(&simple_aci("example.com/bar", "x")));
    web.route("/bar.aci", serde_json::json!({"file": file}));
    let command = format!(
        "{} --dir {} --insecure-options=image,http fetch {}",
        env!("CARGO_BIN_EXE_rkt"),
        env.store().display(),
        web.url("/bar.aci")
    );
    let out = std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains(&format!("Downloading {} [", web.url("/bar.aci"))), "a bar: {screen}");
    assert!(!screen.contains("Downloaded "), "no log lines on a terminal: {screen}");
}

/// A TLS refusal fails the same way each time, so it is not tried again (a refused connection
/// is, three times): here a server that answers a TLS hello in plain http.
#[test]
fn tls_refusals_are_not_retried() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let env = Env::new();
    let url = format!("https://127.0.0.1:{port}/app.aci");
    let err = env.fails(&["--insecure-options=image", "fetch", &url]);
    assert!(err.contains("the server does not speak TLS"), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the refusal was tried again");
}
