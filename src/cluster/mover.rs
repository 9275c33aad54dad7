//! Relocation: the background mover, the TTL sweeper, and their progress.
//!
//! This module owns the work that follows a membership change: moving every
//! key whose owner changed to its new owner. It runs on its own OS threads
//! and is never on a request's path; requests only read the topology it
//! publishes and, during a migration, share per-key stripe locks with it.
//!
//! # The protocol
//!
//! Terms: the *topology* ([`crate::cluster`]) holds the rings in play (the
//! current ring first, then older rings whose keys may not have moved yet)
//! and every node store, draining ones included. A *migration* runs while
//! more than one ring is in play. A *sweep* is one pass of the mover over
//! every key of every node.
//!
//! 1. **A change publishes at once.** A membership change edits the ring,
//!    publishes a topology whose rings are `[new, previous rings...]`, and
//!    asks the mover for a sweep. It returns without waiting.
//! 2. **Grace period.** Before a sweep the mover waits until every request
//!    that was in flight when the sweep's starting topology was published
//!    has finished (an epoch grace period: a deferred closure that the
//!    collector runs only once every thread pinned before it has unpinned;
//!    each request holds its pin from loading the topology until its store
//!    operation is done). After it, every request in flight routes by a
//!    topology at least as new as the sweep's, so **no write lands on a node
//!    the mover has already swept under an older ring**.
//! 3. **Writers during a migration** take the key's stripe lock, load the
//!    topology under it, write to the key's owner under the current ring,
//!    and delete the key from its owners under the older rings in play.
//!    Deletes do the same (delete from every in-play owner). Outside a
//!    migration, writers take no lock.
//! 4. **The mover**, for each key on each node, takes the key's stripe lock,
//!    loads the current topology, and if the node is not the key's owner,
//!    copies the entry to the owner *only if the owner has no live value*
//!    (a write there is newer), then removes it from the node. Copy before
//!    remove means a key is always on at least one of its in-play owners.
//!    The copy keeps the entry's last access; an owner at its memory cap
//!    makes room by its own eviction policy, in which the moved entry
//!    competes by that age, and every entry so evicted (the moved one, or
//!    those it displaced) is counted in [`RebalanceStatus::keys_dropped`].
//! 5. **Readers** take no lock: owner first; on a miss during a migration,
//!    the owners under the older rings; then the owner again (a key the
//!    mover moved between the first two reads is there now). On any miss,
//!    if the topology changed meanwhile, start over on the new one: a
//!    writer on a newer topology may have written the key to its new owner
//!    and deleted the copy an older topology points to (3). Retries are
//!    bounded (8); a read that loses that race eight times in a row, under
//!    membership changes arriving faster than one read, reports a miss.
//! 6. **End of a sweep.** If no change arrived since the sweep started, every
//!    key is on its owner: the mover publishes a topology with only the
//!    current ring (the migration is over; writers return to the lock-free
//!    path) and drops the draining nodes. Otherwise the rings older than the
//!    sweep's starting ring are let go (no key is on their owners any more)
//!    and another sweep starts.
//!
//! Why the invariants hold:
//!
//! * *No lost write*: an acknowledged write is on the owner under a ring in
//!   play (2, 3); the mover only moves it to a newer owner, copying first
//!   (4); readers check every in-play owner of their topology and retry on
//!   a newer one when theirs went stale (5); a node is dropped only when it
//!   owns nothing under any ring in play after a sweep that covered it.
//! * *No resurrection*: a delete removes every in-play copy under the
//!   stripe lock; the mover copies only entries it finds under that lock.
//! * *No waiting reads*: readers take no lock; ring lookups are wait-free.
//! * *Minimal movement*: the mover moves a key only when its owner differs
//!   from the node holding it, once.
//! * *Convergence*: (6) ends a migration only after a sweep during which the
//!   ring did not change.
//! * *Drain before drop*: a removed node leaves the ring (and the node
//!   count) at once but keeps its slot until (6).
//!
//! # Orderings
//!
//! The progress counters are `Relaxed` statistics. Everything else is
//! ordered by mutexes (membership, stripes, progress) and by the topology's
//! Release/Acquire publication (see [`crate::cluster`]). The grace period's
//! flag is stored `Release` by the deferred closure and loaded `Acquire` by
//! the mover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_epoch as epoch;
use parking_lot::{Condvar, Mutex};

