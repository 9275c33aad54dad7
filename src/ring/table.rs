//! The frozen ring: one immutable snapshot of points, owners and nodes.
//!
//! A [`RingTable`] is built once and never changed. Edits build a new table
//! from the old one by merging sorted runs (no full re-sort), and
//! [`super::Ring`] publishes it. Everything a lookup reads is here.
//!
//! # Order of points
//!
//! Points are sorted by `(point, owner name)`. Ordering ties by *name* rather
//! than by `NodeId` makes collisions resolve the same way in every process,
//! whatever order the nodes were added in (ids depend on that order, names do
//! not): on a collision the node whose name sorts first owns the point.
//! A lookup takes the first point `>= key_hash`, wrapping past the largest
//! point to the first one.
//!
//! # The lookup index
//!
//! Besides the sorted points, a table keeps a bucket index: the hash space is
//! cut into `2^bits` equal buckets (`bits` chosen so there are at least as
//! many buckets as points), and `index[b]` is the first point in bucket `b`
//! or later. A lookup reads `index[b]` and `index[b + 1]` and scans the one or
//! two points between them, so it costs a constant number of cache lines
//! instead of a binary search's `log2(points)` dependent loads.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use super::NodeId;
use crate::hash::{key_hash, vnode_point};

/// The most buckets a lookup index gets: 2^22 entries of 4 bytes (16 MiB).
/// Rings larger than this (over 4M points) share buckets, which costs a
/// short scan, not correctness.
const MAX_INDEX_BITS: u32 = 22;

/// Above this many entries a bucket is searched by bisection instead of a
/// linear scan; only reachable when points crowd one bucket.
const LINEAR_SCAN_LIMIT: usize = 8;

/// One member of a ring, as the ring knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's stable id.
    pub id: NodeId,
    /// The node's unique name; its points derive from it.
    pub name: Arc<str>,
    /// How many points (virtual nodes) the node has on the ring.
    pub vnodes: u32,
}

/// A member of a ring with its share of the hash space, for listings.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeShare {
    /// The node's stable id.
    pub id: NodeId,
    /// The node's unique name.
    pub name: Arc<str>,
    /// How many points the node has on the ring.
    pub vnodes: u32,
    /// The fraction of the 64-bit hash space the node owns, in `[0, 1]`.
    pub share: f64,
}

/// An immutable ring snapshot: sorted points, their owners, the members and
/// a lookup index. Cheap to share by reference, `Clone` copies the arrays.
#[derive(Clone, Debug)]
pub struct RingTable {
    version: u64,
    /// Sorted by `(point, owner name)`; see the module docs.
    points: Box<[u64]>,
    /// `owners[i]` owns `points[i]`.
    owners: Box<[NodeId]>,
    /// `index[b]` = first `i` with `points[i] >> shift >= b`; one extra
    /// entry at the end holds `points.len()`.
    index: Box<[u32]>,
    /// `64 - bits`: a hash's bucket is `hash >> shift`.
    shift: u32,
    /// Members, sorted by id.
    nodes: Box<[NodeInfo]>,
}

impl RingTable {
    /// An empty ring at the given version: every lookup answers `None`.
    pub fn empty(version: u64) -> RingTable {
        RingTable::from_sorted(version, Vec::new(), (Vec::new(), Vec::new()))
    }

    /// Builds a table from scratch from a member list, sorting every point.
    ///
    /// Edits of a live ring do not come this way (they merge, see
    /// [`RingTable::with_node`]); this is for building a ring in one go.
    ///
    /// # Panics
    ///
    /// Panics if two members share an id or a name, or a name is longer than
    /// [`crate::hash::MAX_NAME_BYTES`]; [`super::Ring`] validates first.
    pub fn build(version: u64, mut nodes: Vec<NodeInfo>) -> RingTable {
        nodes.sort_by_key(|n| n.id);
        assert!(
            nodes.windows(2).all(|w| w[0].id != w[1].id),
            "duplicate node id"
        );
        let names: HashSet<&str> = nodes.iter().map(|n| &*n.name).collect();
        assert_eq!(names.len(), nodes.len(), "duplicate node name");
        let mut entries: Vec<(u64, &str, NodeId)> = nodes
            .iter()
            .flat_map(|n| (0..n.vnodes).map(move |i| (vnode_point(&n.name, i), &*n.name, n.id)))
            .collect();
        entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let points = entries.iter().map(|e| e.0).collect();
        let owners = entries.iter().map(|e| e.2).collect();
        RingTable::from_sorted(version, nodes, (points, owners))
    }

