//! The topology: what requests route by, and the shared state the request
//! path, membership changes and the mover work on.
//!
//! This module owns the epoch-published [`Topology`] (the rings in play and
//! every node store by id), its publication, and the per-key lock stripes.
//! Only the cluster's own modules reach it (`pub(super)`). It is published
//! through the crate's `Published` cell, whose module holds the orderings
//! and the safety argument; how requests and the mover use it is in the
//! [`super`] module docs.

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_epoch::{self as epoch, Guard};
use parking_lot::Mutex;

use super::mover::Progress;
use super::ClusterConfig;
use crate::node::{MemStore, Store};
use crate::published::{Published, ReadCache};
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
    pub(super) points: u32,
    pub(super) store: Arc<dyn Store>,
}

/// The current ring's members and their embedded stores, in member order
/// (see `Topology::embedded`).
pub(super) type EmbeddedView = Box<[(NodeId, Arc<MemStore>)]>;

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
    /// True if any node is remote: a store call may then park the request's
    /// coroutine, which must not happen under an epoch pin (see [`Held`]).
    pub(super) remote: bool,
    /// The current ring's members and their stores in member order (index
    /// `i` is `current().nodes()[i]`, the index [`RingTable::lookup_slot`]
    /// answers), when every member is embedded and no migration runs;
    /// `None` otherwise, and always `None` in a [`Held`] copy. The unpinned
    /// get reads through it: a key's store is one ring lookup and one index
    /// away, with no search by id and no dynamic call.
    pub(super) embedded: Option<EmbeddedView>,
    /// Requests working from this topology through a [`Held`] copy.
    in_flight: Arc<AtomicUsize>,
}

/// A topology a request keeps after unpinning, counted in its
/// `in_flight`.
///
/// A request to a remote node waits on the network, and a `may` coroutine
/// that waits may resume on another worker thread. A crossbeam-epoch guard
/// belongs to the thread that pinned it, so such a request cannot hold its
/// pin across the call. It holds this instead: clones of the topology's
/// parts (`Arc`s, so the rings and stores stay alive) and a count on the
/// topology it came from, taken while still pinned. The mover's grace period
/// waits for both kinds of request: the epoch grace period for pinned ones,
/// then for every older topology's count to fall to zero (see
/// [`Inner::wait_for_held`]). Clusters of embedded nodes never take this
/// path. A third kind, an unpinned get on embedded nodes
/// ([`Inner::with_cached_topology`]), is not waited for: it writes no value
/// (the protocol's rule 5).
pub(super) struct Held {
    topology: Topology,
}

impl Deref for Held {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topology
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Release: the request's store calls happen before the mover,
        // which loads the count with Acquire, sees it fall.
        self.topology.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// `ring`'s members and their stores in member order, if every member's
/// store (found in `nodes`, sorted by id) is embedded: a topology's
/// `embedded` field.
fn embedded_by_member(ring: &RingTable, nodes: &[Arc<NodeSlot>]) -> Option<EmbeddedView> {
    ring.nodes()
        .iter()
        .map(|member| {
            let at = nodes.binary_search_by_key(&member.id, |n| n.id).ok()?;
            let store = Arc::clone(&nodes[at].store).into_mem_store()?;
            Some((member.id, store))
        })
        .collect()
}

impl Topology {
    /// A counted copy to keep after unpinning. Call while pinned.
    pub(super) fn hold(&self) -> Held {
        // Relaxed suffices for the increment: the mover reads the count only
        // after an epoch grace period, which orders it after this pinned
        // section.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Held {
            topology: Topology {
                generation: self.generation,
                rings: self.rings.clone(),
                nodes: self.nodes.clone(),
                remote: self.remote,
                // Only the unpinned get reads it, never through a `Held`.
                embedded: None,
                in_flight: self.in_flight.clone(),
            },
        }
    }

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
    /// What requests route by.
    topology: Published<Topology>,
    /// Whether the last published topology has a remote node: lets a get
    /// skip the unpinned path, whose every read of a remote topology would
    /// be a refresh (a pin and a count taken on the topology), without
    /// loading the topology. Relaxed: a stale answer only sends a get down
    /// the other path, and both are correct for either kind.
    remote: AtomicBool,
    /// Serializes membership changes and every topology publish.
    pub(super) membership: Mutex<()>,
    /// Per-key locks: writers take one only while a migration runs; the
    /// mover takes the stripes of a batch of keys it moves (in index order,
    /// so it never deadlocks with a writer, which takes one). Reads never
    /// take them. `may` mutexes: a writer to a remote node holds its stripe
    /// across a network call, and a coroutine waiting for it must park, not
    /// block its worker thread.
    stripes: Box<[may::sync::Mutex<()>]>,
    /// Nodes ejected by the health observer: out of the ring, kept to be
    /// checked and readmitted. Changed under `membership`.
    pub(super) ejected: Mutex<Vec<Arc<NodeSlot>>>,
    /// The in-flight count of every topology published, by generation, until
    /// the mover has waited it out.
    published: Mutex<Vec<(u64, Arc<AtomicUsize>)>>,
    pub(super) progress: Progress,
    pub(super) config: ClusterConfig,
}

