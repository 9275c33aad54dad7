//! The topology: what requests route by, and the shared state the request
//! path, membership changes and the mover work on.
//!
//! This module owns the epoch-published [`Topology`] (the rings in play and
//! every node store by id), its publication, and the per-key lock stripes.
//! Only the cluster's own modules reach it (`pub(super)`); the orderings and
//! the safety argument of the publication are in the [`super`] module docs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use parking_lot::Mutex;

use super::mover::Progress;
use super::ClusterConfig;
use crate::node::Store;
use crate::ring::{NodeId, Ring, RingTable};

/// Number of per-key lock stripes writers and the mover share during a
/// migration. 1024 keeps two unrelated keys on one stripe rare (a writer
/// holds one stripe for one store operation) while costing 1 KiB.
const STRIPES: usize = 1024;

/// One cache node as the topology holds it.
pub(super) struct NodeSlot {
    pub(super) id: NodeId,
    pub(super) name: Arc<str>,
    /// Its weight when it was last in the ring.
    pub(super) weight: u32,
    /// Its point count when it was last in the ring.
    pub(super) vnodes: u32,
    pub(super) store: Arc<dyn Store>,
}

/// What requests route by: one immutable, epoch-published value.
pub(super) struct Topology {
    /// +1 per publish; lets a read notice that the topology changed.
    pub(super) generation: u64,
    /// The current ring first, then older rings whose keys may still sit on
    /// their old owners, newest first. More than one ring means a migration
    /// is running.
    pub(super) rings: Vec<Arc<RingTable>>,
    /// Every node that may hold keys: ring members and draining nodes,
    /// sorted by id.
    pub(super) nodes: Vec<Arc<NodeSlot>>,
}

impl Topology {
    #[inline]
    pub(super) fn current(&self) -> &RingTable {
        &self.rings[0]
    }

    #[inline]
    pub(super) fn migrating(&self) -> bool {
        self.rings.len() > 1
    }

    #[inline]
    pub(super) fn store(&self, id: NodeId) -> &dyn Store {
        let slot = self
            .nodes
            .binary_search_by_key(&id, |n| n.id)
            .expect("every ring member has a node slot");
        &*self.nodes[slot].store
    }

    /// The owners of `hash` under the older rings in play, excluding
    /// `owner` and duplicates, newest ring first.
    pub(super) fn previous_owners(&self, hash: u64, owner: NodeId) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for ring in &self.rings[1..] {
            if let Some(o) = ring.lookup_hash(hash) {
                if o != owner && !out.contains(&o) {
                    out.push(o);
                }
            }
        }
        out
    }
}

/// State shared by the request path, membership changes and the
/// background threads.
pub(super) struct Inner {
    /// Membership edits go through the ring; requests read `topology`.
    pub(super) ring: Ring,
    /// Never null.
    topology: Atomic<Topology>,
    /// Serializes membership changes and every topology publish.
    pub(super) membership: Mutex<()>,
    /// Per-key locks: writers take one only while a migration runs; the
    /// mover takes one per key it moves. Reads never take them.
    stripes: Box<[Mutex<()>]>,
    pub(super) progress: Progress,
    pub(super) config: ClusterConfig,
}

impl Inner {
    /// The state of an empty cluster: a ring of `config`'s placement and a
    /// topology of that (empty) ring and no nodes.
    pub(super) fn new(config: ClusterConfig) -> Inner {
        let ring = Ring::with_placement(config.placement, config.max_vnodes);
        let first = Arc::new(ring.pin().clone());
        Inner {
            ring,
            topology: Atomic::new(Topology {
                generation: 0,
                rings: vec![first],
                nodes: Vec::new(),
            }),
            membership: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            progress: Progress::new(),
            config,
        }
    }

    /// The current topology, valid while `guard` is pinned and `self` lives.
    #[inline]
    pub(super) fn topology<'a>(&'a self, guard: &'a Guard) -> &'a Topology {
        // Acquire pairs with the Release swap in `publish`.
        let t = self.topology.load(Ordering::Acquire, guard);
        // SAFETY: never null (set in `Cluster::new`, replaced only by
        // `publish` with non-null values); a replaced topology is retired
        // with `defer_destroy`, so it outlives every guard pinned when it
        // was reachable; `Inner`'s `Drop` needs `&mut self`.
        unsafe { t.deref() }
    }

    /// Publishes `rings` and `nodes` as the next topology. Call with
    /// `membership` held.
    pub(super) fn publish(&self, rings: Vec<Arc<RingTable>>, nodes: Vec<Arc<NodeSlot>>) {
        let guard = epoch::pin();
        let generation = self.topology(&guard).generation + 1;
        let next = Owned::new(Topology {
            generation,
            rings,
            nodes,
        });
        // Release pairs with the Acquire load in `topology`.
        let old = self.topology.swap(next, Ordering::Release, &guard);
        // SAFETY: `old` is unlinked and publishes are serialized by
        // `membership`, so it is retired exactly once; readers that loaded
        // it are pinned and `defer_destroy` waits for them.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
    }

    /// The stripe lock of a key hash.
    #[inline]
    pub(super) fn stripe(&self, hash: u64) -> &Mutex<()> {
        &self.stripes[(hash % STRIPES as u64) as usize]
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no request or thread can reach the topology.
        unsafe {
            let t = self.topology.load(Ordering::Relaxed, epoch::unprotected());
            drop(t.into_owned());
        }
    }
}
