//! Cluster benchmarks: get/set throughput of a 3-node cluster beside a bare
//! `DashMap` doing the same work (the ceiling), a get's cost layer by layer
//! (`get_1t_layers`, and `get_1t_request_keys` with the key already in the
//! cache, as a server's is), and relocation speed.
//!
//! Run: `cargo bench --bench cluster`. Figures go in the README with the
//! machine they were measured on; the targets (docs/performance.md) are get/set
//! within 1.5x of the bare map and at least 1M keys moved per second per
//! core.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use ringcache::cluster::{Cluster, ClusterConfig};
use ringcache::hash::key_hash;
use ringcache::node::MemStore;

mod support;
use support::{numbered_keys, placement_hash_then_get, STRIDE};

/// Keys preloaded for the get/set benchmarks.
const KEYS: usize = 100_000;
/// Operations each thread performs per measured iteration.
const OPS_PER_THREAD: u64 = 20_000;

fn value() -> Vec<u8> {
    vec![b'v'; 64]
}

/// The bare map the cluster is measured against.
type BareMap = DashMap<Arc<[u8]>, Arc<[u8]>, ahash::RandomState>;

/// The ceiling: the same keys and values in one bare `DashMap` with the
/// same hasher as the nodes' maps, no ring, no stats, no TTL.
fn bare_map(keys: &[Vec<u8>]) -> BareMap {
    let map = DashMap::with_hasher(ahash::RandomState::new());
    for k in keys {
        map.insert(Arc::from(k.as_slice()), Arc::from(value().as_slice()));
    }
    map
}

/// A cluster of three nodes holding `keys`, what the get/set groups use.
fn cluster(keys: &[Vec<u8>]) -> Cluster {
    cluster_of(keys, 3)
}

/// A cluster of `nodes` nodes of 160 vnodes holding `keys`.
fn cluster_of(keys: &[Vec<u8>], nodes: usize) -> Cluster {
    let c = Cluster::with_nodes(ClusterConfig::default(), "cache", nodes, 160).unwrap();
    for k in keys {
        c.set(k, value(), None).unwrap();
    }
    c
}

/// One embedded node (`MemStore`) holding `keys`, each with a value of
/// its own, as a cluster's node holds them.
fn memstore(keys: &[Vec<u8>]) -> MemStore {
    let node = MemStore::new(usize::MAX);
    for k in keys {
        node.set(key_hash(k), k, value().into(), None).unwrap();
    }
    node
}

/// Where a stride walk over `len` keys stands after `walked` steps, moved
/// on by `offset` keys (a thread's own starting point).
fn walk_start(walked: usize, offset: usize, len: usize) -> usize {
    let len = len as u64;
    // In u64: `walked % len * STRIDE` passes 2^32 at 1M keys.
    let at = (offset as u64 + walked as u64 % len * STRIDE as u64) % len;
    usize::try_from(at).expect("below the key count")
}

/// Runs `op` on `threads` threads, `OPS_PER_THREAD` each, `iters` times;
/// returns the wall time of the slowest thread summed over iterations.
///
/// Each thread walks the keys in steps of [`STRIDE`] from its own
/// starting point, and each iteration goes on where the previous one
/// stopped (in this process, whatever the group), so the iterations
/// together cover the whole key set (five of them cover 100k keys)
/// instead of repeating the same `OPS_PER_THREAD` keys, whose lines would
/// then stay in the caches.
fn run_threads(
    threads: usize,
    iters: u64,
    keys: &[Vec<u8>],
    op: impl Fn(&[u8]) + Sync,
) -> Duration {
    let mut total = Duration::ZERO;
    static WALKED: AtomicUsize = AtomicUsize::new(0);
    let ops = usize::try_from(OPS_PER_THREAD).expect("ops fit usize");
    for _ in 0..iters {
        // Relaxed: a position, read and advanced only by the thread that
        // runs the benchmarks (the walking threads get a copy).
        let walked = WALKED.fetch_add(ops, Ordering::Relaxed);
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let op = &op;
                s.spawn(move || {
                    let mut i = walk_start(walked, t * 7919, keys.len());
                    for _ in 0..ops {
                        i = (i + STRIDE) % keys.len();
                        op(&keys[i]);
                    }
                });
            }
        });
        total += start.elapsed();
    }
    total
}

