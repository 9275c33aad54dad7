//! Key hashing and virtual-node point derivation.
//!
//! This module owns the two hash functions that decide placement, and
//! nothing else: it depends on no other module of the crate. Placement is a
//! contract (see `tests/placement.rs`): changing either function moves keys
//! in every deployed cluster, so both are pinned by golden tests.
//!
//! * [`key_hash`]: the position of a key on the ring, xxh3-64 of the key
//!   bytes with seed 0.
//! * [`vnode_point`]: the position of virtual node `i` of the node called
//!   `name`, xxh3-64 of an unambiguous encoding of the pair `(name, i)`.
//!
//! Neither function uses a random seed, so the same membership gives the same
//! mapping in every process and after every restart.

use xxhash_rust::xxh3::xxh3_64;

/// The largest node name, in bytes, that [`vnode_point`] is defined for.
///
/// 255 bytes is generous for a host name or `host:port` (DNS names stop at
/// 253) and keeps point derivation on a small stack buffer.
pub const MAX_NAME_BYTES: usize = 255;

/// Hashes a key to its position on the ring (xxh3-64, seed 0).
///
/// ```
/// assert_eq!(ringcache::hash::key_hash(b""), 0x2d06800538d394c2);
/// ```
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The ring position of virtual node `index` of the node called `name`.
///
/// The hashed bytes are `[len(name) as u8] ++ name ++ index as u32 LE`. The
/// length prefix makes the encoding injective: `("node1", 0)` and
/// `("node", 10)` hash different byte strings, which a plain
/// `name + index.to_string()` would not guarantee. Point `index` depends only
/// on `(name, index)`, so raising a node's vnode count from `v` to `w` adds
/// exactly points `v..w` and changes no other point.
///
/// # Panics
///
/// Panics if `name` is longer than [`MAX_NAME_BYTES`]; the ring rejects such
/// names before they get here.
///
/// ```
/// use ringcache::hash::vnode_point;
/// assert_ne!(vnode_point("node1", 0), vnode_point("node", 10));
/// ```
#[inline]
pub fn vnode_point(name: &str, index: u32) -> u64 {
    let name = name.as_bytes();
    let len = u8::try_from(name.len()).expect("node name longer than MAX_NAME_BYTES");
    let mut buf = [0u8; 1 + MAX_NAME_BYTES + 4];
    buf[0] = len;
    buf[1..1 + name.len()].copy_from_slice(name);
    buf[1 + name.len()..1 + name.len() + 4].copy_from_slice(&index.to_le_bytes());
    xxh3_64(&buf[..1 + name.len() + 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unambiguous_for_digit_suffixes() {
        assert_ne!(vnode_point("node1", 0), vnode_point("node", 10));
        assert_ne!(vnode_point("a", 1), vnode_point("a\u{1}", 0));
    }

    #[test]
    fn points_are_pure_functions_of_name_and_index() {
        assert_eq!(vnode_point("cache-0", 7), vnode_point("cache-0", 7));
        assert_ne!(vnode_point("cache-0", 7), vnode_point("cache-0", 8));
    }

    #[test]
    fn longest_name_is_accepted() {
        let name = "x".repeat(MAX_NAME_BYTES);
        let _ = vnode_point(&name, u32::MAX);
    }

    #[test]
    #[should_panic(expected = "longer than MAX_NAME_BYTES")]
    fn over_long_name_panics() {
        let name = "x".repeat(MAX_NAME_BYTES + 1);
        let _ = vnode_point(&name, 0);
    }
}
