//! Property tests of the ring's placement contract (docs/placement.md).
//!
//! Every property runs over random memberships (2..12 nodes with random,
//! distinct names and 1..=300 vnodes each) and random key sets, and compares
//! what the lock-free [`Ring`] answers with what the contract says, or with
//! the naive [`ReferenceRing`]. The balance tests at the end are
//! deterministic; `balance_figures` prints the numbers recorded in
//! `docs/balance.md`:
//!
//! ```text
//! cargo test --test ring_props balance_figures -- --nocapture
//! ```
//!
//! Failure persistence is off (no `proptest-regressions` files): a failure
//! prints its minimal case, which belongs in a named regression test.

mod rng;

use rng::SplitMix;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use ringcache::hash::{key_hash, vnode_point, MAX_NAME_BYTES};
use ringcache::ring::reference::ReferenceRing;
use ringcache::ring::RingTable;
use ringcache::{NodeId, Ring, RingError};

/// Keys per case: enough that every node of a 12-node ring owns many keys,
/// few enough that a debug build runs a case in milliseconds.
const KEYS: usize = 2_000;

/// The largest vnode count the random memberships use (design brief).
const MAX_TEST_VNODES: u32 = 300;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `n` keys derived from `seed`: short text keys, random byte strings
/// (including the empty key) and 8-byte binary keys.
fn key_set(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("user:{}", rng.below(1_000_000)).into_bytes(),
            1 => {
                let len = rng.below(24);
                (0..len).map(|_| rng.next() as u8).collect()
            }
            _ => rng.next().to_le_bytes().to_vec(),
        })
        .collect()
}

/// A key whose hash is exactly point `index` of node `name`: the bytes
/// `vnode_point` hashes (`[len] ++ name ++ index LE`), since both functions
/// are xxh3-64 with seed 0. Lets tests land a key *on* a point.
fn key_on_point(name: &str, index: u32) -> Vec<u8> {
    let mut key = vec![u8::try_from(name.len()).unwrap()];
    key.extend_from_slice(name.as_bytes());
    key.extend_from_slice(&index.to_le_bytes());
    assert_eq!(
        key_hash(&key),
        vnode_point(name, index),
        "point derivation no longer hashes [len] ++ name ++ index LE"
    );
    key
}

/// Node names: short ASCII names with digit suffixes (so "node1"/"node10"
/// style neighbours are common) and arbitrary printable Unicode.
fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{1,5}[0-9]{0,3}",
        1 => "\\PC{1,8}",
    ]
}

