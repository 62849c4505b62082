//! ACIs by URL (`https://…/x.aci`): the remote cache as rkt keeps it (ETag and Cache-Control
//! max-age per URL), the signature beside the image, and the body streamed into the store, a
//! broken download resumed where the server allows it.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use reqwest::header::{HeaderMap, HeaderValue, CACHE_CONTROL, ETAG, IF_NONE_MATCH, IF_RANGE, RANGE};
use reqwest::{Response, StatusCode, Url};
use rkt_store::{now_ns, BroughtIn, ImageId, ImportOptions, RemoteRecord, Store};
use tokio::io::{AsyncRead, ReadBuf};

use crate::http::{body, client, get, host_key, io, Clients, HttpOptions};
use crate::oci::Reader;
use crate::FetchError;

/// What a downloaded image must pass before it is named.
#[derive(Default, Clone, Copy)]
pub struct UrlChecks<'a> {
    /// The keys to check its signature against, and the signature's URL.
    pub verify: Option<(&'a rkt_trust::Keystore, &'a str)>,
    /// The name and labels it must carry (an image found by discovery).
    pub expected: Option<&'a rkt_store::appc::AppString>,
}

/// How a fetch by URL ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlOutcome {
    /// Within its max-age: no request was made.
    Fresh(ImageId),
    /// The server answered 304 Not Modified.
    NotModified(ImageId),
    /// Downloaded; with what to take back should the image fail, when the store did not have
    /// it before.
    Downloaded { id: ImageId, brought_in: Option<BroughtIn> },
}

/// What a URL fetch changed in the store, for a caller that finds the image unusable (its
/// dependencies cannot be had, say) and must leave the store as it was.
#[derive(Debug)]
pub struct UrlUndo {
    url: String,
    /// The URL's row before the fetch.
    remote: Option<RemoteRecord>,
    /// The row the fetch wrote, if it wrote one.
    written: Option<RemoteRecord>,
    /// The image, when the fetch brought it into the store.
    new_image: Option<BroughtIn>,
}

impl UrlUndo {
    /// The image the fetch brought into the store, if it did.
    pub fn new_image(&self) -> Option<&BroughtIn> {
        self.new_image.as_ref()
    }

    /// Puts the URL's row back as it was before the fetch (after its image is taken back: a
    /// row whose image is gone is removed), unless another fetch of the URL has written it since.
    pub fn restore_row(self, store: &Store) -> Result<(), rkt_store::StoreError> {
        let Some(written) = &self.written else { return Ok(()) };
        // None: it went with the image the fetch brought in.
        if store.remote(&self.url)?.is_some_and(|now| now != *written) {
            return Ok(());
        }
        match &self.remote {
            Some(before) if store.image(&before.image_id).is_ok() => store.set_remote(before),
            _ => store.remove_remote(&self.url),
        }
    }

    /// Whether another fetch of the URL has taken `id` as its result since this one stored it:
    /// the URL's row names it and is not the row this fetch wrote.
    pub fn claimed_by_another(&self, store: &Store, id: &ImageId) -> Result<bool, rkt_store::StoreError> {
        let Some(written) = &self.written else { return Ok(false) };
        Ok(written.image_id == *id
            && store.remote(&self.url)?.is_some_and(|now| now != *written && now.image_id == *id))
    }

    pub fn undo(self, store: &Store) -> Result<(), rkt_store::StoreError> {
        if let Some(id) = &self.new_image {
            // Its rows in `remotes` go with it.
            store.take_back_all_unless(std::slice::from_ref(id), &|id| self.claimed_by_another(store, id))?;
        }
        self.restore_row(store)
    }
}

impl UrlOutcome {
    pub fn id(&self) -> &ImageId {
        match self {
            UrlOutcome::Fresh(id) | UrlOutcome::NotModified(id) | UrlOutcome::Downloaded { id, .. } => id,
        }
    }
}

/// Signatures larger than this are refused.
const MAX_SIGNATURE: u64 = 1 << 20;

