//! The lock-free consistent hash ring with virtual nodes.
//!
//! This module owns placement: which node a key belongs to, and how that
//! changes when members join, leave or change their virtual-node count. It
//! knows nothing about stored data (the cluster moves keys; the ring only
//! says where they belong).
//!
//! # Concepts
//!
//! Each node has a stable [`NodeId`] (handed out in order, never reused while
//! the process lives), a unique name and a weight. A ring places keys by one
//! [`Placement`], chosen when it is created:
//!
//! * [`Placement::Xxh3`] (the default): a node's weight is its vnode count.
//!   Point `i` of a node is [`crate::hash::vnode_point`]`(name, i)`; a key
//!   belongs to the owner of the first point at or after
//!   [`crate::hash::key_hash`]`(key)`, wrapping.
//! * [`Placement::Ketama`]: libmemcached's weighted ketama, point for point
//!   (see [`crate::hash`]), so a ring agrees with libmemcached clients and
//!   twemproxy on every key. Each node's point count follows from all the
//!   weights, so any edit may shift a few points of every node, as in
//!   ketama itself.
//!
//! Two words, one idea each: a node's **weight** is what the operator sets
//! ([`Ring::add_node`], [`Ring::set_weight`], [`Ring::max_weight`]; the HTTP
//! API and the config file call it `vnodes` under xxh3 and `weight` under
//! ketama), and its **points** are what the ring derives from the weights
//! ([`NodeInfo::points`]).
//!
//! The points and owners of one moment form a [`RingTable`], an immutable
//! snapshot with a version number.
//!
//! [`Ring`] holds the current table in a `Published` cell (the crate's one
//! epoch-published `Arc`, whose module documents its orderings and safety
//! argument):
//!
//! * **Readers** take no lock and never wait for a writer: a lookup is a
//!   bounded number of steps whatever writers do. [`Ring::lookup`] reads
//!   through its thread's cached `Arc`s of the tables it used last (a
//!   `ReadCache`, which follows up to four rings per thread): one atomic
//!   load of the published pointer and a compare tell it whether a cached
//!   table is still current, so a lookup between two edits costs no epoch
//!   pin and no fence. Only a thread's first lookup on a new table (after
//!   an edit, or on a ring it has not read lately) pins, to take the
//!   table, and sweeps the table's lookup arrays into its cache in address
//!   order when they fit an L2: up to 512 KiB of sequential reads for that
//!   one lookup, instead of the thousands of scattered misses that would
//!   otherwise follow. That lookup may also free a superseded table whose
//!   last count its cache held. Snapshots ([`Ring::pin`]) and the batch
//!   forms pin the epoch once for many lookups. (Pinning may, once every
//!   128 pins of a thread, run a bounded batch of deferred frees; that is
//!   crossbeam's amortized collection, not waiting.)
//! * **Writers** (`add_node`, `remove_node`, `set_weight`) are serialized by
//!   a mutex, build a new table from the current one by merging sorted runs,
//!   publish it with one atomic swap and retire the old table to the epoch
//!   collector. A holder of an `Arc` of a table (the cluster's topology)
//!   keeps it alive past that.
//!
//! # Invariants a reader may rely on
//!
//! * The pointer is never null: a `Ring` starts with an empty table.
//! * A table never changes once published. Everything a reader learns from
//!   one table (owner, member list, version) is one consistent view.
//! * Versions of published tables strictly increase, one per edit.
//! * A table stays allocated while any guard that could have loaded it is
//!   pinned: the writer retires it only after it has been unlinked, and the
//!   collector releases it only once every thread pinned at that time has
//!   unpinned (and, with [`RingTable`] shared through an `Arc`, once the
//!   last holder of one lets go).
//!
//! # Orderings
//!
//! * The writer's `swap(.., Release)` publishes the new table; it pairs with
//!   the readers' `load(Acquire)`, so a reader that sees the new pointer sees
//!   the fully built table behind it.
//! * The writer's own `load` of the current table is under the writer mutex,
//!   whose acquire already orders it after the previous writer's swap;
//!   it uses `Acquire` anyway, which costs nothing on the write path and
//!   keeps the argument local.
//! * A single-key lookup's cache check loads the pointer with `Acquire`
//!   and trusts the cached table only if it *is* the published one: the
//!   cache's strong count keeps that allocation (and its address) alive, so
//!   an equal pointer cannot be a new table at a recycled address. The
//!   cached table was itself taken with the `Acquire` load under a pin.
//! * Reclamation safety comes from the epoch protocol (crossbeam's pin has
//!   the `SeqCst` fence that orders a reader's pin before its load) and,
//!   for cached tables, from the cache's own strong count, not from these
//!   orderings.
//!
//! # Memory
//!
//! A table takes 27–39 bytes per point (the table module's docs break it
//! down): about 510 KiB at 100 x 160, of which lookups touch the 320 KiB of
//! buckets and runs, and about 5 MiB at 1000 x 160. Each thread that has
//! called [`Ring::lookup`] keeps the tables its cache holds alive (at most
//! four, one per ring it read lately) until it next takes a new table, when
//! it lets go of every held table nobody else holds (superseded, or of a
//! dropped ring); a thread that stops looking up keeps them until it
//! exits.

