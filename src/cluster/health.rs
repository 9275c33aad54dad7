//! The health observer: checks every Redis node, ejects the failing ones
//! from the ring and readmits them, cleared, when they recover.
//!
//! This module owns the per-node health state machine and its thread. It
//! changes membership only through the cluster's own edit path (the same
//! publication and relocation as an operator's change), and talks to the
//! servers only through [`RedisStore`](crate::node::RedisStore)'s check, clear and health calls.
//! Embedded nodes are never checked.
//!
//! # The states
//!
//! ```text
//!            eject_after failures              ejection time passed and
//!   Up ───────────────────────────▶ Ejected ─ readmit_after checks pass ─▶ Up
//!    │    (policy eject, under cap)    │        (server cleared first)
//!    │                                 │
//!    └── eject_after failures ──▶ Down ┘ (cap room frees up, policy eject)
//!        (policy fail, or cap)    │
//!                                 └─ readmit_after checks pass ─▶ Up
//! ```
//!
//! * **Failures** are counted per node, not per connection: a failed
//!   request to the server (refused, broken, timed out; not an error reply
//!   such as `OOM`, which is the server answering) and a failed check (no
//!   `PONG` within the check timeout, or any error reply: `NOAUTH`,
//!   `LOADING`, `MASTERDOWN`) both add one, and any success resets the
//!   count. Checks are `PING`s on the observer's own connection, every
//!   `interval`.
//! * **Ejected**: the node leaves the ring at once; its keys route to the
//!   other nodes, as misses; `X-CacheServer-Count` drops. Nothing is moved
//!   from it, and a read's fallback or a write's cleanup treats it as
//!   holding nothing. At most `max_ejected_percent` of the nodes (and
//!   always at least one) are ejected at once.
//! * **Down**: failing but kept in the ring (policy `fail`, or the cap
//!   reached): its keys get 503 at once, without a call to the server, so
//!   nobody waits for a timeout. Data on it is intact when it returns.
//! * **Draining**: a node the operator removed that fails before its keys
//!   have moved is forfeit under policy `eject` (as if ejected: the drain
//!   skips it and its keys are misses at their new owners), so removing a
//!   dead server finishes; under `fail` the drain waits for it.
//! * **Backoff**: an ejected node stays out at least the ejection time,
//!   doubled for each ejection since it was last healthy for ten ejection
//!   times, with ±20% jitter, at most five minutes.
//!
//! # No stale read after readmission
//!
//! While a node is out, writes and deletes of its keys happen on other
//! nodes, so its own copies are older; a server that hung and resumed, or
//! restarted from a snapshot, still has them. Readmission therefore
//! **deletes every key ringcache stored on the server before the node
//! rejoins the ring**: while it is ejected no ring in play routes to it
//! (and no read or write touches it: see above), so from the clear until
//! the ring that names it is published, nothing can write to it, and after
//! that every write to it is newer than the ejection. The keys written to
//! other nodes meanwhile move back to it by relocation, which reads fall
//! back to while it runs. The price is a cold node: what it held before is
//! served as misses (or from the copies written elsewhere) until rewritten.
//! Keeping its untouched keys warm would need a record of every key
//! written or deleted while it was out; that is not built.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::topology::{Inner, NodeSlot};
use super::{eject, readmit};
use crate::node::Health;
use crate::ring::NodeId;

/// What to do with a node that fails its checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Take it out of the ring (its keys become misses elsewhere).
    #[default]
    Eject,
    /// Keep its placement; its keys get 503 until it recovers (for data
    /// that must not be recomputed elsewhere).
    Fail,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eject" => Ok(FailurePolicy::Eject),
            "fail" => Ok(FailurePolicy::Fail),
            other => Err(format!(
                "{other:?} is not a failure policy; give eject or fail"
            )),
        }
    }
}

impl std::fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailurePolicy::Eject => "eject",
            FailurePolicy::Fail => "fail",
        })
    }
}

/// How Redis nodes are checked, ejected and readmitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthOptions {
    /// Time between two checks of a node.
    pub interval: Duration,
    /// A check without `PONG` within it fails.
    pub timeout: Duration,
    /// Consecutive failures (checks and requests) that take a node out.
    pub eject_after: u32,
    /// Consecutive passed checks that bring it back.
    pub readmit_after: u32,
    /// The least time an ejected node stays out (doubled per repeated
    /// ejection, with jitter, at most [`MAX_EJECTION`]).
    pub ejection_time: Duration,
    /// The largest share of the nodes ejected at once, in percent; at
    /// least one node may always be ejected.
    pub max_ejected_percent: u32,
    /// Eject, or keep in the ring and fail fast.
    pub policy: FailurePolicy,
}