/// The signature at `url`, or `None` when the server answers 202 (come back later).
async fn signature_attempt(client: &Clients, url: &str, options: &HttpOptions) -> Result<Option<Vec<u8>>, FetchError> {
    let resp = get(client, url, HeaderMap::new(), options).await?;
    match resp.status() {
        StatusCode::OK => {
            let mut out = Vec::new();
            let mut limited = tokio::io::AsyncReadExt::take(body(resp), MAX_SIGNATURE + 1);
            tokio::io::AsyncReadExt::read_to_end(&mut limited, &mut out)
                .await
                .map_err(|e| io(format!("{url}: {e}")))?;
            if out.len() as u64 > MAX_SIGNATURE {
                return Err(io(format!("{url}: the signature is over {MAX_SIGNATURE} bytes")));
            }
            Ok(Some(out))
        }
        StatusCode::ACCEPTED => Ok(None),
        status => Err(io(format!("error downloading signature {url}: bad HTTP status code: {}", status.as_u16()))),
    }
}

/// An image's signature, downloaded while the image is. Its answer (`None` until there is one)
/// is awaited by the check before the image is named, and watched meanwhile, so that a missing
/// signature stops the image's download at once.
struct SignatureDownload {
    url: String,
    answer: tokio::sync::watch::Receiver<Option<Result<Option<Vec<u8>>, String>>>,
    _task: crate::task::AbortOnDrop<()>,
}

impl SignatureDownload {
    fn start(client: &Clients, url: &str, options: &HttpOptions) -> Self {
        let (sender, answer) = tokio::sync::watch::channel(None);
        let (client, sig_url, options) = (client.clone(), url.to_string(), options.clone());
        let task = crate::task::AbortOnDrop(tokio::spawn(async move {
            let got = signature_attempt(&client, &sig_url, &options).await.map_err(|e| e.to_string());
            let _ = sender.send(Some(got));
        }));
        SignatureDownload { url: url.to_string(), answer, _task: task }
    }

    /// The signature; after a 202 it is asked for once more (the image is in by now).
    async fn bytes(&self, client: &Clients, options: &HttpOptions) -> Result<Vec<u8>, FetchError> {
        let mut answer = self.answer.clone();
        let first = answer.wait_for(Option::is_some).await.map(|a| a.clone());
        let first = first.map_err(|_| io("the signature download stopped"))?.expect("waited for an answer");
        match first.map_err(FetchError::Http)? {
            Some(bytes) => Ok(bytes),
            None => signature_attempt(client, &self.url, options)
                .await?
                .ok_or_else(|| io(format!("{}: the server kept deferring the signature", self.url))),
        }
    }

    /// Resolves only when the download failed.
    async fn failed(&self) -> FetchError {
        let mut answer = self.answer.clone();
        let failed = answer.wait_for(|a| matches!(a, Some(Err(_)))).await.map(|a| a.clone());
        match failed {
            Ok(Some(Err(e))) => FetchError::Http(e),
            // The signature came: nothing to stop for.
            _ => std::future::pending().await,
        }
    }
}

/// Cache-Control's max-age in seconds; `no-cache` and `no-store` mean 0, as in rkt.
fn max_age(headers: &HeaderMap) -> i64 {
    let Some(value) = headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()) else { return 0 };
    let mut age = 0;
    for directive in value.split(',').map(str::trim) {
        if directive == "no-cache" || directive == "no-store" {
            return 0;
        }
        if let Some(n) = directive.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse().unwrap_or(0);
        }
    }
    age
}

/// Fetches the ACI at `url` (pull policy `update`): no request while the stored copy is within
/// its max-age, a conditional request after that, a download when it changed.
/// With `verify`, the image is downloaded to an unnamed scratch file and imported only after
/// its signature (from the given URL) checks out against the keys trusted for its name.
pub async fn fetch_url(
    store: &Store,
    url: &str,
    options: &HttpOptions,
    checks: UrlChecks<'_>,
) -> Result<(UrlOutcome, Vec<String>, UrlUndo), FetchError> {
    let before = store.remote(url)?;
    let (outcome, signers, written) = fetch_url_changing(store, url, before.clone(), options, checks).await?;
    let new_image = match &outcome {
        UrlOutcome::Downloaded { brought_in, .. } => brought_in.clone(),
        _ => None,
    };
    Ok((outcome, signers, UrlUndo { url: url.to_string(), remote: before, written, new_image }))
}

