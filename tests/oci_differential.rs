//! Images of random layers, each rendered by rkt and unpacked by Debian's umoci: the two trees
//! must be the same, entry for entry. The layers do what image builders' layers do: add files,
//! directories, symlinks, hard links, fifos and devices, change a directory's mode, replace an
//! entry of a lower layer by one of another type, white out lower entries and make directories
//! opaque, and give the root new metadata with a root entry, first or late. They keep to what
//! every tool reads alike: no entry twice in a layer, a whiteout only for what lies below, a
//! hard link only to a file of its own layer, no entry written through a symlink. An image may
//! list its first layer twice. The same images with one layer damaged must be taken whole or
//! refused cleanly.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::oci::*;
use common::*;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
    Link,
}

/// The tree the layers so far make, by path ("" is the root), and the layer being written.
#[derive(Clone)]
struct FileEntry {
    path: String,
    data: String,
    mode: u32,
    owner: u32,
    mtime: u64,
    xattr: Option<String>,
}

struct Builder {
    rng: Rng,
    tree: BTreeMap<String, Kind>,
    names: usize,
    /// Paths this layer has written: never written again (but for a directory given again
    /// alike), whited out or replaced in it.
    touched: BTreeSet<String>,
    /// Files this layer has added, for its hard links.
    new_files: Vec<String>,
    /// Directories this layer has written, with their mode and owner, to be given again.
    new_dirs: Vec<(String, u32, u32)>,
    /// Files this layer has written, as written, and those hard links point to: the others may
    /// be given again.
    new_file_entries: Vec<FileEntry>,
    linked: BTreeSet<String>,
    /// What the layer's tar lists, as a readable line each, should the trees differ.
    listing: Vec<String>,
    tar: Tar,
    /// How this layer spells its names: `n1`, `./n1` (`tar -C dir .`) or `/n1` (`umoci insert`).
    prefix: &'static str,
}

const MODES_DIR: [u32; 5] = [0o755, 0o750, 0o700, 0o1777, 0o2775];
const MODES_FILE: [u32; 6] = [0o644, 0o600, 0o755, 0o4755, 0o640, 0o2711];
const OWNERS: [u32; 3] = [0, 1000, 33];

impl Builder {
    fn fresh_name(&mut self) -> String {
        self.names += 1;
        format!("n{}", self.names)
    }

    fn join(dir: &str, name: &str) -> String {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    }

    /// A directory new entries may go into.
    fn some_dir(&mut self) -> String {
        let dirs: Vec<String> = self.tree.iter().filter(|(_, k)| **k == Kind::Dir).map(|(p, _)| p.clone()).collect();
        dirs[self.rng.below(dirs.len())].clone()
    }

    /// An entry of the layers below that this layer has not touched, nor anything under it.
    fn some_lower(&mut self, kind: Option<Kind>) -> Option<String> {
        let lower: Vec<String> = self
            .tree
            .iter()
            .filter(|(p, k)| !p.is_empty() && kind.is_none_or(|want| **k == want))
            .filter(|(p, _)| {
                let under = format!("{p}/");
                !self.touched.iter().any(|t| t == *p || t.starts_with(&under))
            })
            .map(|(p, _)| p.clone())
            .collect();
        (!lower.is_empty()).then(|| lower[self.rng.below(lower.len())].clone())
    }

    fn remove_below(&mut self, path: &str) {
        let under = format!("{path}/");
        self.tree.retain(|p, _| !p.starts_with(&under));
    }

