//! Multi-threaded stress tests of the lock-free ring.
//!
//! Readers look up continuously while a writer churns the membership; every
//! answer must come from a membership the ring really had during that
//! lookup, and once the writer stops the ring must place keys exactly as a
//! freshly built ring of the final membership does.
//!
//! # How "a member at some moment of the lookup's life" is checked
//!
//! The writer is the only writer, so it knows the version its next edit will
//! publish (current + 1). It appends that version's member set to `History`
//! *before* making the edit, so by the time any reader can observe version
//! `v`, `History` already holds it: the writer's append (under the history
//! lock) is sequenced before its edit's `Release` swap, which a reader's
//! `Acquire` load of the new table synchronizes with; the reader takes the
//! history lock only after that load. An edit that the writer expects to
//! fail appends nothing, and the test asserts the version did not move.
//!
//! * **Pinned path:** `ring.pin()` fixes one table; its `version()` must
//!   index a `History` entry equal to the table's `nodes()`, and every answer
//!   from it must be one of those members.
//! * **Plain path:** `v1 = ring.version()`, then `ring.lookup(key)`, then
//!   `v2 = ring.version()`. All three load the same atomic pointer in program
//!   order (the lookup's per-thread table cache checks that pointer before
//!   it trusts its cached table), so by read-read coherence the lookup's table has a version in
//!   `v1..=v2`; its answer must be in the union of those versions' member
//!   sets (`None` only if one of them was empty). A `lookup_n` answer must
//!   fit one single version in that range (all members, the right length).
//!
//! `load_with_a_guard_from_another_collector_keeps_the_table_alive` is a
//! regression test for a soundness hole found while writing these tests
//! (`Ring::load` trusts any `Guard`); it fails until `src/ring` is fixed.

mod rng;

use rng::SplitMix;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ringcache::ring::reference::ReferenceRing;
use ringcache::ring::{RingTable, DEFAULT_MAX_WEIGHT};
use ringcache::{NodeId, Ring, RingError};

/// How long the writer churns.
const CHURN_TIME: Duration = Duration::from_secs(3);
/// The writer's op bound, whichever of the two comes first.
const MAX_OPS: u64 = 200_000;
/// Reader threads (the writer is one more).
const READERS: usize = 3;

/// A membership: id -> (name, vnodes).
type Members = BTreeMap<NodeId, (String, u32)>;

/// The member set of every published version, indexed by version.
#[derive(Default)]
struct History {
    versions: RwLock<Vec<Arc<Members>>>,
}

impl History {
    /// Versions `from..=to`, which must all have been recorded.
    fn range(&self, from: u64, to: u64) -> Vec<Arc<Members>> {
        let versions = self.versions.read().unwrap();
        let (from, to) = (usize::try_from(from).unwrap(), usize::try_from(to).unwrap());
        assert!(
            to < versions.len(),
            "version {to} observed before the writer recorded it (recorded up to {})",
            versions.len() - 1
        );
        versions[from..=to].to_vec()
    }

    fn push(&self, version: u64, members: Members) {
        let mut versions = self.versions.write().unwrap();
        assert_eq!(versions.len() as u64, version, "history out of step");
        versions.push(Arc::new(members));
    }
}

/// Sets the flag when dropped, so readers stop even if the writer panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn members_of(table: &RingTable) -> Members {
    table
        .nodes()
        .iter()
        .map(|n| (n.id, (n.name.to_string(), n.points)))
        .collect()
}