/// A membership: distinct names with their vnode counts, in random order.
fn membership(
    sizes: std::ops::Range<usize>,
    max_weight: u32,
) -> impl Strategy<Value = Vec<(String, u32)>> {
    prop::collection::btree_map(node_name(), 1u32..=max_weight, sizes)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

/// A ring with `members` added in order, and their ids.
fn build(members: &[(String, u32)]) -> (Ring, Vec<NodeId>) {
    let ring = Ring::new();
    let ids = members
        .iter()
        .map(|(name, v)| ring.add_node(name, *v).expect("valid membership"))
        .collect();
    (ring, ids)
}

fn name_of(table: &RingTable, id: NodeId) -> Arc<str> {
    table
        .node(id)
        .unwrap_or_else(|| panic!("answer {id} is not a member of its own snapshot"))
        .name
        .clone()
}

/// Each key's owner, by name.
fn owner_names(ring: &Ring, keys: &[Vec<u8>]) -> Vec<Option<Arc<str>>> {
    let snap = ring.pin();
    keys.iter()
        .map(|k| snap.lookup(k).map(|id| name_of(&snap, id)))
        .collect()
}

/// Each key's full clockwise order of distinct nodes, by name.
fn replica_names(ring: &Ring, keys: &[Vec<u8>]) -> Vec<Vec<Arc<str>>> {
    let snap = ring.pin();
    let n = snap.node_count();
    keys.iter()
        .map(|k| {
            snap.lookup_n(k, n)
                .into_iter()
                .map(|id| name_of(&snap, id))
                .collect()
        })
        .collect()
}

/// Each member's (vnodes, share), by name.
fn shares_by_name(ring: &Ring) -> BTreeMap<Arc<str>, (u32, f64)> {
    ring.nodes()
        .into_iter()
        .map(|s| (s.name, (s.points, s.share)))
        .collect()
}

fn full_orders(ring: &Ring, keys: &[Vec<u8>]) -> Vec<Vec<NodeId>> {
    let n = ring.node_count();
    keys.iter().map(|k| ring.lookup_n(k, n)).collect()
}

fn without(order: &[NodeId], id: NodeId) -> Vec<NodeId> {
    order.iter().copied().filter(|&x| x != id).collect()
}

proptest! {
    #![proptest_config(config(48))]

    /// Adding a node moves keys only onto it: every key whose owner changed
    /// is now owned by the new node, so no key moves between two old nodes.
    /// Also, each key's clockwise order of distinct nodes is the old order
    /// with the new node inserted somewhere (replica sets shift minimally).
    #[test]
    fn adding_a_node_moves_keys_only_to_it(
        members in membership(3..13, MAX_TEST_VNODES),
        seed in any::<u64>(),
    ) {
        let (new_name, new_vnodes) = members.last().unwrap().clone();
        let (ring, _) = build(&members[..members.len() - 1]);
        let keys = key_set(seed, KEYS);
        let before: Vec<_> = keys.iter().map(|k| ring.lookup(k)).collect();
        let before_orders = full_orders(&ring, &keys);

        let new = ring.add_node(&new_name, new_vnodes).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let after = ring.lookup(k);
            if after != before[i] {
                prop_assert_eq!(
                    after, Some(new), "key {:?} moved {:?} -> {:?}", k, before[i], after
                );
            }
        }
        for (i, order) in full_orders(&ring, &keys).iter().enumerate() {
            prop_assert!(order.contains(&new));
            prop_assert_eq!(&without(order, new), &before_orders[i]);
        }
    }

    /// Removing a node moves exactly its keys: every key that moved was on
    /// the removed node, and every key of the removed node moved. The other
    /// nodes keep their clockwise order for every key.
    #[test]
    fn removing_a_node_moves_only_its_keys(
        members in membership(2..12, MAX_TEST_VNODES),
        victim in any::<Index>(),
        seed in any::<u64>(),
    ) {
        let (ring, ids) = build(&members);
        let gone = ids[victim.index(ids.len())];
        let keys = key_set(seed, KEYS);
        let before: Vec<_> = keys.iter().map(|k| ring.lookup(k)).collect();
        let before_orders = full_orders(&ring, &keys);

        ring.remove_node(gone).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let after = ring.lookup(k);
            let moved = after != before[i];
            let was_on_victim = before[i] == Some(gone);
            prop_assert_eq!(moved, was_on_victim, "key {:?}: {:?} -> {:?}", k, before[i], after);
        }
        for (i, order) in full_orders(&ring, &keys).iter().enumerate() {
            prop_assert_eq!(order, &without(&before_orders[i], gone));
        }
    }

    /// Changing one node's vnodes moves keys only to it (raise) or only from
    /// it (lower); nothing moves when the count is unchanged. Other nodes keep
    /// their relative clockwise order, and the changed node only moves
    /// earlier (raise) or later (lower) in it. Setting the count back
    /// restores the original lookups, replica sets and shares exactly.
    #[test]
    fn changing_vnodes_moves_keys_only_to_or_from_that_node(
        members in membership(2..12, MAX_TEST_VNODES),
        which in any::<Index>(),
        new_vnodes in 1u32..=MAX_TEST_VNODES,
        seed in any::<u64>(),
    ) {
        let (ring, ids) = build(&members);
        let slot = which.index(ids.len());
        let (id, old_vnodes) = (ids[slot], members[slot].1);
        let keys = key_set(seed, KEYS);
        let before: Vec<_> = keys.iter().map(|k| ring.lookup(k)).collect();
        let before_orders = full_orders(&ring, &keys);
        let before_n: Vec<Vec<Vec<NodeId>>> = keys
            .iter()
            .map(|k| (0..=ids.len()).map(|n| ring.lookup_n(k, n)).collect())
            .collect();
        let before_shares = ring.nodes();
        let v0 = ring.version();

        ring.set_weight(id, new_vnodes).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let after = ring.lookup(k);
            if after == before[i] {
                continue;
            }
            match new_vnodes.cmp(&old_vnodes) {
                Ordering::Greater => {
                    prop_assert_eq!(after, Some(id), "raise moved {:?} elsewhere", k)
                }
                Ordering::Less => {
                    prop_assert_eq!(before[i], Some(id), "lower moved {:?} from elsewhere", k)
                }
                Ordering::Equal => prop_assert!(false, "unchanged count moved {:?}", k),
            }
        }
        for (i, order) in full_orders(&ring, &keys).iter().enumerate() {
            prop_assert_eq!(without(order, id), without(&before_orders[i], id));
            let pos_now = order.iter().position(|&x| x == id).unwrap();
            let pos_before = before_orders[i].iter().position(|&x| x == id).unwrap();
            if new_vnodes >= old_vnodes {
                prop_assert!(pos_now <= pos_before);
            } else {
                prop_assert!(pos_now >= pos_before);
            }
        }

        ring.set_weight(id, old_vnodes).unwrap();
        prop_assert_eq!(ring.version(), v0 + 2);
        for (i, k) in keys.iter().enumerate() {
            prop_assert_eq!(ring.lookup(k), before[i]);
            for (n, expected) in before_n[i].iter().enumerate() {
                prop_assert_eq!(&ring.lookup_n(k, n), expected);
            }
        }
        prop_assert_eq!(ring.nodes(), before_shares);
    }
}