    fn spelled(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    fn dir(&mut self, path: &str) {
        let (mode, owner) = (self.rng.pick(&MODES_DIR), self.rng.pick(&OWNERS));
        let slash = if self.rng.below(2) == 0 { "/" } else { "" };
        let name = format!("{}{slash}", self.spelled(path));
        self.tar.dir_mode(&name, mode, owner, owner);
        self.listing.push(format!("dir {path} {mode:o} {owner}"));
        self.tree.insert(path.to_string(), Kind::Dir);
        self.touched.insert(path.to_string());
        self.new_dirs.push((path.to_string(), mode, owner));
    }

    fn file(&mut self, path: &str) {
        let (mode, owner) = (self.rng.pick(&MODES_FILE), self.rng.pick(&OWNERS));
        let data = format!("{path} of seed-layer {}\n", self.rng.next()).repeat(1 + self.rng.below(40));
        let xattr = format!("v{}", self.rng.below(100));
        // Beside a name PAX already carries, a second PAX header would be read differently.
        let with_xattr = self.spelled(path).len() <= 100 && self.rng.below(4) == 0;
        let mtime = self.rng.pick(&[1_500_000_000, 1_000_000_000, 1_700_000_123]);
        let entry = FileEntry { path: path.to_string(), data, mode, owner, mtime, xattr: with_xattr.then_some(xattr) };
        self.write_file(&entry);
        self.listing.push(format!("file {path} {mode:o} {owner} t{mtime}{}", if with_xattr { " xattr" } else { "" }));
        self.tree.insert(path.to_string(), Kind::File);
        self.touched.insert(path.to_string());
        self.new_files.push(path.to_string());
        self.new_file_entries.push(entry);
    }

    fn write_file(&mut self, f: &FileEntry) {
        let name = self.spelled(&f.path);
        if let Some(xattr) = &f.xattr {
            self.tar.pax(&[("SCHILY.xattr.user.k", xattr.as_bytes())]);
        }
        self.tar.raw(Header {
            name: name.as_bytes(),
            data: f.data.as_bytes(),
            mode: f.mode,
            uid: f.owner,
            gid: f.owner,
            mtime: f.mtime,
            ..Default::default()
        });
    }

    fn symlink(&mut self, path: &str) {
        let mut targets: Vec<String> = self.tree.keys().filter(|p| !p.is_empty()).cloned().collect();
        if targets.is_empty() {
            targets.push("nowhere".into());
        }
        let target = match self.rng.below(3) {
            0 => format!("/{}", targets[self.rng.below(targets.len())]),
            1 => format!("../{}", self.rng.pick(&["nowhere", "etc", "n1"])),
            _ => targets[self.rng.below(targets.len())].rsplit('/').next().unwrap_or("x").to_string(),
        };
        self.tar.symlink(&self.spelled(path), &target);
        self.listing.push(format!("symlink {path} -> {target}"));
        self.tree.insert(path.to_string(), Kind::Link);
        self.touched.insert(path.to_string());
    }

    fn root_entry(&mut self) {
        let (mode, owner) = (self.rng.pick(&[0o755, 0o750, 0o711, 0o700]), self.rng.pick(&OWNERS));
        let root = if self.prefix == "/" { "/" } else { "./" };
        self.tar.dir_mode(root, mode, owner, owner + 1);
        self.listing.push(format!("root {mode:o} {owner}"));
    }

    fn operation(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=23 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.file(&path);
            }
            24..=25 => {
                // Names too long for a ustar header: written with PAX records.
                let long = format!("{}-{}", self.fresh_name(), "long".repeat(15));
                let dir = Self::join(&self.some_dir(), &long);
                self.dir(&dir);
                let path = Self::join(&dir, &format!("{}-{}", self.fresh_name(), "name".repeat(12)));
                self.file(&path);
            }
            26..=29 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                let (kind, dev, what) =
                    if self.rng.below(2) == 0 { (FIFO, (0, 0), "fifo") } else { (CHAR, (1, 3), "char 1:3") };
                let name = self.spelled(&path);
                self.tar.raw(Header { name: name.as_bytes(), kind, mode: 0o640, dev, ..Default::default() });
                self.listing.push(format!("{what} {path}"));
                self.tree.insert(path.clone(), Kind::File);
                self.touched.insert(path);
            }
            30..=41 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.dir(&path);
            }
            44 if !self.new_dirs.is_empty() => {
                // A directory of this layer replaced by a file further on: what it held goes too,
                // unless a hard link points into it (rkt refuses that, umoci keeps the link).
                let (path, _, _) = self.new_dirs[self.rng.below(self.new_dirs.len())].clone();
                let under = format!("{path}/");
                if self.linked.iter().any(|l| l.starts_with(&under)) {
                    return;
                }
                self.remove_below(&path);
                self.new_dirs.retain(|(d, _, _)| d != &path && !d.starts_with(&under));
                self.new_files.retain(|f| !f.starts_with(&under));
                self.new_file_entries.retain(|f| !f.path.starts_with(&under));
                self.listing.push(format!("replaced {path}"));
                self.file(&path);
            }
            42..=43 if !self.new_dirs.is_empty() => {
                // A directory of this layer given again alike, as tools that add each file's
                // parents write them: spelled with or without its slash.
                let (path, mode, owner) = self.new_dirs[self.rng.below(self.new_dirs.len())].clone();
                let slash = if self.rng.below(2) == 0 { "/" } else { "" };
                self.tar.dir_mode(&format!("{}{slash}", self.spelled(&path)), mode, owner, owner);
                self.listing.push(format!("dir again {path}"));
            }
            45..=46 => {
                // A file of this layer given again, alike or with other bytes and mode, unless a
                // hard link points to it (then rkt refuses the layer, where umoci makes the link
                // and the file two inodes).
                let free: Vec<usize> = (0..self.new_file_entries.len())
                    .filter(|i| !self.linked.contains(&self.new_file_entries[*i].path))
                    .collect();
                if free.is_empty() {
                    return;
                }
                let i = free[self.rng.below(free.len())];
                let mut again = self.new_file_entries[i].clone();
                if roll == 46 {
                    again.data = format!("{} again {}\n", again.path, self.rng.next());
                    again.mode = self.rng.pick(&MODES_FILE);
                    self.listing.push(format!("file otherwise {}", again.path));
                } else {
                    self.listing.push(format!("file again {}", again.path));
                }
                self.write_file(&again);
                self.new_file_entries[i] = again;
            }
            47..=52 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.symlink(&path);
            }
            53..=60 if !self.new_files.is_empty() => {
                let target = self.new_files[self.rng.below(self.new_files.len())].clone();
                self.linked.insert(target.clone());
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.tar.hardlink(&self.spelled(&path), &self.spelled(&target));
                self.listing.push(format!("hardlink {path} => {target}"));
                self.tree.insert(path.clone(), Kind::File);
                self.touched.insert(path);
            }
            61..=70 => {
                let Some(gone) = self.some_lower(None) else { return };
                let (dir, name) = gone.rsplit_once('/').unwrap_or(("", &gone));
                let marker = Self::join(dir, &format!(".wh.{name}"));
                self.tar.file(&self.spelled(&marker), b"");
                self.listing.push(format!("whiteout {gone}"));
                self.tree.remove(&gone);
                self.remove_below(&gone);
                self.touched.insert(gone);
            }
            71..=76 => {
                // An opaque directory: listed again, its marker, then what it holds now.
                let Some(dir) = self.some_lower(Some(Kind::Dir)) else { return };
                self.dir(&dir);
                self.tar.file(&self.spelled(&Self::join(&dir, ".wh..wh..opq")), b"");
                self.listing.push(format!("opaque {dir}"));
                self.remove_below(&dir);
                let path = Self::join(&dir, &self.fresh_name());
                self.file(&path);
            }
            77..=83 => {
                let Some(dir) = self.some_lower(Some(Kind::Dir)) else { return };
                self.dir(&dir);
            }
            84..=91 => {
                // A lower file or symlink replaced: by a file, a directory or a symlink.
                let Some(path) = self.some_lower(None).filter(|p| self.tree[p] != Kind::Dir) else { return };
                match self.rng.below(3) {
                    0 => self.file(&path),
                    1 => self.dir(&path),
                    _ => self.symlink(&path),
                }
            }
            92..=93 => {
                // A file under directories the layer does not list: they are made as it goes.
                let base = self.some_dir();
                let outer = Self::join(&base, &self.fresh_name());
                let inner = Self::join(&outer, &self.fresh_name());
                let path = Self::join(&inner, &self.fresh_name());
                self.file(&path);
                for implied in [outer, inner] {
                    self.tree.insert(implied.clone(), Kind::Dir);
                    self.touched.insert(implied);
                }
            }
            94..=95 => {
                // A lower directory replaced by a file or a symlink: what it held goes too.
                let Some(path) = self.some_lower(Some(Kind::Dir)) else { return };
                self.remove_below(&path);
                if self.rng.below(2) == 0 {
                    self.file(&path);
                } else {
                    self.symlink(&path);
                }
            }
            _ => self.root_entry(),
        }
    }

    fn layer(&mut self, index: usize) -> Vec<u8> {
        self.tar = Tar::new();
        self.prefix = self.rng.pick(&["", "./", "/"]);
        self.touched.clear();
        self.new_files.clear();
        self.new_dirs.clear();
        self.new_file_entries.clear();
        self.linked.clear();
        self.listing.push(format!("-- layer {index}"));
        if self.rng.below(3) == 0 {
            self.root_entry();
        }
        for _ in 0..4 + self.rng.below(10) {
            self.operation();
        }
        self.tar.finish()
    }
}

