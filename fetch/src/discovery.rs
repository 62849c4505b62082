//! appc meta discovery: `https://PREFIX?ac-discovery=1` for each prefix of the name, longest
//! first; `ac-discovery` and `ac-discovery-pubkeys` meta tags; templates rendered with the
//! name and labels, those with placeholders left skipped; endpoints in document order.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use rkt_store::appc::AppString;

use crate::http::{client, get, HttpOptions};
use crate::FetchError;

/// A discovery page larger than this is refused: the meta tags are in its head.
const MAX_DISCOVERY_PAGE: usize = 4 << 20;

/// Where an image (and its signature) and the keys for its name can be fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryEndpoints {
    /// (ACI URL, signature URL), in document order.
    pub aci: Vec<(String, String)>,
    pub keys: Vec<String>,
}

/// The `(name, content)` of every `<meta>` tag of an HTML document.
pub fn meta_tags(html: &str) -> Vec<(String, String)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<meta").map(|i| i + from) {
        let end = lower[start..].find('>').map(|i| i + start).unwrap_or(lower.len());
        let tag = &html[start + 5..end];
        let attr = |name: &str| -> Option<String> {
            let tag_lower = tag.to_ascii_lowercase();
            let mut search = 0;
            while let Some(pos) = tag_lower[search..].find(name).map(|i| i + search) {
                let before_ok = pos == 0 || tag_lower.as_bytes()[pos - 1].is_ascii_whitespace();
                let rest = tag[pos + name.len()..].trim_start();
                if before_ok && rest.starts_with('=') {
                    let value = rest[1..].trim_start();
                    return Some(match value.chars().next() {
                        Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or("").to_string(),
                        _ => value.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("").to_string(),
                    });
                }
                search = pos + name.len();
            }
            None
        };
        if let (Some(name), Some(content)) = (attr("name"), attr("content")) {
            out.push((name, content));
        }
        from = end.max(start + 5);
    }
    out
}

/// Fills `{name}`, `{version}` (`latest` when not given), every other label and `{ext}`;
/// `None` when a placeholder is left.
pub fn render_template(template: &str, app: &AppString, ext: &str) -> Option<String> {
    let mut out = template.replace("{name}", &app.name);
    let version = app.labels.iter().find(|l| l.name == "version").map(|l| l.value.as_str()).filter(|v| !v.is_empty());
    out = out.replace("{version}", version.unwrap_or("latest"));
    for label in &app.labels {
        if label.name != "name" && label.name != "version" {
            out = out.replace(&format!("{{{}}}", label.name), &label.value);
        }
    }
    out = out.replace("{ext}", ext);
    (!(out.contains('{') && out.contains('}'))).then_some(out)
}

/// What one document says for `app`.
pub fn endpoints_from(html: &str, app: &AppString) -> DiscoveryEndpoints {
    let mut found = DiscoveryEndpoints::default();
    for (name, content) in meta_tags(html) {
        let Some((prefix, url)) = content.split_once(char::is_whitespace) else { continue };
        let url = url.trim();
        if url.is_empty() || !app.name.starts_with(prefix) {
            continue;
        }
        match name.as_str() {
            "ac-discovery" => {
                if let (Some(aci), Some(asc)) = (render_template(url, app, "aci"), render_template(url, app, "aci.asc"))
                {
                    found.aci.push((aci, asc));
                }
            }
            "ac-discovery-pubkeys" => found.keys.push(url.to_string()),
            _ => {}
        }
    }
    found
}

/// The name's prefixes, longest first: `a.com/b/c`, `a.com/b`, `a.com`.
pub fn prefixes(name: &str) -> Vec<&str> {
    let mut out = vec![name];
    let mut rest = name;
    while let Some(i) = rest.rfind('/') {
        rest = &rest[..i];
        out.push(rest);
    }
    out
}

/// Walks the name's prefixes until both an image endpoint and keys are found (the two walks
/// are independent: each stops at its first hit); also returns what failed on the way.
async fn walk(app: &AppString, options: &HttpOptions) -> Result<(DiscoveryEndpoints, Vec<String>), FetchError> {
    let client = client(options)?;
    let mut result = DiscoveryEndpoints::default();
    let mut failures = Vec::new();
    for prefix in prefixes(&app.name) {
        if !result.aci.is_empty() && !result.keys.is_empty() {
            break;
        }
        let mut html = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !options.plain_http {
                break;
            }
            let url = format!("{scheme}://{prefix}?ac-discovery=1");
            match get(&client, &url, HeaderMap::new(), options).await {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    html = Some(
                        String::from_utf8_lossy(
                            &crate::http::body_within(resp, MAX_DISCOVERY_PAGE)
                                .await
                                .map_err(|e| FetchError::Http(format!("{url}: {e}")))?,
                        )
                        .into_owned(),
                    );
                    break;
                }
                Ok(resp) => failures.push(format!("{url}: expected a 200 OK got {}", resp.status().as_u16())),
                Err(e) => failures.push(e.to_string()),
            }
        }
        let Some(html) = html else { continue };
        let found = endpoints_from(&html, app);
        if result.aci.is_empty() {
            result.aci = found.aci;
        }
        if result.keys.is_empty() {
            result.keys = found.keys;
        }
    }
    Ok((result, failures))
}

