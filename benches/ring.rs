//! Ring benchmarks: ringcache's lock-free ring side by side with the
//! `hashring` crate (a sorted `Vec` searched by bisection, SipHash), jump
//! consistent hash (no vnodes, no table: the arithmetic lower reference)
//! and, for ketama placement, the `conhash` crate (an MD5 ring).
//!
//! What each group measures, and the target (docs/performance.md) it checks:
//!
//! * `lookup`: single-thread time per lookup of a short string key, at
//!   10/100/1000 nodes x 100/160/1000 vnodes. Target: ringcache at least 4x
//!   faster than `hashring` at 100 x 160 (about 15 ns, epoch pin included).
//! * `lookup_cold`: the same on 2^20 distinct keys (`user:` + 16 hex
//!   digits) looked up in order, at 100 x 160 and 1000 x 160, so every
//!   lookup's ring lines are cold: ringcache's `Ring::lookup` (epoch pin
//!   included), a snapshot pinned per 4096 keys and `Ring::lookup_many`,
//!   beside a plain sorted `Vec<(u64, u32)>` + xxh3 + `partition_point`,
//!   `hashring`, jump hash and `conhash`, and the xxh3 hash alone and with
//!   an epoch pin (the floor). Target: 100 x 160 at most 12 ns and at least
//!   4x `hashring`; 1000 x 160 at most 15 ns.
//! * `placement`: the same, for ringcache's xxh3 (default) and ketama
//!   placements and the `conhash` crate (MD5 points in a `BTreeMap`), at
//!   100 equal nodes (ketama: 156 points each) and on libmemcached's 8
//!   weighted servers, every ring with ketama's point counts. No
//!   target; it shows what libmemcached compatibility costs a lookup.
//! * `key_hash`: the key hash alone, xxh3 vs ketama's MD5, so the reader
//!   sees how much of ketama's lookup time is its hash.
//! * `batch`: lookups through one pinned snapshot, reported per key
//!   (target: faster still than single lookups).
//! * `mutation`: the cost of one membership edit on a 100 x 160 ring.
//! * `contention`: one reader's lookups/s with and without one writer
//!   changing membership non-stop, and with one paced at a change every
//!   millisecond (target: ringcache keeps >= 90% with the paced writer, as
//!   much as it can with the non-stop one), for ringcache and for
//!   `parking_lot::RwLock<hashring::HashRing>`; plus a writer churning a
//!   separate ring, to show where a loss comes from.
//! * `contention_interleaved`: the paced-writer target measured within one
//!   run: the writer alternates every 20 ms between absent, paced and
//!   sleeping in between, and paced and spinning in between; the lines
//!   after it give the reader's ns per lookup in each phase and the share
//!   each writer phase keeps (separate benchmarks minutes apart differ by
//!   more than that share on a shared machine).
//! * `scaling`: total lookups/s of 1 and 2 reader threads, no writer.
//!
//! Run with `cargo bench --bench ring`; a whole run takes about 3 minutes
//! (plus the build) on a 2-core machine. Results and the machine they came
//! from are in `docs/bench-ring.md`.
//!
//! Ring builds, key generation and thread spawns are kept outside every
//! measured region. Keys are pre-generated and cycled through in a fixed
//! order, so every implementation hashes the same bytes.
//!
//! Besides criterion's figures the run prints, on Linux, how much of each
//! benchmark its thread spent waiting for a CPU (other processes running:
//! the figure is disturbed), and for the thread benchmarks a split of the
//! reader's time into on-CPU, waiting for a CPU and blocked.

use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use conhash::ConsistentHash;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use hashring::HashRing;
use jumphash::JumpHasher;
use parking_lot::RwLock;
use ringcache::hash::{ketama_key_hash, key_hash, Placement};
use ringcache::ring::reference::ReferenceRing;
use ringcache::{NodeId, Ring};

mod support;
use support::{bench_noted, Tally, ThreadClock};

/// How many distinct keys a benchmark cycles through: 4096, enough that the
/// branch predictor cannot learn the answers, few enough (about 150 KiB of
/// `String`s) that the keys themselves stay cached. At 100 x 160 the ring
/// lines these keys touch also stay in L2: single-thread figures are
/// warm-cache figures.
const KEY_COUNT: usize = 4096;

/// `KEY_COUNT - 1`, to wrap a cycling index with one AND.
const KEY_MASK: usize = KEY_COUNT - 1;

/// Node counts of the `lookup` grid.
const NODE_COUNTS: [u32; 3] = [10, 100, 1000];

/// Vnode counts of the `lookup` grid: 100, 160 (ketama's and nginx's
/// points per server, and our CLI default) and 1000.
const VNODE_COUNTS: [u32; 3] = [100, 160, 1000];

/// The ring size of the batch, mutation and contention groups: the
/// reference configuration, 100 nodes x 160 vnodes (16 000 points).
const REF_NODES: u32 = 100;
/// See [`REF_NODES`].
const REF_VNODES: u32 = 160;

/// Lookups per pin in the `batch` group; 4096 = one pass over the keys.
const BATCH_LARGE: usize = KEY_COUNT;
/// A small batch, to show how quickly one pin amortizes.
const BATCH_SMALL: usize = 16;

/// The `hashring` ring the benchmarks compare against: one entry per vnode,
/// `(node, vnode index)`, hashed by the crate's default hasher (SipHash).
type RefRing = HashRing<(u32, u32)>;

/// Pre-generates `KEY_COUNT` keys shaped like `user:12345`, pseudo-random
/// but the same on every run (a fixed LCG), so runs are comparable.
fn make_keys() -> Vec<String> {
    let mut state: u64 = 0x853c_49e6_748f_ea9b;
    (0..KEY_COUNT)
        .map(|_| {
            // Knuth's MMIX LCG; the high bits are the well-mixed ones.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!("user:{}", (state >> 33) % 10_000_000)
        })
        .collect()
}

/// The name of node `n` in every ringcache ring built here.
fn node_name(n: u32) -> String {
    format!("cache-{n}")
}

