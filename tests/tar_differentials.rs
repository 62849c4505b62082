//! Tar headers that a reader other than Go's archive/tar reads otherwise. Go's reading is what
//! Docker, podman and umoci unpack and appc's tools built; a difference is the parser
//! differential hostile-inputs row 4 warns of. rkt reads such archives as Go does, or refuses
//! them: a directory, link, device or fifo header that gives a size (Go reads no data after
//! it and takes what follows for the next header), a zero block followed by more, names split
//! across prefixes the readers join otherwise, an empty GNU long name; and, at random, layers
//! with damaged headers. Also entries a layer gives twice, which Go's readers apply in turn.

mod common;

use common::oci::*;
use common::*;

/// An entry `x` of each header-only kind, under `top`, whose data are the blocks of a file
/// entry `hidden`, between two files.
fn hiding_entries(top: &str) -> Vec<(&'static str, Tar)> {
    let mut hidden = Tar::new();
    hidden.file(&format!("{top}hidden"), b"only Go reads this");
    let hidden = hidden.unterminated();
    let (after, x) = (format!("{top}after"), format!("{top}x"));
    let kinds: [(&str, u8, &str); 5] = [
        ("directory", DIR, ""),
        ("symlink", SYMLINK, "after"),
        ("hard link", HARDLINK, &after),
        ("fifo", FIFO, ""),
        ("device", CHAR, ""),
    ];
    kinds
        .into_iter()
        .map(|(what, kind, link)| {
            let mut t = Tar::new();
            t.dir(top.trim_end_matches('/')).file(&after, b"after");
            let entry = Header {
                name: x.as_bytes(),
                kind,
                link: link.as_bytes(),
                data: &hidden,
                dev: (1, 3),
                ..Default::default()
            };
            t.raw(entry).file(&format!("{top}last"), b"last");
            (what, t)
        })
        .collect()
}

#[test]
fn header_only_entries_that_claim_data_are_refused() {
    if !tools() {
        return;
    }
    for (what, layer) in hiding_entries("d/") {
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer.finish(), TGZ, gzip)], serde_json::json!({}));
        // What Docker, podman and umoci make of it: a file rkt's tar reader would not see.
        let theirs = umoci_unpack(&env, &layout.dir);
        assert!(theirs.join("d/hidden").exists(), "{what}: umoci sees no hidden file");
        env.ok(&["image", "list"]);
        let before = env.snapshot();
        let err = env.fails(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
        assert!(err.contains(&format!("layer entry \"d/x\": a {what} that claims 1024 bytes of data")), "{err}");
        assert_eq!(env.snapshot(), before, "{what}");
    }
}

#[test]
fn header_only_entries_that_claim_data_are_refused_in_acis_and_archives() {
    let acis = hiding_entries("rootfs/d/");
    let archives = hiding_entries("d/");
    for ((what, mut aci), (_, mut archive)) in acis.into_iter().zip(archives) {
        let env = Env::new();
        env.ok(&["image", "list"]);
        let before = env.snapshot();
        aci.manifest(&manifest_json("example.com/hiding", "")).dir("rootfs");
        let path = env.write("hiding.aci", &aci.finish());
        let err = env.fails(&["fetch", "--insecure-options=image", path.to_str().unwrap()]);
        assert!(err.contains(&format!("entry \"rootfs/d/x\" is a {what} that claims 1024 bytes of data")), "{err}");
        assert_eq!(env.snapshot(), before, "{what}");

        // Around the layers of what `docker save` writes: the archive itself is refused.
        let layer = Tar::new().file("etc/x", b"x").finish();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}});
        let manifest =
            serde_json::json!([{"Config": "config.json", "RepoTags": ["hiding:1"], "Layers": ["layer.tar"]}]);
        archive.file("manifest.json", manifest.to_string().as_bytes());
        archive.file("config.json", config.to_string().as_bytes()).file("layer.tar", &layer);
        let path = env.write("saved.tar", &archive.finish());
        let err = env.fails(&["fetch", "--insecure-options=image", &format!("docker-archive:{}", path.display())]);
        assert!(err.contains(&format!("entry \"d/x\" is a {what} that claims 1024 bytes of data")), "{err}");
        assert_eq!(env.snapshot(), before, "{what}");
    }
}

