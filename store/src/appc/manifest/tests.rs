use super::*;

fn parse(json: &str) -> Result<ImageManifest, ManifestError> {
    ImageManifest::parse(json.as_bytes())
}

const MINIMAL: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app"}"#;

fn with(extra: &str) -> String {
    format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app",{extra}}}"#)
}

#[test]
fn minimal_manifest_parses() {
    let m = parse(MINIMAL).unwrap();
    assert_eq!(m.name, "example.com/app");
    assert!(m.app.is_none());
}

#[test]
fn full_manifest_round_trips() {
    let json = with(
        r#""labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
        "app":{"exec":["/bin/sh","-c","true"],"user":"0","group":"0","workingDirectory":"/srv",
               "environment":[{"name":"A_B","value":"c"}],
               "mountPoints":[{"name":"data","path":"/data","readOnly":true}],
               "ports":[{"name":"http","protocol":"tcp","port":80}],
               "isolators":[{"name":"resource/memory","value":{"limit":"1G"}}],
               "eventHandlers":[{"name":"pre-start","exec":["/bin/true"]}],
               "userLabels":{"k":"v"}},
        "dependencies":[{"imageName":"example.com/base","labels":[{"name":"version","value":"1"}]}],
        "pathWhitelist":["/bin/sh"],
        "annotations":[{"name":"authors","value":"me"}]"#,
    );
    let m = parse(&json).unwrap();
    assert_eq!(m.label("version"), Some("1.0.0"));
    assert_eq!(m.app.as_ref().unwrap().ports[0].count, 1);
    let again = parse(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(m, again);
}

#[test]
fn null_lists_are_empty() {
    let m = parse(&with(r#""labels":null,"dependencies":null"#)).unwrap();
    assert!(m.labels.is_empty());
}

fn rejects(json: &str, field: &str, value: &str) {
    let err = parse(json).expect_err(json);
    assert_eq!(err.field, field, "{err}");
    assert_eq!(err.value, value, "{err}");
}

#[test]
fn each_rule_names_field_and_value() {
    rejects(r#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"a"}"#, "acKind", "PodManifest");
    rejects(r#"{"acKind":"ImageManifest","acVersion":"latest","name":"a"}"#, "acVersion", "latest");
    rejects(r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Example.com"}"#, "name", "Example.com");
    rejects(&with(r#""labels":[{"name":"a","value":"1"},{"name":"a","value":"2"}]"#), "labels.name", "a");
    rejects(&with(r#""labels":[{"name":"name","value":"x"}]"#), "labels.name", "name");
    rejects(&with(r#""labels":[{"name":"os","value":"plan9"}]"#), "labels.os", "plan9");
    rejects(
        &with(r#""labels":[{"name":"os","value":"linux"},{"name":"arch","value":"x86_64"}]"#),
        "labels.arch",
        "x86_64",
    );
    rejects(&with(r#""app":{"exec":[""],"user":"0","group":"0"}"#), "app.exec[0]", "");
    assert!(parse(&with(r#""app":{"exec":["sh","-c","true"],"user":"0","group":"0"}"#)).is_ok());
    rejects(&with(r#""app":{"user":"","group":"0"}"#), "app.user", "");
    rejects(&with(r#""app":{"user":"0"}"#), "app.group", "");
    rejects(&with(r#""app":{"user":"0","group":"0","workingDirectory":"srv"}"#), "app.workingDirectory", "srv");
    rejects(
        &with(r#""app":{"user":"0","group":"0","environment":[{"name":"1A","value":""}]}"#),
        "app.environment.name",
        "1A",
    );
    rejects(
        &with(r#""app":{"user":"0","group":"0","mountPoints":[{"name":"Data","path":"/d"}]}"#),
        "app.mountPoints.name",
        "Data",
    );
    rejects(
        &with(r#""app":{"user":"0","group":"0","mountPoints":[{"name":"d","path":"d"}]}"#),
        "app.mountPoints.path",
        "d",
    );
    rejects(
        &with(r#""app":{"user":"0","group":"0","ports":[{"name":"p","protocol":"sctp","port":1}]}"#),
        "app.ports.protocol",
        "sctp",
    );
    rejects(
        &with(r#""app":{"user":"0","group":"0","ports":[{"name":"p","protocol":"tcp","port":70000}]}"#),
        "app.ports.port",
        "70000",
    );
    rejects(
        &with(
            r#""app":{"user":"0","group":"0","eventHandlers":[{"name":"pre-start","exec":["/a"]},{"name":"pre-start","exec":["/b"]}]}"#,
        ),
        "app.eventHandlers.name",
        "pre-start",
    );
    rejects(
        &with(r#""app":{"user":"0","group":"0","eventHandlers":[{"name":"later","exec":["/a"]}]}"#),
        "app.eventHandlers.name",
        "later",
    );
    rejects(&with(r#""dependencies":[{"imageName":"Bad"}]"#), "dependencies[0].imageName", "Bad");
    rejects(
        &with(r#""dependencies":[{"imageName":"a","imageID":"sha512-zz"}]"#),
        "dependencies[0].imageID",
        "sha512-zz",
    );
    rejects(&with(r#""pathWhitelist":["bin/sh"]"#), "pathWhitelist[0]", "bin/sh");
    rejects(&with(r#""annotations":[{"name":"x","value":"1"},{"name":"x","value":"1"}]"#), "annotations.name", "x");
    rejects("{not json", "manifest", "JSON");
}

#[test]
fn oversized_manifest_is_refused_before_parsing() {
    let big =
        format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","pad":"{}"}}"#, "x".repeat(1 << 20));
    let err = parse(&big).unwrap_err();
    assert!(err.rule.contains("1 MiB"), "{err}");
}
