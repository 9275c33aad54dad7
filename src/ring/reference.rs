//! A deliberately naive ring, the yardstick for the fast one.
//!
//! [`ReferenceRing`] keeps its members in a `BTreeMap` and rebuilds a
//! `BTreeMap` of every point from scratch after every edit: no merging, no
//! index, no epochs, nothing clever to get wrong. Property tests and the
//! `ring_ops` fuzz target apply the same edits to it and to [`super::Ring`]
//! and require every lookup, every error and the whole point table
//! ([`ReferenceRing::points`]) to agree; the twemproxy interop test and the
//! ring benchmarks take their expected placement and point counts from it.
//! It is the one model of the continuum outside the ring itself: a test
//! that needs one builds a `ReferenceRing` rather than a sorted list of its
//! own. It is public so those tests (and users who doubt the fast ring) can
//! use it; it is not meant for serving.
//!
//! It models both placements, from the hash-level functions of
//! [`crate::hash`] only (it shares no code with `RingTable`):
//!
//! * [`Placement::Xxh3`] ([`ReferenceRing::new`]): a member's weight is its
//!   vnode count; its points are [`vnode_point`]`(name, 0..weight)`; equal
//!   points of different members are ordered by name.
//! * [`Placement::Ketama`] ([`ReferenceRing::with_placement`]): a member's
//!   point count is [`ketama_points_per_server`]`(weight, total weight,
//!   member count)`, its points are [`ketama_points`]`(name, k)` for `k` in
//!   `0..count / 4`, and equal points of different members are ordered by
//!   [`NodeId`] (server order: the order members joined).

use std::collections::{BTreeMap, BTreeSet};

use super::{NodeId, RingError, DEFAULT_MAX_WEIGHT, MAX_TOTAL_POINTS};
use crate::hash::{
    ketama_points, ketama_points_per_server, vnode_point, Placement, KETAMA_POINTS_PER_SERVER,
};

/// The naive reference ring; same semantics as [`super::Ring`] of the same
/// placement and limit, single threaded, O(points log points) per edit.
#[derive(Clone, Debug)]
pub struct ReferenceRing {
    /// How keys and points hash; fixed for the ring's life.
    placement: Placement,
    /// Members by id (id order is join order): name and weight.
    members: BTreeMap<NodeId, (String, u32)>,
    /// Every point, keyed by position, tie-break and the point's index
    /// among its member's points, so that a member's own equal points stay
    /// separate entries (the ring's table keeps them too). Ordered as the
    /// placement orders equal points; the first entry at or after a
    /// position owns it.
    points: BTreeMap<(u64, Tie, u32), NodeId>,
    next_id: u32,
    /// The largest weight (xxh3: vnode count) one member may have.
    max_weight: u32,
}

/// What orders two equal points: the entry that sorts first owns the point.
/// A ring only ever holds the variant of its placement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tie {
    /// Xxh3: by owner name. `Name(String::new())` is the least `Tie` of
    /// all (variants order first), so it starts every range search.
    Name(String),
    /// Ketama: by server order, i.e. by id.
    Server(NodeId),
}

impl Default for ReferenceRing {
    fn default() -> Self {
        ReferenceRing::new(DEFAULT_MAX_WEIGHT)
    }
}

impl ReferenceRing {
    /// An empty xxh3 reference ring with the given vnode limit, the model of
    /// [`super::Ring::with_max_weight`].
    pub fn new(max_weight: u32) -> ReferenceRing {
        ReferenceRing::with_placement(Placement::Xxh3, max_weight)
    }

    /// An empty reference ring placing keys by `placement`, whose members
    /// may have weights (xxh3: vnode counts) `1..=max_weight`: the model of
    /// [`super::Ring::with_placement`].
    pub fn with_placement(placement: Placement, max_weight: u32) -> ReferenceRing {
        ReferenceRing {
            placement,
            members: BTreeMap::new(),
            points: BTreeMap::new(),
            next_id: 0,
            max_weight,
        }
    }

    /// How this ring places keys.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The largest weight (xxh3: vnode count) this ring accepts.
    pub fn max_weight(&self) -> u32 {
        self.max_weight
    }

    fn rebuild(&mut self) {
        self.points.clear();
        match self.placement {
            Placement::Xxh3 => {
                for (&id, (name, vnodes)) in &self.members {
                    for i in 0..*vnodes {
                        let tie = Tie::Name(name.clone());
                        self.points.insert((vnode_point(name, i), tie, i), id);
                    }
                }
            }
            Placement::Ketama => {
                for (id, count) in self.point_counts().collect::<Vec<_>>() {
                    let name = &self.members[&id].0;
                    for k in 0..count / 4 {
                        for (j, p) in (4 * k..).zip(ketama_points(name, k)) {
                            self.points.insert((u64::from(p), Tie::Server(id), j), id);
                        }
                    }
                }
            }
        }
    }

