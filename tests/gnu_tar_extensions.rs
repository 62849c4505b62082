//! What GNU tar writes beyond ustar, read as Go's archive/tar reads it (Go's reading is what
//! Docker, podman and umoci unpack; a difference is the parser differential hostile-inputs
//! row 4 warns of).
//!
//! Sparse files (PAX formats 0.0, 0.1 and 1.0): Go reads such an entry as the whole file at
//! the name its records give. In a layer, rkt must render the same, and refuse what Go
//! refuses; an ACI, kept as it came, may not hold one.
//!
//! Times before 1970 and after 2242, which ustar's octal field cannot hold: GNU tar writes them
//! in base 256 (its own formats) or as a PAX `mtime` record.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::oci::*;
use common::*;

/// Files with holes: in the middle, at the start, at the end, nothing but a hole, none.
fn files_with_holes(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let file = |name: &str, len: u64, parts: &[(u64, &[u8])]| {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_len(len).unwrap();
        for (at, data) in parts {
            f.write_at(data, *at).unwrap();
        }
    };
    file("middle", 3 << 20, &[(0, b"start"), (1 << 20, b"middle"), ((3 << 20) - 3, b"end")]);
    file("start", 2 << 20, &[((2 << 20) - 100, &[7u8; 100])]);
    file("end", 2 << 20, &[(0, &[9u8; 5000])]);
    file("hole", 1 << 20, &[]);
    file("dense", 10, &[(0, b"0123456789")]);
}

#[test]
fn sparse_files_gnu_tar_writes_render_as_umoci_unpacks_them() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let mut layers: Vec<LayerSpec> = Vec::new();
    for version in ["0.0", "0.1", "1.0"] {
        let dir = env.path(&format!("src-{version}"));
        files_with_holes(&dir.join(format!("v{version}")));
        let tar = env.path(&format!("{version}.tar"));
        let out = Command::new("tar")
            .args(["--sparse", &format!("--sparse-version={version}"), "--format=pax", "-C"])
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .arg(format!("v{version}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&tar).unwrap();
        // Sparse entries indeed: the archive is much smaller than the files.
        assert!(bytes.len() < 100_000 && bytes.windows(11).any(|w| w == b"GNU.sparse."), "{version}");
        layers.push((bytes, TGZ, gzip));
    }
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &layers, serde_json::json!({}));
    let (id, ours) = fetch_and_render(&env, &layout.dir);
    let theirs = umoci_unpack(&env, &layout.dir);
    assert_eq!(describe(&ours), describe(&theirs));
    for version in ["0.0", "0.1", "1.0"] {
        let source = env.path(&format!("src-{version}/v{version}"));
        for name in ["middle", "start", "end", "hole", "dense"] {
            let rendered = std::fs::read(ours.join(format!("v{version}/{name}"))).unwrap();
            assert!(rendered == std::fs::read(source.join(name)).unwrap(), "{version}/{name}");
        }
    }
    let trees: Vec<_> = std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(describe(&trees[0].join("rootfs")), describe(&theirs), "the tree store's tree");
    // The image exported carries the files whole: another store reads it without sparse maps.
    let (_other, _, again) = exported_and_rendered(&env, &id);
    assert_eq!(describe(&again), describe(&theirs));
}

/// A layer of one GNU sparse entry `d/f` (its header names it `d/GNUSparseFile.1/f`, as GNU
/// tar does) with these PAX records and stored data, beside a plain file.
fn sparse_layer(records: &[(&str, &[u8])], data: &[u8]) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("d").file("d/plain", b"plain");
    t.pax(records);
    t.raw(Header { name: b"d/GNUSparseFile.1/f", data, ..Default::default() });
    t.finish()
}

/// A 1.0 map (count, then offset and length per region, a line each) in whole blocks, and
/// the data after it.
fn map_1x0(regions: &[(u64, u64)], data: &[u8]) -> Vec<u8> {
    let mut map = format!("{}\n", regions.len());
    for (offset, length) in regions {
        map.push_str(&format!("{offset}\n{length}\n"));
    }
    let mut out = map.into_bytes();
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(data);
    out
}

const V1: [(&str, &[u8]); 3] = [("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0"), ("GNU.sparse.name", b"d/f")];