/// `fetch_url`'s work; `remote` is the URL's row as the fetch found it. Returns the row it
/// wrote, if it wrote one.
async fn fetch_url_changing(
    store: &Store,
    url: &str,
    remote: Option<RemoteRecord>,
    options: &HttpOptions,
    checks: UrlChecks<'_>,
) -> Result<(UrlOutcome, Vec<String>, Option<RemoteRecord>), FetchError> {
    let UrlChecks { verify, expected } = checks;
    let remote = remote.filter(|r| store.image(&r.image_id).is_ok());
    if let Some(r) = &remote {
        let age_ns = now_ns() - r.download_time;
        if r.cache_max_age > 0 && age_ns < r.cache_max_age * 1_000_000_000 {
            return Ok((UrlOutcome::Fresh(r.image_id.clone()), Vec::new(), None));
        }
    }
    let client = client(options)?;
    // One download of a URL at a time: a second rkt waits here, then finds the first's work.
    let started = now_ns();
    let download = Download::lock(store, url).await?;
    let remote = match store.remote(url)?.filter(|r| store.image(&r.image_id).is_ok()) {
        Some(r) if r.download_time >= started => match claim(store, r)? {
            Some(id) => return Ok((UrlOutcome::NotModified(id), Vec::new(), None)),
            // Taken back by its failed fetch before the claim: fetched anew.
            None => None,
        },
        other => other,
    };
    let mut headers = HeaderMap::new();
    if let Some(r) = remote.as_ref().filter(|r| !r.etag.is_empty()) {
        headers.insert(IF_NONE_MATCH, HeaderValue::from_str(&r.etag).map_err(io)?);
    }
    let (have, validator) = download.partial();
    if have > 0 {
        headers.insert(RANGE, HeaderValue::from_str(&format!("bytes={have}-")).map_err(io)?);
        headers.insert(IF_RANGE, HeaderValue::from_str(&validator).map_err(io)?);
    }
    let parsed = Url::parse(url).map_err(|e| io(format!("{url}: {e}")))?;
    let slot = options.slots.acquire(&host_key(&parsed)).await;
    let resp = get(&client, url, headers, options).await?;
    let status = resp.status();
    let etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let age = max_age(resp.headers());
    if status == StatusCode::NOT_MODIFIED {
        let Some(mut r) = remote else {
            return Err(io(format!("{url}: 304 Not Modified for an image the store does not have")));
        };
        r.download_time = now_ns();
        r.cache_max_age = age;
        store.set_remote(&r)?;
        return Ok((UrlOutcome::NotModified(r.image_id.clone()), Vec::new(), Some(r)));
    }
    let resumed = status == StatusCode::PARTIAL_CONTENT && have > 0;
    if status != StatusCode::OK && !resumed {
        return Err(io(format!("{url}: bad HTTP status code: {}", status.as_u16())));
    }
    let validator = if !etag.is_empty() {
        etag.clone()
    } else {
        resp.headers().get(reqwest::header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    };
    let signature = verify.map(|(_, sig_url)| SignatureDownload::start(&client, sig_url, options));
    let total = resp.content_length().map(|n| n + if resumed { have } else { 0 });
    let (reader, broken) = download.streaming(resp, resumed, &validator).map_err(|e| io(format!("{url}: {e}")))?;
    let reader = options.progress.track(url, total, crate::task::Slotted::new(reader, slot));
    let signers = Mutex::new(Vec::new());
    // The image is hashed and checked as it arrives (the import's bounds stop an endless or
    // hostile body); it gets its name only once the signature over the bytes kept in the
    // partial file checks out.
    let gate = |manifest: &rkt_store::appc::ImageManifest| {
        let name = manifest.name.clone();
        let (signers, partial, signature) = (&signers, download.partial.clone(), signature.as_ref());
        let problem = expected.and_then(|app| crate::mismatch(manifest, app, url));
        async move {
            if let Some(problem) = problem {
                return Err(FetchError::Mismatch(problem));
            }
            let (Some((keystore, _)), Some(signature)) = (verify, signature) else { return Ok(()) };
            let bytes = signature.bytes(&client, options).await?;
            let keys = keystore.keys_for(&name)?;
            let file = std::fs::File::open(&partial).map_err(io)?;
            let found = rkt_trust::verify(&keys, file, &bytes)
                .map_err(|source| FetchError::Untrusted { name: name.clone(), source })?;
            *signers.lock().expect("not poisoned") = found;
            Ok::<(), FetchError>(())
        }
    };
    let signature_failed = async {
        match &signature {
            Some(signature) => signature.failed().await,
            None => std::future::pending().await,
        }
    };
    let options_for_import = ImportOptions::default();
    let imported = tokio::select! {
        imported = store.import_gated(reader, &options_for_import, gate) => imported,
        // What arrived stays in the partial file for the next attempt to resume.
        failure = signature_failed => return Err(failure),
    };
    let imported = match imported {
        Ok(imported) => imported,
        Err(e) => {
            if !broken.load(std::sync::atomic::Ordering::SeqCst) {
                // The body came whole and was refused: nothing to resume.
                download.done();
            }
            return Err(e);
        }
    };
    let signers = signers.into_inner().expect("not poisoned");
    download.done();
    let written = RemoteRecord {
        url: url.to_string(),
        sig_url: String::new(),
        etag,
        image_id: imported.id.clone(),
        cache_max_age: age,
        download_time: now_ns(),
    };
    store.set_remote(&written)?;
    Ok((UrlOutcome::Downloaded { brought_in: imported.brought_in(), id: imported.id }, signers, Some(written)))
}

/// Takes the image another fetch of the URL stored while this one waited: that fetch may still
/// fail (its dependencies, say) and take it back. Writing the URL's row again, under the
/// store's lock, claims it: a failed fetch leaves an image whose row another fetch wrote since
/// (`UrlUndo::claimed_by_another`). None when the image went before the claim.
fn claim(store: &Store, mut row: RemoteRecord) -> Result<Option<ImageId>, FetchError> {
    // Taking an image back needs the exclusive lock: under the shared one, it stays.
    let _lock = store.lock_shared()?;
    if store.image(&row.image_id).is_err() {
        return Ok(None);
    }
    row.download_time = now_ns();
    store.set_remote(&row)?;
    Ok(Some(row.image_id))
}

/// Passes a body through while appending it to a file; notes a broken transfer.
struct KeepCopy {
    inner: Reader,
    out: std::fs::File,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncRead for KeepCopy {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(self.inner.as_mut().poll_read(cx, buf));
        if result.is_err() {
            self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        result?;
        let fresh = buf.filled()[before..].to_vec();
        std::io::Write::write_all(&mut self.out, &fresh)?;
        Poll::Ready(Ok(()))
    }
}

/// A download in the store's `cas/downloads`, named by the URL's hash and locked while one rkt
/// receives it. What a broken download left is resumed with `Range` and `If-Range` (its ETag or
/// Last-Modified), when the server still has the same file.
struct Download {
    partial: PathBuf,
    validator: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Download {
    /// Waits for the URL's lock without blocking the thread: other downloads of this process,
    /// the one holding it among them, go on meanwhile.
    async fn lock(store: &Store, url: &str) -> Result<Download, FetchError> {
        let dir = store.downloads_dir();
        std::fs::create_dir_all(&dir).map_err(io)?;
        let key: String = crate::oci::sha256_hex(url.as_bytes())[..32].to_string();
        let lock_path = dir.join(format!("{key}.lock"));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        let lock = rkt_store::lock_exclusive_waiting(file).await.map_err(io)?;
        Ok(Download { partial: dir.join(&key), validator: dir.join(format!("{key}.validator")), _lock: lock })
    }

    /// How much a broken download left, and the validator it was made against.
    fn partial(&self) -> (u64, String) {
        let validator = std::fs::read_to_string(&self.validator).unwrap_or_default();
        let size = std::fs::metadata(&self.partial).map(|m| m.len()).unwrap_or(0);
        if validator.is_empty() {
            (0, validator)
        } else {
            (size, validator)
        }
    }

    /// The whole image as a stream: what an earlier attempt left, then the body, which is
    /// appended to the partial file as it is read. The flag tells whether the body broke off.
    fn streaming(
        &self,
        resp: Response,
        resumed: bool,
        validator: &str,
    ) -> std::io::Result<(Reader, Arc<std::sync::atomic::AtomicBool>)> {
        if !resumed {
            std::fs::write(&self.validator, validator)?;
        }
        let earlier = if resumed { std::fs::read(&self.partial)? } else { Vec::new() };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(&self.partial)?;
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let keep = KeepCopy { inner: body(resp), out, broken: broken.clone() };
        Ok((Box::pin(tokio::io::AsyncReadExt::chain(std::io::Cursor::new(earlier), keep)), broken))
    }

    fn done(&self) {
        let _ = std::fs::remove_file(&self.partial);
        let _ = std::fs::remove_file(&self.validator);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
        assert_eq!(max_age(&h), 3600);
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60, no-cache"));
        assert_eq!(max_age(&h), 0);
        assert_eq!(max_age(&HeaderMap::new()), 0);
    }

    /// A fetch that waited for another's download of the URL and took its image claims it: the
    /// first fetch, failing afterwards, leaves that image and the row. Unclaimed, both go; an
    /// image taken back before the claim is not claimed (the waiting fetch downloads anew).
    #[test]
    fn an_image_another_fetch_took_stays_when_its_fetch_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let url = "https://example.com/app.aci";
        let stored = |content: &[u8]| {
            let manifest = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app"}"#;
            let mut aci = store.build_aci(manifest).unwrap();
            let entry = rkt_store::tar_out::OutEntry::plain(b"rootfs/f", b'0', 0o644, content.len() as u64);
            block_on(aci.entry(&entry, &mut &content[..])).unwrap();
            let imported = aci.finish(false).unwrap();
            let row = RemoteRecord {
                url: url.into(),
                sig_url: String::new(),
                etag: String::new(),
                image_id: imported.id.clone(),
                cache_max_age: 0,
                download_time: now_ns(),
            };
            store.set_remote(&row).unwrap();
            UrlUndo { url: url.into(), remote: None, written: Some(row), new_image: imported.brought_in() }
        };

        let first = stored(b"one");
        let (id, row) = (first.new_image().unwrap().id.clone(), first.written.clone().unwrap());
        assert_eq!(claim(&store, row.clone()).unwrap(), Some(id.clone()));
        first.undo(&store).unwrap();
        assert!(store.image(&id).is_ok(), "the claimed image stays");
        assert_eq!(store.remote(url).unwrap().map(|r| r.image_id), Some(id.clone()));

        let second = stored(b"two");
        let (id, row) = (second.new_image().unwrap().id.clone(), second.written.clone().unwrap());
        second.undo(&store).unwrap();
        assert!(store.image(&id).is_err(), "unclaimed, it goes");
        assert_eq!(store.remote(url).unwrap(), None);
        assert_eq!(claim(&store, row).unwrap(), None, "gone before the claim");
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    /// A failed fetch puts back the row it wrote, and leaves one another fetch wrote since.
    #[test]
    fn a_url_row_goes_back_only_while_it_is_the_one_the_fetch_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let manifest = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app"}"#;
        let id = store.build_aci(manifest).unwrap().finish(false).unwrap().id;
        let row = |etag: &str| RemoteRecord {
            url: "https://example.com/app.aci".into(),
            sig_url: String::new(),
            etag: etag.into(),
            image_id: id.clone(),
            cache_max_age: 0,
            download_time: 1,
        };
        let undo = |written: Option<RemoteRecord>| UrlUndo {
            url: "https://example.com/app.aci".into(),
            remote: None,
            written,
            new_image: None,
        };
        store.set_remote(&row("mine")).unwrap();
        undo(Some(row("mine"))).restore_row(&store).unwrap();
        assert_eq!(store.remote("https://example.com/app.aci").unwrap(), None);

        store.set_remote(&row("theirs")).unwrap();
        undo(Some(row("mine"))).restore_row(&store).unwrap();
        undo(None).restore_row(&store).unwrap();
        assert_eq!(store.remote("https://example.com/app.aci").unwrap(), Some(row("theirs")));
    }
}
