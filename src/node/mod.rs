//! One cache node's store: entries, TTL, a memory cap with eviction, stats.
//!
//! This module owns what a node holds and nothing about where keys belong:
//! it never looks at the ring. The cluster talks to a node only through the
//! [`Store`] trait (get, set, delete, the relocation primitives, stats).
//! Two stores implement it: the embedded [`MemStore`] below, and
//! [`RedisStore`] ([`redis`]), a Redis server reached over the network
//! through [`resp`]. Every operation of the trait can fail, because a remote
//! one can; the embedded store's own methods of the same names cannot, and
//! code holding a `MemStore` calls those.
//!
//! # The embedded store
//!
//! A [`MemStore`] is a `DashMap` from key bytes to an entry holding the value
//! bytes, an optional absolute expiry and an access stamp for eviction.
//! Values are `Arc<[u8]>`, so a read clones a pointer, not the value, while
//! it holds the shard's read lock. Keys are [`Key`]s: up to 15 bytes inline
//! in the map's bucket on a 64-bit little-endian target (a lookup compares
//! them on the line it probed), an `Arc<[u8]>` beyond.
//!
//! ## Memory cap and eviction
//!
//! Every entry is charged `key.len() + value.len() + ENTRY_OVERHEAD` bytes
//! ([`ENTRY_OVERHEAD`] says where its value comes from). When a write takes
//! the node over its cap, the writer evicts entries until it is back under.
//! The policy is approximate LRU by sampling, in the manner of Redis's
//! `allkeys-lru`: each eviction draws [`EVICTION_SAMPLES`] (10) entries and
//! evicts the one accessed longest ago. Redis defaults to 5 samples and
//! keeps a pool of 16 candidates between evictions; here 10 samples and no
//! pool, which measured closer to an exact LRU at a lower cost per write
//! (docs/eviction.md).
//!
//! * **What a sample sees.** One shard is picked at random. From each of
//!   [`SAMPLE_RUNS`] (2) uniformly random bucket indices of that shard's
//!   whole table, the next `EVICTION_SAMPLES / SAMPLE_RUNS` full buckets are
//!   taken (consecutive buckets from a random start, as Redis's
//!   `dictGetSomeKeys` walks them; neighbouring buckets are memory-adjacent,
//!   so the walk costs little beyond its first bucket). Keys are spread over
//!   shards and over buckets by their hash, so every entry of the node can
//!   be drawn, whatever its position, and where an entry sits says nothing
//!   of its age. The draw is not exactly uniform: an entry after a run of
//!   empty buckets is drawn more often, shards differ a little in size, and
//!   neighbours are drawn together; none of that depends on age. Only a
//!   shard so sparse that the probes find nothing (a table left large by
//!   deletes) falls back to its first entries in table order.
//! * **Bounded cost.** One eviction takes one shard read lock, probes at
//!   most `SAMPLE_RUNS x PROBE_LIMIT` control bytes (about
//!   `EVICTION_SAMPLES x 2` in a table at its usual load), clones one key
//!   (the victim's) and takes one shard write lock to remove it. A write
//!   evicts until the node is back under its cap: one entry per write when
//!   entries are of similar size.
//! * **Never the write itself.** The key being written is never a
//!   candidate, so an acknowledged `set` is always readable right after it
//!   returns, unless another writer's eviction or a delete removes it.
//! * **The clock.** An access stamp is a process-wide logical clock (+1 per
//!   write on any node), recorded on every `set` and `get`. One counter
//!   for the process is a cache line every writer increments and every
//!   reader loads, as each node's own counter was for its writers and
//!   readers before (cross-node write contention on it was not measurable
//!   on the shared 2-core machine of docs/eviction.md). In exchange, stamps
//!   of all nodes of a process compare, so relocation carries an entry's
//!   stamp to its new node ([`MovedEntry::last_access`]): a moved entry
//!   keeps its age. An import into a full node competes by that age: if it
//!   is older than the oldest of the sampled entries it would displace, the
//!   moved entry is the one evicted ([`ImportOutcome::Evicted`]), and every
//!   entry an import evicts is reported to the caller
//!   ([`Imported::evicted`]).
//!
//! A single entry larger than the whole cap is refused
//! ([`StoreError::TooLarge`]) instead of emptying the node. docs/eviction.md
//! measures the hit ratio against an exact LRU, Redis and a W-TinyLFU cache.
//!
//! ## TTL
//!
//! An entry with an expiry is never returned once it has passed: `get`
//! checks it and removes the entry lazily. [`Store::sweep_expired`], called
//! periodically by the cluster's sweeper thread, reclaims expired entries
//! nobody reads. The sweep collects candidates under a shard's *read* lock
//! and removes them one by one, so it never holds a write lock for longer
//! than one removal.
//!
//! ## Locking behaviour
//!
//! Each operation takes one shard lock of the map (read for `get`, write for
//! `set`/`delete`) and never holds a map reference across another call into
//! the same map. Stats counters are striped per thread, so reads on
//! different cores do not share a contended cache line.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;

mod key;
pub mod redis;
pub mod resp;

pub use redis::{Health, HealthStats, RedisOptions, RedisStore};
pub use resp::{RemoteError, RemoteErrorKind};

pub use key::Key;
/// Value bytes, shared so a read clones a pointer under the shard lock.
pub type Value = Arc<[u8]>;