#[test]
fn sparse_maps_go_refuses_are_refused_and_the_rest_read_alike() {
    if !tools() {
        return;
    }
    let with = |extra: &[(&'static str, &'static [u8])]| -> Vec<(&'static str, &'static [u8])> {
        V1.iter().chain(extra).copied().collect()
    };
    let big_map: Vec<(u64, u64)> = vec![(0, 0); 300_000];
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "1.0, regions overlapping",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"2048")]), &map_1x0(&[(0, 512), (256, 512)], &[1; 1024])),
        ),
        (
            "1.0, a region past the end",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"600")]), &map_1x0(&[(0, 1024)], &[1; 1024])),
        ),
        (
            "1.0, data the map leaves out",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"4096")]), &map_1x0(&[(0, 512)], &[1; 1024])),
        ),
        (
            "1.0, data the map wants and the entry lacks",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"4096")]), &map_1x0(&[(0, 2048)], &[1; 1024])),
        ),
        ("1.0, a map over 1 MiB", sparse_layer(&with(&[("GNU.sparse.realsize", b"4096")]), &map_1x0(&big_map, b""))),
        (
            "1.0, a map that is not numbers",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"4096")]), &[b"1\nx\n0\n".as_slice(), &[0; 506]].concat()),
        ),
        (
            "0.1, fewer regions than it says",
            sparse_layer(
                &[("GNU.sparse.numblocks", b"2"), ("GNU.sparse.map", b"0,512"), ("GNU.sparse.size", b"1024")],
                &[1; 512],
            ),
        ),
        (
            "0.1, a negative offset",
            sparse_layer(
                &[("GNU.sparse.numblocks", b"1"), ("GNU.sparse.map", b"-512,512"), ("GNU.sparse.size", b"1024")],
                &[1; 512],
            ),
        ),
        (
            "0.0, numbytes before offset",
            sparse_layer(
                &[
                    ("GNU.sparse.size", b"1024"),
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.numbytes", b"512"),
                    ("GNU.sparse.offset", b"0"),
                ],
                &[1; 512],
            ),
        ),
        (
            "a version Go does not know",
            sparse_layer(
                &[("GNU.sparse.major", b"2"), ("GNU.sparse.minor", b"0"), ("GNU.sparse.name", b"d/f")],
                &[1; 512],
            ),
        ),
        ("a size that is not a number", sparse_layer(&with(&[("GNU.sparse.realsize", b"lots")]), &map_1x0(&[], b""))),
    ];
    for (what, layer) in refused {
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer, TGZ, gzip)], serde_json::json!({}));
        // Go since CVE-2025-58183 refuses a 1.0 map over 1 MiB; Debian 12's umoci, built before,
        // reads it whole.
        let newer_go_only = what.contains("over 1 MiB");
        // The tar reader rkt uses (astral-tokio-tar) refuses sparse records of a version it
        // does not know; Go reads the entry as a plain file at its header's name.
        let go_takes = newer_go_only || what.contains("does not know");
        assert!(go_takes || umoci_refuses(&env, &layout.dir), "{what}: umoci took it");
        env.ok(&["image", "list"]);
        let before = env.snapshot();
        let err = env.fails(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
        assert!(err.contains("sparse"), "{what}: {err}");
        assert_eq!(env.snapshot(), before, "{what}");
    }

    // What Go takes, rkt takes, and both make the same tree of it.
    let mut data = vec![1u8; 512];
    data.extend_from_slice(&[2; 100]);
    let taken: Vec<(&str, Vec<u8>)> = vec![
        (
            "1.0",
            sparse_layer(&with(&[("GNU.sparse.realsize", b"70000")]), &map_1x0(&[(1000, 512), (69900, 100)], &data)),
        ),
        (
            "0.1",
            sparse_layer(
                &[
                    ("GNU.sparse.numblocks", b"2"),
                    ("GNU.sparse.map", b"0,512,+5000,100"),
                    ("GNU.sparse.size", b"9000"),
                    ("GNU.sparse.name", b"d/f"),
                ],
                &data,
            ),
        ),
        (
            "0.0, named by its header",
            sparse_layer(
                &[
                    ("GNU.sparse.size", b"9000"),
                    ("GNU.sparse.numblocks", b"2"),
                    ("GNU.sparse.offset", b"0"),
                    ("GNU.sparse.numbytes", b"512"),
                    ("GNU.sparse.offset", b"8000"),
                    ("GNU.sparse.numbytes", b"100"),
                ],
                &data,
            ),
        ),
        ("1.0 without a size: the data's own", sparse_layer(&V1, &map_1x0(&[(0, 612)], &data))),
    ];
    for (what, layer) in taken {
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer, TGZ, gzip)], serde_json::json!({}));
        let (_, ours) = fetch_and_render(&env, &layout.dir);
        assert_eq!(describe(&ours), describe(&umoci_unpack(&env, &layout.dir)), "{what}");
    }
}

