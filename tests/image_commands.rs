//! The image commands as a user types them, against a real store in a temp directory.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

#[test]
fn fetch_prints_ids_and_every_compression_gives_the_same_image() {
    let env = Env::new();
    let tar = simple_aci("example.com/app", "hello");
    let id = image_id(&tar);
    let mut multi = gzip(&tar[..700]);
    multi.extend(gzip(&tar[700..]));
    // zstd frames with skippable frames (metadata, as zstd:chunked and seekable zstd write)
    // before, between and after them.
    let skippable = |magic_low: u8| [&[magic_low, 0x2a, 0x4d, 0x18, 4, 0, 0, 0][..], b"meta"].concat();
    let frames = [skippable(0x50), zstd(&tar[..700]), skippable(0x5e), zstd(&tar[700..]), skippable(0x5f)].concat();
    for (name, bytes) in [
        ("plain.aci", tar.clone()),
        ("gzip.aci", gzip(&tar)),
        ("multi.aci", multi),
        ("bzip2.aci", bzip2(&tar)),
        ("xz.aci", xz(&tar)),
        ("zstd.aci", zstd(&tar)),
        ("frames.aci", frames),
    ] {
        assert_eq!(env.fetch(&bytes, name), id, "{name}");
    }
    let path = env.write("again.aci", &tar);
    let short = env.ok(&["fetch", "--insecure-options=image", path.to_str().unwrap()]);
    assert_eq!(short.trim(), &id[..7 + 32]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["image", "list", "--format=json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["name"], "example.com/app");
    assert_eq!(json[0]["size"], tar.len() as u64);
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let env = Env::new();
    let path = env.write("a.aci", &simple_aci("example.com/a", "a"));
    let store = env.store();
    let rkt = env!("CARGO_BIN_EXE_rkt");
    let before = std::process::Command::new(rkt)
        .args(["--insecure-options=image", "--dir", store.to_str().unwrap(), "fetch", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(before.status.success(), "{}", String::from_utf8_lossy(&before.stderr));
    let after = std::process::Command::new(rkt)
        .args(["fetch", path.to_str().unwrap(), "--insecure-options=image", "--dir", store.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    assert_eq!(before.stdout, after.stdout);
}

/// `run` and `prepare` parse their own flags (per-app flags follow their image); their help
/// comes without root, and names the kinds of image they take.
#[test]
fn run_and_prepare_have_help() {
    let env = Env::new();
    for command in ["run", "prepare"] {
        let help = env.ok(&[command, "--help"]);
        assert!(help.contains(&format!("Usage: rkt {command} [FLAGS] IMAGE")), "{help}");
        assert!(help.contains("docker://") && help.contains("--volume=NAME,kind=host"), "{help}");
        assert_eq!(env.ok(&["help", command]), help, "rkt help {command}");
    }
}

#[test]
fn fetch_without_signature_says_how_to_skip_verification() {
    let env = Env::new();
    let path = env.write("a.aci", &simple_aci("example.com/a", "a"));
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["fetch", path.to_str().unwrap()]);
    assert!(err.contains("a.aci.asc") && err.contains("--insecure-options=image"), "{err}");
    env.write("a.aci.asc", b"not a signature");
    let err = env.fails(&["fetch", path.to_str().unwrap()]);
    assert!(err.contains("unknown entity") && err.contains("rkt trust --prefix example.com/a"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn list_table_fields_sort_and_order() {
    let env = Env::new();
    let b = env.fetch(&simple_aci("example.com/bbb", "1"), "b.aci");
    let a = env.fetch(&simple_aci("example.com/aaa", "2"), "a.aci");
    let table = env.ok(&["image", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID\t") && lines[0].contains("NAME") && lines[0].contains("LAST USED"), "{table}");
    assert!(lines[1].starts_with(&b[..19]) && lines[1].contains("example.com/bbb:1.0.0"), "{table}");
    assert!(lines[2].starts_with(&a[..19]), "{table}");
    let by_name = env.ok(&["image", "list", "--no-legend", "--fields=name", "--sort=name", "--order=desc"]);
    let names: Vec<&str> = by_name.lines().map(str::trim).collect();
    assert_eq!(names, ["example.com/bbb:1.0.0", "example.com/aaa:1.0.0"]);
    let full = env.ok(&["image", "list", "--full", "--no-legend", "--fields=id"]);
    assert_eq!(full.lines().next().unwrap().trim(), b);
    env.fails(&["image", "list", "--fields=bogus"]);
}

#[test]
fn cat_manifest_and_lookup_by_id_prefix_or_name() {
    let env = Env::new();
    let id = env.fetch(&simple_aci("example.com/app", "x"), "a.aci");
    let compact = env.ok(&["image", "cat-manifest", &id[..12]]);
    let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
    assert_eq!(value["name"], "example.com/app");
    assert_eq!(compact.lines().count(), 1);
    let pretty = env.ok(&["image", "cat-manifest", "--pretty-print", "example.com/app:1.0.0"]);
    assert!(pretty.lines().count() > 3);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty).unwrap(), value);
    assert!(env.fails(&["image", "cat-manifest", "sha512-a"]).contains("image ID too short"));
    let other = if id.as_bytes()[7] == b'0' { "sha512-11" } else { "sha512-00" };
    assert!(env.fails(&["image", "cat-manifest", other]).contains("no image IDs found"));
    assert!(env.fails(&["image", "cat-manifest", "example.com/app:2.0.0"]).contains("no image named"));
}

#[test]
fn ambiguous_id_prefix_is_refused() {
    let env = Env::new();
    let mut seen = std::collections::HashMap::new();
    for i in 0..200 {
        let id = env.fetch(&simple_aci("example.com/many", &i.to_string()), &format!("{i}.aci"));
        let prefix = id[..9].to_string();
        if seen.insert(prefix.clone(), id).is_some() {
            assert!(env.fails(&["image", "cat-manifest", &prefix]).contains("ambiguous image ID"));
            return;
        }
    }
    panic!("no two of 200 images share two hex digits");
}

#[test]
fn export_writes_the_bytes_that_hash_to_the_id() {
    let env = Env::new();
    let tar = simple_aci("example.com/app", "x");
    let id = env.fetch(&gzip(&tar), "a.aci");
    let out = env.path("out.aci");
    env.ok(&["image", "export", &id, out.to_str().unwrap()]);
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written, tar);
    assert_eq!(image_id(&written), id);
    assert!(env.fails(&["image", "export", &id, out.to_str().unwrap()]).contains("--overwrite"));
    env.ok(&["image", "export", "--overwrite", &id, out.to_str().unwrap()]);
    // The export fetches again on a machine with nothing else: the same ID.
    let other = Env::new();
    assert_eq!(other.fetch(&written, "copy.aci"), id);
}

#[test]
fn extract_keeps_modes_owners_links_and_times() {
    let env = Env::new();
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/app", ""))
        .dir("rootfs")
        .dir_mode("rootfs/ro", 0o555, 0, 0)
        .file_mode("rootfs/ro/inside", b"data", 0o640, 1234, 5678)
        .file_mode("rootfs/setuid", b"#!", 0o4755, 0, 0)
        .symlink("rootfs/link", "/ro/inside")
        .hardlink("rootfs/hard", "rootfs/ro/inside")
        .raw(Header { name: b"rootfs/fifo", kind: FIFO, mode: 0o600, ..Default::default() })
        .raw(Header { name: b"rootfs/null", kind: CHAR, mode: 0o666, dev: (1, 3), ..Default::default() })
        .pax(&[("SCHILY.xattr.user.origin", b"pax header"), ("path", b"rootfs/with-xattr-and-a-name-longer-than-one-hundred-bytes/................................................................end")])
        .file("rootfs/ignored-short-name", b"xattr");
    let id = env.fetch(&t.finish(), "a.aci");
    let out = env.path("x");
    env.ok(&["image", "extract", &id, out.to_str().unwrap()]);
    assert!(out.join("manifest").is_file());
    let root = out.join("rootfs");
    let inside = root.join("ro/inside").symlink_metadata().unwrap();
    assert_eq!(inside.mode() & 0o7777, 0o640);
    assert_eq!(inside.mtime(), 1_500_000_000);
    assert_eq!(root.join("ro").symlink_metadata().unwrap().mode() & 0o7777, 0o555);
    assert_eq!(root.join("setuid").symlink_metadata().unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::read_link(root.join("link")).unwrap().to_str(), Some("/ro/inside"));
    assert_eq!(root.join("hard").symlink_metadata().unwrap().ino(), inside.ino());
    let long = root.join("with-xattr-and-a-name-longer-than-one-hundred-bytes/................................................................end");
    assert_eq!(std::fs::read(&long).unwrap(), b"xattr");
    assert!(!root.join("ignored-short-name").exists());
    let mut value = vec![0u8; 64];
    let cpath = std::ffi::CString::new(long.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(cpath.as_ptr(), c"user.origin".as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if n >= 0 {
        assert_eq!(&value[..n as usize], b"pax header");
    } else {
        eprintln!("skipping the xattr check: this filesystem has no user xattrs");
    }
    if is_root() {
        assert_eq!((inside.uid(), inside.gid()), (1234, 5678));
        let null = root.join("null").symlink_metadata().unwrap();
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    } else {
        eprintln!("skipping owner and device checks: not root");
    }
    assert!(env.fails(&["image", "extract", &id, out.to_str().unwrap()]).contains("--overwrite"));
    let only = env.path("only");
    env.ok(&["image", "extract", "--rootfs-only", &id, only.to_str().unwrap()]);
    assert!(only.join("ro/inside").is_file() && !only.join("manifest").exists());
    env.ok(&["image", "extract", "--rootfs-only", "--overwrite", &id, only.to_str().unwrap()]);
}

/// A→[B, C], C→[D]: rendered B, D, C, A; an upper image's file hides a lower one's.
#[test]
fn render_follows_appc_dependency_order_and_whitelists() {
    let env = Env::new();
    let layer = |name: &str, deps: &str, files: &[(&str, &str)], whitelist: &str| {
        let mut extra = String::from(r#""labels":[{"name":"version","value":"1"}]"#);
        if !deps.is_empty() {
            extra.push_str(&format!(r#","dependencies":[{deps}]"#));
        }
        if !whitelist.is_empty() {
            extra.push_str(&format!(r#","pathWhitelist":[{whitelist}]"#));
        }
        let mut t = Tar::new();
        t.manifest(&manifest_json(name, &extra)).dir("rootfs");
        for (path, content) in files {
            t.file(&format!("rootfs/{path}"), content.as_bytes());
        }
        t.finish()
    };
    env.fetch(&layer("example.com/d", "", &[("who", "d"), ("only-d", "d"), ("cd", "d")], ""), "d.aci");
    env.fetch(&layer("example.com/b", "", &[("who", "b"), ("only-b", "b"), ("bd", "b")], ""), "b.aci");
    env.fetch(
        &layer("example.com/c", r#"{"imageName":"example.com/d"}"#, &[("cd", "c"), ("only-c", "c")], ""),
        "c.aci",
    );
    let deps =
        r#"{"imageName":"example.com/b","labels":[{"name":"version","value":"1"}]},{"imageName":"example.com/c"}"#;
    let a = env.fetch(&layer("example.com/a", deps, &[("only-a", "a")], ""), "a.aci");
    let out = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &a, out.to_str().unwrap()]);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    // Top-down precedence A, C, D, B: D's `who` beats B's, C's `cd` beats D's.
    assert_eq!(read("who"), "d");
    assert_eq!(read("cd"), "c");
    for (f, v) in [("only-a", "a"), ("only-b", "b"), ("only-c", "c"), ("only-d", "d"), ("bd", "b")] {
        assert_eq!(read(f), v);
    }
    // A whitelist on the top image filters everything below it.
    let w = env.fetch(&layer("example.com/w", deps, &[("only-w", "w")], r#""/only-w","/who","/only-b""#), "w.aci");
    let out = env.path("w");
    env.ok(&["image", "render", "--rootfs-only", &w, out.to_str().unwrap()]);
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["only-b", "only-w", "who"]);
    // Without its dependencies in the store, an image cannot be rendered, and says why.
    // A dependency that cannot be had fails the fetch, and the image is not kept.
    let lonely = env.write("l.aci", &layer("example.com/lonely", r#"{"imageName":"example.com/missing"}"#, &[], ""));
    let err = env.fails(&["fetch", "--insecure-options=image", "--pull-policy=never", lonely.to_str().unwrap()]);
    assert!(err.contains("example.com/missing"), "{err}");
    assert!(!env.ok(&["image", "list"]).contains("example.com/lonely"));
}

#[test]
fn whiteouts_hide_what_lies_below() {
    let env = Env::new();
    let mut base = Tar::new();
    base.manifest(&manifest_json("example.com/base", ""))
        .dir("rootfs")
        .dir("rootfs/etc")
        .file("rootfs/etc/a", b"a")
        .file("rootfs/etc/b", b"b")
        .dir("rootfs/dir")
        .file("rootfs/dir/x", b"x")
        .dir("rootfs/lib")
        .file("rootfs/lib/keep", b"k")
        .dir("rootfs/dir2")
        .file("rootfs/dir2/old", b"old");
    env.fetch(&base.finish(), "base.aci");
    let mut top = Tar::new();
    top.manifest(&manifest_json("example.com/top", r#""dependencies":[{"imageName":"example.com/base"}]"#))
        .dir("rootfs")
        .dir("rootfs/etc")
        .file("rootfs/etc/.wh.a", b"")
        .dir("rootfs/dir")
        .file("rootfs/dir/.wh..wh..opq", b"")
        .file("rootfs/dir/y", b"y")
        .file("rootfs/.wh.lib", b"")
        // Whiteouts hide only what the layers below wrote, not what this one wrote before them.
        .file("rootfs/etc/c", b"c")
        .file("rootfs/etc/.wh.c", b"")
        .dir("rootfs/dir2")
        .file("rootfs/dir2/new", b"new")
        .file("rootfs/dir2/.wh..wh..opq", b"");
    let id = env.fetch(&top.finish(), "top.aci");
    let out = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &id, out.to_str().unwrap()]);
    assert!(!out.join("etc/a").exists());
    assert!(out.join("etc/b").exists());
    assert!(!out.join("dir/x").exists());
    assert!(out.join("dir/y").exists());
    assert!(!out.join("lib").exists());
    assert!(!out.join("etc/.wh.a").exists() && !out.join("dir/.wh..wh..opq").exists());
    assert!(out.join("etc/c").exists());
    assert!(out.join("dir2/new").exists() && !out.join("dir2/old").exists());
}

#[test]
fn rm_by_id_or_name_and_gc_by_last_use() {
    let env = Env::new();
    let a = env.fetch(&simple_aci("example.com/a", "a"), "a.aci");
    let b = env.fetch(&simple_aci("example.com/b", "b"), "b.aci");
    let c = env.fetch(&simple_aci("example.com/c", "c"), "c.aci");
    let out = env.cmd(&["image", "rm", &a[..20], "example.com/a"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("successfully removed aci for image: {a:?}\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 image(s) successfully removed"));
    let out = env.rkt(&["image", "rm", "example.com/nope", &b]);
    assert_eq!(out.status.code(), Some(254));
    assert!(!env.ok(&["image", "list", "--full"]).contains(&b));
    env.ok(&["image", "gc", "--grace-period=24h"]);
    assert!(env.ok(&["image", "list", "--full"]).contains(&c));
    let out = env.cmd(&["image", "gc", "--grace-period=0s"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&c));
    assert_eq!(env.ok(&["image", "list", "--no-legend"]), "");
    let blobs = std::fs::read_dir(env.store().join("cas/blob/sha512"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(blobs, 0);
    assert_eq!(std::fs::read_dir(env.store().join("cas/tree")).unwrap().count(), 0);
}

/// An image unused for longer than the grace period, but a dependency of one used within it
/// (a Docker layer under an image run today, a base shared by an image pulled today), stays.
#[test]
fn gc_keeps_the_dependencies_of_images_in_use() {
    let env = Env::new();
    let base = env.fetch(&simple_aci("example.com/base", "base"), "base.aci");
    let old = env.fetch(&simple_aci("example.com/old", "old"), "old.aci");
    let app = env.fetch(&aci_on("example.com/app", "example.com/base", "app", b"app"), "app.aci");
    env.age_images(&[&base, &old], 2);
    let removed = env.ok(&["image", "gc"]);
    assert!(removed.contains(&old), "{removed}");
    let listed = env.ok(&["image", "list", "--full"]);
    assert!(listed.contains(&base) && listed.contains(&app) && !listed.contains(&old), "{listed}");
    let out = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &app, out.to_str().unwrap()]);
    assert!(out.join("etc/content").exists() && out.join("app").exists());
    if is_root() {
        // A use of the app's tree (here a fetch that finds it rendered) is a use of its base.
        env.age_images(&[], 2);
        env.fetch(&aci_on("example.com/app", "example.com/base", "app", b"app"), "app.aci");
        let listed: serde_json::Value = serde_json::from_str(&env.ok(&["image", "list", "--format=json"])).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        for image in listed.as_array().unwrap() {
            let age = now - image["last_used_time"].as_i64().unwrap();
            assert!(age < 60_000_000_000, "{} not counted as used: {image}", image["name"]);
        }
    }
}

#[test]
fn verify_repairs_trees_reports_corrupt_blobs_and_rebuilds_the_index() {
    if !is_root() {
        eprintln!("skipping: trees are rendered at fetch time only as root");
        return;
    }
    let env = Env::new();
    let id = env.fetch(&simple_aci("example.com/app", "original"), "a.aci");
    let trees: Vec<_> = std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(trees.len(), 1);
    let content = trees[0].join("rootfs/etc/content");
    assert_eq!(std::fs::read_to_string(&content).unwrap(), "original");
    std::fs::write(&content, "tampered").unwrap();
    let err = env.rkt(&["image", "verify", &id]);
    assert!(err.status.success(), "{}", String::from_utf8_lossy(&err.stderr));
    assert!(String::from_utf8_lossy(&err.stderr).contains("rendered again"));
    assert_eq!(std::fs::read_to_string(&content).unwrap(), "original");

    // The index is only an index: without it, verify rebuilds it from the blobs.
    let before = env.ok(&["image", "list", "--full", "--fields=id,name,size"]);
    for f in std::fs::read_dir(env.store().join("cas/db")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert_eq!(env.ok(&["image", "list", "--no-legend"]), "");
    assert!(env.ok(&["image", "verify"]).contains("indexed again"));
    assert_eq!(env.ok(&["image", "list", "--full", "--fields=id,name,size"]), before);

    let blob = env.store().join(format!("cas/blob/sha512/{}/{id}", &id[7..9]));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out = env.rkt(&["image", "verify"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CORRUPT"));
}

#[test]
fn version_and_config() {
    let env = Env::new();
    let v = env.ok(&["version"]);
    assert!(v.starts_with("rkt Version: ") && v.contains("appc Version: 0.8.11"));
    let (system, local) = (env.path("system"), env.path("local"));
    std::fs::create_dir_all(system.join("auth.d")).unwrap();
    std::fs::create_dir_all(local.join("paths.d")).unwrap();
    std::fs::write(
        system.join("auth.d/a.json"),
        r#"{"rktKind":"auth","rktVersion":"v1","domains":["example.com"],"type":"oauth","credentials":{"token":"t"}}"#,
    )
    .unwrap();
    let data = env.path("data-from-paths-d");
    std::fs::write(local.join("paths.d/p.json"), format!(r#"{{"rktKind":"paths","rktVersion":"v1","data":{data:?}}}"#))
        .unwrap();
    let rkt = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkt"))
            .args(["--system-config", system.to_str().unwrap(), "--local-config", local.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let c: serde_json::Value = serde_json::from_str(&rkt(&["config"])).unwrap();
    let entries = c["stage0"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["rktKind"] == "auth" && e["domains"][0] == "example.com"));
    assert!(entries.iter().any(|e| e["rktKind"] == "paths" && e["data"] == data.to_str().unwrap()));
    // paths.d's data is the store when --dir is not given.
    let aci = env.write("a.aci", &simple_aci("example.com/a", "a"));
    rkt(&["fetch", "--insecure-options=image", aci.to_str().unwrap()]);
    assert!(data.join("cas/db/index.sqlite").exists());
    std::fs::write(local.join("paths.d/second.json"), r#"{"rktKind":"paths","rktVersion":"v1"}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkt"))
        .args(["--local-config", local.to_str().unwrap(), "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already defined"));
}