impl Default for HealthOptions {
    /// A check a second with a 500 ms timeout; out after 3 failures, back
    /// after 2 passed checks and at least 5 s; at most 10% ejected (at
    /// least one: one of three failing servers is ejected); policy eject.
    fn default() -> Self {
        HealthOptions {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            eject_after: 3,
            readmit_after: 2,
            ejection_time: Duration::from_secs(5),
            max_ejected_percent: 10,
            policy: FailurePolicy::Eject,
        }
    }
}

/// The longest an ejected node is kept out between checks that pass.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// How often the observer looks at the failure counts between checks, so
/// failing requests eject a node without waiting for the next check.
const TICK: Duration = Duration::from_millis(50);

/// The observer's memory of one node.
struct Tracker {
    id: NodeId,
    next_check: Instant,
    /// Passed checks in a row.
    passes: u32,
    /// Ejections since it was last healthy for ten ejection times.
    ejections: u32,
    /// While ejected: the earliest readmission.
    out_until: Option<Instant>,
    /// When it last came back (for resetting `ejections`).
    healthy_since: Instant,
}

/// Starts the observer thread.
pub(super) fn spawn(inner: &Arc<Inner>) -> std::thread::JoinHandle<()> {
    let inner = inner.clone();
    std::thread::Builder::new()
        .name("ringcache-health".into())
        .spawn(move || run(&inner))
        .expect("spawning the health thread")
}

/// A small xorshift generator for jitter.
fn jitter(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    // Uniform in [0.8, 1.2).
    0.8 + 0.4 * ((*seed >> 11) as f64 / (1u64 << 53) as f64)
}

fn run(inner: &Inner) {
    let options = inner.config.health.clone();
    let mut trackers: Vec<Tracker> = Vec::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    while inner.progress.sleep(TICK) {
        // Every Redis node: ring members, draining and ejected nodes.
        let nodes: Vec<Arc<NodeSlot>> = inner
            .every_node(&crossbeam_epoch::pin())
            .1
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.store.as_redis().is_some())
            .collect();
        trackers.retain(|t| nodes.iter().any(|n| n.id == t.id));
        let now = Instant::now();
        for slot in &nodes {
            let at = match trackers.iter().position(|t| t.id == slot.id) {
                Some(at) => at,
                None => {
                    trackers.push(Tracker {
                        id: slot.id,
                        next_check: now,
                        passes: 0,
                        ejections: 0,
                        out_until: None,
                        healthy_since: now,
                    });
                    trackers.len() - 1
                }
            };
            let t = &mut trackers[at];
            let store = slot.store.as_redis().expect("filtered to Redis nodes");
            let mut reason = None;
            if Instant::now() >= t.next_check {
                t.next_check = Instant::now() + options.interval;
                match store.check(options.timeout) {
                    Ok(()) => t.passes = t.passes.saturating_add(1),
                    Err(e) => {
                        t.passes = 0;
                        reason = Some(e.to_string());
                    }
                }
            }
            step(inner, &options, slot, t, reason, &mut seed);
        }
    }
}