/// A sparse file a later entry of the layer gives again: the layer ends with the later one, as
/// umoci leaves it, and the sparse map is read all the same (Go reads every entry's): one Go
/// refuses makes the layer refused.
#[test]
fn a_sparse_file_given_again_is_read_through() {
    if !tools() {
        return;
    }
    // `d/a` given again first: the sparse entry comes after the first pass has stopped, and
    // only the pass that keeps the last entries reads it.
    let with_later = |records: &[(&str, &[u8])], data: &[u8]| {
        let mut t = Tar::new();
        t.dir("d").file("d/a", b"first").file("d/a", b"second").file("d/plain", b"plain");
        t.pax(records);
        t.raw(Header { name: b"d/GNUSparseFile.1/f", data, ..Default::default() });
        t.file("d/f", b"the later file").finish()
    };
    let records: Vec<(&str, &[u8])> = V1.iter().copied().chain([("GNU.sparse.realsize", b"2048".as_slice())]).collect();
    let good = with_later(&records, &map_1x0(&[(0, 512), (1536, 512)], &[1; 1024]));
    // Data the map leaves out: found only by reading the entry through.
    let left_out = with_later(&records, &map_1x0(&[(0, 512)], &[1; 1024]));

    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(good, TGZ, gzip)], serde_json::json!({}));
    let (_, ours) = fetch_and_render(&env, &layout.dir);
    let theirs = describe(&umoci_unpack(&env, &layout.dir));
    assert_eq!(describe(&ours), theirs);
    assert_eq!(std::fs::read(ours.join("d/f")).unwrap(), b"the later file");

    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(left_out, TGZ, gzip)], serde_json::json!({}));
    assert!(umoci_refuses(&env, &layout.dir), "umoci took a map that leaves data out");
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
    assert!(err.contains("sparse"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn an_aci_may_not_hold_a_sparse_file() {
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/sparse", "")).dir("rootfs");
    t.pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0"), ("GNU.sparse.name", b"rootfs/f")]);
    t.raw(Header { name: b"rootfs/GNUSparseFile.1/f", data: &map_1x0(&[(0, 5)], b"hello"), ..Default::default() });
    let env = Env::new();
    let aci = env.write("sparse.aci", &t.finish());
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["fetch", "--insecure-options=image", aci.to_str().unwrap()]);
    assert!(err.contains("\"rootfs/GNUSparseFile.1/f\" is a GNU tar sparse file"), "{err}");
    assert_eq!(env.snapshot(), before);
}

/// Files dated 1960, 2100 and 2300, in GNU tar's own format and in PAX.
#[test]
fn times_before_1970_and_after_2242_are_kept() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let times = [("old", -315_619_200i64), ("recent", 4_102_444_800), ("far", 10_413_792_000)];
    let mut layers: Vec<LayerSpec> = Vec::new();
    for format in ["gnu", "posix"] {
        let dir = env.path(&format!("src-{format}"));
        std::fs::create_dir_all(dir.join(format)).unwrap();
        for (name, time) in times {
            let path = dir.join(format).join(name);
            std::fs::write(&path, name).unwrap();
            let seconds = std::time::Duration::from_secs(time.unsigned_abs());
            let when = match time < 0 {
                true => std::time::UNIX_EPOCH.checked_sub(seconds),
                false => std::time::UNIX_EPOCH.checked_add(seconds),
            };
            let when = when.unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        }
        let tar = env.path(&format!("{format}.tar"));
        let out = Command::new("tar")
            .args([&format!("--format={format}"), "-C"])
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .arg(format)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        layers.push((std::fs::read(&tar).unwrap(), TGZ, gzip));
    }
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &layers, serde_json::json!({}));
    let (id, ours) = fetch_and_render(&env, &layout.dir);
    let theirs = umoci_unpack(&env, &layout.dir);
    let (_other, _, again) = exported_and_rendered(&env, &id);
    let trees: Vec<_> = std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
    for format in ["gnu", "posix"] {
        for (name, time) in times {
            let at = |root: &Path| std::fs::symlink_metadata(root.join(format).join(name)).unwrap().mtime();
            assert_eq!(at(&ours), time, "{format}/{name}");
            assert_eq!(at(&trees[0].join("rootfs")), time, "{format}/{name} in the tree store");
            assert_eq!(at(&again), time, "{format}/{name} exported and fetched again");
            // umoci keeps times in nanoseconds since 1970, which overflow after 2262.
            if time < 9_000_000_000 {
                assert_eq!(at(&theirs), time, "{format}/{name} by umoci");
            }
        }
    }
}
