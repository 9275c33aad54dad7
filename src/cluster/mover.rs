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
//! 2. **Grace period.** Before a sweep the mover waits until every pinned
//!    (or held, see `topology::Held`) request that was in flight when the
//!    sweep's starting topology was published
//!    has finished (an epoch grace period: a deferred closure that the
//!    collector runs only once every thread pinned before it has unpinned;
//!    each request that may write holds its pin from loading the topology
//!    until its store operation is done). After it, every write in flight
//!    routes by a topology at least as new as the sweep's, so **no write
//!    lands on a node the mover has already swept under an older ring**.
//!    Reads need no such wait (5), and a get on embedded nodes outside a
//!    migration does not pin.
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
//!    A read's hit needs no check: the topology it routed by was the
//!    current one when loaded, so every write acknowledged before the read
//!    began sits on that topology's owners (under its rings in play) or
//!    newer ones, and a copy an older topology points to is gone once a
//!    newer one replaced it: deleted by the newer write during a migration
//!    (3), or moved and removed by the sweep that ended it (4, 6). A copy
//!    still there is not older than any such write. This is why a read
//!    may skip the epoch pin: only its misses depend on the topology
//!    staying current, and that is checked, not waited for.
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
use crate::node::{ImportOutcome, Key, MovedEntry, StoreError};
use crate::ring::NodeId;

