//! The frozen ring: one immutable snapshot of points, owners and nodes.
//!
//! A [`RingTable`] is built once and never changed. Edits build a new table
//! from the old one by merging sorted runs (no full re-sort), and
//! [`super::Ring`] publishes it. Everything a lookup reads is here.
//!
//! # Order of points
//!
//! Under [`Placement::Xxh3`] points are sorted by `(point, owner name)`.
//! Ordering ties by *name* rather than by `NodeId` makes collisions resolve
//! the same way in every process, whatever order the nodes were added in (ids
//! depend on that order, names do not): on a collision the node whose name
//! sorts first owns the point.
//!
//! Under [`Placement::Ketama`] ties go by server order instead, as in
//! libmemcached (whose continuum is sorted by value with a stable sort of the
//! server list): points are sorted by `(point, NodeId)`, and ids follow the
//! order nodes joined, which is the server-list order when a cluster is built
//! from a list.
//!
//! A lookup takes the first point `>= key hash`, wrapping past the largest
//! point to the first one.
//!
//! # Edits
//!
//! Under xxh3 a node's points depend only on its own name and weight, so an
//! edit splices that node's sorted points into (or out of) the arrays: each
//! changed point's place is found by bisection and the stretches between
//! them are copied whole. The lookup table is patched the same way when its
//! shape allows (same bucket count and slot width, the members changed by
//! at most one): old run entries and buckets are copied with their starts
//! and slots adjusted, and only the buckets the changed points fall in (and
//! the empty ones just before them) are rewritten; see
//! `LookupTable::patched`. Otherwise it is built afresh. Under ketama every
//! node's point count depends on the total weight and the server count, so
//! an edit rebuilds the table: about 40 MD5 digests per node (a 1000-node
//! ring costs 40 000 digests, a few milliseconds). Edits are rare and off
//! the lookup path either way.
//!
//! # The lookup table
//!
//! Besides the sorted points, a table keeps a direct-mapped bucket table
//! built for memory speed on large working sets, where every lookup's lines
//! are cold. The placement's hash space (2^64 for xxh3, 2^32 for ketama) is
//! cut into `2^bits` equal buckets, about 4 per point (`4 x points` rounded
//! to the nearest power of two: 2.8 to 5.7 per point). Each bucket is one
//! `u32`:
//!
//! * A bucket that no point falls in (about 78% of them at 4 per point)
//!   names its owner outright: the owner of the first point after it,
//!   wrapping, as a *slot*, an index into a small table of member ids
//!   (4 bytes a member, so it stays in L1). Such a lookup is one hash and
//!   one cache-line load.
//! * A bucket with one point (about 19% of them, nine in ten of those with
//!   points) holds the point's *point key* (its bits just below the bucket
//!   bits: 16 with 100 members, 10 with 1000, at least 8) and two slots:
//!   the point's owner and the next point's. A key whose point key is
//!   smaller or larger than the point's takes one or the other, again from
//!   one line; an equal one (a chance of one in 2^(point key bits)) is
//!   settled by a bisection of the full points. Two slots and a key fit 30
//!   bits up to 2048 members; larger tables store these buckets as runs of
//!   one.
//! * A bucket with more points holds where its run starts and how many
//!   points it has. The run is a slice of `runs`, parallel to `points`:
//!   each entry is 4 bytes, the point's *sub-key* (the bits just below the
//!   bucket bits, as many as fit beside a slot: 25 with 100 members, 22
//!   with 1000) packed above its owner's slot, so the search ends on the
//!   line it read, 16 entries to a line. A key whose sub-key equals a
//!   point's is settled against the full point (a chance of about `run
//!   length / 2^sub-key bits`). A key past every point of its run belongs
//!   to the next run's first point.
//!
//! So 96–97% of lookups read one line of the table (at 100 x 160 and
//! 1000 x 160; 74–78% would with runs of one), and the first two kinds
//! are resolved without a branch, so a lookup whose line is still on its
//! way does not make the processor throw away the next lookups it has
//! started.
//!
//! A bucket of more than 126 points (only reachable with absurd collisions)
//! is marked as such and searched by bisection over all points.
//!
//! Memory per point: 8 bytes of point and 4 of owner (the sorted arrays,
//! read by edits, listings and `lookup_n`), 4 of run entry and 11–23 of
//! buckets (2.8–5.7 `u32`s), so 27–39 bytes, of which lookups touch the 15–27
//! of buckets and runs. At 100 x 160 (16 000 points, 2^16 buckets) that is
//! 256 KiB of buckets and 63 KiB of runs; at 1000 x 160 (160 000 points,
//! 2^19 buckets) 2 MiB and 625 KiB.
//!
//! [`RingTable::lookup_many`] overlaps the bucket loads of 16 keys.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use super::NodeId;
use crate::hash::{ketama_points, ketama_points_per_server, vnode_point, Placement};

/// Buckets per point the lookup table aims at (rounded up to a power of
/// two): with 4, about 78% of buckets hold no point and answer a lookup
/// from one cache line.
const BUCKETS_PER_POINT: usize = 4;

/// The most buckets a lookup table gets: 2^24 entries of 4 bytes (64 MiB),
/// reached at 4M points. Larger rings get fewer buckets per point, which
/// costs longer runs, not correctness.
const MAX_BUCKET_BITS: u32 = 24;

/// A bucket entry with this bit set holds a run; without it, owner slots
/// (see [`LookupTable`]).
const RUN: u32 = 1 << 31;

/// A bucket entry without [`RUN`] and with this bit set holds one point:
/// its point key and the owner slots below and above it.
const ONE_POINT: u32 = 1 << 30;

/// The widest slot (members up to 2^11 = 2048) with which a one-point
/// entry still fits: two slots, [`RUN`], [`ONE_POINT`] and a point key of
/// at least 8 bits in 32. Wider tables store one-point buckets as runs.
const MAX_ONE_POINT_SLOT_BITS: u32 = 11;

/// Bits of a run entry that hold the index of its first point: points are
/// at most [`super::MAX_TOTAL_POINTS`] = 2^24, so every index fits.
const RUN_START_BITS: u32 = 24;

/// Mask of a run entry's start index.
const RUN_START_MASK: u32 = (1 << RUN_START_BITS) - 1;

/// The run length that means "too many to count here": the lookup bisects
/// all points instead. Lengths sit in bits 24..31 of an entry.
const RUN_LEN_SATURATED: u32 = (RUN - 1) >> RUN_START_BITS;

// Point indexes fit a run entry's start bits.
const _: () = assert!(super::MAX_TOTAL_POINTS <= 1 << RUN_START_BITS);
// A bucket entry's `u32` fields become `usize` indexes with `as`, lossless
// on every target this crate builds for.
#[cfg(target_pointer_width = "16")]
compile_error!("ringcache needs a usize of at least 32 bits");

/// A `u32` index as `usize`: lossless (see the `compile_error!` above).
#[inline(always)]
fn idx(i: u32) -> usize {
    i as usize
}

/// One member of a ring, as the ring knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's stable id.
    pub id: NodeId,
    /// The node's unique name; its points derive from it.
    pub name: Arc<str>,
    /// The node's weight as configured: its vnode count under xxh3, its
    /// ketama weight under ketama.
    pub weight: u32,
    /// How many points (virtual nodes) the node has on the ring: equal to
    /// `weight` under xxh3, derived from all weights under ketama. Tables
    /// compute it; [`RingTable::build`] ignores what the caller put here.
    pub points: u32,
}

/// A member of a ring with its share of the hash space, for listings.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeShare {
    /// The node's stable id.
    pub id: NodeId,
    /// The node's unique name.
    pub name: Arc<str>,
    /// The node's weight as configured (its vnode count under xxh3).
    pub weight: u32,
    /// How many points the node has on the ring.
    pub points: u32,
    /// The fraction of the hash space the node owns, in `[0, 1]`.
    pub share: f64,
}

/// An immutable ring snapshot: sorted points, their owners, the members and
/// a direct-mapped lookup table (see the module docs). Cheap to share by
/// reference, `Clone` copies the arrays.
#[derive(Clone, Debug)]
pub struct RingTable {
    version: u64,
    /// How keys and points hash; fixed for a ring's life.
    placement: Placement,
    /// Sorted by point, ties as the module docs say.
    points: Box<[u64]>,
    /// `owners[i]` owns `points[i]`.
    owners: Box<[NodeId]>,
    /// The bucket table and run entries lookups read (module docs, "The
    /// lookup table").
    lookup: LookupTable,
    /// `slot_ids[s]` is `nodes[s].id`: what an owner slot names, packed
    /// small (4 bytes a member) so it stays in L1.
    slot_ids: Box<[NodeId]>,
    /// Members, sorted by id.
    nodes: Box<[NodeInfo]>,
}

impl RingTable {
    /// An empty xxh3 ring at the given version: every lookup answers `None`.
    pub fn empty(version: u64) -> RingTable {
        RingTable::empty_with(Placement::Xxh3, version)
    }

    /// An empty ring of `placement` at the given version.
    pub fn empty_with(placement: Placement, version: u64) -> RingTable {
        RingTable::from_sorted(placement, version, Vec::new(), (Vec::new(), Vec::new()))
    }

    /// Builds an xxh3 table from scratch from a member list.
    ///
    /// See [`RingTable::build_with`].
    pub fn build(version: u64, nodes: Vec<NodeInfo>) -> RingTable {
        RingTable::build_with(Placement::Xxh3, version, nodes)
    }

