//! A thin registry v2 client over reqwest: bearer-token and basic auth, redirects followed by
//! hand (credentials never go to another host or to plain http), registry error bodies shown
//! to the user, and blobs streamed without ever being held whole.

use std::sync::Mutex;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};

use super::credentials::IDENTITY_TOKEN_USER;
use crate::http::{body_within, why, BodyError, Clients};
use crate::oci::OciError;

const MAX_REDIRECTS: usize = 10;

pub struct RegistryClient {
    http: Clients,
    base: Url,
    repo: String,
    basic: Option<(String, String)>,
    token: Mutex<Option<String>>,
}

/// The most of a registry's error body that is read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A token reply larger than this is refused (real ones are a few KiB).
const MAX_TOKEN_REPLY: usize = 1 << 20;
/// The most of an error body's explanation shown, in characters.
const MAX_ERROR_DETAIL: usize = 400;

fn err(message: impl Into<String>) -> OciError {
    OciError::Io(message.into())
}

/// The registry's own explanation of a failure (`{"errors":[{"code","message"}]}`), or the status.
async fn failure(what: &str, resp: Response) -> OciError {
    let status = resp.status();
    // The explanation is short; a longer body is left unread, and only the status is shown.
    let body = body_within(resp, MAX_ERROR_BODY).await.unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| error_detail(&v));
    err(format!("{what}: the registry answered {status}{}", detail.map(|d| format!(" ({d})")).unwrap_or_default()))
}

/// What an error body says: the registry's `errors` (Docker's registry API), else a token
/// service's OAuth 2 `error` and `error_description`. Kept to one short line, whatever it holds.
fn error_detail(body: &serde_json::Value) -> Option<String> {
    let said = match (body["errors"].as_array(), body["error"].as_str()) {
        (Some(errors), _) => errors
            .iter()
            .map(|e| format!("{}: {}", e["code"].as_str().unwrap_or("ERROR"), e["message"].as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; "),
        (None, Some(error)) => match body["error_description"].as_str() {
            Some(description) => format!("{error}: {description}"),
            None => error.to_string(),
        },
        (None, None) => return None,
    };
    let mut line: String = said.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.chars().count() > MAX_ERROR_DETAIL {
        line = line.chars().take(MAX_ERROR_DETAIL).chain(['…']).collect();
    }
    Some(line)
}

/// The parameters of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge.
fn challenge_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let (val, next) = if let Some(stripped) = after.strip_prefix('"') {
            let end = stripped.find('"').unwrap_or(stripped.len());
            (stripped[..end].to_string(), stripped.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, val));
        rest = next;
    }
    out
}

fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl RegistryClient {
    pub fn new(
        host: &str,
        repo: &str,
        plain_http: bool,
        skip_tls_verify: bool,
        basic: Option<(String, String)>,
    ) -> Result<Self, OciError> {
        let scheme = if plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| err(format!("registry {host}: {e}")))?;
        let http = Clients::new(skip_tls_verify).map_err(|e| err(format!("HTTP client: {e}")))?;
        Ok(RegistryClient { http, base, repo: repo.to_string(), basic, token: Mutex::new(None) })
    }

    fn authorization(&self) -> Option<String> {
        if let Some(token) = self.token.lock().expect("not poisoned").clone() {
            return Some(format!("Bearer {token}"));
        }
        None
    }

    /// Credentials go only to the registry's own host, and never over plain http unless the
    /// registry itself was asked for over http.
    fn may_authenticate(&self, url: &Url) -> bool {
        url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.scheme() == self.base.scheme()
    }

    async fn get_token(&self, challenge: &str) -> Result<(), OciError> {
        let params = challenge_params(challenge.trim_start_matches("Bearer").trim_start_matches("bearer"));
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let realm =
            get("realm").ok_or_else(|| err("the registry asked for a token without saying where to get one"))?;
        let mut url = Url::parse(&realm).map_err(|e| err(format!("token realm {realm}: {e}")))?;
        if url.scheme() == "http" && self.base.scheme() == "https" {
            return Err(err(format!("the registry's token service {realm} is plain http")));
        }
        let service = get("service");
        let scope = get("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repo));
        let client = self.http.for_url(&url).map_err(|e| err(format!("HTTP client: {e}")))?;
        // Credentials go to an https realm, or over http only for a registry itself asked over http.
        let may_send = url.scheme() == "https" || self.base.scheme() == "http";
        let sent = match self.basic.as_ref().filter(|_| may_send) {
            // An identity token is exchanged for an access token as OAuth 2 refreshes one (what
            // Docker does with the token `docker login` kept), in a form rather than the URL.
            Some((user, refresh)) if user == IDENTITY_TOKEN_USER => {
                let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
                form.extend(service.as_deref().map(|s| ("service", s)));
                form.extend([("scope", scope.as_str()), ("client_id", "rkt")]);
                crate::http::post_form_with_retries(&client, &url, &form).await
            }
            basic => {
                {
                    let mut q = url.query_pairs_mut();
                    q.extend_pairs(service.as_deref().map(|s| ("service", s)));
                    q.append_pair("scope", &scope);
                }
                let mut headers = HeaderMap::new();
                if let Some((user, password)) = basic {
                    let value = HeaderValue::from_str(&basic_header(user, password)).map_err(|e| err(e.to_string()))?;
                    headers.insert(AUTHORIZATION, value);
                }
                crate::http::send_with_retries(&client, &url, headers).await
            }
        };
        let resp = sent.map_err(|e| err(format!("token from {realm}: {}", why(&e))))?;
        if !resp.status().is_success() {
            return Err(failure("getting a registry token", resp).await);
        }
        let text = body_within(resp, MAX_TOKEN_REPLY).await.map_err(|e| err(format!("token from {realm}: {e}")))?;
        let body: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| err(format!("token from {realm}: {e}")))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .ok_or_else(|| err("the token service sent no token"))?;
        *self.token.lock().expect("not poisoned") = Some(token.to_string());
        Ok(())
    }

    /// GETs `path` of the registry, authenticating when challenged and following redirects.
    async fn get(&self, path: &str, accept: &[&str]) -> Result<Response, OciError> {
        self.get_with(path, accept, &HeaderMap::new()).await
    }

    /// As `get`, with `extra` headers (a `Range`) sent to every hop.
    async fn get_with(&self, path: &str, accept: &[&str], extra: &HeaderMap) -> Result<Response, OciError> {
        self.request(reqwest::Method::GET, path, accept, extra).await
    }

    /// As `get`, with `method`.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &[&str],
        extra: &HeaderMap,
    ) -> Result<Response, OciError> {
        let mut url = self.base.join(path).map_err(|e| err(e.to_string()))?;
        let mut authenticated = false;
        let mut basic_tried = false;
        for _ in 0..=MAX_REDIRECTS {
            let mut headers = extra.clone();
            if !accept.is_empty() {
                headers.insert(ACCEPT, HeaderValue::from_str(&accept.join(", ")).expect("media types are ASCII"));
            }
            if self.may_authenticate(&url) {
                if let Some(auth) = self.authorization() {
                    headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).map_err(|e| err(e.to_string()))?);
                } else if basic_tried {
                    if let Some((u, p)) = &self.basic {
                        headers.insert(
                            AUTHORIZATION,
                            HeaderValue::from_str(&basic_header(u, p)).map_err(|e| err(e.to_string()))?,
                        );
                    }
                }
            }
            let client = self.http.for_url(&url).map_err(|e| err(format!("HTTP client: {e}")))?;
            let resp = crate::http::send_method_with_retries(&client, method.clone(), &url, headers)
                .await
                .map_err(|e| err(format!("{url}: {}", why(&e))))?;
            match resp.status() {
                StatusCode::UNAUTHORIZED if !authenticated && self.may_authenticate(&url) => {
                    authenticated = true;
                    let challenge =
                        resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    if challenge.to_ascii_lowercase().starts_with("bearer") {
                        self.get_token(&challenge).await?;
                    } else if let Some((user, _)) = &self.basic {
                        if user == IDENTITY_TOKEN_USER {
                            return Err(err(format!(
                                "{url}: the registry asks for a password, and its login holds an identity token"
                            )));
                        }
                        basic_tried = true;
                    } else {
                        return Err(failure(&format!("{url}"), resp).await);
                    }
                }
                s if s.is_redirection() => {
                    let next = crate::http::redirect_target(&url, &resp).map_err(err)?;
                    url = next;
                }
                _ => return Ok(resp),
            }
        }
        Err(err(format!("{url}: more than {MAX_REDIRECTS} redirects")))
    }

    /// A manifest or index by tag or digest: its bytes (at most `limit`), its Content-Type
    /// and its digest as computed here.
    pub async fn manifest(&self, reference: &str, accept: &[&str], limit: u64) -> Result<(Vec<u8>, String), OciError> {
        let resp = self.get(&format!("v2/{}/manifests/{reference}", self.repo), accept).await?;
        if !resp.status().is_success() {
            // Named as the user writes it: a tag after `:`, a digest after `@`.
            let sep = if reference.contains(':') { '@' } else { ':' };
            return Err(failure(&format!("manifest {}{sep}{reference}", self.repo), resp).await);
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(OciError::Invalid(format!("the manifest is over the {limit}-byte limit")));
        }
        let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = body_within(resp, limit as usize).await.map_err(|e| match e {
            BodyError::TooLong(_) => OciError::Invalid(format!("the manifest is over the {limit}-byte limit")),
            BodyError::Transport(why) => err(format!("manifest: {why}")),
        })?;
        Ok((body, content_type))
    }

    /// The digest the registry gives for a manifest or index by tag, from a HEAD request: what
    /// a tag points to, asked without a GET, which Docker Hub counts against its pull limit.
    /// None when the registry does not say (then only a GET can tell).
    pub async fn manifest_digest(&self, reference: &str, accept: &[&str]) -> Result<Option<String>, OciError> {
        let path = format!("v2/{}/manifests/{reference}", self.repo);
        let resp = self.request(reqwest::Method::HEAD, &path, accept, &HeaderMap::new()).await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
        Ok(digest.filter(|d| super::grammar::is_digest(d)).map(str::to_string))
    }

    /// A blob, streamed: the bytes arrive through the returned reader as they come.
    pub async fn blob(&self, digest: &str) -> Result<crate::oci::Reader, OciError> {
        let resp = self.get(&format!("v2/{}/blobs/{digest}", self.repo), &[]).await?;
        if !resp.status().is_success() {
            return Err(failure(&format!("blob {digest}"), resp).await);
        }
        Ok(crate::http::body(resp))
    }

    /// A blob from byte `offset` on (`Range`); the registry must answer 206 for the range asked.
    pub async fn blob_from(&self, digest: &str, offset: u64) -> Result<crate::oci::Reader, OciError> {
        if offset == 0 {
            return self.blob(digest).await;
        }
        let mut extra = HeaderMap::new();
        extra.insert(RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).expect("digits are ASCII"));
        let resp = self.get_with(&format!("v2/{}/blobs/{digest}", self.repo), &[], &extra).await?;
        let range_start = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if resp.status() != StatusCode::PARTIAL_CONTENT || range_start != Some(offset) {
            return Err(err(format!(
                "blob {digest}: the download broke off and the registry cannot resume it (answered {})",
                resp.status()
            )));
        }
        Ok(crate::http::body(resp))
    }

    /// Reads a small blob whole.
    pub async fn small_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        let reader = self.blob(digest).await?;
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::AsyncReadExt::take(reader, limit + 1), &mut out)
            .await
            .map_err(|e| err(format!("blob {digest}: {e}")))?;
        if out.len() as u64 > limit {
            return Err(OciError::Invalid(format!("blob {digest} is over the {limit}-byte limit")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_base64() {
        let p = challenge_params(
            r#" realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example.com/token".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
        assert_eq!(base64(b"foo:bar"), "Zm9vOmJhcg==");
        assert_eq!(base64_decode("Zm9vOmJhcg==").unwrap(), b"foo:bar");
    }

    #[test]
    fn error_bodies_of_registries_and_token_services() {
        let detail = |body: serde_json::Value| error_detail(&body);
        let registry = serde_json::json!({"errors": [{"code": "DENIED", "message": "no"}, {"code": "X"}]});
        assert_eq!(detail(registry).as_deref(), Some("DENIED: no; X: "));
        let oauth = serde_json::json!({"error": "invalid_grant", "error_description": "refresh token\nexpired"});
        assert_eq!(detail(oauth).as_deref(), Some("invalid_grant: refresh token expired"));
        assert_eq!(detail(serde_json::json!({"error": "invalid_client"})).as_deref(), Some("invalid_client"));
        assert_eq!(detail(serde_json::json!({"message": "hm"})), None);
        let long = detail(serde_json::json!({"error": "e".repeat(10_000)})).unwrap();
        assert_eq!(long.chars().count(), MAX_ERROR_DETAIL + 1);
    }
}
