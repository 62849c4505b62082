//! Semantic versions as appc's `acVersion` requires them (semver 2.0.0).

/// True when `s` is a valid semantic version such as `0.8.11` or `1.0.0-rc.1+build.5`.
pub fn is_semver(s: &str) -> bool {
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() != 3 || !numbers.iter().all(|n| is_numeric_identifier(n)) {
        return false;
    }
    let identifiers_ok = |part: &str, numeric_rule: bool| {
        part.split('.').all(|id| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && (!numeric_rule || !id.chars().all(|c| c.is_ascii_digit()) || is_numeric_identifier(id))
        })
    };
    pre.is_none_or(|p| identifiers_ok(p, true)) && build.is_none_or(|b| identifiers_ok(b, false))
}

fn is_numeric_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn versions() {
        for ok in ["0.8.11", "1.0.0", "1.0.0-rc.1", "1.0.0-alpha-1+build.7", "10.20.30+x"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["", "1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "v1.0.0", "1.0.0-a..b"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
