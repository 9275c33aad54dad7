//! One cache node's store: entries, TTL, a memory cap with eviction, stats.
//!
//! This module owns what a node holds and nothing about where keys belong:
//! it never looks at the ring. The cluster talks to a node only through the
//! [`Store`] trait (get, set, delete, the relocation primitives, stats), so a
//! remote store (a Redis or memcached server) can later sit beside the
//! embedded [`MemStore`], which is the only implementation today.
//!
//! # The embedded store
//!
//! A [`MemStore`] is a `DashMap` from key bytes to an entry holding the value
//! bytes, an optional absolute expiry and an access stamp for eviction.
//! Keys and values are `Arc<[u8]>`, so a read clones a pointer, not the value,
//! while it holds the shard's read lock.
//!
//! ## Memory cap and eviction
//!
//! Every entry is charged `key.len() + value.len() + ENTRY_OVERHEAD` bytes
//! ([`ENTRY_OVERHEAD`] says where its value comes from). When a write takes
//! the node over its cap, the writer evicts entries until it is back under:
//! approximate LRU by sampling, as Redis does (`maxmemory-policy allkeys-lru`
//! with `maxmemory-samples 5`): it samples [`EVICTION_SAMPLES`] entries from a
//! random shard and evicts the one accessed longest ago. The access stamp is
//! the node's write counter at the last access, a logical clock that costs a
//! read of one shared counter per get. A single entry larger than the whole
//! cap is refused ([`StoreError::TooLarge`]) instead of emptying the node.
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

/// Key bytes, shared so scans and evictions can hold a key without copying.
pub type Key = Arc<[u8]>;
/// Value bytes, shared so a read clones a pointer under the shard lock.
pub type Value = Arc<[u8]>;

/// Bytes charged per entry on top of its key and value.
///
/// Where 112 comes from, on a 64-bit target: the map slot holds the key's
/// `Arc<[u8]>` fat pointer (16) and the entry (value fat pointer 16, key
/// hash 8, `Option<Instant>` 16, access stamp 8: 48); each of the two `Arc`
/// allocations carries two reference counts (16 each) plus allocator
/// rounding (about 8 each); hashbrown adds one control byte per slot and
/// keeps slots at most 7/8 full. 16 + 48 + 32 + 16 + ~2 rounds up to 112.
pub const ENTRY_OVERHEAD: usize = 112;

/// How many entries one eviction samples: Redis's default
/// `maxmemory-samples`, which its docs show approximates true LRU closely.
pub const EVICTION_SAMPLES: usize = 5;

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

/// Why a store refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
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

/// An entry as relocation carries it between nodes: the value and its
/// absolute expiry, so a moved key keeps its remaining TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedEntry {
    /// The value bytes.
    pub value: Value,
    /// When the entry expires, if ever.
    pub expires_at: Option<Instant>,
    /// The key's placement hash, as the source store recorded it.
    pub hash: u64,
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
    fn get(&self, key: &[u8]) -> Option<Value>;

    /// Stores `value` under `key`, expiring at `expires_at` if given;
    /// evicts other entries if the node goes over its cap. `hash` is the
    /// key's placement hash ([`crate::hash::Placement::key_hash`] of the
    /// ring placing it), which the caller computed to route the write; the
    /// store keeps it for [`Store::scan`] and never hashes keys itself.
    fn set(
        &self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError>;

    /// Removes `key`; true if it had a live value.
    fn delete(&self, key: &[u8]) -> bool;

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
    fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> ScanPage;

    /// The live entry under `key`, for relocation (no stats).
    fn export(&self, key: &[u8]) -> Option<MovedEntry>;

    /// Stores `entry` under `key` only if the key has no live value here;
    /// true if it was stored. Relocation uses this so a moved (older) copy
    /// never overwrites a newer write.
    ///
    /// The key is passed as the shared [`Key`] the source store's
    /// [`Store::scan`] returned, so an embedded store can keep it without
    /// copying the bytes.
    fn import(&self, key: &Key, entry: MovedEntry) -> Result<bool, StoreError>;

    /// Removes `key` whatever its state; true if an entry was there.
    fn remove(&self, key: &[u8]) -> bool;

    /// Reclaims entries whose expiry is at or before `now`; returns how many.
    fn sweep_expired(&self, now: Instant) -> usize;

    /// The node's counters.
    fn stats(&self) -> NodeStats;
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
    expires_at: Option<Instant>,
    /// The node's write clock at the last access; eviction samples it.
    last_access: AtomicU64,
}

impl Entry {
    #[inline]
    fn is_expired(&self, now: impl FnOnce() -> Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now())
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
    /// Logical clock: +1 per write; entries record it on access.
    clock: AtomicU64,
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
            map: DashMap::with_hasher_and_shard_amount(ahash::RandomState::new(), SHARDS),
            max_bytes,
            bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
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

