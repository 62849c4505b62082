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
    all_succeed(children.into_iter().map(|(_, child)| child).collect());
    assert_eq!(env.image_ids(), expected);
    let verified = env.ok(&["image", "verify"]);
    assert_eq!(verified.lines().filter(|l| l.ends_with("checked)")).count(), expected.len(), "{verified}");
    // A tree's lock file lives only as long as the render it guards, which the fetches of the
    // shared image waited on one another for.
    let locks = env.store().join("cas/treelocks");
    let left: Vec<_> =
        std::fs::read_dir(&locks).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "lock files left: {left:?}");
}

/// hostile-inputs.md row 14: `rkt image gc` run beside fetches (each fetch rendering its tree
/// as it goes) removes none of what they store, and leaves a store that verifies.
#[test]
fn image_gc_beside_fetches_takes_nothing_from_them() {
    let env = Env::new();
    env.ok(&["image", "list"]);
    let mut expected = std::collections::BTreeSet::new();
    let mut children = Vec::new();
    for i in 0..8 {
        let tar = simple_aci(&format!("example.com/gc{i}"), &format!("{i}").repeat(200_000));
        expected.insert(image_id(&tar));
        let path = env.write(&format!("{i}.aci"), &gzip(&tar));
        let mut cmd = env.cmd(&["fetch", "--insecure-options=image", path.to_str().unwrap()]);
        children.push(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
        let mut gc = env.cmd(&["image", "gc"]);
        children.push(gc.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    }
    all_succeed(children);
    assert_eq!(env.image_ids(), expected);
    let verified = env.ok(&["image", "verify"]);
    let whole = verified.lines().filter(|l| l.ends_with(": ok (1 tree(s) checked)")).count();
    assert_eq!(whole, expected.len(), "each image with its rendered tree, undamaged: {verified}");
    assert_eq!(std::fs::read_dir(env.store().join("cas/tmp")).unwrap().count(), 0, "debris in the temp area");
}

/// `rkt fetch --full` of `image` read from a fifo, of which half is written (and 0.3 s
/// given to read it): the fetch is under way, holding the store. Returns it and the fifo.
fn half_fed_fetch(env: &Env, image: &[u8]) -> (std::process::Child, std::fs::File) {
    let fifo = env.path("slow.aci");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let child = env
        .cmd(&["fetch", "--insecure-options=image", "--full", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&image[..image.len() / 2]).unwrap();
    writer.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    (child, writer)
}

#[test]
fn a_fetch_killed_half_way_leaves_nothing_behind() {
    let env = Env::new();
    env.fetch(&simple_aci("example.com/kept", "k"), "kept.aci");
    let before = env.snapshot();
    let big = gzip(&simple_aci("example.com/big", &"0123456789abcdef".repeat(1 << 16)));
    let (mut child, writer) = half_fed_fetch(&env, &big);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    // Whatever the killed process had written is invisible, and the next run finds no debris.
    env.ok(&["image", "list"]);
    assert_eq!(env.snapshot(), before);
    let id = env.fetch(&big, "big.aci");
    assert!(env.ok(&["image", "list", "--full"]).contains(&id));
}

/// A render killed midway leaves its tree's lock file (the lock itself goes with the process);
/// `rkt image gc` sweeps such files, and the tree renders again afterwards.
#[test]
fn image_gc_sweeps_lock_files_of_killed_renders() {
    let env = Env::new();
    let id = env.fetch(&simple_aci("example.com/kept", "k"), "kept.aci");
    let locks = env.store().join("cas/treelocks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(locks.join("deps-sha512-0123456789abcdef"), "").unwrap();
    env.ok(&["image", "gc"]);
    assert_eq!(std::fs::read_dir(&locks).unwrap().count(), 0);
    let out = env.path("out");
    env.ok(&["image", "render", &id, out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("rootfs/etc/content")).unwrap(), "k");
}

/// `rkt image gc` waits for a fetch under way, and says so rather than hang in silence.
#[test]
fn image_gc_waits_for_a_fetch_and_says_so() {
    let env = Env::new();
    let big = gzip(&simple_aci("example.com/slow", &"0123456789abcdef".repeat(1 << 16)));
    let (fetch, mut writer) = half_fed_fetch(&env, &big);
    let mut gc = env.cmd(&["image", "gc"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(gc.try_wait().unwrap().is_none(), "gc did not wait for the fetch");
    writer.write_all(&big[big.len() / 2..]).unwrap();
    drop(writer);
    let fetched = fetch.wait_with_output().unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    let gc = gc.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&gc.stderr);
    assert!(gc.status.success(), "{said}");
    assert!(said.contains("image gc: waiting for the rkt commands using the store to finish"), "{said}");
    let id = String::from_utf8_lossy(&fetched.stdout).trim().to_string();
    assert!(env.ok(&["image", "list", "--full"]).contains(&id));
}

/// Runs the shell script `body` in a mount namespace of its own, with a 12 MiB tmpfs at $DISK
/// holding a store with an image of 2 MiB (example.com/fits) and `rkt` using that store; `vars`
/// are given to it. There `out_of_space ARG…` runs rkt, which must fail with one line naming
/// ENOSPC or the reserve rkt keeps free and leave the store as it was, and prints that line.
/// Returns what the script printed.
fn on_a_small_disk(env: &Env, body: &str, vars: &[(&str, &std::path::Path)]) -> String {
    let mut fits = Tar::new();
    fits.manifest(&manifest_json("example.com/fits", "")).dir("rootfs");
    fits.file("rootfs/f", &incompressible(2 << 20, 99));
    let fits = env.write("fits.aci", &fits.finish());
    let disk = env.path("disk");
    std::fs::create_dir(&disk).unwrap();
    let preamble = r#"set -e
mount -t tmpfs -o size=12m tmpfs "$DISK"
rkt() { "$RKT" --dir "$DISK/store" --insecure-options=image "$@"; }
rkt fetch "$FITS" >/dev/null
# Every file and its size but the index's own (its rows are what `image list` shows).
snapshot() { find "$DISK/store" -type f -not -name 'index.sqlite*' -printf '%p %s\n' | sort; }
before=$(snapshot)
out_of_space() {
  if rkt "$@" 2>"$DISK/all"; then echo "rkt $* succeeded" >&2; exit 1; fi
  # Progress lines aside (stderr is no terminal here), one line says what went wrong.
  grep -v -E '^(Downloading|Downloaded|Decompressing|Decompressed|Importing|Imported) ' "$DISK/all" >"$DISK/err" || true
  [ "$(wc -l <"$DISK/err")" = 1 ] || { cat "$DISK/all" >&2; exit 1; }
  # The index may be what meets the full disk first: SQLite says so its own way.
  grep -q -e 'No space left on device' -e "the filesystem is nearly full" -e 'database or disk is full' "$DISK/err" \
    || { cat "$DISK/err" >&2; exit 1; }
  [ "$(snapshot)" = "$before" ] || { echo "the store changed after rkt $*" >&2; snapshot >&2; exit 1; }
  cat "$DISK/err"
}
"#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &format!("{preamble}{body}")])
        .env("DISK", &disk)
        .env("RKT", env!("CARGO_BIN_EXE_rkt"))
        .env("FITS", &fits);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A disk that fills up during a fetch: the import of an image larger than the free space, and
/// the render of one that fits as a blob but not twice, each fail with one line naming the room left
/// and leave the store as it was.
#[test]
fn a_full_disk_leaves_the_store_as_it_was() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let env = Env::new();
    let image = |name: &str, files: u64| {
        let mut t = Tar::new();
        t.manifest(&manifest_json(name, "")).dir("rootfs");
        for i in 0..files {
            t.file(&format!("rootfs/f{i}"), &incompressible(2 << 20, i));
        }
        t.finish()
    };
    let too_big = env.write("too-big.aci", &image("example.com/too-big", 5));
    let twice_too_big = env.write("twice.aci", &image("example.com/twice", 3));
    let body = r#"for aci in "$TOO_BIG" "$TWICE"; do
  out_of_space fetch "$aci" >"$DISK/said"
  echo "$(basename "$aci"): $(cat "$DISK/said")"
done
rkt image list --no-legend --fields=name
"#;
    let stdout = on_a_small_disk(&env, body, &[("TOO_BIG", &too_big), ("TWICE", &twice_too_big)]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("too-big.aci: fetch: "), "{stdout}");
    assert!(lines[1].starts_with("twice.aci: fetch: rendering "), "the render ran out of space: {stdout}");
    assert_eq!(lines[2].trim(), "example.com/fits");
}

/// hostile-inputs row 9: a decompression bomb (64 KiB of gzip that inflate to 64 MiB) is stopped
/// by the reserve rkt keeps free on the store's filesystem, before the disk is full: the error
/// is rkt's, not ENOSPC, and the store is as it was.
#[test]
fn a_decompression_bomb_stops_at_the_reserve() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let env = Env::new();
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/bomb", "")).dir("rootfs").file("rootfs/zeros", &vec![0; 64 << 20]);
    let tar = env.write("bomb.tar", &t.finish());
    let gzipped = std::process::Command::new("gzip").arg("-1").arg(&tar).status().unwrap();
    assert!(gzipped.success());
    let bomb = env.path("bomb.tar.gz");
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20, "a bomb: small when compressed");
    // The same as a gzipped `docker save` archive, which is decompressed into the store's
    // temp area before it is read.
    let layer = Tar::new().file("zeros", &vec![0; 64 << 20]).finish();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", common::oci::sha256(&layer))]}});
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["bomb:1"], "Layers": ["layer.tar"]}]);
    let mut archive = Tar::new();
    archive.file("manifest.json", manifest.to_string().as_bytes());
    archive.file("config.json", config.to_string().as_bytes()).file("layer.tar", &layer);
    let archive = env.write("saved.tar.gz", &gzip(&archive.finish()));
    let body = r#"out_of_space fetch "$BOMB"
out_of_space fetch "docker-archive:$ARCHIVE"
"#;
    let said = on_a_small_disk(&env, body, &[("BOMB", &bomb), ("ARCHIVE", &archive)]);
    assert_eq!(said.lines().count(), 2, "{said}");
    for line in said.lines() {
        assert!(line.contains("the filesystem is nearly full: "), "not ENOSPC: {said}");
        assert!(line.contains("free (1% of it, at most 1 GiB)"), "{said}");
    }
    assert!(said.contains("saved.tar.gz: decompressing the archive: "), "{said}");
}

