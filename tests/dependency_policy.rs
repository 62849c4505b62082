//! The tar parsers every image passes through, checked in the lock file: no crate that a known
//! parser differential or extraction fault affects (`../shared/reference/hostile-inputs.md`,
//! class 4) may come back with a dependency update. `cargo deny` would read the advisory
//! database for this, which this machine cannot download; these are the advisories that bear
//! on how rkt reads archives.

use std::collections::BTreeMap;

/// A crate that must not be in the build, or only from `fixed` on, and why.
struct Rule {
    name: &'static str,
    fixed: Option<(u64, u64, u64)>,
    why: &'static str,
}

const RULES: [Rule; 3] = [
    Rule {
        name: "tokio-tar",
        fixed: None,
        why: "unmaintained; PAX size parser differential (TARmageddon, CVE-2025-62518, RUSTSEC-2025-0111): use astral-tokio-tar",
    },
    Rule {
        name: "astral-tokio-tar",
        fixed: Some((0, 6, 2)),
        why: "GHSA-fp55-jw48-c537 and GHSA-xx64-wwv2-hcqq (fixed in 0.6.1), GHSA-3cv2-h65g-fgmm (fixed in 0.6.2)",
    },
    Rule { name: "tar", fixed: Some((0, 4, 45)), why: "CVE-2026-33055, a PAX size parser differential (fixed in 0.4.45)" },
];

/// Each package of a Cargo.lock: name, and every version of it locked.
fn locked(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        let value = |key: &str| {
            let rest = line.strip_prefix(key)?.trim().strip_prefix('=')?.trim();
            Some(rest.trim_matches('"').to_string())
        };
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = value("name") {
            name = Some(n);
        } else if let (Some(v), Some(n)) = (value("version"), &name) {
            packages.entry(n.clone()).or_default().push(v);
        }
    }
    packages
}

fn version(text: &str) -> (u64, u64, u64) {
    let core = text.split(['-', '+']).next().unwrap_or(text);
    let mut parts = core.split('.').map(|p| p.parse::<u64>().unwrap_or_else(|_| panic!("version {text:?}")));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// What breaks the rules, one line each.
fn violations(lock: &str) -> Vec<String> {
    let packages = locked(lock);
    let mut found = Vec::new();
    for rule in &RULES {
        for v in packages.get(rule.name).into_iter().flatten() {
            if rule.fixed.is_none_or(|fixed| version(v) < fixed) {
                found.push(format!("{} {v}: {}", rule.name, rule.why));
            }
        }
    }
    found
}

#[test]
fn no_tar_parser_with_a_known_fault_is_locked() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let packages = locked(&lock);
    // The reader the store and the converter use is in the lock file, so the rules are read
    // against the right file.
    assert!(packages.contains_key("astral-tokio-tar") && packages.contains_key("rusqlite"), "{packages:?}");
    let found = violations(&lock);
    assert!(found.is_empty(), "Cargo.lock:\n{}", found.join("\n"));
}

#[test]
fn the_rules_catch_what_they_name() {
    let lock = "version = 4\n\n[[package]]\nname = \"tokio-tar\"\nversion = \"0.3.1\"\n\n\
                [[package]]\nname = \"astral-tokio-tar\"\nversion = \"0.6.1\"\n\n\
                [[package]]\nname = \"astral-tokio-tar\"\nversion = \"0.6.2\"\n\n\
                [[package]]\nname = \"tar\"\nversion = \"0.4.44\"\ndependencies = [\n \"filetime\",\n]\n\n\
                [[package]]\nname = \"tar\"\nversion = \"0.4.45\"\n";
    let found = violations(lock);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("tokio-tar 0.3.1"), "{found:?}");
    assert!(found[1].starts_with("astral-tokio-tar 0.6.1"), "{found:?}");
    assert!(found[2].starts_with("tar 0.4.44"), "{found:?}");
}
