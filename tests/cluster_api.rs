//! The cluster's API contract: routing facts, errors, TTL through the
//! cluster, listings.

use std::time::Duration;

use ringcache::cluster::{Cluster, ClusterConfig, ClusterError};
use ringcache::node::SetOutcome;
use ringcache::{NodeId, RingError};

fn three() -> Cluster {
    Cluster::with_nodes(ClusterConfig::default(), "cache", 3, 160).unwrap()
}

/// Every result names the owner under the ring and the ring's node count.
#[test]
fn results_carry_the_serving_node_and_the_node_count() {
    let cluster = three();
    let owner = cluster.ring().lookup(b"k").unwrap();
    let put = cluster.set(b"k", b"v".to_vec(), None).unwrap();
    assert_eq!(
        (put.value, put.node, put.node_count),
        (SetOutcome::Created, owner, 3)
    );
    let put = cluster.set(b"k", b"w".to_vec(), None).unwrap();
    assert_eq!(put.value, SetOutcome::Replaced);
    let got = cluster.get(b"k").unwrap();
    assert_eq!(
        (got.value.as_deref(), got.node),
        (Some(b"w".as_slice()), owner)
    );
    let del = cluster.delete(b"k").unwrap();
    assert_eq!((del.value, del.node, del.node_count), (true, owner, 3));
    let miss = cluster.get(b"k").unwrap();
    assert_eq!((miss.value, miss.node), (None, owner));
    assert!(!cluster.delete(b"k").unwrap().value);
}

/// A key set with a TTL is gone once it passes, through the cluster.
#[test]
fn ttl_expires_through_the_cluster() {
    let cluster = three();
    cluster
        .set(b"t", b"v".to_vec(), Some(Duration::from_millis(50)))
        .unwrap();
    assert!(cluster.get(b"t").unwrap().value.is_some());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(cluster.get(b"t").unwrap().value, None);
}

/// The last node cannot leave; an empty cluster says so; ring errors pass
/// through with their messages.
#[test]
fn membership_errors_are_typed_and_actionable() {
    let cluster = Cluster::new(ClusterConfig::default());
    assert_eq!(cluster.get(b"k").unwrap_err(), ClusterError::NoNodes);
    let only = cluster.add_node("solo", 10).unwrap();
    let err = cluster.remove_node(only).unwrap_err();
    assert_eq!(err, ClusterError::LastNode(only));
    assert!(err.to_string().contains("add another node first"));
    assert_eq!(
        cluster.remove_node(NodeId(42)).unwrap_err(),
        ClusterError::Ring(RingError::UnknownNode(NodeId(42)))
    );
    assert_eq!(
        cluster.add_node("solo", 10).unwrap_err(),
        ClusterError::Ring(RingError::DuplicateName("solo".into()))
    );
    assert!(matches!(
        cluster.set_weight(only, 0).unwrap_err(),
        ClusterError::Ring(RingError::WeightOutOfRange { weight: 0, .. })
    ));
    assert_eq!(cluster.node_count(), 1);
}

/// Listings show vnodes, shares summing to one, and per-node key counts.
#[test]
fn node_listing_adds_up() {
    let cluster = three();
    for i in 0..3000 {
        cluster
            .set(format!("k{i}").as_bytes(), b"v".to_vec(), None)
            .unwrap();
    }
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 3);
    assert!(nodes
        .iter()
        .all(|n| n.points == 160 && n.state == ringcache::cluster::NodeState::Serving));
    let share: f64 = nodes.iter().map(|n| n.share).sum();
    assert!((share - 1.0).abs() < 1e-9);
    assert_eq!(nodes.iter().map(|n| n.stats.keys).sum::<usize>(), 3000);
    let id = nodes[0].id;
    cluster.set_weight(id, 320).unwrap();
    let listed = cluster.nodes().into_iter().find(|n| n.id == id).unwrap();
    assert_eq!(listed.points, 320, "the new count is used at once");
    assert!(cluster.wait_rebalanced(Duration::from_secs(30)));
    let status = cluster.rebalance_status();
    assert!(!status.active && status.finished_at.is_some() && status.keys_moved > 0);
    assert_eq!(status.settled_version, cluster.ring().version());
}
