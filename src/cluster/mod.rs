//! The cluster: routing get/set/delete through the ring to cache nodes, and
//! membership changes that relocate keys without losing a write.
//!
//! This module owns the request path and membership. It never parses HTTP
//! (the server translates requests into calls here) and it never moves keys
//! itself: [`mover`] does that on its own thread. The protocol the
//! two follow is written down in [`mover`]'s module docs; this
//! module is one side of it.
//!
//! # The topology
//!
//! Everything a request needs is one immutable `Topology`, published
//! through the same `Published` cell as the ring's tables (loads stay
//! wait-free: one atomic load under a pin): the rings in play (the current
//! one first, then older ones whose keys may not have moved yet), and every
//! node store by id, draining nodes included. A request pins, loads the
//! topology once, and works from it; the exception is a get on embedded
//! nodes outside a migration, which reads the topology through its
//! thread's counted copy without pinning (see `Cluster::get_unpinned` and
//! rule 5 of the protocol). Membership edits are serialized by a mutex,
//! edit the [`Ring`], and publish a new topology that shares the ring's new
//! table.
//!
//! # Orderings
//!
//! * The topology is published through the crate's `Published` cell
//!   (Release swap, Acquire loads, retirement after an epoch grace period;
//!   its module holds the safety argument), so a request that loaded one
//!   may keep using it until it unpins. Its ring tables are the very
//!   tables the ring published, shared by `Arc`, not copies.
//! * The grace period the mover waits for before a sweep (see
//!   [`mover`]) also rests on the epoch protocol: every request that may
//!   write holds its pin from loading the topology until its store
//!   operation is done. An unpinned get takes no part in it: it writes no
//!   value (at most an entry's access stamp, or the removal of an entry
//!   already expired, which re-checks the expiry under the shard's write
//!   lock), and it trusts a miss only after an `Acquire` fence and a
//!   check that its topology is still the current one.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_epoch as epoch;

pub mod health;
pub mod mover;
mod topology;

pub use health::{FailurePolicy, HealthOptions};
pub use mover::RebalanceStatus;

use topology::{Inner, NodeSlot, Topology};

use crate::node::{
    Health, HealthStats, MemStore, NodeStats, RedisOptions, RedisStore, RemoteError,
    RemoteErrorKind, SetOutcome, Store, StoreError, Value,
};
use crate::ring::{NodeId, Placement, Ring, RingError};

/// How many rings may be in play before a membership change waits for the
/// mover to catch up. Each ring in play costs a read that misses one more
/// lookup, so the list is kept short; changes beyond it queue.
const MAX_RINGS_IN_PLAY: usize = 8;

/// How many times a read that missed everywhere retries when the topology
/// changed under it (see [`Cluster::get`]). Membership changes are operator
/// actions, so more than one retry is already rare.
const READ_RETRIES: usize = 8;

/// Settings of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Memory cap of each embedded node, in bytes.
    pub node_max_bytes: usize,
    /// The largest weight of one node (see [`Ring::add_node`]).
    pub max_weight: u32,
    /// How the ring places keys; fixed for the cluster's life.
    pub placement: Placement,
    /// How often the sweeper reclaims expired entries (and remote nodes
    /// refresh their counters).
    pub sweep_interval: Duration,
    /// How Redis nodes are reached.
    pub redis: RedisOptions,
    /// How Redis nodes are checked, ejected and readmitted.
    pub health: HealthOptions,
}

impl Default for ClusterConfig {
    /// 256 MiB per node, 10 000 vnodes at most, a TTL sweep every second.
    fn default() -> Self {
        ClusterConfig {
            node_max_bytes: 256 << 20,
            max_weight: crate::ring::DEFAULT_MAX_WEIGHT,
            placement: Placement::Xxh3,
            sweep_interval: Duration::from_secs(1),
            redis: RedisOptions::default(),
            health: HealthOptions::default(),
        }
    }
}

/// Why a cluster operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// The ring refused the membership change.
    Ring(RingError),
    /// The node asked to leave is the last one; a cluster keeps at least one.
    LastNode(NodeId),
    /// The cluster has no node to serve the request.
    NoNodes,
    /// The owning node refused the write.
    Store(StoreError),
    /// A new node's server did not answer.
    Unreachable(RemoteError),
    /// The node is ejected: it can be removed, not re-weighted, until it
    /// is readmitted.
    Ejected(NodeId),
    /// A new node's server already is node `node`.
    ServerTaken {
        /// The server's address as given.
        addr: String,
        /// The node that already is that server.
        node: NodeId,
    },
    /// A node the request needed could not answer: its server refused,
    /// failed or timed out.
    NodeFailed {
        /// The node.
        node: NodeId,
        /// What its server did.
        error: RemoteError,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Ring(e) => e.fmt(f),
            ClusterError::LastNode(id) => write!(
                f,
                "node {id} is the last node of the cluster and cannot be removed; add another node first"
            ),
            ClusterError::NoNodes => write!(f, "the cluster has no cache nodes; add one first"),
            ClusterError::Store(e) => e.fmt(f),
            ClusterError::NodeFailed { node, error } => write!(f, "cache node {node}: {error}"),
            ClusterError::Unreachable(error) => write!(f, "cannot add the node: {error}"),
            ClusterError::Ejected(id) => write!(
                f,
                "node {id} is ejected for failing its health checks; change its size after it is readmitted, or remove it"
            ),
            ClusterError::ServerTaken { addr, node } => write!(
                f,
                "Redis server {addr} already is node {node}; one server can back only one node"
            ),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<RingError> for ClusterError {
    fn from(e: RingError) -> Self {
        ClusterError::Ring(e)
    }
}

/// `absent` in place of an ejected node's refusal. What an ejected node
/// holds is forfeit: it is cleared before it serves again, so an older
/// owner that is ejected counts as holding nothing, for a read's fallback
/// and for a write's cleanup of older copies.
fn forfeit_if_ejected<T>(result: Result<T, StoreError>, absent: T) -> Result<T, StoreError> {
    match result {
        Err(StoreError::Remote(e)) if e.kind == RemoteErrorKind::Ejected => Ok(absent),
        r => r,
    }
}

/// A store call's result, with a remote failure attributed to `node`.
#[inline]
fn node_call<T>(node: NodeId, result: Result<T, StoreError>) -> Result<T, ClusterError> {
    result.map_err(|e| match e {
        StoreError::Remote(error) => ClusterError::NodeFailed { node, error },
        e => ClusterError::Store(e),
    })
}

/// What a new cache node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A store inside this process ([`MemStore`]).
    Embedded,
    /// A Redis server at `HOST:PORT` ([`RedisStore`]).
    Redis(String),
}