/// rkt's error, and whether umoci refuses the layer too.
type Refusal<'a> = (&'a str, bool);

/// Sets `bytes` at `at` in the header block `block` and mends its checksum.
fn patch(block: &mut [u8], at: usize, bytes: &[u8]) {
    block[at..at + bytes.len()].copy_from_slice(bytes);
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block[..512].iter().map(|b| u32::from(*b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// `tar`'s entries, then `end` in place of the end-of-archive marker.
fn ending(tar: &Tar, end: &[u8]) -> Vec<u8> {
    [tar.unterminated(), end.to_vec()].concat()
}

/// A file `name` whose header is GNU's (magic `ustar  `), with `times` where GNU keeps access
/// and change times and ustar its path prefix.
fn gnu_file(name: &str, times: &[u8]) -> Vec<u8> {
    let mut t = Tar::new();
    t.file(name, b"gnu");
    let mut bytes = t.unterminated();
    patch(&mut bytes, 257, b"ustar  \0");
    patch(&mut bytes, 345, times);
    bytes
}

#[test]
fn ends_legacy_directories_and_prefixes_read_as_go_reads_them() {
    if !tools() {
        return;
    }
    let mut two = Tar::new();
    two.file("a", b"a");
    let after_one_zero_block = |rest: &[u8]| {
        let mut hidden = Tar::new();
        hidden.file("b", b"after one zero block");
        [two.unterminated(), vec![0; 512], rest.to_vec(), hidden.finish()].concat()
    };
    // A type NUL entry named `d/` (old tars' directories) and a file in it.
    let mut legacy = Tar::new();
    legacy.raw(Header { name: b"d/", kind: 0, mode: 0o750, ..Default::default() }).file("d/x", b"x");
    let mut legacy_with_data = Tar::new();
    let mut hidden = Tar::new();
    hidden.file("d/hidden", b"only Go reads this");
    legacy_with_data.raw(Header { name: b"d/", kind: 0, data: &hidden.unterminated(), ..Default::default() });
    let gnu_text = [gnu_file("name", b"pre\0"), vec![0; 1024]].concat();
    let mut gnu_times = gnu_file("name", b"14000000000\0");
    patch(&mut gnu_times, 357, b"14000000000\0");
    let gnu_times = [gnu_times, vec![0; 1024]].concat();
    // A star header: a prefix of 131 bytes, then its access and change times, and `tar` last.
    let mut star = Tar::new();
    star.file("name", b"star");
    let mut star = star.unterminated();
    patch(&mut star, 345, &[b'p'; 131]);
    patch(&mut star, 476, b"14000000000\x0014000000000\0");
    patch(&mut star, 508, b"tar\0");
    let star = [star, vec![0; 1024]].concat();
    // A ustar magic of another version, with a path prefix: Go reads the prefix.
    let mut other_version = Tar::new();
    other_version.file("name", b"version");
    let mut other_version = other_version.unterminated();
    patch(&mut other_version, 263, b"xx");
    patch(&mut other_version, 345, b"pre\0");
    let other_version = [other_version, vec![0; 1024]].concat();
    // A device number that is not one, on a file: Go reads every numeric field.
    let mut bad_number = Tar::new();
    bad_number.file("name", b"number");
    let mut bad_number = bad_number.unterminated();
    patch(&mut bad_number, 337, b"00000009");
    let bad_number = [bad_number, vec![0; 1024]].concat();
    // An empty GNU long name before a file: Go names the file by its header.
    let mut empty_long = Tar::new();
    empty_long.raw(Header { name: b"././@LongLink", kind: b'L', ..Default::default() }).file("named", b"named");
    let mut empty_long = empty_long.finish();
    patch(&mut empty_long[..512], 257, b"ustar  \0");
    let star_name = format!("a header whose name Go reads as \"{}/name\"", "p".repeat(131));
    // (what, layer, rkt's error and whether umoci refuses the layer too; no error where rkt
    // reads the layer as umoci does).
    let cases: Vec<(&str, Vec<u8>, Option<Refusal>)> = vec![
        ("entries after one zero block", after_one_zero_block(b""), Some(("not a whole end-of-archive marker", true))),
        (
            "a broken block after one zero block",
            ending(&two, &[[0; 512].as_slice(), &[7; 100]].concat()),
            Some(("not a whole end-of-archive marker", true)),
        ),
        ("one zero block, then the end", ending(&two, &[0; 512]), None),
        ("a legacy directory", legacy.finish(), None),
        (
            "a legacy directory that claims data",
            legacy_with_data.finish(),
            Some(("a directory that claims 1024 bytes", false)),
        ),
        ("GNU time fields of text", gnu_text, Some(("a header whose name Go reads as \"pre/name\"", false))),
        ("GNU time fields of numbers", gnu_times, None),
        ("a star prefix of 131 bytes", star, Some((&star_name, false))),
        ("ustar of another version", other_version, Some(("a header whose name Go reads as \"pre/name\"", false))),
        (
            "an empty GNU long name",
            empty_long,
            Some(("an entry whose long name is empty, which Go names \"named\"", false)),
        ),
        ("a device number that is not one", bad_number, Some(("device minor field Go cannot read", true))),
    ];
    for (what, layer, refused) in cases {
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer, TGZ, gzip)], serde_json::json!({}));
        let image = format!("oci:{}:v1", layout.dir.display());
        match refused {
            Some((why, go_refuses)) => {
                assert_eq!(umoci_refuses(&env, &layout.dir), go_refuses, "{what}");
                env.ok(&["image", "list"]);
                let before = env.snapshot();
                let err = env.fails(&["fetch", "--insecure-options=image", &image]);
                assert!(err.contains(why), "{what}: {err}");
                assert_eq!(env.snapshot(), before, "{what}");
            }
            None => {
                let (_, ours) = fetch_and_render(&env, &layout.dir);
                assert_eq!(describe(&ours), describe(&umoci_unpack(&env, &layout.dir)), "{what}");
            }
        }
    }
}