/// Where relocation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebalanceStatus {
    /// True from a membership change until its keys have all moved.
    pub active: bool,
    /// Keys examined by the current (or last) run: each key once per sweep
    /// (a key moved onto a node the sweep has yet to reach is not counted
    /// again there). A run of several sweeps counts each of them; a Redis
    /// `SCAN` may also return a key twice, which counts twice.
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
    /// Sweeps cut short because a node failed (a remote server that
    /// refused, failed or timed out), since the cluster was created. The
    /// sweep starts again after a pause; keys wait where they are.
    pub errors: u64,
    /// The last such failure.
    pub last_error: Option<String>,
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

    /// Records a sweep cut short by `error`.
    fn record_error(&self, error: &StoreError) {
        let mut s = self.state.lock();
        s.status.errors += 1;
        s.status.last_error = Some(error.to_string());
    }

    /// Stops the background threads.
    pub(super) fn shut_down(&self) {
        self.state.lock().shutdown = true;
        self.cond.notify_all();
    }

    pub(super) fn is_shut_down(&self) -> bool {
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
    pub(super) fn sleep(&self, period: Duration) -> bool {
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
    vec![mover, sweeper, super::health::spawn(inner)]
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

/// The mover thread: one sweep per batch of requests, until shutdown. A
/// sweep that a node's failure cut short is started again after a pause
/// that doubles up to [`MAX_RETRY_PAUSE`]: a migration cannot end while keys
/// it must move sit on a node that does not answer.
fn run_mover(inner: &Inner) {
    let mut retry: Option<Duration> = None;
    loop {
        match retry {
            Some(pause) => {
                if !inner.progress.sleep(pause) {
                    return;
                }
            }
            None => {
                if !inner.progress.wait_for_request() {
                    return;
                }
            }
        }
        // The sweep's starting point, and the requests it covers, read
        // together: changes publish and request under the membership mutex.
        let (start_version, generation, nodes, covered) = {
            let _m = inner.membership.lock();
            let guard = epoch::pin();
            let topo = inner.topology(&guard);
            let covered = inner.progress.requested();
            (
                topo.current().version(),
                topo.generation,
                topo.nodes.clone(),
                covered,
            )
        };
        if !grace_period(&inner.progress)
            || !inner.wait_for_held(generation, || inner.progress.is_shut_down())
        {
            return;
        }
        let mut failure = None;
        let order: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        for slot in &nodes {
            if let Err(e) = sweep_node(inner, slot, &order) {
                log::warn!(
                    "relocation: node {} ({}): {e}; its keys will be tried again",
                    slot.id,
                    slot.name
                );
                inner.progress.record_error(&e);
                failure.get_or_insert(e);
            }
            if inner.progress.is_shut_down() {
                return;
            }
        }
        retry = match failure {
            None => {
                finish_sweep(inner, start_version, covered);
                None
            }
            Some(_) => Some(
                retry
                    .map_or(FIRST_RETRY_PAUSE, |p| p * 2)
                    .min(MAX_RETRY_PAUSE),
            ),
        };
    }
}

/// The first pause before a sweep cut short by a failing node starts again.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The longest such pause.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Keys moved per batch: one round trip per store involved (export from the
/// source, import into each owner, remove from the source) instead of three
/// per key when a store is remote.
const MOVE_BATCH: usize = 256;

/// Moves every key of `slot` whose owner is another node.
///
/// Each page is filtered by the store with no stripe lock, by the current
/// ring: a key that the ring places on `slot` is where it belongs and is
/// skipped (if the ring changes after the check, the change requested
/// another sweep). The candidates go through [`move_batch`], which re-checks
/// under the keys' stripe locks.
///
/// `order` lists the nodes this sweep covers, in the order it sweeps them
/// (by id), so a key moved onto a node still to come is counted once in
/// `keys_scanned`, though that node's scan will examine it again.
///
/// # Errors
///
/// The first failure of a store involved; the keys not yet moved stay where
/// they are (still readable through the fallback) for the next sweep.
fn sweep_node(inner: &Inner, slot: &NodeSlot, order: &[NodeId]) -> Result<(), StoreError> {
    // An ejected node is unreachable and what it holds is forfeit (it is
    // cleared before it serves again): nothing to move.
    if slot
        .store
        .as_redis()
        .is_some_and(|r| r.health() == crate::node::Health::Ejected)
    {
        return Ok(());
    }
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        // The ring table is cloned out (an `Arc`) rather than read under a
        // pin, so a remote scan does not hold the mover's pin across the
        // network.
        let ring = {
            let guard = epoch::pin();
            inner.topology(&guard).rings[0].clone()
        };
        let page = slot
            .store
            .scan(c, &|hash| ring.lookup_hash(hash) != Some(slot.id))?;
        inner
            .progress
            .scanned
            .fetch_add(page.examined as u64, Ordering::Relaxed);
        // The store hands back each key's placement hash: no key is
        // hashed again here (an MD5 under ketama).
        for batch in page.keys.chunks(MOVE_BATCH) {
            let ahead = move_batch(inner, slot, batch)?;
            inner.progress.scanned.fetch_sub(
                ahead.filter(|id| order.contains(id)).count() as u64,
                Ordering::Relaxed,
            );
        }
        cursor = page.next;
    }
    Ok(())
}

/// Moves each key of `batch` (with its placement hash) from `src` to its
/// owner, if `src` is not its owner, under the keys' stripe locks. Returns
/// the owners, one per key stored, that come after `src` in the sweep.
fn move_batch(
    inner: &Inner,
    src: &NodeSlot,
    batch: &[(u64, Key)],
) -> Result<impl Iterator<Item = NodeId>, StoreError> {
    let mut stripes: Vec<usize> = batch.iter().map(|(h, _)| Inner::stripe_index(*h)).collect();
    // Index order: writers hold one stripe at a time, so no cycle can form.
    stripes.sort_unstable();
    stripes.dedup();
    let _locks: Vec<_> = stripes.iter().map(|&i| inner.lock_stripe(i)).collect();
    // Loaded under the stripe locks: no writer of these keys can be
    // routing by an older one (writers during a migration load it under
    // their stripe). The mover is a plain thread, so it may keep this pin
    // across network calls.
    let guard = epoch::pin();
    let topo = inner.topology(&guard);
    let ring = topo.current();
    let mut keys = Vec::with_capacity(batch.len());
    let mut owners = Vec::with_capacity(batch.len());
    for (hash, key) in batch {
        match ring.lookup_hash(*hash) {
            Some(owner) if owner != src.id => {
                keys.push(key.clone());
                owners.push(owner);
            }
            _ => {}
        }
    }
    let mut ahead = Vec::new();
    if keys.is_empty() {
        return Ok(ahead.into_iter());
    }
    let entries = src.store.export_many(&keys)?;
    // Entries grouped by owner, with the keys each import covers. A
    // missing entry was deleted, evicted or expired meanwhile; an expired
    // one is cleaned up by the removal below.
    let mut by_owner: Vec<(NodeId, Vec<(Key, MovedEntry)>)> = Vec::new();
    let mut removable: Vec<Key> = Vec::with_capacity(keys.len());
    for ((key, owner), entry) in keys.iter().zip(&owners).zip(entries) {
        match entry {
            None => removable.push(key.clone()),
            Some(entry) => match by_owner.iter_mut().find(|(o, _)| o == owner) {
                Some((_, v)) => v.push((key.clone(), entry)),
                None => by_owner.push((*owner, vec![(key.clone(), entry)])),
            },
        }
    }
    let mut failure = None;
    for (owner, entries) in by_owner {
        let covered: Vec<Key> = entries.iter().map(|(k, _)| k.clone()).collect();
        match topo.store(owner).import_many(entries) {
            Ok(results) => {
                let mut dropped = 0;
                for r in results {
                    match r {
                        Ok(imported) => {
                            if imported.outcome == ImportOutcome::Stored {
                                if owner > src.id {
                                    ahead.push(owner);
                                }
                                inner.progress.moved.fetch_add(1, Ordering::Relaxed);
                                inner.progress.total_moved.fetch_add(1, Ordering::Relaxed);
                            }
                            // `Present`: the owner has a newer value, the
                            // copy here is stale. Every entry the import
                            // evicted (the moved one included when it lost
                            // on age) is a key lost to the move.
                            dropped += imported.evicted;
                        }
                        // Larger than the owner's cap: lost.
                        Err(StoreError::TooLarge { .. }) => dropped += 1,
                        Err(e) => return Err(e),
                    }
                }
                if dropped > 0 {
                    inner.progress.dropped.fetch_add(dropped, Ordering::Relaxed);
                    inner
                        .progress
                        .total_dropped
                        .fetch_add(dropped, Ordering::Relaxed);
                }
                removable.extend(covered);
            }
            // The owner cannot take them now: they stay on `src`, readable
            // by the fallback, for the next sweep.
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    // Under the stripe locks nothing can have written these keys here since
    // the export: writers write to the owner, and `src` is not the owner.
    src.store.remove_many(&removable)?;
    match failure {
        None => Ok(ahead.into_iter()),
        Some(e) => Err(e),
    }
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

/// The TTL sweeper thread: every interval, reclaims expired entries and
/// lets remote stores refresh their counters ([`crate::node::Store::refresh`]).
fn run_sweeper(inner: &Inner) {
    while inner.progress.sleep(inner.config.sweep_interval) {
        let nodes: Vec<Arc<NodeSlot>> = {
            let guard = epoch::pin();
            inner.topology(&guard).nodes.clone()
        };
        let now = Instant::now();
        for slot in nodes {
            slot.store.sweep_expired(now);
            slot.store.refresh();
        }
    }
}