/// Builds the membership `target` the long way round: members added in a
/// shuffled order with other vnode counts, extra nodes added and removed in
/// between, vnode counts changed several times before ending at the target,
/// and one member removed and re-added (so it gets a new id).
fn build_scrambled(target: &[(String, u32)], extras: &[String], seed: u64) -> Ring {
    let mut rng = SplitMix(seed);
    let ring = Ring::new();
    let mut ids: HashMap<&str, NodeId> = HashMap::new();
    let mut order: Vec<usize> = (0..target.len()).collect();
    rng.shuffle(&mut order);
    let mut pending: Vec<&String> = extras.iter().collect();
    let mut extra_ids = Vec::new();
    let random_vnodes = |rng: &mut SplitMix| 1 + u32::try_from(rng.below(300)).unwrap();
    for &i in &order {
        if rng.below(2) == 0 {
            if let Some(extra) = pending.pop() {
                extra_ids.push(ring.add_node(extra, random_vnodes(&mut rng)).unwrap());
            }
        }
        let name = target[i].0.as_str();
        ids.insert(name, ring.add_node(name, random_vnodes(&mut rng)).unwrap());
    }
    for extra in pending {
        extra_ids.push(ring.add_node(extra, random_vnodes(&mut rng)).unwrap());
    }
    rng.shuffle(&mut order);
    for &i in &order {
        let (name, vnodes) = (&target[i].0, target[i].1);
        for _ in 0..rng.below(3) {
            ring.set_weight(ids[name.as_str()], random_vnodes(&mut rng))
                .unwrap();
        }
        ring.set_weight(ids[name.as_str()], vnodes).unwrap();
        if let Some(&extra) = extra_ids.last() {
            if rng.below(2) == 0 {
                ring.set_weight(extra, random_vnodes(&mut rng)).unwrap();
            }
        }
    }
    let (name, vnodes) = &target[order[0]];
    ring.remove_node(ids[name.as_str()]).unwrap();
    ring.add_node(name, *vnodes).unwrap();
    rng.shuffle(&mut extra_ids);
    for extra in extra_ids {
        ring.remove_node(extra).unwrap();
    }
    ring
}

