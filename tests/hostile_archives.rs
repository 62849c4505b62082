//! Every hostile archive of ../shared/reference/hostile-inputs.md row 1, and the malformed ones
//! of the foundation issue: each is refused with one clear line and exit 254, and leaves the
//! store, and a sentinel tree beside it, exactly as they were.

mod common;

use common::*;

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/evil"}"#;

fn base() -> Tar {
    let mut t = Tar::new();
    t.manifest(MANIFEST).dir("rootfs");
    t
}

/// Fetches `bytes` into a store that already holds an image, and checks that the refusal
/// mentions `why` and changes nothing.
fn refused(bytes: &[u8], why: &str) {
    refused_with(bytes, &[why]);
}

/// As `refused`, for inputs where which check notices first depends on the bytes.
fn refused_with(bytes: &[u8], whys: &[&str]) {
    let env = Env::new();
    env.fetch(&simple_aci("example.com/good", "good"), "good.aci");
    let sentinel = env.path("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("passwd"), "untouched").unwrap();
    let store_before = env.snapshot();
    let sentinel_before = Snapshot::of(&sentinel);
    let path = env.write("evil.aci", bytes);
    let err = env.fails(&["fetch", "--insecure-options=image", path.to_str().unwrap()]);
    assert!(whys.iter().any(|why| err.contains(why)), "expected one of {whys:?} in: {err}");
    assert_eq!(env.snapshot(), store_before, "the store changed after: {err}");
    assert_eq!(Snapshot::of(&sentinel), sentinel_before, "the sentinel changed after: {err}");
    let tmp = std::fs::read_dir(env.store().join("cas/tmp")).unwrap().count();
    assert_eq!(tmp, 0, "temp files left behind");
}

fn sentinel_target() -> String {
    // The refused() environment puts the sentinel beside the store; an absolute path to any
    // host directory serves, since nothing may be written through it.
    "/tmp".to_string()
}

#[test]
fn corrupt_gzip() {
    let mut gz = gzip(&simple_aci("example.com/evil", &"x".repeat(10_000)));
    let mid = gz.len() / 2;
    gz[mid] ^= 0x55;
    gz[mid + 1] ^= 0x55;
    // Deflate may decode the damage into other bytes, which the manifest parser then refuses.
    refused_with(&gz, &["bad image archive", "invalid image manifest"]);
}

#[test]
fn gzip_with_a_wrong_checksum() {
    let mut gz = gzip(&simple_aci("example.com/evil", "x"));
    let n = gz.len();
    gz[n - 6] ^= 0xff;
    refused(&gz, "bad image archive");
}

#[test]
fn truncated_tar() {
    let tar = simple_aci("example.com/evil", &"y".repeat(5000));
    refused(&tar[..tar.len() - 3000], "bad image archive");
    refused(&gzip(&tar[..tar.len() - 3000]), "bad image archive");
}

#[test]
fn tar_without_its_end_marker() {
    let mut t = base();
    t.file("rootfs/a", b"a");
    refused(&t.unterminated(), "end-of-archive marker");
}

#[test]
fn truncated_compressed_stream() {
    let gz = gzip(&simple_aci("example.com/evil", &"z".repeat(20_000)));
    refused(&gz[..gz.len() / 2], "bad image archive");
    let zs = zstd(&simple_aci("example.com/evil", &"z".repeat(20_000)));
    refused(&zs[..zs.len() - 4], "bad image archive");
}

#[test]
fn missing_manifest() {
    let mut t = Tar::new();
    t.dir("rootfs").file("rootfs/a", b"a");
    refused(&t.finish(), "missing manifest");
}

#[test]
fn missing_rootfs() {
    let mut t = Tar::new();
    t.manifest(MANIFEST);
    refused(&t.finish(), "missing rootfs");
}

#[test]
fn invalid_manifests() {
    let mut t = Tar::new();
    t.manifest(r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Evil Name"}"#).dir("rootfs");
    refused(&t.finish(), "name \"Evil Name\"");
    let mut t = Tar::new();
    t.manifest("{not json").dir("rootfs");
    refused(&t.finish(), "invalid image manifest");
    let mut t = Tar::new();
    t.manifest(r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","labels":[{"name":"arch","value":"amd64"},{"name":"os","value":"plan9"}]}"#)
        .dir("rootfs");
    refused(&t.finish(), "plan9");
    let mut t = Tar::new();
    t.dir("manifest").dir("rootfs");
    refused(&t.finish(), "manifest is not a regular file");
}

#[test]
fn manifest_over_one_mebibyte() {
    let big = format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","x":"{}"}}"#, "p".repeat(1 << 20));
    let mut t = Tar::new();
    t.manifest(&big).dir("rootfs");
    refused(&gzip(&t.finish()), "over the 1 MiB limit");
}

#[test]
fn dot_dot_entries() {
    let mut t = base();
    t.file("rootfs/../../../escape", b"x");
    refused(&t.finish(), "climbs out");
    let mut t = base();
    t.file("rootfs/a/../../b", b"x");
    refused(&t.finish(), "climbs out");
}

#[test]
fn absolute_entries() {
    let mut t = base();
    t.file("/tmp/escape", b"x");
    refused(&t.finish(), "absolute path");
}

#[test]
fn write_through_an_earlier_symlink() {
    let mut t = base();
    t.symlink("rootfs/link", &sentinel_target()).file("rootfs/link/passwd", b"pwned");
    refused(&t.finish(), "not a directory");
    let mut t = base();
    t.symlink("rootfs/looplink", "../../../etc").dir("rootfs/looplink/init.d");
    refused(&t.finish(), "not a directory");
}

#[test]
fn symlink_chains() {
    let mut t = base();
    t.symlink("rootfs/a", "b").symlink("rootfs/b", "/tmp").file("rootfs/a/x", b"x");
    refused(&t.finish(), "not a directory");
}

#[test]
fn hardlinks_out_of_the_root() {
    let mut t = base();
    t.hardlink("rootfs/hl", "/etc/passwd");
    refused(&t.finish(), "absolute path");
    let mut t = base();
    t.hardlink("rootfs/hl", "rootfs/../../etc/passwd");
    refused(&t.finish(), "climbs out");
    let mut t = base();
    t.hardlink("rootfs/hl", "rootfs/not-there");
    refused(&t.finish(), "not an earlier file");
    let mut t = base();
    t.hardlink("rootfs/hl", "manifest");
    refused(&t.finish(), "not an earlier file");
}

#[test]
fn odd_whiteouts() {
    for name in ["rootfs/.wh..", "rootfs/.wh.", "rootfs/d/.wh..wh.plnk", "rootfs/.wh...", "rootfs/.wh.../x"] {
        let mut t = base();
        t.file(name, b"");
        refused_with(&t.finish(), &["not a valid whiteout", "lies below a whiteout"]);
    }
    let mut t = base();
    t.file("rootfs/.wh.../../x", b"");
    refused(&t.finish(), "climbs out");
}

#[test]
fn entries_outside_the_aci_layout() {
    let mut t = base();
    t.file("etc/passwd", b"x");
    refused(&t.finish(), "an ACI holds only manifest and rootfs/");
    let mut t = base();
    t.file("manifest2", b"x");
    refused(&t.finish(), "an ACI holds only manifest and rootfs/");
}

#[test]
fn duplicate_entries() {
    let mut t = base();
    t.file("rootfs/a", b"1").file("rootfs/a", b"2");
    refused(&t.finish(), "duplicate entry");
    let mut t = Tar::new();
    t.manifest(MANIFEST).manifest(MANIFEST).dir("rootfs");
    refused(&t.finish(), "duplicate entry");
}

/// hostile-inputs.md row 9, very deep directories: a path inside rootfs/ longer than Linux can
/// name (4094 bytes and its `/` and NUL) is refused. Up to that length a chain of directories
/// 2,000 deep, with files below it and below its middle, imports, renders and verifies. (Each
/// entry once cost its ancestors' whole paths hashed: 4.2 s for 4,000 such entries in a release
/// build, and hours for a chain 30,000 deep, a 2 MB download once gzipped.)
#[test]
fn deep_directories() {
    let mut t = base();
    let mut path = "rootfs".to_string();
    let mut middle = String::new();
    while path.len() + "/d/f0000".len() <= "rootfs/".len() + 4094 {
        path.push_str("/d");
        t.dir(&path);
        if middle.is_empty() && path.len() > 2000 {
            middle = path.clone();
        }
    }
    for i in 0..300 {
        t.file(&format!("{path}/f{i:04}"), b"deep");
        t.file(&format!("{middle}/f{i:04}"), b"middle");
    }
    let env = Env::new();
    // Started as a login shell would start it: writing the tree holds a directory open for each
    // level, past 1024.
    let deep = env.write("deep.aci", &t.finish());
    let out = env
        .cmd_with_open_files(&["fetch", "--insecure-options=image", "--full", deep.to_str().unwrap()], 1024)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    env.ok(&["image", "verify", &id]);
    let out = env.path("out");
    env.ok(&["image", "extract", "--rootfs-only", &id, out.to_str().unwrap()]);
    // The deepest file's whole path is longer than PATH_MAX: read it from a directory halfway.
    let halfway = std::fs::File::open(out.join(&middle["rootfs/".len()..])).unwrap();
    assert_eq!(std::fs::read(out.join(&middle["rootfs/".len()..]).join("f0299")).unwrap(), b"middle");
    let rest = &path[middle.len() + 1..];
    let deepest = format!("/proc/self/fd/{}/{rest}/f0299", std::os::fd::AsRawFd::as_raw_fd(&halfway));
    assert_eq!(std::fs::read(deepest).unwrap(), b"deep");
    let exported = env.path("exported.aci");
    env.ok(&["image", "export", &id, exported.to_str().unwrap()]);
    let again = Env::new();
    assert_eq!(again.fetch(&std::fs::read(&exported).unwrap(), "again.aci"), id);
    // An image on top of it is exported squashed: the deep tree is read from the render.
    let top_id = env.fetch(&aci_on("example.com/top", "example.com/evil", "top", b"top"), "top.aci");
    let squashed = env.path("squashed.aci");
    env.ok(&["image", "export", &top_id, squashed.to_str().unwrap()]);
    let squashed_id = again.fetch(&std::fs::read(&squashed).unwrap(), "squashed.aci");
    let out = again.path("out");
    again.ok(&["image", "extract", "--rootfs-only", &squashed_id, out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("top")).unwrap(), b"top");
    let halfway = std::fs::File::open(out.join(&middle["rootfs/".len()..])).unwrap();
    let deepest = format!("/proc/self/fd/{}/{rest}/f0299", std::os::fd::AsRawFd::as_raw_fd(&halfway));
    assert_eq!(std::fs::read(deepest).unwrap(), b"deep");

    let mut t = base();
    t.dir(&format!("{path}/d"));
    t.dir(&format!("{path}/d/too-long"));
    refused(&t.finish(), "more than the 4094 a path inside rootfs/ may have");
}

#[test]
fn unsupported_entry_types() {
    let mut t = base();
    t.raw(Header { name: b"rootfs/sparse", kind: b'S', ..Default::default() });
    refused(&t.finish(), "sparse");
}

#[test]
fn not_an_archive_at_all() {
    refused(b"<html><body>404 Not Found</body></html>", "bad image archive");
    refused(b"", "bad image archive");
}

/// rkt#903: a directory in one layer is a symlink to a host path in another. Rendering never
/// writes through it, whichever layer holds the symlink.
#[test]
fn directory_turned_symlink_across_layers() {
    let env = Env::new();
    let sentinel = env.path("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("passwd"), "untouched").unwrap();
    let before = Snapshot::of(&sentinel);
    let target = sentinel.to_str().unwrap();

    let mut lower = Tar::new();
    lower
        .manifest(&manifest_json("example.com/lower", ""))
        .dir("rootfs")
        .dir("rootfs/etc")
        .file("rootfs/etc/passwd", b"from lower")
        .symlink("rootfs/lib", target);
    env.fetch(&lower.finish(), "lower.aci");
    let mut upper = Tar::new();
    upper
        .manifest(&manifest_json("example.com/upper", r#""dependencies":[{"imageName":"example.com/lower"}]"#))
        .dir("rootfs")
        .symlink("rootfs/etc", target)
        .file("rootfs/lib/passwd", b"from upper");
    let id = env.fetch(&upper.finish(), "upper.aci");
    let out = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &id, out.to_str().unwrap()]);
    assert_eq!(Snapshot::of(&sentinel), before);
    assert!(out.join("etc").symlink_metadata().unwrap().file_type().is_symlink());
    assert!(out.join("lib").symlink_metadata().unwrap().is_dir());
    assert_eq!(std::fs::read_to_string(out.join("lib/passwd")).unwrap(), "from upper");
}

/// hostile-inputs.md row 4 (TARmageddon and kin): where an entry's PAX size and its ustar size
/// disagree, rkt reads the archive as GNU tar does (the PAX size wins), so no entry is seen by
/// one reader and hidden from the other. Each archive hides a tar header in another entry.
#[test]
fn pax_sizes_are_read_as_gnu_tar_reads_them() {
    let hidden = |name: &str| {
        let mut t = Tar::new();
        t.file(name, b"smuggled");
        t.unterminated()
    };
    let mut tail = Tar::new();
    tail.file("rootfs/after", b"after");
    // The PAX size says 1024, the ustar size 0: the hidden header is file data.
    let mut a = base();
    a.pax(&[("size", b"1024")]).raw(Header { name: b"rootfs/a", ..Default::default() });
    let mut longer = a.unterminated();
    longer.extend(hidden("rootfs/smuggled-a"));
    longer.extend(tail.finish());
    // The PAX size says 0, the ustar size 1024: the hidden header is an entry.
    let payload = hidden("rootfs/smuggled-b");
    let mut b = base();
    b.pax(&[("size", b"0")]).raw(Header { name: b"rootfs/b", data: &payload, ..Default::default() });
    let mut shorter = b.unterminated();
    shorter.extend(tail.finish());

    for (case, bytes, smuggled) in [("longer", longer, "smuggled-a"), ("shorter", shorter, "smuggled-b")] {
        let env = Env::new();
        let archive = env.write("x.aci", &bytes);
        let gnu = env.path("gnu");
        std::fs::create_dir(&gnu).unwrap();
        let out = std::process::Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&gnu).output().unwrap();
        assert!(out.status.success(), "GNU tar: {}", String::from_utf8_lossy(&out.stderr));
        let id = env.fetch(&bytes, "y.aci");
        let mine = env.path("mine");
        env.ok(&["image", "extract", "--rootfs-only", &id, mine.to_str().unwrap()]);
        assert_eq!(Snapshot::of(&mine), Snapshot::of(&gnu.join("rootfs")), "{case}");
        assert_eq!(mine.join(smuggled).exists(), case == "shorter", "{case}");
        assert_eq!(std::fs::read(mine.join("after")).unwrap(), b"after", "{case}");
    }
}