#[test]
fn acis_end_and_name_entries_as_go_reads_them() {
    let aci = |entries: &[u8], end: &[u8]| {
        let mut t = Tar::new();
        t.manifest(&manifest_json("example.com/ends", "")).dir("rootfs");
        [t.unterminated(), entries.to_vec(), end.to_vec()].concat()
    };
    let mut a = Tar::new();
    a.file("rootfs/a", b"a");
    let mut hidden = Tar::new();
    hidden.file("rootfs/b", b"after one zero block");
    let mut legacy = Tar::new();
    legacy.raw(Header { name: b"rootfs/d/", kind: 0, ..Default::default() }).file("rootfs/d/x", b"x");
    let cases = [
        (
            "entries after one zero block",
            aci(&a.unterminated(), &[vec![0; 512], hidden.finish()].concat()),
            Some("not a whole"),
        ),
        ("a broken block after one zero block", aci(&a.unterminated(), &[0; 600]), Some("not a whole")),
        (
            "GNU time fields of text",
            aci(&gnu_file("x", b"rootfs\0"), &[0; 1024]),
            Some("a header whose name Go reads as \"rootfs/x\""),
        ),
        ("a legacy directory", aci(&legacy.unterminated(), &[0; 1024]), None),
        ("one zero block, then the end", aci(&a.unterminated(), &[0; 512]), None),
    ];
    for (what, bytes, refused) in cases {
        let env = Env::new();
        env.ok(&["image", "list"]);
        let before = env.snapshot();
        let path = env.write("image.aci", &bytes);
        match refused {
            Some(why) => {
                let err = env.fails(&["fetch", "--insecure-options=image", path.to_str().unwrap()]);
                assert!(err.contains(why), "{what}: {err}");
                assert_eq!(env.snapshot(), before, "{what}");
            }
            None => {
                let id = env.ok(&["fetch", "--insecure-options=image", "--full", path.to_str().unwrap()]);
                let out = env.path("out");
                env.ok(&["image", "extract", "--rootfs-only", id.trim(), out.to_str().unwrap()]);
                if what.contains("legacy") {
                    assert!(out.join("d").is_dir() && out.join("d/x").is_file(), "{what}");
                }
            }
        }
    }
}