/// Builds a ringcache `Ring` of `nodes` nodes with `vnodes` points each
/// (setup only, never measured).
fn build_ring(nodes: u32, vnodes: u32) -> Ring {
    let ring = Ring::new();
    for n in 0..nodes {
        ring.add_node(&node_name(n), vnodes).expect("valid node");
    }
    ring
}

/// The vnode entries of node `node` for a `hashring` ring.
fn ref_vnodes(node: u32, vnodes: u32) -> Vec<(u32, u32)> {
    (0..vnodes).map(|i| (node, i)).collect()
}

/// Builds the equivalent `hashring` ring (setup only). Uses one
/// `batch_add` (one sort) instead of per-entry `add` (a full sort per
/// entry), which would make the 1000 x 1000 ring take minutes to build.
fn build_ref_ring(nodes: u32, vnodes: u32) -> RefRing {
    let mut ring = RefRing::new();
    ring.batch_add((0..nodes).flat_map(|n| ref_vnodes(n, vnodes)).collect());
    ring
}

/// Removes node `node`'s `vnodes` entries from a `hashring` ring, as a
/// membership change would.
fn ref_remove_node(ring: &mut RefRing, node: u32, vnodes: u32) {
    for i in 0..vnodes {
        ring.remove(&(node, i));
    }
}

/// Times `iters` calls of `lookup`, cycling through `keys`. The key index
/// is a local (kept in a register); `black_box` on each key and each
/// answer stops the compiler from hoisting or dropping lookups.
fn time_lookups<T>(keys: &[String], iters: u64, mut lookup: impl FnMut(&String) -> T) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    for _ in 0..iters {
        black_box(lookup(black_box(&keys[i])));
        i = (i + 1) & KEY_MASK;
    }
    start.elapsed()
}

/// Single-thread time per lookup, one key per iteration, at every grid
/// size, ringcache vs hashring side by side; jump hash once per node count
/// (it has no vnodes, so its cost does not depend on them). Why: the
/// 100 x 160 ringcache/hashring ratio is the 4x target, and the
/// grid shows how each scales as the ring outgrows the caches.
fn bench_lookup(c: &mut Criterion) {
    let keys = make_keys();
    let jump = JumpHasher::new_with_keys(0, 0);
    let mut group = c.benchmark_group("lookup");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &nodes in &NODE_COUNTS {
        for &vnodes in &VNODE_COUNTS {
            let size = format!("{nodes}x{vnodes}");
            // The 1000 x 1000 rings (1M points) take a few seconds to
            // build and are cache-miss bound; fewer samples suffice.
            group.sample_size(if nodes * vnodes >= 1_000_000 { 30 } else { 60 });

            // Rings are built on a benchmark's first call (criterion calls
            // the closure once per sample), so a filtered run builds only
            // the rings it measures, and dropped when the next size starts.
            let ring = OnceCell::new();
            bench_noted(&mut group, BenchmarkId::new("ringcache", &size), |b| {
                let ring = ring.get_or_init(|| build_ring(nodes, vnodes));
                b.iter_custom(|iters| time_lookups(&keys, iters, |key| ring.lookup(key.as_bytes())))
            });
            drop(ring);

            let reference = OnceCell::new();
            bench_noted(&mut group, BenchmarkId::new("hashring", &size), |b| {
                let reference = reference.get_or_init(|| build_ref_ring(nodes, vnodes));
                b.iter_custom(|iters| time_lookups(&keys, iters, |key| reference.get(key).copied()))
            });
            drop(reference);

            if vnodes == 160 {
                bench_noted(&mut group, BenchmarkId::new("jumphash", nodes), |b| {
                    b.iter_custom(|iters| time_lookups(&keys, iters, |key| jump.slot(key, nodes)))
                });
            }
        }
    }
    group.finish();
}

/// How many distinct keys the `lookup_cold` group runs through: 2^20
/// (1 048 576, "one million"), a power of two so a cycling index wraps with
/// one AND. Too many for any cache: the keys stream from memory in order
/// and the ring lines they touch are spread over the whole table.
const COLD_KEY_COUNT: usize = 1 << 20;

/// `COLD_KEY_COUNT - 1`.
const COLD_KEY_MASK: usize = COLD_KEY_COUNT - 1;

/// Bytes of one cold key: `user:` and 16 hex digits.
const COLD_KEY_LEN: usize = 21;

/// Ring sizes of the `lookup_cold` group: the reference 100 x 160 and
/// 1000 x 160 (160 000 points, tables beyond L2).
const COLD_SIZES: [(u32, u32); 2] = [(REF_NODES, REF_VNODES), (1000, REF_VNODES)];

/// Keys per call of the batch API (`Ring::lookup_many`) in `lookup_cold`;
/// divides [`COLD_KEY_COUNT`].
const COLD_BATCH: usize = 64;

/// Pre-generates the cold keys, `user:` + 16 lower-case hex digits of a
/// fixed LCG (the same on every run), stored inline (no pointer to chase:
/// a key costs the lookup only its own bytes, read in order).
fn make_cold_keys() -> Vec<[u8; COLD_KEY_LEN]> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..COLD_KEY_COUNT)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let text = format!("user:{state:016x}");
            <[u8; COLD_KEY_LEN]>::try_from(text.as_bytes()).expect("21-byte key")
        })
        .collect()
}

/// [`time_lookups`] over the cold keys: `iters` calls of `lookup`, in key
/// order, starting from key 0.
fn time_cold<T>(
    keys: &[[u8; COLD_KEY_LEN]],
    iters: u64,
    mut lookup: impl FnMut(&[u8]) -> T,
) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    for _ in 0..iters {
        black_box(lookup(black_box(&keys[i][..])));
        i = (i + 1) & COLD_KEY_MASK;
    }
    start.elapsed()
}

/// An array of as many `u32`s as `ring`'s bucket index (a power of two),
/// filled with arbitrary values: the table of the `xxh3_one_line` floor.
fn one_line_array(ring: &Ring) -> Vec<u32> {
    let len = ring.pin().bucket_count();
    assert!(
        len.is_power_of_two() && len >= 2,
        "bucket counts are powers of two"
    );
    (0..len)
        .map(|i| {
            u32::try_from(i)
                .expect("fewer than 2^32 buckets")
                .wrapping_mul(0x9e37_79b9)
        })
        .collect()
}