/// The same for a Docker image converted from an OCI layout: one whose layers do not fit, and
/// one whose layers fit but whose tree then does not (by `rkt fetch`, then by `rkt run`). Either
/// way the conversion is taken back whole (its layers, its image), with one line naming the room left.
#[test]
fn a_full_disk_during_a_conversion_leaves_the_store_as_it_was() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let env = Env::new();
    let mut layout = common::oci::Layout::new(env.path("layout"));
    let layer = |seed: u64| {
        let mut t = Tar::new();
        t.file(&format!("f{seed}"), &incompressible(3 << 19, seed));
        t.finish()
    };
    let layers = |n: u64| (0..n).map(|i| (layer(i), common::oci::TAR, common::oci::plain as fn(&[u8]) -> Vec<u8>));
    layout.image("too-big", &layers(7).collect::<Vec<_>>(), serde_json::json!({}));
    layout.image("twice", &layers(3).collect::<Vec<_>>(), serde_json::json!({}));
    let body = r#"out_of_space fetch "oci:$LAYOUT:too-big" >/dev/null
out_of_space fetch "oci:$LAYOUT:twice" >/dev/null
# rkt run fetches and renders the same way.
out_of_space run "oci:$LAYOUT:twice" >/dev/null
rkt image list --no-legend --fields=name
"#;
    let stdout = on_a_small_disk(&env, body, &[("LAYOUT", &env.path("layout"))]);
    assert_eq!(stdout.trim(), "example.com/fits");
}

/// Parallel CI jobs whose first rkt commands meet on a fresh store all get it: SQLite answers
/// BUSY at once (no busy handler) to two connections turning a new database to WAL together,
/// which failed about one start in a hundred with "database is locked".
#[test]
fn parallel_first_commands_on_a_fresh_store_all_succeed() {
    let env = Env::new();
    for round in 0..30 {
        let store = env.path(&format!("fresh-{round}"));
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_rkt"))
                    .arg("--dir")
                    .arg(&store)
                    .args(["image", "list", "--no-legend"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