/// The writer: random adds, removes and vnode changes (plus edits that must
/// fail) for `CHURN_TIME` or `MAX_OPS`. Expects a new ring, whose version 0
/// (no members) is already in `history`. Returns the final membership, as
/// the writer modelled it, and the number of edits.
fn churn(ring: &Ring, history: &History, seed: u64) -> (Members, u64) {
    let mut rng = SplitMix(seed);
    let mut members = Members::new();
    let mut next_id = 0u32;
    let mut fresh_name = 0u64;
    let mut removed_names: Vec<String> = Vec::new();
    assert_eq!(ring.version(), 0);
    let start = Instant::now();
    let mut ops = 0u64;
    while ops < MAX_OPS && start.elapsed() < CHURN_TIME {
        ops += 1;
        let version = ring.version();
        let ids: Vec<NodeId> = members.keys().copied().collect();
        let pick = |rng: &mut SplitMix| ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()];
        let roll = rng.below(100);

        // Edits that must be refused and publish nothing.
        if roll < 8 {
            let (got, want) = match roll % 3 {
                0 => {
                    let id = NodeId(next_id + 7);
                    (ring.remove_node(id), Err(RingError::UnknownNode(id)))
                }
                1 if !ids.is_empty() => {
                    let name = members[&pick(&mut rng)].0.clone();
                    (
                        ring.add_node(&name, 5).map(|_| ()),
                        Err(RingError::DuplicateName(name)),
                    )
                }
                _ if !ids.is_empty() => {
                    let id = pick(&mut rng);
                    let max = DEFAULT_MAX_WEIGHT;
                    (
                        ring.set_weight(id, 0),
                        Err(RingError::WeightOutOfRange {
                            weight: 0,
                            max,
                            placement: ringcache::hash::Placement::Xxh3,
                        }),
                    )
                }
                _ => continue,
            };
            assert_eq!(got, want);
            assert_eq!(ring.version(), version, "a refused edit published");
            continue;
        }

        let mut next = members.clone();
        if members.len() < 3 || (roll < 40 && members.len() < 12) {
            // Add: usually a new name, sometimes one that left earlier.
            let name = if !removed_names.is_empty() && rng.below(4) == 0 {
                removed_names
                    .swap_remove(usize::try_from(rng.below(removed_names.len() as u64)).unwrap())
            } else {
                fresh_name += 1;
                format!("node-{fresh_name}")
            };
            let vnodes = random_vnodes(&mut rng);
            let id = NodeId(next_id);
            next.insert(id, (name.clone(), vnodes));
            history.push(version + 1, next.clone());
            assert_eq!(
                ring.add_node(&name, vnodes),
                Ok(id),
                "ids are handed out in order"
            );
            next_id += 1;
        } else if roll < 65 {
            let id = pick(&mut rng);
            let (name, _) = next.remove(&id).unwrap();
            history.push(version + 1, next.clone());
            ring.remove_node(id).unwrap();
            removed_names.push(name);
        } else {
            let id = pick(&mut rng);
            let vnodes = random_vnodes(&mut rng);
            next.get_mut(&id).unwrap().1 = vnodes;
            history.push(version + 1, next.clone());
            ring.set_weight(id, vnodes).unwrap();
        }
        assert_eq!(ring.version(), version + 1);
        members = next;
    }
    (members, ops)
}

/// One reader: cycles through the pinned path, the plain `lookup` path and
/// the plain `lookup_n` path until `stop`. Returns the number of checks and
/// how many plain-path lookups straddled an edit (`v1 != v2`).
fn read(ring: &Ring, history: &History, stop: &AtomicBool, seed: u64) -> (u64, u64) {
    let mut rng = SplitMix(seed);
    let mut checks = 0u64;
    let mut straddles = 0u64;
    let mut last_version = 0u64;
    while !stop.load(Ordering::Acquire) {
        checks += 1;
        let key = rng.next().to_le_bytes();
        match checks % 3 {
            0 => {
                let snap = ring.pin();
                let v = snap.version();
                assert!(
                    v >= last_version,
                    "version went back: {last_version} -> {v}"
                );
                last_version = v;
                let recorded = &history.range(v, v)[0];
                assert_eq!(&members_of(&snap), &**recorded, "snapshot {v} members");
                for _ in 0..8 {
                    let key = rng.next().to_le_bytes();
                    match snap.lookup(&key) {
                        Some(id) => assert!(recorded.contains_key(&id), "{id} not in version {v}"),
                        None => assert!(recorded.is_empty(), "no owner in non-empty version {v}"),
                    }
                    let replicas = snap.lookup_n(&key, 3);
                    assert_eq!(replicas.len(), recorded.len().min(3));
                    assert_eq!(replicas.first().copied(), snap.lookup(&key));
                    assert!(replicas.iter().all(|id| recorded.contains_key(id)));
                }
                // Now and then, hold the snapshot while the writer moves on
                // and check it still answers as a fresh build of its members.
                if checks % 300 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                    let fresh = RingTable::build(v, snap.nodes().to_vec());
                    assert_eq!(snap.version(), v);
                    for _ in 0..200 {
                        let key = rng.next().to_le_bytes();
                        assert_eq!(snap.lookup(&key), fresh.lookup(&key), "held snapshot {v}");
                    }
                }
            }
            1 => {
                let v1 = ring.version();
                let answer = ring.lookup(&key);
                let v2 = ring.version();
                assert!(
                    last_version <= v1 && v1 <= v2,
                    "versions {last_version}, {v1}, {v2}"
                );
                last_version = v2;
                straddles += u64::from(v1 != v2);
                let seen = history.range(v1, v2);
                match answer {
                    Some(id) => assert!(
                        seen.iter().any(|m| m.contains_key(&id)),
                        "{id} was not a member in versions {v1}..={v2}"
                    ),
                    None => assert!(
                        seen.iter().any(|m| m.is_empty()),
                        "no owner, but versions {v1}..={v2} all had members"
                    ),
                }
            }
            _ => {
                let n = usize::try_from(rng.below(5)).unwrap() + 1;
                let v1 = ring.version();
                let answer = ring.lookup_n(&key, n);
                let v2 = ring.version();
                assert!(last_version <= v1 && v1 <= v2);
                last_version = v2;
                straddles += u64::from(v1 != v2);
                let seen = history.range(v1, v2);
                assert!(
                    seen.iter().any(|m| answer.len() == m.len().min(n)
                        && answer.iter().all(|id| m.contains_key(id))),
                    "lookup_n({n}) = {answer:?} fits no single version in {v1}..={v2}"
                );
                let mut distinct = answer.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), answer.len(), "duplicates in {answer:?}");
            }
        }
    }
    (checks, straddles)
}