/// The plain baseline of `lookup_cold`: ringcache's xxh3 points and owners
/// in one sorted `Vec<(u64, u32)>`, searched by `partition_point`.
struct SortedVec(Vec<(u64, u32)>);

impl SortedVec {
    /// The same points and owners as `ring`'s current table.
    fn of(ring: &Ring) -> SortedVec {
        SortedVec(ring.pin().points().map(|(p, id)| (p, id.0)).collect())
    }

    /// The owner of the first point `>= key_hash(key)`, wrapping.
    #[inline]
    fn lookup(&self, key: &[u8]) -> Option<u32> {
        let h = key_hash(key);
        let i = self.0.partition_point(|&(p, _)| p < h);
        self.0.get(i).or(self.0.first()).map(|&(_, id)| id)
    }
}

/// Single-thread time per lookup over [`COLD_KEY_COUNT`] distinct keys
/// looked up in order, at [`COLD_SIZES`], with in the same run: a plain
/// sorted `Vec` + xxh3 + `partition_point`, `hashring`, jump hash,
/// `conhash` (MD5 points; the same point count per node) and ringcache's
/// `Ring::lookup` (epoch pin included), a snapshot pinned once per 4096
/// keys, and (when built) the batch API. Why: with a working set as large
/// as real traffic, every lookup's ring lines are cold; the 4,096-key
/// `lookup` group keeps them in L1/L2. Target: 100 x 160 at most 12 ns and
/// at least 4x `hashring`, 1000 x 160 at most 15 ns.
fn bench_lookup_cold(c: &mut Criterion) {
    let keys = OnceCell::new();
    let jump = JumpHasher::new_with_keys(0, 0);
    let mut group = c.benchmark_group("lookup_cold");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for (nodes, vnodes) in COLD_SIZES {
        let size = format!("{nodes}x{vnodes}");
        // Built on first use, so a filtered run builds only what it needs.
        let ring = OnceCell::new();
        let ring = || ring.get_or_init(|| build_ring(nodes, vnodes));
        let keys = || keys.get_or_init(make_cold_keys);

        bench_noted(&mut group, BenchmarkId::new("ringcache", &size), |b| {
            let (ring, keys) = (ring(), keys());
            b.iter_custom(|iters| time_cold(keys, iters, |key| ring.lookup(key)))
        });
        bench_noted(
            &mut group,
            BenchmarkId::new("ringcache_pinned_4096", &size),
            |b| {
                let (ring, keys) = (ring(), keys());
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let mut left = iters;
                    let mut i = 0;
                    while left > 0 {
                        let n = left.min(4096);
                        let snap = ring.pin();
                        for _ in 0..n {
                            black_box(snap.lookup(black_box(&keys[i][..])));
                            i = (i + 1) & COLD_KEY_MASK;
                        }
                        left -= n;
                    }
                    start.elapsed()
                })
            },
        );
        bench_noted(
            &mut group,
            BenchmarkId::new(format!("ringcache_many_{COLD_BATCH}"), &size),
            |b| {
                let (ring, keys) = (ring(), keys());
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let mut out = Vec::with_capacity(COLD_BATCH);
                    let mut left = usize::try_from(iters).expect("iterations fit usize");
                    let mut i = 0;
                    while left > 0 {
                        // Batches never wrap: COLD_BATCH divides the key count.
                        let n = left.min(COLD_BATCH);
                        out.clear();
                        ring.lookup_many(black_box(&keys[i..i + n]), &mut out);
                        black_box(&out);
                        i = (i + n) & COLD_KEY_MASK;
                        left -= n;
                    }
                    start.elapsed()
                })
            },
        );
        // The floor: the key hash alone, and with the epoch pin a
        // `Ring::lookup` takes (no table read).
        bench_noted(&mut group, BenchmarkId::new("xxh3_only", &size), |b| {
            let keys = keys();
            b.iter_custom(|iters| time_cold(keys, iters, key_hash))
        });
        // The floor of any one-line design: the key hash and one read of a
        // direct-mapped `u32` array as large as the ring's bucket index, at
        // the index the hash's top bits pick (the ring's entry, minus
        // deciding the owner).
        let line = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("xxh3_one_line", &size), |b| {
            let (array, keys) = (line.get_or_init(|| one_line_array(ring())), keys());
            let shift = u64::BITS - array.len().trailing_zeros();
            b.iter_custom(|iters| {
                time_cold(keys, iters, |key| {
                    // Below 2^bits: `shift` leaves the hash's top bits.
                    array[usize::try_from(key_hash(key) >> shift).expect("fits usize")]
                })
            })
        });
        bench_noted(&mut group, BenchmarkId::new("xxh3_and_pin", &size), |b| {
            let keys = keys();
            b.iter_custom(|iters| {
                time_cold(keys, iters, |key| {
                    let _guard = crossbeam_epoch::pin();
                    key_hash(key)
                })
            })
        });
        let sorted = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("sorted_vec", &size), |b| {
            let (sorted, keys) = (sorted.get_or_init(|| SortedVec::of(ring())), keys());
            b.iter_custom(|iters| time_cold(keys, iters, |key| sorted.lookup(key)))
        });
        drop(sorted);

        let reference = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("hashring", &size), |b| {
            let reference = reference.get_or_init(|| build_ref_ring(nodes, vnodes));
            let keys = keys();
            b.iter_custom(|iters| time_cold(keys, iters, |key| reference.get(&key).copied()))
        });
        drop(reference);

        bench_noted(&mut group, BenchmarkId::new("jumphash", &size), |b| {
            let keys = keys();
            b.iter_custom(|iters| time_cold(keys, iters, |key| jump.slot(&key, nodes)))
        });

        let con = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("conhash", &size), |b| {
            let con = con.get_or_init(|| {
                let members: Members = (0..nodes).map(|n| (node_name(n), 1)).collect();
                let mut ring = ConRing::new();
                for (id, (name, _)) in members.into_iter().enumerate() {
                    let id = u32::try_from(id).expect("member count fits u32");
                    ring.add(&ConNode { name, id }, vnodes as usize);
                }
                ring
            });
            let keys = keys();
            b.iter_custom(|iters| time_cold(keys, iters, |key| con.get(key).map(|n| n.id)))
        });
        drop(con);
    }
    group.finish();
}