/// The image of `seed`: 2 to 4 layers, each gzip, zstd or plain, and what they list.
fn random_image(seed: u64) -> (Vec<LayerSpec>, String) {
    let mut b = Builder {
        rng: Rng(seed),
        tree: BTreeMap::from([(String::new(), Kind::Dir)]),
        names: 0,
        touched: BTreeSet::new(),
        new_files: Vec::new(),
        new_dirs: Vec::new(),
        new_file_entries: Vec::new(),
        linked: BTreeSet::new(),
        listing: Vec::new(),
        tar: Tar::new(),
        prefix: "",
    };
    let mut layers: Vec<LayerSpec> = (0..2 + b.rng.below(3))
        .map(|i| {
            let tar = b.layer(i);
            let spec: LayerSpec = match b.rng.below(3) {
                0 => (tar, TGZ, gzip),
                1 => (tar, TZST, zstd),
                _ => (tar, TAR, plain),
            };
            spec
        })
        .collect();
    // An image may list a layer twice (the same content under another chain): the first again,
    // right over itself, which leaves the tree the later layers were made for.
    if b.rng.below(3) == 0 {
        let again = layers[0].clone();
        layers.insert(1, again);
        b.listing.push("and the first layer again, second".into());
    }
    (layers, b.listing.join("\n"))
}