use super::topology::{Inner, NodeSlot};
use crate::node::{ImportOutcome, Key};

/// Where relocation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebalanceStatus {
    /// True from a membership change until its keys have all moved.
    pub active: bool,
    /// Keys examined by the current (or last) run.
    pub keys_scanned: u64,
    /// Keys moved by the current (or last) run.
    pub keys_moved: u64,
    /// Keys the cluster lost because of the current (or last) run: entries
    /// that imports evicted from new owners at their memory cap (other
    /// entries there, or the moved entry itself when everything there was
    /// accessed more recently), plus entries a new owner refused as larger
    /// than its cap. Nonzero whenever moved keys do not fit beside what the
    /// new owners hold, e.g. when a node is removed from a full cluster.
    pub keys_dropped: u64,
    /// Keys dropped by relocation since the cluster was created (as
    /// `keys_dropped`, summed over runs).
    pub total_dropped: u64,
    /// When the current (or last) run started.
    pub started_at: Option<SystemTime>,
    /// When the last run finished (`None` while one is active).
    pub finished_at: Option<SystemTime>,
    /// Runs started since the cluster was created (a run lasts from a change
    /// until the keys have settled, however many changes it absorbs).
    pub runs: u64,
    /// Sweeps completed since the cluster was created.
    pub sweeps: u64,
    /// Keys moved since the cluster was created.
    pub total_moved: u64,
    /// Ring version the mover last brought every key to.
    pub settled_version: u64,
}

struct ProgressState {
    /// Sweeps asked for (one per change).
    requested: u64,
    /// Requests that a finished sweep has covered.
    handled: u64,
    shutdown: bool,
    status: RebalanceStatus,
}

