//! Key hashing and virtual-node point derivation.
//!
//! This module owns the hash functions that decide placement, and nothing
//! else: it depends on no other module of the crate. Placement is a contract
//! (see `tests/placement.rs` and `tests/ketama_vectors.rs`): changing any of
//! these functions moves keys in every deployed cluster, so all of them are
//! pinned by golden tests.
//!
//! A ring uses one of two [`Placement`] schemes, chosen when it is created:
//!
//! * [`Placement::Xxh3`], ringcache's own and the default:
//!   * [`key_hash`]: the position of a key on the ring, xxh3-64 of the key
//!     bytes with seed 0.
//!   * [`vnode_point`]: the position of virtual node `i` of the node called
//!     `name`, xxh3-64 of an unambiguous encoding of the pair `(name, i)`.
//! * [`Placement::Ketama`], libmemcached's weighted ketama, as twemproxy's
//!   `distribution: ketama` with `hash: md5` also computes it:
//!   * [`ketama_key_hash`]: the first 4 bytes of MD5(key), little-endian.
//!   * [`ketama_points`]: the 4 points of hash `k` of a server, the 4
//!     little-endian `u32` words of MD5(`"{name}-{k}"`).
//!   * [`ketama_points_per_server`]: how many points a server gets, from its
//!     share of the total weight, by libmemcached's `float` formula.
//!
//! No function uses a random seed, so the same membership gives the same
//! mapping in every process and after every restart.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use md5::{Digest, Md5};
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

/// How a ring places keys: which key hash and which points it uses.
///
/// Chosen when a ring is created and fixed for its life: switching scheme
/// would move nearly every key at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Placement {
    /// ringcache's own placement: xxh3-64 key hashes and [`vnode_point`]
    /// points over the 64-bit hash space. A node's weight is its vnode
    /// count: a node with weight `w` has exactly points `0..w`, so changing
    /// one node's weight moves keys only to or from that node.
    #[default]
    Xxh3,
    /// libmemcached's weighted ketama (also twemproxy's `distribution:
    /// ketama` with `hash: md5`) over the 32-bit hash space: MD5 key hashes
    /// ([`ketama_key_hash`]) and MD5 points ([`ketama_points`]). A node has a
    /// weight, and its point count follows from its share of the total
    /// weight ([`ketama_points_per_server`]): changing one node's weight, or
    /// adding or removing a node, changes every node's point count a little,
    /// exactly as it does in ketama. Ties between equal points go to the
    /// server that comes first in server order (the order nodes joined).
    Ketama,
}

impl Placement {
    /// Both schemes, for listings and error messages.
    pub const ALL: [Placement; 2] = [Placement::Xxh3, Placement::Ketama];

    /// The position of `key` on a ring of this scheme.
    ///
    /// Inlined into every lookup, with [`ketama_key_hash`] kept out of line:
    /// the xxh3 path then stays as short as before ketama existed (when
    /// both hashes were inlined here, this function grew past the inliner's
    /// budget and every default-mode lookup paid a call), while MD5's
    /// ~170 ns dwarfs a call.
    #[inline(always)]
    pub fn key_hash(self, key: &[u8]) -> u64 {
        match self {
            Placement::Xxh3 => key_hash(key),
            Placement::Ketama => u64::from(ketama_key_hash(key)),
        }
    }

    /// How many bits positions of this scheme have: 64 for xxh3, 32 for
    /// ketama (whose positions are `u32` values carried in a `u64`).
    #[inline]
    pub fn space_bits(self) -> u32 {
        match self {
            Placement::Xxh3 => 64,
            Placement::Ketama => 32,
        }
    }

    /// The longest node name this scheme accepts, in bytes.
    ///
    /// For ketama this is [`KETAMA_MAX_NAME_BYTES`]: libmemcached refuses a
    /// server whose `"{name}-{k}"` does not fit its 86-byte buffer, and
    /// twemproxy would hash past the end of the same buffer, so no peer
    /// could agree with us on a longer name.
    pub fn max_name_bytes(self) -> usize {
        match self {
            Placement::Xxh3 => MAX_NAME_BYTES,
            Placement::Ketama => KETAMA_MAX_NAME_BYTES,
        }
    }

    /// The scheme's name, as the CLI and the config file spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Xxh3 => "xxh3",
            Placement::Ketama => "ketama",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Placement {
    type Err = String;

    /// Parses `xxh3` or `ketama`.
    fn from_str(s: &str) -> Result<Placement, String> {
        Placement::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown hash {s:?}; use \"xxh3\" (the default) or \"ketama\""))
    }
}

/// Points per server in ketama for a server of average weight
/// (libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`, twemproxy's
/// `KETAMA_POINTS_PER_SERVER`): 40 MD5 digests of 4 points each.
pub const KETAMA_POINTS_PER_SERVER: u32 = 160;

