//! Minimal movement measured on the real stores: after each kind of
//! membership change on a cluster holding 100k keys, the keys the mover
//! moved are exactly the keys whose owner changed, they went where the new
//! ring says, and nothing else moved. Also drain-before-drop and the node
//! count of a removal.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ringcache::cluster::{Cluster, ClusterConfig};
use ringcache::hash::Placement;
use ringcache::NodeId;

const KEYS: usize = 100_000;

fn key(i: usize) -> Vec<u8> {
    format!("user:{i}").into_bytes()
}

/// A cluster of 4 nodes x 160 vnodes holding `KEYS` keys, settled.
fn loaded_cluster() -> Cluster {
    load(Cluster::with_nodes(ClusterConfig::default(), "cache", 4, 160).unwrap())
}

/// `cluster` holding `KEYS` keys.
fn load(cluster: Cluster) -> Cluster {
    for i in 0..KEYS {
        cluster.set(&key(i), key(i), None).unwrap();
    }
    cluster
}

/// Owner of every key under the cluster's current ring.
fn owners(cluster: &Cluster) -> Vec<NodeId> {
    let snap = cluster.ring().pin();
    (0..KEYS).map(|i| snap.lookup(&key(i)).unwrap()).collect()
}

/// Where every key is actually stored, scanning each node's store.
fn locations(cluster: &Cluster) -> HashMap<Vec<u8>, NodeId> {
    let mut at = HashMap::new();
    for n in cluster.nodes() {
        let store = cluster.store(n.id).unwrap();
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            let page = store.scan(c, &|_| true).unwrap();
            for (_, k) in page.keys {
                assert!(at.insert(k.to_vec(), n.id).is_none(), "{k:?} stored twice");
            }
            cursor = page.next;
        }
    }
    at
}

/// Applies `change`, waits for relocation, and checks that exactly the keys
/// whose owner changed moved, to their new owner. Returns (before, after).
fn check_change(cluster: &Cluster, change: impl FnOnce()) -> (Vec<NodeId>, Vec<NodeId>) {
    let before = owners(cluster);
    let moved_before = cluster.rebalance_status().total_moved;
    change();
    assert!(
        cluster.wait_rebalanced(Duration::from_secs(60)),
        "relocation did not settle"
    );
    let after = owners(cluster);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let moved = cluster.rebalance_status().total_moved - moved_before;
    assert!(
        changed > 0,
        "the change moved no owner: the test tests nothing"
    );
    assert_eq!(
        moved as usize, changed,
        "keys moved != keys whose owner changed"
    );
    let at = locations(cluster);
    assert_eq!(at.len(), KEYS, "keys were lost or duplicated");
    for (i, owner) in after.iter().enumerate() {
        assert_eq!(at.get(&key(i)), Some(owner), "key {i} is not on its owner");
        let got = cluster.get(&key(i)).unwrap();
        assert_eq!(got.value.as_deref(), Some(key(i).as_slice()));
        assert_eq!(got.node, *owner);
    }
    (before, after)
}

/// Adding a node moves exactly the keys it now owns, all to it.
#[test]
fn adding_a_node_moves_only_its_keys() {
    let cluster = loaded_cluster();
    let mut new = None;
    let (before, after) = check_change(&cluster, || {
        new = Some(cluster.add_node("cache-new", 160).unwrap());
    });
    let new = new.unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert!(a == b || *a == new, "a key moved between two old nodes");
    }
    let share = after.iter().filter(|&&a| a == new).count() as f64 / KEYS as f64;
    assert!(
        (0.1..0.3).contains(&share),
        "new node took {share} of the keys"
    );
}

/// Removing a node moves exactly its keys; the node count drops at once, and
/// the node is dropped only once drained.
#[test]
fn removing_a_node_drains_it_then_drops_it() {
    let cluster = loaded_cluster();
    let victim = cluster.nodes()[1].id;
    let store = cluster.store(victim).unwrap();
    let held = store.stats().keys;
    assert!(held > 0);
    let (before, after) = check_change(&cluster, || {
        cluster.remove_node(victim).unwrap();
        // The node leaves the ring (and X-CacheServer-Count) at once.
        assert_eq!(cluster.node_count(), 3);
        assert_eq!(cluster.get(b"user:1").unwrap().node_count, 3);
    });
    for (b, a) in before.iter().zip(&after) {
        assert!(
            (a == b) != (*b == victim),
            "only the removed node's keys may move"
        );
    }
    assert_eq!(before.iter().filter(|&&b| b == victim).count(), held);
    // Dropped from the cluster, and it was empty when dropped.
    assert!(cluster.store(victim).is_none(), "drained node still listed");
    assert_eq!(store.stats().keys, 0, "node dropped with keys still on it");
}