/// Entries given twice in one layer (by a tool that adds each file's parent directories, a
/// tarball made of `etc etc/ssl`, `tar -r` of a changed file): the same tree as umoci's, which
/// applies each entry in turn. Alike repeats are left out; a layer with a repeat that differs
/// is converted again keeping each path's last entry, from a layout as from a registry.
#[test]
fn entries_given_twice_end_as_umoci_leaves_them() {
    if !tools() {
        return;
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let long = format!("d/{}", "long-name-".repeat(12));
    let with_xattr = |t: &mut Tar| {
        t.pax(&[("SCHILY.xattr.user.k", b"v")]).file("d/x", b"x");
    };
    let mut alike = Tar::new();
    alike.dir_mode("d", 0o750, 7, 8).file("d/a", b"a").dir("d/e").file("d/e/x", b"x").file("d/big", &big);
    alike.symlink("d/s", "a").hardlink("d/h", "d/a").file(&long, b"long");
    with_xattr(&mut alike);
    alike.raw(Header { name: b"d/fifo", kind: FIFO, ..Default::default() });
    alike.dir_mode("d", 0o750, 7, 8).dir("d/e").file("d/b", b"b").file("d/big", &big).symlink("d/s", "a");
    alike.hardlink("d/h", "d/a").file(&long, b"long").raw(Header { name: b"d/fifo", kind: FIFO, ..Default::default() });
    with_xattr(&mut alike);
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(alike.finish(), TGZ, gzip)], serde_json::json!({}));
    let theirs = describe(&umoci_unpack(&env, &layout.dir));
    let (id, ours) = fetch_and_render(&env, &layout.dir);
    assert_eq!(describe(&ours), theirs);
    assert!(theirs.0.keys().any(|k| k.contains("d/e/x")), "{theirs:?}");
    let (_other, _, again) = exported_and_rendered(&env, &id);
    assert_eq!(describe(&again), theirs, "the exported ACI holds each entry once");

    let unlike = |second: &dyn Fn(&mut Tar)| {
        let mut t = Tar::new();
        t.dir_mode("d", 0o750, 7, 8).file("d/a", b"a").symlink("d/s", "a").dir("d/p").file("d/p/x", b"x");
        second(&mut t);
        t.file("d/last", b"last").finish()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a directory of another mode", unlike(&|t| _ = t.dir_mode("d", 0o700, 7, 8))),
        ("a file of other bytes", unlike(&|t| _ = t.file("d/a", b"b"))),
        ("a file of another mode", unlike(&|t| _ = t.file_mode("d/a", b"a", 0o600, 0, 0))),
        ("a symlink elsewhere", unlike(&|t| _ = t.symlink("d/s", "b"))),
        ("a file where a symlink was", unlike(&|t| _ = t.file("d/s", b"a"))),
        ("a directory replaced by a file", unlike(&|t| _ = t.file("d/p", b"p"))),
        ("a directory replaced by a symlink", unlike(&|t| _ = t.symlink("d/p", "a"))),
        ("a file, a directory again", unlike(&|t| _ = t.file("d/p", b"p").dir("d/p").file("d/p/y", b"y"))),
        ("a file replaced by a directory", unlike(&|t| _ = t.dir("d/a").file("d/a/y", b"y"))),
        ("the same file thrice", unlike(&|t| _ = t.file("d/a", b"b").file("d/a", b"c").file("d/a", b"b"))),
    ];
    let Some(registry) = common::registry::Registry::start(&env.path("registry")) else { return };
    for (what, layer) in cases {
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer, TGZ, gzip)], serde_json::json!({}));
        let theirs = describe(&umoci_unpack(&env, &layout.dir));
        let (_, ours) = fetch_and_render(&env, &layout.dir);
        assert_eq!(describe(&ours), theirs, "{what}");
        // From a registry: the blob is downloaded until the repeat, then whole once more, and
        // kept for the last pass.
        let name = format!("twice/{}:v1", what.replace(' ', "-").replace(',', ""));
        registry.push(&format!("oci:{}:v1", layout.dir.display()), &name);
        let pulled = Env::new();
        let image = format!("docker://{}/{name}", registry.addr);
        let before = registry.blob_requests();
        let id = pulled.ok(&["--insecure-options=image,http", "fetch", "--full", &image]).trim().to_string();
        assert_eq!(registry.blob_requests() - before, 3, "{what}: the config and the layer twice");
        let left: Vec<_> = std::fs::read_dir(pulled.store().join("cas/tmp")).unwrap().collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        let tree = pulled.path("tree");
        pulled.ok(&["image", "render", "--rootfs-only", &id, tree.to_str().unwrap()]);
        assert_eq!(describe(&tree), theirs, "{what}, from the registry");
    }

    // A hard link keeps the first file, where the ACI can hold only the last: refused.
    let linked = unlike(&|t| _ = t.hardlink("d/h", "d/a").file("d/a", b"a"));
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(linked, TGZ, gzip)], serde_json::json!({}));
    assert!(!umoci_refuses(&env, &layout.dir), "umoci makes the link and the file two inodes");
    env.ok(&["image", "list"]);
    let before = env.snapshot();
    let err = env.fails(&["fetch", "--insecure-options=image", &format!("oci:{}:v1", layout.dir.display())]);
    assert!(err.contains("which is not an earlier file"), "{err}");
    assert_eq!(env.snapshot(), before);
}

