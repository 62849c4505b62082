//! Docker and OCI images without a registry: `docker-archive:PATH` (the tarball of `docker save`
//! or skopeo), `oci:PATH[:REF]` (an OCI image layout) and `oci-archive:PATH[:REF]`, named as
//! skopeo names its transports. Every digest is checked: the manifest against its descriptor,
//! the config, each layer's blob and its uncompressed content against the config's diff_ids.

mod choose;
mod container;
mod convert;
mod document;
mod last_entries;
pub mod naming;
mod progressive;
mod sparse;
mod types;
mod unpadded_end;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rkt_store::appc::{AppString, NameValue};
use rkt_store::{BroughtIn, ImageId, RemoteRecord, Store, StoreError};
use tokio::sync::watch;

use crate::progress::{Activity, ProgressHandle};
use crate::task::{try_join_bounded, Job};
use choose::choose;
use container::Container;
pub use container::{LayerBlob, ReadAgain, Reader, Reopen};
pub use convert::DamagedImage;
pub(crate) use convert::{import_layer, sha256_hex, LayerSource};
pub(crate) use document::{check_document, parse_json, Shape};
pub(crate) use types::{Descriptor, DockerSaveEntry, Document, ImageConfigFile};

/// Manifests, indexes and configs larger than this are refused unread.
pub(crate) const MAX_DOCUMENT: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("layer {diff_id}: {source}")]
    Layer { diff_id: String, source: StoreError },
    /// A layer gives an entry's path again, otherwise: converted again keeping the last entries
    /// (see `last_entries`), unless that conversion fails too.
    #[error("layer {diff_id}: {source}")]
    GivenAgain { diff_id: String, source: StoreError },
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    Digest { what: String, expected: String, actual: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciSource {
    DockerArchive { path: PathBuf, reference: Option<String> },
    Layout { path: PathBuf, reference: Option<String> },
    LayoutArchive { path: PathBuf, reference: Option<String> },
}

impl OciSource {
    /// `docker-archive:PATH[:REF]`, `oci:PATH[:REF]`, `oci-archive:PATH[:REF]`; the path ends at
    /// the first colon, as skopeo reads them.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        let (path, reference) = match rest.split_once(':') {
            Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
            _ => (PathBuf::from(rest.trim_end_matches(':')), None),
        };
        match kind {
            "docker-archive" => Some(OciSource::DockerArchive { path, reference }),
            "oci" => Some(OciSource::Layout { path, reference }),
            "oci-archive" => Some(OciSource::LayoutArchive { path, reference }),
            _ => None,
        }
    }
}

/// What an import found: the image's name, version and the parts of the image to convert.
pub(crate) struct Plan {
    pub name: String,
    pub version: String,
    pub config_digest: String,
    pub manifest_digest: Option<String>,
    pub config: ImageConfigFile,
    /// Each layer's file in the container, its expected digest, and its size as its descriptor
    /// gives it (0: unknown, as in a `docker save` tarball).
    pub layers: Vec<(String, Option<String>, u64)>,
    pub original: String,
}

fn blob_path(digest: &str) -> Result<String, OciError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| OciError::Invalid(format!("unsupported digest {digest:?} (sha256 only)")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(OciError::Invalid(format!("malformed digest {digest:?}")));
    }
    Ok(format!("blobs/sha256/{hex}"))
}

/// Reads a blob named by its descriptor, checking its digest and its size limit.
async fn read_blob(container: &Container, desc: &Descriptor, what: &str) -> Result<Vec<u8>, OciError> {
    let bytes = container.read_small(&blob_path(&desc.digest)?, MAX_DOCUMENT).await?;
    if desc.size != 0 && bytes.len() as u64 != desc.size {
        return Err(OciError::Invalid(format!("{what} is {} bytes, its descriptor says {}", bytes.len(), desc.size)));
    }
    let actual = format!("sha256:{}", sha256_hex(&bytes));
    if actual != desc.digest {
        return Err(OciError::Digest { what: what.into(), expected: desc.digest.clone(), actual });
    }
    Ok(bytes)
}