    /// Freezes sorted points and owners into a table and builds the index.
    fn from_sorted(
        version: u64,
        nodes: Vec<NodeInfo>,
        (points, owners): (Vec<u64>, Vec<NodeId>),
    ) -> RingTable {
        debug_assert_eq!(points.len(), owners.len());
        debug_assert!(points.windows(2).all(|w| w[0] <= w[1]));
        let (index, shift) = build_index(&points);
        RingTable {
            version,
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            index,
            shift,
            nodes: nodes.into_boxed_slice(),
        }
    }

    /// The version this snapshot was published as; every edit adds one.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Total points (virtual nodes of all members) on the ring.
    #[inline]
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// How many nodes are members.
    #[inline]
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The members, sorted by id.
    #[inline]
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The member with this id, if it is one.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes
            .binary_search_by_key(&id, |n| n.id)
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The member with this name, if it is one.
    pub fn node_by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| &*n.name == name)
    }

    /// The sorted points and their owners, for inspection and drawing.
    pub fn points(&self) -> impl ExactSizeIterator<Item = (u64, NodeId)> + '_ {
        self.points.iter().copied().zip(self.owners.iter().copied())
    }

    /// Index of the first point `>= hash`, wrapping to 0 past the last.
    /// The ring must not be empty.
    #[inline]
    fn position(&self, hash: u64) -> usize {
        // `shift` is at most 63 (there are at least 2 buckets), so the shift
        // cannot overflow, and `bucket + 1 < index.len()`.
        let bucket = (hash >> self.shift) as usize;
        let lo = self.index[bucket] as usize;
        let hi = self.index[bucket + 1] as usize;
        // Every point in `lo..hi` is in this bucket and `points[hi]` (if
        // any) is in a later one, hence `>= hash`: the answer is in `lo..=hi`.
        let slice = &self.points[lo..hi];
        let found = if slice.len() <= LINEAR_SCAN_LIMIT {
            lo + slice.iter().take_while(|&&p| p < hash).count()
        } else {
            lo + slice.partition_point(|&p| p < hash)
        };
        if found == self.points.len() {
            0
        } else {
            found
        }
    }

    /// The node that owns `key`, or `None` on an empty ring.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        self.lookup_hash(key_hash(key))
    }

    /// The node that owns ring position `hash` (a [`key_hash`] value).
    #[inline]
    pub fn lookup_hash(&self, hash: u64) -> Option<NodeId> {
        if self.points.is_empty() {
            return None;
        }
        Some(self.owners[self.position(hash)])
    }

    /// The first `n` distinct nodes clockwise from `key`: a replica set.
    ///
    /// The first element is `lookup(key)`; the result has
    /// `min(n, node_count())` elements.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let want = n.min(self.nodes.len());
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.position(key_hash(key));
        // A set only pays off for large replica counts; small ones scan `out`.
        let mut seen = (want > 16).then(|| HashSet::with_capacity(want));
        let len = self.points.len();
        for step in 0..len {
            let owner = self.owners[(start + step) % len];
            let new = match &mut seen {
                Some(set) => set.insert(owner),
                None => !out.contains(&owner),
            };
            if new {
                out.push(owner);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// Each member's share of the hash space, sorted by id.
    ///
    /// Point `i` owns the arc `(points[i-1], points[i]]`; the first point
    /// also owns the wrap-around arc past the last point. Shares sum to 1
    /// (up to rounding) on a non-empty ring.
    pub fn shares(&self) -> Vec<NodeShare> {
        let mut arcs = vec![0u128; self.nodes.len()];
        let mut prev = self.points.last().copied().unwrap_or(0);
        for (i, (&p, &owner)) in self.points.iter().zip(self.owners.iter()).enumerate() {
            // The wrap arc of the first point is 2^64 - last + first.
            let arc = if i == 0 {
                (1u128 << 64) - u128::from(prev) + u128::from(p)
            } else {
                u128::from(p - prev)
            };
            let slot = self
                .nodes
                .binary_search_by_key(&owner, |n| n.id)
                .expect("every owner is a member");
            arcs[slot] += arc;
            prev = p;
        }
        let total = (1u128 << 64) as f64;
        self.nodes
            .iter()
            .zip(arcs)
            .map(|(n, arc)| NodeShare {
                id: n.id,
                name: n.name.clone(),
                vnodes: n.vnodes,
                share: arc as f64 / total,
            })
            .collect()
    }

    /// A new table at `version` with `node` added and its points merged in.
    ///
    /// The caller has checked that the id and name are new.
    pub(crate) fn with_node(&self, version: u64, node: NodeInfo) -> RingTable {
        let added = sorted_points(&node.name, 0..node.vnodes);
        let mut nodes = self.nodes.to_vec();
        let id = node.id;
        let at = nodes.partition_point(|n| n.id < id);
        nodes.insert(at, node);
        let merged = self.merge(&nodes, &added, id);
        RingTable::from_sorted(version, nodes, merged)
    }

    /// A new table at `version` without node `id` and its points.
    pub(crate) fn without_node(&self, version: u64, id: NodeId) -> RingTable {
        let nodes: Vec<NodeInfo> = self.nodes.iter().filter(|n| n.id != id).cloned().collect();
        let kept = self
            .points()
            .filter(|&(_, owner)| owner != id)
            .unzip::<u64, NodeId, Vec<_>, Vec<_>>();
        RingTable::from_sorted(version, nodes, kept)
    }

    /// A new table at `version` in which node `id` has `vnodes` points.
    ///
    /// Raising from `v` to `w` merges in points `v..w`; lowering removes
    /// points `w..v`. No other point changes.
    pub(crate) fn with_vnodes(&self, version: u64, id: NodeId, vnodes: u32) -> RingTable {
        let mut nodes = self.nodes.to_vec();
        let slot = nodes
            .binary_search_by_key(&id, |n| n.id)
            .expect("caller checked membership");
        let old = nodes[slot].vnodes;
        nodes[slot].vnodes = vnodes;
        let name = nodes[slot].name.clone();
        match vnodes.cmp(&old) {
            Ordering::Equal => RingTable::from_sorted(version, nodes, self.arrays()),
            Ordering::Greater => {
                let added = sorted_points(&name, old..vnodes);
                let merged = self.merge(&nodes, &added, id);
                RingTable::from_sorted(version, nodes, merged)
            }
            Ordering::Less => {
                let removed = sorted_points(&name, vnodes..old);
                let kept = self.subtract(&removed, id);
                RingTable::from_sorted(version, nodes, kept)
            }
        }
    }

    fn arrays(&self) -> (Vec<u64>, Vec<NodeId>) {
        (self.points.to_vec(), self.owners.to_vec())
    }

    /// Merges `added` (sorted points, all owned by `id`) into this table's
    /// points. `nodes` is the new member list, used to break ties by name.
    fn merge(&self, nodes: &[NodeInfo], added: &[u64], id: NodeId) -> (Vec<u64>, Vec<NodeId>) {
        let name_of = |owner: NodeId| -> &str {
            let slot = nodes
                .binary_search_by_key(&owner, |n| n.id)
                .expect("every owner is a member");
            &nodes[slot].name
        };
        let new_name = name_of(id);
        let total = self.points.len() + added.len();
        let mut points = Vec::with_capacity(total);
        let mut owners = Vec::with_capacity(total);
        let (mut i, mut j) = (0, 0);
        while i < self.points.len() && j < added.len() {
            let (p, owner) = (self.points[i], self.owners[i]);
            // Existing entry first when its (point, name) sorts first; a
            // same-node tie (a node with two equal points) keeps it first too.
            let existing_first = match p.cmp(&added[j]) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => name_of(owner) <= new_name,
            };
            if existing_first {
                points.push(p);
                owners.push(owner);
                i += 1;
            } else {
                points.push(added[j]);
                owners.push(id);
                j += 1;
            }
        }
        points.extend_from_slice(&self.points[i..]);
        owners.extend_from_slice(&self.owners[i..]);
        points.extend_from_slice(&added[j..]);
        owners.resize(points.len(), id);
        (points, owners)
    }

    /// This table's points less the multiset `removed` (sorted points, all
    /// owned by `id`); other owners' points are kept even when equal.
    fn subtract(&self, removed: &[u64], id: NodeId) -> (Vec<u64>, Vec<NodeId>) {
        let keep = self.points.len().saturating_sub(removed.len());
        let mut points = Vec::with_capacity(keep);
        let mut owners = Vec::with_capacity(keep);
        let mut j = 0;
        for (p, owner) in self.points() {
            if owner == id {
                while j < removed.len() && removed[j] < p {
                    j += 1;
                }
                if j < removed.len() && removed[j] == p {
                    j += 1;
                    continue;
                }
            }
            points.push(p);
            owners.push(owner);
        }
        (points, owners)
    }
}

