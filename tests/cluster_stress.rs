//! The relocation invariants under fire: writers, readers and a membership
//! churner run at once for a few seconds; every read is checked against an
//! exact model of what the writers acknowledged, and the end state against
//! the model and the final ring.
//!
//! Bounded: `STRESS_SECONDS` (default 4) of wall time and fixed operation
//! caps per thread. Run it in a loop with
//! `for i in $(seq 20); do cargo test --release --test cluster_stress || break; done`.

mod rng;

use rng::SplitMix;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcache::cluster::{Cluster, ClusterConfig};
use ringcache::NodeId;

const WRITERS: usize = 2;
const READERS: usize = 2;
const KEYS_PER_WRITER: usize = 300;
const MAX_OPS_PER_THREAD: u64 = 2_000_000;

/// Per-key model shared by a key's single writer and every reader.
///
/// Ops on a key are numbered 1, 2, ... by its writer. `issued` is the number
/// of the newest op started, `acked` the newest op acknowledged (shifted
/// left one bit, low bit set for a set, clear for a delete), and
/// `last_delete` the newest delete started.
#[derive(Default)]
struct KeyModel {
    issued: AtomicU64,
    acked: AtomicU64,
    last_delete: AtomicU64,
}

struct Model {
    keys: Vec<(Vec<u8>, KeyModel)>,
}

fn key_name(writer: usize, i: usize) -> Vec<u8> {
    format!("w{writer}/key-{i}").into_bytes()
}

fn value_for(key: &[u8], seq: u64) -> Vec<u8> {
    let mut v = key.to_vec();
    v.extend_from_slice(format!("#{seq}").as_bytes());
    v
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn seq_of(key: &[u8], value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(key)?.strip_prefix(b"#")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

struct Failures(Mutex<Vec<String>>);
impl Failures {
    fn report(&self, msg: String) {
        let mut f = self.0.lock();
        if f.len() < 20 {
            f.push(msg);
        }
    }
}

fn writer(
    cluster: &Cluster,
    model: &Model,
    w: usize,
    stop: &AtomicBool,
    failures: &Failures,
) -> u64 {
    let mut rng = SplitMix(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
    let mine: Vec<usize> = (0..model.keys.len()).filter(|i| i % WRITERS == w).collect();
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) && ops < MAX_OPS_PER_THREAD {
        let (key, m) = &model.keys[mine[rng.below(mine.len() as u64) as usize]];
        let seq = m.issued.load(Ordering::SeqCst) + 1;
        let delete = rng.below(5) == 0;
        if delete {
            m.last_delete.store(seq, Ordering::SeqCst);
        }
        m.issued.store(seq, Ordering::SeqCst);
        let result = if delete {
            cluster.delete(key).map(|_| ())
        } else {
            cluster.set(key, value_for(key, seq), None).map(|_| ())
        };
        if let Err(e) = result {
            failures.report(format!("writer {w}: op {seq} on {} failed: {e}", show(key)));
        }
        m.acked
            .store(seq << 1 | u64::from(!delete), Ordering::SeqCst);
        ops += 1;
    }
    ops
}

fn reader(
    cluster: &Cluster,
    model: &Model,
    r: usize,
    stop: &AtomicBool,
    failures: &Failures,
) -> u64 {
    let mut rng = SplitMix(0xD1B5_4A32_D192_ED03 ^ (r as u64 + 7));
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) && reads < MAX_OPS_PER_THREAD {
        let (key, m) = &model.keys[rng.below(model.keys.len() as u64) as usize];
        let before = m.acked.load(Ordering::SeqCst);
        let got = match cluster.get(key) {
            Ok(s) => s.value,
            Err(e) => {
                failures.report(format!("reader {r}: get {} failed: {e}", show(key)));
                continue;
            }
        };
        let issued_after = m.issued.load(Ordering::SeqCst);
        let delete_after = m.last_delete.load(Ordering::SeqCst);
        let (before_seq, before_was_set) = (before >> 1, before & 1 == 1);
        match got {
            Some(v) => match seq_of(key, &v) {
                None => {
                    failures.report(format!("reader {r}: {} has foreign value {v:?}", show(key)))
                }
                Some(x) if x < before_seq || x > issued_after => failures.report(format!(
                    "reader {r}: {} read op {x}, but op {before_seq} was acknowledged \
                     before the read and only {issued_after} were issued by its end",
                    show(key)
                )),
                Some(_) => {}
            },
            None => {
                if before_was_set && delete_after <= before_seq {
                    failures.report(format!(
                        "reader {r}: {} missing, but set op {before_seq} was acknowledged \
                         before the read and no delete was issued since (lost write)",
                        show(key)
                    ));
                }
            }
        }
        reads += 1;
    }
    reads
}

fn churner(cluster: &Cluster, stop: &AtomicBool, failures: &Failures) -> u64 {
    let mut rng = SplitMix(0xA076_1D64_78BD_642F);
    let mut next_name = 100;
    let mut changes = 0;
    while !stop.load(Ordering::Relaxed) && changes < 10_000 {
        // Sometimes a burst of changes back to back, so they queue and merge.
        let burst = if rng.below(3) == 0 {
            2 + rng.below(3)
        } else {
            1
        };
        for _ in 0..burst {
            let members: Vec<NodeId> = cluster.ring().nodes().iter().map(|n| n.id).collect();
            let pick = members[rng.below(members.len() as u64) as usize];
            let result = match rng.below(3) {
                0 if members.len() < 7 => {
                    next_name += 1;
                    cluster
                        .add_node(&format!("churn-{next_name}"), 1 + rng.below(200) as u32)
                        .map(|_| ())
                }
                1 if members.len() > 2 => cluster.remove_node(pick),
                _ => cluster.set_weight(pick, 1 + rng.below(300) as u32),
            };
            if let Err(e) = result {
                failures.report(format!("churn: change failed: {e}"));
            }
            changes += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.below(25)));
    }
    changes
}

