//! Rendering an image with its dependencies into one root filesystem, as appc's acirenderer
//! does: dependencies depth-first, an upper image's files hide a lower image's, path whitelists
//! of dependents filter what lies below them, and whiteouts hide what lies below them.

use std::collections::HashSet;
use std::path::Path;

use tokio::io::AsyncRead;

use crate::aci::{archive, whiteout, EntryClass, Whiteout};
use crate::appc::{AppString, Dependency, ImageManifest};
use crate::blob::{InPlaceFile, Tee};
use crate::error::{IoContext, Result, StoreError};
use crate::image_id::ImageId;
use crate::keyed_hash::{HashedSet, KeyedHash};
use crate::path_tree::PathTree;
use crate::store::Store;
use crate::tar_entry::{entry_info, next_entry, write_entry, Kind};
use crate::tree_writer::{FileDigests, TreeWriter};

/// A dependency tree of more images than this is refused rather than walked.
pub const MAX_LAYERS: usize = 1024;

/// One image of a flattened dependency tree.
#[derive(Debug, Clone)]
pub struct Layer {
    pub id: ImageId,
    pub manifest: ImageManifest,
    /// Index of the image that depends on this one.
    parent: Option<usize>,
}

impl Store {
    pub(crate) fn resolve_dependency(&self, dep: &Dependency, of: &ImageManifest) -> Result<ImageId> {
        let missing = || StoreError::MissingDependency { name: dep.image_name.clone(), of: of.name.clone() };
        if let Some(id) = &dep.image_id {
            return self.resolve_id(id).map_err(|_| missing());
        }
        let app = AppString { name: dep.image_name.clone(), labels: dep.labels.clone() };
        self.find(&app)?.ok_or_else(missing)
    }

    /// One image alone, without its dependencies (`rkt image extract`).
    pub fn single_layer(&self, id: &ImageId) -> Result<Layer> {
        Ok(Layer { id: id.clone(), manifest: self.manifest(id)?, parent: None })
    }

    /// The images that make up `top`'s root filesystem, top first: for A→[B, C] and C→[D] that is
    /// A, C, D, B, rendered in the reverse order.
    pub fn dependency_layers(&self, top: &ImageId) -> Result<Vec<Layer>> {
        let mut layers = Vec::new();
        let mut path = Vec::new();
        self.visit(top.clone(), None, &mut path, &mut layers)?;
        Ok(layers)
    }

    fn visit(&self, id: ImageId, parent: Option<usize>, path: &mut Vec<ImageId>, out: &mut Vec<Layer>) -> Result<()> {
        if path.contains(&id) {
            let names: Vec<String> = path.iter().chain([&id]).map(|i| i.short(12)).collect();
            return Err(StoreError::DependencyCycle(names.join(" -> ")));
        }
        if out.len() >= MAX_LAYERS {
            return Err(StoreError::Invalid(format!(
                "image {} has more than {MAX_LAYERS} dependencies",
                path[0].short(12)
            )));
        }
        let manifest = self.manifest(&id)?;
        let index = out.len();
        let deps: Vec<ImageId> =
            manifest.dependencies.iter().map(|d| self.resolve_dependency(d, &manifest)).collect::<Result<_>>()?;
        out.push(Layer { id: id.clone(), manifest, parent });
        path.push(id);
        for dep in deps.into_iter().rev() {
            self.visit(dep, Some(index), path, out)?;
        }
        path.pop();
        Ok(())
    }