/// One entry that Go's reader and a plainer one may read apart: a header-only entry that
/// claims the blocks of a hidden entry as its data, a name split across a prefix in each of
/// the header formats, an old tar's directory, a zero block amid the entries, a GNU long name
/// that is empty (or another entry's blocks).
fn tricky_entry(rng: &mut Rng, n: usize) -> Vec<u8> {
    let name = format!("e{n}");
    let mut hidden = Tar::new();
    hidden.file(&format!("hidden{n}"), b"hidden");
    let hidden = hidden.unterminated();
    let claimed: &[u8] = if rng.below(2) == 0 { &hidden } else { b"" };
    let mut t = Tar::new();
    match rng.below(6) {
        0 => {
            let kind = rng.pick(&[DIR, SYMLINK, FIFO, 0]);
            let name = if kind == 0 { format!("{name}/") } else { name };
            t.raw(Header { name: name.as_bytes(), kind, link: b"target", data: claimed, ..Default::default() });
        }
        1 | 2 => {
            t.file(&name, b"content");
            let mut bytes = t.unterminated();
            let prefix: Vec<u8> = match rng.below(3) {
                0 => b"pre\0".to_vec(),
                1 => vec![b'p'; 131],
                _ => b"\0".to_vec(),
            };
            patch(&mut bytes, 345, &prefix);
            let magic: &[u8] = rng.pick(&[b"ustar\x0000".as_slice(), b"ustar\0xx", b"ustar  \0", b"\0\0\0\0\0\0\0\0"]);
            patch(&mut bytes, 257, magic);
            if rng.below(2) == 0 {
                patch(&mut bytes, 476, b"14000000000\x0014000000000\0");
                patch(&mut bytes, 508, b"tar\0");
            }
            return bytes;
        }
        3 => {
            t.file(&name, b"content");
            return [t.unterminated(), vec![0; 512]].concat();
        }
        4 => {
            t.raw(Header { name: b"././@LongLink", kind: b'L', data: claimed, ..Default::default() }).file(&name, b"x");
            let mut bytes = t.unterminated();
            patch(&mut bytes[..512], 257, b"ustar  \0");
            return bytes;
        }
        _ => {
            t.file(&name, b"plain");
        }
    }
    t.unterminated()
}

/// A layer of the entries most archives hold, a PAX path and a GNU long name among them.
fn plain_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("dir").file("dir/file", &b"hello world\n".repeat(10)).symlink("dir/link", "file");
    t.hardlink("dir/hard", "dir/file");
    t.pax(&[("path", format!("dir/{}", "long".repeat(30)).as_bytes()), ("mtime", b"1600000000.5")]);
    t.file("placeholder", b"pax");
    let long = format!("dir/{}", "g".repeat(120));
    let mut gnu = Tar::new();
    gnu.raw(Header { name: b"././@LongLink", kind: b'L', data: format!("{long}\0").as_bytes(), ..Default::default() });
    gnu.file("short", b"gnu");
    let mut gnu = gnu.unterminated();
    patch(&mut gnu[..512], 257, b"ustar  \0");
    patch(&mut gnu[1024..1536], 257, b"ustar  \0");
    [t.unterminated(), gnu, Tar::new().file("dir/last", b"last").finish()].concat()
}