/// libmemcached's weighted ketama test set, also in
/// `tests/ketama_vectors.rs`: 8 servers and their weights, 4300 in all. Ketama gives them 176, 88, 56,
/// 104, 296, 236, 280 and 28 points (1264 in all).
const LIBMEMCACHED_SERVERS: [(&str, u32); 8] = [
    ("10.0.1.1", 600),
    ("10.0.1.2", 300),
    ("10.0.1.3", 200),
    ("10.0.1.4", 350),
    ("10.0.1.5", 1000),
    ("10.0.1.6", 800),
    ("10.0.1.7", 950),
    ("10.0.1.8", 100),
];

/// The largest ketama weight the ketama rings here accept: above every
/// weight used (setup only; it does not affect lookups).
const KETAMA_MAX_WEIGHT: u32 = 10_000;

/// A node of a `conhash` ring. The crate asks only for a name (its points
/// are MD5 of `"{name}:{replica}"`, kept whole, 16 bytes, as `Vec<u8>` keys
/// of a `BTreeMap`); the id makes a lookup's answer a plain `u32`, as
/// ringcache's `NodeId` is.
#[derive(Clone)]
struct ConNode {
    /// The node's name, as in the ringcache rings of the same benchmark.
    name: String,
    /// The node's index in its member list.
    id: u32,
}

impl conhash::Node for ConNode {
    fn name(&self) -> String {
        self.name.clone()
    }
}

/// The `conhash` ring the `placement` group compares against.
type ConRing = ConsistentHash<ConNode>;

/// The members of a `placement` ring: names and ketama weights.
type Members = Vec<(String, u32)>;

/// `nodes` members of equal weight, named as in every ringcache ring here.
fn equal_members(nodes: u32) -> Members {
    (0..nodes).map(|n| (node_name(n), 1)).collect()
}

/// [`LIBMEMCACHED_SERVERS`] as members.
fn libmemcached_members() -> Members {
    LIBMEMCACHED_SERVERS
        .iter()
        .map(|&(name, weight)| (name.to_owned(), weight))
        .collect()
}

/// How many points ketama gives each member, in member order, as the naive
/// [`ReferenceRing`] counts them (libmemcached's formula; setup only).
/// Not always 160 at equal weights: the formula's `float` rounding gives
/// each of 100 equal servers 156 (15 600 in all), as libmemcached and
/// twemproxy do. The xxh3 and `conhash` rings of a
/// `placement` benchmark give each node this many points too, so all three
/// rings have the same size.
fn ketama_point_counts(members: &[(String, u32)]) -> Vec<u32> {
    let mut reference = ReferenceRing::with_placement(Placement::Ketama, KETAMA_MAX_WEIGHT);
    for (name, weight) in members {
        reference.add_node(name, *weight).expect("valid node");
    }
    reference.point_counts().map(|(_, points)| points).collect()
}

/// Builds a ketama-placement ringcache `Ring` of `members` (setup only),
/// and checks that each node has the point count of `counts` (from
/// [`ketama_point_counts`]).
fn build_ketama_ring(members: &[(String, u32)], counts: &[u32]) -> Ring {
    let ring = Ring::with_placement(Placement::Ketama, KETAMA_MAX_WEIGHT);
    for (name, weight) in members {
        ring.add_node(name, *weight).expect("valid node");
    }
    let points: Vec<u32> = ring.nodes().iter().map(|n| n.points).collect();
    assert_eq!(points, counts);
    ring
}

/// Builds an xxh3-placement (default) ringcache `Ring` of `members`, each
/// with as many vnodes as `counts` gives it (setup only).
fn build_xxh3_ring(members: &[(String, u32)], counts: &[u32]) -> Ring {
    let ring = Ring::new();
    for ((name, _), &vnodes) in members.iter().zip(counts) {
        ring.add_node(name, vnodes).expect("valid node");
    }
    ring
}

/// Builds a `conhash` ring of `members`, each with as many replicas as
/// `counts` gives it (setup only).
fn build_conhash(members: &[(String, u32)], counts: &[u32]) -> ConRing {
    let mut ring = ConRing::new();
    for (id, ((name, _), &replicas)) in members.iter().zip(counts).enumerate() {
        let node = ConNode {
            name: name.clone(),
            id: u32::try_from(id).expect("member count fits u32"),
        };
        ring.add(&node, replicas as usize);
    }
    ring
}

/// Single-thread time per lookup, one key per iteration, of ringcache in
/// its two placement modes and of the `conhash` crate (MD5 points in a
/// `BTreeMap`), in one group so that all three share one stretch of the
/// machine's (noisy) time, on the same keys as `lookup`. Two ring sets:
/// `100x156`, 100 nodes of equal weight (ketama gives each 156 points,
/// not 160: see [`ketama_point_counts`]; 15 600 in all, 2.5% fewer than
/// `lookup/*/100x160`), and `libmemcached_8`, the 8 weighted servers of
/// [`LIBMEMCACHED_SERVERS`] (1264 points). Each node of the xxh3 and
/// `conhash` rings gets the number of points ketama gives it, so the three
/// rings are the same size. Why: ketama placement trades xxh3 for MD5
/// (libmemcached and twemproxy compatibility); this shows what that costs
/// per lookup, and how ringcache's ketama compares with an MD5 ring from
/// crates. `key_hash` shows how much of it is the hash.
fn bench_placement(c: &mut Criterion) {
    let keys = make_keys();
    let mut group = c.benchmark_group("placement");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(60);
    // The equal-weight set is named `{nodes}x{points per node}` as in
    // `lookup`; the points per node are ketama's (156 for 100 nodes).
    let equal = equal_members(REF_NODES);
    let equal_counts = ketama_point_counts(&equal);
    let equal_size = format!("{REF_NODES}x{}", equal_counts[0]);
    let libmemcached = libmemcached_members();
    let libmemcached_counts = ketama_point_counts(&libmemcached);
    let sets = [
        (equal_size, equal, equal_counts),
        (
            "libmemcached_8".to_owned(),
            libmemcached,
            libmemcached_counts,
        ),
    ];
    for (size, members, counts) in &sets {
        // Built on a benchmark's first call, as in `lookup`.
        let xxh3 = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("ringcache_xxh3", size), |b| {
            let ring = xxh3.get_or_init(|| build_xxh3_ring(members, counts));
            b.iter_custom(|iters| time_lookups(&keys, iters, |key| ring.lookup(key.as_bytes())))
        });
        drop(xxh3);

        let ketama = OnceCell::new();
        bench_noted(
            &mut group,
            BenchmarkId::new("ringcache_ketama", size),
            |b| {
                let ring = ketama.get_or_init(|| build_ketama_ring(members, counts));
                b.iter_custom(|iters| time_lookups(&keys, iters, |key| ring.lookup(key.as_bytes())))
            },
        );
        drop(ketama);

        let con = OnceCell::new();
        bench_noted(&mut group, BenchmarkId::new("conhash", size), |b| {
            let ring = con.get_or_init(|| build_conhash(members, counts));
            b.iter_custom(|iters| {
                time_lookups(&keys, iters, |key| ring.get(key.as_bytes()).map(|n| n.id))
            })
        });
        drop(con);
    }
    group.finish();
}