    /// Renders `layers` (from `dependency_layers`) into the existing, empty directory `dest`:
    /// the root filesystem in `dest/rootfs` beside the top image's `manifest`, or, with
    /// `rootfs_only`, the root filesystem in `dest` itself. With `digest`, returns the digests
    /// of the files written (for the tree hash).
    pub async fn render_layers(
        &self,
        layers: &[Layer],
        dest: &Path,
        rootfs_only: bool,
        digest: bool,
    ) -> Result<FileDigests> {
        let root = if rootfs_only { dest.to_path_buf() } else { dest.join("rootfs") };
        if !rootfs_only {
            std::fs::create_dir(&root).at(&root)?;
            let manifest = dest.join("manifest");
            let json = self.image(&layers[0].id)?.manifest;
            std::fs::write(&manifest, json).at(&manifest)?;
        }
        let mut writer = TreeWriter::new(&root).at(&root)?;
        if digest {
            writer = writer.digesting();
        }
        if is_plain_chain(layers) {
            // Layered images (a chain without path whitelists, as converted Docker images are):
            // each layer is written over the ones below it, its whiteouts removing what they
            // hide, in one pass per layer.
            for layer in layers.iter().rev() {
                self.overwrite_with_layer(layer, &mut writer).await?;
            }
            return writer.finish().at(&root);
        }
        let mut selector = Selector::default();
        let filters: Vec<LayerFilter> = (0..layers.len()).map(|i| LayerFilter::new(layers, i)).collect();
        let mut chosen: Vec<Option<HashSet<Vec<u8>>>> = vec![None; layers.len()];
        if layers.len() > 1 {
            // Which image provides each path is known only once the upper images have been read;
            // this pass only reads headers, the next one checks the hashes.
            for (i, layer) in layers.iter().enumerate() {
                let mut set = HashSet::new();
                self.read_layer(
                    layer,
                    |path, kind| {
                        if selector.decide(&filters[i], i, path, kind)? {
                            set.insert(path.to_vec());
                        }
                        Ok(Action::Skip)
                    },
                    &mut writer,
                    false,
                )
                .await?;
                selector.end_layer();
                chosen[i] = Some(set);
            }
        }
        for i in (0..layers.len()).rev() {
            let set = chosen[i].take();
            let filter = &filters[i];
            self.read_layer(
                &layers[i],
                |path, kind| {
                    let keep = match &set {
                        Some(set) => set.contains(path),
                        None => selector.decide(filter, i, path, kind)?,
                    };
                    Ok(if keep { Action::Write } else { Action::Skip })
                },
                &mut writer,
                true,
            )
            .await?;
        }
        writer.finish().at(&root)
    }

    /// Writes one layer over what `writer` holds, its whiteouts removing what they hide.
    pub(crate) async fn overwrite_with_layer(&self, layer: &Layer, writer: &mut TreeWriter) -> Result<()> {
        self.read_layer(layer, |path, _| Ok(overwrite_action(path)), writer, true).await
    }

    /// Streams one image's blob, doing with each entry what `action` says; with `verify`, checks
    /// the blob's hash.
    async fn read_layer(
        &self,
        layer: &Layer,
        mut action: impl FnMut(&[u8], &Kind) -> Result<Action>,
        writer: &mut TreeWriter,
        verify: bool,
    ) -> Result<()> {
        let file = InPlaceFile(self.open_blob(&layer.id)?);
        let reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        let verify = verify && !self.hashed_here(&layer.id);
        let mut tee = if verify { Tee::new(reader) } else { Tee::passthrough(reader) };
        apply_entries(&mut tee, &mut action, writer).await?;
        if verify {
            tee.check_rest(&layer.id).await?;
        }
        Ok(())
    }
}

/// Writes one layer from a stream of its tar over what `writer` holds.
pub(crate) async fn overwrite_from<R: AsyncRead + Unpin>(reader: R, writer: &mut TreeWriter) -> Result<()> {
    apply_entries(reader, &mut |path, _| Ok(overwrite_action(path)), writer).await
}

