//! Removing images, garbage collection and integrity checks.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::blob::Tee;
use crate::error::{IoContext, Result, StoreError};
use crate::image_id::ImageId;
use crate::index::{now_ns, ImageRecord};
use crate::store::{scan_aci, BroughtIn, Store};
use crate::tree::remove_dir_atomically;

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed_trees: Vec<String>,
    pub removed_images: Vec<ImageId>,
    pub removed_orphan_blobs: usize,
}

/// What `verify` found for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCheck {
    Ok { trees_checked: usize, trees_repaired: Vec<String> },
    Corrupt { actual: ImageId },
    MissingBlob,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub images: Vec<(ImageId, ImageCheck)>,
    /// Complete blobs that had no index row (an import interrupted after the blob was named).
    pub reindexed: Vec<ImageId>,
    /// Index rows whose blob is gone, removed.
    pub dropped: Vec<ImageId>,
}

impl Store {
    /// Removes an image: its index rows first, so that it disappears at once, then its blob and
    /// the trees rendered from it. Returns the IDs of the removed trees.
    pub fn remove_image(&self, id: &ImageId) -> Result<Vec<String>> {
        let _lock = self.lock_exclusive()?;
        self.remove_locked(id)
    }

    /// Removes those of `images` that no stored image depends on and that `keep` does not hold,
    /// under one exclusive lock, until none of them is left to remove: one removed may leave
    /// another without dependents (the layers of a Docker image go top first). Fetches that rely
    /// on an image hold the shared lock until their own image depending on it is stored, so
    /// none is taken from under them. Returns the removed images.
    pub fn remove_unneeded(&self, images: &[ImageId], keep: &HashSet<ImageId>) -> Result<Vec<ImageId>> {
        let _lock = self.lock_exclusive()?;
        let mut left: Vec<&ImageId> = images.iter().filter(|id| !keep.contains(*id)).collect();
        let mut removed = Vec::new();
        loop {
            let mut unneeded = None;
            for (at, id) in left.iter().enumerate() {
                match self.dependents(id) {
                    Ok(dependents) if dependents.is_empty() => {
                        unneeded = Some(at);
                        break;
                    }
                    Ok(_) => {}
                    // Gone already (removed by another command meanwhile).
                    Err(StoreError::NoImageIdsFound) => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(at) = unneeded else { return Ok(removed) };
            let id = left.remove(at);
            self.remove_locked(id)?;
            removed.push(id.clone());
        }
    }

    /// Takes back an image that a failed fetch brought into the store, unless another fetch
    /// now relies on it: one running beside the failed one found it stored and built on it
    /// (fetches hold the shared lock while they rely on what they found, so this waits for
    /// them), or imported it again for itself. Returns whether it was removed.
    pub fn take_back(&self, image: &BroughtIn) -> Result<bool> {
        self.take_back_unless(image, &|_| Ok(false))
    }

    /// As `take_back`, keeping the image also when `claimed` says another fetch has taken it as
    /// its result; asked under the store's exclusive lock, so that no claim comes in between.
    fn take_back_unless(&self, image: &BroughtIn, claimed: &dyn Fn(&ImageId) -> Result<bool>) -> Result<bool> {
        let _lock = self.lock_exclusive()?;
        let Some(record) = self.index().image(&image.id)? else { return Ok(false) };
        if record.import_time != image.import_time || !self.dependents(&image.id)?.is_empty() || claimed(&image.id)? {
            return Ok(false);
        }
        self.remove_locked(&image.id)?;
        Ok(true)
    }

    /// Takes back the images a failed fetch brought in, each as `take_back` does, in whatever
    /// order they come: one kept because another of them depends on it goes once that one has
    /// gone. Returns those removed.
    pub fn take_back_all(&self, images: &[BroughtIn]) -> Result<Vec<ImageId>> {
        self.take_back_all_unless(images, &|_| Ok(false))
    }

    /// As `take_back_all`, keeping those that `claimed` says another fetch has taken as its
    /// result (see `take_back_unless`).
    pub fn take_back_all_unless(
        &self,
        images: &[BroughtIn],
        claimed: &dyn Fn(&ImageId) -> Result<bool>,
    ) -> Result<Vec<ImageId>> {
        let mut left = images.to_vec();
        let mut removed = Vec::new();
        loop {
            let mut kept = Vec::new();
            let removed_before = removed.len();
            for image in std::mem::take(&mut left) {
                if self.take_back_unless(&image, claimed)? {
                    removed.push(image.id);
                } else {
                    kept.push(image);
                }
            }
            if kept.is_empty() || removed.len() == removed_before {
                return Ok(removed);
            }
            left = kept;
        }
    }

    /// The images whose dependencies, resolved as a render resolves them, include `id`.
    pub fn dependents(&self, id: &ImageId) -> Result<Vec<ImageId>> {
        let name = self.image(id)?.name;
        let candidates = self.index().naming_as_dependency(&name, id)?;
        let mut found = Vec::new();
        for candidate in candidates {
            let manifest = self.manifest(&candidate)?;
            let depends = manifest
                .dependencies
                .iter()
                .any(|dep| self.resolve_dependency(dep, &manifest).is_ok_and(|resolved| resolved == *id));
            if depends {
                found.push(candidate);
            }
        }
        Ok(found)
    }

    fn remove_locked(&self, id: &ImageId) -> Result<Vec<String>> {
        let trees = self.index().remove_image(id)?;
        let blob = self.blob_path(id);
        match std::fs::remove_file(&blob) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path: blob, source: e }),
        }
        // The shard directory goes too once empty, so that a removal leaves the store as it was
        // before the import. Safe under the exclusive lock: imports, which create shards, hold
        // the shared one.
        if let Some(shard) = blob.parent() {
            let _ = std::fs::remove_dir(shard);
        }
        for tree in &trees {
            remove_dir_atomically(self, &self.tree_path(tree))?;
        }
        Ok(trees)
    }

    /// Removes images not used within `grace`, the trees rendered from them, trees and blobs the
    /// index does not know, and what interrupted runs left in the temp area. Images `in_use` (by
    /// pods that are prepared or running) stay, as do the images that kept ones depend on.
    pub fn gc(&self, grace: Duration, in_use: &[ImageId]) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        let mut report = GcReport::default();
        let known_trees = self.index().trees()?;
        for tree in &known_trees {
            if !self.tree_path(tree).join("rendered").exists() {
                self.remove_tree(tree)?;
                report.removed_trees.push(tree.clone());
            }
        }
        let tree_dir = self.tree_dir();
        for entry in std::fs::read_dir(&tree_dir).at(&tree_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known_trees.contains(&name) {
                remove_dir_atomically(self, &entry.path())?;
                report.removed_trees.push(name);
            }
        }
        // A tree's lock file lives as long as its render: one still here was left by a render
        // killed midway (or by a version that kept them). No render runs while gc holds the
        // store.
        if let Ok(locks) = std::fs::read_dir(self.tree_locks_dir()) {
            for lock in locks.flatten() {
                let _ = std::fs::remove_file(lock.path());
            }
        }
        let cutoff = now_ns() - grace.as_nanos() as i64;
        let mut images = self.index().images()?;
        images.sort_by_key(|r| r.last_used);
        let recent = images.iter().filter(|r| r.last_used >= cutoff).map(|r| r.id.clone());
        let recent: Vec<ImageId> = recent.chain(in_use.iter().cloned()).collect();
        let needed = self.with_dependencies(recent);
        for image in images.iter().take_while(|r| r.last_used < cutoff) {
            if needed.contains(&image.id) {
                continue;
            }
            report.removed_trees.extend(self.remove_locked(&image.id)?);
            report.removed_images.push(image.id.clone());
        }
        let cutoff_time = std::time::SystemTime::now() - grace;
        for (id, path) in self.blob_files()? {
            if self.index().image(&id)?.is_none() {
                let old = path.metadata().and_then(|m| m.modified()).map(|t| t < cutoff_time).unwrap_or(false);
                if old && std::fs::remove_file(&path).is_ok() {
                    report.removed_orphan_blobs += 1;
                }
            }
        }
        Ok(report)
    }

    /// `images` and every image they depend on, as a render would find them. An image in use
    /// only as another's dependency (a Docker layer under an image run today, a base layer
    /// stored long ago and shared by an image pulled now) is thus kept with it.
    pub fn with_dependencies(&self, images: Vec<ImageId>) -> HashSet<ImageId> {
        let mut needed: HashSet<ImageId> = images.iter().cloned().collect();
        let mut pending = images;
        while let Some(id) = pending.pop() {
            let Ok(manifest) = self.manifest(&id) else { continue };
            for dep in &manifest.dependencies {
                // One that cannot be found is not in the store to keep.
                if let Ok(found) = self.resolve_dependency(dep, &manifest) {
                    if needed.insert(found.clone()) {
                        pending.push(found);
                    }
                }
            }
        }
        needed
    }

    /// Every blob file under `cas/blob` with the ID its name gives.
    fn blob_files(&self) -> Result<Vec<(ImageId, std::path::PathBuf)>> {
        let root = self.blob_root();
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&root).at(&root)?.flatten() {
            let shard_path = shard.path();
            for entry in std::fs::read_dir(&shard_path).at(&shard_path)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = ImageId::parse_full(&name) {
                    out.push((id, entry.path()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn hash_blob(&self, path: &Path) -> Result<ImageId> {
        let file = tokio::fs::File::open(path).await.at(path)?;
        let mut tee = Tee::new(tokio::io::BufReader::with_capacity(256 * 1024, file));
        tokio::io::copy(&mut tee, &mut tokio::io::sink()).await.at(path)?;
        Ok(tee.finish().0.finish())
    }

    /// Re-hashes images and their rendered trees, re-rendering trees that no longer match.
    /// Without `only`, checks every image and also rebuilds the index from the blobs: blobs
    /// without a row are indexed again, rows without a blob are dropped.
    pub async fn verify(&self, only: Option<Vec<ImageId>>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let everything = only.is_none();
        let records: Vec<ImageRecord> = match only {
            Some(ids) => ids.iter().map(|id| self.image(id)).collect::<Result<_>>()?,
            None => self.images()?,
        };
        for record in records {
            let path = self.blob_path(&record.id);
            if !path.exists() {
                if everything {
                    self.index().remove_image(&record.id)?;
                    report.dropped.push(record.id.clone());
                } else {
                    report.images.push((record.id.clone(), ImageCheck::MissingBlob));
                }
                continue;
            }
            let actual = self.hash_blob(&path).await?;
            if actual != record.id {
                report.images.push((record.id.clone(), ImageCheck::Corrupt { actual }));
                continue;
            }
            let mut checked = 0;
            let mut repaired = Vec::new();
            let trees = self.index().trees_of(&record.id)?;
            for tree_id in trees {
                let Some(tree) = self.index().tree(&tree_id)? else { continue };
                checked += 1;
                if !self.check_tree(&tree)? {
                    self.remove_tree(&tree_id)?;
                    self.render_tree(&record.id).await?;
                    repaired.push(tree_id);
                }
            }
            report
                .images
                .push((record.id.clone(), ImageCheck::Ok { trees_checked: checked, trees_repaired: repaired }));
        }
        if everything {
            for (id, path) in self.blob_files()? {
                if self.index().image(&id)?.is_some() {
                    continue;
                }
                if self.reindex_blob(&id, &path).await.is_ok() {
                    report.reindexed.push(id);
                }
            }
        }
        Ok(report)
    }

    async fn reindex_blob(&self, id: &ImageId, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path).await.at(path)?;
        let mut tee = Tee::new(tokio::io::BufReader::with_capacity(256 * 1024, file));
        let scan = scan_aci(&mut tee).await?;
        tokio::io::copy(&mut tee, &mut tokio::io::sink()).await.at(path)?;
        let (hasher, size) = tee.finish();
        if hasher.finish() != *id {
            return Err(StoreError::Invalid(format!("{} does not hash to its name", path.display())));
        }
        let time =
            path.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let time = time.map(|d| d.as_nanos() as i64).unwrap_or_else(now_ns);
        self.index().insert_image(&ImageRecord {
            id: id.clone(),
            name: scan.manifest.name,
            manifest: scan.manifest_json,
            size,
            import_time: time,
            last_used: time,
            latest: false,
        })
    }
}