//! # Last node
//!
//! The ring lets its last node be removed: an empty ring is a valid state in
//! which `lookup` answers `None`. Refusing to remove the last node of a
//! serving cluster is the cluster's policy, not the ring's.

mod error;
#[cfg(any(test, feature = "testing"))]
pub mod reference;
mod table;

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crossbeam_epoch::{self as epoch, Guard};
use parking_lot::Mutex;

pub use crate::hash::Placement;
use crate::published::{Published, ReadCache};
pub use error::RingError;
pub use table::{NodeInfo, NodeShare, RingTable};

/// The default largest vnode count of one node: 10 000 (a node of more points than that is a configuration mistake).
pub const DEFAULT_MAX_WEIGHT: u32 = 10_000;

/// The vnode count an xxh3 node gets when none is given: 160, ketama's
/// customary points per server.
pub const DEFAULT_VNODES: u32 = 160;

/// The weight a ketama node gets when none is given: 1, as in libmemcached
/// and twemproxy configs that list servers without weights.
pub const DEFAULT_KETAMA_WEIGHT: u32 = 1;

/// The most points one ring holds: 2^24 (16.7M, about 200 MiB of points,
/// owners and index). Far above any real deployment (1000 nodes x 10 000
/// vnodes is 10M); it exists so a typo cannot make a writer allocate without
/// bound, and so point indexes fit the index's `u32`.
pub const MAX_TOTAL_POINTS: usize = 1 << 24;

/// A node's stable identity: assigned when it joins, never reused while the
/// process lives. `Display` prints the bare number, as the
/// `X-CacheServer-Index` header does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A consistent hash ring whose membership can change while lookups run.
///
/// `Ring` is `Send + Sync`; share it by reference or `Arc`.
///
/// ```
/// use ringcache::Ring;
/// let ring = Ring::new();
/// let a = ring.add_node("cache-a", 160).unwrap();
/// let b = ring.add_node("cache-b", 160).unwrap();
/// let owner = ring.lookup(b"user:42").unwrap();
/// assert!(owner == a || owner == b);
/// assert_eq!(ring.lookup_n(b"user:42", 5).len(), 2);
/// ```
pub struct Ring {
    /// The published snapshot; never null.
    current: Published<RingTable>,
    /// Serializes writers and holds what only writers need. A blocking
    /// mutex is right here: edits are rare and readers never touch it.
    writer: Mutex<WriterState>,
    /// The largest weight one node may have.
    max_weight: u32,
    /// How keys and points hash; fixed for the ring's life.
    placement: Placement,
}

/// State only writers touch, under `Ring::writer`.
struct WriterState {
    /// The id the next added node gets. Ids are never reused.
    next_id: u32,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.pin();
        f.debug_struct("Ring")
            .field("version", &t.version())
            .field("nodes", &t.node_count())
            .field("points", &t.point_count())
            .finish()
    }
}

impl Ring {
    /// An empty ring with the default vnode limit ([`DEFAULT_MAX_WEIGHT`]).
    pub fn new() -> Ring {
        Ring::with_max_weight(DEFAULT_MAX_WEIGHT)
    }

    /// An empty ring whose nodes may have `1..=max_weight` vnodes each.
    ///
    /// # Panics
    ///
    /// Panics if `max_weight` is 0.
    pub fn with_max_weight(max_weight: u32) -> Ring {
        Ring::with_placement(Placement::Xxh3, max_weight)
    }