impl Inner {
    /// The state of an empty cluster: a ring of `config`'s placement and a
    /// topology of that (empty) ring and no nodes.
    pub(super) fn new(config: ClusterConfig) -> Inner {
        let ring = Ring::with_placement(config.placement, config.max_weight);
        let first = ring.snapshot();
        let in_flight = Arc::new(AtomicUsize::new(0));
        Inner {
            ring,
            topology: Published::new(Arc::new(Topology {
                generation: 0,
                rings: vec![first],
                nodes: Vec::new(),
                remote: false,
                embedded: None,
                in_flight: in_flight.clone(),
            })),
            remote: AtomicBool::new(false),
            membership: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| may::sync::Mutex::new(())).collect(),
            published: Mutex::new(vec![(0, in_flight)]),
            ejected: Mutex::new(Vec::new()),
            progress: Progress::new(),
            config,
        }
    }

    /// The current topology, valid while `guard` is pinned and `self` lives.
    #[inline]
    pub(super) fn topology<'a>(&'a self, guard: &'a Guard) -> &'a Topology {
        self.topology.load(guard)
    }

    /// Every node once, sorted by id: the topology's slots (ring members
    /// and draining nodes) and the ejected ones, each with whether it is
    /// on the ejected list; and the topology they were read against.
    ///
    /// The topology is loaded under the ejected list's lock, so the two
    /// agree: an ejection adds to the list before it publishes, a
    /// readmission takes off the list after (`change_then`), and either
    /// falls wholly before or wholly after this read. So no node is
    /// missing; one on both (for a moment) is taken from the list.
    pub(super) fn every_node<'a>(
        &'a self,
        guard: &'a Guard,
    ) -> (&'a Topology, Vec<(Arc<NodeSlot>, bool)>) {
        let ejected = self.ejected.lock();
        let topo = self.topology(guard);
        let mut nodes: Vec<(Arc<NodeSlot>, bool)> = topo
            .nodes
            .iter()
            .filter(|n| !ejected.iter().any(|e| e.id == n.id))
            .map(|n| (n.clone(), false))
            .chain(ejected.iter().map(|n| (n.clone(), true)))
            .collect();
        drop(ejected);
        nodes.sort_by_key(|(n, _)| n.id);
        (topo, nodes)
    }

    /// Runs `f` on the current topology without an epoch pin, through this
    /// thread's counted copy of it (a `ReadCache`: one atomic load and a
    /// compare while no topology was published since the thread last
    /// looked). `None` only while the thread's locals are being destroyed.
    ///
    /// Only reads may use it: the request is not pinned, so the mover's
    /// grace period does not wait for it, and it must not write (see the
    /// protocol, [`super::mover`], rule 5). A topology with a remote node
    /// is read but not kept (the fast path never uses one, and a kept copy
    /// would hold removed servers' connections open).
    ///
    /// # Safety
    ///
    /// `f` must not call this again, directly or through anything it
    /// calls: it runs under the cache's shared borrow, which the inner
    /// call's refresh could invalidate (freeing the topology `f` reads).
    #[inline]
    pub(super) unsafe fn with_cached_topology<R>(
        &self,
        f: impl FnOnce(&Topology) -> R,
    ) -> Option<R> {
        thread_local! {
            static CACHE: UnsafeCell<ReadCache<Topology>> =
                const { UnsafeCell::new(ReadCache::new()) };
        }
        CACHE
            .try_with(|cache| {
                // SAFETY: this function's contract: `f` does not reach
                // this cache.
                unsafe { ReadCache::read(cache, &self.topology, |t| !t.remote, f) }
            })
            .ok()
    }

    /// True if `topology` is still the current one: nothing was published
    /// since it was loaded. Loads before the call are ordered before the
    /// check (an `Acquire` fence), so a read that then trusts a miss knows
    /// the miss was seen on a topology still current after it.
    #[inline]
    pub(super) fn is_current(&self, topology: &Topology) -> bool {
        std::sync::atomic::fence(Ordering::Acquire);
        self.topology.is_current(topology)
    }

    /// Publishes `rings` and `nodes` as the next topology. Call with
    /// `membership` held.
    pub(super) fn publish(&self, rings: Vec<Arc<RingTable>>, nodes: Vec<Arc<NodeSlot>>) {
        let guard = epoch::pin();
        let generation = self.topology(&guard).generation + 1;
        let in_flight = Arc::new(AtomicUsize::new(0));
        self.published.lock().push((generation, in_flight.clone()));
        let remote = nodes.iter().any(|n| n.store.remote_addr().is_some());
        let embedded = match &rings[..] {
            [current] if !remote => embedded_by_member(current, &nodes),
            _ => None,
        };
        let next = Arc::new(Topology {
            generation,
            rings,
            nodes,
            remote,
            embedded,
            in_flight,
        });
        self.topology.publish(next, &guard);
        self.remote.store(remote, Ordering::Relaxed);
    }

    /// Whether the current topology has a remote node, as of the last
    /// publish this thread saw (a hint: see the `remote` field).
    #[inline]
    pub(super) fn has_remote(&self) -> bool {
        self.remote.load(Ordering::Relaxed)
    }

    /// The stripe index of a key hash.
    #[inline]
    pub(super) fn stripe_index(hash: u64) -> usize {
        (hash % STRIPES as u64) as usize
    }

    /// Locks stripe `index`. A stripe guards no data of its own (it orders
    /// store calls), so a holder that panicked leaves nothing to repair:
    /// poisoning is ignored.
    pub(super) fn lock_stripe(&self, index: usize) -> may::sync::MutexGuard<'_, ()> {
        self.stripes[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until no request holds a topology older than `generation`
    /// (see [`Held`]), or `stop` says to give up; false if it gave up. Call
    /// after an epoch grace period that started once `generation` was
    /// published: from then on no request can take a count on an older one.
    pub(super) fn wait_for_held(&self, generation: u64, stop: impl Fn() -> bool) -> bool {
        loop {
            let busy = {
                let mut published = self.published.lock();
                // Acquire pairs with the Release decrement in `Held::drop`.
                published.retain(|(g, n)| *g >= generation || n.load(Ordering::Acquire) > 0);
                published.iter().any(|(g, _)| *g < generation)
            };
            if !busy {
                return true;
            }
            if stop() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