/// Picks the manifest for this host from an index or manifest list.
pub(crate) fn pick_platform(manifests: &[Descriptor]) -> Result<&Descriptor, OciError> {
    let arch = naming::host_go_arch();
    manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch))
        .ok_or_else(|| {
            let mut has: Vec<String> = manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            has.dedup();
            let has = if has.is_empty() { "no platforms named".to_string() } else { has.join(", ") };
            OciError::Invalid(format!("the image has no manifest for linux/{arch} (it has: {has})"))
        })
}

async fn plan_layout(container: &Container, reference: Option<&str>, dir_name: &str) -> Result<Plan, OciError> {
    let layout: serde_json::Value =
        parse_json(&container.read_small("oci-layout", 4096).await?, "oci-layout", Shape::Layout)?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        return Err(OciError::Invalid("oci-layout has no imageLayoutVersion".into()));
    }
    let index: Document =
        parse_json(&container.read_small("index.json", MAX_DOCUMENT).await?, "index.json", Shape::Document)?;
    check_document(&index, "index.json")?;
    let manifests = index.manifests.unwrap_or_default();
    fn ref_name_of(m: &Descriptor) -> Option<&str> {
        m.annotations.get("org.opencontainers.image.ref.name").map(String::as_str)
    }
    let chosen = choose(
        &manifests,
        reference,
        |m, r| ref_name_of(m) == Some(r),
        |m| ref_name_of(m).into_iter().collect(),
        ("layout", "oci:PATH:REF"),
    )?;
    let mut desc = chosen.item.clone();
    let ref_name = chosen.named.map(str::to_string).or_else(|| ref_name_of(&desc).map(str::to_string));
    let mut doc: Document =
        parse_json(&read_blob(container, &desc, "the manifest").await?, "the manifest", Shape::Document)?;
    check_document(&doc, "the manifest")?;
    if let Some(list) = &doc.manifests {
        desc = pick_platform(list)?.clone();
        doc = parse_json(
            &read_blob(container, &desc, "the platform manifest").await?,
            "the platform manifest",
            Shape::Document,
        )?;
        check_document(&doc, "the platform manifest")?;
    }
    let config_desc = doc.config.ok_or_else(|| OciError::Invalid("the manifest has no config".into()))?;
    config_desc.check_config().map_err(OciError::Invalid)?;
    let config: ImageConfigFile = parse_json(
        &read_blob(container, &config_desc, "the image config").await?,
        "the image config",
        Shape::ImageConfig,
    )?;
    let mut layers = Vec::new();
    for layer in doc.layers.unwrap_or_default() {
        layer.check_layer().map_err(OciError::Invalid)?;
        layers.push((blob_path(&layer.digest)?, Some(layer.digest), layer.size));
    }
    let (name, version) = naming::name_for(ref_name.as_deref(), dir_name);
    Ok(Plan {
        name,
        version,
        config_digest: config_desc.digest,
        manifest_digest: Some(desc.digest),
        config,
        layers,
        original: ref_name.unwrap_or_default(),
    })
}

async fn plan_docker_archive(
    container: &Container,
    reference: Option<&str>,
    file_name: &str,
) -> Result<Plan, OciError> {
    let entries: Vec<DockerSaveEntry> = parse_json(
        &container.read_small("manifest.json", MAX_DOCUMENT).await?,
        "manifest.json",
        Shape::DockerSaveEntry,
    )?;
    let chosen = choose(
        &entries,
        reference,
        |e, r| e.repo_tags.iter().flatten().any(|t| t == r || naming::same_docker_ref(t, r)),
        |e| e.repo_tags.iter().flatten().map(String::as_str).collect(),
        ("archive", "docker-archive:PATH:NAME:TAG"),
    )?;
    let entry = chosen.item;
    let config_bytes = container.read_small(&entry.config, MAX_DOCUMENT).await?;
    let config_hex = sha256_hex(&config_bytes);
    // `docker save` names the config by its digest: hold it to that name.
    let stem = entry.config.rsplit('/').next().unwrap_or(&entry.config).trim_end_matches(".json");
    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != config_hex {
        return Err(OciError::Digest {
            what: "the image config".into(),
            expected: format!("sha256:{stem}"),
            actual: format!("sha256:{config_hex}"),
        });
    }
    let config: ImageConfigFile = parse_json(&config_bytes, "the image config", Shape::ImageConfig)?;
    let tag = chosen.named.map(str::to_string).or_else(|| entry.repo_tags.as_ref().and_then(|t| t.first().cloned()));
    let (name, version) = naming::name_for(tag.as_deref(), file_name);
    let layers = entry
        .layers
        .iter()
        .map(|l| {
            let digest = l.strip_prefix("blobs/sha256/").filter(|h| h.len() == 64).map(|h| format!("sha256:{h}"));
            (l.clone(), digest, 0)
        })
        .collect();
    Ok(Plan {
        name,
        version,
        config_digest: format!("sha256:{config_hex}"),
        manifest_digest: None,
        config,
        layers,
        original: tag.unwrap_or_default(),
    })
}