    /// An empty ring placing keys by `placement`, whose nodes may have
    /// weights (xxh3: vnode counts) `1..=max_weight`.
    ///
    /// ```
    /// use ringcache::{hash::Placement, Ring};
    /// let ring = Ring::with_placement(Placement::Ketama, 10_000);
    /// ring.add_node("10.0.1.1", 600).unwrap();
    /// ring.add_node("10.0.1.2", 300).unwrap();
    /// // floor(600/900 * 40 * 2) * 4 + floor(300/900 * 40 * 2) * 4
    /// assert_eq!(ring.pin().point_count(), 212 + 104);
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `max_weight` is 0.
    pub fn with_placement(placement: Placement, max_weight: u32) -> Ring {
        assert!(max_weight >= 1, "max_weight must be at least 1");
        let first = RingTable::empty_with(placement, 0);
        Ring {
            current: Published::new(Arc::new(first)),
            writer: Mutex::new(WriterState { next_id: 0 }),
            max_weight,
            placement,
        }
    }

    /// The largest weight this ring accepts for one
    /// node.
    pub fn max_weight(&self) -> u32 {
        self.max_weight
    }

    /// How this ring places keys.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The current table, valid for as long as both `self` and `guard` are.
    ///
    /// Use this to pin once and read several epoch-protected structures
    /// (the ring and something of the caller's) under one guard.
    ///
    /// # Panics
    ///
    /// Panics if `guard` was not pinned by crossbeam-epoch's default
    /// collector (`crossbeam_epoch::pin()`): the ring retires its tables
    /// there, so a guard of another collector (or an unprotected one) would
    /// not keep the table alive.
    #[inline]
    pub fn load<'a>(&'a self, guard: &'a Guard) -> &'a RingTable {
        assert!(
            guard.collector() == Some(epoch::default_collector()),
            "Ring::load needs a guard from crossbeam_epoch::pin()"
        );
        self.table(guard)
    }

    /// `load` without the collector check, for this module's own guards,
    /// which all come from `epoch::pin()`.
    #[inline]
    fn table<'a>(&'a self, guard: &'a Guard) -> &'a RingTable {
        self.current.load(guard)
    }

    /// The current table as a counted `Arc`, shared rather than copied:
    /// what the cluster's topology holds.
    pub(crate) fn snapshot(&self) -> Arc<RingTable> {
        self.current.load_arc(&epoch::pin())
    }