/// Single-thread time to hash one key alone, no ring: xxh3-64
/// ([`key_hash`], the default placement's) and MD5 cut to 32 bits
/// ([`ketama_key_hash`], ketama's), on the same keys as `lookup`. Why: the
/// difference between `placement/ringcache_xxh3` and
/// `placement/ringcache_ketama` is mostly this difference (the ketama
/// continuum is searched by the same code), so the two groups together
/// show where ketama's time goes.
fn bench_key_hash(c: &mut Criterion) {
    let keys = make_keys();
    let mut group = c.benchmark_group("key_hash");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(60);
    bench_noted(&mut group, BenchmarkId::from_parameter("xxh3"), |b| {
        b.iter_custom(|iters| time_lookups(&keys, iters, |key| key_hash(key.as_bytes())))
    });
    bench_noted(&mut group, BenchmarkId::from_parameter("ketama_md5"), |b| {
        b.iter_custom(|iters| time_lookups(&keys, iters, |key| ketama_key_hash(key.as_bytes())))
    });
    group.finish();
}

/// Does `count` lookups against `ring`, pinning once per `batch` keys,
/// starting at key `*next` and advancing it. The batch API's hot loop.
fn pinned_lookups(ring: &Ring, keys: &[String], next: &mut usize, count: u64, batch: usize) {
    let batch = u64::try_from(batch).expect("batch fits u64");
    let mut left = count;
    // A local copy, so the index stays in a register.
    let mut i = *next;
    while left > 0 {
        let n = left.min(batch);
        let snap = ring.pin();
        for _ in 0..n {
            black_box(snap.lookup(black_box(keys[i].as_bytes())));
            i = (i + 1) & KEY_MASK;
        }
        left -= n;
    }
    *next = i;
}

/// Time per key of lookups through one pinned snapshot at 100 x 160, with
/// one pin per 4096 keys and per 16 keys, beside `Ring::lookup` (a pin per
/// key) run in this group too, so all three share one stretch of the
/// machine's (noisy) time. Why: the targets want batch lookups faster than
/// single ones; the difference is the cost of the epoch pin. Criterion's
/// "iteration" is one key here, so its time is ns per key.
fn bench_batch(c: &mut Criterion) {
    let keys = make_keys();
    let ring = build_ring(REF_NODES, REF_VNODES);
    let mut group = c.benchmark_group("batch");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(60);
    group.throughput(Throughput::Elements(1));
    let size = format!("{REF_NODES}x{REF_VNODES}");
    for (name, batch) in [("pinned_4096", BATCH_LARGE), ("pinned_16", BATCH_SMALL)] {
        bench_noted(&mut group, BenchmarkId::new(name, &size), |b| {
            let mut next = 0;
            b.iter_custom(|iters| {
                let start = Instant::now();
                pinned_lookups(&ring, &keys, &mut next, iters, batch);
                start.elapsed()
            })
        });
    }
    bench_noted(&mut group, BenchmarkId::new("ring_lookup", &size), |b| {
        b.iter_custom(|iters| time_lookups(&keys, iters, |key| ring.lookup(key.as_bytes())))
    });
    group.finish();
}

/// Times `op` alone, `iters` times, running `undo` after each one outside
/// the measured time, so the ring is back to its starting size before the
/// next `op`. The returned duration is the sum of the `op` times only.
fn timed_with_undo(iters: u64, mut op: impl FnMut(), mut undo: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        op();
        total += start.elapsed();
        undo();
    }
    total
}