/// Get and set throughput, cluster vs bare map, 1 and 2 threads.
fn get_set(c: &mut Criterion) {
    let keys = numbered_keys(KEYS);
    let map = bare_map(&keys);
    let cl = cluster(&keys);
    let v: Arc<[u8]> = Arc::from(value().as_slice());
    for threads in [1usize, 2] {
        bench_gets(c, &format!("get_{threads}t"), threads, || {
            (&keys, &map, &cl)
        });
        let mut g = c.benchmark_group(format!("set_{threads}t"));
        g.throughput(Throughput::Elements(OPS_PER_THREAD * threads as u64));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("ringcache", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &keys, |k| {
                    black_box(cl.set(k, v.clone(), None).unwrap());
                })
            })
        });
        g.bench_function("bare_dashmap", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &keys, |k| {
                    black_box(map.insert(Arc::from(k), v.clone()));
                })
            })
        });
        g.finish();
    }
}

/// Group `name`: gets on `threads` threads, the cluster beside the bare
/// map, on the data `data` gives (called only when a benchmark runs).
fn bench_gets<'a>(
    c: &mut Criterion,
    name: &str,
    threads: usize,
    data: impl Fn() -> (&'a [Vec<u8>], &'a BareMap, &'a Cluster),
) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(OPS_PER_THREAD * threads as u64));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("ringcache", |b| {
        let (keys, _, cl) = data();
        b.iter_custom(|iters| {
            run_threads(threads, iters, keys, |k| {
                black_box(cl.get(k).unwrap());
            })
        })
    });
    g.bench_function("bare_dashmap", |b| {
        let (keys, map, _) = data();
        b.iter_custom(|iters| {
            run_threads(threads, iters, keys, |k| {
                black_box(map.get(k).map(|e| e.value().clone()));
            })
        })
    });
    g.finish();
}

/// Single-thread gets on a working set ten times larger: 1M keys, where
/// the bare map's tables and the nodes' tables fill differently than at
/// 100k (hash tables double, so either side can be the half-empty one at
/// a given size). The data is built on first use, so a filtered-out run
/// does not pay for it.
fn get_large(c: &mut Criterion) {
    const LARGE: usize = 1_000_000;
    let data: std::cell::OnceCell<(Vec<Vec<u8>>, BareMap, Cluster)> = std::cell::OnceCell::new();
    bench_gets(c, "get_1t_1m_keys", 1, || {
        let (keys, map, cl) = data.get_or_init(|| {
            let keys = numbered_keys(LARGE);
            let map = bare_map(&keys);
            let cl = cluster(&keys);
            (keys, map, cl)
        });
        (keys, map, cl)
    });
}