/// Readers on the pinned, `lookup` and `lookup_n` paths run against a writer
/// churning membership (adds, removes, re-adds of old names, vnode changes,
/// refused edits) for about 3 s. Pins down: no panic; every answer comes
/// from a membership the ring had during that lookup (see the module docs
/// for why the check is sound); a pinned snapshot is exactly the recorded
/// membership of its version and stays intact while held; versions never go
/// back for a reader; ids are handed out in order and refused edits publish
/// nothing. After the writer stops, the ring lists exactly the writer's
/// final membership, and every `lookup` and `lookup_n` over 3 000 keys
/// agrees, by name, with a freshly built `Ring` and `ReferenceRing` of it.
#[test]
fn readers_see_only_real_memberships_while_a_writer_churns() {
    let ring = Ring::new();
    let history = History::default();
    // Version 0 (no members) exists before any reader can look.
    history.push(0, Members::new());
    let stop = AtomicBool::new(false);
    let total_checks = AtomicU64::new(0);
    let total_straddles = AtomicU64::new(0);
    let (members, ops) = std::thread::scope(|s| {
        for r in 0..READERS {
            let (ring, history, stop) = (&ring, &history, &stop);
            let (total_checks, total_straddles) = (&total_checks, &total_straddles);
            s.spawn(move || {
                let (checks, straddles) = read(ring, history, stop, 0xfeed + r as u64);
                total_checks.fetch_add(checks, Ordering::Relaxed);
                total_straddles.fetch_add(straddles, Ordering::Relaxed);
            });
        }
        let _stop = StopOnDrop(&stop);
        churn(&ring, &history, 0x5eed)
    });
    let checks = total_checks.load(Ordering::Relaxed);
    let straddles = total_straddles.load(Ordering::Relaxed);
    println!(
        "writer edits: {ops}, reader checks: {checks}, lookups straddling an edit: {straddles}"
    );
    assert!(ops > 100, "writer made only {ops} edits");
    assert!(checks > 1_000, "readers made only {checks} checks");
    assert_eq!(members_of(&ring.pin()), members);

    // Fresh rings of the final membership, built in reverse id order so
    // their ids differ from the churned ring's: compare by name.
    let fresh = Ring::new();
    let mut reference = ReferenceRing::new(DEFAULT_MAX_WEIGHT);
    let mut fresh_names = BTreeMap::new();
    let mut reference_names = BTreeMap::new();
    for (name, v) in members.values().rev() {
        fresh_names.insert(fresh.add_node(name, *v).unwrap(), name.as_str());
        reference_names.insert(reference.add_node(name, *v).unwrap(), name.as_str());
    }
    let churned =
        |ids: Vec<NodeId>| -> Vec<&str> { ids.iter().map(|id| members[id].0.as_str()).collect() };
    let by = |ids: Vec<NodeId>, of: &BTreeMap<NodeId, &str>| -> Vec<String> {
        ids.iter().map(|id| of[id].to_owned()).collect()
    };
    let count = members.len();
    let mut rng = SplitMix(0xf1a1);
    for _ in 0..3_000 {
        let key = rng.next().to_le_bytes();
        for n in [1, 3, count] {
            let got = churned(ring.lookup_n(&key, n));
            assert_eq!(
                got,
                by(fresh.lookup_n(&key, n), &fresh_names),
                "lookup_n({key:?}, {n})"
            );
            assert_eq!(
                got,
                by(reference.lookup_n(&key, n), &reference_names),
                "lookup_n({key:?}, {n})"
            );
        }
        let got = churned(ring.lookup(&key).into_iter().collect());
        assert_eq!(
            got,
            by(fresh.lookup(&key).into_iter().collect(), &fresh_names)
        );
        assert_eq!(
            got,
            by(
                reference.lookup(&key).into_iter().collect(),
                &reference_names
            )
        );
    }
}

