//! `docker://` images: the registry v2 API, every digest checked, each layer streamed from the
//! registry through its digests into the store, and a layer already stored never downloaded.

mod blob;
mod client;
mod credentials;
mod grammar;

use rkt_store::{now_ns, ImageId, RemoteRecord, Store};

pub use client::{base64, base64_decode, RegistryClient};
pub use credentials::stored_credentials;

use crate::oci::naming::parse_docker_ref;
use crate::oci::{
    check_document, parse_json, pick_platform, sha256_hex, store_image, Converted, Descriptor, Document,
    ImageConfigFile, OciError, Plan, ReadAgain, Reader, Reopen, Shape, MAX_DOCUMENT,
};
use crate::progress::{Activity, ProgressHandle};

const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// `[REGISTRY[:PORT]/]IMAGE[:TAG|@DIGEST]`, normalised as docker2aci does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
}

impl DockerRef {
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (s, None),
        };
        if let Some(d) = digest.as_deref().filter(|d| !grammar::is_digest(d)) {
            return Err(OciError::Invalid(format!("{s:?}: bad digest {d:?}")));
        }
        let (registry, repository, tag) = parse_docker_ref(name);
        let tag =
            if digest.is_some() && !name.rsplit('/').next().unwrap_or("").contains(':') { String::new() } else { tag };
        grammar::check_registry(&registry)
            .and_then(|()| grammar::check_repository(&registry, &repository))
            .and_then(|()| if tag.is_empty() { Ok(()) } else { grammar::check_tag(&tag) })
            .map_err(|why| OciError::Invalid(format!("{s:?} is not a Docker image reference: {why}")))?;
        Ok(DockerRef { registry, repository, tag, digest })
    }

    /// What the registry is asked for: the digest when given, else the tag.
    fn reference(&self) -> &str {
        self.digest.as_deref().unwrap_or(&self.tag)
    }
}

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `--insecure-options=http`: plain http.
    pub plain_http: bool,
    /// `--insecure-options=tls`: no certificate verification.
    pub skip_tls_verify: bool,
    pub credentials: Option<(String, String)>,
    /// Where layer downloads report their progress.
    pub progress: crate::progress::ProgressHandle,
    /// Layer downloads at once per registry.
    pub slots: crate::task::HostSlots,
    /// Render the image's tree while its layers are imported.
    pub render: bool,
}

/// The store's row for an image fetched as `typed` (`docker://…` as the user wrote it).
pub fn remote_url(typed: &str) -> String {
    format!("docker://{}", typed.trim_start_matches("docker://").trim_start_matches("docker:"))
}

/// What the store remembers of `docker://` fetches of the image `typed` names: the fetch of
/// that very string first, then, newest first, those of the same reference spelled otherwise
/// (`busybox`, `busybox:latest`, `docker.io/library/busybox`), so that an image pulled under
/// one spelling runs offline under another. rkt kept a row per spelling and found only its own.
pub fn stored_fetches(store: &Store, typed: &str) -> Result<Vec<RemoteRecord>, OciError> {
    let url = remote_url(typed);
    let mut found: Vec<RemoteRecord> = store.remote(&url)?.into_iter().collect();
    let Ok(wanted) = DockerRef::parse(url.trim_start_matches("docker://")) else { return Ok(found) };
    let mut alike: Vec<RemoteRecord> = store
        .remotes_starting("docker://")?
        .into_iter()
        .filter(|r| r.url != url && DockerRef::parse(r.url.trim_start_matches("docker://")).is_ok_and(|r| r == wanted))
        .collect();
    alike.sort_by_key(|r| std::cmp::Reverse(r.download_time));
    found.extend(alike);
    Ok(found)
}