/// One node's transition, if any, after its latest check (`failed` says
/// why it failed, if it did).
fn step(
    inner: &Inner,
    options: &HealthOptions,
    slot: &NodeSlot,
    t: &mut Tracker,
    failed: Option<String>,
    seed: &mut u64,
) {
    let store = slot.store.as_redis().expect("a Redis node");
    let failing = store.failures() >= options.eject_after;
    let why = || {
        failed
            .clone()
            .unwrap_or_else(|| format!("{} requests or checks failed in a row", store.failures()))
    };
    let member = {
        let guard = crossbeam_epoch::pin();
        inner.topology(&guard).current().node(slot.id).is_some()
    };
    let ejected = inner.ejected.lock().iter().any(|n| n.id == slot.id);
    if !member && !ejected {
        // Draining: removed by the operator, still holding keys to move.
        // If it fails, what it holds is forfeit (under policy eject), so the
        // drain can finish and its keys' new owners serve them as misses
        // instead of waiting on it forever.
        if failing && options.policy == FailurePolicy::Eject && store.health() != Health::Ejected {
            store.set_health(Health::Ejected);
            log::warn!(
                "node {} ({}) failed while draining: {}; the keys it still held are forfeit",
                slot.id,
                slot.name,
                why()
            );
        }
        return;
    }
    match store.health() {
        Health::Up if failing => {
            if options.policy == FailurePolicy::Eject && room_to_eject(inner, options) {
                eject_now(inner, options, slot, t, &why(), seed);
            } else {
                store.set_health(Health::Down);
                t.passes = 0;
                log::warn!(
                    "node {} ({}) is down: {}; its keys get 503 until it recovers{}",
                    slot.id,
                    slot.name,
                    why(),
                    if options.policy == FailurePolicy::Eject {
                        " (not ejected: the cap on ejected nodes is reached)"
                    } else {
                        " (policy fail)"
                    }
                );
            }
        }
        Health::Up => {
            if t.ejections > 0 && t.healthy_since.elapsed() >= options.ejection_time * 10 {
                t.ejections = 0;
            }
        }
        Health::Down => {
            if t.passes >= options.readmit_after {
                store.set_health(Health::Up);
                t.healthy_since = Instant::now();
                log::info!(
                    "node {} ({}) is up again after {} passed checks; serving its keys",
                    slot.id,
                    slot.name,
                    t.passes
                );
            } else if options.policy == FailurePolicy::Eject && room_to_eject(inner, options) {
                eject_now(inner, options, slot, t, &why(), seed);
            }
        }
        Health::Ejected => {
            let due = t.out_until.is_none_or(|u| Instant::now() >= u);
            if due && t.passes >= options.readmit_after {
                // Nothing routes to it now: clear what it holds, then let it
                // back in (see the module docs).
                match store.clear() {
                    Ok(cleared) => match readmit(inner, slot.id) {
                        Ok(()) => {
                            t.out_until = None;
                            t.healthy_since = Instant::now();
                            log::info!(
                                "node {} ({}) readmitted after {} passed checks; {cleared} keys it held from before were deleted",
                                slot.id,
                                slot.name,
                                t.passes
                            );
                        }
                        Err(e) => log::warn!(
                            "node {} ({}) could not be readmitted: {e}",
                            slot.id,
                            slot.name
                        ),
                    },
                    Err(e) => {
                        t.passes = 0;
                        log::warn!(
                            "node {} ({}) stays ejected: clearing it failed: {e}",
                            slot.id,
                            slot.name
                        );
                    }
                }
            }
        }
    }
}

/// Whether one more node may be ejected.
fn room_to_eject(inner: &Inner, options: &HealthOptions) -> bool {
    let ejected = inner.ejected.lock().len();
    let members = {
        let guard = crossbeam_epoch::pin();
        inner.topology(&guard).current().node_count()
    };
    let total = members + ejected;
    let cap = (total * options.max_ejected_percent as usize / 100).max(1);
    ejected < cap
}

fn eject_now(
    inner: &Inner,
    options: &HealthOptions,
    slot: &NodeSlot,
    t: &mut Tracker,
    why: &str,
    seed: &mut u64,
) {
    match eject(inner, slot.id, why) {
        Ok(()) => {
            t.ejections = t.ejections.saturating_add(1);
            t.passes = 0;
            let factor = 2u32.saturating_pow(t.ejections - 1).min(1 << 16);
            let base = options
                .ejection_time
                .saturating_mul(factor)
                .min(MAX_EJECTION);
            let out = base.mul_f64(jitter(seed)).min(MAX_EJECTION);
            t.out_until = Some(Instant::now() + out);
            log::info!(
                "node {} ({}) stays out at least {out:?} (ejection {} in a row)",
                slot.id,
                slot.name,
                t.ejections
            );
        }
        Err(e) => {
            // The last member, or gone meanwhile: fail fast instead.
            if let Some(r) = slot.store.as_redis() {
                r.set_health(Health::Down);
            }
            log::warn!(
                "node {} ({}) is down and could not be ejected: {e}",
                slot.id,
                slot.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        let mut seed = 12345;
        for _ in 0..10_000 {
            let j = jitter(&mut seed);
            assert!((0.8..1.2).contains(&j), "{j}");
        }
    }

    #[test]
    fn policies_parse() {
        assert_eq!("eject".parse(), Ok(FailurePolicy::Eject));
        assert_eq!("fail".parse(), Ok(FailurePolicy::Fail));
        assert!("drop".parse::<FailurePolicy>().is_err());
    }
}