/// The header blocks of a tar, as a reader that trusts every size would find them.
fn header_offsets(tar: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        out.push(at);
        let text = std::str::from_utf8(&tar[at + 124..at + 135]).unwrap_or("0");
        let size = u64::from_str_radix(text.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap_or(0);
        let size = if b"123456".contains(&tar[at + 156]) { 0 } else { size as usize };
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// Changes a few header fields of `tar` at random (then mends most checksums), or a byte of
/// a record, or doubles or drops a block.
fn mutated(tar: &[u8], rng: &mut Rng) -> Vec<u8> {
    const FIELDS: [(usize, usize); 13] = [
        (0, 100),
        (100, 8),
        (108, 8),
        (116, 8),
        (124, 12),
        (136, 12),
        (156, 1),
        (157, 100),
        (257, 6),
        (263, 2),
        (329, 8),
        (337, 8),
        (345, 155),
    ];
    let mut out = tar.to_vec();
    let headers = header_offsets(tar);
    for _ in 0..1 + rng.below(3) {
        let at = rng.pick(&headers);
        let (start, len) = rng.pick(&FIELDS);
        let field = &mut out[at + start..at + start + len];
        match rng.below(4) {
            0 => field[rng.below(len)] = rng.next() as u8,
            1 => field[rng.below(len)] = rng.pick(b"0123456789 \0/.x7"),
            2 => field.fill(rng.pick(&[0, b' ', b'7'])),
            _ => field.iter_mut().for_each(|b| *b = rng.next() as u8),
        }
        if rng.below(20) != 0 {
            patch(&mut out[at..at + 512], 148, b"");
        }
    }
    let blocks = out.len() / 512;
    match rng.below(10) {
        0 | 1 => {
            let i = rng.below(out.len());
            out[i] = rng.pick(b"0123456789 =\n/.abx\0");
        }
        2 => {
            let at = rng.below(blocks) * 512;
            let block = out[at..at + 512].to_vec();
            out.splice(at..at, block);
        }
        3 => {
            let at = rng.below(blocks) * 512;
            out.drain(at..at + 512);
        }
        _ => {}
    }
    out
}

/// Layers with header fields changed at random, and layers of entries that readers part ways
/// on: whatever both umoci and rkt take, they must make the same tree of (a file the two place
/// or fill differently is a parser differential).
#[test]
fn damaged_headers_read_alike_or_are_refused() {
    if !tools() {
        return;
    }
    let (mut both, mut neither) = (0, 0);
    for seed in 1..=120u64 {
        let mut rng = Rng(seed);
        let layer = match seed % 2 {
            0 => mutated(&plain_layer(), &mut rng),
            _ => {
                let entries: Vec<Vec<u8>> = (0..2 + rng.below(4)).map(|n| tricky_entry(&mut rng, n)).collect();
                [entries.concat(), vec![0; 1024]].concat()
            }
        };
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &[(layer, TGZ, gzip)], serde_json::json!({}));
        let image = format!("oci:{}:v1", layout.dir.display());
        let fetched = env.rkt(&["fetch", "--insecure-options=image", "--full", &image]);
        if umoci_refuses(&env, &layout.dir) || !fetched.status.success() {
            neither += 1;
            continue;
        }
        both += 1;
        let id = String::from_utf8(fetched.stdout).unwrap();
        let ours = env.path("ours");
        env.ok(&["image", "render", "--rootfs-only", id.trim(), ours.to_str().unwrap()]);
        let theirs = env.path("umoci-bundle/rootfs");
        let (mut ours, mut theirs) = (describe(&ours), describe(&theirs));
        // umoci keeps times as nanoseconds since 1970, which overflow after 2262.
        let overflowed: Vec<String> =
            theirs.0.iter().filter(|(_, v)| v.contains(" t-")).map(|(k, _)| k.clone()).collect();
        for path in overflowed {
            ours.0.remove(&path);
            theirs.0.remove(&path);
        }
        assert_eq!(ours, theirs, "seed {seed}");
    }
    assert!(both > 10 && neither > 10, "both took {both}, one refused {neither}");
}