/// What Debian's umoci, which reads no zstd layers, unpacks of a gzip twin of `layers`.
fn umoci_tree(env: &Env, layers: &[LayerSpec]) -> std::path::PathBuf {
    let mut twin = Layout::new(env.path("layout-gzip"));
    let gzipped: Vec<LayerSpec> =
        layers.iter().map(|(tar, _, _)| (tar.clone(), TGZ, gzip as fn(&[u8]) -> Vec<u8>)).collect();
    twin.image("v1", &gzipped, serde_json::json!({"Cmd": ["/bin/true"]}));
    umoci_unpack(env, &twin.dir)
}

#[test]
fn random_images_render_as_umoci_unpacks_them() {
    if !tools() {
        return;
    }
    // What the trees held, over all seeds: each kind of entry must have been compared.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 1..=100u64 {
        let (layers, listing) = random_image(seed);
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &layers, serde_json::json!({"Cmd": ["/bin/true"]}));
        let (id, ours) = fetch_and_render(&env, &layout.dir);
        let theirs = umoci_tree(&env, &layers);
        let their_tree = describe(&theirs);
        assert_eq!(describe(&ours), their_tree, "seed {seed}, the layers:\n{listing}");
        for (what, needle) in
            [("fifos", "fifo "), ("devices", "device "), ("symlinks", "link "), ("xattrs", " user.k=")]
        {
            *seen.entry(what).or_default() += their_tree.0.values().filter(|v| v.contains(needle)).count();
        }
        *seen.entry("hard link groups").or_default() += their_tree.1.len();
        *seen.entry("directories given again").or_default() += listing.matches("dir again ").count();
        *seen.entry("files given again").or_default() += listing.matches("file again ").count();
        *seen.entry("files given otherwise").or_default() += listing.matches("file otherwise ").count();
        *seen.entry("directories replaced").or_default() += listing.matches("replaced ").count();
        *seen.entry("set-group-ID dirs").or_default() +=
            their_tree.0.values().filter(|v| v.starts_with("dir 2")).count();
        // So is the tree `rkt run` uses, rendered in the tree store while the layers were read.
        let trees: Vec<_> =
            std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(trees.len(), 1, "seed {seed}");
        assert_eq!(describe(&trees[0].join("rootfs")), their_tree, "seed {seed}, the tree store's tree");
        // Whose recorded hash is that of what it holds.
        let verified = env.ok(&["image", "verify", &id]);
        assert!(verified.contains("ok (1 tree(s) checked)"), "seed {seed}: {verified}");
        // And the one ACI `rkt image export` squashes the layers into, in a store without them.
        let (_other, _, again) = exported_and_rendered(&env, &id);
        assert_eq!(describe(&again), their_tree, "seed {seed}, the exported image");
        // Not its time: umoci leaves the root dated when it made a directory the layer implied.
        let (mode, uid, gid, _) = root_meta(&ours);
        let (their_mode, their_uid, their_gid, _) = root_meta(&theirs);
        assert_eq!((mode, uid, gid), (their_mode, their_uid, their_gid), "seed {seed}, the layers:\n{listing}");
    }
    assert!(seen.values().all(|n| *n > 0), "some kinds of entry never came up: {seen:?}");
}

