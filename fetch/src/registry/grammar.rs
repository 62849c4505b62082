//! The Docker reference grammar (distribution's `reference` package): what a registry host,
//! a repository and a tag may hold. The parts become a URL's path, so nothing else gets
//! through: no `..` component, no `?` or `#`, no upper case in a repository, as `docker pull`
//! refuses them.

/// distribution's limit on a repository's name, its registry included.
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// `host[:port]`: DNS labels of letters, digits and inner `-`, or an IPv6 address in brackets.
pub fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || Err(format!("registry {registry:?} is not a host name or host:port"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else { return bad() };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return bad();
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad(),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return bad();
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad();
        }
    }
    Ok(())
}

/// Components of lower-case letters and digits, joined inside by `.`, `_`, `__` or dashes.
pub fn check_repository(registry: &str, repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository {repository:?} must be lowercase"));
    }
    if registry.len() + 1 + repository.len() > MAX_NAME {
        return Err(format!("repository name is longer than {MAX_NAME} characters"));
    }
    for component in repository.split('/') {
        if !path_component_ok(component.as_bytes()) {
            return Err(format!(
                "repository component {component:?} is not valid (lowercase letters and digits, \
                 joined inside by . _ __ or -)"
            ));
        }
    }
    Ok(())
}

fn path_component_ok(c: &[u8]) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (c.first(), c.last()) else { return false };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between two runs of letters and digits: one `.`, one or two `_`, or any number of `-`.
    c.split(alnum)
        .filter(|s| !s.is_empty())
        .all(|sep| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|b| *b == b'-'))
}

/// Up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("tag {tag:?} is not valid (up to {MAX_TAG} letters, digits, _ . -, not starting with . or -)"))
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digests rkt asks for or takes.
pub fn is_digest(digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(is_digest(&format!("sha256:{}", "a1".repeat(32))));
        for bad in
            ["sha256:", "sha512:abc", &format!("sha256:{}", "A1".repeat(32)), &format!("sha256:{}", "a".repeat(63))]
        {
            assert!(!is_digest(bad), "{bad}");
        }
    }

    #[test]
    fn registries() {
        for ok in ["registry-1.docker.io", "127.0.0.1:5000", "localhost", "[::1]:5000", "[fe80::1]", "Quay.IO"] {
            assert!(check_registry(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a.io", "a..io", "a.io:", "a.io:99999x", "a.io:12345678", "[::1", "[]", "a_b.io", "a.io/x"] {
            assert!(check_registry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories() {
        for ok in ["library/busybox", "a/b-c/d.e/f__g/h_i/j---k", "0/9"] {
            assert!(check_repository("r.io", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a//b", "a/../b", "a/.b", "a/b.", "a/b_._c", "a/b___c", "a/b?x", "a/b#x", "a/b%2e", "a/b c"] {
            assert!(check_repository("r.io", bad).is_err(), "{bad}");
        }
        assert!(check_repository("r.io", "play/BB").unwrap_err().contains("must be lowercase"));
        assert!(check_repository("r.io", &"a".repeat(251)).unwrap_err().contains("longer than 255"));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3-rc_1", "_x", "A", &"t".repeat(128)] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a?b", "a#b", "a/b", "a b", &"t".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