/// Where a cluster get's time goes over the bare map's, one layer at a
/// time, single thread, on the same 100k keys in one run: the bare
/// `DashMap`; one embedded node (`MemStore`) holding every key; that
/// node's get after the key's placement hash (the least a get routed as
/// the cluster routes does); that node read under an epoch pin per get
/// (as a cluster get pinned for its topology until gets on embedded nodes
/// stopped pinning); a cluster of one node (key hash, topology, ring
/// lookup, routing); and the cluster of three nodes `get_1t` measures.
/// Each structure is built on first use, so a filtered run builds only
/// what it measures.
fn get_layers(c: &mut Criterion) {
    use std::cell::OnceCell;
    let keys = OnceCell::new();
    let keys = || keys.get_or_init(|| numbered_keys(KEYS));
    let (map, store, one, three) = (
        OnceCell::new(),
        OnceCell::new(),
        OnceCell::new(),
        OnceCell::new(),
    );
    let store = || store.get_or_init(|| memstore(keys()));
    let mut g = c.benchmark_group("get_1t_layers");
    g.throughput(Throughput::Elements(OPS_PER_THREAD));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("bare_dashmap", |b| {
        let (keys, map) = (keys(), map.get_or_init(|| bare_map(keys())));
        b.iter_custom(|iters| {
            run_threads(1, iters, keys, |k| {
                black_box(map.get(k).map(|e| e.value().clone()));
            })
        })
    });
    g.bench_function("one_memstore", |b| {
        let (keys, store) = (keys(), store());
        b.iter_custom(|iters| run_threads(1, iters, keys, |k| drop(black_box(store.get(k)))))
    });
    // The least a get routed as the cluster routes does. The hash's
    // instructions wait on the key's bytes, a miss in this loop, as the
    // probe's do; this layer measures what the hash alone adds.
    g.bench_function("placement_hash_then_memstore", |b| {
        let (keys, store) = (keys(), store());
        b.iter_custom(|iters| run_threads(1, iters, keys, |k| placement_hash_then_get(store, k)))
    });
    g.bench_function("one_memstore_pinned", |b| {
        let (keys, store) = (keys(), store());
        b.iter_custom(|iters| {
            run_threads(1, iters, keys, |k| {
                let _guard = crossbeam_epoch::pin();
                drop(black_box(store.get(k)));
            })
        })
    });
    for (name, nodes, cell) in [("cluster_1_node", 1, &one), ("cluster_3_nodes", 3, &three)] {
        g.bench_function(name, |b| {
            let keys = keys();
            let cl = cell.get_or_init(|| cluster_of(keys, nodes));
            b.iter_custom(|iters| {
                run_threads(1, iters, keys, |k| {
                    black_box(cl.get(k).unwrap());
                })
            })
        });
    }
    g.finish();
}

/// Keys a request-key batch holds: a few socket reads' worth of requests,
/// small enough (1 KiB) to stay in L1 while they are served.
const REQUEST_BATCH: usize = 64;

/// Room for one request key: the numbered keys are 13 bytes.
const REQUEST_KEY_MAX: usize = 16;

/// Single-thread gets whose key is already in the cache, as a server's
/// key is, parsed a moment before from the request it just read, while
/// the data stays cold: the same stride walk over every stored key as
/// [`run_threads`], but `REQUEST_BATCH` keys at a time are first copied
/// into one small buffer (untimed), and only the gets that read them are
/// timed. `run_threads` passes each get a key of its own allocation, a
/// cache miss on which the key's hashes wait; this loop measures the
/// same gets without that miss. The clock is read twice per batch, under
/// a nanosecond a get. Returns the summed time of the gets.
fn run_request_keys(iters: u64, keys: &[Vec<u8>], op: impl Fn(&[u8])) -> Duration {
    // Its own position, advanced as `run_threads`'s is.
    static WALKED: AtomicUsize = AtomicUsize::new(0);
    let ops = usize::try_from(OPS_PER_THREAD).expect("ops fit usize");
    let mut batch = [[0u8; REQUEST_KEY_MAX]; REQUEST_BATCH];
    let mut lens = [0usize; REQUEST_BATCH];
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        // Relaxed: read and advanced only by the thread running the
        // benchmarks.
        let walked = WALKED.fetch_add(ops, Ordering::Relaxed);
        let mut i = walk_start(walked, 0, keys.len());
        let mut left = ops;
        while left > 0 {
            let n = left.min(REQUEST_BATCH);
            for (slot, l) in batch.iter_mut().zip(lens.iter_mut()).take(n) {
                i = (i + STRIDE) % keys.len();
                let key = &keys[i];
                slot[..key.len()].copy_from_slice(key);
                *l = key.len();
            }
            let start = Instant::now();
            for (slot, &l) in batch.iter().zip(lens.iter()).take(n) {
                op(black_box(&slot[..l]));
            }
            total += start.elapsed();
            left -= n;
        }
    }
    total
}

