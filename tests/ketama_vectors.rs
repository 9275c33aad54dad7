//! Ketama placement reproduces libmemcached's, vector for vector.
//!
//! `tests/vectors/ketama-libmemcached.tsv` comes from libmemcached's test
//! fixtures (BSD-3-Clause), a copy of the one the project keeps in its
//! shared test data. Its header names the servers in order with their
//! weights and the expected ring size; each row gives a key (as hex bytes),
//! the key's hash, the continuum point chosen and the server that owns it.
//! This test reads the server list from the header rather than restating it,
//! so the file alone is the expectation.

use std::collections::HashMap;

use ringcache::hash::{ketama_key_hash, Placement};
use ringcache::{NodeId, Ring};

const VECTORS: &str = include_str!("vectors/ketama-libmemcached.tsv");

/// The servers and weights from the header line after `Servers in order`.
fn servers() -> Vec<(String, u32)> {
    let mut lines = VECTORS.lines();
    lines
        .by_ref()
        .find(|l| l.contains("Servers in order"))
        .expect("the header names the servers");
    let list = lines.next().expect("a server line follows");
    list.trim_start_matches('#')
        .split(',')
        .map(|s| {
            let (name, weight) = s.trim().split_once(' ').expect("name weight");
            (name.to_owned(), weight.parse().expect("numeric weight"))
        })
        .collect()
}

/// The header's expected ring size.
fn expected_points() -> usize {
    let line = VECTORS
        .lines()
        .find(|l| l.contains("Expected ring size:"))
        .expect("the header gives the ring size");
    let after = line.split("Expected ring size:").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// One placement vector.
struct Vector {
    key: Vec<u8>,
    hash: u32,
    point: u32,
    server: String,
}

fn vectors() -> Vec<Vector> {
    VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("key_hex"))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "row {l:?}");
            let key = (0..f[0].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[0][i..i + 2], 16).expect("hex key"))
                .collect();
            Vector {
                key,
                hash: f[1].parse().unwrap(),
                point: f[2].parse().unwrap(),
                server: f[3].to_owned(),
            }
        })
        .collect()
}

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
    assert_eq!(vectors().len(), 99);
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
    for v in vectors() {
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
    let (ring, names) = ring();
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
    // And the file agrees, where it lists the key.
    if let Some(v) = vectors().iter().find(|v| v.key == b"VDEAAAAA") {
        assert_eq!(u64::from(v.point), first);
        assert_eq!(names[&first_owner], v.server);
    }
}

#[test]
fn point_counts_follow_the_weights() {
    let (ring, names) = ring();
    let counts: HashMap<String, u32> = ring
        .nodes()
        .into_iter()
        .map(|n| (names[&n.id].clone(), n.vnodes))
        .collect();
    // floor(w / 4300 * 40 * 8) * 4, by hand.
    for (name, want) in [("10.0.1.1", 176), ("10.0.1.5", 296), ("10.0.1.8", 28)] {
        assert_eq!(counts[name], want, "{name}");
    }
}
