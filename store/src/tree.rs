//! The tree store: each image rendered once with its dependencies into `cas/tree/<tree id>`,
//! with a hash of the rendered tree that `image verify` recomputes.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha512};

use crate::error::{IoContext, Result};
use crate::image_id::ImageId;
use crate::index::TreeRecord;
use crate::render::Layer;
use crate::store::Store;
use crate::tmp_area::{discard, lock_file, Claim};

/// rkt's tree store ID: `deps-` and the key of the comma-joined IDs of the flattened layers.
pub fn tree_id(layers: &[Layer]) -> String {
    let joined: Vec<String> = layers.iter().map(|l| l.id.to_string()).collect();
    let mut hasher = Sha512::new();
    hasher.update(joined.join(",").as_bytes());
    format!("deps-{}", ImageId::from_hasher(hasher))
}

/// A rendered tree ready for use.
#[derive(Debug, Clone)]
pub struct Tree {
    pub record: TreeRecord,
    pub path: PathBuf,
}

impl Tree {
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
}

impl Store {
    pub fn tree_path(&self, tree_id: &str) -> PathBuf {
        self.tree_dir().join(tree_id)
    }

    /// The rendered tree of `top`, rendering it first when it is not in the tree store yet.
    pub async fn render_tree(&self, top: &ImageId) -> Result<Tree> {
        let _lock = self.lock_shared()?;
        let layers = self.dependency_layers(top)?;
        let id = tree_id(&layers);
        let path = self.tree_path(&id);
        // One render of a tree at a time; the others wait and then find it done.
        let locks = self.cas_dir().join("treelocks");
        std::fs::create_dir_all(&locks).at(&locks)?;
        let lock_path = locks.join(&id);
        let lock_file_handle =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).at(&lock_path)?;
        let _tree_lock = lock_file(lock_file_handle, nix::fcntl::FlockArg::LockExclusive).at(&lock_path)?;
        let existing = self.index().tree(&id)?;
        if let Some(record) = existing {
            if path.join("rendered").exists() {
                // A run uses the image: `image gc` counts from here (rkt did not, rkt#3387).
                self.index().touch(top)?;
                return Ok(Tree { record, path });
            }
        }
        let tmp = self.tmp_dir();
        // Held while rendering, so that the sweep of another run leaves the directory alone.
        let claim = Claim::new(&tmp, "render-").at(&tmp)?;
        let staging = claim.path.clone();
        std::fs::create_dir(&staging).at(&staging)?;
        let result = async {
            self.render_layers(&layers, &staging, false).await?;
            let (hash, size) = hash_tree(&staging.join("rootfs"), TreeHash::Sha256)?;
            for (name, content) in [("hash", hash.as_str()), ("image", &top.to_string()), ("rendered", "")] {
                let file = staging.join(name);
                std::fs::write(&file, content).at(&file)?;
            }
            let dir = std::fs::File::open(&staging).at(&staging)?;
            nix::unistd::syncfs(&dir).at(&staging)?;
            // Under the tree lock, a directory already there was left by a render whose index
            // row was lost, or was found damaged.
            discard(&tmp, &path).at(&path)?;
            std::fs::rename(&staging, &path).at(&path)?;
            let record = TreeRecord {
                id: id.clone(),
                image_id: top.clone(),
                hash,
                size,
                images: layers.iter().map(|l| l.id.clone()).collect(),
            };
            self.index().insert_tree(&record)?;
            Ok(Tree { record, path: path.clone() })
        }
        .await;
        drop(claim);
        result
    }

    /// Recomputes a rendered tree's hash; `Ok(false)` when it no longer matches the record.
    pub fn check_tree(&self, record: &TreeRecord) -> Result<bool> {
        let rootfs = self.tree_path(&record.id).join("rootfs");
        if !rootfs.is_dir() {
            return Ok(false);
        }
        let kind = if record.hash.starts_with("sha512-") { TreeHash::Sha512 } else { TreeHash::Sha256 };
        let (hash, _) = hash_tree(&rootfs, kind)?;
        Ok(hash == record.hash)
    }

    /// Removes a tree's directory and its row.
    pub fn remove_tree(&self, tree_id: &str) -> Result<()> {
        self.index().remove_tree(tree_id)?;
        remove_dir_atomically(self, &self.tree_path(tree_id))
    }
}

pub(crate) fn remove_dir_atomically(store: &Store, path: &Path) -> Result<()> {
    discard(&store.tmp_dir(), path).at(path)
}

/// The hash of a tree: for every entry in sorted path order its path, type, mode, owner, size,
/// link target, device and extended attributes, then a regular file's bytes. Times are left out.
/// Returns the hash (`sha256-` and 64 hex digits) and the bytes the files hold.
pub fn hash_tree(root: &Path, kind: TreeHash) -> Result<(String, u64)> {
    match kind {
        TreeHash::Sha256 => hash_tree_with(root, Sha256::new(), "sha256"),
        TreeHash::Sha512 => hash_tree_with(root, Sha512::new(), "sha512"),
    }
}

/// The digest a tree's hash uses. Trees are hashed with SHA-256, which this machine's CPUs
/// compute in hardware (3x SHA-512 here); trees rendered by earlier versions keep SHA-512
/// (rkt's choice) until they are rendered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeHash {
    Sha256,
    Sha512,
}

fn hash_tree_with<D: Digest>(root: &Path, mut hasher: D, prefix: &str) -> Result<(String, u64)> {
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let mut buffer = vec![0u8; 256 * 1024];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .at(&dir)?
            .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
            .collect::<io::Result<_>>()
            .at(&dir)?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_child = rel.join(OsStr::from_bytes(&name));
            let path = root.join(&rel_child);
            let meta = path.symlink_metadata().at(&path)?;
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else if ft.is_fifo() {
                'p'
            } else {
                continue;
            };
            let link = if ft.is_symlink() {
                std::fs::read_link(&path).at(&path)?.into_os_string().into_vec()
            } else {
                Vec::new()
            };
            let size = if ft.is_file() { meta.len() } else { 0 };
            hasher.update(rel_child.as_os_str().as_bytes());
            hasher.update(
                format!("\0{kind}\0{:o}\0{}\0{}\0{size}\0", meta.mode() & 0o7777, meta.uid(), meta.gid()).as_bytes(),
            );
            hasher.update(&link);
            hasher.update(
                format!("\0{}\0", if ft.is_char_device() || ft.is_block_device() { meta.rdev() } else { 0 }).as_bytes(),
            );
            for (key, value) in xattrs(&path) {
                hasher.update(&key);
                hasher.update(b"=");
                hasher.update(&value);
                hasher.update(b"\0");
            }
            hasher.update(b"\n");
            if ft.is_file() {
                total += size;
                let mut file = std::fs::File::open(&path).at(&path)?;
                loop {
                    let n = file.read(&mut buffer).at(&path)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
            } else if ft.is_dir() {
                subdirs.push(rel_child);
            }
        }
        // Reversed so that the stack yields them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..32].iter().map(|b| format!("{b:02x}")).collect();
    Ok((format!("{prefix}-{hex}"), total))
}

/// A file's extended attributes, sorted by name; none where the filesystem has none.
pub(crate) fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return Vec::new() };
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    out
}