/// Cost of one membership edit on a 100 x 160 ring (16 000 points): each
/// edit copies and merges the point arrays and rebuilds the index, then
/// publishes and retires the old table; freeing retired tables happens in
/// later pins of the same thread, so some of it lands in measured edits.
/// Each benchmark times one edit and undoes it *outside* the measured part
/// (`timed_with_undo`), so the ring stays at 100 x 160; `add+remove` times
/// the pair together as a check.
/// `hashring` (no locking, edits in place) is measured beside it for scale.
/// Why: edits are rare but the writer in `contention` runs them non-stop,
/// so their cost sets how much garbage a reader sees.
fn bench_mutation(c: &mut Criterion) {
    let ring = build_ring(REF_NODES, REF_VNODES);
    let extra = "cache-extra";
    let mut group = c.benchmark_group("mutation");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(40);
    let size = format!("{REF_NODES}x{REF_VNODES}");

    bench_noted(
        &mut group,
        BenchmarkId::new("ringcache/add_node", &size),
        |b| {
            b.iter_custom(|iters| {
                let id = Cell::new(None);
                timed_with_undo(
                    iters,
                    || id.set(Some(ring.add_node(extra, REF_VNODES).unwrap())),
                    || ring.remove_node(id.take().unwrap()).unwrap(),
                )
            })
        },
    );
    bench_noted(
        &mut group,
        BenchmarkId::new("ringcache/remove_node", &size),
        |b| {
            b.iter_custom(|iters| {
                let id = Cell::new(Some(ring.add_node(extra, REF_VNODES).unwrap()));
                let total = timed_with_undo(
                    iters,
                    || ring.remove_node(id.take().unwrap()).unwrap(),
                    || id.set(Some(ring.add_node(extra, REF_VNODES).unwrap())),
                );
                ring.remove_node(id.take().unwrap()).unwrap();
                total
            })
        },
    );
    bench_noted(
        &mut group,
        BenchmarkId::new("ringcache/add+remove", &size),
        |b| {
            b.iter(|| {
                let id = ring.add_node(extra, REF_VNODES).unwrap();
                ring.remove_node(id).unwrap();
            })
        },
    );
    // Node 0 of the ring re-weighted 160 -> 320 -> 160.
    let target = ring.nodes()[0].id;
    bench_noted(
        &mut group,
        BenchmarkId::new("ringcache/set_vnodes_160to320", &size),
        |b| {
            b.iter_custom(|iters| {
                timed_with_undo(
                    iters,
                    || ring.set_weight(target, 2 * REF_VNODES).unwrap(),
                    || ring.set_weight(target, REF_VNODES).unwrap(),
                )
            })
        },
    );
    bench_noted(
        &mut group,
        BenchmarkId::new("ringcache/set_vnodes_320to160", &size),
        |b| {
            b.iter_custom(|iters| {
                ring.set_weight(target, 2 * REF_VNODES).unwrap();
                let total = timed_with_undo(
                    iters,
                    || ring.set_weight(target, REF_VNODES).unwrap(),
                    || ring.set_weight(target, 2 * REF_VNODES).unwrap(),
                );
                ring.set_weight(target, REF_VNODES).unwrap();
                total
            })
        },
    );
    drop(ring);

    // hashring: add = one batch_add of 160 entries (one sort), remove =
    // 160 `Vec::remove`s. Each `iter_batched` input is a fresh clone made
    // outside the measured part.
    let base = build_ref_ring(REF_NODES, REF_VNODES);
    let mut with_extra = base.clone();
    with_extra.batch_add(ref_vnodes(REF_NODES, REF_VNODES));
    bench_noted(
        &mut group,
        BenchmarkId::new("hashring/add_node", &size),
        |b| {
            b.iter_batched_ref(
                || base.clone(),
                |r| r.batch_add(ref_vnodes(REF_NODES, REF_VNODES)),
                BatchSize::SmallInput,
            )
        },
    );
    bench_noted(
        &mut group,
        BenchmarkId::new("hashring/remove_node", &size),
        |b| {
            b.iter_batched_ref(
                || with_extra.clone(),
                |r| ref_remove_node(r, REF_NODES, REF_VNODES),
                BatchSize::SmallInput,
            )
        },
    );
    group.finish();
}

/// One of the two lookup implementations the thread benchmarks compare,
/// shared between reader and writer threads.
trait Shared: Sync {
    /// Looks `key` up; what a reader does in its loop.
    fn read(&self, key: &str) -> u32;
    /// One membership change, alternating: add a 160-vnode node on even
    /// `step`s, remove it on odd ones. What the writer does non-stop.
    fn churn(&self, step: u64);
}

/// ringcache: lock-free reads, writes build and publish a new snapshot.
struct LockFree {
    ring: Ring,
    /// The id of the churned node while it is a member; only the single
    /// writer thread touches it (the atomic is just for `Sync`).
    churned: AtomicU32,
}

impl Shared for LockFree {
    #[inline]
    fn read(&self, key: &str) -> u32 {
        self.ring.lookup(key.as_bytes()).map_or(u32::MAX, |id| id.0)
    }

    fn churn(&self, step: u64) {
        if step % 2 == 0 {
            let id = self.ring.add_node("cache-churn", REF_VNODES).unwrap();
            self.churned.store(id.0, Ordering::Relaxed);
        } else {
            let id = NodeId(self.churned.load(Ordering::Relaxed));
            self.ring.remove_node(id).unwrap();
        }
    }
}

/// `hashring` behind a `parking_lot::RwLock`: the usual way to share a
/// mutable ring. A membership change holds the write lock for the whole
/// add (one `batch_add`) or remove (160 `Vec::remove`s).
struct Locked(RwLock<RefRing>);

impl Shared for Locked {
    #[inline]
    fn read(&self, key: &str) -> u32 {
        self.0.read().get(&key).map_or(u32::MAX, |&(node, _)| node)
    }

    fn churn(&self, step: u64) {
        let mut ring = self.0.write();
        if step % 2 == 0 {
            ring.batch_add(ref_vnodes(REF_NODES, REF_VNODES));
        } else {
            ref_remove_node(&mut ring, REF_NODES, REF_VNODES);
        }
    }
}

/// Builds both shared rings at 100 x 160.
fn shared_rings() -> (LockFree, Locked) {
    let lock_free = LockFree {
        ring: build_ring(REF_NODES, REF_VNODES),
        churned: AtomicU32::new(0),
    };
    let locked = Locked(RwLock::new(build_ref_ring(REF_NODES, REF_VNODES)));
    (lock_free, locked)
}

/// The one tally the thread benchmarks use (they run one at a time).
static TALLY: Tally = Tally::new();

/// The writer thread of a contention benchmark: which ring it churns, and
/// how often.
struct Writer<'a, W> {
    /// Normally the reader's own ring. A different ring of the same size
    /// keeps the writer's CPU, allocator and memory traffic but hides its
    /// snapshot swaps from the reader (a diagnostic).
    target: &'a W,
    /// Time between the starts of two membership changes, the writer
    /// spinning in between (so its core is as busy as when non-stop);
    /// `Duration::ZERO` for non-stop.
    every: Duration,
}

/// Time between membership changes of the paced writer: 1 ms, i.e. 1000
/// changes/s, to show how the reader's loss scales with the edit rate.
const PACED_EVERY: Duration = Duration::from_millis(1);

