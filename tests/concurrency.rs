//! Several rkt processes on one store (parallel CI jobs), and a fetch killed half-way.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn parallel_fetches_lose_nothing() {
    let env = Env::new();
    env.ok(&["image", "list"]);
    let mut expected = std::collections::BTreeSet::new();
    let mut paths = Vec::new();
    for i in 0..6 {
        let tar = simple_aci(&format!("example.com/app{i}"), &"data".repeat(1000 + i));
        expected.insert(image_id(&tar));
        paths.push(env.write(&format!("{i}.aci"), &gzip(&tar)));
    }
    let shared = simple_aci("example.com/shared", "same for everyone");
    expected.insert(image_id(&shared));
    let shared_path = env.write("shared.aci", &shared);
    let mut children = Vec::new();
    for round in 0..2 {
        for p in paths.iter().chain(std::iter::repeat_n(&shared_path, 4)) {
            let mut cmd = env.cmd(&["fetch", "--insecure-options=image", p.to_str().unwrap()]);
            children.push((round, cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
        }
        // Readers run alongside the writers.
        for _ in 0..3 {
            let mut cmd = env.cmd(&["image", "list"]);
            children.push((round, cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
        }
    }
    for (_, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["image", "list", "--format=json"])).unwrap();
    let ids: std::collections::BTreeSet<String> =
        json.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, expected);
    let verified = env.ok(&["image", "verify"]);
    assert_eq!(verified.lines().filter(|l| l.ends_with("checked)")).count(), expected.len(), "{verified}");
}

#[test]
fn a_fetch_killed_half_way_leaves_nothing_behind() {
    let env = Env::new();
    env.fetch(&simple_aci("example.com/kept", "k"), "kept.aci");
    let before = env.snapshot();
    let big = gzip(&simple_aci("example.com/big", &"0123456789abcdef".repeat(1 << 16)));
    let fifo = env.path("slow.aci");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = env
        .cmd(&["fetch", "--insecure-options=image", fifo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&big[..big.len() / 2]).unwrap();
    writer.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    // Whatever the killed process had written is invisible, and the next run finds no debris.
    env.ok(&["image", "list"]);
    assert_eq!(env.snapshot(), before);
    let id = env.fetch(&big, "big.aci");
    assert!(env.ok(&["image", "list", "--full"]).contains(&id));
}