/// Bytes charged per entry on top of its key and value.
///
/// Where 112 comes from, on a 64-bit target: the map slot holds the
/// [`Key`] (16 bytes: the key itself up to 15 bytes, else an `Arc<[u8]>`
/// fat pointer) and the entry (value fat pointer 16,
/// placement hash 8, map hash 8, deadline 8, access stamp 8: 48); each of
/// the two `Arc` allocations carries two reference counts (16 each) plus
/// allocator rounding (about 8 each); hashbrown adds one control byte per
/// slot and keeps slots at most 7/8 full. 16 + 48 + 32 + 16 + ~2 rounds up
/// to 112. A key short enough to be inline has no allocation and so uses
/// about 32 bytes less; it is charged the same, so that a node's budget
/// does not depend on how its keys happen to be stored.
pub const ENTRY_OVERHEAD: usize = 112;

/// How many entries one eviction samples. Redis's docs show 10 samples
/// approximating true LRU closely; benches/hit_ratio.rs measured 5 at
/// 0.98-0.99x an exact LRU's hit ratio and 10 at 0.99-1.00x.
pub const EVICTION_SAMPLES: usize = 10;

/// Random starting indices per eviction; the samples are the full buckets
/// following each (`EVICTION_SAMPLES / SAMPLE_RUNS` per start).
pub const SAMPLE_RUNS: usize = 2;

/// How many buckets one run of samples probes forward from its random
/// index before giving up. At hashbrown's lowest load after growth (7/16
/// full) a run needs about 11 probes for its 5 samples, and 64 buckets in a
/// row are all empty with a chance of about 1e-16; only a sparse table
/// (emptied by deletes, never shrunk) runs out.
pub const PROBE_LIMIT: usize = 64;

/// The process-wide access clock: +1 per write on any node; entries record
/// it on every access. Shared by every node of the process so that stamps
/// compare across nodes and relocation can carry them.
/// Relaxed everywhere: eviction order is a hint, ordered with nothing.
static ACCESS_CLOCK: AtomicU64 = AtomicU64::new(1);

/// The access clock's current stamp: what an entry arriving from a store
/// without stamps (a Redis server) is given, as if just accessed.
pub(crate) fn access_now() -> u64 {
    // Relaxed: an eviction hint, like every stamp.
    ACCESS_CLOCK.load(Ordering::Relaxed)
}

/// The most expired entries one sweep collects from a shard before moving
/// on, so one sweep pass stays short even when many keys expire at once.
const SWEEP_BATCH: usize = 1024;

/// Whether a `set` created the key or replaced a live value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The key had no live value before.
    Created,
    /// The key had a live value, now replaced.
    Replaced,
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The node's server failed to answer (remote nodes only).
    Remote(RemoteError),
    /// The entry alone is larger than the node's whole memory cap.
    TooLarge {
        /// The bytes the entry would be charged.
        entry_bytes: usize,
        /// The node's cap.
        max_bytes: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Remote(e) => e.fmt(f),
            StoreError::TooLarge {
                entry_bytes,
                max_bytes,
            } => write!(
                f,
                "the entry needs {entry_bytes} bytes but a cache node holds at most {max_bytes}; \
                 store a smaller value or raise the node memory cap"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RemoteError> for StoreError {
    fn from(e: RemoteError) -> Self {
        StoreError::Remote(e)
    }
}

/// An entry as relocation carries it between nodes: the value, its
/// absolute expiry (so a moved key keeps its remaining TTL) and its last
/// access (so it keeps its age for eviction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedEntry {
    /// The value bytes.
    pub value: Value,
    /// When the entry expires, if ever.
    pub expires_at: Option<Instant>,
    /// The key's placement hash, as the source store recorded it.
    pub hash: u64,
    /// The entry's access stamp on the source store: the process-wide
    /// logical clock at its last `set` or `get` (see the module docs).
    pub last_access: u64,
}

/// What became of an entry given to [`Store::import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The entry is stored.
    Stored,
    /// Not stored: the key has a live value here, newer than the moved one.
    Present,
    /// Not stored: the node is full of entries accessed more recently than
    /// the moved one, so eviction chose the moved entry itself. It counts as
    /// an eviction of this node.
    Evicted,
}

/// The result of [`Store::import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    /// What became of the moved entry.
    pub outcome: ImportOutcome,
    /// Entries this import evicted to stay under the cap, the moved entry
    /// itself included when `outcome` is [`ImportOutcome::Evicted`]. Each is
    /// a key the cluster lost because of the move.
    pub evicted: u64,
}

/// A node's counters at one moment (each read separately, so they may be a
/// few operations apart under load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Entries stored, expired-but-not-yet-reclaimed ones included.
    pub keys: usize,
    /// Bytes charged for the stored entries (see [`ENTRY_OVERHEAD`]).
    pub bytes: usize,
    /// The memory cap in bytes.
    pub max_bytes: usize,
    /// Gets that found a live value.
    pub hits: u64,
    /// Gets that found nothing (or only an expired value).
    pub misses: u64,
    /// Entries removed to stay under the memory cap.
    pub evictions: u64,
    /// Entries removed because their TTL passed (lazily or by the sweep).
    pub expirations: u64,
    /// Calls to the node that failed (a remote node's server errors,
    /// refusals and timeouts; always 0 for an embedded node).
    pub errors: u64,
}

/// A page of keys from [`Store::scan`].
#[derive(Clone, Debug, Default)]
pub struct ScanPage {
    /// Keys of this page (live or expired) whose hash the scan's filter
    /// accepted, each with that placement hash.
    pub keys: Vec<(u64, Key)>,
    /// Entries the page examined, accepted or not.
    pub examined: usize,
    /// The cursor for the next page, or `None` when the scan is complete.
    pub next: Option<u64>,
}