/// A directory a layer implies (it lists `srv/a/b`, not `srv/a`) inside a set-group-ID
/// directory takes that directory's group and bit, from a lower layer as from its own, as the
/// kernel gives them to umoci (found by the test above, seed 42).
#[test]
fn implied_directories_inherit_a_set_group_id_parent() {
    if !tools() {
        return;
    }
    let mut lower = Tar::new();
    lower.dir_mode("srv", 0o2775, 0, 50).file("srv/x", b"x").dir_mode("var", 0o2775, 0, 50);
    let mut upper = Tar::new();
    // `var` listed again without the bit: what it holds from then on no longer inherits.
    upper.dir_mode("opt", 0o2770, 7, 60).file("opt/a/b", b"b").file("srv/a/b", b"b").dir_mode("var", 0o755, 0, 0);
    upper.file("var/a/b", b"b");
    let env = Env::new();
    let mut layout = Layout::new(env.path("layout"));
    layout.image("v1", &[(lower.finish(), TGZ, gzip), (upper.finish(), TGZ, gzip)], serde_json::json!({}));
    let (_, ours) = fetch_and_render(&env, &layout.dir);
    let (mine, _) = describe(&ours);
    assert_eq!(
        (&mine["srv/a"], &mine["opt/a"], &mine["var/a"]),
        (&"dir 2755 0:50".to_string(), &"dir 2755 0:60".to_string(), &"dir 755 0:0".to_string())
    );
    assert_eq!(describe(&ours), describe(&umoci_unpack(&env, &layout.dir)));
}

/// Some of the random images pushed into Debian's docker-registry by skopeo and pulled with
/// `docker://`: the layers now arrive over HTTP, several at once, while the tree is rendered.
#[test]
fn random_images_pulled_from_a_registry_render_as_umoci_unpacks_them() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let Some(registry) = common::registry::Registry::start(&env.path("registry")) else { return };
    for seed in 1..=15u64 {
        let (layers, listing) = random_image(seed);
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &layers, serde_json::json!({"Cmd": ["/bin/true"]}));
        registry.push(&format!("oci:{}:v1", layout.dir.display()), &format!("random/{seed}:v1"));
        let image = format!("docker://{}/random/{seed}:v1", registry.addr);
        let id = env.ok(&["--insecure-options=image,http", "fetch", "--full", &image]).trim().to_string();
        let ours = env.path("ours");
        env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
        let their_tree = describe(&umoci_tree(&env, &layers));
        assert_eq!(describe(&ours), their_tree, "seed {seed}, the layers:\n{listing}");
        let trees: Vec<_> =
            std::fs::read_dir(env.store().join("cas/tree")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(trees.len(), 1, "seed {seed}");
        assert_eq!(describe(&trees[0].join("rootfs")), their_tree, "seed {seed}, the tree store's tree");
    }
}

/// Some of the random images saved by skopeo as `docker save` archives and fetched with
/// `docker-archive:`: layers read in place from one tar, by the index of its entries.
#[test]
fn random_images_from_docker_archives_render_as_umoci_unpacks_them() {
    if !tools() {
        return;
    }
    for seed in 200..=215u64 {
        let (layers, listing) = random_image(seed);
        let env = Env::new();
        let theirs = umoci_tree(&env, &layers);
        let archive = env.path("saved.tar");
        let twin = format!("oci:{}:v1", env.path("layout-gzip").display());
        let dest = format!("docker-archive:{}:example.com/random:{seed}", archive.display());
        let out = std::process::Command::new("skopeo").args(["copy", "-q", &twin, &dest]).output().unwrap();
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
        let source = format!("docker-archive:{}", archive.display());
        let id = env.ok(&["fetch", "--insecure-options=image", "--full", &source]).trim().to_string();
        let ours = env.path("ours");
        env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
        assert_eq!(describe(&ours), describe(&theirs), "seed {seed}, the layers:\n{listing}");
    }
}