/// Where the ACIs of Docker layers are named.
const LAYER_PREFIX: &str = "layers.rkt.local/";

/// Whether a stored image is the ACI of a Docker layer (which `image list` shows only with
/// `--all`, or when no image is made of it).
pub fn is_docker_layer(name: &str) -> bool {
    name.starts_with(LAYER_PREFIX)
}
/// The annotation of a layer's ACI that gives the digest of the layer's uncompressed tar.
const DIFF_ID_ANNOTATION: &str = "appc.io/docker/diffid";

/// The name of the ACI of a layer: its chain ID, which says what lies below it too.
pub(crate) fn layer_name(chain: &str) -> String {
    format!("{LAYER_PREFIX}{}", chain.replace(':', "-"))
}

pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for diff in diff_ids {
        let chain = match out.last() {
            None => diff.clone(),
            Some(prev) => format!("sha256:{}", sha256_hex(format!("{prev} {diff}").as_bytes())),
        };
        out.push(chain);
    }
    out
}

/// A Docker or OCI image converted into the store, and what to take back should the caller find
/// it unusable (its tree cannot be rendered, say), so that the store is left as it was.
#[derive(Debug)]
pub struct Converted {
    /// The image's ACI, on top of its layers'.
    pub id: ImageId,
    pub undo: ConvertUndo,
    /// Stored layers found damaged while converting: what they held was fetched again.
    pub damaged: Vec<DamagedImage>,
}

impl Converted {
    /// An image found in the store as it is: nothing to take back.
    pub fn found(id: ImageId) -> Self {
        Converted { id, undo: ConvertUndo::default(), damaged: Vec::new() }
    }
}

#[derive(Debug, Default)]
pub struct ConvertUndo {
    /// The images this conversion brought into the store, each after those it depends on.
    brought_in: Vec<BroughtIn>,
    /// The `docker://` string's remote row as the conversion wrote it, and as it was before.
    remote: Option<(RemoteRecord, Option<RemoteRecord>)>,
}

impl ConvertUndo {
    /// Takes back what the conversion brought in, top first, each but what other images now
    /// depend on (see `Store::take_back`); goes on past a failure and returns the first.
    pub fn undo(self, store: &Store) -> Result<(), StoreError> {
        let mut first = Ok(());
        for id in self.brought_in.iter().rev() {
            if let Err(e) = store.take_back(id) {
                first = first.and(Err(e));
            }
        }
        let remote = match self.remote {
            // A fetch beside this one wrote the row since: it is that fetch's now. (A row that is
            // gone went with the image this conversion brought in.)
            Some((written, _)) if store.remote(&written.url).ok().flatten().is_some_and(|now| now != written) => Ok(()),
            Some((_, Some(before))) if store.image(&before.image_id).is_ok() => store.set_remote(&before),
            Some((written, _)) => store.remove_remote(&written.url),
            None => Ok(()),
        };
        first.and(remote)
    }

    pub(crate) fn with_remote(self, written: RemoteRecord, before: Option<RemoteRecord>) -> Self {
        ConvertUndo { remote: Some((written, before)), ..self }
    }
}