/// A request's result with the routing facts the server puts in headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<T> {
    /// The operation's result.
    pub value: T,
    /// The node that served the request (for a miss, the owner that was
    /// asked): `X-CacheServer-Index`.
    pub node: NodeId,
    /// Nodes in the current ring: `X-CacheServer-Count`.
    pub node_count: usize,
}

/// Where a node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// In the ring, serving its keys.
    Serving,
    /// Left the ring; still holds keys the mover has to move.
    Draining,
    /// In the ring but failing its health checks (policy `fail`, or the
    /// cap on ejected nodes reached): its keys get 503 at once.
    Down,
    /// Out of the ring for failing its health checks; readmitted (cleared
    /// first) when it recovers.
    Ejected,
}

impl NodeState {
    /// The word listings use: `serving`, `draining`, `down`, `ejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Serving => "serving",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
            NodeState::Ejected => "ejected",
        }
    }
}

/// A node as listings show it.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// The node's name.
    pub name: Arc<str>,
    /// Its weight: its vnode count under xxh3, its ketama weight under
    /// ketama (its last one if draining).
    pub weight: u32,
    /// Its point count in the current ring (its last count if draining).
    pub points: u32,
    /// Its share of the hash space in the current ring (0 if draining).
    pub share: f64,
    /// Serving, draining, down or ejected.
    pub state: NodeState,
    /// Its store's counters.
    pub stats: NodeStats,
    /// Its Redis server's address; `None` for an embedded node.
    pub redis: Option<String>,
    /// Its health-check counters (all 0 for an embedded node).
    pub health: HealthStats,
}

/// A cache cluster: nodes placed on a consistent hash ring, with live
/// membership changes and background relocation.
///
/// ```
/// use ringcache::cluster::{Cluster, ClusterConfig};
/// let cluster = Cluster::new(ClusterConfig::default());
/// let a = cluster.add_node("cache-0", 160).unwrap();
/// let put = cluster.set(b"k", b"v".to_vec(), None).unwrap();
/// assert_eq!(put.node, a);
/// let b = cluster.add_node("cache-1", 160).unwrap();
/// cluster.wait_rebalanced(std::time::Duration::from_secs(10));
/// let got = cluster.get(b"k").unwrap();
/// assert_eq!(got.value.as_deref(), Some(b"v".as_slice()));
/// assert_eq!(got.node_count, 2);
/// # let _ = b;
/// ```
pub struct Cluster {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("ring", &self.inner.ring)
            .finish()
    }
}

impl Cluster {
    /// An empty cluster; starts its mover and sweeper threads.
    pub fn new(config: ClusterConfig) -> Cluster {
        let inner = Arc::new(Inner::new(config));
        let threads = mover::spawn_threads(&inner);
        Cluster { inner, threads }
    }

    /// A cluster with nodes `prefix-0`..`prefix-{n-1}`, of weight `weight`
    /// each.
    ///
    /// # Errors
    ///
    /// As [`Cluster::add_node`].
    pub fn with_nodes(
        config: ClusterConfig,
        prefix: &str,
        n: usize,
        weight: u32,
    ) -> Result<Cluster, ClusterError> {
        let cluster = Cluster::new(config);
        for i in 0..n {
            cluster.add_node(&format!("{prefix}-{i}"), weight)?;
        }
        cluster.wait_rebalanced(Duration::from_secs(60));
        Ok(cluster)
    }