    /// Each member's point count, by id: its weight under xxh3, and under
    /// ketama [`ketama_points_per_server`] of its weight, the total weight
    /// and the member count. This is what [`super::NodeInfo::vnodes`] and
    /// [`super::NodeShare::vnodes`] report.
    pub fn point_counts(&self) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        // Edits keep the total within u32 (`TotalWeightTooLarge`), and
        // there are far fewer members than u32::MAX.
        let total: u64 = self.members.values().map(|m| u64::from(m.1)).sum();
        let total = u32::try_from(total).expect("total weight checked by every edit");
        let servers = u32::try_from(self.members.len()).expect("member count fits u32");
        let placement = self.placement;
        self.members
            .iter()
            .map(move |(&id, (_, weight))| match placement {
                Placement::Xxh3 => (id, *weight),
                Placement::Ketama => (id, ketama_points_per_server(*weight, total, servers)),
            })
    }

    fn vnodes_ok(&self, vnodes: u32) -> Result<(), RingError> {
        let max = self.max_weight;
        match (self.placement, vnodes) {
            (_, v) if (1..=max).contains(&v) => Ok(()),
            (placement, weight) => Err(RingError::WeightOutOfRange {
                weight,
                max,
                placement,
            }),
        }
    }

    /// The capacity checks for the membership in which member `replaced`
    /// (or, if `None`, a new member) has `weight`. Xxh3: the points (the sum
    /// of weights) must fit [`MAX_TOTAL_POINTS`]. Ketama: the total weight
    /// must fit a `u32`, then `members * 160` points must fit
    /// [`MAX_TOTAL_POINTS`].
    fn capacity_ok(&self, replaced: Option<NodeId>, weight: u32) -> Result<(), RingError> {
        let others: u64 = self
            .members
            .iter()
            .filter(|(&id, _)| Some(id) != replaced)
            .map(|(_, m)| u64::from(m.1))
            .sum();
        let total = others + u64::from(weight);
        let servers = self.members.len() + usize::from(replaced.is_none());
        let requested = match self.placement {
            Placement::Xxh3 => total as usize,
            Placement::Ketama => {
                if total > u64::from(u32::MAX) {
                    return Err(RingError::TotalWeightTooLarge { total });
                }
                servers * KETAMA_POINTS_PER_SERVER as usize
            }
        };
        if requested > MAX_TOTAL_POINTS {
            return Err(RingError::TooManyPoints {
                requested,
                max: MAX_TOTAL_POINTS,
            });
        }
        Ok(())
    }

    /// Same contract as [`super::Ring::add_node`]: `vnodes` is the new
    /// member's weight (xxh3: its vnode count).
    pub fn add_node(&mut self, name: &str, vnodes: u32) -> Result<NodeId, RingError> {
        let max = self.placement.max_name_bytes();
        if !(1..=max).contains(&name.len()) {
            return Err(RingError::InvalidName {
                len: name.len(),
                max,
            });
        }
        self.vnodes_ok(vnodes)?;
        if self.members.values().any(|(n, _)| n == name) {
            return Err(RingError::DuplicateName(name.to_owned()));
        }
        self.capacity_ok(None, vnodes)?;
        if self.next_id == u32::MAX {
            return Err(RingError::IdsExhausted);
        }
        let id = NodeId(self.next_id);
        self.next_id += 1;
        self.members.insert(id, (name.to_owned(), vnodes));
        self.rebuild();
        Ok(id)
    }

    /// Same contract as [`super::Ring::remove_node`].
    pub fn remove_node(&mut self, id: NodeId) -> Result<(), RingError> {
        self.members.remove(&id).ok_or(RingError::UnknownNode(id))?;
        self.rebuild();
        Ok(())
    }

    /// Same contract as [`super::Ring::set_weight`]: `vnodes` is the
    /// member's new weight (xxh3: its vnode count).
    pub fn set_weight(&mut self, id: NodeId, vnodes: u32) -> Result<(), RingError> {
        if !self.members.contains_key(&id) {
            return Err(RingError::UnknownNode(id));
        }
        self.vnodes_ok(vnodes)?;
        self.capacity_ok(Some(id), vnodes)?;
        self.members.get_mut(&id).expect("checked above").1 = vnodes;
        self.rebuild();
        Ok(())
    }

    /// The position of `key` on this ring ([`Placement::key_hash`]).
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        self.placement.key_hash(key)
    }

    /// The point at which `key`'s owner is found: the first point `>=
    /// key_hash(key)`, wrapping; `None` on an empty ring. The model of
    /// [`super::RingTable::point_for`].
    pub fn point_for(&self, key: &[u8]) -> Option<u64> {
        let from = first_at(self.key_hash(key));
        self.points
            .range(from..)
            .chain(self.points.iter())
            .next()
            .map(|((p, _, _), _)| *p)
    }

    /// Every point with its owner, in ring order: by position, equal
    /// positions in the placement's tie order (xxh3: by owner name;
    /// ketama: by id), a member's own equal points once each. The model
    /// of [`super::RingTable::points`]; the first entry at or after a
    /// position owns it.
    pub fn points(&self) -> impl ExactSizeIterator<Item = (u64, NodeId)> + '_ {
        self.points.iter().map(|(&(p, _, _), &id)| (p, id))
    }

    /// The owner of the first point `>= key_hash(key)`, wrapping.
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        self.lookup_hash(self.key_hash(key))
    }

    /// The owner of the first point `>= hash`, wrapping past the last point
    /// (and so from any position beyond a ketama ring's 32-bit space) to the
    /// first; `None` on an empty ring. The model of
    /// [`super::RingTable::lookup_hash`].
    pub fn lookup_hash(&self, hash: u64) -> Option<NodeId> {
        self.clockwise(hash).next()
    }

    /// The first `n` distinct owners clockwise from `key`.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let mut seen = BTreeSet::new();
        self.clockwise(self.key_hash(key))
            .filter(|id| seen.insert(*id))
            .take(n)
            .collect()
    }

    /// Every owner clockwise from position `hash`, once around the ring.
    fn clockwise(&self, hash: u64) -> impl Iterator<Item = NodeId> + '_ {
        let from = first_at(hash);
        self.points
            .range(from.clone()..)
            .chain(self.points.range(..from))
            .map(|(_, &id)| id)
    }

    /// The members, sorted by id: id, name and weight. The weight is what
    /// `add_node`/`set_weight` set (what [`super::NodeInfo::weight`]
    /// reports): under xxh3 it is also the member's vnode (point) count;
    /// under ketama the point count is derived, see
    /// [`ReferenceRing::point_counts`].
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &str, u32)> {
        self.members
            .iter()
            .map(|(&id, (n, v))| (id, n.as_str(), *v))
    }
}

