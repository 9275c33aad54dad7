//! A deliberately naive ring, the yardstick for the fast one.
//!
//! [`ReferenceRing`] keeps its members in a `BTreeMap` and rebuilds a
//! `BTreeMap<(point, name), NodeId>` from scratch after every edit: no
//! merging, no index, no epochs, nothing clever to get wrong. Property tests
//! and the `ring_ops` fuzz target apply the same edits to it and to
//! [`super::Ring`] and require every lookup and every error to agree. It is
//! public so those tests (and users who doubt the fast ring) can use it; it
//! is not meant for serving.

use std::collections::{BTreeMap, BTreeSet};

use super::{NodeId, RingError, DEFAULT_MAX_VNODES, MAX_TOTAL_POINTS};
use crate::hash::{key_hash, vnode_point, MAX_NAME_BYTES};

/// The naive reference ring; same semantics as [`super::Ring`], single
/// threaded, O(points log points) per edit.
#[derive(Clone, Debug)]
pub struct ReferenceRing {
    members: BTreeMap<NodeId, (String, u32)>,
    points: BTreeMap<(u64, String), NodeId>,
    next_id: u32,
    max_vnodes: u32,
}

impl Default for ReferenceRing {
    fn default() -> Self {
        ReferenceRing::new(DEFAULT_MAX_VNODES)
    }
}

impl ReferenceRing {
    /// An empty reference ring with the given vnode limit.
    pub fn new(max_vnodes: u32) -> ReferenceRing {
        ReferenceRing {
            members: BTreeMap::new(),
            points: BTreeMap::new(),
            next_id: 0,
            max_vnodes,
        }
    }

    fn total_points(&self) -> usize {
        self.members.values().map(|m| m.1 as usize).sum()
    }

    fn rebuild(&mut self) {
        self.points.clear();
        for (&id, (name, vnodes)) in &self.members {
            for i in 0..*vnodes {
                // A node with two equal points keeps one entry; lookups are
                // unaffected (same owner either way).
                self.points.insert((vnode_point(name, i), name.clone()), id);
            }
        }
    }

    fn vnodes_ok(&self, vnodes: u32) -> Result<(), RingError> {
        match vnodes {
            0 => Err(RingError::VnodesOutOfRange {
                vnodes,
                max: self.max_vnodes,
            }),
            v if v > self.max_vnodes => Err(RingError::VnodesOutOfRange {
                vnodes,
                max: self.max_vnodes,
            }),
            _ => Ok(()),
        }
    }

    /// Same contract as [`super::Ring::add_node`].
    pub fn add_node(&mut self, name: &str, vnodes: u32) -> Result<NodeId, RingError> {
        if !(1..=MAX_NAME_BYTES).contains(&name.len()) {
            return Err(RingError::InvalidName {
                len: name.len(),
                max: MAX_NAME_BYTES,
            });
        }
        self.vnodes_ok(vnodes)?;
        if self.members.values().any(|(n, _)| n == name) {
            return Err(RingError::DuplicateName(name.to_owned()));
        }
        let requested = self.total_points() + vnodes as usize;
        if requested > MAX_TOTAL_POINTS {
            return Err(RingError::TooManyPoints {
                requested,
                max: MAX_TOTAL_POINTS,
            });
        }
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

    /// Same contract as [`super::Ring::set_vnodes`].
    pub fn set_vnodes(&mut self, id: NodeId, vnodes: u32) -> Result<(), RingError> {
        let old = self.members.get(&id).ok_or(RingError::UnknownNode(id))?.1;
        self.vnodes_ok(vnodes)?;
        let requested = self.total_points() - old as usize + vnodes as usize;
        if requested > MAX_TOTAL_POINTS {
            return Err(RingError::TooManyPoints {
                requested,
                max: MAX_TOTAL_POINTS,
            });
        }
        self.members.get_mut(&id).expect("checked above").1 = vnodes;
        self.rebuild();
        Ok(())
    }

    /// The owner of the first point `>= key_hash(key)`, wrapping.
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        self.clockwise(key).next()
    }

    /// The first `n` distinct owners clockwise from `key`.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let mut seen = BTreeSet::new();
        self.clockwise(key)
            .filter(|id| seen.insert(*id))
            .take(n)
            .collect()
    }

    /// Every owner clockwise from `key`, once around the ring.
    fn clockwise<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = NodeId> + 'a {
        let from = (key_hash(key), String::new());
        self.points
            .range(from.clone()..)
            .chain(self.points.range(..from))
            .map(|(_, &id)| id)
    }

    /// The members: id, name and vnode count.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &str, u32)> {
        self.members
            .iter()
            .map(|(&id, (n, v))| (id, n.as_str(), *v))
    }
}
