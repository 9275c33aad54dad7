//! Relocation speed per core: a 3-node cluster (160 vnodes each) holding
//! N keys (`key:` + 16 hex digits, 64-byte values) gets a 4th node; the
//! run prints the keys moved, the wall time until the mover reports done,
//! and the mover thread's CPU time read from `/proc/self/task/*/schedstat`, so
//! keys/s per core is measured rather than inferred from wall time on a
//! shared machine. `benches/cluster.rs` (`relocation`) times the same
//! change under criterion.
//!
//! Run: `cargo run --release --example relocation -- [KEYS] [ROUNDS]`
//! (defaults 1000000 and 3).
use ringcache::cluster::{Cluster, ClusterConfig};
use std::time::{Duration, Instant};

/// CPU seconds of the mover thread so far: the first field of its
/// `schedstat`, nanoseconds on a CPU.
fn mover_cpu() -> f64 {
    let mut t = 0.0;
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let p = e.unwrap().path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == "ringcache-mover" {
            let stat = std::fs::read_to_string(p.join("schedstat")).unwrap();
            let ns: f64 = stat.split(' ').next().unwrap().parse().unwrap();
            t += ns / 1e9;
        }
    }
    t
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(3);
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("key:{i:016x}").into_bytes())
        .collect();
    for _ in 0..rounds {
        let c = Cluster::with_nodes(ClusterConfig::default(), "cache", 3, 160).unwrap();
        for k in &keys {
            c.set(k, vec![b'v'; 64], None).unwrap();
        }
        let cpu0 = mover_cpu();
        let start = Instant::now();
        c.add_node("cache-3", 160).unwrap();
        assert!(c.wait_rebalanced(Duration::from_secs(120)));
        let wall = start.elapsed().as_secs_f64();
        let cpu = mover_cpu() - cpu0;
        let st = c.rebalance_status();
        println!(
            "moved {} scanned {} wall {:.3}s mover cpu {:.2}s => {:.0} keys/s wall, {:.0} keys/s per mover-cpu-s",
            st.keys_moved, st.keys_scanned, wall, cpu, st.keys_moved as f64 / wall, st.keys_moved as f64 / cpu
        );
    }
}