/// Does with each entry of a layer's tar what `action` says.
async fn apply_entries<R: AsyncRead + Unpin>(
    reader: R,
    action: &mut impl FnMut(&[u8], &Kind) -> Result<Action>,
    writer: &mut TreeWriter,
) -> Result<()> {
    let root = writer.root_path().to_path_buf();
    let mut written = WrittenPaths::default();
    let mut tar = tokio_tar::Archive::new(reader);
    let mut entries = tar.entries().map_err(|e| archive(e.to_string()))?;
    while let Some(mut entry) = next_entry(&mut entries).await? {
        let Some(info) = entry_info(&mut entry).await? else { continue };
        let todo = action(&info.path, &info.kind)?;
        if matches!(todo, Action::Skip) {
            continue;
        }
        let Some(rel) = in_rootfs(&info.path) else { continue };
        match todo {
            Action::Skip => {}
            Action::Write => {
                write_entry(writer, rel, b"rootfs/", &info, &mut entry).await?;
                written.insert(rel);
            }
            Action::Hide(Whiteout::Entry(target)) => {
                let target = in_rootfs(&target).unwrap_or_default();
                if !written.contains(target) {
                    writer.remove(target).at(&root)?;
                }
            }
            Action::Hide(Whiteout::Opaque(dir)) => {
                writer.clear_dir(in_rootfs(&dir).unwrap_or_default(), |path| written.contains(path)).at(&root)?;
            }
        }
    }
    Ok(())
}

/// The paths a layer wrote, which its own whiteouts leave alone, by their keyed hashes.
#[derive(Default)]
struct WrittenPaths {
    hash: KeyedHash,
    hashes: HashedSet,
}

impl WrittenPaths {
    fn insert(&mut self, path: &[u8]) {
        let hash = self.hash.of(path);
        self.hashes.insert(hash);
    }

    fn contains(&self, path: &[u8]) -> bool {
        self.hashes.contains(&self.hash.of(path))
    }
}

/// What to do with one entry of a layer.
enum Action {
    Skip,
    Write,
    /// A whiteout, applied to what the layers below wrote.
    Hide(Whiteout),
}

/// `rootfs/x/y` → `x/y`, `rootfs` → the root itself; `None` outside rootfs.
fn in_rootfs(path: &[u8]) -> Option<&[u8]> {
    match path.strip_prefix(b"rootfs") {
        Some(b"") => Some(&b""[..]),
        Some(rest) if rest.starts_with(b"/") => Some(&rest[1..]),
        _ => None,
    }
}

/// A dependency chain in which every image depends on the next and none has a path whitelist.
pub(crate) fn is_plain_chain(layers: &[Layer]) -> bool {
    layers.iter().enumerate().all(|(i, l)| l.manifest.path_whitelist.is_empty() && l.parent == i.checked_sub(1))
}

fn overwrite_action(path: &[u8]) -> Action {
    if path == b"manifest" {
        return Action::Skip;
    }
    match whiteout(path) {
        Ok(Some(w)) => Action::Hide(w),
        // The store refused odd whiteouts at import; an entry it let in is written.
        _ => Action::Write,
    }
}

/// The path whitelists that apply to one layer: its own (files only), and the one of the
/// top-most image above it that has one (everything).
struct LayerFilter {
    own: Option<HashSet<Vec<u8>>>,
    upper: Option<HashSet<Vec<u8>>>,
}

fn whitelist(manifest: &ImageManifest) -> Option<HashSet<Vec<u8>>> {
    if manifest.path_whitelist.is_empty() {
        return None;
    }
    Some(manifest.path_whitelist.iter().map(|p| format!("rootfs{}", p.trim_end_matches('/')).into_bytes()).collect())
}

impl LayerFilter {
    fn new(layers: &[Layer], i: usize) -> Self {
        let mut upper = None;
        let mut ancestor = layers[i].parent;
        while let Some(a) = ancestor {
            if let Some(list) = whitelist(&layers[a].manifest) {
                upper = Some(list);
            }
            ancestor = layers[a].parent;
        }
        LayerFilter { own: whitelist(&layers[i].manifest), upper }
    }
}

