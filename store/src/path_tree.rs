//! Archive paths as a tree of components. Checking every ancestor of an entry through a map of
//! whole paths hashes each ancestor's full path again: a chain of directories n deep costs n²
//! bytes of hashing per entry, and a small compressed archive of deep paths kept an import busy
//! for hours. Here a node is found from its parent by one component, and the walk starts from
//! the components the previous path shared (archives list neighbours together), so an entry
//! costs about its path's length.

use crate::keyed_hash::{HashedMap, KeyedHash};

/// A node's index; the root (the empty path) is 0.
pub type NodeId = u32;

pub struct PathTree<V> {
    /// A child's id by the keyed hash of its parent's id and its component.
    children: HashedMap<NodeId>,
    hash: KeyedHash,
    values: Vec<Option<V>>,
    last: Vec<u8>,
    /// The nodes of `last`'s components, each with the offset where its component ends.
    walked: Vec<(NodeId, usize)>,
}

impl<V> Default for PathTree<V> {
    fn default() -> Self {
        PathTree {
            children: HashedMap::default(),
            hash: KeyedHash::default(),
            values: vec![None],
            last: Vec::new(),
            walked: Vec::new(),
        }
    }
}

impl<V> PathTree<V> {
    /// Finds or makes the nodes of each component of `path` (a clean relative path: no empty,
    /// `.` or `..` components); `walked` then gives them.
    pub fn walk(&mut self, path: &[u8]) {
        let common = self.last.iter().zip(path).take_while(|(a, b)| a == b).count();
        let shared = self
            .walked
            .iter()
            .take_while(|(_, end)| *end <= common && (path.len() == *end || path[*end] == b'/'))
            .count();
        self.walked.truncate(shared);
        let mut start = self.walked.last().map_or(0, |(_, end)| end + 1);
        while start < path.len() {
            let end = path[start..].iter().position(|b| *b == b'/').map_or(path.len(), |i| start + i);
            let parent = self.walked.last().map_or(0, |(id, _)| *id);
            let node = self.child_or_new(parent, &path[start..end]);
            self.walked.push((node, end));
            start = end + 1;
        }
        self.last.clear();
        self.last.extend_from_slice(path);
    }

    /// The nodes of the last walked path's components, each with the offset at which its
    /// component ends: the last one is the path's own node, the others its ancestors from the
    /// top.
    pub fn walked(&self) -> &[(NodeId, usize)] {
        &self.walked
    }

    /// `path`'s node, if some walk made it; the walk's position is left alone.
    pub fn find(&self, path: &[u8]) -> Option<NodeId> {
        let mut node: NodeId = 0;
        for part in path.split(|b| *b == b'/') {
            node = *self.children.get(&self.hash.of((node, part)))?;
        }
        Some(node)
    }

    pub fn value(&self, node: NodeId) -> Option<&V> {
        self.values[node as usize].as_ref()
    }

    /// `node`'s value, made the default one first if it has none.
    pub fn value_mut(&mut self, node: NodeId) -> &mut V
    where
        V: Default,
    {
        self.values[node as usize].get_or_insert_with(V::default)
    }

    /// Sets `node`'s value, returning the one it had.
    pub fn set(&mut self, node: NodeId, value: V) -> Option<V> {
        self.values[node as usize].replace(value)
    }

    fn child_or_new(&mut self, parent: NodeId, name: &[u8]) -> NodeId {
        let key = self.hash.of((parent, name));
        let next = NodeId::try_from(self.values.len()).expect("fewer than 2^32 entries in one archive");
        let id = *self.children.entry(key).or_insert(next);
        if id == next {
            self.values.push(None);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tree: &mut PathTree<u8>, path: &[u8]) -> Vec<NodeId> {
        tree.walk(path);
        tree.walked().iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn walks_share_nodes_whatever_came_before() {
        let mut tree = PathTree::<u8>::default();
        let abc = ids(&mut tree, b"a/b/c");
        assert_eq!(abc.len(), 3);
        // A sibling whose name starts like the last component is not that component.
        let abcd = ids(&mut tree, b"a/b/cd");
        assert_eq!(abcd[..2], abc[..2]);
        assert_ne!(abcd[2], abc[2]);
        let ab = ids(&mut tree, b"a/b");
        assert_eq!(ab, abc[..2]);
        let x = ids(&mut tree, b"x");
        assert!(!abc.contains(&x[0]));
        assert_eq!(ids(&mut tree, b"a/b/c"), abc, "found again from the top");
        tree.walk(b"a/b/c");
        assert_eq!(tree.walked().iter().map(|(_, end)| *end).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(tree.find(b"a/b/c"), Some(abc[2]));
        assert_eq!(tree.find(b"a/c"), None);
        assert_eq!(ids(&mut tree, b"a/b/cd"), abcd, "find left the walk's position alone");
    }

    #[test]
    fn values_belong_to_nodes() {
        let mut tree = PathTree::default();
        tree.walk(b"rootfs/etc");
        let node = tree.walked()[1].0;
        assert_eq!(tree.value(node), None);
        assert_eq!(tree.set(node, 7), None);
        assert_eq!(tree.set(node, 8), Some(7));
        tree.walk(b"rootfs");
        let parent = tree.walked()[0].0;
        assert_eq!(tree.value(parent), None);
        assert_eq!(tree.value(tree.find(b"rootfs/etc").unwrap()), Some(&8));
    }
}