/// What the cluster needs of a cache node.
///
/// Implementations must be safe to call from many threads at once. The
/// relocation primitives (`scan`, `export`, `import`, `remove`) do not count
/// as hits or misses.
pub trait Store: Send + Sync {
    /// The live value of `key`, counting a hit or a miss.
    fn get(&self, key: &[u8]) -> Result<Option<Value>, StoreError>;

    /// Stores `value` under `key`, expiring at `expires_at` if given;
    /// evicts other entries (never this one) if the node goes over its cap.
    /// `hash` is the key's placement hash
    /// ([`crate::hash::Placement::key_hash`] of the ring placing it), which
    /// the caller computed to route the write; the store keeps it for
    /// [`Store::scan`] and never hashes keys itself.
    fn set(
        &self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError>;

    /// Removes `key`; true if it had a live value.
    fn delete(&self, key: &[u8]) -> Result<bool, StoreError>;

    /// One page of the node's keys, starting at `cursor` (0 for the first
    /// page), keeping those whose placement hash (as given to `set`)
    /// `filter` accepts. A full scan examines every key present for its whole
    /// duration at least once; keys added or removed meanwhile may or may
    /// not appear. Relocation filters by "not owned here", so a store that
    /// remembers each key's hash (as [`MemStore`] does) never touches the
    /// keys that stay.
    ///
    /// `filter` may run under a store lock: it must be quick and must not
    /// call back into the store.
    fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> Result<ScanPage, StoreError>;

    /// The live entry under `key`, for relocation (no stats).
    fn export(&self, key: &[u8]) -> Result<Option<MovedEntry>, StoreError>;

    /// Stores `entry` under `key` only if the key has no live value here.
    /// Relocation uses this so a moved (older) copy never overwrites a newer
    /// write. The entry keeps its access stamp; when the node is at its cap
    /// the entry competes for room by that age, and the result says how many
    /// entries (the moved one possibly among them) were evicted.
    ///
    /// The key is passed as the [`Key`] the source store's [`Store::scan`]
    /// returned, so an embedded store keeps it by a clone (16 bytes copied
    /// for a short key, a count taken for a long one), never by copying a
    /// long key's bytes.
    fn import(&self, key: &Key, entry: MovedEntry) -> Result<Imported, StoreError>;

    /// Removes `key` whatever its state; true if an entry was there.
    fn remove(&self, key: &[u8]) -> Result<bool, StoreError>;

    /// [`Store::export`] for each of `keys`, in order. A remote store sends
    /// them in one round trip; the default asks one by one.
    fn export_many(&self, keys: &[Key]) -> Result<Vec<Option<MovedEntry>>, StoreError> {
        keys.iter().map(|k| self.export(k)).collect()
    }

    /// [`Store::import`] for each entry, in order; the outer error is a
    /// failure of the node as a whole (nothing can be assumed stored), the
    /// inner ones are per entry.
    fn import_many(
        &self,
        entries: Vec<(Key, MovedEntry)>,
    ) -> Result<Vec<Result<Imported, StoreError>>, StoreError> {
        Ok(entries
            .into_iter()
            .map(|(k, e)| self.import(&k, e))
            .collect())
    }

    /// [`Store::remove`] for each of `keys`.
    fn remove_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        for k in keys {
            self.remove(k)?;
        }
        Ok(())
    }

    /// Reclaims entries whose expiry is at or before `now`; returns how many.
    /// A remote server expires its own keys: 0.
    fn sweep_expired(&self, now: Instant) -> usize;

    /// The node's counters. A remote store answers from its last refresh
    /// and never waits on the network here.
    fn stats(&self) -> NodeStats;

    /// Housekeeping called about once a second by the cluster's sweeper
    /// thread (never by a request): a remote store refreshes its counters.
    fn refresh(&self) {}

    /// The server's address, for a remote store; `None` for an embedded one.
    fn remote_addr(&self) -> Option<&str> {
        None
    }

    /// This store as an embedded [`MemStore`], if it is one: lets the
    /// cluster call an embedded node's reads directly (no dynamic call, no
    /// `Result` to unwrap) on its hottest path. `None` by default.
    fn into_mem_store(self: Arc<Self>) -> Option<Arc<MemStore>> {
        None
    }

    /// The store as a Redis node, for the health observer; `None` for an
    /// embedded one.
    fn as_redis(&self) -> Option<&RedisStore> {
        None
    }
}

/// A counter striped over cache-padded cells, so that threads on different
/// cores increment different cache lines. Reads sum the cells.
struct StripedCounter {
    cells: [CachePadded<AtomicU64>; STRIPES],
}

const STRIPES: usize = 8;