/// Decides, layer by layer from the top, which image provides each path. Paths are kept as a
/// `PathTree`, so that looking at an entry's ancestors costs its path's length once.
#[derive(Default)]
struct Selector {
    paths: PathTree<Selection>,
    pending: Vec<Whiteout>,
}

/// What the layers read so far say of one path.
#[derive(Default)]
struct Selection {
    /// The kind of entry and the image that provides it.
    provided: Option<(EntryClass, usize)>,
    /// An upper image has entries below it: it stays a directory.
    implied_dir: bool,
    /// A whiteout in an upper image hides it, and all below it.
    hidden: bool,
    /// An opaque whiteout in an upper image hides what lower images have below it.
    opaque: bool,
}

impl Selector {
    fn decide(&mut self, filter: &LayerFilter, layer: usize, path: &[u8], kind: &Kind) -> Result<bool> {
        if path == b"manifest" {
            return Ok(false);
        }
        if let Some(w) = whiteout(path).map_err(archive)? {
            self.pending.push(w);
            return Ok(false);
        }
        let class = if *kind == Kind::Dir { EntryClass::Directory } else { EntryClass::Other };
        if path != b"rootfs" {
            if class != EntryClass::Directory && filter.own.as_ref().is_some_and(|w| !w.contains(path)) {
                return Ok(false);
            }
            if filter.upper.as_ref().is_some_and(|w| !w.contains(path)) {
                return Ok(false);
            }
        }
        self.paths.walk(path);
        let walked = self.paths.walked();
        let (node, _) = *walked.last().expect("a path has at least one component");
        let ancestors = walked.len() - 1;
        let this = self.paths.value(node);
        if path == b"rootfs" {
            let first = this.is_none_or(|s| s.provided.is_none());
            let provide = class == EntryClass::Directory && first;
            if provide {
                self.paths.value_mut(node).provided = Some((class, layer));
            }
            return Ok(provide);
        }
        if this.is_some_and(|s| s.provided.is_some() || s.hidden) {
            return Ok(false);
        }
        let blocked = walked[..ancestors].iter().any(|&(dir, _)| {
            self.paths
                .value(dir)
                .is_some_and(|s| s.hidden || s.opaque || matches!(s.provided, Some((EntryClass::Other, _))))
        });
        if blocked {
            return Ok(false);
        }
        if let Kind::HardLink(target) = kind {
            // A link can only be made to a file this same image provides.
            let provider = self.paths.find(target).and_then(|t| self.paths.value(t)).and_then(|s| s.provided);
            if provider != Some((EntryClass::Other, layer)) {
                return Ok(false);
            }
        }
        if class != EntryClass::Directory && this.is_some_and(|s| s.implied_dir) {
            return Ok(false);
        }
        let chosen = self.paths.value_mut(node);
        chosen.implied_dir = false;
        chosen.provided = Some((class, layer));
        // A path's parents are directories from here down, even where the image has no entry
        // for them: a lower image may give them their mode and owner, but cannot put a symlink
        // or a file in their place.
        for i in (0..ancestors).rev() {
            let dir = self.paths.walked()[i].0;
            let above = self.paths.value_mut(dir);
            if above.provided.is_some() || above.implied_dir {
                break;
            }
            above.implied_dir = true;
        }
        Ok(true)
    }

    /// Whiteouts hide only what lies in the images below the one that holds them.
    fn end_layer(&mut self) {
        for w in std::mem::take(&mut self.pending) {
            let (path, opaque) = match &w {
                Whiteout::Entry(path) => (path, false),
                Whiteout::Opaque(dir) => (dir, true),
            };
            self.paths.walk(path);
            // An opaque whiteout at the archive's top (no import lets one through) has no path
            // to mark.
            let Some(&(node, _)) = self.paths.walked().last() else { continue };
            let selection = self.paths.value_mut(node);
            if opaque {
                selection.opaque = true;
            } else {
                selection.hidden = true;
            }
        }
    }
}