proptest! {
    #![proptest_config(config(48))]

    /// Placement depends on the membership (names and vnode counts) only,
    /// not on how it was reached: a ring built by plain adds and one built
    /// through shuffled adds, extra nodes, vnode changes and a re-add map
    /// every key to the same owner NAME (ids differ with order), give the
    /// same replica sets by name, and report the same shares.
    #[test]
    fn same_membership_by_any_path_gives_same_mapping_by_name(
        target in membership(2..12, MAX_TEST_VNODES),
        extras in prop::collection::btree_set(node_name(), 0..4),
        plan_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let names: HashSet<&str> = target.iter().map(|(n, _)| n.as_str()).collect();
        let extras: Vec<String> = extras
            .into_iter()
            .filter(|e| !names.contains(e.as_str()))
            .collect();
        let (plain, _) = build(&target);
        let scrambled = build_scrambled(&target, &extras, plan_seed);
        let keys = key_set(seed, KEYS);

        prop_assert_eq!(owner_names(&plain, &keys), owner_names(&scrambled, &keys));
        prop_assert_eq!(replica_names(&plain, &keys), replica_names(&scrambled, &keys));
        prop_assert_eq!(shares_by_name(&plain), shares_by_name(&scrambled));

        // And the naive reference, built in reverse order, agrees by name.
        let mut reference = ReferenceRing::default();
        let mut ref_names = HashMap::new();
        for (name, v) in target.iter().rev() {
            let id = reference.add_node(name, *v).unwrap();
            ref_names.insert(id, Arc::<str>::from(name.as_str()));
        }
        let by_ref: Vec<_> = keys
            .iter()
            .map(|k| reference.lookup(k).map(|id| ref_names[&id].clone()))
            .collect();
        prop_assert_eq!(owner_names(&plain, &keys), by_ref);
    }
}

/// One membership edit, as applied to both rings.
#[derive(Clone, Debug)]
enum Op {
    /// Add the name at this index of the case's name pool (names repeat, so
    /// duplicates are refused).
    Add { name: usize, vnodes: u32 },
    /// Add an empty or over-long name.
    AddBadName { len: usize, vnodes: u32 },
    /// Remove this id (often not, or no longer, a member).
    Remove { id: u32 },
    /// Set this id's vnodes.
    SetVnodes { id: u32, vnodes: u32 },
    /// Set this id's vnodes to what it already has (still a new version).
    SetSame { id: u32 },
}

/// Vnode counts, mostly valid, sometimes 0 or above the limit.
fn op_vnodes() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..=300, 1 => Just(0u32), 1 => 250u32..=400]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..9, op_vnodes()).prop_map(|(name, vnodes)| Op::Add { name, vnodes }),
        1 => (prop_oneof![Just(0usize), 256usize..300], op_vnodes())
            .prop_map(|(len, vnodes)| Op::AddBadName { len, vnodes }),
        2 => (0u32..20).prop_map(|id| Op::Remove { id }),
        3 => (0u32..20, op_vnodes()).prop_map(|(id, vnodes)| Op::SetVnodes { id, vnodes }),
        1 => (0u32..20).prop_map(|id| Op::SetSame { id }),
    ]
}

/// What an edit returned: the new id for adds, nothing for other edits.
type Outcome = Result<Option<NodeId>, RingError>;