thread_local! {
    /// This thread's stripe, assigned round-robin at first use.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

impl StripedCounter {
    fn new() -> Self {
        StripedCounter {
            cells: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    #[inline]
    fn add(&self, n: u64) {
        // Relaxed: a statistic, ordered with nothing.
        STRIPE.with(|&s| self.cells[s].fetch_add(n, Ordering::Relaxed));
    }

    fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A stored entry.
struct Entry {
    value: Value,
    /// The key's placement hash, kept so relocation scans can decide
    /// whether a key moves without touching the key's own allocation.
    hash: u64,
    /// The key's hash in the map (its hasher's, as `DashMap::hash_usize`
    /// computes it), kept so that a table growing rehashes from its
    /// buckets alone: rehashing from the keys would read every key's
    /// allocation, a cache miss each on a large node (it was a third of
    /// the mover's time when a new node's tables grew).
    map_hash: u64,
    expires_at: Deadline,
    /// The process-wide access clock at the last access; eviction samples
    /// it.
    last_access: AtomicU64,
}

impl Entry {
    #[inline]
    fn is_expired(&self, now: impl FnOnce() -> Instant) -> bool {
        self.expires_at.passed(now)
    }

    /// The entry as relocation carries it, `None` if it has expired.
    fn moved(&self, now: impl FnOnce() -> Instant) -> Option<MovedEntry> {
        if self.is_expired(now) {
            return None;
        }
        Some(MovedEntry {
            value: self.value.clone(),
            expires_at: self.expires_at.instant(),
            hash: self.hash,
            last_access: self.last_access.load(Ordering::Relaxed),
        })
    }
}

/// Hints the CPU to fetch the line holding `arc`'s reference counts (and
/// the first bytes of its data); nothing more.
#[inline(always)]
fn prefetch_arc(arc: &Arc<[u8]>) {
    prefetch_arc_counts(Arc::as_ptr(arc).cast());
}

/// Hints the CPU to fetch the reference counts of the `Arc` whose data
/// starts at `data` (the two words before it); a no-op off x86-64.
#[inline(always)]
fn prefetch_arc_counts(data: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let counts = data
            .cast::<i8>()
            .wrapping_sub(2 * std::mem::size_of::<usize>());
        // SAFETY: PREFETCHT0 only hints the cache: it never faults and
        // neither reads nor writes anything the program can observe. SSE
        // (which provides it) is part of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(counts) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The most keys of a batch one shard lock is held for: a relocation
/// batch (256 keys of one shard) then holds a shard's write lock for a
/// quarter of its removals at a time, not all of them.
const LOCK_RUN: usize = 64;

/// Calls `f(shard, run)` with each run of `keys` (in order) that falls in
/// one shard of `store`, at most [`LOCK_RUN`] long, as `(key, map hash)`.
fn for_each_shard_run<'k>(
    store: &MemStore,
    keys: &'k [Key],
    mut f: impl FnMut(usize, &[(&'k Key, u64)]),
) {
    let mut run: Vec<(&Key, u64)> = Vec::with_capacity(LOCK_RUN.min(keys.len()));
    let mut run_shard = 0;
    for key in keys {
        let (hash, shard) = store.locate(key);
        if run.len() == LOCK_RUN || (!run.is_empty() && run_shard != shard) {
            f(run_shard, &run);
            run.clear();
        }
        run_shard = shard;
        run.push((key, hash));
    }
    if !run.is_empty() {
        f(run_shard, &run);
    }
}

/// An entry's expiry in 8 bytes rather than `Option<Instant>`'s 16: the
/// nanoseconds from a process-wide base instant to the deadline, 0 for
/// none. u64 nanoseconds last 584 years.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Deadline(u64);

/// The instant deadlines count from: the first time any is made.
fn deadline_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Deadline {
    /// No expiry.
    const NEVER: Deadline = Deadline(0);

    /// `at` as a deadline; an instant before the base (none is made in
    /// practice) counts as the base, already passed.
    fn new(at: Option<Instant>) -> Deadline {
        match at {
            None => Deadline::NEVER,
            Some(at) => {
                let nanos = at.saturating_duration_since(deadline_base()).as_nanos();
                Deadline(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
            }
        }
    }

    /// The deadline as an instant, `None` for none.
    fn instant(self) -> Option<Instant> {
        (self.0 != 0).then(|| deadline_base() + std::time::Duration::from_nanos(self.0))
    }

    /// True if there is a deadline and `now()` (called only then) is at or
    /// past it.
    #[inline]
    fn passed(self, now: impl FnOnce() -> Instant) -> bool {
        self.0 != 0 && Deadline::new(Some(now())).0 >= self.0
    }
}

/// The embedded cache node: a `DashMap` with a memory cap, TTL and stats.
///
/// ```
/// use ringcache::hash::key_hash;
/// use ringcache::node::{MemStore, SetOutcome, Store};
/// let node = MemStore::new(1 << 20);
/// let set = node.set(key_hash(b"k"), b"k", b"v".as_slice().into(), None);
/// assert_eq!(set, Ok(SetOutcome::Created));
/// assert_eq!(node.get(b"k").as_deref(), Some(b"v".as_slice()));
/// assert!(node.delete(b"k"));
/// assert_eq!(node.stats().keys, 0);
/// ```
pub struct MemStore {
    map: DashMap<Key, Entry, ahash::RandomState>,
    max_bytes: usize,
    /// Bytes charged for the stored entries; may exceed `max_bytes` for the
    /// moment between a write and its evictions.
    bytes: AtomicUsize,
    hits: StripedCounter,
    misses: StripedCounter,
    evictions: StripedCounter,
    expirations: StripedCounter,
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStore")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Shard count of each node's map: more shards than cores by far, so
/// writers rarely meet on a shard lock, and a scan page (one shard) stays
/// small (1M keys / 64 = 16k keys).
const SHARDS: usize = 64;

#[inline]
fn charge(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ENTRY_OVERHEAD
}

/// Keeps in `best` whichever of it and `(k, e)` was accessed longer ago.
#[inline]
fn older<'a>(best: &mut Option<(u64, &'a Key)>, k: &'a Key, e: &Entry) {
    let stamp = e.last_access.load(Ordering::Relaxed);
    if best.is_none_or(|(s, _)| stamp < s) {
        *best = Some((stamp, k));
    }
}

/// The hasher of every embedded node's map: one random seed per process,
/// shared by all nodes, so a key has the same map hash, and so the same
/// shard and the same place in its table, on every node. Relocation then
/// moves a source shard's keys into one destination shard, in table
/// order, instead of scattering each batch over every shard of the
/// destination's (cold) tables. Sharing the seed among nodes does not
/// weaken it against crafted keys: it is still random per process and
/// never leaves it.
fn map_hasher() -> ahash::RandomState {
    static HASHER: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(ahash::RandomState::new).clone()
}

/// A fast thread-local xorshift generator for eviction sampling; placement
/// never depends on it.
fn random() -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            // Seed from the hasher's per-process randomness and the thread.
            ahash::RandomState::new().hash_one(std::thread::current().id()) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x as usize
    })
}

impl MemStore {
    /// An empty node that holds at most `max_bytes` (see [`ENTRY_OVERHEAD`]).
    pub fn new(max_bytes: usize) -> MemStore {
        MemStore {
            map: DashMap::with_hasher_and_shard_amount(map_hasher(), SHARDS),
            max_bytes,
            bytes: AtomicUsize::new(0),
            hits: StripedCounter::new(),
            misses: StripedCounter::new(),
            evictions: StripedCounter::new(),
            expirations: StripedCounter::new(),
        }
    }

    /// Entries stored now (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Inserts `owned` (whose bytes are `key`), accounting bytes, with
    /// access stamp `stamp`; `only_if_absent` keeps a live entry. Evicts
    /// other entries (never `key`) while the node is over its cap. Returns
    /// the outcome, or `None` when a live entry was kept, and the number of
    /// entries evicted.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        hash: u64,
        owned: Key,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
        stamp: u64,
        only_if_absent: bool,
    ) -> (Option<SetOutcome>, u64) {
        let cost = charge(key.len(), value.len());
        let (map_hash, shard) = self.locate(key);
        let entry = Entry {
            value,
            hash,
            map_hash,
            expires_at: Deadline::new(expires_at),
            last_access: AtomicU64::new(stamp),
        };
        // Charge before the entry becomes visible and uncharge only after an
        // entry is gone, so `bytes` never drops below what is stored (a
        // delete racing this insert cannot make it wrap).
        // Relaxed: byte accounting is a gauge; eviction re-reads it.
        let total = self.bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        // The insert goes through the raw table (the same shard and hash
        // as `DashMap`'s own methods use, so `get` and `remove` find it),
        // only so that growth rehashes by `map_hash` instead of the keys.
        let mut table = self.map.shards()[shard].write();
        let outcome = match table.find(map_hash, |(k, _)| **k == *key) {
            Some(bucket) => {
                // SAFETY: the bucket was just found in `table`, whose write
                // lock is held, so it is full and nothing else reads or
                // writes it until the lock is released below.
                let (_, slot) = unsafe { bucket.as_mut() };
                let live = !slot.get().is_expired(Instant::now);
                if live && only_if_absent {
                    drop(table);
                    self.bytes.fetch_sub(cost, Ordering::Relaxed);
                    return (None, 0);
                }
                let old = std::mem::replace(slot.get_mut(), entry);
                drop(table);
                self.bytes
                    .fetch_sub(charge(key.len(), old.value.len()), Ordering::Relaxed);
                if live {
                    SetOutcome::Replaced
                } else {
                    self.expirations.add(1);
                    SetOutcome::Created
                }
            }
            None => {
                table.insert(
                    map_hash,
                    (owned, dashmap::SharedValue::new(entry)),
                    |(_, e)| e.get().map_hash,
                );
                drop(table);
                SetOutcome::Created
            }
        };
        // The shard lock is released: eviction takes shard locks of its own.
        let evicted = if total > self.max_bytes {
            self.evict_until_under_cap(hash, key)
        } else {
            0
        };
        (Some(outcome), evicted)
    }

    /// Refuses an entry larger than the whole cap.
    fn check_size(&self, key_len: usize, value_len: usize) -> Result<(), StoreError> {
        let cost = charge(key_len, value_len);
        if cost > self.max_bytes {
            return Err(StoreError::TooLarge {
                entry_bytes: cost,
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Evicts sampled least-recently-used entries, never `key` (whose
    /// placement hash is `hash`), until under the cap; returns how many.
    fn evict_until_under_cap(&self, hash: u64, key: &[u8]) -> u64 {
        let mut evicted = 0;
        // Bounded: each round evicts one entry, or loses a race to another
        // remover (which also shrinks the node), or finds no candidate.
        while self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            let Some((stamp, victim)) = self.sample_victim(hash, key) else {
                break;
            };
            evicted += u64::from(self.evict(&victim, stamp));
        }
        evicted
    }

    /// Evicts `key` if its access stamp is still `stamp` (not accessed
    /// since it was sampled); true if it did.
    fn evict(&self, key: &[u8], stamp: u64) -> bool {
        let removed = self
            .map
            .remove_if(key, |_, e| e.last_access.load(Ordering::Relaxed) == stamp);
        match removed {
            Some((k, e)) => {
                self.bytes
                    .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                self.evictions.add(1);
                true
            }
            None => false,
        }
    }

    /// Draws [`EVICTION_SAMPLES`] entries (see the module docs) and returns
    /// the stamp and key of the one accessed longest ago, never `key`
    /// (whose placement hash is `hash`). `None` if the node holds no other
    /// entry.
    fn sample_victim(&self, hash: u64, key: &[u8]) -> Option<(u64, Key)> {
        let shards = self.map.shards();
        let start = random();
        // Only an empty shard, or one holding nothing but `key`, sends the
        // search on to the next shard.
        for probe in 0..shards.len() {
            let table = shards[(start + probe) % shards.len()].read();
            if table.is_empty() {
                continue;
            }
            let is_candidate = |k: &Key, e: &Entry| e.hash != hash || **k != *key;
            let mask = table.buckets() - 1;
            let mut best: Option<(u64, &Key)> = None;
            // SAFETY: the shard's read lock is held while buckets are read,
            // so no bucket is freed, moved or written meanwhile; every index
            // is masked below `buckets()` (a power of two), and `bucket(i)`
            // is dereferenced only when `is_bucket_full(i)`. The references
            // taken (`&Key`, `&Entry`) do not outlive `table`.
            unsafe {
                for _ in 0..SAMPLE_RUNS {
                    let from = random();
                    let mut taken = 0;
                    for step in 0..PROBE_LIMIT.min(mask + 1) {
                        let i = from.wrapping_add(step) & mask;
                        if table.is_bucket_full(i) {
                            let (k, e) = table.bucket(i).as_ref();
                            if is_candidate(k, e.get()) {
                                older(&mut best, k, e.get());
                                taken += 1;
                                if taken == EVICTION_SAMPLES / SAMPLE_RUNS {
                                    break;
                                }
                            }
                        }
                    }
                }
                if best.is_none() {
                    // A sparse table: fall back to its first entries.
                    for bucket in table.iter().take(EVICTION_SAMPLES + 1) {
                        let (k, e) = bucket.as_ref();
                        if is_candidate(k, e.get()) {
                            older(&mut best, k, e.get());
                        }
                    }
                }
            }
            if let Some((stamp, k)) = best {
                return Some((stamp, k.clone()));
            }
        }
        None
    }

    /// Removes `key` if it is expired; counts the expiration. True if it
    /// removed an entry.
    fn remove_expired(&self, key: &[u8], now: Instant) -> bool {
        match self.map.remove_if(key, |_, e| e.is_expired(|| now)) {
            Some((k, e)) => {
                self.bytes
                    .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                self.expirations.add(1);
                true
            }
            None => false,
        }
    }
}

impl MemStore {
    /// As [`Store::get`], which cannot fail on an embedded node.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        let (map_hash, shard) = self.locate(key);
        let found = {
            // `DashMap::get`, written out so that it inlines here and
            // compares keys with `Key::is`: in a loop of gets the
            // processor overlaps one get's cache misses with the next
            // one's only while the work in between stays small, as
            // measured with the key a miss and in the cache alike
            // (docs/performance.md, "A get's length", "What the edge is
            // made of" and "With the key in the cache").
            let table = self.map.shards()[shard].read();
            table.find(map_hash, |(k, _)| k.is(key)).map(|bucket| {
                // SAFETY: `find` returned a full bucket of this very table,
                // read under the shard's read lock (`table`, alive to the
                // end of this block) and only shared: atomics and a clone
                // of the value, nothing kept past the lock.
                let e = unsafe { bucket.as_ref() }.1.get();
                if e.is_expired(Instant::now) {
                    return None;
                }
                // Relaxed: eviction hints; skip the store when already
                // current so hot keys do not keep dirtying their cache
                // line.
                let now = ACCESS_CLOCK.load(Ordering::Relaxed);
                if e.last_access.load(Ordering::Relaxed) != now {
                    e.last_access.store(now, Ordering::Relaxed);
                }
                Some(e.value.clone())
            })
        };
        // The shard's lock is released before any removal below.
        match found {
            Some(Some(v)) => {
                self.hits.add(1);
                Some(v)
            }
            Some(None) => {
                self.remove_expired(key, Instant::now());
                self.misses.add(1);
                None
            }
            None => {
                self.misses.add(1);
                None
            }
        }
    }

    /// As [`Store::set`].
    pub fn set(
        &self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError> {
        self.check_size(key.len(), value.len())?;
        // Relaxed: a logical clock for eviction order, nothing more.
        let stamp = ACCESS_CLOCK.fetch_add(1, Ordering::Relaxed) + 1;
        let (outcome, _) = self.insert(hash, Key::from(key), key, value, expires_at, stamp, false);
        Ok(outcome.expect("an unconditional insert always stores"))
    }

    /// As [`Store::delete`], which cannot fail on an embedded node.
    pub fn delete(&self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some((k, e)) => {
                self.bytes
                    .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                if e.is_expired(Instant::now) {
                    self.expirations.add(1);
                    false
                } else {
                    true
                }
            }
            None => false,
        }
    }

    /// As [`Store::scan`], which cannot fail on an embedded node.
    pub fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> ScanPage {
        let shards = self.map.shards();
        let Some(shard) = usize::try_from(cursor).ok().and_then(|i| shards.get(i)) else {
            return ScanPage::default();
        };
        let (keys, examined) = {
            let table = shard.read();
            // SAFETY: as in `sample_victim`: the read lock is held while the
            // buckets are read.
            // Two passes: the first picks the keys that move and
            // prefetches each one's allocation (which the clone's reference
            // count increment must fetch), the second clones them, so the
            // misses overlap instead of stalling one clone at a time.
            let picked: Vec<(u64, &Key)> = unsafe {
                table
                    .iter()
                    .map(|b| b.as_ref())
                    .filter(|(_, e)| filter(e.get().hash))
                    .map(|(k, e)| {
                        k.prefetch();
                        (e.get().hash, k)
                    })
                    .collect()
            };
            let keys = picked.into_iter().map(|(h, k)| (h, k.clone())).collect();
            (keys, table.len())
        };
        let next = cursor + 1;
        ScanPage {
            keys,
            examined,
            next: (next < shards.len() as u64).then_some(next),
        }
    }

    /// As [`Store::export`], which cannot fail on an embedded node.
    pub fn export(&self, key: &[u8]) -> Option<MovedEntry> {
        let e = self.map.get(key)?;
        e.moved(Instant::now)
    }

    /// The map hash of `key` and the index of its shard, as `DashMap`'s
    /// own methods compute them.
    #[inline]
    fn locate(&self, key: &[u8]) -> (u64, usize) {
        // What `DashMap` computes for every key of this map (one hasher
        // from the map's builder, `Hash` of the bytes, `finish`; `Key`
        // hashes as `[u8]`), inlined where `DashMap::hash_usize` is not.
        // ahash's inherent `hash_one` is used for being 3 instructions
        // shorter than `BuildHasher::hash_one` here; on nightly it
        // specializes `[u8]`, `Vec<u8>`, `str` and `String` (hashing them
        // another way), but not `&[u8]`, which `key` must stay. The test
        // `the_map_hash_is_the_one_dashmap_computes` checks the two agree
        // (and runs under Miri, on nightly).
        let hash = self.map.hasher().hash_one(key);
        (hash, self.map.determine_shard(hash as usize))
    }

    /// As [`Store::export_many`]: the keys of one relocation batch come
    /// from one scan page, that is one shard, so each run of keys in the
    /// same shard (at most 64) takes its read lock once.
    pub fn export_many(&self, keys: &[Key]) -> Vec<Option<MovedEntry>> {
        let mut out = Vec::with_capacity(keys.len());
        let now = Instant::now();
        for_each_shard_run(self, keys, |shard, run| {
            let table = self.map.shards()[shard].read();
            // Found first, with each value's allocation prefetched, then
            // copied out (cloning a value fetches its reference count), so
            // the run's misses overlap.
            // SAFETY: the buckets are read under the shard's read lock and
            // not kept past it.
            let found: Vec<Option<&Entry>> = run
                .iter()
                .map(|(key, hash)| {
                    let e = table
                        .find(*hash, |(k, _)| **k == ***key)
                        .map(|b| unsafe { b.as_ref() }.1.get());
                    if let Some(e) = e {
                        prefetch_arc(&e.value);
                    }
                    e
                })
                .collect();
            out.extend(found.into_iter().map(|e| e.and_then(|e| e.moved(|| now))));
        });
        out
    }

    /// As [`Store::remove_many`], one write lock per run of keys in the
    /// same shard (see [`MemStore::export_many`]). The removed entries are
    /// dropped after the lock is released.
    pub fn remove_many(&self, keys: &[Key]) {
        let mut removed = Vec::with_capacity(keys.len());
        for_each_shard_run(self, keys, |shard, run| {
            let mut table = self.map.shards()[shard].write();
            for (key, hash) in run {
                if let Some((k, e)) = table.remove_entry(*hash, |(k, _)| **k == ***key) {
                    removed.push((k, e.into_inner()));
                }
            }
        });
        let freed: usize = removed
            .iter()
            .map(|(k, e)| charge(k.len(), e.value.len()))
            .sum();
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// As [`Store::import`].
    pub fn import(&self, key: &Key, entry: MovedEntry) -> Result<Imported, StoreError> {
        self.check_size(key.len(), entry.value.len())?;
        let present = |evicted| {
            Ok(Imported {
                outcome: ImportOutcome::Present,
                evicted,
            })
        };
        let cost = charge(key.len(), entry.value.len());
        // With room to spare (the usual case) the conditional insert below
        // is the only look at the map. Near the cap, a live value here is
        // checked for first, so nothing is evicted for a copy that would
        // not be stored.
        let room = self.bytes.load(Ordering::Relaxed) + cost <= self.max_bytes;
        if !room
            && self
                .map
                .get(&**key)
                .is_some_and(|e| !e.is_expired(Instant::now))
        {
            return present(0);
        }
        // Make room before inserting, so the moved entry competes by its
        // age: a stamp older than every sampled entry makes it the victim.
        let mut evicted = 0;
        while self.bytes.load(Ordering::Relaxed) + cost > self.max_bytes {
            let Some((stamp, victim)) = self.sample_victim(entry.hash, key) else {
                break;
            };
            if entry.last_access < stamp {
                self.evictions.add(1);
                return Ok(Imported {
                    outcome: ImportOutcome::Evicted,
                    evicted: evicted + 1,
                });
            }
            evicted += u64::from(self.evict(&victim, stamp));
        }
        // A stamp from the future (another process's clock) is clamped.
        let stamp = entry.last_access.min(ACCESS_CLOCK.load(Ordering::Relaxed));
        let (outcome, more) = self.insert(
            entry.hash,
            key.clone(),
            key,
            entry.value,
            entry.expires_at,
            stamp,
            true,
        );
        evicted += more;
        match outcome {
            Some(_) => Ok(Imported {
                outcome: ImportOutcome::Stored,
                evicted,
            }),
            None => present(evicted),
        }
    }

    /// As [`Store::remove`], which cannot fail on an embedded node.
    pub fn remove(&self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some((k, e)) => {
                self.bytes
                    .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// As [`Store::sweep_expired`].
    pub fn sweep_expired(&self, now: Instant) -> usize {
        let mut swept = 0;
        for shard in self.map.shards() {
            let expired: Vec<Key> = {
                let table = shard.read();
                // SAFETY: as in `sample_victim`: the read lock is held while the
                // buckets are read.
                unsafe {
                    table
                        .iter()
                        .map(|b| b.as_ref())
                        .filter(|(_, e)| e.get().is_expired(|| now))
                        .take(SWEEP_BATCH)
                        .map(|(k, _)| k.clone())
                        .collect()
                }
            };
            swept += expired
                .iter()
                .filter(|key| self.remove_expired(key, now))
                .count();
        }
        swept
    }

    /// As [`Store::stats`].
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            keys: self.map.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            hits: self.hits.get(),
            misses: self.misses.get(),
            evictions: self.evictions.get(),
            expirations: self.expirations.get(),
            errors: 0,
        }
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, StoreError> {
        Ok(MemStore::get(self, key))
    }

    fn into_mem_store(self: Arc<Self>) -> Option<Arc<MemStore>> {
        Some(self)
    }

    fn set(
        &self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError> {
        MemStore::set(self, hash, key, value, expires_at)
    }

    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(MemStore::delete(self, key))
    }

    fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> Result<ScanPage, StoreError> {
        Ok(MemStore::scan(self, cursor, filter))
    }

    fn export(&self, key: &[u8]) -> Result<Option<MovedEntry>, StoreError> {
        Ok(MemStore::export(self, key))
    }

    fn export_many(&self, keys: &[Key]) -> Result<Vec<Option<MovedEntry>>, StoreError> {
        Ok(MemStore::export_many(self, keys))
    }

    fn remove_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        MemStore::remove_many(self, keys);
        Ok(())
    }

    fn import(&self, key: &Key, entry: MovedEntry) -> Result<Imported, StoreError> {
        MemStore::import(self, key, entry)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(MemStore::remove(self, key))
    }

    fn sweep_expired(&self, now: Instant) -> usize {
        MemStore::sweep_expired(self, now)
    }

    fn stats(&self) -> NodeStats {
        MemStore::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Relocation's locality rests on this: a key has the same map hash,
    /// so the same shard, on every node of the process (one hasher seed),
    /// and nodes made at different times still agree.
    #[test]
    fn every_node_hashes_a_key_to_the_same_shard() {
        let a = MemStore::new(1 << 20);
        let b = MemStore::new(1 << 20);
        let c = std::thread::spawn(|| MemStore::new(1 << 20))
            .join()
            .unwrap();
        let shards: std::collections::HashSet<usize> = (0..1000u32)
            .map(|i| {
                let k = format!("key:{i:016x}");
                let at = a.locate(k.as_bytes());
                assert_eq!(at, b.locate(k.as_bytes()));
                assert_eq!(at, c.locate(k.as_bytes()));
                at.1
            })
            .collect();
        // Still spread over the shards, not one hash for all.
        assert_eq!(shards.len(), SHARDS);
    }

    /// The raw-table paths hash a key with `locate`, `DashMap`'s own
    /// methods with its hasher: the two must agree on every key form, or a
    /// key set one way would not be found the other.
    #[test]
    fn the_map_hash_is_the_one_dashmap_computes() {
        let node = MemStore::new(1 << 20);
        let keys: [&[u8]; 5] = [b"", b"abc", b"user:00000042", &[7u8; 15], &[9u8; 40]];
        for key in keys {
            let (hash, _) = node.locate(key);
            assert_eq!(hash as usize, node.map.hash_usize(&key), "{key:?}");
            // Set through the raw table, then read and removed through
            // `DashMap`'s own hashing.
            node.set(0, key, Value::from(vec![1u8]), None).unwrap();
            assert!(node.map.contains_key(key), "{key:?}");
            assert_eq!(node.get(key).as_deref(), Some(&[1u8][..]));
            assert!(node.delete(key), "{key:?}");
            assert_eq!(node.get(key), None);
        }
    }

    /// Every path of the store that touches hashbrown's raw table (inserts
    /// by stored hash, growth, scans, batch export, import, batch removal,
    /// the TTL sweep, eviction sampling) on a few dozen keys of every form
    /// (empty, inline, just past inline, long): small enough for Miri,
    /// which is how the unsafe code here is checked (tests/README.md).
    #[test]
    fn raw_table_paths_on_keys_of_every_form() {
        let node = MemStore::new(64 << 10);
        let keys: Vec<Vec<u8>> = (0..48u8)
            .map(|i| vec![b'k' ^ i; usize::from(i % 4) * 8 + usize::from(i / 4) % 3])
            .collect();
        let soon = Instant::now() + Duration::from_millis(1);
        for (i, k) in keys.iter().enumerate() {
            let expires = (i % 5 == 0).then_some(soon);
            node.set(i as u64, k, Value::from(&k[..]), expires).unwrap();
        }
        for k in &keys {
            let got = node.get(k);
            assert!(got.is_none() || got.as_deref() == Some(&k[..]));
        }
        let mut cursor = 0;
        let mut scanned = Vec::new();
        loop {
            let page = node.scan(cursor, &|h| h % 2 == 0);
            scanned.extend(page.keys.into_iter().map(|(_, k)| k));
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let exported = node.export_many(&scanned);
        let other = MemStore::new(64 << 10);
        for (k, e) in scanned.iter().zip(exported) {
            if let Some(e) = e {
                other.import(k, e).unwrap();
                assert_eq!(other.get(k).as_deref(), Some(&k[..]));
            }
        }
        node.remove_many(&scanned);
        for k in &scanned {
            assert!(node.get(k).is_none());
        }
        std::thread::sleep(Duration::from_millis(2));
        node.sweep_expired(Instant::now());
        // Past the cap: eviction samples the raw table.
        for i in 0..200u32 {
            let k = format!("filler-{i}");
            node.set(
                u64::from(i),
                k.as_bytes(),
                Value::from(vec![0u8; 512]),
                None,
            )
            .unwrap();
        }
        let stats = node.stats();
        assert!(stats.bytes <= 64 << 10 && stats.evictions > 0, "{stats:?}");
        assert!(stats.expirations > 0, "the sweep found the expired keys");
    }
}