/// The longest node name ketama placement accepts, in bytes: 74.
///
/// libmemcached and twemproxy format `"{name}-{k}"` into an 86-byte buffer
/// (85 bytes and a NUL). With `k` up to 10 digits, a name of at most
/// 85 - 1 - 10 = 74 bytes always fits.
pub const KETAMA_MAX_NAME_BYTES: usize = 74;

/// The ketama position of `key`: the first 4 bytes of MD5(key) as a
/// little-endian `u32` (libmemcached's and twemproxy's `hash_md5`).
///
/// ```
/// // From libmemcached's test vectors.
/// assert_eq!(ringcache::hash::ketama_key_hash(b"VDEAAAAA"), 4_294_758_837);
/// ```
#[inline(never)]
pub fn ketama_key_hash(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 4 ketama points of hash `k` of the server called `name`: MD5 of
/// `"{name}-{k}"` (decimal `k`), cut into 4 little-endian `u32` words. A
/// server with `n` points has hashes `0..n / 4`.
///
/// # Panics
///
/// Panics if `name` is longer than [`KETAMA_MAX_NAME_BYTES`]; the ring
/// rejects such names before they get here.
///
/// ```
/// // libmemcached's vectors: server "10.0.1.1" owns this point.
/// let pts: Vec<u32> = (0..44).flat_map(|k| ringcache::hash::ketama_points("10.0.1.1", k)).collect();
/// assert!(pts.contains(&1428303028));
/// ```
pub fn ketama_points(name: &str, k: u32) -> [u32; 4] {
    assert!(
        name.len() <= KETAMA_MAX_NAME_BYTES,
        "node name longer than KETAMA_MAX_NAME_BYTES"
    );
    // "{name}-{k}" fits: at most 74 + 1 + 10 bytes.
    const HOST_BYTES: usize = KETAMA_MAX_NAME_BYTES + 11;
    let mut buf = [0u8; HOST_BYTES];
    let mut rest = &mut buf[..];
    write!(rest, "{name}-{k}").expect("the buffer fits the longest name and index");
    let len = HOST_BYTES - rest.len();
    let d = Md5::digest(&buf[..len]);
    let word = |i: usize| u32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]);
    [word(0), word(1), word(2), word(3)]
}

/// How many points ketama gives a server of `weight` among `servers`
/// servers whose weights sum to `total_weight`: always a multiple of 4.
///
/// This is libmemcached's (and twemproxy's) formula, with its `float`
/// arithmetic reproduced step for step, since a different rounding would
/// give a server one hash more or less than its peers compute:
///
/// ```text
/// pct = (float)weight / (float)total_weight;
/// points = (uint32_t)(floorf((float)(pct * 160 / 4 * (float)servers + 0.0000000001)) * 4);
/// ```
///
/// ```
/// use ringcache::hash::ketama_points_per_server;
/// // Equal weights: 160 points each, whatever the number of servers.
/// assert_eq!(ketama_points_per_server(1, 3, 3), 160);
/// // libmemcached's vectors: 10.0.1.1 has weight 600 of 4300 among 8.
/// assert_eq!(ketama_points_per_server(600, 4300, 8), 176);
/// ```
pub fn ketama_points_per_server(weight: u32, total_weight: u32, servers: u32) -> u32 {
    if total_weight == 0 {
        return 0;
    }
    // Each step rounds to f32 as C does on x86-64 (FLT_EVAL_METHOD 0);
    // only the addition of the tiny constant happens in double.
    let pct = weight as f32 / total_weight as f32;
    let scaled = pct * KETAMA_POINTS_PER_SERVER as f32 / 4.0 * servers as f32;
    let nudged = (f64::from(scaled) + 0.000_000_000_1) as f32;
    (nudged.floor() * 4.0) as u32
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

    #[test]
    fn placement_names_round_trip() {
        for p in Placement::ALL {
            assert_eq!(p.as_str().parse::<Placement>(), Ok(p));
        }
        assert!("md5".parse::<Placement>().unwrap_err().contains("ketama"));
        assert_eq!(Placement::default(), Placement::Xxh3);
    }

    #[test]
    fn ketama_point_strings_use_decimal_indexes() {
        // The index is written in decimal: "a-10".
        let d = Md5::digest(b"a-10");
        let want = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        assert_eq!(ketama_points("a", 10)[0], want);
        assert_ne!(ketama_points("a", 1), ketama_points("a", 10));
        let name = "x".repeat(KETAMA_MAX_NAME_BYTES);
        let _ = ketama_points(&name, u32::MAX);
    }

    #[test]
    fn ketama_point_counts_sum_to_the_vectors_ring() {
        let weights = [600, 300, 200, 350, 1000, 800, 950, 100];
        let total: u32 = weights.iter().sum();
        let counts: Vec<u32> = weights
            .iter()
            .map(|&w| ketama_points_per_server(w, total, 8))
            .collect();
        assert_eq!(counts, [176, 88, 56, 104, 296, 236, 280, 28]);
        assert_eq!(counts.iter().sum::<u32>(), 1264);
        assert_eq!(ketama_points_per_server(1, 0, 0), 0);
    }
}