/// Fetches an image from its registry into the store. A tag whose manifest digest has not
/// changed since the last fetch costs one manifest request and no blob traffic.
pub async fn import(
    store: &Store,
    typed: &str,
    reference: &DockerRef,
    options: &RegistryOptions,
) -> Result<Converted, OciError> {
    let client = std::sync::Arc::new(RegistryClient::new(
        &reference.registry,
        &reference.repository,
        options.plain_http,
        options.skip_tls_verify,
        options.credentials.clone(),
    )?);
    let url = remote_url(typed);
    // Unchanged, and whole: a layer lost since (a blob removed by hand and dropped by `image
    // verify`, say) is fetched again below, with the layers still there reused. Fetched under
    // another spelling of the reference only, it is recorded under this one too.
    let fetched = stored_fetches(store, typed)?;
    let unchanged = |digest: &str| -> Result<Option<ImageId>, OciError> {
        let Some(remote) =
            fetched.iter().find(|remote| remote.etag == digest && store.dependency_layers(&remote.image_id).is_ok())
        else {
            return Ok(None);
        };
        if remote.url != url {
            store.set_remote(&RemoteRecord { url: url.clone(), download_time: now_ns(), ..remote.clone() })?;
        }
        Ok(Some(remote.image_id.clone()))
    };
    // What the tag points to, asked with a HEAD: a registry's word is enough to keep what is
    // stored (it brings nothing in), and Docker Hub does not count it as a pull.
    if !fetched.is_empty() {
        if let Some(digest) = client.manifest_digest(reference.reference(), ACCEPT).await? {
            if let Some(id) = unchanged(&digest)? {
                return Ok(Converted::found(id));
            }
        }
    }
    let (bytes, content_type) = client.manifest(reference.reference(), ACCEPT, MAX_DOCUMENT).await?;
    let top_digest = format!("sha256:{}", sha256_hex(&bytes));
    if let Some(wanted) = &reference.digest {
        if *wanted != top_digest {
            return Err(OciError::Digest { what: "the manifest".into(), expected: wanted.clone(), actual: top_digest });
        }
    }
    if let Some(id) = unchanged(&top_digest)? {
        return Ok(Converted::found(id));
    }
    let mut doc: Document = parse_json(&bytes, "the manifest", Shape::Document)?;
    check_media_type(&doc, &content_type)?;
    check_document(&doc, "the manifest")?;
    let mut manifest_digest = top_digest.clone();
    if let Some(list) = &doc.manifests {
        let desc = pick_platform(list)?.clone();
        let (bytes, content_type) = client.manifest(&desc.digest, ACCEPT, MAX_DOCUMENT).await?;
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        if actual != desc.digest {
            return Err(OciError::Digest { what: "the platform manifest".into(), expected: desc.digest, actual });
        }
        doc = parse_json(&bytes, "the platform manifest", Shape::Document)?;
        check_media_type(&doc, &content_type)?;
        check_document(&doc, "the platform manifest")?;
        manifest_digest = actual;
    }
    let config_desc = doc.config.ok_or_else(|| OciError::Invalid("the manifest has no config".into()))?;
    config_desc.check_config().map_err(OciError::Invalid)?;
    let config_bytes = client.small_blob(&config_desc.digest, MAX_DOCUMENT).await?;
    let actual = format!("sha256:{}", sha256_hex(&config_bytes));
    if actual != config_desc.digest {
        return Err(OciError::Digest { what: "the image config".into(), expected: config_desc.digest, actual });
    }
    let config: ImageConfigFile = parse_json(&config_bytes, "the image config", Shape::ImageConfig)?;
    let layer_descs = doc.layers.unwrap_or_default();
    if config.rootfs.diff_ids.len() != layer_descs.len() {
        return Err(OciError::Invalid("the config and the manifest list different numbers of layers".into()));
    }
    let mut blobs = Vec::new();
    for desc in &layer_descs {
        desc.check_layer().map_err(OciError::Invalid)?;
        // The stream asks the registry only when read; store_image never reads a stored layer's,
        // so a layer once stored is never downloaded again.
        let open = {
            let (client, desc) = (client.clone(), desc.clone());
            let (slots, progress) = ((options.slots.clone(), reference.registry.clone()), options.progress.clone());
            move || -> Reader {
                let stream = blob::BlobStream::new(client.clone(), &desc.digest, desc.size, slots.clone());
                Box::pin(progress.track(&desc.digest, (desc.size > 0).then_some(desc.size), stream))
            }
        };
        let reopen = reopen_layer(open.clone(), store.clone(), options.progress.clone(), desc);
        blobs.push(crate::oci::LayerBlob { reader: open(), digest: Some(desc.digest.clone()), reopen });
    }
    let version = if reference.tag.is_empty() {
        reference.digest.clone().unwrap_or_default().replace(':', "-")
    } else {
        reference.tag.clone()
    };
    let plan = Plan {
        name: rkt_store::appc::ident::sanitize_ac_identifier(&format!(
            "{}/{}",
            reference.registry, reference.repository
        )),
        version,
        config_digest: config_desc.digest.clone(),
        manifest_digest: Some(manifest_digest),
        config,
        layers: Vec::new(),
        original: typed.trim_start_matches("docker://").trim_start_matches("docker:").to_string(),
    };
    let converted = store_image(store, &plan, blobs, options.render).await?;
    let before = store.remote(&url)?;
    let written = RemoteRecord {
        url,
        sig_url: String::new(),
        etag: top_digest,
        image_id: converted.id.clone(),
        cache_max_age: 0,
        download_time: now_ns(),
    };
    store.set_remote(&written)?;
    Ok(Converted { undo: converted.undo.with_remote(written, before), ..converted })
}

