//! Images of random layers, each rendered by rkt and unpacked by Debian's umoci: the two trees
//! must be the same, entry for entry. The layers do what image builders' layers do: add files,
//! directories, symlinks and hard links, change a directory's mode, replace an entry of a lower
//! layer by one of another type, white out lower entries and make directories opaque, and give
//! the root new metadata with a root entry, first or late. They keep to what every tool reads
//! alike: no entry twice in a layer, a whiteout only for what lies below, a hard link only to a
//! file of its own layer, no entry written through a symlink.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::oci::*;
use common::*;

/// A small deterministic generator (an LCG): each seed gives the same image on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
    Link,
}

/// The tree the layers so far make, by path ("" is the root), and the layer being written.
struct Builder {
    rng: Rng,
    tree: BTreeMap<String, Kind>,
    names: usize,
    /// Paths this layer has written: never written again, whited out or replaced in it.
    touched: BTreeSet<String>,
    /// Files this layer has added, for its hard links.
    new_files: Vec<String>,
    /// What the layer's tar lists, as a readable line each, should the trees differ.
    listing: Vec<String>,
    tar: Tar,
}

const MODES_DIR: [u32; 4] = [0o755, 0o750, 0o700, 0o1777];
const MODES_FILE: [u32; 5] = [0o644, 0o600, 0o755, 0o4755, 0o640];
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

    fn dir(&mut self, path: &str) {
        let (mode, owner) = (self.rng.pick(&MODES_DIR), self.rng.pick(&OWNERS));
        self.tar.dir_mode(path, mode, owner, owner);
        self.listing.push(format!("dir {path} {mode:o} {owner}"));
        self.tree.insert(path.to_string(), Kind::Dir);
        self.touched.insert(path.to_string());
    }

    fn file(&mut self, path: &str) {
        let (mode, owner) = (self.rng.pick(&MODES_FILE), self.rng.pick(&OWNERS));
        let data = format!("{path} of seed-layer {}\n", self.rng.next()).repeat(1 + self.rng.below(40));
        self.tar.file_mode(path, data.as_bytes(), mode, owner, owner);
        self.listing.push(format!("file {path} {mode:o} {owner}"));
        self.tree.insert(path.to_string(), Kind::File);
        self.touched.insert(path.to_string());
        self.new_files.push(path.to_string());
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
        self.tar.symlink(path, &target);
        self.listing.push(format!("symlink {path} -> {target}"));
        self.tree.insert(path.to_string(), Kind::Link);
        self.touched.insert(path.to_string());
    }

    fn root_entry(&mut self) {
        let (mode, owner) = (self.rng.pick(&[0o755, 0o750, 0o711, 0o700]), self.rng.pick(&OWNERS));
        self.tar.dir_mode("./", mode, owner, owner + 1);
        self.listing.push(format!("root {mode:o} {owner}"));
    }

    fn operation(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=29 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.file(&path);
            }
            30..=44 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.dir(&path);
            }
            45..=52 => {
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.symlink(&path);
            }
            53..=60 if !self.new_files.is_empty() => {
                let target = self.new_files[self.rng.below(self.new_files.len())].clone();
                let path = Self::join(&self.some_dir(), &self.fresh_name());
                self.tar.hardlink(&path, &target);
                self.listing.push(format!("hardlink {path} => {target}"));
                self.tree.insert(path.clone(), Kind::File);
                self.touched.insert(path);
            }
            61..=70 => {
                let Some(gone) = self.some_lower(None) else { return };
                let (dir, name) = gone.rsplit_once('/').unwrap_or(("", &gone));
                let marker = Self::join(dir, &format!(".wh.{name}"));
                self.tar.file(&marker, b"");
                self.listing.push(format!("whiteout {gone}"));
                self.tree.remove(&gone);
                self.remove_below(&gone);
                self.touched.insert(gone);
            }
            71..=76 => {
                // An opaque directory: listed again, its marker, then what it holds now.
                let Some(dir) = self.some_lower(Some(Kind::Dir)) else { return };
                self.dir(&dir);
                self.tar.file(&Self::join(&dir, ".wh..wh..opq"), b"");
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
        self.touched.clear();
        self.new_files.clear();
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

#[test]
fn random_images_render_as_umoci_unpacks_them() {
    if !tools() {
        return;
    }
    for seed in 1..=100u64 {
        let tree = BTreeMap::from([(String::new(), Kind::Dir)]);
        let mut b = Builder {
            rng: Rng(seed),
            tree,
            names: 0,
            touched: BTreeSet::new(),
            new_files: Vec::new(),
            listing: Vec::new(),
            tar: Tar::new(),
        };
        let layers: Vec<LayerSpec> =
            (0..2 + b.rng.below(3)).map(|i| (b.layer(i), TGZ, gzip as fn(&[u8]) -> Vec<u8>)).collect();
        let env = Env::new();
        let mut layout = Layout::new(env.path("layout"));
        layout.image("v1", &layers, serde_json::json!({"Cmd": ["/bin/true"]}));
        let id = env
            .ok(&["fetch", "--insecure-options=image", "--full", &format!("oci:{}:v1", layout.dir.display())])
            .trim()
            .to_string();
        let ours = env.path("ours");
        env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
        let theirs = umoci_unpack(&env, &layout.dir);
        let listing = b.listing.join("\n");
        assert_eq!(describe(&ours), describe(&theirs), "seed {seed}, the layers:\n{listing}");
        // Not its time: umoci leaves the root dated when it made a directory the layer implied.
        let (mode, uid, gid, _) = root_meta(&ours);
        let (their_mode, their_uid, their_gid, _) = root_meta(&theirs);
        assert_eq!((mode, uid, gid), (their_mode, their_uid, their_gid), "seed {seed}, the layers:\n{listing}");
    }
}