    /// Builds a table of `placement` from scratch from a member list,
    /// sorting every point. Each node's `vnodes` is computed from the
    /// weights (the value passed in is ignored).
    ///
    /// Edits of a live xxh3 ring do not come this way (they splice, see
    /// `RingTable::with_node`); ketama edits do, since every node's point
    /// count may change.
    ///
    /// # Panics
    ///
    /// Panics if two members share an id or a name, a name is longer than
    /// the placement's [`Placement::max_name_bytes`], or (ketama) the weights
    /// sum past `u32::MAX`; [`super::Ring`] validates first.
    pub fn build_with(placement: Placement, version: u64, mut nodes: Vec<NodeInfo>) -> RingTable {
        nodes.sort_by_key(|n| n.id);
        assert!(
            nodes.windows(2).all(|w| w[0].id != w[1].id),
            "duplicate node id"
        );
        let names: HashSet<&str> = nodes.iter().map(|n| &*n.name).collect();
        assert_eq!(names.len(), nodes.len(), "duplicate node name");
        match placement {
            Placement::Xxh3 => {
                for n in &mut nodes {
                    n.points = n.weight;
                }
                let mut entries: Vec<(u64, &str, NodeId)> = nodes
                    .iter()
                    .flat_map(|n| {
                        (0..n.points).map(move |i| (vnode_point(&n.name, i), &*n.name, n.id))
                    })
                    .collect();
                entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                let points = entries.iter().map(|e| e.0).collect();
                let owners = entries.iter().map(|e| e.2).collect();
                RingTable::from_sorted(placement, version, nodes, (points, owners))
            }
            Placement::Ketama => {
                let total: u64 = nodes.iter().map(|n| u64::from(n.weight)).sum();
                let total = u32::try_from(total).expect("total ketama weight fits u32");
                let servers = u32::try_from(nodes.len()).expect("node count fits u32");
                let mut entries: Vec<(u64, NodeId)> = Vec::new();
                for n in &mut nodes {
                    n.points = ketama_points_per_server(n.weight, total, servers);
                    for k in 0..n.points / 4 {
                        let four = ketama_points(&n.name, k);
                        entries.extend(four.iter().map(|&p| (u64::from(p), n.id)));
                    }
                }
                // Ties by server order (id), as libmemcached's stable sort.
                entries.sort_unstable();
                let points = entries.iter().map(|e| e.0).collect();
                let owners = entries.iter().map(|e| e.1).collect();
                RingTable::from_sorted(placement, version, nodes, (points, owners))
            }
        }
    }

    /// Freezes sorted points and owners into a table and builds the lookup
    /// table.
    fn from_sorted(
        placement: Placement,
        version: u64,
        nodes: Vec<NodeInfo>,
        arrays: (Vec<u64>, Vec<NodeId>),
    ) -> RingTable {
        RingTable::from_edit(placement, version, nodes, arrays, None)
    }

    /// As [`RingTable::from_sorted`], for a table that differs from `edit`'s
    /// by its points: the lookup table is patched from the old one where
    /// it can be (see [`LookupTable::patched`]), built afresh otherwise.
    fn from_edit(
        placement: Placement,
        version: u64,
        nodes: Vec<NodeInfo>,
        (points, owners): (Vec<u64>, Vec<NodeId>),
        edit: Option<Edit<'_>>,
    ) -> RingTable {
        debug_assert_eq!(points.len(), owners.len());
        debug_assert!(points.windows(2).all(|w| w[0] <= w[1]));
        let slot_ids: Box<[NodeId]> = nodes.iter().map(|n| n.id).collect();
        let space_bits = placement.space_bits();
        let build = || LookupTable::build(&points, &owners, &slot_ids, space_bits);
        let lookup =
            match edit.and_then(|e| LookupTable::patched(e, &points, &slot_ids, space_bits)) {
                Some(patched) => {
                    debug_assert!(
                        patched == build(),
                        "a patched lookup table differs from a built one"
                    );
                    patched
                }
                None => build(),
            };
        RingTable {
            version,
            placement,
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            lookup,
            slot_ids,
            nodes: nodes.into_boxed_slice(),
        }
    }

    /// How this table places keys.
    #[inline]
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// A ring position as a fraction of the placement's hash space, in
    /// `[0, 1)`: for drawing and for comparing rings of either scheme.
    pub fn fraction(&self, position: u64) -> f64 {
        position as f64 / 2f64.powi(self.placement.space_bits() as i32)
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

    /// Entries in the bucket index a lookup reads first (4 bytes each):
    /// about four per point, a power of two. A lookup costs one hash and,
    /// in most buckets, one read of this array, so its size is what decides
    /// which cache level lookups run from.
    #[inline]
    pub fn bucket_count(&self) -> usize {
        self.lookup.buckets.len()
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
    /// The ring must not be empty. A bisection: for the cold paths
    /// (`lookup_n`, `point_for`); lookups go through the bucket table.
    fn position(&self, hash: u64) -> usize {
        let found = self.points.partition_point(|&p| p < hash);
        if found == self.points.len() {
            0
        } else {
            found
        }
    }

    /// Reads one word of every cache line of this table's lookup arrays
    /// (buckets and runs) if they fit a common L2 ([`WARM_LIMIT`]). A
    /// reader that has just switched to a new table calls it: the loads are
    /// independent and in address order, so the lines arrive at the memory
    /// system's full parallelism (and the hardware prefetcher's), instead of
    /// one or two at a time as lookups miss on them. Measured at 100 x 160
    /// with an edit every millisecond, a reader kept 64–72% of its
    /// throughput without this and 90–94% with it (prefetch instructions in
    /// place of the loads: 80–89%). The price is one sweep of up to
    /// [`WARM_LIMIT`] bytes per new table per reading thread (after each
    /// edit, and on a ring the thread had not read lately), paid by that
    /// thread's first lookup on it.
    pub(super) fn warm(&self) {
        let LookupTable { buckets, runs, .. } = &self.lookup;
        let bytes = std::mem::size_of_val(&**buckets) + std::mem::size_of_val(&**runs);
        if bytes > WARM_LIMIT {
            return;
        }
        // One word per 64 bytes: one in every cache line (bar perhaps a
        // partial last one), whatever the arrays' alignment.
        let mut sum = 0u32;
        for line in buckets.chunks(16).chain(runs.chunks(16)) {
            sum = sum.wrapping_add(line[0]);
        }
        // Keeps the loads: their values are not needed, their lines are.
        std::hint::black_box(sum);
    }

    /// The bucket entry of `hash`, or `None` when `hash` is beyond the
    /// placement's space (a caller's out-of-range ketama position) or the
    /// ring is empty. One load: the line a lookup cannot avoid.
    #[inline(always)]
    fn bucket(&self, hash: u64) -> Option<u32> {
        // `bucket_shift` is at most 63 (at least 2 buckets), so the shift
        // cannot overflow. Within the space the bucket is below
        // `buckets.len()`; beyond it, `get` answers `None`.
        let b = usize::try_from(hash >> self.lookup.bucket_shift).ok()?;
        self.lookup.buckets.get(b).copied()
    }

    /// The owner of `hash` given its bucket entry (`None`: see
    /// [`RingTable::bucket`]): [`RingTable::resolve_slot`]'s member, by id.
    #[inline(always)]
    fn resolve(&self, hash: u64, entry: Option<u32>) -> Option<NodeId> {
        self.resolve_slot(hash, entry).map(|s| self.slot_ids[s])
    }

    /// The owner of `hash` given its bucket entry, as its member index
    /// (its place in [`RingTable::nodes`]); `None`: see
    /// [`RingTable::bucket`].
    ///
    /// An owner entry (no point in the bucket) and a one-point entry are
    /// resolved by the same branch-free steps, so the branch predictor
    /// sees one outcome for 97% of lookups and a lookup's successors are
    /// not thrown away when its bucket line arrives: the entry's point key
    /// is compared with the hash's, and the owner slot below (at or before
    /// the point) or above (after it) is taken. An owner entry has both
    /// slots equal and no point key. Only a run (several points) and a
    /// point key equal to the hash's (settled against the full points)
    /// branch off.
    #[inline(always)]
    fn resolve_slot(&self, hash: u64, entry: Option<u32>) -> Option<usize> {
        let t = &self.lookup;
        let Some(entry) = entry else {
            // Empty ring (no runs: `None`), or past the space: wrap.
            return t.runs.first().map(|&r| idx(r & t.slot_mask));
        };
        if entry & RUN != 0 {
            let start = idx(entry & RUN_START_MASK);
            let len = (entry & !RUN) >> RUN_START_BITS;
            if len == RUN_LEN_SATURATED {
                return Some(self.slot_by_bisection(hash));
            }
            return Some(self.slot_at(self.scan_run(hash, start, idx(len))));
        }
        // Tagged keys: a bucket without a point has 0, below every hash's.
        let key = t.point_key(hash);
        let point_key = t.entry_point_key(entry);
        if key == point_key {
            // The hash shares the point's top bits: the full point decides.
            return Some(self.slot_by_bisection(hash));
        }
        // Past the point (or no point): the slot above. A select, not a
        // branch.
        let shift = if key > point_key { t.above_shift } else { 0 };
        Some(idx((entry >> shift) & t.slot_mask))
    }

    /// The owner slot of `hash` found by bisecting all points: for the rare
    /// lookups the bucket entry cannot settle, kept out of line so that the
    /// common path stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn slot_by_bisection(&self, hash: u64) -> usize {
        self.slot_at(self.points.partition_point(|&p| p < hash))
    }

    /// The owner slot of the point at index `found` of the sorted points,
    /// where `found == len` (past the last point) wraps to the first.
    #[inline(always)]
    fn slot_at(&self, found: usize) -> usize {
        let found = if found == self.lookup.runs.len() {
            0
        } else {
            found
        };
        idx(self.lookup.runs[found] & self.lookup.slot_mask)
    }

    /// Index of the first point `>= hash` among `start..start + len` (the
    /// run of `hash`'s bucket), or `start + len` if none.
    #[inline(always)]
    fn scan_run(&self, hash: u64, start: usize, len: usize) -> usize {
        let t = &self.lookup;
        // `key_shift` and `run_shift` are below 64 (see `LookupTable`);
        // `>> run_shift` leaves at most 32 bits, so the cast is exact.
        let key = ((hash << t.key_shift) >> t.run_shift) as u32;
        let slot_bits = t.run_shift - 32;
        for (i, &r) in t.runs[start..start + len].iter().enumerate() {
            // A larger sub-key is a larger point; an equal one (the sub-key
            // keeps only the top bits below the bucket) is settled by the
            // full point.
            let point_key = r >> slot_bits;
            if point_key > key || (point_key == key && self.points[start + i] >= hash) {
                return start + i;
            }
        }
        start + len
    }

    /// The node that owns `key`, or `None` on an empty ring.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Option<NodeId> {
        self.lookup_hash(self.placement.key_hash(key))
    }