/// No lost write, no resurrection, convergence and drain-before-drop, with
/// the ring changing under concurrent readers and writers.
#[test]
fn relocation_keeps_every_acknowledged_write_under_churn() {
    let seconds: u64 = std::env::var("STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let cluster = Cluster::with_nodes(ClusterConfig::default(), "cache", 3, 100).unwrap();
    let model = Model {
        keys: (0..WRITERS * KEYS_PER_WRITER)
            .map(|i| (key_name(i % WRITERS, i), KeyModel::default()))
            .collect(),
    };
    let stop = AtomicBool::new(false);
    let failures = Failures(Mutex::new(Vec::new()));
    let started = Instant::now();
    let (write_ops, read_ops, changes) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                s.spawn({
                    let (cluster, model, stop, failures) = (&cluster, &model, &stop, &failures);
                    move || writer(cluster, model, w, stop, failures)
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                s.spawn({
                    let (cluster, model, stop, failures) = (&cluster, &model, &stop, &failures);
                    move || reader(cluster, model, r, stop, failures)
                })
            })
            .collect();
        let churn = s.spawn(|| churner(&cluster, &stop, &failures));
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        (
            writers.into_iter().map(|h| h.join().unwrap()).sum::<u64>(),
            readers.into_iter().map(|h| h.join().unwrap()).sum::<u64>(),
            churn.join().unwrap(),
        )
    });
    let status = cluster.rebalance_status();
    eprintln!(
        "{write_ops} writes, {read_ops} checked reads, {changes} membership changes in {:?}; \
         {} relocation runs, {} sweeps, {} keys moved",
        started.elapsed(),
        status.runs,
        status.sweeps,
        status.total_moved
    );
    let failures = failures.0.into_inner();
    assert!(failures.is_empty(), "violations:\n{}", failures.join("\n"));
    assert!(changes > 10, "the churner made only {changes} changes");
    assert!(
        status.total_moved > 0,
        "no key ever moved: the test tested nothing"
    );

    // Convergence.
    assert!(
        cluster.wait_rebalanced(Duration::from_secs(60)),
        "relocation did not settle: {:?}",
        cluster.rebalance_status()
    );
    // Every acknowledged value is readable; no deleted key is.
    let mut live = HashMap::new();
    for (key, m) in &model.keys {
        let acked = m.acked.load(Ordering::SeqCst);
        let got = cluster.get(key).unwrap().value;
        if acked & 1 == 1 {
            let want = value_for(key, acked >> 1);
            assert_eq!(got.as_deref(), Some(want.as_slice()), "key {}", show(key));
            live.insert(key.clone(), ());
        } else {
            assert_eq!(got, None, "deleted key {} came back", show(key));
        }
    }
    // Every key lives on exactly one node: its owner under the current ring.
    // No draining node is left.
    let nodes = cluster.nodes();
    assert!(
        nodes
            .iter()
            .all(|n| n.state == ringcache::cluster::NodeState::Serving),
        "a drained node was not dropped: {nodes:?}"
    );
    let snap = cluster.ring().pin();
    let mut seen = HashMap::new();
    for n in &nodes {
        let store = cluster.store(n.id).unwrap();
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            let page = store.scan(c, &|_| true).unwrap();
            for (_, k) in page.keys {
                assert_eq!(
                    snap.lookup(&k),
                    Some(n.id),
                    "key {k:?} sits on node {}",
                    n.id
                );
                assert!(
                    seen.insert(k.to_vec(), n.id).is_none(),
                    "key {k:?} stored twice"
                );
            }
            cursor = page.next;
        }
    }
    assert_eq!(
        seen.len(),
        live.len(),
        "stored keys differ from the model's live keys"
    );
}
