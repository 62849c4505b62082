//! ACIs by URL (`https://…/x.aci`): the remote cache as rkt keeps it (ETag and Cache-Control
//! max-age per URL), redirects followed by hand without credentials to another host or to plain
//! http, retries with backoff for resets, 429 and 5xx, and the body streamed into the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, ETAG, IF_NONE_MATCH, IF_RANGE, LOCATION, RANGE, RETRY_AFTER,
};
use reqwest::{Client, Response, StatusCode, Url};
use rkt_store::{now_ns, BroughtIn, ImageId, ImportOptions, RemoteRecord, Store};
use tokio::io::{AsyncRead, ReadBuf};

pub use crate::clients::Clients;
use crate::oci::Reader;
use crate::FetchError;

const MAX_REDIRECTS: usize = 10;
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// `--insecure-options=http`: plain http URLs.
    pub plain_http: bool,
    /// `--insecure-options=tls`: no certificate verification.
    pub skip_tls_verify: bool,
    /// `Authorization` values by host[:port], from auth.d; sent only over https.
    pub auth: BTreeMap<String, String>,
    /// Where downloads report their progress.
    pub progress: crate::progress::ProgressHandle,
    /// Downloads at once per host.
    pub slots: crate::task::HostSlots,
}

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

fn io(e: impl std::fmt::Display) -> FetchError {
    FetchError::Http(e.to_string())
}

pub fn client(options: &HttpOptions) -> Result<Clients, FetchError> {
    Clients::new(options.skip_tls_verify).map_err(io)
}

pub(crate) fn host_key(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    }
}

/// Where a redirect leads: never from https to plain http.
pub fn redirect_target(url: &Url, resp: &Response) -> Result<Url, String> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("{url}: a redirect without a Location"))?;
    let next = url.join(location).map_err(|e| format!("{url}: bad redirect {location}: {e}"))?;
    if url.scheme() == "https" && next.scheme() != "https" {
        return Err(format!("{url} redirected to plain http ({next})"));
    }
    Ok(next)
}

/// GETs `url`: retries, redirects by hand, credentials only where they belong.
pub async fn get(client: &Clients, url: &str, extra: HeaderMap, options: &HttpOptions) -> Result<Response, FetchError> {
    let mut url = Url::parse(url).map_err(|e| FetchError::BadImageString(format!("{url}: {e}")))?;
    if url.scheme() == "http" && !options.plain_http {
        return Err(FetchError::Http(format!("{url}: plain http needs --insecure-options=http")));
    }
    let first_host = host_key(&url);
    for _ in 0..=MAX_REDIRECTS {
        let mut headers = extra.clone();
        // Credentials: only over https, and only to the host the user named.
        if url.scheme() == "https" && host_key(&url) == first_host {
            if let Some(auth) = options.auth.get(&host_key(&url)) {
                headers.insert(AUTHORIZATION, HeaderValue::from_str(auth).map_err(io)?);
            }
        }
        let hop = client.for_url(&url).map_err(io)?;
        let resp = send_with_retries(&hop, &url, headers).await.map_err(|e| io(format!("{url}: {}", why(&e))))?;
        if resp.status().is_redirection() && resp.status() != StatusCode::NOT_MODIFIED {
            let next = redirect_target(&url, &resp).map_err(io)?;
            url = next;
            continue;
        }
        return Ok(resp);
    }
    Err(io(format!("{url}: more than {MAX_REDIRECTS} redirects")))
}

/// Why `body_within` gave no body.
#[derive(Debug)]
pub enum BodyError {
    /// The transfer failed (in `why`'s words).
    Transport(String),
    /// The body went past the limit.
    TooLong(usize),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(why) => f.write_str(why),
            BodyError::TooLong(limit) => write!(f, "the answer is over the {limit}-byte limit"),
        }
    }
}

