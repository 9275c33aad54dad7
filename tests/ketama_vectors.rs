//! Ketama placement reproduces libmemcached's, vector for vector.
//!
//! `tests/vectors/ketama-libmemcached.tsv` comes from libmemcached's test
//! fixtures (BSD-3-Clause), a copy of the one the project keeps in its
//! shared test data. Its header names the servers in order with their
//! weights and the expected ring size; each row gives a key (as hex bytes),
//! the key's hash, the continuum point chosen and the server that owns it.
//! This test reads the server list from the header rather than restating it,
//! so the file alone is the expectation.

mod vectors;

use std::collections::HashMap;

use ringcache::hash::{ketama_key_hash, Placement};
use ringcache::{NodeId, Ring};
use vectors::{expected_points, rows, servers};

/// The vectors' ring, built through the public API in server order.
fn ring() -> (Ring, HashMap<NodeId, String>) {
    let ring = Ring::with_placement(Placement::Ketama, 10_000);
    let mut names = HashMap::new();
    for (name, weight) in servers() {
        let id = ring.add_node(&name, weight).unwrap();
        names.insert(id, name);
    }
    (ring, names)
}

#[test]
fn the_file_is_what_the_tests_expect() {
    assert_eq!(servers().len(), 8);
    assert_eq!(servers()[0], ("10.0.1.1".to_owned(), 600));
    assert_eq!(rows().len(), 99);
}

#[test]
fn ring_has_the_expected_point_count() {
    let (ring, _) = ring();
    assert_eq!(ring.pin().point_count(), expected_points());
    assert_eq!(expected_points(), 1264);
}

#[test]
fn every_vector_reproduces_hash_point_and_server() {
    let (ring, names) = ring();
    let snap = ring.pin();
    let mut failures = Vec::new();
    for v in rows() {
        let hash = ketama_key_hash(&v.key);
        let point = snap.point_for(&v.key);
        let owner = snap.lookup(&v.key).map(|id| names[&id].as_str());
        if hash != v.hash
            || snap.key_hash(&v.key) != u64::from(v.hash)
            || point != Some(u64::from(v.point))
            || owner != Some(v.server.as_str())
        {
            failures.push(format!(
                "key {:?}: got hash {hash}, point {point:?}, server {owner:?}; want {}, {}, {}",
                String::from_utf8_lossy(&v.key),
                v.hash,
                v.point,
                v.server
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 99 vectors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vdeaaaaa_wraps_to_the_first_point() {
    let (ring, _) = ring();
    let snap = ring.pin();
    let (first, first_owner) = snap.points().next().unwrap();
    let (last, _) = snap.points().last().unwrap();
    let hash = snap.key_hash(b"VDEAAAAA");
    assert_eq!(hash, u64::from(ketama_key_hash(b"VDEAAAAA")));
    assert!(
        hash > last,
        "hash {hash} must lie past the last point {last}"
    );
    assert_eq!(snap.point_for(b"VDEAAAAA"), Some(first));
    assert_eq!(snap.lookup(b"VDEAAAAA"), Some(first_owner));
}

#[test]
fn point_counts_follow_the_weights() {
    let (ring, names) = ring();
    let counts: HashMap<String, u32> = ring
        .nodes()
        .into_iter()
        .map(|n| (names[&n.id].clone(), n.points))
        .collect();
    // floor(w / 4300 * 40 * 8) * 4, by hand.
    for (name, want) in [("10.0.1.1", 176), ("10.0.1.5", 296), ("10.0.1.8", 28)] {
        assert_eq!(counts[name], want, "{name}");
    }
}