/// A `Pinned` snapshot held across edits keeps its own view: while the
/// holder does 30 edits (removing snapshot members, adding nodes, changing
/// vnodes) and another thread pins and looks up non-stop (driving epoch
/// collection), the snapshot's version stays put and its members, `lookup`
/// and `lookup_n` keep matching a reference ring of that membership, while
/// the live ring moves on (so the comparison is not vacuous).
#[test]
fn pinned_snapshot_keeps_its_version_across_edits() {
    let ring = Ring::new();
    let mut live = ReferenceRing::default();
    for i in 0..6 {
        let name = format!("cache-{i}");
        assert_eq!(ring.add_node(&name, 100), live.add_node(&name, 100));
    }
    let frozen = live.clone();
    let stop = AtomicBool::new(false);
    let mut rng = SplitMix(7);
    let keys: Vec<[u8; 8]> = (0..1_000).map(|_| rng.next().to_le_bytes()).collect();

    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = SplitMix(8);
            while !stop.load(Ordering::Acquire) {
                let _ = ring.lookup(&rng.next().to_le_bytes());
                let _ = ring.pin().version();
            }
        });
        let _stop = StopOnDrop(&stop);

        let snap = ring.pin();
        let version = snap.version();
        let members = members_of(&snap);
        let mut next_name = 100;
        for edit in 0..30u32 {
            let ids: Vec<NodeId> = live.members().map(|m| m.0).collect();
            match edit % 3 {
                0 if ids.len() > 2 => {
                    let id = ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()];
                    ring.remove_node(id).unwrap();
                    live.remove_node(id).unwrap();
                }
                1 => {
                    let id = ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()];
                    let v = random_vnodes(&mut rng);
                    ring.set_weight(id, v).unwrap();
                    live.set_weight(id, v).unwrap();
                }
                _ => {
                    next_name += 1;
                    let name = format!("cache-{next_name}");
                    let v = random_vnodes(&mut rng);
                    assert_eq!(ring.add_node(&name, v), live.add_node(&name, v));
                }
            }
            assert_eq!(snap.version(), version);
            assert_eq!(members_of(&snap), members);
            for k in &keys {
                assert_eq!(snap.lookup(k), frozen.lookup(k));
                assert_eq!(snap.lookup_n(k, 3), frozen.lookup_n(k, 3));
            }
        }
        assert_eq!(ring.version(), version + 30);
        let moved = keys
            .iter()
            .filter(|k| ring.lookup(&k[..]) != snap.lookup(&k[..]))
            .count();
        assert!(moved > 0, "30 edits moved no key: the test checks nothing");
        for k in &keys {
            assert_eq!(ring.lookup(k), live.lookup(k));
        }
    });
}

/// Regression test for a soundness hole: `Ring::load` is a safe function
/// that accepts ANY `&crossbeam_epoch::Guard`, including one pinned in a
/// different `Collector`. Such a guard does not hold back the default
/// collector the ring retires its tables to, so the `&RingTable` that
/// `load` returns could be freed while still borrowed (use after free in
/// safe code). Pins down: a table loaded under a foreign guard stays
/// allocated while borrowed, or `load` refuses the foreign guard (panics).
///
/// Freeing is observed without touching the table: every table holds a
/// clone of each member's `Arc<str>` name, so the name's strong count drops
/// when a table is dropped.
#[test]
fn load_with_a_guard_from_another_collector_keeps_the_table_alive() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    let ring = Ring::new();
    let id = ring.add_node("victim", 1).unwrap();
    let name: Arc<str> = ring.pin().node(id).unwrap().name.clone();
    let foreign = crossbeam_epoch::Collector::new();
    let handle = foreign.register();
    let guard = handle.pin();
    let Ok(table) = catch_unwind(AssertUnwindSafe(|| ring.load(&guard))) else {
        return; // A foreign guard is refused: sound.
    };
    let version = table.version();
    // The loaded table and our clone hold the name (older tables, if any,
    // are collected by the loop below, so read the count after it).
    ring.set_weight(id, 2).unwrap(); // retires `table`; the new one clones the name
    let mut alive = Arc::strong_count(&name);
    for _ in 0..100_000 {
        crossbeam_epoch::pin().flush();
        alive = Arc::strong_count(&name);
        if alive < 3 {
            break;
        }
    }
    // Ours, the current table's and the borrowed table's.
    assert_eq!(
        alive, 3,
        "the table `Ring::load` returned under a foreign collector's guard was freed while borrowed"
    );
    assert_eq!(table.version(), version);
    drop(guard);
}

/// A vnode count in 1..=300.
fn random_vnodes(rng: &mut SplitMix) -> u32 {
    1 + u32::try_from(rng.below(300)).unwrap()
}