    /// Inserts, accounting bytes; `only_if_absent` keeps a live entry.
    /// Returns the outcome, or `None` when a live entry was kept.
    fn insert(
        &self,
        hash: u64,
        key: Key,
        value: Value,
        expires_at: Option<Instant>,
        only_if_absent: bool,
    ) -> Result<Option<SetOutcome>, StoreError> {
        let cost = charge(key.len(), value.len());
        if cost > self.max_bytes {
            return Err(StoreError::TooLarge {
                entry_bytes: cost,
                max_bytes: self.max_bytes,
            });
        }
        // Relaxed: a logical clock for eviction order, nothing more.
        let stamp = self.clock.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            value,
            hash,
            expires_at,
            last_access: AtomicU64::new(stamp),
        };
        // Charge before the entry becomes visible and uncharge only after an
        // entry is gone, so `bytes` never drops below what is stored (a
        // delete racing this insert cannot make it wrap).
        // Relaxed: byte accounting is a gauge; eviction re-reads it.
        let total = self.bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        let outcome = match self.map.entry(key) {
            dashmap::Entry::Occupied(mut occ) => {
                let live = !occ.get().is_expired(Instant::now);
                if live && only_if_absent {
                    drop(occ);
                    self.bytes.fetch_sub(cost, Ordering::Relaxed);
                    return Ok(None);
                }
                let old_cost = charge(occ.key().len(), occ.get().value.len());
                occ.insert(entry);
                drop(occ);
                self.bytes.fetch_sub(old_cost, Ordering::Relaxed);
                if live {
                    SetOutcome::Replaced
                } else {
                    self.expirations.add(1);
                    SetOutcome::Created
                }
            }
            dashmap::Entry::Vacant(vac) => {
                vac.insert(entry);
                SetOutcome::Created
            }
        };
        if total > self.max_bytes {
            self.evict_until_under_cap();
        }
        Ok(Some(outcome))
    }

    /// Evicts sampled least-recently-used entries until under the cap.
    fn evict_until_under_cap(&self) {
        // Bounded: each round evicts one entry or finds the map empty.
        while self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            if !self.evict_one() {
                return;
            }
        }
    }

    /// Samples entries of a random non-empty shard and evicts the one with
    /// the oldest access stamp. False if the map is empty.
    fn evict_one(&self) -> bool {
        let shards = self.map.shards();
        let start = random();
        for probe in 0..shards.len() {
            let shard = &shards[(start + probe) % shards.len()];
            let victim = {
                let table = shard.read();
                let len = table.len();
                if len == 0 {
                    continue;
                }
                let skip = random() % len.min(64);
                // SAFETY: the shard's read lock is held for the whole
                // iteration, so no bucket is freed or moved while we read
                // it; `as_ref` is valid for buckets yielded by `iter` on a
                // table that is not mutated meanwhile.
                unsafe {
                    table
                        .iter()
                        .skip(skip)
                        .chain(table.iter())
                        .take(EVICTION_SAMPLES.min(len))
                        .map(|bucket| {
                            let (key, shared) = bucket.as_ref();
                            let stamp = shared.get().last_access.load(Ordering::Relaxed);
                            (stamp, key.clone())
                        })
                        .min_by_key(|(stamp, _)| *stamp)
                }
            };
            // The read guard is released here: remove takes the write lock.
            if let Some((stamp, key)) = victim {
                let removed = self
                    .map
                    .remove_if(&key, |_, e| e.last_access.load(Ordering::Relaxed) == stamp);
                if let Some((k, e)) = removed {
                    self.bytes
                        .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                    self.evictions.add(1);
                }
                // Raced with an access or a removal: the caller loops.
                return true;
            }
        }
        false
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

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Option<Value> {
        let found = self.map.get(key).map(|e| {
            if e.is_expired(Instant::now) {
                return None;
            }
            // Relaxed: eviction hints; skip the store when already current
            // so hot keys do not keep dirtying their cache line.
            let now = self.clock.load(Ordering::Relaxed);
            if e.last_access.load(Ordering::Relaxed) != now {
                e.last_access.store(now, Ordering::Relaxed);
            }
            Some(e.value.clone())
        });
        // The map reference is dropped before any removal below.
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

    fn set(
        &self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError> {
        self.insert(hash, Key::from(key), value, expires_at, false)
            .map(|o| o.expect("an unconditional insert always stores"))
    }

    fn delete(&self, key: &[u8]) -> bool {
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

    fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> ScanPage {
        let shards = self.map.shards();
        let Some(shard) = usize::try_from(cursor).ok().and_then(|i| shards.get(i)) else {
            return ScanPage::default();
        };
        let (keys, examined) = {
            let table = shard.read();
            // SAFETY: as in `evict_one`: the read lock is held while the
            // buckets are read.
            let keys = unsafe {
                table
                    .iter()
                    .map(|b| b.as_ref())
                    .filter(|(_, e)| filter(e.get().hash))
                    .map(|(k, e)| (e.get().hash, k.clone()))
                    .collect()
            };
            (keys, table.len())
        };
        let next = cursor + 1;
        ScanPage {
            keys,
            examined,
            next: (next < shards.len() as u64).then_some(next),
        }
    }

    fn export(&self, key: &[u8]) -> Option<MovedEntry> {
        let e = self.map.get(key)?;
        if e.is_expired(Instant::now) {
            return None;
        }
        Some(MovedEntry {
            value: e.value.clone(),
            expires_at: e.expires_at,
            hash: e.hash,
        })
    }

    fn import(&self, key: &Key, entry: MovedEntry) -> Result<bool, StoreError> {
        self.insert(entry.hash, key.clone(), entry.value, entry.expires_at, true)
            .map(|o| o.is_some())
    }

    fn remove(&self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some((k, e)) => {
                self.bytes
                    .fetch_sub(charge(k.len(), e.value.len()), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn sweep_expired(&self, now: Instant) -> usize {
        let mut swept = 0;
        for shard in self.map.shards() {
            let expired: Vec<Key> = {
                let table = shard.read();
                // SAFETY: as in `evict_one`: the read lock is held while the
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

    fn stats(&self) -> NodeStats {
        NodeStats {
            keys: self.map.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            hits: self.hits.get(),
            misses: self.misses.get(),
            evictions: self.evictions.get(),
            expirations: self.expirations.get(),
        }
    }
}