/// Times `iters` lookups of `reader` on the calling thread while, if
/// `writer` is given, another thread runs its `churn` (see [`Writer`]). The
/// writer is started (and has finished at least one edit) before the clock
/// starts and is stopped through an `AtomicBool` after it stops; only the
/// reader's time is returned. The churned node is always removed again
/// before returning, so every sample starts from the same 100 x 160 ring.
fn reader_with_writer<R: Shared, W: Shared>(
    reader: &R,
    writer: Option<&Writer<'_, W>>,
    keys: &[String],
    iters: u64,
) -> Duration {
    let stop = AtomicBool::new(false);
    let running = AtomicBool::new(false);
    thread::scope(|s| {
        let handle = writer.map(|writer| {
            let (stop, running) = (&stop, &running);
            s.spawn(move || {
                let started = Instant::now();
                let mut step = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = writer.every * u32::try_from(step).unwrap_or(u32::MAX);
                    if started.elapsed() < due {
                        std::hint::spin_loop();
                        continue;
                    }
                    writer.target.churn(step);
                    step += 1;
                    running.store(true, Ordering::Release);
                }
                if step % 2 == 1 {
                    writer.target.churn(step); // leave the ring as it was
                }
                step
            })
        });
        if handle.is_some() {
            while !running.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        }
        let clock = ThreadClock::now();
        let start = Instant::now();
        let mut i = 0;
        for _ in 0..iters {
            black_box(reader.read(black_box(&keys[i])));
            i = (i + 1) & KEY_MASK;
        }
        let elapsed = start.elapsed();
        clock.add_to(&TALLY, iters);
        stop.store(true, Ordering::Relaxed);
        if let Some(handle) = handle {
            let edits = handle.join().unwrap();
            TALLY.add_edits(edits);
        }
        elapsed
    })
}

/// Benchmarks `reader`'s lookups with `writer` running (or not) as
/// `contention/{name}/{mode}`, then prints the reader's time split.
fn contention_case<R: Shared, W: Shared>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    (name, mode): (&str, &str),
    reader: &R,
    writer: Option<Writer<'_, W>>,
    keys: &[String],
) {
    group.bench_function(BenchmarkId::new(name, mode), |b| {
        b.iter_custom(|iters| reader_with_writer(reader, writer.as_ref(), keys, iters))
    });
    TALLY.report(&format!("contention/{name}/{mode}"));
}

/// One reader thread's lookups/s at 100 x 160, alone and with one writer
/// thread adding and removing a 160-vnode node non-stop (one core each on
/// a 2-core machine), for ringcache and `RwLock<hashring>`. Why: the target
/// (docs/performance.md) is that the reader keeps >= 90% of its throughput while
/// membership changes; a lock makes readers wait for the writer. Criterion
/// times one lookup per iteration; its throughput line is lookups/s.
///
/// Two more writers explain the figure: one paced at 1000 changes/s
/// ([`PACED_EVERY`]), and one churning a *separate* ring, so the reader
/// pays for a busy neighbour core but never sees a new snapshot. After
/// each benchmark a line splits the reader's time into on-CPU, waiting for
/// a CPU and blocked (see [`Tally`]).
fn bench_contention(c: &mut Criterion) {
    let keys = make_keys();
    let (lock_free, locked) = shared_rings();
    let elsewhere = shared_rings().0;
    let mut group = c.benchmark_group("contention");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(30);
    group.throughput(Throughput::Elements(1));
    let non_stop = Duration::ZERO;
    let (ours, theirs) = ("ringcache", "rwlock_hashring");
    let none = None::<Writer<'_, LockFree>>;
    contention_case(&mut group, (ours, "no_writer"), &lock_free, none, &keys);
    let none = None::<Writer<'_, Locked>>;
    contention_case(&mut group, (theirs, "no_writer"), &locked, none, &keys);
    for (mode, every) in [
        ("with_writer", non_stop),
        ("writer_1000_per_s", PACED_EVERY),
    ] {
        let writer = Writer {
            target: &lock_free,
            every,
        };
        contention_case(&mut group, (ours, mode), &lock_free, Some(writer), &keys);
        let writer = Writer {
            target: &locked,
            every,
        };
        contention_case(&mut group, (theirs, mode), &locked, Some(writer), &keys);
    }
    let writer = Writer {
        target: &elsewhere,
        every: non_stop,
    };
    let mode = "writer_on_other_ring";
    contention_case(&mut group, (ours, mode), &lock_free, Some(writer), &keys);
    group.finish();
}

/// The phases of [`bench_contention_interleaved`], in the order the writer
/// cycles through them.
const PHASES: [&str; 4] = [
    "alone",
    "writer 1000/s, sleeping between",
    "writer 1000/s, spinning between",
    "writer 1000/s on another ring, sleeping between",
];

/// How long each phase of [`bench_contention_interleaved`] lasts.
const PHASE_WINDOW: Duration = Duration::from_millis(20);