/// Imports a Docker or OCI image from a file or directory, as an ACI on top of its layers'.
/// With `render`, its tree is rendered while the layers are imported. `progress` hears of a
/// compressed archive's decompression and of each layer read.
pub async fn import(
    store: &Store,
    source: &OciSource,
    render: bool,
    progress: &ProgressHandle,
) -> Result<Converted, OciError> {
    let (container, plan) = match source {
        OciSource::Layout { path, reference } => {
            let container = Container::dir(path);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let plan = plan_layout(&container, reference.as_deref(), &name).await?;
            (container, plan)
        }
        OciSource::LayoutArchive { path, reference } => {
            let container = Container::tar(path, store, progress).await?;
            let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let plan = plan_layout(&container, reference.as_deref(), &name).await?;
            (container, plan)
        }
        OciSource::DockerArchive { path, reference } => {
            let container = Container::tar(path, store, progress).await?;
            let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let plan = plan_docker_archive(&container, reference.as_deref(), &name).await?;
            (container, plan)
        }
    };
    let container = Arc::new(container);
    let mut layers = Vec::new();
    for (i, (file, digest, expected_size)) in plan.layers.iter().enumerate() {
        let (blob, size) = container.open(file).await?;
        // A descriptor's size is exact (the registry's streams are held to it as they arrive).
        if *expected_size != 0 && size != *expected_size {
            return Err(OciError::Invalid(format!(
                "layer {} is {size} bytes, its descriptor says {expected_size}",
                digest.as_deref().unwrap_or(file)
            )));
        }
        // A `docker save` layer is known by its diff ID (its file's name is the tool's choice).
        let diff_id = plan.config.rootfs.diff_ids.get(i);
        let what = digest.as_ref().or(diff_id).unwrap_or(file);
        let blob: Reader = Box::pin(progress.track_as(Activity::Import, what, Some(size), blob));
        let (container, file, what, progress) = (container.clone(), file.clone(), what.clone(), progress.clone());
        // A file of the layout or archive is at hand for every read.
        let reopen: Reopen = Box::new(move |_| {
            let (container, file, what, progress) = (container.clone(), file.clone(), what.clone(), progress.clone());
            Box::pin(async move {
                let (blob, _) = container.open(&file).await?;
                Ok(Box::pin(progress.track_as(Activity::Import, &what, Some(size), blob)) as Reader)
            })
        });
        layers.push(LayerBlob { reader: blob, digest: digest.clone(), reopen });
    }
    store_image(store, &plan, layers, render).await
}

/// Layers converted at once: each is a stream from a file or the network through a decoder.
const PARALLEL_LAYERS: usize = 3;