/// The body read whole, up to `limit` bytes: a hostile server's body may have no end.
pub async fn body_within(mut resp: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| BodyError::Transport(why(&e)))? {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLong(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport error as the user needs it: reqwest's own words ("error sending request") say
/// nothing of the cause, which is at the end of its chain ("Connection refused", "invalid peer
/// certificate: UnknownIssuer").
pub(crate) fn why(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.trim_end_matches(&format!(" for url ({url})")).to_string();
    }
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.ends_with(&said) {
            text = format!("{text}: {said}");
        }
        cause = inner.source();
    }
    // rustls's words for a server that answered in plain text.
    if text.ends_with("received corrupt message of type InvalidContentType") {
        text.push_str(" (the server does not speak TLS: plain http needs --insecure-options=http)");
    }
    // What a server that takes only known clients sends to one with no certificate, or another.
    if text.ends_with("received fatal alert: BadCertificate")
        || text.ends_with("received fatal alert: CertificateRequired")
    {
        text.push_str(
            " (the server wants a client certificate it trusts: NAME.cert and NAME.key in the host's certs.d)",
        );
    }
    // The connection was the proxy's: the host named in the message was never reached.
    if e.is_connect() {
        if let Some((var, proxy)) = e.url().and_then(|url| proxy_for(url, |v| std::env::var(v).ok())) {
            text.push_str(&format!(" (through the proxy {proxy} that {var} names)"));
        }
    }
    text
}

/// The proxy the environment gives for `url`, as reqwest (hyper-util) takes it: `HTTPS_PROXY`
/// or `HTTP_PROXY` by scheme, else `ALL_PROXY` (each upper case first, then lower; one set
/// empty means none), unless `NO_PROXY` names the host (`*`, the host, or a domain above it).
/// Returns the variable and its value.
fn proxy_for(url: &Url, var: impl Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let var = |name: &str| {
        let (upper, lower) = (name.to_ascii_uppercase(), name.to_ascii_lowercase());
        let (name, value) = var(&upper).map(|v| (upper, v)).or_else(|| var(&lower).map(|v| (lower, v)))?;
        (!value.is_empty()).then_some((name, value))
    };
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let bypassed = var("no_proxy").is_some_and(|(_, list)| {
        list.split(',')
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .any(|d| d == "*" || (!d.is_empty() && (host == d || host.ends_with(&format!(".{d}")))))
    });
    if bypassed {
        return None;
    }
    let by_scheme = if url.scheme() == "https" { "https_proxy" } else { "http_proxy" };
    var(by_scheme).or_else(|| var("all_proxy"))
}

/// One GET, tried up to three times with backoff on connection failures, timeouts, 429 and
/// 5xx, honouring `Retry-After` (up to 10 s); the last answer or error is returned as it is.
pub(crate) async fn send_with_retries(
    client: &Client,
    url: &Url,
    headers: HeaderMap,
) -> Result<Response, reqwest::Error> {
    send_method_with_retries(client, reqwest::Method::GET, url, headers).await
}

/// As `send_with_retries`, with another method (a HEAD).
pub(crate) async fn send_method_with_retries(
    client: &Client,
    method: reqwest::Method,
    url: &Url,
    headers: HeaderMap,
) -> Result<Response, reqwest::Error> {
    send_retrying(client, method, url, headers, None).await
}

/// As `send_with_retries`, a POST of an HTML form (`application/x-www-form-urlencoded`).
pub(crate) async fn post_form_with_retries(
    client: &Client,
    url: &Url,
    form: &[(&str, &str)],
) -> Result<Response, reqwest::Error> {
    // A URL's query is serialized as a form is.
    let mut encoded = Url::parse("http://form.invalid/").expect("a valid URL");
    encoded.query_pairs_mut().extend_pairs(form);
    let body = encoded.query().unwrap_or("").to_string();
    let form_type = reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded");
    let headers = HeaderMap::from_iter([(reqwest::header::CONTENT_TYPE, form_type)]);
    send_retrying(client, reqwest::Method::POST, url, headers, Some(body)).await
}

async fn send_retrying(
    client: &Client,
    method: reqwest::Method,
    url: &Url,
    headers: HeaderMap,
    body: Option<String>,
) -> Result<Response, reqwest::Error> {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let mut request = client.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        let result = request.send().await;
        let retry_after = match &result {
            Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS || resp.status().is_server_error() => {
                let secs =
                    resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                Some(secs.map(|s| Duration::from_secs(s.min(10))).unwrap_or(delay))
            }
            Ok(_) => None,
            Err(e) if (e.is_connect() || e.is_timeout() || e.is_request()) && may_pass(e) => Some(delay),
            Err(_) => None,
        };
        match retry_after {
            Some(wait) if attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
            _ => return result,
        }
    }
    unreachable!("the last attempt returns")
}