/// The least key at position `hash` of [`ReferenceRing::points`]: a range
/// from it starts with the first point `>= hash`.
fn first_at(hash: u64) -> (u64, Tie, u32) {
    (hash, Tie::Name(String::new()), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::KETAMA_MAX_NAME_BYTES;
    use crate::ring::Ring;

    /// Two names whose first ketama digests (`k` = 0) share the point
    /// 3 732 221 958 (found by a birthday search over `"tie{i}"`).
    const TIE: (&str, &str, u64) = ("tie14331", "tie17616", 3_732_221_958);

    #[test]
    fn the_tie_names_tie() {
        let a = ketama_points(TIE.0, 0);
        let b = ketama_points(TIE.1, 0);
        assert!(a.iter().any(|&p| u64::from(p) == TIE.2));
        assert!(b.iter().any(|&p| u64::from(p) == TIE.2));
    }

    /// A name two of whose own ketama points are equal: digests `k` = 12
    /// and `k` = 39 both start with the point 3 112 093 099 (found by a
    /// search over `"self{i}"`).
    const SELF_TIE: (&str, u64) = ("self70732", 3_112_093_099);

    #[test]
    fn a_members_own_equal_points_are_two_entries_in_both_rings() {
        let [a, b] = [12, 39].map(|k| u64::from(ketama_points(SELF_TIE.0, k)[0]));
        assert_eq!((a, b), (SELF_TIE.1, SELF_TIE.1));
        let ring = Ring::with_placement(Placement::Ketama, 10);
        let mut reference = ReferenceRing::with_placement(Placement::Ketama, 10);
        assert_eq!(
            ring.add_node(SELF_TIE.0, 1),
            reference.add_node(SELF_TIE.0, 1)
        );
        let want: Vec<(u64, NodeId)> = reference.points().collect();
        assert_eq!(want.len(), KETAMA_POINTS_PER_SERVER as usize);
        assert_eq!(want.iter().filter(|&&(p, _)| p == SELF_TIE.1).count(), 2);
        assert_eq!(ring.pin().points().collect::<Vec<_>>(), want);
    }

    #[test]
    fn xxh3_points_match_the_ring() {
        let ring = Ring::new();
        let mut reference = ReferenceRing::default();
        for (name, vnodes) in [("node1", 40), ("node10", 7), ("a", 100)] {
            assert_eq!(
                ring.add_node(name, vnodes),
                reference.add_node(name, vnodes)
            );
        }
        assert_eq!(reference.points().len(), 147);
        let want: Vec<(u64, NodeId)> = reference.points().collect();
        assert_eq!(ring.pin().points().collect::<Vec<_>>(), want);
        assert!(want.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn ketama_ties_go_to_the_earlier_member_in_both_rings() {
        for (first, second) in [(TIE.0, TIE.1), (TIE.1, TIE.0)] {
            let ring = Ring::with_placement(Placement::Ketama, 10);
            let mut reference = ReferenceRing::with_placement(Placement::Ketama, 10);
            for name in [first, second] {
                assert_eq!(ring.add_node(name, 1), reference.add_node(name, 1));
            }
            assert_eq!(reference.lookup_hash(TIE.2), Some(NodeId(0)));
            assert_eq!(ring.pin().lookup_hash(TIE.2), Some(NodeId(0)));
            // The earlier member leaves: the point is the later one's.
            ring.remove_node(NodeId(0)).unwrap();
            reference.remove_node(NodeId(0)).unwrap();
            assert_eq!(reference.lookup_hash(TIE.2), Some(NodeId(1)));
            assert_eq!(ring.pin().lookup_hash(TIE.2), Some(NodeId(1)));
        }
    }

    #[test]
    fn ketama_errors_match_the_ring() {
        let max = u32::MAX;
        let ring = Ring::with_placement(Placement::Ketama, max);
        let mut reference = ReferenceRing::with_placement(Placement::Ketama, max);
        let long = "k".repeat(KETAMA_MAX_NAME_BYTES);
        let too_long = "k".repeat(KETAMA_MAX_NAME_BYTES + 1);
        assert_eq!(ring.add_node(&long, max), reference.add_node(&long, max));
        let edits: Vec<(&str, u32)> = vec![
            (&too_long, 1),
            ("", 1),
            ("b", 0),
            (&long, 1),
            ("b", 1),
            ("b", max),
        ];
        for (name, weight) in edits {
            let want = reference.add_node(name, weight);
            assert!(want.is_err(), "{name}: {want:?}");
            assert_eq!(ring.add_node(name, weight), want);
        }
        assert_eq!(
            reference.add_node("b", 1),
            Err(RingError::TotalWeightTooLarge {
                total: u64::from(max) + 1
            })
        );
        assert_eq!(
            ring.set_weight(NodeId(0), 1),
            reference.set_weight(NodeId(0), 1)
        );
        assert_eq!(
            ring.add_node("b", max - 1),
            reference.add_node("b", max - 1)
        );
        for (id, weight) in [(0, 2), (0, 0), (1, max), (7, 1)] {
            let want = reference.set_weight(NodeId(id), weight);
            assert!(want.is_err(), "{id} {weight}: {want:?}");
            assert_eq!(ring.set_weight(NodeId(id), weight), want);
        }
        let counts: Vec<(NodeId, u32)> = reference.point_counts().collect();
        let shares = ring.nodes();
        let got: Vec<(NodeId, u32)> = shares.iter().map(|s| (s.id, s.points)).collect();
        assert_eq!(got, counts);
    }

    #[test]
    fn ketama_lookups_match_the_ring() {
        let ring = Ring::with_placement(Placement::Ketama, 1000);
        let mut reference = ReferenceRing::with_placement(Placement::Ketama, 1000);
        for (name, weight) in [("10.0.1.1", 600), ("10.0.1.2", 300), ("10.0.1.3", 200)] {
            assert_eq!(
                ring.add_node(name, weight),
                reference.add_node(name, weight)
            );
        }
        let snap = ring.pin();
        let points: Vec<(u64, NodeId)> = snap.points().collect();
        assert_eq!(points, reference.points().collect::<Vec<_>>());
        for &(p, _) in &points {
            for h in [p.wrapping_sub(1), p, p + 1] {
                assert_eq!(snap.lookup_hash(h), reference.lookup_hash(h), "{h}");
            }
        }
        for h in [0, u64::from(u32::MAX), 1 << 32, u64::MAX] {
            assert_eq!(snap.lookup_hash(h), reference.lookup_hash(h), "{h}");
        }
        assert_eq!(reference.lookup_hash(u64::MAX), Some(points[0].1));
        for i in 0..500u32 {
            let key = format!("key:{i}");
            assert_eq!(
                snap.lookup(key.as_bytes()),
                reference.lookup(key.as_bytes())
            );
            assert_eq!(
                snap.lookup_n(key.as_bytes(), 3),
                reference.lookup_n(key.as_bytes(), 3)
            );
        }
    }
}