    /// The position of `key` on this ring: [`Placement::key_hash`] of the
    /// table's placement.
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        self.placement.key_hash(key)
    }

    /// The ring position at which `key`'s owner is found: the first point
    /// `>= key_hash(key)`, wrapping; `None` on an empty ring.
    pub fn point_for(&self, key: &[u8]) -> Option<u64> {
        (!self.points.is_empty()).then(|| self.points[self.position(self.key_hash(key))])
    }

    /// The node that owns ring position `hash` (a [`RingTable::key_hash`]
    /// value). A position beyond the placement's hash space wraps to the
    /// first point, as a position past the last point does.
    // Always: a lookup is a few dozen instructions around one load, and a
    // call around it would add a sixth to them (measured: 113 against 127
    // instructions per `Ring::lookup` when LLVM stopped inlining it).
    #[inline(always)]
    pub fn lookup_hash(&self, hash: u64) -> Option<NodeId> {
        self.resolve(hash, self.bucket(hash))
    }

    /// The owner of ring position `hash` as a member index: `i` such that
    /// `nodes()[i]` is [`RingTable::lookup_hash`]'s node, or `None` on an
    /// empty ring. For callers that keep per-member data in member order
    /// and would otherwise search it by id.
    #[inline(always)]
    pub fn lookup_slot(&self, hash: u64) -> Option<usize> {
        self.resolve_slot(hash, self.bucket(hash))
    }

    /// Looks up every key of `keys` and appends the owners to `out` in the
    /// same order (`None` for each on an empty ring): [`RingTable::lookup`]
    /// for many keys at once.
    ///
    /// Keys go in groups of 16: all of a group's keys are hashed and their
    /// bucket entries loaded first, so the group's cache misses overlap,
    /// then each is resolved.
    pub fn lookup_many<K: AsRef<[u8]>>(&self, keys: &[K], out: &mut Vec<Option<NodeId>>) {
        const GROUP: usize = 16;
        out.reserve(keys.len());
        for group in keys.chunks(GROUP) {
            let mut hashes = [0u64; GROUP];
            let mut entries = [None; GROUP];
            for ((key, hash), entry) in group.iter().zip(&mut hashes).zip(&mut entries) {
                *hash = self.key_hash(key.as_ref());
                *entry = self.bucket(*hash);
            }
            for (&hash, &entry) in hashes.iter().zip(&entries).take(group.len()) {
                out.push(self.resolve(hash, entry));
            }
        }
    }

    /// The first `n` distinct nodes clockwise from `key`: a replica set.
    ///
    /// The first element is `lookup(key)`; the result has `min(n, nodes
    /// with at least one point)` elements: all members under xxh3, while
    /// under ketama a node whose weight earns no MD5 group has no point and
    /// can be in no replica set.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let want = n.min(self.nodes.len());
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.position(self.key_hash(key));
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
    /// (up to rounding) on a non-empty ring. A ketama node whose weight is
    /// too small for a single hash has no point and a share of 0.
    pub fn shares(&self) -> Vec<NodeShare> {
        let space = 1u128 << self.placement.space_bits();
        let mut arcs = vec![0u128; self.nodes.len()];
        let mut prev = self.points.last().copied().unwrap_or(0);
        for (i, (&p, &owner)) in self.points.iter().zip(self.owners.iter()).enumerate() {
            // The wrap arc of the first point is space - last + first.
            let arc = if i == 0 {
                space - u128::from(prev) + u128::from(p)
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
        let total = space as f64;
        self.nodes
            .iter()
            .zip(arcs)
            .map(|(n, arc)| NodeShare {
                id: n.id,
                name: n.name.clone(),
                weight: n.weight,
                points: n.points,
                share: arc as f64 / total,
            })
            .collect()
    }

    /// A new table at `version` with `node` added.
    ///
    /// Under xxh3 its points are spliced in and `node.points` is set to its
    /// weight; under ketama the table is rebuilt. The caller has checked that
    /// the id and name are new.
    pub(super) fn with_node(&self, version: u64, mut node: NodeInfo) -> RingTable {
        let mut nodes = self.nodes.to_vec();
        let id = node.id;
        let at = nodes.partition_point(|n| n.id < id);
        if self.placement == Placement::Ketama {
            nodes.insert(at, node);
            return RingTable::build_with(self.placement, version, nodes);
        }
        node.points = node.weight;
        let added = sorted_points(&node.name, 0..node.points);
        nodes.insert(at, node);
        self.splice_in_edit(version, nodes, &added, id)
    }

    /// A new table at `version` without node `id` and its points (ketama:
    /// rebuilt, since the others' point counts change).
    pub(super) fn without_node(&self, version: u64, id: NodeId) -> RingTable {
        let nodes: Vec<NodeInfo> = self.nodes.iter().filter(|n| n.id != id).cloned().collect();
        if self.placement == Placement::Ketama {
            return RingTable::build_with(self.placement, version, nodes);
        }
        let places: Vec<usize> = (0..self.owners.len())
            .filter(|&i| self.owners[i] == id)
            .collect();
        self.splice_out_edit(version, nodes, &places, id)
    }

    /// A new table at `version` in which node `id` has weight `weight`.
    ///
    /// Under xxh3 (weight = vnodes), raising from `v` to `w` splices in
    /// points `v..w`; lowering removes points `w..v`; no other point
    /// changes. Under ketama the table is rebuilt from the new weights.
    pub(super) fn with_weight(&self, version: u64, id: NodeId, weight: u32) -> RingTable {
        let mut nodes = self.nodes.to_vec();
        let slot = nodes
            .binary_search_by_key(&id, |n| n.id)
            .expect("caller checked membership");
        nodes[slot].weight = weight;
        if self.placement == Placement::Ketama {
            return RingTable::build_with(self.placement, version, nodes);
        }
        let old = nodes[slot].points;
        let vnodes = weight;
        nodes[slot].points = vnodes;
        let name = nodes[slot].name.clone();
        match vnodes.cmp(&old) {
            Ordering::Equal => {
                let arrays = (self.points.to_vec(), self.owners.to_vec());
                RingTable::from_sorted(self.placement, version, nodes, arrays)
            }
            Ordering::Greater => {
                self.splice_in_edit(version, nodes, &sorted_points(&name, old..vnodes), id)
            }
            Ordering::Less => {
                let places = self.removal_positions(&sorted_points(&name, vnodes..old), id);
                self.splice_out_edit(version, nodes, &places, id)
            }
        }
    }

    /// Where each of `added` (sorted points, all owned by `id`) goes among
    /// this table's points: the number of this table's entries that sort
    /// before it (ties by name: an existing entry whose owner's name sorts
    /// at or before `id`'s stays first, so a node's equal points keep
    /// their order). Non-decreasing. `nodes` is the new member list.
    fn insert_positions(&self, nodes: &[NodeInfo], added: &[u64], id: NodeId) -> Vec<usize> {
        let name_of = |owner: NodeId| -> &str {
            let slot = nodes
                .binary_search_by_key(&owner, |n| n.id)
                .expect("every owner is a member");
            &nodes[slot].name
        };
        let new_name = name_of(id);
        let mut from = 0;
        added
            .iter()
            .map(|&a| {
                let mut k = from + self.points[from..].partition_point(|&p| p < a);
                while k < self.points.len()
                    && self.points[k] == a
                    && name_of(self.owners[k]) <= new_name
                {
                    k += 1;
                }
                from = k;
                k
            })
            .collect()
    }

    /// The indexes of this table's entries that removing `removed` (sorted
    /// points owned by `id`) takes out: one entry owned by `id` per removed
    /// point (other owners' equal points stay), increasing. A point `id`
    /// does not have is skipped.
    fn removal_positions(&self, removed: &[u64], id: NodeId) -> Vec<usize> {
        let mut from = 0;
        let mut places = Vec::with_capacity(removed.len());
        for &r in removed {
            let mut k = from + self.points[from..].partition_point(|&p| p < r);
            while k < self.points.len() && self.points[k] == r && self.owners[k] != id {
                k += 1;
            }
            if k < self.points.len() && self.points[k] == r {
                places.push(k);
                from = k + 1;
            }
        }
        places
    }

    /// The table at `version` with `added` (sorted points owned by `id`)
    /// put in where [`RingTable::insert_positions`] says, members `nodes`
    /// (`id` among them): the old arrays are copied a stretch at a time
    /// between the added points.
    fn splice_in_edit(
        &self,
        version: u64,
        nodes: Vec<NodeInfo>,
        added: &[u64],
        id: NodeId,
    ) -> RingTable {
        let places = self.insert_positions(&nodes, added, id);
        let points = splice(&self.points, &places, Some(|j| added[j]), copy_all);
        let owners = splice(&self.owners, &places, Some(|_| id), copy_all);
        let edit = Edit {
            old: self,
            changed: added,
            at: &places,
            added: true,
            owner: id,
        };
        RingTable::from_edit(self.placement, version, nodes, (points, owners), Some(edit))
    }

    /// The table at `version` without the entries at `places` (increasing
    /// indexes of entries owned by `id`), members `nodes`.
    fn splice_out_edit(
        &self,
        version: u64,
        nodes: Vec<NodeInfo>,
        places: &[usize],
        id: NodeId,
    ) -> RingTable {
        let points = splice(&self.points, places, None::<fn(usize) -> u64>, copy_all);
        let owners = splice(&self.owners, places, None::<fn(usize) -> NodeId>, copy_all);
        let changed: Vec<u64> = places.iter().map(|&k| self.points[k]).collect();
        let edit = Edit {
            old: self,
            changed: &changed,
            at: places,
            added: false,
            owner: id,
        };
        RingTable::from_edit(self.placement, version, nodes, (points, owners), Some(edit))
    }
}

/// The largest lookup arrays [`RingTable::warm`] prefetches: 512 KiB, a
/// common L2's size (at 100 x 160 they take 320 KiB; at 1000 x 160, 2.6 MiB
/// would only evict the reader's other data).
const WARM_LIMIT: usize = 512 << 10;

/// Points `range` of node `name`, sorted.
fn sorted_points(name: &str, range: std::ops::Range<u32>) -> Vec<u64> {
    let mut points: Vec<u64> = range.map(|i| vnode_point(name, i)).collect();
    points.sort_unstable();
    points
}

/// Member id to slot (index in the sorted id list), for building a table:
/// an open-addressing hash table (Fibonacci hashing, linear probing) at
/// most half full, so a point's owner costs about one probe in a table
/// that stays in L1. Ids are sparse once members have come and gone (they
/// are never reused), so a direct array would not do.
struct SlotMap {
    /// `(id, slot)`; `slot == u32::MAX` marks a free entry.
    entries: Vec<(u32, u32)>,
    /// `32 - log2(entries.len())`: an id's home is `hash(id) >> shift`.
    shift: u32,
}

impl SlotMap {
    fn new(slot_ids: &[NodeId]) -> Self {
        let size = (2 * slot_ids.len()).next_power_of_two().max(2);
        let shift = u32::BITS - size.trailing_zeros();
        let mut map = SlotMap {
            entries: vec![(0, u32::MAX); size],
            shift,
        };
        for (slot, id) in slot_ids.iter().enumerate() {
            let mut at = map.home(*id);
            while map.entries[at].1 != u32::MAX {
                at = (at + 1) & (size - 1);
            }
            map.entries[at] = (id.0, u32::try_from(slot).expect("member count fits u32"));
        }
        map
    }

    /// Where `id`'s probe starts.
    #[inline]
    fn home(&self, id: NodeId) -> usize {
        // `shift` is in 1..=31 (2 to 2^31 entries); the result is below
        // `entries.len()`.
        idx(id.0.wrapping_mul(0x9E37_79B9) >> self.shift)
    }

    /// The slot of member `id`.
    ///
    /// # Panics
    ///
    /// Panics if `id` is not a member (every owner is one).
    #[inline]
    fn get(&self, id: NodeId) -> u32 {
        let mask = self.entries.len() - 1;
        let mut at = self.home(id);
        loop {
            let (key, slot) = self.entries[at];
            assert!(slot != u32::MAX, "every owner is a member");
            if key == id.0 {
                return slot;
            }
            at = (at + 1) & mask;
        }
    }
}

/// An edit of a table, for [`LookupTable::patched`]: the table before it
/// and the points of one member it added or removed.
#[derive(Clone, Copy)]
struct Edit<'a> {
    /// The table the edit started from.
    old: &'a RingTable,
    /// The points added or removed, sorted (a multiset: a node may have
    /// equal points).
    changed: &'a [u64],
    /// For each changed point, an index into the old table's arrays: where
    /// an added point went in (the number of old entries before it), or
    /// which entry was removed. Non-decreasing.
    at: &'a [usize],
    /// Whether `changed` was added (else removed).
    added: bool,
    /// The member whose points changed.
    owner: NodeId,
}

