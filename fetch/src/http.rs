//! HTTP as every fetch uses it: redirects followed by hand without credentials to another host
//! or to plain http, proxies from the environment, retries with backoff for resets, 429 and 5xx,
//! bodies read within a limit or streamed, and errors told in one line.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
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

pub(crate) fn io(e: impl std::fmt::Display) -> FetchError {
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
}
