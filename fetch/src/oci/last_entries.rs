//! A layer that gives a path twice, the second time otherwise (`tar -r` of a changed file, a
//! directory replaced by a file). Docker and umoci apply a layer's entries in turn, so each
//! path ends as its last entry made it, and a path replaced by anything but a directory loses
//! what was below it (podman refuses such layers). An ACI holds each path once, so such a layer
//! is read once more, to learn where each path's entries are, and then converted again keeping
//! only what the last entries leave.

use rkt_store::{HashedMap, KeyedHash};

/// Where each path of a layer last comes, and last comes as something other than a directory,
/// by the entries' order in the layer.
pub(crate) struct LastEntries {
    /// Paths are kept as keyed hashes: a million-entry layer would otherwise keep all its
    /// names, and no layer can be made to collide with keys it cannot know.
    hash: KeyedHash,
    paths: HashedMap<Occurrences>,
}

#[derive(Clone, Copy)]
struct Occurrences {
    last: u64,
    last_non_directory: Option<u64>,
}

impl LastEntries {
    pub(crate) fn new() -> Self {
        LastEntries { hash: KeyedHash::default(), paths: HashedMap::default() }
    }

    /// Records the entry at `ordinal` (counted from the layer's first) for `path` (clean, relative).
    pub(crate) fn record(&mut self, path: &[u8], ordinal: u64, directory: bool) {
        let key = self.hash.of(path);
        let seen = self.paths.entry(key).or_insert(Occurrences { last: ordinal, last_non_directory: None });
        seen.last = ordinal;
        if !directory {
            seen.last_non_directory = Some(ordinal);
        }
    }

    /// Whether the entry at `ordinal` for `path` is in the tree the layer leaves: no later entry
    /// gives its path, and no later entry replaces a directory above it by something else.
    pub(crate) fn keeps(&self, path: &[u8], ordinal: u64) -> bool {
        let later = |p: &[u8], of: fn(&Occurrences) -> Option<u64>| {
            self.paths.get(&self.hash.of(p)).and_then(of).is_some_and(|at| at > ordinal)
        };
        if later(path, |o| Some(o.last)) {
            return false;
        }
        let ancestors = path.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(i, _)| &path[..i]);
        !ancestors.into_iter().any(|dir| later(dir, |o| o.last_non_directory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orders of umoci's unpacking, checked by hand against `umoci unpack`.
    #[test]
    fn each_path_keeps_its_last_entry_and_a_replaced_directory_loses_its_content() {
        // p/ p/x p(file) p/ p/z q q r/ r/y r/(again)
        let entries: &[(&[u8], bool)] = &[
            (b"p", true),
            (b"p/x", false),
            (b"p", false),
            (b"p", true),
            (b"p/z", false),
            (b"q", false),
            (b"q", false),
            (b"r", true),
            (b"r/y", false),
            (b"r", true),
        ];
        let mut last = LastEntries::new();
        for (i, (path, directory)) in entries.iter().enumerate() {
            last.record(path, i as u64, *directory);
        }
        let kept: Vec<usize> = (0..entries.len()).filter(|i| last.keeps(entries[*i].0, *i as u64)).collect();
        assert_eq!(kept, vec![3, 4, 6, 8, 9]);
    }
}