/// Points `range` of node `name`, sorted.
fn sorted_points(name: &str, range: std::ops::Range<u32>) -> Vec<u64> {
    let mut points: Vec<u64> = range.map(|i| vnode_point(name, i)).collect();
    points.sort_unstable();
    points
}

/// Builds the bucket index for sorted `points`; returns it and the shift.
fn build_index(points: &[u64]) -> (Box<[u32]>, u32) {
    // At least as many buckets as points (so a bucket holds about one
    // point), at least 2 (so the shift stays below 64), at most 2^MAX.
    let bits = points
        .len()
        .next_power_of_two()
        .trailing_zeros()
        .clamp(1, MAX_INDEX_BITS);
    let shift = 64 - bits;
    let buckets = 1usize << bits;
    let mut index = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for b in 0..buckets {
        while i < points.len() && ((points[i] >> shift) as usize) < b {
            i += 1;
        }
        index.push(u32::try_from(i).expect("point count fits u32"));
    }
    index.push(u32::try_from(points.len()).expect("point count fits u32"));
    (index.into_boxed_slice(), shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, name: &str, vnodes: u32) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            name: Arc::from(name),
            vnodes,
        }
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let t = RingTable::empty(0);
        assert_eq!(t.lookup(b"k"), None);
        assert!(t.lookup_n(b"k", 3).is_empty());
        assert!(t.shares().is_empty());
    }

    #[test]
    fn index_agrees_with_binary_search() {
        let t = RingTable::build(
            1,
            vec![info(0, "a", 100), info(1, "b", 37), info(2, "c", 5)],
        );
        for k in 0..5000u32 {
            let h = key_hash(&k.to_le_bytes());
            let pos = t.points.partition_point(|&p| p < h) % t.points.len();
            assert_eq!(t.lookup_hash(h), Some(t.owners[pos]));
        }
        // Exact points and the extremes.
        for &p in t.points.iter() {
            assert_eq!(t.points[t.position(p)], p);
        }
        assert_eq!(t.position(0), 0);
        assert_eq!(
            t.position(u64::MAX),
            if *t.points.last().unwrap() == u64::MAX {
                t.points.len() - 1
            } else {
                0
            }
        );
    }

    #[test]
    fn merge_equals_rebuild() {
        let base = RingTable::build(1, vec![info(0, "a", 50), info(2, "c", 20)]);
        let merged = base.with_node(2, info(1, "b", 30));
        let rebuilt = RingTable::build(
            2,
            vec![info(0, "a", 50), info(1, "b", 30), info(2, "c", 20)],
        );
        assert_eq!(merged.points, rebuilt.points);
        assert_eq!(merged.owners, rebuilt.owners);
        assert_eq!(merged.index, rebuilt.index);
        let up = merged.with_vnodes(3, NodeId(1), 90);
        let down = up.with_vnodes(4, NodeId(1), 30);
        assert_eq!(down.points, rebuilt.points);
        assert_eq!(down.owners, rebuilt.owners);
        let gone = down.without_node(5, NodeId(1));
        assert_eq!(gone.points, base.points);
        assert_eq!(gone.owners, base.owners);
    }

    #[test]
    fn shares_sum_to_one() {
        let t = RingTable::build(1, vec![info(0, "a", 10), info(1, "b", 20), info(2, "c", 1)]);
        let sum: f64 = t.shares().iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        let single = RingTable::build(1, vec![info(0, "solo", 1)]);
        assert!((single.shares()[0].share - 1.0).abs() < 1e-12);
    }
}