/// Applies `op` to both rings; returns (ring's outcome, reference's).
fn apply(
    ring: &Ring,
    reference: &mut ReferenceRing,
    pool: &[String],
    op: &Op,
) -> (Outcome, Outcome) {
    match *op {
        Op::Add { name, vnodes } => (
            ring.add_node(&pool[name], vnodes).map(Some),
            reference.add_node(&pool[name], vnodes).map(Some),
        ),
        Op::AddBadName { len, vnodes } => {
            let name = "x".repeat(len);
            (
                ring.add_node(&name, vnodes).map(Some),
                reference.add_node(&name, vnodes).map(Some),
            )
        }
        Op::Remove { id } => (
            ring.remove_node(NodeId(id)).map(|_| None),
            reference.remove_node(NodeId(id)).map(|_| None),
        ),
        Op::SetVnodes { id, vnodes } => (
            ring.set_weight(NodeId(id), vnodes).map(|_| None),
            reference.set_weight(NodeId(id), vnodes).map(|_| None),
        ),
        Op::SetSame { id } => {
            let current = reference
                .members()
                .find(|m| m.0 == NodeId(id))
                .map_or(1, |m| m.2);
            (
                ring.set_weight(NodeId(id), current).map(|_| None),
                reference.set_weight(NodeId(id), current).map(|_| None),
            )
        }
    }
}

/// Keys on, and just past, a few points of every member (including the point
/// a lowered count just removed), plus `keys`.
fn probe_keys(reference: &ReferenceRing, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut probes = keys.to_vec();
    for (_, name, vnodes) in reference.members() {
        for i in [0, 1, vnodes - 1, vnodes, vnodes + 1] {
            probes.push(key_on_point(name, i));
        }
    }
    probes
}