fn none_found(what: &str, name: &str, failures: &[String]) -> FetchError {
    let detail = if failures.is_empty() { String::new() } else { format!(" ({})", failures.join("; ")) };
    FetchError::Http(format!("discovery found no {what} for {name}{detail}"))
}

/// Discovers where the image named by `app` is.
pub async fn discover(app: &AppString, options: &HttpOptions) -> Result<DiscoveryEndpoints, FetchError> {
    let (found, failures) = walk(app, options).await?;
    if found.aci.is_empty() {
        return Err(none_found("image", &app.name, &failures));
    }
    Ok(found)
}

/// Discovers the keys for a prefix (`rkt trust --prefix P` without a key).
pub async fn discover_keys(prefix: &str, options: &HttpOptions) -> Result<Vec<String>, FetchError> {
    let app = AppString { name: prefix.to_string(), labels: Vec::new() };
    let (found, failures) = walk(&app, options).await?;
    if found.keys.is_empty() {
        return Err(none_found("keys", prefix, &failures));
    }
    Ok(found.keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkt_store::appc::NameValue;

    fn app(name: &str, labels: &[(&str, &str)]) -> AppString {
        AppString {
            name: name.into(),
            labels: labels.iter().map(|(n, v)| NameValue { name: n.to_string(), value: v.to_string() }).collect(),
        }
    }

    const META01: &str = r#"<html><head>
        <meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}">
        <meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
        </head></html>"#;
    const META05: &str = r#"<meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}">
        <meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}.{ext}">
        <meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">"#;
    const META06: &str = r#"<meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}">
        <meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}.{ext}">
        <meta name="ac-discovery" content="example.com hdfs://storage.example.com/{name}-{version}-{os}-{arch}.{ext}">"#;

    #[test]
    fn appc_spec_cases() {
        let full = app("example.com/myapp", &[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")]);
        let e = endpoints_from(META01, &full);
        assert_eq!(
            e.aci,
            vec![(
                "https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci".to_string(),
                "https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci.asc".to_string()
            )]
        );
        assert_eq!(e.keys, vec!["https://example.com/pubkeys.gpg".to_string()]);
        // Case 9: only a version: the os/arch template is skipped.
        let e = endpoints_from(META05, &app("example.com/myapp", &[("version", "1.0.0")]));
        assert_eq!(e.aci[0].0, "https://storage.example.com/example.com/myapp-1.0.0.aci");
        assert_eq!(e.aci.len(), 1);
        // Case 10: no labels: version is latest.
        let e = endpoints_from(META05, &app("example.com/myapp", &[]));
        assert_eq!(e.aci[0].0, "https://storage.example.com/example.com/myapp-latest.aci");
        // Case 11: a label called name is ignored.
        let e = endpoints_from(META05, &app("example.com/myapp", &[("name", "labelcalledname"), ("version", "1.0.0")]));
        assert_eq!(e.aci[0].0, "https://storage.example.com/example.com/myapp-1.0.0.aci");
        // Case 12: three endpoints in document order.
        let e = endpoints_from(META06, &full);
        assert_eq!(e.aci.len(), 3);
        assert!(e.aci[2].0.starts_with("hdfs://"));
        // A prefix that does not cover the name is not used.
        assert!(endpoints_from(META01, &app("other.com/myapp", &[])).aci.is_empty());
        assert_eq!(
            prefixes("example.com/myapp/foobar"),
            vec!["example.com/myapp/foobar", "example.com/myapp", "example.com"]
        );
    }

    #[test]
    fn malformed_meta_tags_are_skipped() {
        let html = r#"<meta name="ac-discovery" content="example.com"><META NAME='ac-discovery' CONTENT='example.com https://x/{name}.{ext}'><meta name="ac-discovery" content="example.com https://x/{unknown}.{ext}">"#;
        let e = endpoints_from(html, &app("example.com/a", &[]));
        assert_eq!(
            e.aci,
            vec![("https://x/example.com/a.aci".to_string(), "https://x/example.com/a.aci.asc".to_string())]
        );
    }
}