/// Reader lookups and wall nanoseconds per phase, summed over every call
/// of [`reader_with_phased_writer`] (criterion's warm-up and samples).
static PHASE_LOOKUPS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// See [`PHASE_LOOKUPS`].
static PHASE_NANOS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Times `iters` lookups of `ring` on the calling thread while a writer
/// thread cycles through [`PHASES`], [`PHASE_WINDOW`] each: no edits (its
/// thread asleep), one membership change every millisecond sleeping in
/// between (a real paced writer), the same spinning in between (its core
/// as busy as a non-stop writer's), and the paced writer editing `other`,
/// a ring of the same size the reader does not read (the writer's CPU,
/// allocator and memory traffic without a snapshot swap the reader sees:
/// what the swaps themselves cost is the gap between this phase and the
/// second). The reader reads the phase around
/// every 256 lookups and credits those lookups and their time to the phase
/// if it did not change meanwhile (chunks that straddle a switch are
/// dropped). The phases alternate every 20 ms within one run, so the
/// machine's drift between runs, which on a shared guest is larger than
/// the effect measured, affects all three alike.
fn reader_with_phased_writer(
    ring: &LockFree,
    other: &LockFree,
    keys: &[String],
    iters: u64,
) -> Duration {
    const CHUNK: u64 = 256;
    let phase = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut step, mut other_step) = (0u64, 0u64);
            let mut p = 0u32;
            while !stop.load(Ordering::Relaxed) {
                phase.store(p, Ordering::Relaxed);
                let window = Instant::now();
                let mut next = window;
                while window.elapsed() < PHASE_WINDOW && !stop.load(Ordering::Relaxed) {
                    if p == 0 {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    if Instant::now() >= next {
                        // A step count per ring keeps each ring's
                        // add/remove alternation.
                        if p == 3 {
                            other.churn(other_step);
                            other_step += 1;
                        } else {
                            ring.churn(step);
                            step += 1;
                        }
                        next += PACED_EVERY;
                    } else if p != 2 {
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                    } else {
                        std::hint::spin_loop();
                    }
                }
                p = (p + 1) % 4;
            }
            if step % 2 == 1 {
                ring.churn(step); // leave the ring as it was
            }
            if other_step % 2 == 1 {
                other.churn(other_step);
            }
        });
        let start = Instant::now();
        let mut i = 0;
        let mut done = 0;
        while done < iters {
            let n = CHUNK.min(iters - done);
            let before = phase.load(Ordering::Relaxed);
            let t = Instant::now();
            for _ in 0..n {
                black_box(ring.read(black_box(&keys[i])));
                i = (i + 1) & KEY_MASK;
            }
            let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if phase.load(Ordering::Relaxed) == before {
                let at = usize::try_from(before).unwrap();
                PHASE_LOOKUPS[at].fetch_add(n, Ordering::Relaxed);
                PHASE_NANOS[at].fetch_add(nanos, Ordering::Relaxed);
            }
            done += n;
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        elapsed
    })
}

/// One reader's lookups/s at 100 x 160 with no writer and with a writer
/// changing membership every millisecond, measured within one run by
/// alternating the two every 20 ms ([`reader_with_phased_writer`]). Why:
/// the target (docs/performance.md) is that the reader keeps >= 90% with
/// a change every millisecond, and separate benchmarks run minutes apart on
/// this shared machine differ by more than that. Prints ns per lookup per
/// phase and the share each writer phase keeps; criterion's own figure
/// mixes the phases.
fn bench_contention_interleaved(c: &mut Criterion) {
    let keys = make_keys();
    let (ring, _) = shared_rings();
    let (other, _) = shared_rings();
    let mut group = c.benchmark_group("contention_interleaved");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    for (lookups, nanos) in PHASE_LOOKUPS.iter().zip(&PHASE_NANOS) {
        lookups.store(0, Ordering::Relaxed);
        nanos.store(0, Ordering::Relaxed);
    }
    group.bench_function("ringcache/paced_1000_per_s", |b| {
        b.iter_custom(|iters| reader_with_phased_writer(&ring, &other, &keys, iters))
    });
    group.finish();
    let per_lookup: Vec<Option<f64>> = PHASE_LOOKUPS
        .iter()
        .zip(&PHASE_NANOS)
        .map(|(l, n)| {
            let l = l.load(Ordering::Relaxed);
            (l > 0).then(|| n.load(Ordering::Relaxed) as f64 / l as f64)
        })
        .collect();
    if let Some(alone) = per_lookup[0] {
        for (name, ns) in PHASES.iter().zip(&per_lookup) {
            if let Some(ns) = ns {
                println!(
                    "contention_interleaved/ringcache: {name}: {ns:.1} ns/lookup, keeps {:.0}% of the \
                     reader-alone rate",
                    100.0 * alone / ns
                );
            }
        }
    }
}

/// Runs `iters` lookups in total split over `readers` threads that start
/// together at a barrier; returns the slowest thread's time (the wall time
/// of the whole batch, without thread start-up).
fn parallel_readers<S: Shared>(shared: &S, keys: &[String], iters: u64, readers: u64) -> Duration {
    let barrier = Barrier::new(usize::try_from(readers).unwrap());
    let per_thread = iters.div_ceil(readers);
    thread::scope(|s| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let barrier = &barrier;
                s.spawn(move || {
                    // Register the thread with the epoch collector and warm
                    // the lock's cache line before the clock starts.
                    black_box(shared.read(&keys[0]));
                    barrier.wait();
                    let clock = ThreadClock::now();
                    let start = Instant::now();
                    // Readers start half the key set apart.
                    let mut i = (usize::try_from(r).unwrap() * (KEY_COUNT / 2)) & KEY_MASK;
                    for _ in 0..per_thread {
                        black_box(shared.read(black_box(&keys[i])));
                        i = (i + 1) & KEY_MASK;
                    }
                    let elapsed = start.elapsed();
                    clock.add_to(&TALLY, per_thread);
                    elapsed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// Total lookups/s of 1 and 2 reader threads at 100 x 160, no writer, for
/// ringcache and `RwLock<hashring>`. Why: ringcache readers share no
/// written cache line, so two readers should do about twice the lookups;
/// a read lock's shared counter makes its readers contend. An iteration is
/// one lookup by any thread, so the throughput line is the total rate.
fn bench_scaling(c: &mut Criterion) {
    let keys = make_keys();
    let (lock_free, locked) = shared_rings();
    let mut group = c.benchmark_group("scaling");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(30);
    group.throughput(Throughput::Elements(1));
    for readers in [1u64, 2] {
        let mode = format!("{readers}_readers");
        group.bench_function(BenchmarkId::new("ringcache", &mode), |b| {
            b.iter_custom(|iters| parallel_readers(&lock_free, &keys, iters, readers))
        });
        TALLY.report(&format!("scaling/ringcache/{mode} (per thread)"));
        group.bench_function(BenchmarkId::new("rwlock_hashring", &mode), |b| {
            b.iter_custom(|iters| parallel_readers(&locked, &keys, iters, readers))
        });
        TALLY.report(&format!("scaling/rwlock_hashring/{mode} (per thread)"));
    }
    group.finish();
}

/// Criterion settings for the whole file: no plots (they take time and
/// nobody reads them here) and fewer bootstrap resamples than the default
/// 100 000, which is plenty for medians and keeps the run short.
fn config() -> Criterion {
    Criterion::default().without_plots().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_lookup, bench_lookup_cold, bench_placement, bench_key_hash, bench_batch, bench_mutation,
        bench_contention, bench_contention_interleaved, bench_scaling
}
criterion_main!(benches);
