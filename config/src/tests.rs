use super::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn later_directories_override_per_domain_and_field() {
    let t = tempfile::tempdir().unwrap();
    let (system, local) = (t.path().join("system"), t.path().join("local"));
    write(
        &system,
        "auth.d/coreos.json",
        r#"{"rktKind":"auth","rktVersion":"v1","domains":["coreos.com","tectonic.com","kubernetes.io"],"type":"oauth","credentials":{"token":"common-token"}}"#,
    );
    write(
        &local,
        "auth.d/specific.json",
        r#"{"rktKind":"auth","rktVersion":"v1","domains":["coreos.com"],"type":"basic","credentials":{"user":"foo","password":"bar"}}"#,
    );
    write(
        &system,
        "auth.d/docker.json",
        r#"{"rktKind":"dockerAuth","rktVersion":"v1","registries":["index.docker.io","quay.io"],"credentials":{"user":"foo","password":"bar"}}"#,
    );
    write(
        &local,
        "auth.d/quay.json",
        r#"{"rktKind":"dockerAuth","rktVersion":"v1","registries":["quay.io"],"credentials":{"user":"baz","password":"quux"}}"#,
    );
    write(
        &system,
        "paths.d/paths.json",
        r#"{"rktKind":"paths","rktVersion":"v1","data":"/srv/rkt","stage1-images":"/opt/s1"}"#,
    );
    write(&local, "paths.d/paths.json", r#"{"rktKind":"paths","rktVersion":"v1","data":"/home/me/rkt"}"#);
    write(&system, "auth.d/README", "not json, ignored");
    let c = Config::load(&[&system, &local]).unwrap();
    assert_eq!(c.auth["kubernetes.io"], Credentials::OAuth { token: "common-token".into() });
    assert_eq!(c.auth["coreos.com"], Credentials::Basic { user: "foo".into(), password: "bar".into() });
    assert_eq!(c.docker_auth["quay.io"].user, "baz");
    assert_eq!(c.docker_auth["index.docker.io"].user, "foo");
    assert_eq!(c.paths.data.as_deref(), Some(Path::new("/home/me/rkt")));
    assert_eq!(c.paths.stage1_images.as_deref(), Some(Path::new("/opt/s1")));
    let out = c.stage0_json(Path::new("/home/me/rkt"), Path::new("/usr/lib/rkt/stage1-images"));
    let entries = out["stage0"].as_array().unwrap();
    assert_eq!(entries.iter().filter(|e| e["rktKind"] == "auth").count(), 3);
    assert!(entries
        .iter()
        .any(|e| e["rktKind"] == "paths" && e["data"] == "/home/me/rkt" && e["stage1-images"] == "/opt/s1"));
}

#[test]
fn errors_name_the_file_and_the_fault() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    write(
        dir,
        "auth.d/a.json",
        r#"{"rktKind":"auth","rktVersion":"v1","domains":["x.com"],"type":"oauth","credentials":{"token":"t"}}"#,
    );
    write(
        dir,
        "auth.d/b.json",
        r#"{"rktKind":"auth","rktVersion":"v1","domains":["x.com"],"type":"oauth","credentials":{"token":"u"}}"#,
    );
    let e = Config::load(&[dir]).unwrap_err();
    assert!(e.to_string().contains("b.json") && e.to_string().contains("already defined"), "{e}");

    for (text, fault) in [
        (
            r#"{"rktKind":"auth","rktVersion":"v2","domains":["y"],"type":"oauth","credentials":{"token":"t"}}"#,
            "rktVersion",
        ),
        (r#"{"rktKind":"auth","rktVersion":"v1","domains":["y"],"type":"aws","credentials":{}}"#, "unknown auth type"),
        (
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["y"],"type":"basic","credentials":{"user":"u"}}"#,
            "credentials.password",
        ),
        (
            r#"{"rktKind":"auth","rktVersion":"v1","domains":[],"type":"oauth","credentials":{"token":"t"}}"#,
            "domains cannot be empty",
        ),
        (r#"{"rktVersion":"v1"}"#, "rktKind"),
        ("{", "not valid JSON"),
    ] {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "auth.d/x.json", text);
        let e = Config::load(&[t.path()]).unwrap_err();
        assert!(e.to_string().contains(fault), "{fault}: {e}");
    }
}

#[test]
fn missing_directories_are_empty() {
    let c = Config::load(&[Path::new("/nonexistent/rkt-config")]).unwrap();
    assert_eq!(c, Config::default());
}
