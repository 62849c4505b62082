//! Image configs with odd values where Docker allows any string: users, environment entries,
//! working directories, ports, volumes, labels, commands. Each image must be taken, with a
//! manifest rkt reads back, or refused as rkt refuses bad input: exit 254 and one line, the
//! store as it was.

mod common;

use common::oci::*;
use common::*;

/// Strings that have broken converters: empty, separators alone or doubled, climbing paths,
/// relative paths, ranges, huge numbers, control characters, non-ASCII, long.
const ODD: [&str; 24] = [
    "",
    ":",
    "a:b:c",
    "/",
    "../../etc",
    "/srv/../..",
    "relative/dir",
    "80/tcp",
    "80",
    "0/tcp",
    "99999/udp",
    "8000-8010/tcp",
    "53/sctp",
    "x/y/z",
    "=",
    "A=",
    "=B",
    "PATH=/usr/bin:/bin",
    "line\nbreak",
    "tab\there",
    "ünïcødé",
    "-1",
    "1000:1000",
    "nobody",
];

fn odd(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "x".repeat(5000),
        1 => format!("{}{}", rng.pick(&ODD), rng.pick(&ODD)),
        _ => rng.pick(&ODD).to_string(),
    }
}

fn odd_list(rng: &mut Rng) -> serde_json::Value {
    (0..rng.below(4)).map(|_| serde_json::Value::String(odd(rng))).collect()
}

fn odd_map(rng: &mut Rng) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> =
        (0..rng.below(4)).map(|_| (odd(rng), serde_json::json!({}))).collect();
    serde_json::Value::Object(map)
}

#[test]
fn odd_configs_are_taken_or_refused_cleanly() {
    let (mut taken, mut refused) = (0, 0);
    let layer = {
        let mut t = Tar::new();
        t.dir("srv").file("srv/a", b"a");
        t.finish()
    };
    for seed in 1..=120u64 {
        let mut rng = Rng(seed);
        let labels: serde_json::Map<String, serde_json::Value> =
            (0..rng.below(3)).map(|_| (odd(&mut rng), serde_json::Value::String(odd(&mut rng)))).collect();
        let fields = [
            ("User", serde_json::Value::String(odd(&mut rng))),
            ("Env", odd_list(&mut rng)),
            ("Entrypoint", odd_list(&mut rng)),
            ("Cmd", odd_list(&mut rng)),
            ("WorkingDir", serde_json::Value::String(odd(&mut rng))),
            ("ExposedPorts", odd_map(&mut rng)),
            ("Volumes", odd_map(&mut rng)),
            ("Labels", serde_json::Value::Object(labels)),
        ];
        // Each field is there half of the time, so that some images hold only odd values that
        // can be taken.
        let config: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().filter(|_| rng.below(2) == 0).map(|(k, v)| (k.to_string(), v)).collect();
        let config = serde_json::Value::Object(config);
        let env = Env::new();
        env.fetch(&simple_aci("example.com/good", "good"), "good.aci");
        let before = env.snapshot();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer.clone(), TGZ, gzip)], config.clone());
        let image = format!("oci:{}:v1", layout.dir.display());
        let out = env.rkt(&["fetch", "--insecure-options=image", "--full", &image]);
        match out.status.code() {
            Some(0) => {
                taken += 1;
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let manifest = env.ok(&["image", "cat-manifest", &id]);
                let parsed: serde_json::Value = serde_json::from_str(&manifest).unwrap();
                assert_eq!(parsed["acKind"], "ImageManifest", "seed {seed}: {config}");
            }
            Some(254) => {
                refused += 1;
                env.fails(&["fetch", "--insecure-options=image", "--full", &image]);
                assert_eq!(env.snapshot(), before, "seed {seed}: the store changed: {config}");
            }
            other => panic!("seed {seed}: exit {other:?}: {}\n{config}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    assert!(taken > 0, "refused all {refused}");
}