    /// Pins the current epoch and returns the current snapshot, for many
    /// lookups against one consistent view.
    ///
    /// Hold it briefly: while any thread holds a pin, no retired snapshot can
    /// be freed. The snapshot is `!Send` (it owns a thread's pin).
    ///
    /// ```
    /// use ringcache::Ring;
    /// let ring = Ring::new();
    /// ring.add_node("a", 10).unwrap();
    /// let snap = ring.pin();
    /// let owners: Vec<_> = [b"x", b"y"].iter().map(|k| snap.lookup(*k)).collect();
    /// assert!(owners.iter().all(Option::is_some));
    /// ```
    ///
    /// A snapshot cannot leave its thread (its pin belongs to that thread's
    /// epoch state), even to a scoped thread that may borrow the ring:
    ///
    /// ```compile_fail
    /// let ring = ringcache::Ring::new();
    /// let snap = ring.pin();
    /// std::thread::scope(|s| {
    ///     s.spawn(move || snap.version());
    /// });
    /// ```
    pub fn pin(&self) -> Pinned<'_> {
        let guard = epoch::pin();
        let table: *const RingTable = self.table(&guard);
        Pinned {
            guard,
            table,
            _ring: PhantomData,
        }
    }

    /// The node that owns `key`, or `None` while the ring is empty.
    ///
    /// Wait-free with respect to writers; see the module docs. Between two
    /// edits the lookup takes no epoch pin: it reads the thread's cached
    /// `Arc` of the current table after one atomic load and a compare. The
    /// thread's first lookup on a new table pins and sweeps it in.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        let hash = self.placement.key_hash(key);
        self.lookup_current(hash)
    }

    /// The owner of `hash` on the current table, read through this
    /// thread's `ReadCache` (module docs, "Readers" and "Memory"). Falls
    /// back to a pin while the thread's locals are being destroyed.
    #[inline]
    fn lookup_current(&self, hash: u64) -> Option<NodeId> {
        thread_local! {
            static CACHE: UnsafeCell<ReadCache<RingTable>> =
                const { UnsafeCell::new(ReadCache::new()) };
        }
        CACHE
            .try_with(|cache| {
                // SAFETY: the `f` given only reads the table; it cannot
                // reach this cache (`read`'s contract).
                unsafe {
                    ReadCache::read(
                        cache,
                        &self.current,
                        |t| {
                            t.warm();
                            true
                        },
                        |t| t.lookup_hash(hash),
                    )
                }
            })
            .unwrap_or_else(|_| self.table(&epoch::pin()).lookup_hash(hash))
    }

    /// Looks up every key of `keys` under one pin and appends the owners to
    /// `out`, in order ([`RingTable::lookup_many`]): one epoch pin for the
    /// lot, and the keys' cache misses overlapped in groups. Every answer
    /// comes from the same snapshot.
    ///
    /// ```
    /// use ringcache::Ring;
    /// let ring = Ring::new();
    /// ring.add_node("a", 10).unwrap();
    /// let mut owners = Vec::new();
    /// ring.lookup_many(&["x", "y", "z"], &mut owners);
    /// assert_eq!(owners, [ring.lookup(b"x"), ring.lookup(b"y"), ring.lookup(b"z")]);
    /// ```
    pub fn lookup_many<K: AsRef<[u8]>>(&self, keys: &[K], out: &mut Vec<Option<NodeId>>) {
        let guard = epoch::pin();
        self.table(&guard).lookup_many(keys, out);
    }

    /// The first `n` distinct nodes clockwise from `key` (a replica set):
    /// `min(n, nodes with a point)` ids, the first being `lookup(key)`.
    /// Every xxh3 node has a point; a ketama node whose weight is too small
    /// a share for one MD5 group has none, owns nothing and is in no
    /// replica set.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let guard = epoch::pin();
        self.table(&guard).lookup_n(key, n)
    }

    /// The version of the current snapshot (0 for a new ring, +1 per edit).
    pub fn version(&self) -> u64 {
        let guard = epoch::pin();
        self.table(&guard).version()
    }

    /// How many nodes are members now.
    pub fn node_count(&self) -> usize {
        let guard = epoch::pin();
        self.table(&guard).node_count()
    }

    /// The members with their names, vnode counts and shares of the hash
    /// space, sorted by id, all from one snapshot.
    pub fn nodes(&self) -> Vec<NodeShare> {
        self.pin().shares()
    }

    /// Adds a node of weight `weight` and returns its new id. Under xxh3
    /// the weight is the node's vnode count; under ketama it is the node's
    /// ketama weight, and the node joins last in server order.
    ///
    /// **Locking behaviour:** takes the writer mutex; lookups are not
    /// affected. Under xxh3 it costs O(points + weight log weight), most
    /// of it copies: the new node's points are sorted and spliced into the
    /// current arrays, and the lookup table is patched around them, not
    /// rebuilt. Under ketama the table is rebuilt (40 MD5 digests per
    /// node).
    ///
    /// # Errors
    ///
    /// [`RingError::InvalidName`], [`RingError::WeightOutOfRange`],
    /// [`RingError::DuplicateName`],
    /// [`RingError::TooManyPoints`] or [`RingError::TotalWeightTooLarge`],
    /// or [`RingError::IdsExhausted`], checked in that order; the ring is
    /// then unchanged.
    pub fn add_node(&self, name: &str, weight: u32) -> Result<NodeId, RingError> {
        let max = self.placement.max_name_bytes();
        if name.is_empty() || name.len() > max {
            return Err(RingError::InvalidName {
                len: name.len(),
                max,
            });
        }
        self.join(name, weight, |writer, _| {
            let id = NodeId(writer.next_id);
            writer.next_id = writer
                .next_id
                .checked_add(1)
                .ok_or(RingError::IdsExhausted)?;
            Ok(id)
        })
    }

    /// Adds member `name` of weight `weight` under the writer mutex, with
    /// the id `pick` chooses (a new one, or a former member's), after the
    /// checks every join shares, in order: weight, name uniqueness,
    /// capacity, then `pick`'s own.
    fn join(
        &self,
        name: &str,
        weight: u32,
        pick: impl FnOnce(&mut WriterState, &RingTable) -> Result<NodeId, RingError>,
    ) -> Result<NodeId, RingError> {
        self.check_weight(weight)?;
        let mut writer = self.writer.lock();
        let guard = epoch::pin();
        let cur = self.table(&guard);
        if cur.node_by_name(name).is_some() {
            return Err(RingError::DuplicateName(name.to_owned()));
        }
        self.check_capacity(cur, None, weight)?;
        let id = pick(&mut writer, cur)?;
        let node = NodeInfo {
            id,
            name: Arc::from(name),
            weight,
            points: weight,
        };
        self.publish(cur.with_node(cur.version() + 1, node), &guard);
        Ok(id)
    }

    /// Puts back node `id`, which was a member before and left, under its
    /// name and weight: what a node ejected for failing and readmitted
    /// gets, so it keeps its id (`X-CacheServer-Index`) and, under ketama,
    /// its place in server order (ties between equal points go by id). Its
    /// points are the ones it had, since points follow from name and
    /// weight.
    ///
    /// **Locking behaviour:** takes the writer mutex.
    ///
    /// # Errors
    ///
    /// As [`Ring::add_node`] after its name check (weight, name
    /// uniqueness, capacity), then [`RingError::UnknownNode`] if `id` was
    /// never given out or is a member now.
    pub fn readmit_node(&self, id: NodeId, name: &str, weight: u32) -> Result<(), RingError> {
        self.join(name, weight, |writer, cur| {
            if id.0 >= writer.next_id || cur.node(id).is_some() {
                Err(RingError::UnknownNode(id))
            } else {
                Ok(id)
            }
        })
        .map(|_| ())
    }

    /// Removes node `id` and its points.
    ///
    /// **Locking behaviour:** takes the writer mutex. Removing the last node
    /// is allowed and leaves an empty ring (see the module docs).
    ///
    /// # Errors
    ///
    /// [`RingError::UnknownNode`] if `id` is not a member.
    pub fn remove_node(&self, id: NodeId) -> Result<(), RingError> {
        let _writer = self.writer.lock();
        let guard = epoch::pin();
        let cur = self.table(&guard);
        if cur.node(id).is_none() {
            return Err(RingError::UnknownNode(id));
        }
        self.publish(cur.without_node(cur.version() + 1, id), &guard);
        Ok(())
    }

    /// Sets node `id`'s weight: its vnode count under xxh3, where raising
    /// from `v` to `w` adds exactly its points `v..w`, lowering removes them,
    /// and no other node's points change. Under ketama every node's point
    /// count is recomputed from the new weights. Setting the current weight
    /// still publishes a new version.
    ///
    /// **Locking behaviour:** takes the writer mutex.
    ///
    /// # Errors
    ///
    /// [`RingError::UnknownNode`], [`RingError::WeightOutOfRange`], or
    /// [`RingError::TooManyPoints`] or
    /// [`RingError::TotalWeightTooLarge`], checked in that order.
    pub fn set_weight(&self, id: NodeId, weight: u32) -> Result<(), RingError> {
        let _writer = self.writer.lock();
        let guard = epoch::pin();
        let cur = self.table(&guard);
        let old = cur.node(id).ok_or(RingError::UnknownNode(id))?;
        self.check_weight(weight)?;
        self.check_capacity(cur, Some(old), weight)?;
        self.publish(cur.with_weight(cur.version() + 1, id, weight), &guard);
        Ok(())
    }

    fn check_weight(&self, weight: u32) -> Result<(), RingError> {
        if (1..=self.max_weight).contains(&weight) {
            Ok(())
        } else {
            Err(RingError::WeightOutOfRange {
                weight,
                max: self.max_weight,
                placement: self.placement,
            })
        }
    }

    /// Checks that `cur` with `replaced` (if any) given weight `weight`, or
    /// with a new node of that weight, stays within the ring's limits.
    fn check_capacity(
        &self,
        cur: &RingTable,
        replaced: Option<&NodeInfo>,
        weight: u32,
    ) -> Result<(), RingError> {
        match self.placement {
            Placement::Xxh3 => {
                let old = replaced.map_or(0, |n| n.points as usize);
                check_points(cur.point_count() - old + weight as usize)
            }
            Placement::Ketama => {
                let others: u64 = cur
                    .nodes()
                    .iter()
                    .filter(|n| Some(n.id) != replaced.map(|r| r.id))
                    .map(|n| u64::from(n.weight))
                    .sum();
                let total = others + u64::from(weight);
                if total > u64::from(u32::MAX) {
                    return Err(RingError::TotalWeightTooLarge { total });
                }
                // Ketama gives n servers at most 160 n points in all.
                let servers = cur.node_count() + usize::from(replaced.is_none());
                check_points(servers * crate::hash::KETAMA_POINTS_PER_SERVER as usize)
            }
        }
    }

    /// Publishes `table` as the current snapshot and retires the old one.
    /// Must be called with the writer mutex held.
    fn publish(&self, table: RingTable, guard: &Guard) {
        self.current.publish(Arc::new(table), guard);
    }
}