/// Imports the layers that are not in the store yet, then the image on top of them.
/// With `render`, the image's tree is rendered while the layers are imported.
pub(crate) async fn store_image(
    store: &Store,
    plan: &Plan,
    layers: Vec<LayerBlob>,
    render: bool,
) -> Result<Converted, OciError> {
    let diff_ids = &plan.config.rootfs.diff_ids;
    // Refused before anything is stored: the image on top of them could never be rendered.
    if layers.len() >= rkt_store::MAX_LAYERS {
        return Err(OciError::Invalid(format!(
            "the image has {} layers, more than the {} an image can stack",
            layers.len(),
            rkt_store::MAX_LAYERS - 1
        )));
    }
    if diff_ids.len() != layers.len() {
        return Err(OciError::Invalid(format!(
            "the config lists {} layers, the manifest {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    let (os, arch) = naming::appc_os_arch(&plan.config);
    let chains = chain_ids(diff_ids);
    // Held until the image is stored on its layers: a failed fetch beside this one waits for
    // it before taking back the layers it brought in, and then keeps those this image uses.
    let relied_on = store.lock_shared()?;
    let stored: Vec<Option<ImageId>> = chains
        .iter()
        .map(|c| store.find(&AppString { name: layer_name(c), labels: Vec::new() }))
        .collect::<Result<_, _>>()?;
    // The layers this fetch brings into the store: taken back if the image is refused, so that
    // bad input leaves the store as it was (a layer that checked out is of no use alone).
    let committed: Arc<Mutex<Vec<(usize, BroughtIn)>>> = Arc::default();
    let damaged: Arc<Mutex<Vec<DamagedImage>>> = Arc::default();
    // Each import task holds a sender: once all are gone, no import can still commit.
    let (running, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let result: Result<Converted, OciError> = async {
        // Only worth it when something is imported: a tree of stored layers may well exist already.
        let progressive = if render && stored.iter().any(Option::is_none) {
            progressive::ProgressiveRender::start(store, chains.len()).ok()
        } else {
            None
        };
        let order = progressive.as_ref().map(|p| p.order());
        let mut pending: Vec<Job<'_, (), OciError>> = Vec::new();
        // A layer the image gives twice (the same diff ID under two chains) is downloaded once:
        // the later waits for the earlier's import and is copied from it. Layers are admitted
        // in order, so the earlier is running or done when the later waits.
        let mut first_imports: HashMap<&str, watch::Receiver<bool>> = HashMap::new();
        for (i, (blob, diff_id)) in layers.into_iter().zip(diff_ids).enumerate() {
            let name = layer_name(&chains[i]);
            if let Some(id) = &stored[i] {
                if let Some(order) = &order {
                    order.stored(i, id.clone());
                }
                continue;
            }
            let mut manifest = serde_json::json!({
                "acKind": "ImageManifest",
                "acVersion": rkt_store::appc::manifest::APPC_VERSION,
                "name": name,
                "labels": [{"name": "os", "value": os}, {"name": "arch", "value": arch}],
                "annotations": [{"name": DIFF_ID_ANNOTATION, "value": diff_id}],
            });
            if i > 0 {
                manifest["dependencies"] = serde_json::json!([{"imageName": layer_name(&chains[i - 1])}]);
            }
            let (imported, earlier) = match first_imports.get(diff_id.as_str()) {
                Some(earlier) => (None, Some(earlier.clone())),
                None => {
                    let (imported, waiting) = watch::channel(false);
                    first_imports.insert(diff_id, waiting);
                    (Some(imported), None)
                }
            };
            let (store, diff_id, order) = (store.clone(), diff_id.clone(), order.clone());
            let (committed, running, damaged) = (committed.clone(), running.clone(), damaged.clone());
            // Each layer is imported by a task of its own, so that the layers' SHA-512s (the
            // slowest stage) run on every core; spawned only once admitted, to keep the bound.
            pending.push(Box::pin(async move {
                let follow = order.clone();
                let mut task = crate::task::AbortOnDrop(tokio::spawn(async move {
                    let _running = running;
                    if let Some(mut earlier) = earlier {
                        // Failed, it fails the image: this one is dropped before it reads.
                        let _ = earlier.wait_for(|imported| *imported).await;
                    }
                    // The same content stored under another chain is copied from the store.
                    let source = match store.find_annotated(LAYER_PREFIX, DIFF_ID_ANNOTATION, &diff_id)? {
                        Some(donor) => LayerSource::Stored(donor, blob),
                        None => LayerSource::Blob(blob),
                    };
                    let render = follow.as_ref().map(|order| (order, i));
                    let manifest = manifest.to_string();
                    let layer = import_layer(&store, source, &diff_id, manifest.as_bytes(), render).await?;
                    if let Some(brought_in) = layer.brought_in {
                        committed.lock().unwrap_or_else(|p| p.into_inner()).push((i, brought_in));
                    }
                    damaged.lock().unwrap_or_else(|p| p.into_inner()).extend(layer.damaged);
                    if let Some(imported) = imported {
                        imported.send_replace(true);
                    }
                    Ok::<_, OciError>(layer.id)
                }));
                let id = (&mut task.0).await.map_err(|e| OciError::Io(format!("layer import: {e}")))??;
                if let Some(order) = &order {
                    order.stored(i, id);
                }
                Ok(())
            }));
        }
        try_join_bounded(pending, PARALLEL_LAYERS).await?;
        let top = chains.last().map(|c| layer_name(c));
        let manifest = naming::image_manifest(
            &plan.name,
            &plan.version,
            &os,
            &arch,
            &plan.config,
            top.as_deref(),
            &naming::Provenance {
                original: &plan.original,
                config_digest: &plan.config_digest,
                manifest_digest: plan.manifest_digest.as_deref(),
            },
        )?;
        // The image itself: its manifest over an empty root filesystem, on top of its layers,
        // whose root is as the topmost layer that had one left it.
        let latest = plan.version == "latest";
        let mut image = store.build_aci(manifest.as_bytes())?;
        let mut layer_ids = Vec::with_capacity(chains.len());
        for chain in chains.iter().rev() {
            if let Some(id) = store.find(&AppString { name: layer_name(chain), labels: Vec::new() })? {
                layer_ids.push(id);
            }
        }
        image.root_of_first(&layer_ids).await?;
        let imported = image.finish(latest)?;
        if let Some(progressive) = progressive {
            // A render that failed is done again, the ordinary way, by whoever needs the tree.
            let _ = progressive.finish(store, &imported.id).await;
        }
        let mut brought_in = bottom_up(&committed);
        brought_in.extend(imported.brought_in());
        let damaged = std::mem::take(&mut *damaged.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Converted { id: imported.id, undo: ConvertUndo { brought_in, remote: None }, damaged })
    }
    .await;
    if result.is_err() {
        // An aborted import may be running on the other worker until its next await, and
        // commit meanwhile: the layers are taken back once every import task has ended.
        drop(running);
        while all_ended.recv().await.is_some() {}
        drop(relied_on);
        let layers = ConvertUndo { brought_in: bottom_up(&committed), remote: None };
        let store = store.clone();
        // Waits, off the runtime's workers, for the fetches that rely on these layers. The
        // refusal is what the user needs to hear; a layer left behind is only space.
        let _ = tokio::task::spawn_blocking(move || layers.undo(&store)).await;
    }
    result
}

/// The layers an import brought in, bottom first (they commit in any order, three at a time):
/// taken back top first, each is then no longer a dependency of the one above it.
fn bottom_up(committed: &Mutex<Vec<(usize, BroughtIn)>>) -> Vec<BroughtIn> {
    let mut layers = std::mem::take(&mut *committed.lock().unwrap_or_else(|p| p.into_inner()));
    layers.sort_by_key(|(i, _)| *i);
    layers.into_iter().map(|(_, id)| id).collect()
}

/// Labels a stored Docker image carries, for lookups by name.
pub fn labels(version: &str, os: &str, arch: &str) -> Vec<NameValue> {
    [("version", version), ("os", os), ("arch", arch)]
        .iter()
        .map(|(n, v)| NameValue { name: n.to_string(), value: v.to_string() })
        .collect()
}

#[cfg(test)]
mod shared_layer_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        assert_eq!(
            OciSource::parse("oci:/tmp/l:latest"),
            Some(OciSource::Layout { path: "/tmp/l".into(), reference: Some("latest".into()) })
        );
        assert_eq!(
            OciSource::parse("docker-archive:/tmp/a.tar:busybox:1.0"),
            Some(OciSource::DockerArchive { path: "/tmp/a.tar".into(), reference: Some("busybox:1.0".into()) })
        );
        assert_eq!(
            OciSource::parse("oci-archive:/x.tar"),
            Some(OciSource::LayoutArchive { path: "/x.tar".into(), reference: None })
        );
        assert_eq!(OciSource::parse("docker://busybox"), None);
    }

    #[test]
    fn chains() {
        let ids = vec!["sha256:aa".to_string(), "sha256:bb".to_string()];
        let chains = chain_ids(&ids);
        assert_eq!(chains[0], "sha256:aa");
        assert_eq!(chains[1], format!("sha256:{}", sha256_hex(b"sha256:aa sha256:bb")));
    }

    #[test]
    fn ambiguous_documents() {
        let both: Document = serde_json::from_str(r#"{"manifests":[],"layers":[]}"#).unwrap();
        assert!(check_document(&both, "x").is_err());
        let liar: Document =
            serde_json::from_str(r#"{"mediaType":"application/vnd.oci.image.index.v1+json","layers":[]}"#).unwrap();
        assert!(check_document(&liar, "x").is_err());
    }
}