/// The lookup arrays of a table, as [`LookupTable::build`] makes them, and
/// the shifts and masks that read them.
///
/// A bucket entry is one of three (the `RUN` and `ONE_POINT` bits say
/// which; slots are `slot_bits` wide):
///
/// | bucket holds | bits, high to low |
/// |---|---|
/// | several points | `1`, length (7 bits), start (24 bits) |
/// | one point | `0 1`, point key, zeros, slot above, slot below |
/// | no point | `0 0`, zeros, slot above = slot below = the owner |
///
/// "Below" is the owner of the bucket's point (a hash at or before it),
/// "above" the owner of the point after it (wrapping). The point key is
/// the point's `point_key_bits` bits just below the bucket bits, and sits
/// just below [`ONE_POINT`], so that the two read together (the *tagged*
/// point key) compare with a hash's key tagged with a one in the same
/// place: less than it for a bucket without a point, so it takes the
/// slot above, which is its owner; equal to it only for a point whose key
/// is the hash's. Up to [`MAX_ONE_POINT_SLOT_BITS`]; past it the one-point
/// form is off (no point key bits: `point_key_tag` is 1, see
/// `one_point_form`; `above_shift` is 0), a bucket with one point is a run
/// of one, and a bucket without is its owner's slot alone.
#[derive(Clone, PartialEq, Eq, Debug)]
struct LookupTable {
    /// `runs[i]`: the sub-key of `points[i]` (high bits) packed with its
    /// owner's slot (the low `slot_bits`), 4 bytes, 16 to a cache line.
    runs: Box<[u32]>,
    /// One entry per bucket (see above). Empty on an empty ring.
    buckets: Box<[u32]>,
    /// `space_bits - bits`: a hash's bucket is `hash >> bucket_shift`.
    bucket_shift: u32,
    /// `64 - space_bits + bits`: a hash's sub-key is
    /// `(hash << key_shift) >> run_shift`, the bits just below the bucket
    /// bits that fit beside a slot; its point key is `(hash << key_shift)
    /// >> (64 - point_key_bits)`.
    key_shift: u32,
    /// `32 + slot_bits`: see `key_shift`.
    run_shift: u32,
    /// `2^slot_bits - 1`: a run entry's slot is `entry & slot_mask`.
    slot_mask: u32,
    /// `64 - point_key_bits`, or 63 with the one-point form off.
    point_key_from: u32,
    /// Where an entry's point key starts: `30 - point_key_bits`. Shifting
    /// a non-run entry (bit 31 clear) right by it leaves exactly the
    /// tagged point key: its [`ONE_POINT`] bit and the key below it.
    point_key_shift: u32,
    /// `2^point_key_bits`: the tag of a hash's point key.
    point_key_tag: u32,
    /// Where an entry's slot above starts: `slot_bits` (0 when off, so
    /// "above" reads the one slot).
    above_shift: u32,
}

impl LookupTable {
    /// The shifts and masks of a table over `points` points and `members`
    /// member slots, with no runs or buckets yet.
    fn shape(points: usize, members: usize, space_bits: u32) -> Self {
        // `BUCKETS_PER_POINT` per point rounded to the nearest power of two
        // (x 181/128, about sqrt 2, before flooring the log): 2.8 to 5.7
        // per point. At least 2 buckets (so the shift stays below 64), at
        // most 2^MAX_BUCKET_BITS, never more bits than the space has.
        let target = points.saturating_mul(BUCKETS_PER_POINT);
        let bits = (target.saturating_mul(181) / 128)
            .max(1)
            .ilog2()
            .clamp(1, MAX_BUCKET_BITS.min(space_bits));
        // Enough low bits for the largest slot: members are at most
        // MAX_TOTAL_POINTS = 2^24 (each xxh3 member has a point; ketama
        // gives n members 160 n points), so `slot_bits <= 24`, `run_shift
        // <= 56`, and a sub-key keeps at least 8 bits.
        let last_slot = u32::try_from(members.saturating_sub(1)).expect("slots fit u32");
        let slot_bits = u32::BITS - last_slot.leading_zeros();
        debug_assert!(slot_bits <= RUN_START_BITS);
        // The point key: what is left of 30 bits beside two slots, but no
        // more than the bits below the bucket (at least 8: the space has
        // 32 or 64 bits, the buckets at most 24).
        let (point_key_bits, above_shift) = if slot_bits <= MAX_ONE_POINT_SLOT_BITS {
            ((30 - 2 * slot_bits).min(space_bits - bits), slot_bits)
        } else {
            (0, 0)
        };
        LookupTable {
            runs: Box::default(),
            buckets: Box::default(),
            bucket_shift: space_bits - bits,
            // Drops the space's unused top bits and the bucket bits; at
            // most 32 + 24 = 56, so the shift is in range.
            key_shift: 64 - space_bits + bits,
            run_shift: 32 + slot_bits,
            slot_mask: (1u32 << slot_bits) - 1,
            // 8 to 30 bits of key when on: a shift of 34 to 56.
            point_key_from: if point_key_bits > 0 {
                64 - point_key_bits
            } else {
                63
            },
            point_key_shift: 30 - point_key_bits,
            point_key_tag: 1u32 << point_key_bits,
            above_shift,
        }
    }

    /// Whether one-point buckets get their own entry form.
    fn one_point_form(&self) -> bool {
        self.point_key_tag > 1
    }