fn check_points(requested: usize) -> Result<(), RingError> {
    if requested > MAX_TOTAL_POINTS {
        Err(RingError::TooManyPoints {
            requested,
            max: MAX_TOTAL_POINTS,
        })
    } else {
        Ok(())
    }
}

/// A read-only view of a [`Ring`]: every lookup and listing, and no edit.
///
/// [`crate::Cluster::ring`] hands this out, so keys cannot be moved
/// behind the cluster's back: edits go through the cluster, which moves
/// the keys that follow them.
///
/// ```compile_fail
/// // No edit through a view.
/// let ring = ringcache::Ring::new();
/// ring.view().add_node("a", 10);
/// ```
#[derive(Clone, Copy)]
pub struct RingView<'r>(&'r Ring);

impl<'r> RingView<'r> {
    /// As [`Ring::placement`].
    pub fn placement(&self) -> Placement {
        self.0.placement()
    }

    /// As [`Ring::pin`].
    pub fn pin(&self) -> Pinned<'r> {
        self.0.pin()
    }

    /// As [`Ring::lookup`].
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        self.0.lookup(key)
    }

    /// As [`Ring::lookup_many`].
    pub fn lookup_many<K: AsRef<[u8]>>(&self, keys: &[K], out: &mut Vec<Option<NodeId>>) {
        self.0.lookup_many(keys, out)
    }

    /// As [`Ring::lookup_n`].
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        self.0.lookup_n(key, n)
    }

    /// As [`Ring::version`].
    pub fn version(&self) -> u64 {
        self.0.version()
    }

    /// As [`Ring::node_count`].
    pub fn node_count(&self) -> usize {
        self.0.node_count()
    }

    /// As [`Ring::nodes`].
    pub fn nodes(&self) -> Vec<NodeShare> {
        self.0.nodes()
    }
}