/// Gets as a server makes them: [`run_request_keys`], the key in the cache
/// and the data cold, on 100k and 1M keys, layer by layer as in
/// `get_1t_layers`: the bare map, one node holding every key, the key's
/// placement hash then that node's get, and clusters of one and three
/// nodes. Data is built on first use and dropped after its size's runs.
fn get_request_keys(c: &mut Criterion) {
    use std::cell::OnceCell;
    let mut g = c.benchmark_group("get_1t_request_keys");
    g.throughput(Throughput::Elements(OPS_PER_THREAD));
    g.measurement_time(Duration::from_secs(3));
    for (size, count) in [("100k", KEYS), ("1m", 1_000_000)] {
        let keys = OnceCell::new();
        let keys = || keys.get_or_init(|| numbered_keys(count));
        let (map, store) = (OnceCell::new(), OnceCell::new());
        let store = || store.get_or_init(|| memstore(keys()));
        g.bench_function(BenchmarkId::new("bare_dashmap", size), |b| {
            let (keys, map) = (keys(), map.get_or_init(|| bare_map(keys())));
            b.iter_custom(|iters| {
                run_request_keys(iters, keys, |k| {
                    black_box(map.get(k).map(|e| e.value().clone()));
                })
            })
        });
        g.bench_function(BenchmarkId::new("one_memstore", size), |b| {
            let (keys, store) = (keys(), store());
            b.iter_custom(|iters| run_request_keys(iters, keys, |k| drop(black_box(store.get(k)))))
        });
        g.bench_function(
            BenchmarkId::new("placement_hash_then_memstore", size),
            |b| {
                let (keys, store) = (keys(), store());
                b.iter_custom(|iters| {
                    run_request_keys(iters, keys, |k| placement_hash_then_get(store, k))
                })
            },
        );
        for (name, nodes) in [("cluster_1_node", 1), ("cluster_3_nodes", 3)] {
            let cl = OnceCell::new();
            g.bench_function(BenchmarkId::new(name, size), |b| {
                let keys = keys();
                let cl = cl.get_or_init(|| cluster_of(keys, nodes));
                b.iter_custom(|iters| {
                    run_request_keys(iters, keys, |k| {
                        black_box(cl.get(k).unwrap());
                    })
                })
            });
        }
    }
    g.finish();
}

/// Relocation speed: add a 4th node to a 3-node cluster holding 1M keys and
/// time until the mover reports done. Throughput is keys moved per second
/// (about a quarter of the keys move); the sweep also scans all 1M keys.
fn relocation(c: &mut Criterion) {
    const TOTAL: usize = 1_000_000;
    let keys = numbered_keys(TOTAL);
    let mut g = c.benchmark_group("relocation");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    // Keys that move when cache-3 joins, computed once for the throughput.
    let moved = {
        let ring = ringcache::Ring::new();
        for i in 0..3 {
            ring.add_node(&format!("cache-{i}"), 160).unwrap();
        }
        let before: Vec<_> = keys.iter().map(|k| ring.lookup(k)).collect();
        ring.add_node("cache-3", 160).unwrap();
        keys.iter()
            .zip(before)
            .filter(|(k, b)| ring.lookup(k) != *b)
            .count()
    };
    g.throughput(Throughput::Elements(moved as u64));
    g.bench_with_input(BenchmarkId::new("add_node", "1M keys"), &keys, |b, keys| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cl = cluster(keys);
                let start = Instant::now();
                cl.add_node("cache-3", 160).unwrap();
                assert!(cl.wait_rebalanced(Duration::from_secs(120)));
                total += start.elapsed();
                assert_eq!(cl.rebalance_status().keys_moved as usize, moved);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    get_set,
    get_large,
    get_layers,
    get_request_keys,
    relocation
);
criterion_main!(benches);