    /// The ring the cluster routes by, read-only: lookups and listings.
    /// Membership changes go through the cluster ([`Cluster::add_node`] and
    /// the rest), which moves the keys that follow them; an edit through the
    /// ring itself would leave the cluster's node stores out of step.
    ///
    /// ```compile_fail
    /// let cluster = ringcache::Cluster::new(Default::default());
    /// cluster.ring().add_node("sneaky", 160);
    /// ```
    pub fn ring(&self) -> crate::ring::RingView<'_> {
        self.inner.ring.view()
    }

    /// Routing facts for a request on `hash`: owner and node count.
    #[inline]
    fn route(topo: &Topology, hash: u64) -> Result<(NodeId, usize), ClusterError> {
        let ring = topo.current();
        let owner = ring.lookup_hash(hash).ok_or(ClusterError::NoNodes)?;
        Ok((owner, ring.node_count()))
    }

    /// Reads `key`.
    ///
    /// Takes no lock and never waits on another request. While a migration
    /// runs, a miss on the owner falls back to the key's owners under the
    /// older rings in play, then asks the owner once more (the mover copies
    /// to the new owner before it removes from the old one, so a key moved
    /// between the two reads is found by the second). On any miss, if the
    /// topology changed during the read, it starts over on the new one, at
    /// most `READ_RETRIES` times.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoNodes`] on an empty cluster;
    /// [`ClusterError::NodeFailed`] if a node the read needs (the owner, or
    /// during a migration an older owner) cannot answer.
    pub fn get(&self, key: &[u8]) -> Result<Served<Option<Value>>, ClusterError> {
        let hash = self.inner.config.placement.key_hash(key);
        match self.get_unpinned(hash, key) {
            Some(served) => Ok(served),
            None => self.get_pinned(hash, key),
        }
    }

    /// [`Cluster::get`] when the unpinned read cannot answer (remote
    /// nodes, a migration, an empty cluster, a miss on a topology
    /// superseded meanwhile, a thread whose locals are being torn down):
    /// kept out of line so that the common path stays short.
    #[inline(never)]
    fn get_pinned(&self, hash: u64, key: &[u8]) -> Result<Served<Option<Value>>, ClusterError> {
        {
            let guard = epoch::pin();
            let topo = self.inner.topology(&guard);
            if !topo.remote {
                // Embedded nodes only: the whole read under one pin. A
                // retry that finds a remote node on the newer topology
                // starts over below, off the pin.
                let latest = || {
                    let t = self.inner.topology(&guard);
                    (!t.remote).then_some(t)
                };
                if let Some(read) = self.read(topo, hash, key, latest) {
                    return read;
                }
            }
        }
        let held = self.inner.topology(&epoch::pin()).hold();
        let latest = || Some(self.inner.topology(&epoch::pin()).hold());
        self.read(held, hash, key, latest)
            .expect("a held topology is always usable")
    }

    /// The common case of [`Cluster::get`] without an epoch pin: embedded
    /// nodes only and no migration, the topology read through this
    /// thread's cached copy. A hit is the answer; a miss is the answer only
    /// if no topology was published during the read (rule 5 of the
    /// protocol, [`mover`]). `None` sends the read down the pinned path,
    /// which starts over (a miss seen here then counts twice in the
    /// owner's statistics, as a retried read's does).
    ///
    /// Why no pin: the mover's grace period waits for requests that may
    /// *write* under an older topology; a read writes no value (an access
    /// stamp at most, and it removes only entries already expired), and its
    /// staleness is settled by the check above, not by the grace period. A
    /// pin is a locked instruction (a full fence) and a walk of the
    /// thread's epoch state; in a loop of gets over 100k keys (bench group
    /// `get_1t_layers`), a pin per get made one node's gets 1.5–1.6x a bare
    /// map's instead of 1.1x.
    ///
    /// The price is memory, not correctness: a thread keeps the last
    /// embedded topology it read, and with it the stores of nodes dropped
    /// since (or of a whole cluster dropped since, entries and all), until
    /// its next get after a change, or until it exits.
    ///
    /// The owner's store is reached through the topology's `embedded`
    /// view: the ring answers the owner's member index
    /// ([`crate::ring::RingTable::lookup_slot`]) and the view holds that member's
    /// [`MemStore`], so the get calls it directly, with no search by id,
    /// no dynamic call and no `Result` to unwrap. Length matters here, not
    /// only misses: in a loop of gets the processor overlaps one get's
    /// cache misses with the next one's only while the get stays short;
    /// the routing in front of the node's get (the placement hash, the
    /// topology, the ring) costs a get 116–292 ns on the machine
    /// measured, by benchmark group and session, whether or not the key
    /// itself is a miss
    /// (`examples/get_path`, docs/performance.md, "What the edge is made
    /// of" and "With the key in the cache").
    #[inline]
    fn get_unpinned(&self, hash: u64, key: &[u8]) -> Option<Served<Option<Value>>> {
        if self.inner.has_remote() {
            return None;
        }
        // SAFETY: the closure reads the ring, the stores and the topology
        // cell; nothing it calls reads through the topology cache.
        unsafe {
            self.inner.with_cached_topology(|topo| {
                // `None` with a remote member or a migration running.
                let stores = topo.embedded.as_deref()?;
                let ring = topo.current();
                let slot = ring.lookup_slot(hash)?;
                #[cfg(test)]
                if let Some(hook) = tests::BETWEEN_ROUTE_AND_READ.with(|h| h.take()) {
                    hook();
                }
                let (node, store) = &stores[slot];
                let value = store.get(key);
                if value.is_none() && !self.inner.is_current(topo) {
                    return None;
                }
                Some(Served {
                    value,
                    node: *node,
                    node_count: stores.len(),
                })
            })
        }
        .flatten()
    }

    /// The read of [`Cluster::get`] from `topo`; `latest` loads the newest
    /// topology, or `None` if it cannot be used the way `topo` is (then
    /// this returns `None`).
    fn read<T: Deref<Target = Topology>>(
        &self,
        mut topo: T,
        hash: u64,
        key: &[u8],
        mut latest: impl FnMut() -> Option<T>,
    ) -> Option<Result<Served<Option<Value>>, ClusterError>> {
        let mut attempt = 0;
        loop {
            let (owner, node_count) = match Self::route(&topo, hash) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let found = (|| {
                if let Some(v) = node_call(owner, topo.store(owner).get(key))? {
                    return Ok(Some((v, owner)));
                }
                if topo.migrating() {
                    for old in topo.previous_owners(hash, owner) {
                        let copy = forfeit_if_ejected(topo.store(old).export(key), None);
                        if let Some(v) = node_call(old, copy)? {
                            return Ok(Some((v.value, old)));
                        }
                    }
                    if let Some(v) = node_call(owner, topo.store(owner).export(key))? {
                        return Ok(Some((v.value, owner)));
                    }
                }
                Ok(None)
            })();
            let served = |value, node| Served {
                value,
                node,
                node_count,
            };
            match found {
                Ok(Some((v, node))) => return Some(Ok(served(Some(v), node))),
                Err(e) => return Some(Err(e)),
                Ok(None) => {}
            }
            // A miss is only trusted if the topology did not change during
            // the read: a writer on a newer (migrating) topology may have
            // written the key to a new owner and deleted the copy this read
            // looked at (regression test: tests/cluster_stress.rs, which
            // caught a read on a settled topology missing exactly that way).
            let newest = latest()?;
            attempt += 1;
            if newest.generation == topo.generation || attempt > READ_RETRIES {
                return Some(Ok(served(None, owner)));
            }
            topo = newest;
        }
    }

    /// Stores `value` under `key`, expiring after `ttl` if given. The result
    /// says whether the key was new.
    ///
    /// **Locking behaviour:** no lock outside a migration; during one, the
    /// key's stripe lock for the store operation (see [`mover`]).
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoNodes`]; [`ClusterError::Store`] if the entry is
    /// larger than a node's whole memory cap; [`ClusterError::NodeFailed`]
    /// if the owner (or, during a migration, an older owner whose stale
    /// copy must go) cannot answer. After that error the write may or may
    /// not have landed, as with any timed-out request.
    pub fn set(
        &self,
        key: &[u8],
        value: impl Into<Value>,
        ttl: Option<Duration>,
    ) -> Result<Served<SetOutcome>, ClusterError> {
        let value = value.into();
        let expires_at = ttl.map(|t| Instant::now() + t);
        let hash = self.inner.config.placement.key_hash(key);
        self.write(
            hash,
            |owner| owner.set(hash, key, value.clone(), expires_at),
            // A live older copy means the key existed: this set replaced it.
            |old, outcome| {
                if old.delete(key)? {
                    *outcome = SetOutcome::Replaced;
                }
                Ok(())
            },
        )
    }

    /// Deletes `key`; the result says whether it had a value.
    ///
    /// **Locking behaviour:** as [`Cluster::set`]. During a migration the
    /// key is deleted from its owners under every ring in play, under its
    /// stripe lock, so neither a fallback read nor the mover can bring the
    /// value back.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoNodes`] on an empty cluster;
    /// [`ClusterError::NodeFailed`] as for [`Cluster::set`]: a delete that
    /// could not reach every copy is not acknowledged.
    pub fn delete(&self, key: &[u8]) -> Result<Served<bool>, ClusterError> {
        self.write(
            self.inner.config.placement.key_hash(key),
            |owner| owner.delete(key),
            |old, existed| {
                *existed |= old.delete(key)?;
                Ok(())
            },
        )
    }

    /// Runs a write (`op` on the key's owner) by the protocol of
    /// [`mover`]: lock-free outside a migration, holding the pin
    /// until the write is done (the mover's grace period relies on it), or
    /// for a cluster with remote nodes a [`topology::Held`] copy; during a
    /// migration, under the key's stripe lock with the topology loaded under
    /// it, then `cleanup` on each owner under the older rings in play, so no
    /// older copy can be read or moved back afterwards.
    fn write<T>(
        &self,
        hash: u64,
        op: impl Fn(&dyn Store) -> Result<T, StoreError>,
        cleanup: impl Fn(&dyn Store, &mut T) -> Result<(), StoreError>,
    ) -> Result<Served<T>, ClusterError> {
        let on = |topo: &Topology| -> Result<Served<T>, ClusterError> {
            let (owner, node_count) = Self::route(topo, hash)?;
            let mut value = node_call(owner, op(topo.store(owner)))?;
            for old in topo.previous_owners(hash, owner) {
                let cleaned = cleanup(topo.store(old), &mut value);
                node_call(old, forfeit_if_ejected(cleaned, ()))?;
            }
            Ok(Served {
                value,
                node: owner,
                node_count,
            })
        };
        let held = {
            let guard = epoch::pin();
            let topo = self.inner.topology(&guard);
            if !topo.migrating() {
                if !topo.remote {
                    return on(topo);
                }
                Some(topo.hold())
            } else {
                None
            }
        };
        if let Some(held) = held {
            return on(&held);
        }
        let _stripe = self.inner.lock_stripe(Inner::stripe_index(hash));
        let held = {
            let guard = epoch::pin();
            let topo = self.inner.topology(&guard);
            if !topo.remote {
                return on(topo);
            }
            topo.hold()
        };
        on(&held)
    }

    /// How many nodes are in the current ring (`X-CacheServer-Count`).
    pub fn node_count(&self) -> usize {
        let guard = epoch::pin();
        self.inner.topology(&guard).current().node_count()
    }

    /// Adds an embedded node of weight `weight`: its vnode count under
    /// xxh3, its ketama weight under ketama (see [`Ring::add_node`]).
    /// Returns at once; the keys it now owns move in the background (see
    /// [`Cluster::rebalance_status`]).
    ///
    /// **Locking behaviour:** takes the membership mutex; may wait while
    /// more than a few changes are already queued for the mover.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Ring`] as [`Ring::add_node`] refuses.
    pub fn add_node(&self, name: &str, weight: u32) -> Result<NodeId, ClusterError> {
        self.add_node_of(name, weight, &NodeKind::Embedded)
    }

    /// Adds a node of the given kind, as [`Cluster::add_node`]. A Redis
    /// node's server must answer `PING` first: this blocks for up to the
    /// command timeout, so call it off the request path.
    ///
    /// # Errors
    ///
    /// As [`Cluster::add_node`]; for a Redis node also
    /// [`ClusterError::Unreachable`] if its server does not answer, and
    /// [`ClusterError::ServerTaken`] if another node already is that
    /// server (two nodes on one server would each take the other's keys for
    /// strays and move them onto themselves, deleting them).
    pub fn add_node_of(
        &self,
        name: &str,
        weight: u32,
        kind: &NodeKind,
    ) -> Result<NodeId, ClusterError> {
        let store: Arc<dyn Store> = match kind {
            NodeKind::Embedded => Arc::new(MemStore::new(self.inner.config.node_max_bytes)),
            NodeKind::Redis(addr) => {
                self.check_server_free(addr)?;
                Arc::new(
                    RedisStore::connect(addr, &self.inner.config.redis, self.placement())
                        .map_err(ClusterError::Unreachable)?,
                )
            }
        };
        self.change(|ring| {
            let id = ring.add_node(name, weight)?;
            match store.remote_addr() {
                None => log::info!("node {id} ({name:?}) joins with {}", self.size_text(weight)),
                Some(addr) => log::info!(
                    "node {id} ({name:?}, Redis server {addr}) joins with {}",
                    self.size_text(weight)
                ),
            }
            Ok((
                id,
                Some(NodeSlot {
                    id,
                    name: Arc::from(name),
                    weight,
                    // Set from the ring's count by `change`.
                    points: 0,
                    store,
                }),
            ))
        })
    }

    /// Refuses `addr` if a node (member or draining) already is that server,
    /// comparing resolved socket addresses, so `localhost:6379` and
    /// `127.0.0.1:6379` are one server.
    fn check_server_free(&self, addr: &str) -> Result<(), ClusterError> {
        use std::net::ToSocketAddrs;
        let resolve = |a: &str| -> Vec<std::net::SocketAddr> {
            a.to_socket_addrs().map(|i| i.collect()).unwrap_or_default()
        };
        let wanted = resolve(addr);
        let taken = self.nodes().into_iter().find(|n| {
            n.redis.as_deref().is_some_and(|other| {
                other == addr || resolve(other).iter().any(|a| wanted.contains(a))
            })
        });
        match taken {
            Some(n) => Err(ClusterError::ServerTaken {
                addr: addr.to_string(),
                node: n.id,
            }),
            None => Ok(()),
        }
    }

    /// Removes node `id` from the ring at once; it drains in the background
    /// and is dropped once its keys have moved.
    ///
    /// # Errors
    ///
    /// [`ClusterError::LastNode`] for the last node, [`ClusterError::Ring`]
    /// for an unknown one.
    pub fn remove_node(&self, id: NodeId) -> Result<(), ClusterError> {
        {
            // An ejected node is out of the ring already: forget it.
            let _m = self.inner.membership.lock();
            let mut ejected = self.inner.ejected.lock();
            if let Some(at) = ejected.iter().position(|n| n.id == id) {
                let slot = ejected.remove(at);
                log::info!("node {id} ({}) removed while ejected", slot.name);
                return Ok(());
            }
        }
        self.change(|ring| {
            let snap = ring.pin();
            if snap.node(id).is_some() && snap.node_count() == 1 {
                return Err(ClusterError::LastNode(id));
            }
            drop(snap);
            ring.remove_node(id)?;
            log::info!("node {id} leaves the ring; its keys drain in the background");
            Ok(((), None))
        })
    }

    /// Sets node `id`'s weight (see [`Ring::add_node`]); the ring uses it
    /// at once and keys follow in the background.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Ring`] as [`Ring::set_weight`] refuses.
    pub fn set_weight(&self, id: NodeId, weight: u32) -> Result<(), ClusterError> {
        if self.inner.ejected.lock().iter().any(|n| n.id == id) {
            return Err(ClusterError::Ejected(id));
        }
        self.change(|ring| {
            ring.set_weight(id, weight)?;
            log::info!("node {id} now has {}", self.size_text(weight));
            Ok(((), None))
        })
    }

    /// How this cluster's ring places keys.
    pub fn placement(&self) -> Placement {
        self.inner.config.placement
    }

    /// "160 vnodes" or "weight 3", for logs.
    fn size_text(&self, n: u32) -> String {
        match self.placement() {
            Placement::Xxh3 => format!("{n} vnodes"),
            Placement::Ketama => format!("weight {n}"),
        }
    }

    /// Applies one membership edit and publishes the topology for it.
    fn change<T>(
        &self,
        edit: impl FnOnce(&Ring) -> Result<(T, Option<NodeSlot>), ClusterError>,
    ) -> Result<T, ClusterError> {
        change(&self.inner, edit)
    }

    /// Where relocation stands.
    pub fn rebalance_status(&self) -> RebalanceStatus {
        self.inner.progress.status()
    }

    /// Blocks until no relocation is pending or `timeout` passes; true if
    /// relocation is done. For tests, tools and graceful shutdown, never
    /// for the request path.
    pub fn wait_rebalanced(&self, timeout: Duration) -> bool {
        self.inner.progress.wait_idle(timeout)
    }

    /// Every node: ring members, draining nodes and ejected nodes, with
    /// their stats, sorted by id.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let guard = epoch::pin();
        let (topo, nodes) = self.inner.every_node(&guard);
        let shares = topo.current().shares();
        nodes
            .iter()
            .map(|(slot, listed_ejected)| {
                let member = shares.iter().find(|s| s.id == slot.id);
                let health = slot.store.as_redis().map(|r| r.health());
                // A readmission marks the node up before it publishes the
                // ring that holds it: until then it is still ejected, not
                // draining.
                let state = match (member, health) {
                    (_, Some(Health::Ejected)) => NodeState::Ejected,
                    (None, _) if *listed_ejected => NodeState::Ejected,
                    (None, _) => NodeState::Draining,
                    (Some(_), Some(Health::Down)) => NodeState::Down,
                    (Some(_), _) => NodeState::Serving,
                };
                NodeStatus {
                    id: slot.id,
                    name: slot.name.clone(),
                    weight: member.map_or(slot.weight, |s| s.weight),
                    points: member.map_or(slot.points, |s| s.points),
                    share: member.map_or(0.0, |s| s.share),
                    state,
                    stats: slot.store.stats(),
                    redis: slot.store.remote_addr().map(String::from),
                    health: slot
                        .store
                        .as_redis()
                        .map(|r| r.health_stats())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Node `id`'s store, member or draining, for inspection (tests, tools).
    pub fn store(&self, id: NodeId) -> Option<Arc<dyn Store>> {
        let guard = epoch::pin();
        let topo = self.inner.topology(&guard);
        topo.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.store.clone())
    }
}

/// Applies one membership edit and publishes the topology for it.
fn change<T>(
    inner: &Inner,
    edit: impl FnOnce(&Ring) -> Result<(T, Option<NodeSlot>), ClusterError>,
) -> Result<T, ClusterError> {
    change_then(inner, edit, || ())
}

/// As [`change`], then runs `published` once the new topology is
/// published, still under the membership lock (so no other edit comes
/// between).
///
/// A node's removal from the ejected list goes here, not in `edit`:
/// listings load the topology under the list's lock
/// (`Inner::every_node`), so a node taken off the list only once a topology
/// holding it is out is never missing from them (it may be on both for a
/// moment, which they handle).
fn change_then<T>(
    inner: &Inner,
    edit: impl FnOnce(&Ring) -> Result<(T, Option<NodeSlot>), ClusterError>,
    published: impl FnOnce(),
) -> Result<T, ClusterError> {
    let mut membership = inner.membership.lock();
    // Queue behind the mover when too many rings are in play.
    loop {
        let in_play = inner.topology(&epoch::pin()).rings.len();
        if in_play < MAX_RINGS_IN_PLAY {
            break;
        }
        drop(membership);
        inner.progress.wait_for_sweep(Duration::from_millis(100));
        membership = inner.membership.lock();
    }
    let (result, added) = edit(&inner.ring)?;
    let guard = epoch::pin();
    let old = inner.topology(&guard);
    // Shared with the ring, not copied: a topology holds the very table the
    // ring published.
    let table = inner.ring.snapshot();
    let mut rings = Vec::with_capacity(old.rings.len() + 1);
    rings.push(table);
    rings.extend(old.rings.iter().cloned());
    let mut nodes = old.nodes.clone();
    if let Some(slot) = added {
        // A readmitted node may still have its slot here, from an older
        // ring in play: the new slot (same store) replaces it, never sits
        // beside it.
        match nodes.binary_search_by_key(&slot.id, |n| n.id) {
            Ok(at) => nodes[at] = Arc::new(slot),
            Err(at) => nodes.insert(at, Arc::new(slot)),
        }
    }
    // Keep each slot's weight and point count in step with the ring (for
    // listings of draining nodes, which the ring no longer knows). Under
    // ketama one edit changes every node's point count.
    for slot in nodes.iter_mut() {
        if let Some(info) = rings[0].node(slot.id) {
            if (info.weight, info.points) != (slot.weight, slot.points) {
                *slot = Arc::new(NodeSlot {
                    id: slot.id,
                    name: slot.name.clone(),
                    weight: info.weight,
                    points: info.points,
                    store: slot.store.clone(),
                });
            }
        }
    }
    inner.publish(rings, nodes);
    drop(guard);
    published();
    inner.progress.request_sweep();
    drop(membership);
    Ok(result)
}

/// Takes node `id` out of the ring for failing its health checks: its
/// keys route to the other nodes at once (as misses), and nothing is
/// moved from it. It is kept, as ejected, until [`readmit`]
/// or a removal.
///
/// # Errors
///
/// [`ClusterError::LastNode`] for the last ring member,
/// [`ClusterError::Ring`] if it is not a member.
fn eject(inner: &Inner, id: NodeId, reason: &str) -> Result<(), ClusterError> {
    change(inner, |ring| {
        let snap = ring.pin();
        if snap.node(id).is_some() && snap.node_count() == 1 {
            return Err(ClusterError::LastNode(id));
        }
        drop(snap);
        let slot = {
            let guard = epoch::pin();
            inner
                .topology(&guard)
                .nodes
                .iter()
                .find(|n| n.id == id)
                .cloned()
                .ok_or(ClusterError::Ring(RingError::UnknownNode(id)))?
        };
        ring.remove_node(id)?;
        // Fail its calls before any request can route by a ring
        // without it (a held older topology still may): they must not
        // wait on a dead server.
        if let Some(r) = slot.store.as_redis() {
            r.set_health(Health::Ejected);
        }
        log::warn!(
            "node {id} ({}) ejected: {reason}; its keys go to the other nodes as misses",
            slot.name
        );
        inner.ejected.lock().push(slot);
        Ok(((), None))
    })
}

/// Puts ejected node `id` back into the ring under its old id, name
/// and weight. The caller has cleared its server first (see
/// [`health`]); the keys written elsewhere meanwhile move back by
/// relocation.
///
/// # Errors
///
/// [`ClusterError::Ring`] if it is not ejected or its name was taken
/// meanwhile.
fn readmit(inner: &Inner, id: NodeId) -> Result<(), ClusterError> {
    change_then(
        inner,
        |ring| {
            let slot = {
                let ejected = inner.ejected.lock();
                ejected
                    .iter()
                    .find(|n| n.id == id)
                    .cloned()
                    .ok_or(ClusterError::Ring(RingError::UnknownNode(id)))?
            };
            ring.readmit_node(id, &slot.name, slot.weight)?;
            if let Some(r) = slot.store.as_redis() {
                r.set_health(Health::Up);
            }
            log::info!("node {id} ({}) readmitted", slot.name);
            Ok((
                (),
                Some(NodeSlot {
                    id,
                    name: slot.name.clone(),
                    weight: slot.weight,
                    points: 0,
                    store: slot.store.clone(),
                }),
            ))
        },
        // Off the ejected list only now that a topology holds it (see
        // `change_then`).
        || inner.ejected.lock().retain(|n| n.id != id),
    )
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.inner.progress.shut_down();
        for t in self.threads.drain(..) {
            // A panicked background thread has already reported itself.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
    use std::sync::mpsc;

    thread_local! {
        /// Run once by this thread's next unpinned get, after it routed and
        /// before it reads the owner's store.
        pub(super) static BETWEEN_ROUTE_AND_READ: Cell<Option<Box<dyn FnOnce()>>> =
            const { Cell::new(None) };
    }

    /// A 2-node cluster holding a key (the first of `k0`, `k1`, ... on its
    /// first node) = `value`, with this thread's topology cache holding
    /// the settled topology; returns the cluster, the key and its owner.
    fn settled_with(value: &[u8]) -> (Cluster, Vec<u8>, NodeId) {
        let c = Cluster::with_nodes(ClusterConfig::default(), "n", 2, 160).unwrap();
        let owner = c.ring().nodes()[0].id;
        let key = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| c.ring().lookup(k) == Some(owner))
            .unwrap();
        c.set(&key, value.to_vec(), None).unwrap();
        assert_eq!(c.get(&key).unwrap().node, owner);
        (c, key, owner)
    }

    /// `c.get(key)`, with `meanwhile` run to its end on another thread
    /// after the get routed and before it reads the owner's store.
    fn get_around(
        c: &Cluster,
        key: &[u8],
        meanwhile: impl FnOnce() + Send,
    ) -> Served<Option<Value>> {
        std::thread::scope(|s| {
            let (go, went) = mpsc::channel::<()>();
            let (done, finished) = mpsc::channel::<()>();
            s.spawn(move || {
                // Fails the test instead of hanging it if the get took the
                // pinned path (the hook then never runs).
                went.recv_timeout(Duration::from_secs(60))
                    .expect("the get did not take the unpinned path");
                meanwhile();
                done.send(()).unwrap();
            });
            BETWEEN_ROUTE_AND_READ.with(|h| {
                h.set(Some(Box::new(move || {
                    go.send(()).unwrap();
                    finished.recv().unwrap();
                })))
            });
            let got = c.get(key).unwrap();
            let unused = BETWEEN_ROUTE_AND_READ.with(|h| h.take());
            assert!(unused.is_none(), "the get did not take the unpinned path");
            got
        })
    }

    /// `c.get(key)`, asserting that the unpinned path answered it.
    fn get_unpinned_only(c: &Cluster, key: &[u8]) -> Served<Option<Value>> {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        BETWEEN_ROUTE_AND_READ.with(|h| {
            h.set(Some(Box::new(move || {
                flag.store(true, AtomicOrdering::Relaxed)
            })))
        });
        let got = c.get(key).unwrap();
        BETWEEN_ROUTE_AND_READ.with(|h| h.take());
        assert!(
            ran.load(AtomicOrdering::Relaxed),
            "not served by the unpinned path"
        );
        got
    }

    /// Checks a topology's `embedded` view: present exactly when no
    /// migration runs and every node is embedded, and then the current
    /// ring's members in member order, each with the store the topology
    /// holds for it.
    fn assert_embedded_view(c: &Cluster) {
        let guard = epoch::pin();
        let topo = c.inner.topology(&guard);
        let Some(view) = topo.embedded.as_deref() else {
            assert!(
                topo.migrating() || topo.remote,
                "no view on a settled topology"
            );
            return;
        };
        assert!(!topo.migrating() && !topo.remote);
        let members: Vec<NodeId> = topo.current().nodes().iter().map(|n| n.id).collect();
        let ids: Vec<NodeId> = view.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, members);
        for (id, store) in view {
            let held = std::ptr::from_ref(topo.store(*id)).cast::<()>();
            assert!(
                std::ptr::eq(Arc::as_ptr(store).cast::<()>(), held),
                "node {id}"
            );
        }
    }

    /// Sets keys `k0..k199` to `v`, waits for the cluster to settle, and
    /// checks its view and that the unpinned path serves them.
    fn fill_and_check_view(c: &Cluster) {
        for i in 0..200 {
            c.set(format!("k{i}").as_bytes(), b"v".to_vec(), None)
                .unwrap();
        }
        assert!(c.wait_rebalanced(Duration::from_secs(30)));
        assert_embedded_view(c);
        assert_served_unpinned(c);
    }

    /// Every key `k0..k199` holds `v`, and a get of each is answered by
    /// the unpinned path, from the node the ring names.
    fn assert_served_unpinned(c: &Cluster) {
        for i in 0..200 {
            let key = format!("k{i}");
            let got = get_unpinned_only(c, key.as_bytes());
            assert_eq!(got.value.as_deref(), Some(b"v".as_slice()), "{key}");
            assert_eq!(Some(got.node), c.ring().lookup(key.as_bytes()), "{key}");
            assert_eq!(got.node_count, c.ring().node_count(), "{key}");
        }
    }

    #[test]
    fn the_embedded_view_follows_membership() {
        let c = Cluster::with_nodes(ClusterConfig::default(), "n", 3, 40).unwrap();
        fill_and_check_view(&c);
        let first = c.ring().nodes()[0].id;
        c.remove_node(first).unwrap();
        assert_embedded_view(&c);
        assert!(c.wait_rebalanced(Duration::from_secs(30)));
        assert_embedded_view(&c);
        let added = c.add_node("n-new", 80).unwrap();
        assert_embedded_view(&c);
        c.set_weight(added, 20).unwrap();
        assert!(c.wait_rebalanced(Duration::from_secs(30)));
        assert_embedded_view(&c);
        assert_served_unpinned(&c);
    }

    /// Under ketama a member can have no point at all (a weight too small
    /// for one MD5 group): it stays a member, in the view and in the node
    /// count, and is never an owner.
    #[test]
    fn the_embedded_view_under_ketama_keeps_pointless_members() {
        let config = ClusterConfig {
            placement: Placement::Ketama,
            ..ClusterConfig::default()
        };
        let c = Cluster::new(config);
        for (name, weight) in [("a", 100), ("b", 100), ("tiny", 1)] {
            c.add_node(name, weight).unwrap();
        }
        let shares = c.ring().nodes();
        let tiny = shares.iter().find(|n| &*n.name == "tiny").unwrap();
        assert_eq!(tiny.points, 0, "tiny has no point");
        fill_and_check_view(&c);
        assert_eq!(c.ring().node_count(), 3);
    }

    /// An unpinned get routes by a settled topology; before it reads the
    /// owner, the owner leaves, the mover moves the key away and the node
    /// is dropped (the mover's grace period does not wait for the get).
    /// Its miss must not be trusted.
    #[test]
    fn an_unpinned_miss_on_a_superseded_topology_is_retried() {
        let (c, key, owner) = settled_with(b"v");
        let got = get_around(&c, &key, || {
            c.remove_node(owner).unwrap();
            assert!(c.wait_rebalanced(Duration::from_secs(30)));
        });
        assert_eq!(got.value.as_deref(), Some(b"v".as_slice()), "false miss");
        assert_ne!(got.node, owner);
    }

    /// As above, but the copy the get routes to is deleted by a writer on
    /// the newer (migrating) topology (rule 3), not by the mover.
    #[test]
    fn an_unpinned_miss_after_a_writer_cleaned_the_old_owner_is_retried() {
        let (c, key, owner) = settled_with(b"v1");
        let got = get_around(&c, &key, || {
            c.remove_node(owner).unwrap();
            c.set(&key, b"v2".to_vec(), None).unwrap();
        });
        assert_eq!(got.value.as_deref(), Some(b"v2".as_slice()), "false miss");
    }

    /// `nodes()` (GET /nodes) lists every node once at every moment while
    /// a node is ejected and readmitted over and over: never missing (as
    /// it was when a readmission took the node off the ejected list before
    /// the topology that holds it was published) and never twice.
    #[test]
    fn listing_holds_every_node_while_one_is_ejected_and_readmitted() {
        let c = Cluster::with_nodes(ClusterConfig::default(), "n", 3, 16).unwrap();
        let victim = c.ring().nodes()[1].id;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let lister = s.spawn(|| {
                let mut listings = 0u64;
                while !stop.load(AtomicOrdering::Relaxed) {
                    let nodes = c.nodes();
                    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
                    assert_eq!(ids.len(), 3, "listing {listings}: {ids:?}");
                    // Ejected or serving, never seen draining on the way.
                    let draining: Vec<NodeId> = nodes
                        .iter()
                        .filter(|n| n.state == NodeState::Draining)
                        .map(|n| n.id)
                        .collect();
                    assert!(
                        draining.is_empty(),
                        "listing {listings}: draining {draining:?}"
                    );
                    listings += 1;
                }
                listings
            });
            // Stops the lister even if an edit below panics.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, AtomicOrdering::Relaxed);
                }
            }
            let stopper = Stop(&stop);
            for _ in 0..2_000 {
                eject(&c.inner, victim, "test").unwrap();
                readmit(&c.inner, victim).unwrap();
            }
            drop(stopper);
            assert!(lister.join().unwrap() > 0);
        });
    }
}