/// Shared progress of the mover, and the signals between it, changes and
/// waiters.
pub(super) struct Progress {
    state: Mutex<ProgressState>,
    cond: Condvar,
    scanned: AtomicU64,
    moved: AtomicU64,
    dropped: AtomicU64,
    total_moved: AtomicU64,
    total_dropped: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            state: Mutex::new(ProgressState {
                requested: 0,
                handled: 0,
                shutdown: false,
                status: RebalanceStatus::default(),
            }),
            cond: Condvar::new(),
            scanned: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            total_moved: AtomicU64::new(0),
            total_dropped: AtomicU64::new(0),
        }
    }

    /// Records a change that needs a sweep; starts a run if none is active.
    pub(super) fn request_sweep(&self) {
        let mut s = self.state.lock();
        s.requested += 1;
        if !s.status.active {
            s.status.active = true;
            s.status.runs += 1;
            s.status.started_at = Some(SystemTime::now());
            s.status.finished_at = None;
            // Relaxed: counters, reset while no sweep runs (active was false).
            self.scanned.store(0, Ordering::Relaxed);
            self.moved.store(0, Ordering::Relaxed);
            self.dropped.store(0, Ordering::Relaxed);
        }
        self.cond.notify_all();
    }

    /// A snapshot of the status with live counters.
    pub(super) fn status(&self) -> RebalanceStatus {
        let s = self.state.lock();
        let mut status = s.status.clone();
        status.keys_scanned = self.scanned.load(Ordering::Relaxed);
        status.keys_moved = self.moved.load(Ordering::Relaxed);
        status.keys_dropped = self.dropped.load(Ordering::Relaxed);
        status.total_moved = self.total_moved.load(Ordering::Relaxed);
        status.total_dropped = self.total_dropped.load(Ordering::Relaxed);
        status
    }

    /// Waits until no run is active, or `timeout`; true if idle.
    pub(super) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.status.active && !s.shutdown {
            if self.cond.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        !s.status.active
    }

    /// Waits until the next sweep completes, or `timeout`.
    pub(super) fn wait_for_sweep(&self, timeout: Duration) {
        let mut s = self.state.lock();
        let sweeps = s.status.sweeps;
        let deadline = Instant::now() + timeout;
        while s.status.sweeps == sweeps && !s.shutdown {
            if self.cond.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
    }

    /// Stops the background threads.
    pub(super) fn shut_down(&self) {
        self.state.lock().shutdown = true;
        self.cond.notify_all();
    }

    fn is_shut_down(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Waits until a sweep is requested; false on shutdown.
    fn wait_for_request(&self) -> bool {
        let mut s = self.state.lock();
        while s.requested == s.handled && !s.shutdown {
            self.cond.wait(&mut s);
        }
        !s.shutdown
    }

    /// Requests made so far. Read under the membership mutex, it matches
    /// the topology (changes publish and request under that mutex).
    fn requested(&self) -> u64 {
        self.state.lock().requested
    }

    /// Records a finished sweep covering requests up to `covered`.
    fn sweep_done(&self, covered: u64, settled: Option<u64>) {
        let mut s = self.state.lock();
        s.handled = s.handled.max(covered);
        s.status.sweeps += 1;
        if let Some(version) = settled {
            if s.handled == s.requested {
                s.status.active = false;
                s.status.finished_at = Some(SystemTime::now());
                s.status.settled_version = version;
            }
        }
        self.cond.notify_all();
    }

    /// Sleeps for `period` unless shut down first; false on shutdown.
    fn sleep(&self, period: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.shutdown {
            self.cond.wait_for(&mut s, period);
        }
        !s.shutdown
    }
}

/// Starts the mover and the TTL sweeper for a cluster.
pub(super) fn spawn_threads(inner: &Arc<Inner>) -> Vec<JoinHandle<()>> {
    let mover = {
        let inner = inner.clone();
        std::thread::Builder::new()
            .name("ringcache-mover".into())
            .spawn(move || run_mover(&inner))
            .expect("spawning the mover thread")
    };
    let sweeper = {
        let inner = inner.clone();
        std::thread::Builder::new()
            .name("ringcache-sweeper".into())
            .spawn(move || run_sweeper(&inner))
            .expect("spawning the sweeper thread")
    };
    vec![mover, sweeper]
}

/// Waits until every thread that was pinned when this was called has
/// unpinned at least once (an epoch grace period). Returns early, false,
/// on shutdown.
fn grace_period(progress: &Progress) -> bool {
    let done = Arc::new(AtomicBool::new(false));
    {
        let flag = done.clone();
        let guard = epoch::pin();
        // The collector runs this only after the global epoch has advanced
        // twice past the bag's epoch, which needs every thread pinned now to
        // have unpinned (crossbeam-epoch's reclamation guarantee).
        // Release pairs with the Acquire load below.
        guard.defer(move || flag.store(true, Ordering::Release));
        guard.flush();
    }
    while !done.load(Ordering::Acquire) {
        // Pinning and flushing drives epoch advancement and collection.
        epoch::pin().flush();
        if progress.is_shut_down() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// The mover thread: one sweep per batch of requests, until shutdown.
fn run_mover(inner: &Inner) {
    while inner.progress.wait_for_request() {
        // The sweep's starting point, and the requests it covers, read
        // together: changes publish and request under the membership mutex.
        let (start_version, nodes, covered) = {
            let _m = inner.membership.lock();
            let guard = epoch::pin();
            let topo = inner.topology(&guard);
            let covered = inner.progress.requested();
            (topo.current().version(), topo.nodes.clone(), covered)
        };
        if !grace_period(&inner.progress) {
            return;
        }
        for slot in &nodes {
            sweep_node(inner, slot);
            if inner.progress.is_shut_down() {
                return;
            }
        }
        finish_sweep(inner, start_version, covered);
    }
}

/// Moves every key of `slot` whose owner is another node.
///
/// Each page is filtered by the store under one pin, with no stripe lock: a
/// key that the current ring places on `slot` is where it belongs and is
/// skipped (if the ring changes after the check, the change requested
/// another sweep). Only the candidates go through [`move_key`], which
/// re-checks under the key's stripe lock.
fn sweep_node(inner: &Inner, slot: &NodeSlot) {
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let page = {
            let guard = epoch::pin();
            let ring = inner.topology(&guard).current();
            slot.store
                .scan(c, &|hash| ring.lookup_hash(hash) != Some(slot.id))
        };
        inner
            .progress
            .scanned
            .fetch_add(page.examined as u64, Ordering::Relaxed);
        // The store hands back each key's placement hash: no key is
        // hashed again here (an MD5 under ketama).
        for (hash, key) in &page.keys {
            move_key(inner, slot, key, *hash);
        }
        cursor = page.next;
    }
}

/// Moves `key` (whose placement hash is `hash`) from `src` to its owner if
/// `src` is not its owner.
fn move_key(inner: &Inner, src: &NodeSlot, key: &Key, hash: u64) {
    let _stripe = inner.stripe(hash).lock();
    let guard = epoch::pin();
    let topo = inner.topology(&guard);
    let Some(owner) = topo.current().lookup_hash(hash) else {
        return;
    };
    if owner == src.id {
        return;
    }
    // A missing entry was deleted, evicted or expired meanwhile; an expired
    // one is cleaned up by the removal below.
    if let Some(entry) = src.store.export(key) {
        let dropped = match topo.store(owner).import(key, entry) {
            Ok(imported) => {
                if imported.outcome == ImportOutcome::Stored {
                    inner.progress.moved.fetch_add(1, Ordering::Relaxed);
                    inner.progress.total_moved.fetch_add(1, Ordering::Relaxed);
                }
                // `Present`: the owner has a newer value, the copy here is
                // stale. Every entry the import evicted (the moved one
                // included when it lost on age) is a key lost to the move.
                imported.evicted
            }
            // Larger than the owner's cap: lost.
            Err(_) => 1,
        };
        if dropped > 0 {
            inner.progress.dropped.fetch_add(dropped, Ordering::Relaxed);
            inner
                .progress
                .total_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }
    // Under the stripe lock nothing can have written `key` here since the
    // export: writers write to the owner, and `src` is not the owner.
    src.store.remove(key);
}

/// Ends a sweep that started at ring `start_version`: settles if the ring
/// did not change since, otherwise lets go of the rings older than it.
fn finish_sweep(inner: &Inner, start_version: u64, covered: u64) {
    let _m = inner.membership.lock();
    let guard = epoch::pin();
    let topo = inner.topology(&guard);
    let settled = topo.current().version() == start_version;
    let rings: Vec<_> = if settled {
        vec![topo.rings[0].clone()]
    } else {
        topo.rings
            .iter()
            .filter(|r| r.version() >= start_version)
            .cloned()
            .collect()
    };
    // Keep a node while any ring still in play has it as a member.
    let nodes = topo
        .nodes
        .iter()
        .filter(|n| rings.iter().any(|r| r.node(n.id).is_some()))
        .cloned()
        .collect();
    inner.publish(rings, nodes);
    inner
        .progress
        .sweep_done(covered, settled.then_some(start_version));
    if settled {
        let s = inner.progress.status();
        log::info!(
            "relocation settled at ring version {start_version}: {} keys scanned, {} moved, {} dropped (evicted at a new owner's cap)",
            s.keys_scanned,
            s.keys_moved,
            s.keys_dropped
        );
    }
}

/// The TTL sweeper thread: reclaims expired entries every interval.
fn run_sweeper(inner: &Inner) {
    while inner.progress.sleep(inner.config.sweep_interval) {
        let nodes: Vec<Arc<NodeSlot>> = {
            let guard = epoch::pin();
            inner.topology(&guard).nodes.clone()
        };
        let now = Instant::now();
        for slot in nodes {
            slot.store.sweep_expired(now);
        }
    }
}
