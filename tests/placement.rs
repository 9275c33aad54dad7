//! Placement is a contract: these golden values pin the key hash, the vnode
//! point derivation and the ring's "first point >= hash, wrapping" rule, so
//! an accidental change to any of them fails loudly instead of silently
//! moving every key of every deployed cluster.
//!
//! The expected values were computed independently of this crate, with the
//! Python `xxhash` package:
//!
//! ```text
//! import xxhash, struct, bisect
//! def vp(n, i):
//!     b = n.encode()
//!     return xxhash.xxh3_64_intdigest(bytes([len(b)]) + b + struct.pack('<I', i))
//! pts = sorted((vp(f'cache-{j}', i), f'cache-{j}') for j in range(3) for i in range(160))
//! ps = [p for p, _ in pts]
//! for k in range(16):
//!     h = xxhash.xxh3_64_intdigest(f'key-{k}'.encode())
//!     print(k, pts[bisect.bisect_left(ps, h) % len(ps)][1])
//! ```

use ringcache::hash::{key_hash, vnode_point};
use ringcache::Ring;

/// xxh3-64 with seed 0, as the reference implementation computes it.
#[test]
fn key_hash_is_xxh3_64_seed_0() {
    assert_eq!(key_hash(b""), 0x2d06800538d394c2);
    assert_eq!(key_hash(b"a"), 0xe6c632b61e964e1f);
    assert_eq!(key_hash(b"user:1"), 0x3b577afd7fed9501);
    assert_eq!(key_hash(b"session:abc"), 0x00c6bcdf2ba3e0fc);
}

/// Point i of a node is xxh3-64 of `[len] ++ name ++ i as u32 LE`.
#[test]
fn vnode_points_are_pinned() {
    assert_eq!(vnode_point("cache-0", 0), 0xf9ddccbae4bda3ed);
    assert_eq!(vnode_point("cache-0", 159), 0x9dcf3a669a97c0ea);
    assert_eq!(vnode_point("node1", 0), 0x39e750b467a82321);
    assert_eq!(vnode_point("node", 10), 0x7c10e40e7539f22d);
}

const GOLDEN: [(&str, &str); 16] = [
    ("key-0", "cache-0"),
    ("key-1", "cache-0"),
    ("key-2", "cache-1"),
    ("key-3", "cache-2"),
    ("key-4", "cache-2"),
    ("key-5", "cache-0"),
    ("key-6", "cache-2"),
    ("key-7", "cache-2"),
    ("key-8", "cache-0"),
    ("key-9", "cache-2"),
    ("key-10", "cache-2"),
    ("key-11", "cache-1"),
    ("key-12", "cache-2"),
    ("key-13", "cache-2"),
    ("key-14", "cache-2"),
    ("key-15", "cache-2"),
];

fn owner_name(ring: &Ring, key: &str) -> String {
    let snap = ring.pin();
    let id = snap.lookup(key.as_bytes()).expect("ring has nodes");
    snap.node(id).expect("owner is a member").name.to_string()
}

/// The default cluster (cache-0..cache-2, 160 vnodes each) places these keys
/// exactly here, in whatever order the nodes were added.
#[test]
fn default_cluster_placement_is_pinned() {
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let ring = Ring::new();
        for i in order {
            ring.add_node(&format!("cache-{i}"), 160).unwrap();
        }
        for (key, expected) in GOLDEN {
            assert_eq!(
                owner_name(&ring, key),
                expected,
                "key {key}, add order {order:?}"
            );
        }
    }
}

/// Reaching the same membership through vnode edits and a removed extra node
/// gives the same placement as building it directly.
#[test]
fn placement_survives_edit_history() {
    let ring = Ring::new();
    let ids: Vec<_> = (0..3)
        .map(|i| ring.add_node(&format!("cache-{i}"), 7).unwrap())
        .collect();
    let extra = ring.add_node("cache-extra", 500).unwrap();
    for &id in &ids {
        ring.set_weight(id, 1000).unwrap();
        ring.set_weight(id, 160).unwrap();
    }
    ring.remove_node(extra).unwrap();
    for (key, expected) in GOLDEN {
        assert_eq!(owner_name(&ring, key), expected, "key {key}");
    }
}