/// Some of the random images on a layer of Debian's static busybox, run by `rkt run`: inside
/// the pod, on the overlay of the rendered tree, every entry the layers made has the type,
/// mode and owner it has in the tree umoci unpacks.
#[test]
fn random_images_run_with_what_umoci_unpacks() {
    if !tools() || !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root, skopeo, umoci and /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let mut busybox = Tar::new();
    busybox.dir("bin").file_mode("bin/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755, 0, 0);
    busybox.symlink("bin/sh", "busybox");
    let busybox = busybox.finish();
    // Type and permission bits in hex (stat's %f), owner: from inside the pod and from a tree.
    let list =
        "cd \"${ROOT:-/}\" && for n in n*; do busybox find \"$n\" -exec busybox stat -c '%n %f %u:%g' {} +; done";
    for seed in 300..=307u64 {
        let (layers, listing) = random_image(seed);
        let mut all: Vec<LayerSpec> = vec![(busybox.clone(), TGZ, gzip)];
        all.extend(layers);
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &all, serde_json::json!({"Cmd": ["/bin/sh", "-c", list]}));
        let (id, _) = fetch_and_render(&env, &layout.dir);
        let inside = env.ok(&["run", "--net=host", &id]);
        let theirs = umoci_tree(&env, &all);
        let out = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", list])
            .env("PATH", "/bin")
            .env("ROOT", &theirs)
            .output()
            .unwrap();
        // The same script, from umoci's tree.
        let outside = String::from_utf8(out.stdout).unwrap();
        let sorted = |s: &str| {
            let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert!(!outside.is_empty(), "seed {seed}: nothing listed");
        assert_eq!(sorted(&inside), sorted(&outside), "seed {seed}, the layers:\n{listing}");
    }
}

/// Random images with one layer damaged before it is compressed and hashed, so that every
/// digest holds and only the tar is wrong: flipped bytes, a cut, a header block repeated.
/// Each fetch must either take the image whole (and render it) or refuse it as rkt refuses,
/// exit 254 and one line, leaving the store as it was and nothing behind in its temp area.
#[test]
fn damaged_layers_are_refused_whole_or_rendered() {
    if !tools() {
        return;
    }
    let (mut refused, mut taken) = (0, 0);
    for seed in 1..=150u64 {
        let (mut layers, listing) = random_image(seed);
        let mut rng = Rng(seed ^ 0x5eed);
        let victim = rng.below(layers.len());
        let tar = &mut layers[victim].0;
        let damage = match rng.below(3) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(tar.len());
                    tar[at] ^= 1 << rng.below(8);
                }
                "flipped bits"
            }
            1 => {
                tar.truncate(rng.below(tar.len()));
                "cut"
            }
            _ => {
                let block = rng.below(tar.len() / 512) * 512;
                let copy = tar[block..block + 512].to_vec();
                let at = rng.below(tar.len() / 512) * 512;
                tar.splice(at..at, copy);
                "a block repeated"
            }
        };
        let env = Env::new();
        env.fetch(&simple_aci("example.com/good", "good"), "good.aci");
        let before = env.snapshot();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &layers, serde_json::json!({"Cmd": ["/bin/true"]}));
        let image = format!("oci:{}:v1", layout.dir.display());
        let out = env.rkt(&["fetch", "--insecure-options=image", "--full", &image]);
        let what = format!("seed {seed}, layer {victim}, {damage}; the layers:\n{listing}");
        match out.status.code() {
            Some(0) => {
                taken += 1;
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let tree = env.path("tree");
                env.ok(&["image", "render", "--rootfs-only", &id, tree.to_str().unwrap()]);
            }
            Some(254) => {
                refused += 1;
                env.fails(&["fetch", "--insecure-options=image", "--full", &image]);
                assert_eq!(env.snapshot(), before, "the store changed: {what}");
                let tmp = std::fs::read_dir(env.store().join("cas/tmp")).unwrap().count();
                assert_eq!(tmp, 0, "temp files left behind: {what}");
            }
            other => panic!("exit {other:?}: {}\n{what}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    assert!(refused > 0 && taken > 0, "refused {refused}, taken {taken}");
}