    /// The tagged point key of `hash`: its `point_key_bits` bits below the
    /// bucket bits, with a one above them (see [`LookupTable`]). With the
    /// one-point form off it is 1 (no entry's tagged point key, 0, equals
    /// it).
    #[inline(always)]
    fn point_key(&self, hash: u64) -> u32 {
        // Both shifts are below 64 (`shape`); at most 30 bits are left, and
        // with the tag 31.
        ((hash << self.key_shift) >> self.point_key_from) as u32 | self.point_key_tag
    }

    /// The tagged point key of bucket entry `entry` (not a run): the
    /// entry's point key and [`ONE_POINT`] bit, 0 for a bucket without a
    /// point.
    #[inline(always)]
    fn entry_point_key(&self, entry: u32) -> u32 {
        debug_assert_eq!(entry & RUN, 0, "a run has no point key");
        // No mask: the bits above the tag are bit 31 (clear), and the
        // shift drops the slots below the key.
        entry >> self.point_key_shift
    }

    /// The run entry of point `p` owned by slot `slot`: its sub-key above
    /// the slot.
    #[inline]
    fn run_entry(&self, p: u64, slot: u32) -> u32 {
        // Exact: `>> run_shift` leaves `32 - slot_bits` bits.
        let key = ((p << self.key_shift) >> self.run_shift) as u32;
        (key << (self.run_shift - 32)) | slot
    }

    /// The entry of a bucket without points whose owner has `slot`.
    #[inline]
    fn owner_bucket(&self, slot: u32) -> u32 {
        slot | (slot << self.above_shift)
    }

    /// The entry of the bucket whose points are `start..start + len` of
    /// sorted `points` (`len > 0`), this table's runs already made.
    fn points_bucket(&self, points: &[u64], start: usize, len: usize) -> u32 {
        let runs = &self.runs;
        if len == 1 && self.one_point_form() {
            let next = if start + 1 == runs.len() {
                0
            } else {
                start + 1
            };
            // The tagged key puts ONE_POINT in place.
            (self.point_key(points[start]) << self.point_key_shift)
                | ((runs[next] & self.slot_mask) << self.above_shift)
                | (runs[start] & self.slot_mask)
        } else {
            run_bucket(start, len)
        }
    }

    /// The bucket table of sorted `points` (all below `2^space_bits`) owned
    /// by `owners`; `slot_ids` lists the members' ids sorted (a slot is an
    /// index into it). One pass over points and buckets.
    fn build(points: &[u64], owners: &[NodeId], slot_ids: &[NodeId], space_bits: u32) -> Self {
        let mut table = LookupTable::shape(points.len(), slot_ids.len(), space_bits);
        let slot_of = SlotMap::new(slot_ids);
        table.runs = points
            .iter()
            .zip(owners)
            .map(|(&p, &owner)| table.run_entry(p, slot_of.get(owner)))
            .collect();
        if !points.is_empty() {
            let bits = space_bits - table.bucket_shift;
            table.buckets = table.bucket_entries(points, bits).into_boxed_slice();
        }
        table
    }

    /// The `2^bits` bucket entries of sorted, non-empty `points` (this
    /// table's runs already made), written in one pass over the points, in
    /// bucket order: for each bucket with points, the empty buckets before
    /// it name its first point's owner (the first point after them), then
    /// its own entry is written; the empty buckets after the last point
    /// wrap to the first point's owner. The empty stretches are plain
    /// fills, so the cost is one step per point plus a memset-speed write
    /// per bucket.
    fn bucket_entries(&self, points: &[u64], bits: u32) -> Vec<u32> {
        let runs = &self.runs;
        let total = 1usize << bits;
        let mut buckets = Vec::with_capacity(total);
        let mut i = 0;
        while i < points.len() {
            let bucket = points[i] >> self.bucket_shift;
            let mut end = i + 1;
            while end < points.len() && points[end] >> self.bucket_shift == bucket {
                end += 1;
            }
            // Panics (rather than corrupting) if a point were beyond the space.
            let at = idx_of(bucket);
            assert!(at < total, "a point beyond the hash space");
            buckets.resize(at, self.owner_bucket(runs[i] & self.slot_mask));
            buckets.push(self.points_bucket(points, i, end - i));
            i = end;
        }
        buckets.resize(total, self.owner_bucket(runs[0] & self.slot_mask));
        buckets
    }

    /// The table [`LookupTable::build`] would make, made by patching the
    /// arrays of `edit.old` instead of computing every entry: an edit at
    /// 100 x 160 changes about 160 of 16 000 run entries and 2^16 buckets
    /// (and the empty buckets just before those), where a build steps
    /// through all of them one point and one gap at a time. `None` when
    /// the patch does not apply: the bucket count or the slot width
    /// changed, or the members changed by more than one (a build is
    /// needed then).
    ///
    /// The runs are the old ones copied a stretch at a time around the
    /// changed points (with their slots remapped as in step 1 below), plus
    /// an entry for each added point. The buckets are copied from the old
    /// ones in one pass that applies steps 1 and 2, then step 3 rewrites a
    /// few:
    ///
    /// 1. Owner slots (of buckets with one point or none) follow the
    ///    member list: a member added at slot `s` moves the slots at or
    ///    above it up by one, a member removed moves those above it down
    ///    (the entries that named the removed member are all rewritten in
    ///    step 3: its points' buckets are changed ones, and an entry that
    ///    names it as the owner after it precedes one of those across empty
    ///    buckets only).
    /// 2. Run entries move their start by the number of points added
    ///    (removed) in earlier buckets: one pass of adds over the array,
    ///    a constant per stretch between changed buckets.
    /// 3. Each bucket that a changed point falls in, in increasing order,
    ///    is rewritten from the new points: its run (start and length,
    ///    found by bisection) or one-point entry, or, if it has become
    ///    empty, the owner of the first point after it; then the empty
    ///    buckets before it, back to the first bucket with points, name the
    ///    owner of its first point (or of the first point after it), and
    ///    if that bucket has one point, it takes the same owner as its
    ///    owner above. Buckets with points that this walk stops at are
    ///    final but for that: either untouched by the edit or changed and
    ///    already rewritten (lower index). The only stale buckets a walk
    ///    meets are changed ones reached by wrapping past index 0: it may
    ///    stop at one that had points (and set its slot above), or pass
    ///    one that had none but has now (overwriting it, and naming the
    ///    wrong owner in the buckets below it and the slot above of the
    ///    one-point bucket it stops at). Each is rewritten later, in
    ///    increasing order, and its own walk then corrects the buckets
    ///    below it down to the next bucket with points.
    ///
    /// Debug builds check the result against a build
    /// ([`RingTable::from_edit`]).
    fn patched(
        edit: Edit<'_>,
        points: &[u64],
        slot_ids: &[NodeId],
        space_bits: u32,
    ) -> Option<Self> {
        let old = &edit.old.lookup;
        if points.is_empty() || old.buckets.is_empty() {
            return None;
        }
        let mut table = LookupTable::shape(points.len(), slot_ids.len(), space_bits);
        if table.bucket_shift != old.bucket_shift || table.slot_mask != old.slot_mask {
            return None;
        }
        let remap = SlotRemap::between(&edit.old.slot_ids, slot_ids)?;
        let shift = table.bucket_shift;
        let slot_mask = table.slot_mask;
        // The runs.
        let runs = if edit.added {
            let slot = u32::try_from(slot_ids.binary_search(&edit.owner).ok()?).ok()?;
            let added = |j: usize| table.run_entry(edit.changed[j], slot);
            splice(&old.runs, edit.at, Some(added), |out, from| {
                out.extend(from.iter().map(|&r| remap.run(r, slot_mask)));
            })
        } else {
            splice(&old.runs, edit.at, None::<fn(usize) -> u32>, |out, from| {
                out.extend(from.iter().map(|&r| remap.run(r, slot_mask)));
            })
        };
        table.runs = runs.into_boxed_slice();
        // Steps 1 and 2 in one pass from the old buckets to the new.
        let total = old.buckets.len();
        let mut buckets = Vec::with_capacity(total);
        // Copies `range` with `before` points changed before it.
        let above_shift = table.above_shift;
        let mut copy = |range: std::ops::Range<usize>, before: usize| {
            let d = u32::try_from(before).expect("point count fits u32");
            let d = if edit.added { d } else { d.wrapping_neg() };
            let from = &old.buckets[range];
            remap.copy_buckets(&mut buckets, from, d, slot_mask, above_shift);
        };
        // `changed` is sorted, so its buckets are too; the buckets up to
        // and including the j-th changed point's bucket (and after the
        // previous one's) have j changed points before them.
        let mut from = 0;
        for (j, &p) in edit.changed.iter().enumerate() {
            let to = idx_of(p >> shift) + 1;
            if to > from {
                copy(from..to, j);
                from = to;
            }
        }
        copy(from..total, edit.changed.len());
        // 3. The changed buckets and the empty ones before them.
        let mut last = None;
        for &p in edit.changed {
            let bucket = idx_of(p >> shift);
            if last == Some(bucket) {
                continue;
            }
            last = Some(bucket);
            let start = points.partition_point(|&q| (q >> shift) < bucket as u64);
            let len = points[start..]
                .iter()
                .take_while(|&&q| q >> shift == bucket as u64)
                .count();
            let next = if start == points.len() { 0 } else { start };
            let owner = table.runs[next] & slot_mask;
            buckets[bucket] = if len > 0 {
                table.points_bucket(points, start, len)
            } else {
                table.owner_bucket(owner)
            };
            let mut at = bucket;
            for _ in 1..total {
                at = if at == 0 { total - 1 } else { at - 1 };
                let entry = buckets[at];
                if entry & RUN != 0 {
                    break;
                }
                if entry & ONE_POINT != 0 {
                    let above = slot_mask << above_shift;
                    buckets[at] = (entry & !above) | (owner << above_shift);
                    break;
                }
                buckets[at] = table.owner_bucket(owner);
            }
        }
        table.buckets = buckets.into_boxed_slice();
        Some(table)
    }
}