/// Whether a transport failure may pass if tried again: not a name that does not resolve, nor
/// a TLS failure (a certificate refused, a server that speaks plain http), which fail the same
/// way each time and would only keep the user waiting.
fn may_pass(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if holds_tls_refusal(io) {
                return false;
            }
            // getaddrinfo's answer for a name that does not exist (EAI_NONAME); a resolver that
            // could not be asked says "Temporary failure in name resolution" (EAI_AGAIN).
            if io.to_string().contains("Name or service not known") {
                return false;
            }
        }
        cause = inner.source();
    }
    true
}

/// Whether rustls refused the connection: the TLS stream hands its error on inside an I/O
/// error, itself inside another.
fn holds_tls_refusal(io: &std::io::Error) -> bool {
    match io.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => true,
        Some(inner) => inner.downcast_ref::<std::io::Error>().is_some_and(holds_tls_refusal),
        None => false,
    }
}

/// The body as a stream. A transport error (a connection cut before Content-Length, say) ends
/// the stream with that error, never with a clean end.
pub fn body(resp: Response) -> Reader {
    Box::pin(BodyReader { next: Some(next_chunk(resp)), chunk: bytes::Bytes::new() })
}

type NextChunk = Pin<Box<dyn std::future::Future<Output = (Response, reqwest::Result<Option<bytes::Bytes>>)> + Send>>;

fn next_chunk(mut resp: Response) -> NextChunk {
    Box::pin(async move {
        let chunk = resp.chunk().await;
        (resp, chunk)
    })
}

/// Reads the body's chunks as hyper hands them over, copying each once, into the reader's
/// buffer.
struct BodyReader {
    /// `None` once the body has ended.
    next: Option<NextChunk>,
    chunk: bytes::Bytes,
}

impl AsyncRead for BodyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                buf.put_slice(&self.chunk.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let Some(next) = self.next.as_mut() else { return Poll::Ready(Ok(())) };
            let (resp, got) = ready!(next.as_mut().poll(cx));
            match got {
                Ok(Some(chunk)) => {
                    self.chunk = chunk;
                    self.next = Some(next_chunk(resp));
                }
                Ok(None) => self.next = None,
                Err(e) => {
                    self.next = None;
                    return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why(&e))));
                }
            }
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
    fn the_proxy_a_request_went_through() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let url = |u: &str| Url::parse(u).unwrap();
        let proxies =
            env(&[("HTTPS_PROXY", "http://p:3128"), ("https_proxy", "http://x"), ("http_proxy", "http://q:8080")]);
        let via = |u: &str| proxy_for(&url(u), proxies);
        assert_eq!(via("https://r.io/v2/"), Some(("HTTPS_PROXY".into(), "http://p:3128".into())));
        assert_eq!(via("http://r.io/v2/"), Some(("http_proxy".into(), "http://q:8080".into())));
        let all = env(&[("ALL_PROXY", "socks5://s:1080"), ("no_proxy", "internal.example, .corp")]);
        assert_eq!(proxy_for(&url("https://r.io/"), all).map(|(v, _)| v), Some("ALL_PROXY".into()));
        for bypassed in ["https://internal.example/", "https://a.internal.example/", "http://x.corp:5000/"] {
            assert_eq!(proxy_for(&url(bypassed), all), None, "{bypassed}");
        }
        assert_eq!(proxy_for(&url("https://notinternal.example/"), all).map(|(v, _)| v), Some("ALL_PROXY".into()));
        assert_eq!(proxy_for(&url("https://r.io/"), env(&[("HTTPS_PROXY", "http://p"), ("NO_PROXY", "*")])), None);
        assert_eq!(proxy_for(&url("https://r.io/"), env(&[])), None);
        assert_eq!(proxy_for(&url("https://r.io/"), env(&[("HTTPS_PROXY", ""), ("https_proxy", "http://p")])), None);
    }

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