/// Asserts that `ring` and `reference` have the same members and answer
/// every key in `keys` the same, with `lookup` and with `lookup_n`.
fn assert_agree(
    ring: &Ring,
    reference: &ReferenceRing,
    keys: &[Vec<u8>],
    ns: &[usize],
) -> Result<(), TestCaseError> {
    let members: Vec<(NodeId, String, u32)> = ring
        .nodes()
        .into_iter()
        .map(|s| (s.id, s.name.to_string(), s.points))
        .collect();
    let expected: Vec<(NodeId, String, u32)> = reference
        .members()
        .map(|(id, name, v)| (id, name.to_owned(), v))
        .collect();
    prop_assert_eq!(&members, &expected);
    prop_assert_eq!(ring.node_count(), expected.len());
    for k in keys {
        prop_assert_eq!(ring.lookup(k), reference.lookup(k), "lookup({:?})", k);
        for &n in ns {
            prop_assert_eq!(
                ring.lookup_n(k, n),
                reference.lookup_n(k, n),
                "lookup_n({:?}, {})",
                k,
                n
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(40))]

    /// The lock-free ring and the naive reference agree through random edit
    /// sequences: the same result (id or error) for every edit, version +1
    /// per successful edit and unchanged on errors, the same members, and the
    /// same `lookup` and `lookup_n` answers after every edit, including for
    /// keys that hash exactly onto points.
    #[test]
    fn ring_agrees_with_reference_through_random_edits(
        pool in prop::collection::btree_set(node_name(), 8),
        max_weight in prop_oneof![Just(300u32), 1u32..300],
        ops in prop::collection::vec(op(), 1..60),
        seed in any::<u64>(),
    ) {
        let mut pool: Vec<String> = pool.into_iter().collect();
        pool.push("y".repeat(MAX_NAME_BYTES));
        let ring = Ring::with_max_weight(max_weight);
        let mut reference = ReferenceRing::new(max_weight);
        let mut version = ring.version();
        let step_keys = key_set(seed, 100);

        for op in &ops {
            let (got, want) = apply(&ring, &mut reference, &pool, op);
            prop_assert_eq!(&got, &want, "{:?}", op);
            if got.is_ok() {
                version += 1;
            }
            prop_assert_eq!(ring.version(), version, "after {:?}", op);
            assert_agree(&ring, &reference, &probe_keys(&reference, &step_keys), &[0, 1, 2, 3])?;
        }
        // Full replica orders for many keys; n past the node count (a walk of
        // the whole ring in the reference) for fewer.
        let count = reference.members().count();
        let keys = probe_keys(&reference, &key_set(seed ^ 1, KEYS));
        assert_agree(&ring, &reference, &keys, &[count])?;
        assert_agree(&ring, &reference, &key_set(seed ^ 2, 100), &[count + 1, 20])?;
    }

    /// Lookups are exact at point boundaries: the ring's point table is the
    /// naive [`ReferenceRing`]'s (built from the same members in the same
    /// order, so with the same ids), and for every point `p`, `lookup_hash`
    /// of `p - 1`, `p` and `p + 1` (and of 0 and `u64::MAX`, where the ring
    /// wraps) is the reference's owner of the first point `>= hash`; and a
    /// key that hashes exactly onto a node's point is owned by that node.
    #[test]
    fn lookups_are_exact_at_point_boundaries(
        members in membership(1..12, MAX_TEST_VNODES),
    ) {
        let (ring, ids) = build(&members);
        let mut reference = ReferenceRing::default();
        for (name, v) in &members {
            reference.add_node(name, *v).expect("valid membership");
        }
        let points: Vec<(u64, NodeId)> = reference.points().collect();
        let snap = ring.pin();
        prop_assert_eq!(&snap.points().collect::<Vec<_>>(), &points);
        let mut probes = vec![0, 1, u64::MAX - 1, u64::MAX];
        for &(p, _) in &points {
            probes.extend([p.wrapping_sub(1), p, p.wrapping_add(1)]);
        }
        for h in probes {
            let want = reference.lookup_hash(h);
            prop_assert!(want.is_some());
            prop_assert_eq!(snap.lookup_hash(h), want, "hash {:#x}", h);
        }
        for ((name, v), &id) in members.iter().zip(&ids) {
            for i in [0, v / 2, v - 1] {
                prop_assert_eq!(ring.lookup(&key_on_point(name, i)), Some(id), "{}#{}", name, i);
            }
        }
    }

    /// `lookup_n(key, n)` for n in 0..=30 returns min(n, node count) distinct
    /// members, starts with `lookup(key)`, and is a prefix of
    /// `lookup_n(key, n + 1)`. Memberships of 17..25 nodes are included so
    /// replica sets larger than 16 (a separate code path) are covered.
    #[test]
    fn lookup_n_returns_distinct_nodes_starting_with_lookup(
        members in prop_oneof![membership(2..12, MAX_TEST_VNODES), membership(17..25, 40)],
        seed in any::<u64>(),
    ) {
        let (ring, ids) = build(&members);
        let ids: HashSet<NodeId> = ids.into_iter().collect();
        for k in key_set(seed, 200) {
            let first = ring.lookup(&k);
            prop_assert!(first.is_some());
            let mut previous: Vec<NodeId> = Vec::new();
            for n in 0..=30usize {
                let got = ring.lookup_n(&k, n);
                prop_assert_eq!(got.len(), n.min(ids.len()), "n = {}", n);
                let distinct: HashSet<NodeId> = got.iter().copied().collect();
                prop_assert_eq!(distinct.len(), got.len(), "duplicates in {:?}", got);
                prop_assert!(distinct.is_subset(&ids), "non-member in {:?}", got);
                if n > 0 {
                    prop_assert_eq!(got.first().copied(), first);
                }
                prop_assert_eq!(&got[..previous.len()], &previous[..]);
                previous = got;
            }
        }
    }
}

/// An empty ring answers nothing: `lookup` is `None` and `lookup_n` empty,
/// before any node joins and after the last one leaves.
#[test]
fn empty_ring_answers_nothing() {
    let ring = Ring::new();
    assert_eq!(ring.lookup(b"k"), None);
    assert!(ring.lookup_n(b"k", 3).is_empty());
    let a = ring.add_node("a", 5).unwrap();
    assert_eq!(ring.lookup(b"k"), Some(a));
    ring.remove_node(a).unwrap();
    assert_eq!(ring.lookup(b"k"), None);
    assert!(ring.lookup_n(b"k", 3).is_empty());
    assert!(ring.nodes().is_empty());
}

/// Population mean and spread of a set of per-node values.
struct Spread {
    /// Standard deviation over mean.
    cv: f64,
    /// Smallest value over mean.
    min: f64,
    /// Largest value over mean.
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread {
        cv: var.sqrt() / mean,
        min: min / mean,
        max: max / mean,
    }
}

/// The standard balance ring: `cache-0`..`cache-9`, `vnodes` each.
fn balance_ring(vnodes: u32) -> Ring {
    let ring = Ring::new();
    for i in 0..10 {
        ring.add_node(&format!("cache-{i}"), vnodes).unwrap();
    }
    ring
}

/// Each node's fraction of `keys` keys `key-0`, `key-1`, ..., by id.
fn key_fractions(ring: &Ring, keys: usize) -> BTreeMap<NodeId, f64> {
    let mut counts: BTreeMap<NodeId, usize> = ring.nodes().iter().map(|s| (s.id, 0)).collect();
    let snap = ring.pin();
    for i in 0..keys {
        *counts
            .get_mut(&snap.lookup(format!("key-{i}").as_bytes()).unwrap())
            .unwrap() += 1;
    }
    counts
        .into_iter()
        .map(|(id, c)| (id, c as f64 / keys as f64))
        .collect()
}

/// With 10 nodes x 160 vnodes (`cache-0`..`cache-9`), the standard
/// deviation of the nodes' hash-space shares is under 15% of the mean, and
/// the shares sum to 1.
#[test]
fn balance_ten_nodes_160_vnodes_within_15_percent() {
    let ring = balance_ring(160);
    let shares: Vec<f64> = ring.nodes().iter().map(|s| s.share).collect();
    assert_eq!(shares.len(), 10);
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let s = spread(&shares);
    assert!(s.cv < 0.15, "stddev/mean of shares = {:.4}", s.cv);
}

/// Prints the balance figures recorded in `docs/balance.md` (10 nodes at
/// 100, 160 and 1000 vnodes: spread of hash-space shares and of the
/// fraction of 100k keys per node) and asserts sane bounds: stddev/mean
/// under 2/sqrt(vnodes) for both, min and max within 5/sqrt(vnodes) of the
/// mean, and each node's key fraction within 0.005 of its share (so shares
/// describe what lookups actually do).
#[test]
fn balance_figures() {
    const KEY_COUNT: usize = 100_000;
    println!(
        "| vnodes | 1/sqrt(v) | share stddev/mean | share min/mean | share max/mean \
         | keys stddev/mean | keys min/mean | keys max/mean |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for vnodes in [100u32, 160, 1000] {
        let ring = balance_ring(vnodes);
        let shares: BTreeMap<NodeId, f64> = ring.nodes().iter().map(|s| (s.id, s.share)).collect();
        let fractions = key_fractions(&ring, KEY_COUNT);
        let s = spread(&shares.values().copied().collect::<Vec<_>>());
        let k = spread(&fractions.values().copied().collect::<Vec<_>>());
        let theory = 1.0 / f64::from(vnodes).sqrt();
        println!(
            "| {vnodes} | {theory:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.cv, s.min, s.max, k.cv, k.min, k.max
        );
        for f in [&s, &k] {
            assert!(f.cv < 2.0 * theory, "vnodes {vnodes}: cv {:.4}", f.cv);
            assert!(
                f.min > 1.0 - 5.0 * theory,
                "vnodes {vnodes}: min {:.4}",
                f.min
            );
            assert!(
                f.max < 1.0 + 5.0 * theory,
                "vnodes {vnodes}: max {:.4}",
                f.max
            );
        }
        for (id, share) in &shares {
            let frac = fractions[id];
            assert!(
                (frac - share).abs() < 0.005,
                "vnodes {vnodes}: node {id} owns {share:.4} of the space but {frac:.4} of the keys"
            );
        }
    }
}