impl Ring {
    /// A read-only view of this ring.
    pub fn view(&self) -> RingView<'_> {
        RingView(self)
    }
}

/// A pinned snapshot of a [`Ring`]: derefs to the [`RingTable`] that was
/// current when it was taken, and keeps it alive until dropped.
pub struct Pinned<'r> {
    /// Keeps `table` from being freed. Declared before `table` is used and
    /// dropped with the struct.
    guard: Guard,
    /// Loaded under `guard`; valid while it is pinned and the ring lives.
    table: *const RingTable,
    _ring: PhantomData<&'r Ring>,
}

impl Pinned<'_> {
    /// The guard this snapshot holds, for loading other epoch-protected
    /// data in the same pin.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl Deref for Pinned<'_> {
    type Target = RingTable;

    #[inline]
    fn deref(&self) -> &RingTable {
        // SAFETY: `table` was loaded from the ring under `self.guard`, which
        // stays pinned as long as `self` lives, and the ring outlives `'r`
        // (its `Drop` needs `&mut`, impossible while this borrow lives).
        unsafe { &*self.table }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_cache_follows_edits_rings_and_drops() {
        // One thread, two rings used alternately: each lookup must answer
        // from its own ring's current table, whatever the thread cached.
        let (a, b) = (Ring::new(), Ring::new());
        let a1 = a.add_node("a1", 40).unwrap();
        let b1 = b.add_node("b1", 40).unwrap();
        for i in 0..100u32 {
            let key = i.to_le_bytes();
            assert_eq!(a.lookup(&key), Some(a1));
            assert_eq!(b.lookup(&key), Some(b1));
        }
        // An edit is seen by the very next lookup of the same thread.
        let a2 = a.add_node("a2", 40).unwrap();
        let keys: Vec<[u8; 4]> = (0..1000u32).map(u32::to_le_bytes).collect();
        assert!(keys.iter().any(|k| a.lookup(k) == Some(a2)));
        a.remove_node(a2).unwrap();
        assert!(keys.iter().all(|k| a.lookup(k) == Some(a1)));
        a.remove_node(a1).unwrap();
        assert_eq!(a.lookup(b"x"), None);
        // A ring dropped while this thread caches its table, and new rings
        // made after it (perhaps at its address): none answers from the old
        // table, which the cache keeps alive until its next refresh, so no
        // new table shares its address. The name's count tells whether a
        // table of `b` is alive (each table's member list holds one).
        assert_eq!(b.lookup(b"x"), Some(b1));
        let name = b.nodes()[0].name.clone();
        drop(b);
        assert_eq!(Arc::strong_count(&name), 2, "ours and the cached table's");
        for round in 0..50u32 {
            let ring = Ring::new();
            assert_eq!(ring.lookup(b"x"), None);
            assert_eq!(Arc::strong_count(&name), 1, "purged at the refresh");
            let id = ring.add_node(&format!("n{round}"), 10).unwrap();
            assert_eq!(ring.lookup(b"x"), Some(id));
        }
    }

    #[test]
    fn ids_are_never_reused() {
        let ring = Ring::new();
        let a = ring.add_node("a", 1).unwrap();
        ring.remove_node(a).unwrap();
        let b = ring.add_node("a", 1).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn errors_leave_the_ring_unchanged() {
        let ring = Ring::with_max_weight(100);
        let a = ring.add_node("a", 10).unwrap();
        let v = ring.version();
        assert_eq!(
            ring.add_node("a", 10),
            Err(RingError::DuplicateName("a".into()))
        );
        assert_eq!(
            ring.add_node("", 10),
            Err(RingError::InvalidName { len: 0, max: 255 })
        );
        assert_eq!(
            ring.add_node("b", 0),
            Err(RingError::WeightOutOfRange {
                weight: 0,
                max: 100,
                placement: Placement::Xxh3
            })
        );
        assert_eq!(
            ring.set_weight(a, 101),
            Err(RingError::WeightOutOfRange {
                weight: 101,
                max: 100,
                placement: Placement::Xxh3
            })
        );
        assert_eq!(
            ring.remove_node(NodeId(9)),
            Err(RingError::UnknownNode(NodeId(9)))
        );
        assert_eq!(ring.version(), v);
        assert_eq!(ring.node_count(), 1);
    }

    #[test]
    fn a_readmitted_node_gets_its_id_and_points_back() {
        for placement in [Placement::Xxh3, Placement::Ketama] {
            let ring = Ring::with_placement(placement, 1000);
            let a = ring.add_node("a", 40).unwrap();
            let b = ring.add_node("b", 40).unwrap();
            let before: Vec<_> = (0..500u32).map(|i| ring.lookup(&i.to_le_bytes())).collect();
            ring.remove_node(a).unwrap();
            assert_eq!(
                ring.readmit_node(NodeId(7), "x", 40),
                Err(RingError::UnknownNode(NodeId(7)))
            );
            ring.readmit_node(a, "a", 40).unwrap();
            let after: Vec<_> = (0..500u32).map(|i| ring.lookup(&i.to_le_bytes())).collect();
            assert_eq!(before, after, "{placement:?}");
            assert_eq!(
                ring.readmit_node(b, "c", 40),
                Err(RingError::UnknownNode(b))
            );
        }
    }

    #[test]
    fn last_node_can_leave() {
        let ring = Ring::new();
        let a = ring.add_node("a", 3).unwrap();
        ring.remove_node(a).unwrap();
        assert_eq!(ring.lookup(b"k"), None);
        assert_eq!(ring.version(), 2);
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = RingError::WeightOutOfRange {
            weight: 0,
            max: 10_000,
            placement: Placement::Xxh3,
        }
        .to_string();
        assert_eq!(msg, "vnodes must be between 1 and 10000, got 0");
        assert!(RingError::UnknownNode(NodeId(7))
            .to_string()
            .contains("index 7"));
    }

    #[test]
    fn ring_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ring>();
    }
}