/// Opens a layer's blob again for another pass of its conversion: from the copy kept of an
/// earlier download when there is one, else downloaded again, and kept as it arrives when the
/// conversion will surely read it once more.
fn reopen_layer(
    download: impl Fn() -> Reader + Send + 'static,
    store: Store,
    progress: ProgressHandle,
    desc: &Descriptor,
) -> Reopen {
    let (kept, digest, total) = (blob::KeptCopy::default(), desc.digest.clone(), (desc.size > 0).then_some(desc.size));
    Box::new(move |read_again| {
        if let Some(copy) = kept.path() {
            let (progress, digest) = (progress.clone(), digest.clone());
            return Box::pin(async move {
                let file = tokio::fs::File::open(&copy)
                    .await
                    .map_err(|e| OciError::Io(format!("the copy kept of layer {digest}: {e}")))?;
                Ok(Box::pin(progress.track_as(Activity::Import, &digest, total, file)) as Reader)
            });
        }
        // Without room for a copy, the next read downloads again.
        let scratch = (read_again == ReadAgain::Surely).then(|| store.scratch_file().ok()).flatten();
        let reader = match scratch {
            Some(scratch) => Box::pin(kept.keep(download(), scratch)),
            None => download(),
        };
        Box::pin(async move { Ok(reader) })
    })
}

/// A document's declared media type must agree with the Content-Type it was served with.
fn check_media_type(doc: &Document, content_type: &str) -> Result<(), OciError> {
    let served = content_type.split(';').next().unwrap_or("").trim();
    if let Some(declared) = &doc.media_type {
        if !served.is_empty() && served != "application/json" && served != declared {
            return Err(OciError::Invalid(format!(
                "the registry served a {served} document that says it is {declared}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::naming::DEFAULT_REGISTRY;

    #[test]
    fn an_image_fetched_under_one_spelling_is_found_under_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 1..=4 {
            let manifest = format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/i{n}"}}"#);
            ids.push(store.build_aci(manifest.as_bytes()).unwrap().finish(false).unwrap().id);
        }
        let id = |n: usize| ids[n - 1].clone();
        for (n, typed) in [(1, "busybox"), (2, "docker.io/library/busybox:latest"), (3, "busybox:1"), (4, "alpine")] {
            let url = remote_url(typed);
            let record = RemoteRecord {
                url,
                sig_url: String::new(),
                etag: String::new(),
                image_id: id(n),
                cache_max_age: 0,
                download_time: n as i64,
            };
            store.set_remote(&record).unwrap();
        }
        let found = |typed: &str| -> Vec<ImageId> {
            stored_fetches(&store, typed).unwrap().into_iter().map(|r| r.image_id).collect()
        };
        assert_eq!(found("docker://registry-1.docker.io/library/busybox"), vec![id(2), id(1)], "newest first");
        assert_eq!(found("docker://busybox"), vec![id(1), id(2)], "its own spelling first");
        assert_eq!(found("docker:library/busybox:1"), vec![id(3)]);
        assert_eq!(found("docker://busybox:2"), Vec::<ImageId>::new());
    }

    #[test]
    fn references() {
        let r = DockerRef::parse("busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            (DEFAULT_REGISTRY, "library/busybox", "latest")
        );
        let r = DockerRef::parse("127.0.0.1:5000/test/demo:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_str()), ("127.0.0.1:5000", "test/demo", "v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = DockerRef::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!((r.tag.as_str(), r.digest.as_deref()), ("", Some(d.as_str())));
        assert!(DockerRef::parse("alpine@sha256:zz").is_err());
        assert!(DockerRef::parse(&format!("alpine@sha256:{}", "A".repeat(64))).is_err());
        for bad in ["", "Busybox", "127.0.0.1:5000/Play/bb", "r.io/a/../b", "r.io/a?b=c", "busybox:.x", "busybox:a#b"] {
            let err = DockerRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a Docker image reference"), "{bad}: {err}");
        }
        assert_eq!(remote_url("docker:busybox"), "docker://busybox");
    }
}