/// Raising a node's vnodes moves keys only to it; lowering them back moves
/// the same keys only from it, restoring the original placement.
#[test]
fn vnode_changes_move_keys_only_to_or_from_that_node() {
    let cluster = loaded_cluster();
    let node = cluster.nodes()[2].id;
    let (before, up) = check_change(&cluster, || cluster.set_weight(node, 640).unwrap());
    for (b, a) in before.iter().zip(&up) {
        assert!(a == b || *a == node, "raising vnodes moved a key elsewhere");
    }
    let (_, down) = check_change(&cluster, || cluster.set_weight(node, 160).unwrap());
    for (u, d) in up.iter().zip(&down) {
        assert!(
            d == u || *u == node,
            "lowering vnodes moved a key of another node"
        );
    }
    assert_eq!(
        before, down,
        "raising then lowering did not restore placement"
    );
}

/// Reads during a removal never miss: the removed node's keys are served by
/// fallback until moved. (Exercised on all keys right after the change.)
#[test]
fn reads_do_not_miss_while_a_removed_node_drains() {
    let cluster = loaded_cluster();
    let victim = cluster.nodes()[0].id;
    cluster.remove_node(victim).unwrap();
    let mut served_by_victim = HashSet::new();
    for i in 0..KEYS {
        let got = cluster.get(&key(i)).unwrap();
        assert_eq!(
            got.value.as_deref(),
            Some(key(i).as_slice()),
            "key {i} missed"
        );
        if got.node == victim {
            served_by_victim.insert(i);
        }
    }
    assert!(cluster.wait_rebalanced(Duration::from_secs(60)));
    eprintln!(
        "{} reads were served by the draining node before its keys moved",
        served_by_victim.len()
    );
}

/// Under ketama placement the same guarantees hold: stores record MD5
/// positions, the mover filters by them, and after each kind of change
/// exactly the keys whose owner changed moved, to their owner. (Unlike
/// xxh3, one change may move keys between other nodes too, since every
/// node's point count follows from all the weights.)
#[test]
fn ketama_changes_move_exactly_the_keys_whose_owner_changed() {
    let config = ClusterConfig {
        placement: Placement::Ketama,
        ..ClusterConfig::default()
    };
    let cluster = load(Cluster::with_nodes(config, "10.0.0", 4, 1).unwrap());
    assert_eq!(cluster.ring().pin().point_count(), 4 * 160);
    let mut new = None;
    check_change(&cluster, || {
        new = Some(cluster.add_node("10.0.0.9:11212", 2).unwrap());
    });
    let new = new.unwrap();
    check_change(&cluster, || cluster.set_weight(new, 5).unwrap());
    let first = cluster.nodes()[0].id;
    check_change(&cluster, || cluster.remove_node(first).unwrap());
    assert_eq!(cluster.node_count(), 4);
}

/// `keys_scanned` counts each key once per sweep, also the keys moved onto
/// a node the sweep reaches after their old one (it once said 320 for 300
/// keys).
#[test]
fn a_sweep_counts_each_key_once() {
    let cluster = Cluster::with_nodes(ClusterConfig::default(), "cache", 3, 160).unwrap();
    for i in 0..300 {
        cluster.set(&key(i), key(i), None).unwrap();
    }
    let sweeps = cluster.rebalance_status().sweeps;
    // A new node sorts last, so every key moved to it is examined twice:
    // once where it was, once on the new node.
    cluster.add_node("cache-3", 160).unwrap();
    assert!(cluster.wait_rebalanced(Duration::from_secs(30)));
    let s = cluster.rebalance_status();
    assert_eq!(s.sweeps - sweeps, 1, "one change, one sweep: {s:?}");
    assert!(s.keys_moved > 0, "{s:?}");
    assert_eq!(s.keys_scanned, 300, "{s:?}");
}
