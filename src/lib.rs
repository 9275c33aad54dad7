//! ringcache: a cache cluster behind one HTTP endpoint, whose keys are placed
//! on cache nodes by a lock-free consistent hash ring with virtual nodes.
//!
//! The crate is a library first; the `ringcache` binary wraps it.
//!
//! # Layout
//!
//! * [`hash`]: key hashing and virtual-node point derivation for both
//!   placements: xxh3-64 (the default) and libmemcached's weighted ketama
//!   (MD5), which agrees key for key with libmemcached clients and
//!   twemproxy. Depends on nothing else in the crate; placement is pinned by
//!   golden tests and libmemcached's vectors.
//! * [`ring`]: the lock-free ring: immutable snapshots published through
//!   `crossbeam-epoch`, wait-free lookups, serialized membership edits, and a
//!   naive reference ring for cross-checking (`ring::reference`, built only
//!   with the `testing` feature, which tests, benches and fuzzers turn on).
//!   Knows nothing of stored data.
//! * [`node`]: one cache node's store (`dashmap`): entries, TTL, memory cap
//!   with sampled-LRU eviction, stats; behind the [`node::Store`] trait.
//!   Knows nothing of the ring.
//! * [`cluster`]: routes get/set/delete through the ring to nodes, applies
//!   membership changes, publishes the epoch-protected topology requests
//!   route by (`cluster::topology`), and runs the background mover that
//!   relocates keys after a change, beside that private state
//!   ([`cluster::mover`]: its module docs state the protocol and its
//!   invariants), with the TTL sweeper and relocation progress. Never
//!   parses HTTP; the mover is never on a request's path.
//! * [`api`]: the HTTP API's meaning without HTTP: routes, typed commands,
//!   replies; one file per group of routes (`api::keys`, `api::nodes`...)
//!   holds their parsing, execution and JSON, and one route table in
//!   `api/mod.rs` lists them. Calls only the cluster's public API.
//! * [`http`]: the HTTP/1.1 server on may coroutines: its own connection
//!   loop (framing, limits, timeouts, back-pressure), headers, the admin
//!   token; translates requests to [`api`] commands. Holds no cache logic.
//! * [`settings`]: every value an operator can set, with its default, in
//!   one type the file fills and flags overlay; validated once.
//! * [`config`]: the YAML cluster file: parsing into [`settings`], hot
//!   reload; changes membership only through [`cluster`].
//! * [`telemetry`]: Prometheus metrics (request counters and latency on the
//!   request path, cluster gauges at scrape time).
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
//! ring.set_weight(b, 320)?; // b takes a larger share; only keys to b move
//! let after = ring.lookup(b"session:9").unwrap();
//! assert!(after == before || after == b);
//! # let _: NodeId = a;
//! # Ok::<(), ringcache::RingError>(())
//! ```
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod hash;
pub mod http;
pub mod node;
mod published;
pub mod ring;
pub mod settings;
pub mod telemetry;
mod watchdog;

pub use cluster::{Cluster, ClusterConfig, ClusterError};
pub use ring::{NodeId, Ring, RingError};
