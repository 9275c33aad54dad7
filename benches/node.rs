//! One cache node at its memory cap: the cost of a `set` that creates a key
//! and so must evict one entry to stay under the cap.
//!
//! Run: `cargo bench --bench node`. The node holds `CAP_ENTRIES` entries of
//! equal size; every measured `set` writes a key it has not seen recently
//! (walking 4x the capacity), so each one evicts. docs/eviction.md records
//! the figures before and after the eviction rework, with the machine.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringcache::hash::key_hash;
use ringcache::node::{MemStore, ENTRY_OVERHEAD};

mod support;
use support::numbered_keys;

/// Entries the node holds at its cap.
const CAP_ENTRIES: usize = 100_000;
/// Distinct keys the writes walk through (4x the capacity).
const KEYS: usize = 4 * CAP_ENTRIES;
const VALUE_LEN: usize = 64;

fn set_at_cap(c: &mut Criterion) {
    let keys: Vec<(u64, Vec<u8>)> = numbered_keys(KEYS)
        .into_iter()
        .map(|k| (key_hash(&k), k))
        .collect();
    let value: Arc<[u8]> = Arc::from(vec![b'v'; VALUE_LEN]);
    let cap = CAP_ENTRIES * (keys[0].1.len() + VALUE_LEN + ENTRY_OVERHEAD);
    let node = MemStore::new(cap);
    // Fill past the cap so the node is full and has evicted already.
    for (h, k) in keys.iter().take(CAP_ENTRIES + CAP_ENTRIES / 2) {
        node.set(*h, k, value.clone(), None).unwrap();
    }
    assert!(node.stats().evictions > 0, "the node never reached its cap");
    let mut i = CAP_ENTRIES + CAP_ENTRIES / 2;
    let mut g = c.benchmark_group("node");
    g.throughput(Throughput::Elements(1));
    g.bench_function("set_at_cap", |b| {
        b.iter(|| {
            let (h, k) = &keys[i % KEYS];
            i += 1;
            black_box(node.set(*h, k, value.clone(), None).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, set_at_cap);
criterion_main!(benches);
