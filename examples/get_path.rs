//! A single-thread get, layer by layer, in a plain loop: for counting a
//! get's instructions under callgrind, and for seeing how the length of a
//! get decides how much of one get's cache misses the processor overlaps
//! with the next one's (docs/performance.md, "A get's length").
//!
//! The same data as `get_1t_layers` in `benches/cluster.rs` (100k keys
//! `user:%08d`, 64-byte values, gets in a fixed stride). Layers:
//!
//! * `bare`: a bare `DashMap<Arc<[u8]>, Arc<[u8]>>` with ahash;
//! * `store`: one embedded node (`MemStore`) holding every key;
//! * `hashed`: the key's placement hash (xxh3), then `store`'s get: the
//!   least a get routed as the cluster routes does;
//! * `cluster1`, `cluster3`: `Cluster::get` on 1 and 3 nodes of 160 vnodes;
//! * `spin`: `store`, plus a loop of `SPIN` additions before each get (5
//!   instructions each, none of them waiting on memory), so the get grows
//!   longer while its memory accesses stay the same. `SPIN` is a
//!   comma-separated list (default `0`): every count runs on the same
//!   store, three times in turn.
//!
//! Run: `cargo run --release --example get_path -- [LAYER] [GETS] [SPIN]`
//! (all layers and 3M gets by default). Each line gives ns per get, wall
//! time over the loop: a single figure on a shared machine, so compare
//! within a run and over several. Instructions per get:
//! `valgrind --tool=callgrind --toggle-collect='get_path::measure'
//! target/release/examples/get_path LAYER 200000`, and divide the
//! instruction count by the gets (callgrind counts the same on every run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ringcache::cluster::{Cluster, ClusterConfig};
use ringcache::hash::key_hash;
use ringcache::node::MemStore;

// The benchmarks' shared keys and stride (and more this example leaves
// unused).
#[path = "../benches/support/mod.rs"]
mod support;
use support::{numbered_keys, placement_hash_then_get, STRIDE};

/// Keys held, as in the cluster benchmark's get groups.
const KEYS: usize = 100_000;

/// Every layer, in the order a run without `LAYER` measures them.
const LAYERS: [&str; 6] = ["bare", "store", "hashed", "cluster1", "cluster3", "spin"];

/// Runs `gets` gets through `get`, keys in stride order: the region the
/// callgrind command above counts.
#[inline(never)]
fn measure(keys: &[Vec<u8>], gets: usize, get: &dyn Fn(&[u8])) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    for _ in 0..gets {
        i = (i + STRIDE) % keys.len();
        get(&keys[i]);
    }
    start.elapsed()
}

fn value() -> Vec<u8> {
    vec![b'v'; 64]
}

/// Builds `layer`'s structure over `keys` and times `gets` gets on it.
fn run(layer: &str, keys: &[Vec<u8>], gets: usize, spins: &[u64]) -> Duration {
    match layer {
        "bare" => {
            let map: DashMap<Arc<[u8]>, Arc<[u8]>, ahash::RandomState> =
                DashMap::with_hasher(ahash::RandomState::new());
            for k in keys {
                map.insert(Arc::from(k.as_slice()), Arc::from(value().as_slice()));
            }
            measure(keys, gets, &|k| {
                black_box(map.get(k).map(|e| e.value().clone()));
            })
        }
        "store" | "hashed" | "spin" => {
            let store = MemStore::new(usize::MAX);
            for k in keys {
                store.set(key_hash(k), k, value().into(), None).unwrap();
            }
            if layer == "store" {
                return measure(keys, gets, &|k| drop(black_box(store.get(k))));
            }
            if layer == "hashed" {
                return measure(keys, gets, &|k| placement_hash_then_get(&store, k));
            }
            // The same store for every spin count, each measured three
            // times in turn, so that the counts compare within one process.
            let mut last = Duration::ZERO;
            for round in 0..3 {
                for &spin in spins {
                    last = measure(keys, gets, &|k| {
                        let mut sum = 0u64;
                        for i in 0..spin {
                            sum = sum.wrapping_add(black_box(i));
                        }
                        black_box(sum);
                        drop(black_box(store.get(k)));
                    });
                    let ns = last.as_secs_f64() * 1e9 / gets.max(1) as f64;
                    println!("spin {spin} (round {round}): {ns:.1} ns/get");
                }
            }
            last
        }
        "cluster1" | "cluster3" => {
            let nodes = if layer == "cluster1" { 1 } else { 3 };
            let cluster = Cluster::with_nodes(ClusterConfig::default(), "cache", nodes, 160)
                .expect("a cluster of fresh nodes");
            for k in keys {
                cluster.set(k, value(), None).expect("an embedded set");
            }
            assert!(cluster.wait_rebalanced(Duration::from_secs(60)));
            measure(keys, gets, &|k| {
                black_box(cluster.get(k).expect("an embedded get"));
            })
        }
        other => {
            eprintln!(
                "get_path: no layer {other:?}; layers: {}",
                LAYERS.join(", ")
            );
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |at: usize, default: u64| -> u64 {
        args.get(at).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("get_path: {s:?} is not a number");
                std::process::exit(2)
            })
        })
    };
    let gets = number(1, 3_000_000);
    let spins: Vec<u64> = args.get(2).map_or(vec![0], |list| {
        list.split(',')
            .map(|s| {
                s.parse().unwrap_or_else(|_| {
                    eprintln!("get_path: {s:?} is not a spin count");
                    std::process::exit(2)
                })
            })
            .collect()
    });
    let layers: Vec<&str> = match args.first() {
        Some(layer) => vec![layer.as_str()],
        None => LAYERS.to_vec(),
    };
    let keys = numbered_keys(KEYS);
    for layer in layers {
        let gets = usize::try_from(gets).expect("GETS fits usize");
        let took = run(layer, &keys, gets, &spins);
        if layer != "spin" {
            let ns = took.as_secs_f64() * 1e9 / gets.max(1) as f64;
            println!("{layer}: {ns:.1} ns/get over {gets} gets");
        }
    }
}
