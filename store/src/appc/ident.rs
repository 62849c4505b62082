//! The appc identifier grammars: AC identifiers (image, label and annotation names) and AC names
//! (app, volume, mount point and port names).

/// True when `s` matches `^[a-z0-9]+([-._~/][a-z0-9]+)*$`.
pub fn is_ac_identifier(s: &str) -> bool {
    matches_segments(s, |c| matches!(c, '-' | '.' | '_' | '~' | '/'))
}

/// True when `s` matches `^[a-z0-9]+([-][a-z0-9]+)*$`.
pub fn is_ac_name(s: &str) -> bool {
    matches_segments(s, |c| c == '-')
}

/// True when `s` matches `^[A-Za-z_][A-Za-z_0-9.-]*$`, the appc environment variable grammar.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Runs of `[a-z0-9]` joined by single separator characters, with no separator at either end.
fn matches_segments(s: &str, is_separator: impl Fn(char) -> bool) -> bool {
    let mut previous_was_separator = true;
    for c in s.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            previous_was_separator = false;
        } else if is_separator(c) && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

/// Turns any string into an AC identifier as appc's `SanitizeACIdentifier` does: lowercase,
/// invalid characters become `_`, separators are trimmed from both ends.
pub fn sanitize_ac_identifier(s: &str) -> String {
    sanitize(s, '_', |c| matches!(c, '-' | '.' | '_' | '~' | '/'))
}

/// Turns any string into an AC name as appc's `SanitizeACName` does (invalid characters become `-`).
pub fn sanitize_ac_name(s: &str) -> String {
    sanitize(s, '-', |c| c == '-')
}

fn sanitize(s: &str, replacement: char, is_separator: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.to_lowercase().chars() {
        let valid = c.is_ascii_lowercase() || c.is_ascii_digit();
        let next = if valid || is_separator(c) { c } else { replacement };
        let last_is_sep = out.chars().last().is_none_or(|l| !(l.is_ascii_lowercase() || l.is_ascii_digit()));
        if !(next.is_ascii_lowercase() || next.is_ascii_digit()) && last_is_sep {
            continue;
        }
        out.push(next);
    }
    while out.chars().last().is_some_and(|l| !(l.is_ascii_lowercase() || l.is_ascii_digit())) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "example.com/app", "coreos.com/rkt/stage1-coreos", "a~b_c.d-e/f", "0"] {
            assert!(is_ac_identifier(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a--b", "a/", "/a", "a b", "a..b", "ä", "example.com//x"] {
            assert!(!is_ac_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_ac_name("redis-server"));
        assert!(!is_ac_name("redis.server"));
        assert!(!is_ac_name("redis/server"));
        assert!(!is_ac_name(""));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("PATH"));
        assert!(is_env_name("_a.b-c9"));
        assert!(!is_env_name("9A"));
        assert!(!is_env_name("A=B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_ac_name("My App!"), "my-app");
        assert_eq!(sanitize_ac_identifier("Library/Busybox:Latest"), "library/busybox_latest");
        assert_eq!(sanitize_ac_name("--x--"), "x");
    }
}
