//! ringcache: a cache cluster behind one HTTP endpoint, whose keys are placed
//! on cache nodes by a lock-free consistent hash ring with virtual nodes.
//!
//! The crate is a library first; the `ringcache` binary wraps it.
//!
//! # Layout
//!
//! * [`hash`]: key hashing and virtual-node point derivation (xxh3-64). Depends
//!   on nothing else in the crate; placement is pinned by golden tests.
//! * [`ring`]: the lock-free ring: immutable snapshots published through
//!   `crossbeam-epoch`, wait-free lookups, serialized membership edits, and a
//!   naive reference ring for cross-checking. Knows nothing of stored data.
//!
//! # Example
//!
//! ```
//! use ringcache::{NodeId, Ring};
//!
//! let ring = Ring::new();
//! let a = ring.add_node("cache-0", 160)?;
//! let b = ring.add_node("cache-1", 160)?;
//! let before = ring.lookup(b"session:9").unwrap();
//! ring.set_vnodes(b, 320)?; // b takes a larger share; only keys to b move
//! let after = ring.lookup(b"session:9").unwrap();
//! assert!(after == before || after == b);
//! # let _: NodeId = a;
//! # Ok::<(), ringcache::RingError>(())
//! ```
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

pub mod hash;
pub mod ring;

pub use ring::{NodeId, Ring, RingError};