/// All ones for a run entry, zero for the others.
#[inline(always)]
fn run_mask(entry: u32) -> u32 {
    // An arithmetic shift spreads the `RUN` bit (bit 31) over the word.
    ((entry as i32) >> 31) as u32
}

/// [`SlotRemap::copy_buckets`] with slots mapped by `slot`.
#[inline(always)]
fn copy_buckets_with(
    out: &mut Vec<u32>,
    from: &[u32],
    d: u32,
    slot_mask: u32,
    above_shift: u32,
    slot: impl Fn(u32) -> u32,
) {
    // The bits of an owner or one-point entry that are not slots.
    let kept = !(slot_mask | (slot_mask << above_shift));
    out.extend(from.iter().map(|&b| {
        // Branch-free, so it vectorizes. Starts stay below 2^24 (every
        // index does), so the wrapping add of a run entry never carries
        // into its length. A run entry's "slots" are garbage, masked away
        // (`slot` never overflows on them: they are below 2^24 too); an
        // entry's real slots stay within `slot_mask` (the width did not
        // change).
        let run = run_mask(b);
        let below = slot(b & slot_mask);
        let above = slot((b >> above_shift) & slot_mask);
        let slots = (b & kept) | (above << above_shift) | below;
        (b.wrapping_add(d) & run) | (slots & !run)
    }));
}

/// A bucket index from a shifted hash: below the bucket count, which is at
/// most 2^24.
#[inline]
fn idx_of(bucket: u64) -> usize {
    usize::try_from(bucket).expect("bucket fits usize")
}

/// The bucket entry of a run of `len` points starting at point `start`
/// (a length past [`RUN_LEN_SATURATED`] is saturated).
fn run_bucket(start: usize, len: usize) -> u32 {
    let start = u32::try_from(start).expect("point index fits a run entry");
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    RUN | (len.min(RUN_LEN_SATURATED) << RUN_START_BITS) | start
}

/// How an edit changed the member slots (indexes into the sorted ids):
/// slot `s` becomes `s + (s >= inserted) - (s > removed)`, `u32::MAX`
/// standing for no member inserted or removed. One branch-free formula for
/// all three cases, so the copy of run entries that applies it vectorizes;
/// bucket entries, two slots each, get a loop per case
/// ([`SlotRemap::copy_buckets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotRemap {
    /// The slot a member was added at; the ones from it on moved up one.
    inserted: u32,
    /// The slot of the member removed; the ones after it moved down one.
    removed: u32,
}

impl SlotRemap {
    /// The remap from sorted ids `old` to sorted ids `new`, if they differ
    /// by at most one member.
    fn between(old: &[NodeId], new: &[NodeId]) -> Option<SlotRemap> {
        let common = old.iter().zip(new).take_while(|(a, b)| a == b).count();
        let at = u32::try_from(common).ok()?;
        let none = u32::MAX;
        if old.len() == new.len() {
            (common == old.len()).then_some(SlotRemap {
                inserted: none,
                removed: none,
            })
        } else if new.len() == old.len() + 1 && new[common + 1..] == old[common..] {
            Some(SlotRemap {
                inserted: at,
                removed: none,
            })
        } else if old.len() == new.len() + 1 && old[common + 1..] == new[common..] {
            Some(SlotRemap {
                inserted: none,
                removed: at,
            })
        } else {
            None
        }
    }

    /// Slot `s` after the edit (wrapping, so it never panics).
    #[inline(always)]
    fn slot(self, s: u32) -> u32 {
        s.wrapping_add(u32::from(s >= self.inserted))
            .wrapping_sub(u32::from(s > self.removed))
    }

    /// Appends the bucket entries `from` to `out` with steps 1 and 2 of
    /// [`LookupTable::patched`] applied: run starts moved by `d` (wrapping:
    /// a removal's `d` is negative), the slots of the other entries (below,
    /// and above at `above_shift`) remapped. One loop per kind of edit, each
    /// with only the work its kind needs per entry (the loops vectorize).
    fn copy_buckets(
        self,
        out: &mut Vec<u32>,
        from: &[u32],
        d: u32,
        slot_mask: u32,
        above_shift: u32,
    ) {
        let SlotRemap { inserted, removed } = self;
        // `move`: a captured reference would be reloaded for every entry
        // (it might alias `out`), and the loop not vectorized.
        if inserted != u32::MAX {
            copy_buckets_with(out, from, d, slot_mask, above_shift, move |s| {
                s + u32::from(s >= inserted)
            });
        } else if removed != u32::MAX {
            copy_buckets_with(out, from, d, slot_mask, above_shift, move |s| {
                s - u32::from(s > removed)
            });
        } else {
            // Slots unchanged: only run starts move.
            out.extend(from.iter().map(|&b| b.wrapping_add(d & run_mask(b))));
        }
    }

    /// Run entry `r` (slot in the bits of `slot_mask`) after the edit.
    #[inline(always)]
    fn run(self, r: u32, slot_mask: u32) -> u32 {
        (r & !slot_mask) | self.slot(r & slot_mask)
    }
}

/// `old` copied a stretch at a time around `at` (as [`Edit::at`]): with
/// `added`, `added(j)` goes in before old entry `at[j]`; without, old
/// entry `at[j]` is left out. `copy` appends a stretch, adjusting its
/// entries if it needs to.
fn splice<T>(
    old: &[T],
    at: &[usize],
    mut added: Option<impl FnMut(usize) -> T>,
    mut copy: impl FnMut(&mut Vec<T>, &[T]),
) -> Vec<T> {
    let len = match added {
        Some(_) => old.len() + at.len(),
        None => old.len() - at.len(),
    };
    let mut out = Vec::with_capacity(len);
    let mut prev = 0;
    for (j, &k) in at.iter().enumerate() {
        copy(&mut out, &old[prev..k]);
        match &mut added {
            Some(f) => {
                out.push(f(j));
                prev = k;
            }
            None => prev = k + 1,
        }
    }
    copy(&mut out, &old[prev..]);
    out
}

