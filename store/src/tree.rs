//! The tree store: each image rendered once with its dependencies into `cas/tree/<tree id>`,
//! with a hash of the rendered tree that `image verify` recomputes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};
use crate::growing_blob::GrowingBlob;
use crate::image_id::{ImageHasher, ImageId};
use crate::index::TreeRecord;
use crate::render::{is_plain_chain, overwrite_from, Layer};
use crate::store::Store;
use crate::tmp_area::{discard, lock_exclusive_waiting, Claim};
use crate::tree_hash::{hash_tree, TreeHash};
use crate::tree_writer::{FileDigests, TreeWriter};

/// rkt's tree store ID: `deps-` and the key of the comma-joined IDs of the flattened layers.
pub fn tree_id(layers: &[Layer]) -> String {
    let joined: Vec<String> = layers.iter().map(|l| l.id.to_string()).collect();
    let mut hasher = ImageHasher::new();
    hasher.update(joined.join(",").as_bytes());
    format!("deps-{}", hasher.finish())
}

/// A tree's render lock, held. Its file is unlinked before the lock is let go, whether the
/// render succeeded or failed, so that no lock file outlives the render it guarded (a failed
/// fetch leaves the store as it was).
struct TreeLock {
    path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for TreeLock {
    fn drop(&mut self) {
        // Still locked here: the fields are dropped after this.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A tree being rendered layer by layer (`Store::start_chain_render`); dropped unfinished, it
/// leaves nothing.
pub struct ChainRender {
    claim: Claim,
    writer: TreeWriter,
    applied: Vec<ImageId>,
}

impl ChainRender {
    /// The layer last written by `render_next_growing` was imported as `id`.
    pub fn imported(&mut self, id: ImageId) {
        self.applied.push(id);
    }
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
        // One render of a tree at a time; the others wait and then find it done.
        let _tree_lock = self.lock_tree(&id).await?;
        if let Some(tree) = self.rendered_tree(&id)? {
            return Ok(tree);
        }
        let tmp = self.tmp_dir();
        // Held while rendering, so that the sweep of another run leaves the directory alone.
        let claim = Claim::new(&tmp, "render-").at(&tmp)?;
        std::fs::create_dir(&claim.path).at(&claim.path)?;
        let digests = self.render_layers(&layers, &claim.path, false, true).await?;
        self.commit_tree(&claim.path, &id, top, &layers, &digests)
    }

    /// Starts rendering a chain of layers (each depending on the one below, no path
    /// whitelists: a converted Docker image) from the bottom, while the layers above are still
    /// being imported.
    pub fn start_chain_render(&self) -> Result<ChainRender> {
        let tmp = self.tmp_dir();
        let claim = Claim::new(&tmp, "render-").at(&tmp)?;
        let rootfs = claim.path.join("rootfs");
        std::fs::create_dir_all(&rootfs).at(&rootfs)?;
        let writer = TreeWriter::new(&rootfs).at(&rootfs)?.digesting();
        Ok(ChainRender { claim, writer, applied: Vec::new() })
    }

    /// Writes the next layer up over what is rendered so far.
    pub async fn render_next_layer(&self, render: &mut ChainRender, id: &ImageId) -> Result<()> {
        let layer = self.single_layer(id)?;
        self.overwrite_with_layer(&layer, &mut render.writer).await?;
        render.applied.push(id.clone());
        Ok(())
    }

    /// Writes the next layer up from its blob while its import writes it (`AciBuilder::follow`).
    /// The layer counts as rendered only once `ChainRender::imported` names it: the render is
    /// of no use if that import fails.
    pub async fn render_next_growing(&self, render: &mut ChainRender, blob: GrowingBlob) -> Result<()> {
        let reader = tokio::io::BufReader::with_capacity(256 * 1024, blob);
        overwrite_from(reader, &mut render.writer).await
    }

    /// Adds `top` (the image above the chain) and puts the tree in the tree store, unless it
    /// is there already. Fails, leaving nothing, when the layers rendered are not `top`'s.
    pub async fn finish_chain_render(&self, mut render: ChainRender, top: &ImageId) -> Result<Tree> {
        let _lock = self.lock_shared()?;
        let layers = self.dependency_layers(top)?;
        let below: Vec<&ImageId> = layers[1..].iter().rev().map(|l| &l.id).collect();
        if !is_plain_chain(&layers) || below != render.applied.iter().collect::<Vec<_>>() {
            return Err(StoreError::Invalid(format!("the layers rendered are not those of {}", top.short(32))));
        }
        self.overwrite_with_layer(&layers[0], &mut render.writer).await?;
        let staging = render.claim.path.clone();
        let rootfs = staging.join("rootfs");
        let digests = render.writer.finish().at(&rootfs)?;
        let manifest = staging.join("manifest");
        std::fs::write(&manifest, self.image(top)?.manifest).at(&manifest)?;
        let id = tree_id(&layers);
        let _tree_lock = self.lock_tree(&id).await?;
        if let Some(tree) = self.rendered_tree(&id)? {
            return Ok(tree);
        }
        self.commit_tree(&staging, &id, top, &layers, &digests)
    }

    /// One render of a tree at a time, across processes and tasks.
    async fn lock_tree(&self, id: &str) -> Result<TreeLock> {
        let locks = self.tree_locks_dir();
        std::fs::create_dir_all(&locks).at(&locks)?;
        let path = locks.join(id);
        loop {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
            let lock = lock_exclusive_waiting(file).await.at(&path)?;
            // The holder before unlinks its file as it lets go: a lock on that file guards
            // nothing, and whoever created the file now at the path may hold that one.
            let held = lock.metadata().at(&path)?;
            match std::fs::metadata(&path) {
                Ok(linked) if (linked.dev(), linked.ino()) == (held.dev(), held.ino()) => {
                    return Ok(TreeLock { path, _lock: lock })
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
    }

    pub(crate) fn tree_locks_dir(&self) -> PathBuf {
        self.cas_dir().join("treelocks")
    }

    /// The tree `id` when it is rendered and recorded (under its lock).
    fn rendered_tree(&self, id: &str) -> Result<Option<Tree>> {
        let path = self.tree_path(id);
        // The index's guard must be gone before `touch` takes it again.
        let record = self.index().tree(id)?;
        match record {
            Some(record) if path.join("rendered").exists() => {
                // A run uses the image and the images below it: `image gc` and `image list`
                // count from here (rkt did not, rkt#3387).
                self.index().touch(&record.images)?;
                Ok(Some(Tree { record, path }))
            }
            _ => Ok(None),
        }
    }

    /// Hashes a rendered staging directory, syncs it, moves it into the tree store and
    /// records it (under the tree's lock).
    fn commit_tree(
        &self,
        staging: &Path,
        id: &str,
        top: &ImageId,
        layers: &[Layer],
        digests: &FileDigests,
    ) -> Result<Tree> {
        let path = self.tree_path(id);
        let (hash, size) = hash_tree(&staging.join("rootfs"), TreeHash::CURRENT, digests)?;
        for (name, content) in [("hash", hash.as_str()), ("image", &top.to_string()), ("rendered", "")] {
            let file = staging.join(name);
            std::fs::write(&file, content).at(&file)?;
        }
        let dir = std::fs::File::open(staging).at(staging)?;
        nix::unistd::syncfs(&dir).at(staging)?;
        // Under the tree lock, a directory already there was left by a render whose index row
        // was lost, or was found damaged.
        let tmp = self.tmp_dir();
        discard(&tmp, &path).at(&path)?;
        std::fs::rename(staging, &path).at(&path)?;
        let record = TreeRecord {
            id: id.to_string(),
            image_id: top.clone(),
            hash,
            size,
            images: layers.iter().map(|l| l.id.clone()).collect(),
        };
        if let Err(e) = self.index().insert_tree(&record) {
            // A full disk fails SQLite too: a tree without its row would be room taken for
            // nothing, and the store must be left as it was.
            let _ = discard(&tmp, &path);
            return Err(e);
        }
        Ok(Tree { record, path })
    }

    /// Recomputes a rendered tree's hash; `Ok(false)` when it no longer matches the record.
    pub fn check_tree(&self, record: &TreeRecord) -> Result<bool> {
        let rootfs = self.tree_path(&record.id).join("rootfs");
        if !rootfs.is_dir() {
            return Ok(false);
        }
        let Some(kind) = TreeHash::of_recorded(&record.hash) else {
            return Ok(false);
        };
        let (hash, _) = hash_tree(&rootfs, kind, &FileDigests::new())?;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A holder unlinks the lock file as it lets go. One that was waiting on that file and
    /// gets it must see that it is no longer the lock, and wait for whoever holds the file now
    /// at the path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tree_lock_has_one_holder_at_a_time_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let id = "deps-sha512-0123";
        let first = store.lock_tree(id).await.unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (store, got) = (store.clone(), got.clone());
            tokio::spawn(async move {
                let lock = store.lock_tree(id).await.unwrap();
                got.store(true, Ordering::SeqCst);
                drop(lock);
            })
        };
        // The waiter has opened the first holder's file and waits on it.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!got.load(Ordering::SeqCst));
        drop(first);
        let second = store.lock_tree(id).await.unwrap();
        // Longer than the waiter's polls (50 ms): it has had the unlinked file by now.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!got.load(Ordering::SeqCst), "two holders at once");
        drop(second);
        waiter.await.unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert_eq!(std::fs::read_dir(store.tree_locks_dir()).unwrap().count(), 0, "a lock file outlived its lock");
    }
}