/// A stretch for [`splice`] copied as it is.
fn copy_all<T: Copy>(out: &mut Vec<T>, from: &[T]) {
    out.extend_from_slice(from);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hash::key_hash;

    fn info(id: u32, name: &str, weight: u32) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            name: Arc::from(name),
            weight,
            points: weight,
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
        // Exact points, their neighbours (the same sub-key as the point
        // under xxh3, settled by the full point) and the extremes.
        for (i, &p) in t.points.iter().enumerate() {
            assert_eq!(t.points[t.position(p)], p);
            assert_eq!(t.lookup_hash(p), Some(t.owners[t.position(p)]));
            for h in [p.wrapping_add(1), p.wrapping_sub(1)] {
                assert_eq!(t.lookup_hash(h), Some(t.owners[t.position(h)]), "{i}: {h}");
            }
        }
        assert_eq!(t.lookup_hash(0), Some(t.owners[0]));
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

    /// Lookups by the bucket table agree with a bisection of the points.
    fn assert_agrees(t: &RingTable, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            let pos = t.points.partition_point(|&p| p < h) % t.points.len();
            assert_eq!(t.lookup_hash(h), Some(t.owners[pos]), "hash {h:#x}");
            let slot = t.lookup_slot(h).expect("a member");
            assert_eq!(t.nodes()[slot].id, t.owners[pos], "slot of hash {h:#x}");
        }
    }

    #[test]
    fn crowded_buckets_and_equal_sub_keys() {
        // 300 points in bucket 0, one apart: the same sub-key (settled by
        // the full point) and a run too long to count (bisected); then a
        // few spread points, one of them duplicated across owners.
        let nodes = vec![info(0, "a", 1), info(1, "b", 1), info(2, "c", 1)];
        let mut points: Vec<u64> = (0..300u64).map(|i| 3 * i).collect();
        points.extend([1 << 62, 1 << 62, 1 << 63, u64::MAX - 1]);
        let owners: Vec<NodeId> = (0..points.len())
            .map(|i| NodeId(u32::try_from(i % 3).unwrap()))
            .collect();
        let t = RingTable::from_sorted(Placement::Xxh3, 1, nodes, (points.clone(), owners));
        assert_eq!(
            t.lookup.buckets[0] & !RUN,
            (RUN_LEN_SATURATED << RUN_START_BITS)
        );
        let near = points
            .iter()
            .flat_map(|&p| [p, p.wrapping_add(1), p.wrapping_sub(1), p.wrapping_add(2)]);
        assert_agrees(&t, near.chain([0, u64::MAX, 1 << 40]));
        // The two points at 2^62 tie: the first (owner 0 = index 300 % 3)
        // wins.
        assert_eq!(t.lookup_hash(1 << 62), Some(NodeId(0)));
    }

    #[test]
    fn sparse_and_large_ids() {
        // Ids far apart and above 2^31 (a bucket
        // names slots, not ids, so its flag bit never meets an id).
        let t = RingTable::build(
            1,
            vec![
                info(7, "a", 50),
                info(3_000_000_000, "b", 50),
                info(u32::MAX, "c", 9),
            ],
        );
        let map = SlotMap::new(&t.slot_ids);
        for (slot, &id) in t.slot_ids.iter().enumerate() {
            assert_eq!(map.get(id), u32::try_from(slot).unwrap());
        }
        assert_agrees(&t, (0..5000u32).map(|k| key_hash(&k.to_le_bytes())));
        let dense = RingTable::build(1, vec![info(0, "a", 50), info(2, "b", 50)]);
        assert_agrees(&dense, (0..5000u32).map(|k| key_hash(&k.to_le_bytes())));
    }

    #[test]
    fn lookup_many_equals_lookup() {
        let t = RingTable::build(1, vec![info(0, "a", 100), info(1, "b", 37)]);
        let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
        let mut out = vec![None];
        t.lookup_many(&keys, &mut out);
        let single: Vec<_> = keys.iter().map(|k| t.lookup(k.as_bytes())).collect();
        assert_eq!(out[0], None, "appends after what is there");
        assert_eq!(out[1..], single[..]);
        let mut none = Vec::new();
        RingTable::empty(0).lookup_many(&keys[..3], &mut none);
        assert_eq!(none, [None; 3]);
        assert_eq!(RingTable::empty(0).lookup_slot(7), None);
    }

    #[test]
    fn splice_equals_rebuild() {
        let base = RingTable::build(1, vec![info(0, "a", 50), info(2, "c", 20)]);
        let merged = base.with_node(2, info(1, "b", 30));
        let rebuilt = RingTable::build(
            2,
            vec![info(0, "a", 50), info(1, "b", 30), info(2, "c", 20)],
        );
        assert_eq!(merged.points, rebuilt.points);
        assert_eq!(merged.owners, rebuilt.owners);
        assert_eq!(merged.lookup, rebuilt.lookup);
        let up = merged.with_weight(3, NodeId(1), 90);
        let down = up.with_weight(4, NodeId(1), 30);
        assert_eq!(down.points, rebuilt.points);
        assert_eq!(down.owners, rebuilt.owners);
        let gone = down.without_node(5, NodeId(1));
        assert_eq!(gone.points, base.points);
        assert_eq!(gone.owners, base.owners);
    }

    /// What turned `old` into `new`, as an edit of one owner's points:
    /// the changed points, their indexes in `old` (see [`Edit::at`]),
    /// whether they were added, and their owner.
    fn edit_between(old: &RingTable, new: &RingTable) -> (Vec<u64>, Vec<usize>, bool, NodeId) {
        let old_entries: Vec<(u64, NodeId)> = old.points().collect();
        let new_entries: Vec<(u64, NodeId)> = new.points().collect();
        let added = new_entries.len() >= old_entries.len();
        let (big, small) = if added {
            (&new_entries, &old_entries)
        } else {
            (&old_entries, &new_entries)
        };
        let (mut changed, mut at, mut owner) = (Vec::new(), Vec::new(), None);
        let mut j = 0;
        for (i, &(p, o)) in big.iter().enumerate() {
            if j < small.len() && small[j] == (p, o) {
                j += 1;
            } else {
                changed.push(p);
                // An added point goes in before old entry `j`; a removed
                // one is old entry `i`.
                at.push(if added { j } else { i });
                assert!(owner.is_none_or(|w| w == o), "one owner's points change");
                owner = Some(o);
            }
        }
        assert_eq!(j, small.len(), "an edit only adds or only removes");
        (changed, at, added, owner.unwrap_or(NodeId(0)))
    }

    /// Patches `new`'s lookup table from `old`'s and checks it against a
    /// build; true if the patch applied.
    fn patch_agrees(old: &RingTable, new: &RingTable) -> bool {
        let (changed, at, added, owner) = edit_between(old, new);
        let edit = Edit {
            old,
            changed: &changed,
            at: &at,
            added,
            owner,
        };
        let space = new.placement.space_bits();
        let built = LookupTable::build(&new.points, &new.owners, &new.slot_ids, space);
        match LookupTable::patched(edit, &new.points, &new.slot_ids, space) {
            Some(patched) => {
                assert_eq!(patched, built);
                true
            }
            None => false,
        }
    }

    /// A small deterministic generator for the edit sequences.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Edits of every kind (members added below, between and above the
    /// others' ids, removed, re-weighted up and down) give the lookup
    /// table a build would, and most are patched rather than built.
    #[test]
    fn patched_lookup_tables_equal_built_ones() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut t = RingTable::build(
            1,
            (0..12u32)
                .map(|i| info(i * 10, &format!("n{i}"), 100))
                .collect(),
        );
        let (mut patched, mut edits) = (0, 0);
        for version in 2..400u64 {
            let r = xorshift(&mut rng);
            let members = t.nodes.len();
            let weight = 60 + u32::try_from(xorshift(&mut rng) % 80).unwrap();
            let next = match r % 4 {
                0 if members < 16 => {
                    let id = u32::try_from(xorshift(&mut rng) % 200).unwrap();
                    if t.node(NodeId(id)).is_some() {
                        continue;
                    }
                    t.with_node(version, info(id, &format!("m{id}"), weight))
                }
                1 if members > 8 => {
                    let victim = t.nodes[usize::try_from(r >> 8).unwrap() % members].id;
                    t.without_node(version, victim)
                }
                _ => {
                    let target = t.nodes[usize::try_from(r >> 8).unwrap() % members].id;
                    t.with_weight(version, target, weight)
                }
            };
            edits += 1;
            patched += usize::from(patch_agrees(&t, &next));
            t = next;
        }
        assert!(patched * 4 > edits * 3, "only {patched} of {edits} patched");
    }

    /// Lookups next to every point, and at random, agree with a bisection
    /// after every edit of small rings (few points per bucket, so walks
    /// wrap past index 0 and stop at one-point buckets often) and of rings
    /// at the one-point form's edge (2047 to 2049 members), each edit's
    /// table patched where it can be and checked against a build.
    #[test]
    fn edits_of_small_and_edge_rings_answer_as_bisection() {
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        let mut near = |t: &RingTable| -> Vec<u64> {
            let mut hashes: Vec<u64> = t
                .points
                .iter()
                .flat_map(|&p| {
                    [
                        p,
                        p.wrapping_add(1),
                        p.wrapping_sub(1),
                        p ^ 0xff,
                        p ^ (1 << 40),
                    ]
                })
                .collect();
            hashes.extend((0..200).map(|_| xorshift(&mut rng)));
            hashes.extend([0, u64::MAX]);
            hashes
        };
        let mut state = 0x0F0F_1234_8765_4321u64;
        let mut random = |n: u64| u32::try_from(xorshift(&mut state) % n).unwrap();
        let (mut patched, mut edits) = (0, 0);
        for round in 0..140u32 {
            let edge = round % 35 == 0;
            let members = if edge {
                2047 + random(3)
            } else {
                1 + random(8)
            };
            let max_weight = if edge {
                2
            } else {
                [1, 3, 40][round as usize % 3]
            };
            // Ids 2 apart, so that added members land between others too.
            let nodes = (0..members)
                .map(|i| info(2 * i + 1, &format!("r{round}n{i}"), 1 + random(max_weight)))
                .collect();
            let mut t = RingTable::build(1, nodes);
            assert_agrees(&t, near(&t));
            for version in 2..if edge { 5 } else { 22 } {
                let n = t.nodes.len();
                let pick = t.nodes[idx(random(n as u64))].id;
                let weight = 1 + random(max_weight);
                let next = match random(3) {
                    0 if n > 1 => t.without_node(version, pick),
                    1 => {
                        // Below, between or above the others' ids.
                        let id = random(2 * u64::from(members) + 4);
                        if t.node(NodeId(id)).is_some() {
                            continue;
                        }
                        t.with_node(version, info(id, &format!("r{round}v{version}"), weight))
                    }
                    _ => t.with_weight(version, pick, weight),
                };
                edits += 1;
                patched += usize::from(patch_agrees(&t, &next));
                assert_agrees(&next, near(&next));
                t = next;
            }
        }
        // Small rings often change their bucket count or slot width (then
        // the table is built); a third of these edits patch.
        assert!(patched * 4 > edits, "only {patched} of {edits} patched");
    }

    /// A member named by the bucket table only as the owner after a
    /// one-point bucket (never as a bucket's own owner) is removed: the
    /// patch must rename that slot.
    #[test]
    fn removing_a_member_named_only_above_a_point() {
        let nodes = vec![
            info(0, "a", 1),
            info(1, "r", 1),
            info(2, "c", 1),
            info(3, "d", 1),
        ];
        let points = vec![2 << 60, 3 << 60, (3 << 60) | (1 << 59), 9 << 60];
        let owners = vec![NodeId(0), NodeId(1), NodeId(0), NodeId(2)];
        let t = RingTable::from_sorted(Placement::Xxh3, 1, nodes, (points, owners));
        let l = &t.lookup;
        let below = |e: u32| e & l.slot_mask;
        let above = |e: u32| (e >> l.above_shift) & l.slot_mask;
        let direct = l.buckets.iter().filter(|&&e| e & RUN == 0);
        assert!(direct.clone().all(|&e| below(e) != 1), "r owns no bucket");
        assert!(direct.clone().any(|&e| above(e) == 1), "r is after a point");
        let edited = t.without_node(2, NodeId(1));
        assert!(patch_agrees(&t, &edited), "the removal patches");
        assert_agrees(
            &edited,
            [0, (2 << 60) + 1, (3 << 60) - 1, 3 << 60, u64::MAX],
        );
    }

    /// Patching crowded tables: a few buckets hold most points (runs past
    /// the saturated length among them), points repeat, and edits touch
    /// the first and last buckets, so walks wrap past index 0.
    #[test]
    fn patched_crowded_tables_equal_built_ones() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let ids: Vec<NodeId> = (0..5).map(NodeId).collect();
        let nodes: Vec<NodeInfo> = ids
            .iter()
            .map(|id| info(id.0, &format!("c{}", id.0), 1))
            .collect();
        let point = |rng: &mut u64| -> u64 {
            let r = xorshift(rng);
            match r % 4 {
                // One crowded bucket, a repeated point, the space's ends.
                0 => (3 << 58) | (r >> 40),
                1 => 42 << 50,
                2 => r >> 50,
                _ => u64::MAX - (r >> 52),
            }
        };
        let mut entries: Vec<(u64, NodeId)> = (0..1000)
            .map(|i| (point(&mut rng), ids[i % ids.len()]))
            .collect();
        entries.sort_unstable();
        let mut t = RingTable::from_sorted(
            Placement::Xxh3,
            1,
            nodes.clone(),
            entries.iter().copied().unzip(),
        );
        let (mut patched, mut edits) = (0, 0);
        for version in 2..200u64 {
            let owner = ids[usize::try_from(xorshift(&mut rng) % 5).unwrap()];
            let mut next = entries.clone();
            let count = 1 + usize::try_from(xorshift(&mut rng) % 15).unwrap();
            if xorshift(&mut rng) % 2 == 0 || next.len() < 990 {
                next.extend((0..count).map(|_| (point(&mut rng), owner)));
            } else {
                let mut dropped = 0;
                next.retain(|&(_, o)| {
                    let keep = o != owner || dropped == count;
                    dropped += usize::from(!keep);
                    keep
                });
            }
            next.sort_unstable();
            let table = RingTable::from_sorted(
                Placement::Xxh3,
                version,
                nodes.clone(),
                next.iter().copied().unzip(),
            );
            edits += 1;
            patched += usize::from(patch_agrees(&t, &table));
            t = table;
            entries = next;
        }
        assert!(patched * 4 > edits * 3, "only {patched} of {edits} patched");
        assert!(
            t.lookup
                .buckets
                .iter()
                .any(|&b| b & RUN != 0 && (b & !RUN) >> RUN_START_BITS == RUN_LEN_SATURATED),
            "a run is saturated"
        );
    }

    /// Splices on tables full of ties (equal points of different owners,
    /// repeated points of one owner, points at the space's ends) give the
    /// arrays of an independent sort by (point, owner name), and the
    /// lookup table of a build: members with names that sort unlike their
    /// ids are added (ids between the others' too), removed, given more
    /// points and relieved of some (with points they lack among them).
    #[test]
    fn splices_with_ties_equal_sorted_builds() {
        let names = ["e", "b", "g", "a", "f", "c", "d", "h"];
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        let pick = |rng: &mut u64, n: usize| usize::try_from(xorshift(rng)).unwrap() % n;
        let pool = [
            0,
            1,
            5,
            1 << 60,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 5,
            u64::MAX,
        ];
        let sorted = |nodes: &[NodeInfo], mut entries: Vec<(u64, NodeId)>| {
            let name = |id: NodeId| nodes.iter().find(|n| n.id == id).unwrap().name.clone();
            entries.sort_by_key(|&(p, o)| (p, name(o)));
            RingTable::from_sorted(
                Placement::Xxh3,
                2,
                nodes.to_vec(),
                entries.into_iter().unzip(),
            )
        };
        for _ in 0..1500 {
            let mut nodes: Vec<NodeInfo> = Vec::new();
            for _ in 0..pick(&mut rng, 5) {
                let (id, name) = (
                    pick(&mut rng, 12) as u32,
                    names[pick(&mut rng, names.len())],
                );
                if nodes.iter().all(|n| n.id.0 != id && &*n.name != name) {
                    nodes.push(info(id, name, 1));
                }
            }
            // A member with spread points, so that small edits keep the
            // table's shape and get patched.
            nodes.push(info(100, "zz", 1));
            nodes.sort_by_key(|n| n.id);
            let mut entries: Vec<(u64, NodeId)> = Vec::new();
            for n in &nodes {
                for _ in 0..pick(&mut rng, if n.id.0 == 100 { 60 } else { 7 }) {
                    let p = if n.id.0 == 100 {
                        xorshift(&mut rng)
                    } else {
                        pool[pick(&mut rng, pool.len())]
                    };
                    entries.push((p, n.id));
                }
            }
            let t = sorted(&nodes, entries.clone());
            let mut pts: Vec<u64> = (0..pick(&mut rng, 7))
                .map(|_| pool[pick(&mut rng, pool.len())])
                .collect();
            pts.sort_unstable();
            let member = nodes[pick(&mut rng, nodes.len())].id;
            let (got, expected) = match pick(&mut rng, 3) {
                0 => {
                    let (id, name) = (
                        pick(&mut rng, 12) as u32,
                        names[pick(&mut rng, names.len())],
                    );
                    if nodes.iter().any(|n| n.id.0 == id || &*n.name == name) {
                        continue;
                    }
                    let mut with = nodes.clone();
                    with.push(info(id, name, 1));
                    with.sort_by_key(|n| n.id);
                    entries.extend(pts.iter().map(|&p| (p, NodeId(id))));
                    let got = t.splice_in_edit(2, with.clone(), &pts, NodeId(id));
                    (got, sorted(&with, entries))
                }
                1 => {
                    entries.extend(pts.iter().map(|&p| (p, member)));
                    (
                        t.splice_in_edit(2, nodes.clone(), &pts, member),
                        sorted(&nodes, entries),
                    )
                }
                _ => {
                    // Some of its points and, at times, ones it lacks.
                    let mut gone: Vec<u64> = t
                        .points()
                        .filter(|&(_, o)| o == member)
                        .map(|(p, _)| p)
                        .filter(|_| pick(&mut rng, 2) == 0)
                        .collect();
                    gone.extend(pts.iter().take(pick(&mut rng, 3)));
                    gone.sort_unstable();
                    let places = t.removal_positions(&gone, member);
                    for &k in &places {
                        let at = entries
                            .iter()
                            .position(|&e| e == (t.points[k], member))
                            .unwrap();
                        entries.swap_remove(at);
                    }
                    (
                        t.splice_out_edit(2, nodes.clone(), &places, member),
                        sorted(&nodes, entries),
                    )
                }
            };
            assert_eq!(got.points, expected.points);
            assert_eq!(got.owners, expected.owners);
            assert_eq!(got.lookup, expected.lookup);
        }
    }

    /// Buckets with one point get the one-point entry while slots fit it
    /// (up to 2048 members) and a run of one past that; lookups next to
    /// every point (the point key's ties included) agree with a bisection
    /// either way, before and after a weight change that patches.
    #[test]
    fn one_point_entries_on_and_off() {
        for members in [2048u32, 2049] {
            let nodes: Vec<NodeInfo> = (0..members).map(|i| info(i, &format!("n{i}"), 2)).collect();
            let t = RingTable::build(1, nodes);
            let one_point = |t: &RingTable| {
                let b = &t.lookup.buckets;
                let forms = b.iter().filter(|&&e| e & RUN == 0 && e & ONE_POINT != 0);
                let runs_of_one = b
                    .iter()
                    .filter(|&&e| e & RUN != 0 && (e & !RUN) >> RUN_START_BITS == 1);
                (forms.count(), runs_of_one.count())
            };
            let (forms, runs_of_one) = one_point(&t);
            if members <= 2048 {
                assert!(forms > 1000 && runs_of_one == 0, "{forms} {runs_of_one}");
            } else {
                assert!(forms == 0 && runs_of_one > 1000, "{forms} {runs_of_one}");
            }
            let near = |t: &RingTable| -> Vec<u64> {
                t.points
                    .iter()
                    .flat_map(|&p| [p, p.wrapping_add(1), p.wrapping_sub(1), p ^ (1 << 20)])
                    .collect()
            };
            assert_agrees(&t, near(&t));
            let edited = t.with_weight(2, NodeId(7), 9);
            assert!(patch_agrees(&t, &edited), "a weight change patches");
            assert_agrees(&edited, near(&edited));
            let edited = edited.with_weight(3, NodeId(7), 1);
            assert!(patch_agrees(&edited, &edited.with_weight(4, NodeId(9), 1)));
        }
    }

    #[test]
    fn shares_sum_to_one() {
        let t = RingTable::build(1, vec![info(0, "a", 10), info(1, "b", 20), info(2, "c", 1)]);
        let sum: f64 = t.shares().iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        let single = RingTable::build(1, vec![info(0, "solo", 1)]);
        assert!((single.shares()[0].share - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ketama_index_covers_the_32_bit_space() {
        let t = RingTable::build_with(
            Placement::Ketama,
            1,
            vec![info(0, "a", 1), info(1, "b", 2), info(2, "c", 3)],
        );
        assert_eq!(t.point_count(), 160 * 3);
        assert!(t.points.iter().all(|&p| p <= u64::from(u32::MAX)));
        for h in (0..=u64::from(u32::MAX)).step_by(9_999_991) {
            let pos = t.points.partition_point(|&p| p < h) % t.points.len();
            assert_eq!(t.lookup_hash(h), Some(t.owners[pos]));
        }
        // Beyond the 32-bit space: past every point, so it wraps.
        assert_eq!(t.lookup_hash(u64::MAX), Some(t.owners[0]));
        assert_eq!(t.lookup_hash(1 << 40), Some(t.owners[0]));
        let sum: f64 = t.shares().iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn ketama_edits_equal_rebuilds() {
        let k = Placement::Ketama;
        let base = RingTable::build_with(k, 1, vec![info(0, "a", 5), info(2, "c", 1)]);
        let added = base.with_node(2, info(1, "b", 3));
        let rebuilt = RingTable::build_with(
            k,
            2,
            vec![info(0, "a", 5), info(1, "b", 3), info(2, "c", 1)],
        );
        assert_eq!(added.points, rebuilt.points);
        assert_eq!(added.owners, rebuilt.owners);
        assert_eq!(added.nodes, rebuilt.nodes);
        let reweighted = added.with_weight(3, NodeId(1), 9);
        assert_eq!(reweighted.node(NodeId(1)).unwrap().weight, 9);
        let gone = reweighted.without_node(4, NodeId(1));
        assert_eq!(gone.points, base.points);
        assert_eq!(gone.nodes, base.nodes);
    }
}
