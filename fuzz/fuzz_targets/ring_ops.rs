//! Fuzz target `ring_ops`: one sequence of membership edits and lookups,
//! applied to the fast lock-free [`Ring`] and to the deliberately naive
//! [`ReferenceRing`]; every answer must agree exactly.
//!
//! An input runs against rings of one placement (see the input format): an
//! xxh3 pair (`Ring::with_max_weight(MAX_VNODES)` and
//! `ReferenceRing::new(MAX_VNODES)`), or, when the input starts with the
//! [`KETAMA_MARKER`] byte, a ketama pair
//! (`Ring::with_placement(Placement::Ketama, MAX_VNODES)` and
//! `ReferenceRing::with_placement(Placement::Ketama, MAX_VNODES)`), where
//! the `vnodes` of `add`/`set_weight` are ketama weights.
//!
//! What is checked, op by op:
//!
//! * every edit returns the same `Result` from both rings (the same new id,
//!   the same error with the same fields);
//! * `Ring::version` goes up by exactly one on a successful edit and does
//!   not move on a refused one;
//! * after every edit: the member lists (id, name, weight, point count) and
//!   node counts agree, shares are sane, a few spot keys look up the same
//!   (the same owner) in both rings and in a fresh `pin()` snapshot, and one
//!   key's `lookup_n` for more replicas than there are nodes agrees;
//! * `lookup` and `lookup_n` ops (key and `n` from the input) agree between
//!   the rings and with `pin()`, and `lookup_n` returns `min(n, nodes)` ids
//!   starting with `lookup`'s (ketama: `min(n, nodes with a point)`, since
//!   a node of too small a weight share has no point);
//! * a snapshot pinned *before* an edit still shows the old version and the
//!   old owners after it (snapshots are immutable and stay alive while
//!   pinned; AddressSanitizer catches a premature free);
//! * after every successful edit, the ring's sorted `(point, owner)` table
//!   equals [`ReferenceRing::points`], which the reference rebuilds from
//!   scratch from its member list after every edit: under xxh3 with
//!   `vnode_point`, ties ordered by name (the merge/subtract paths of
//!   `RingTable` against a full rebuild); under ketama with
//!   `ketama_points_per_server` of the weights and `ketama_points`, ties
//!   ordered by id (server order);
//! * `probe` ops compare `RingTable::lookup_hash` with
//!   `ReferenceRing::lookup_hash` at hashes random keys almost never reach:
//!   exactly on points, one either side, 0, `u64::MAX`, and bucket
//!   boundaries (ketama: also `u32::MAX`, `u32::MAX + 1` and other
//!   positions beyond the 32-bit space, which wrap to the first point);
//!   and `lookup`, `key_hash` and `point_for` of one key against the
//!   placement's own key hash and `ReferenceRing::point_for`.
//!
//! # Why hand-decoded bytes and not `arbitrary`
//!
//! The interesting inputs are boundary values: vnodes of 0, 1, max, max+1;
//! ids that were handed out (live or removed) and ids that never were; names
//! that differ by a digit suffix or sit at the 255-byte (ketama: 74-byte)
//! limit, and ketama names known to share a point. A derived
//! `Arbitrary` draws a `u32` uniformly-ish, so it would almost never produce
//! a live id or `max + 1`. Decoding by hand lets one byte pick from a table
//! of such values, keeps every byte string a valid (possibly empty) op
//! sequence with no rejected inputs, and gives a small, stable, documented
//! format, so the seed corpus can be written by hand (see
//! `fuzz/corpus/ring_ops/seed-*`) and does not change meaning when the
//! `arbitrary` crate changes its encoding.
//!
//! # Input format
//!
//! ```text
//! input   := op*                 xxh3 rings: the first byte is not 0x4B
//!          | 0x4B op*            ketama rings: KETAMA_MARKER ('K') and
//!                                the ops, decoded as below (only the name
//!                                pool differs). Before ketama existed a
//!                                leading 0x4B was a `lookup` tag (75 % 6 =
//!                                3) on the empty ring; no committed seed
//!                                starts with it. Either way: at most
//!                                MAX_OPS ops; bytes missing at the end of
//!                                a truncated op read as 0
//! op      := tag:u8 body         tag % 6 picks the op:
//!   0 add        name vnodes
//!   1 remove     id
//!   2 set_weight id weight
//!   3 lookup     key
//!   4 lookup_n   n:u8 key        n % 9, so 0..=8
//!   5 probe      h:u64 (LE)
//! name    := sel:u8              sel < 0xF0: pool[sel % pool.len()], where
//!                                pool is NAMES (18 names) for xxh3 and
//!                                NAMES followed by KETAMA_NAMES (12) for
//!                                ketama; xxh3 selectors keep their meaning
//!          | sel:u8 len:u8 bytes sel >= 0xF0: `len` raw bytes, lossy UTF-8
//!                                (U+FFFD is 3 bytes, so this can also
//!                                exceed 255 bytes)
//! vnodes  := v:u8                weights too, under ketama
//!                                0..=7: 0, 1, 2, MAX-1, MAX, MAX+1,
//!                                u32::MAX, 2*MAX; 8..=255: 1 + (v-8) % (MAX+4)
//! id      := s:u8                s < 0x80 and some id issued: the
//!                                (s % issued)-th id ever handed out (may be
//!                                removed already); otherwise a never-issued
//!                                id: next, next+1, next+(s & 0x7f), u32::MAX
//!                                by (s & 0x7f) % 4
//! key     := len:u8 bytes        len % 64 bytes (fewer if the input ends)
//! ```
//!
//! Rings use `MAX_VNODES` = 64 (ketama: the largest weight) so every edit
//! is cheap and runs stay fast. A ketama node has about 160 points whatever
//! its weight, and every ketama edit rebuilds two tables (the ring's and the
//! reference's), so ketama inputs run slower per op.
//!
//! To see what an input does, run the built target on it with
//! `RING_OPS_TRACE=1`, e.g.
//! `RING_OPS_TRACE=1 fuzz/target/x86_64-unknown-linux-gnu/release/ring_ops FILE`.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringcache::hash::{ketama_key_hash, key_hash, Placement};
use ringcache::ring::reference::ReferenceRing;
use ringcache::{NodeId, Ring, RingError};

/// The weight limit of both rings: small, so edits
/// and rebuilds stay cheap.
const MAX_VNODES: u32 = 64;

/// An input whose first byte is this (`'K'`) runs its remaining bytes
/// against ketama rings; any other input runs, from its first byte, against
/// xxh3 rings.
const KETAMA_MARKER: u8 = b'K';

/// Ops decoded from one input at most; longer inputs are cut here so one
/// input cannot run for long.
const MAX_OPS: usize = 256;

/// Keys looked up in both rings after every edit, besides the last key the
/// input asked about and two keys derived from the op number.
const SPOT_KEYS: [&[u8]; 4] = [b"", b"a", b"node1", b"user:42"];

/// The pool of node names an input picks from by one byte: [`xxh3_names`]
/// for xxh3 rings, those followed by [`ketama_names`] for ketama rings (so
/// the xxh3 pool, and the meaning of every xxh3 input, stay as they were).
fn names(placement: Placement) -> &'static [String] {
    static KETAMA: OnceLock<Vec<String>> = OnceLock::new();
    match placement {
        Placement::Xxh3 => xxh3_names(),
        Placement::Ketama => KETAMA.get_or_init(|| {
            let mut pool = xxh3_names().to_vec();
            pool.extend(ketama_names());
            pool
        }),
    }
}

/// NAMES, the pool of node names of xxh3 inputs. Names that differ only by a
/// digit suffix ("node1"/"node" with index 10 must not collide), invalid
/// ones (empty, over 255 bytes), the longest valid ones (ASCII and
/// multi-byte), and control bytes. Under ketama the names over 74 bytes are
/// invalid too.
fn xxh3_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        vec![
            "node".to_owned(),
            "node1".to_owned(),
            "node10".to_owned(),
            "node0".to_owned(),
            String::new(),
            "a".to_owned(),
            "a\u{1}".to_owned(),
            "\u{1}".to_owned(),
            "b".to_owned(),
            "node\0".to_owned(),
            "cache-0".to_owned(),
            "cache-1".to_owned(),
            "x".repeat(255),       // longest valid
            "x".repeat(256),       // one byte too long
            "y".repeat(300),       // far too long
            "é".repeat(127),       // 254 bytes, valid
            "é".repeat(128),       // 256 bytes, too long
            "x".repeat(254) + "1", // 255 bytes, differs from the 255 x's
        ]
    })
}

/// KETAMA_NAMES, appended to NAMES for ketama inputs: names around ketama's
/// 74-byte limit, two pairs of names whose first digests (`k` = 0) share a
/// 32-bit point (found by a birthday search over `"tie{i}"`), so the
/// tie-by-server-order rule is reachable, libmemcached's vector names, and a
/// name that looks like a point string.
fn ketama_names() -> Vec<String> {
    vec![
        "k".repeat(73),          // 73 bytes, valid
        "k".repeat(74),          // 74 bytes, longest valid
        "k".repeat(75),          // 75 bytes, one byte too long
        "é".repeat(37),          // 74 bytes, longest valid multi-byte
        "é".repeat(37) + "k",    // 75 bytes, too long
        "k".repeat(72) + "-1",   // 74 bytes, "kk..k-1-{k}"
        "tie14331".to_owned(),   // shares point 3732221958 with the next
        "tie17616".to_owned(),   //
        "tie18976".to_owned(),   // shares point 22215224 with the next
        "tie21111".to_owned(),   //
        "10.0.1.1".to_owned(),   // libmemcached's ketama vectors
        "10.0.1.1-1".to_owned(), // its point strings are "10.0.1.1-1-{k}"
    ]
}

/// Whether to print each op and edit result to stderr: set `RING_OPS_TRACE=1`
/// and run the target binary on one input to read what the input does.
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RING_OPS_TRACE").is_some())
}

/// Reads the input byte by byte; past the end it yields zeros.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `len` bytes, fewer if the input ends first.
    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }

    fn name(&mut self, placement: Placement) -> String {
        let sel = self.u8();
        if sel >= 0xF0 {
            let len = usize::from(self.u8());
            String::from_utf8_lossy(self.take(len)).into_owned()
        } else {
            let pool = names(placement);
            pool[usize::from(sel) % pool.len()].clone()
        }
    }

    fn vnodes(&mut self) -> u32 {
        match self.u8() {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => MAX_VNODES - 1,
            4 => MAX_VNODES,
            5 => MAX_VNODES + 1,
            6 => u32::MAX,
            7 => 2 * MAX_VNODES,
            v => 1 + u32::from(v - 8) % (MAX_VNODES + 4),
        }
    }

    /// An id: mostly one handed out so far, sometimes one never issued.
    fn id(&mut self, issued: &[NodeId]) -> NodeId {
        let s = self.u8();
        if s < 0x80 && !issued.is_empty() {
            return issued[usize::from(s) % issued.len()];
        }
        // Ids are handed out in order from 0, so `issued.len()` is the next.
        let next = u32::try_from(issued.len()).expect("at most MAX_OPS ids");
        let low = u32::from(s & 0x7f);
        match low % 4 {
            0 => NodeId(next),
            1 => NodeId(next + 1),
            2 => NodeId(next + low),
            _ => NodeId(u32::MAX),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        let len = usize::from(self.u8() % 64);
        self.take(len).to_vec()
    }
}

/// One decoded operation, kept for the failure report.
#[derive(Clone)]
enum Op {
    Add { name: String, vnodes: u32 },
    Remove { id: NodeId },
    SetVnodes { id: NodeId, vnodes: u32 },
    Lookup { key: Vec<u8> },
    LookupN { key: Vec<u8>, n: usize },
    Probe { hash: u64 },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Add { name, vnodes } => {
                write!(f, "add_node({}, {vnodes})", short_name(name))
            }
            Op::Remove { id } => write!(f, "remove_node(NodeId({}))", id.0),
            Op::SetVnodes { id, vnodes } => write!(f, "set_vnodes(NodeId({}), {vnodes})", id.0),
            Op::Lookup { key } => write!(f, "lookup({})", show_key(key)),
            Op::LookupN { key, n } => write!(f, "lookup_n({}, {n})", show_key(key)),
            Op::Probe { hash } => write!(f, "probe(hash = {hash:#018x})"),
        }
    }
}

/// A name for a report: long names are shown as `"x" * 255`, or by their
/// first and last characters, with their length in bytes.
fn short_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if name.len() <= 32 {
        format!("{name:?} ({} bytes)", name.len())
    } else if chars.iter().all(|&c| c == chars[0]) {
        let c = chars[0].to_string();
        format!("{c:?} * {} ({} bytes)", chars.len(), name.len())
    } else {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 8..].iter().collect();
        format!("{head:?} .. {tail:?} ({} bytes)", name.len())
    }
}

fn show_key(key: &[u8]) -> String {
    format!("b\"{}\"", key.escape_ascii())
}

/// Both rings and what the run has learned so far.
struct Harness {
    /// The placement of both rings.
    placement: Placement,
    ring: Ring,
    reference: ReferenceRing,
    /// Every id handed out, in order (removed ones stay: ids are never
    /// reused, and removing one again must fail with `UnknownNode`).
    issued: Vec<NodeId>,
    /// The ops run so far, for the failure report.
    log: Vec<Op>,
    /// The last key an input looked up; spot-checked after every edit.
    last_key: Vec<u8>,
}

impl Harness {
    fn new(placement: Placement) -> Harness {
        let (ring, reference) = match placement {
            Placement::Xxh3 => (
                Ring::with_max_weight(MAX_VNODES),
                ReferenceRing::new(MAX_VNODES),
            ),
            Placement::Ketama => (
                Ring::with_placement(placement, MAX_VNODES),
                ReferenceRing::with_placement(placement, MAX_VNODES),
            ),
        };
        Harness {
            placement,
            ring,
            reference,
            issued: Vec::new(),
            log: Vec::new(),
            last_key: Vec::new(),
        }
    }

    /// Panics with `msg` and the op sequence that led here.
    #[cold]
    fn fail(&self, msg: fmt::Arguments<'_>) -> ! {
        let rings = match self.placement {
            Placement::Xxh3 => {
                format!("Ring::with_max_weight({MAX_VNODES}) and ReferenceRing::new({MAX_VNODES})")
            }
            Placement::Ketama => format!(
                "Ring::with_placement(Ketama, {MAX_VNODES}) and \
                 ReferenceRing::with_placement(Ketama, {MAX_VNODES}); vnodes are weights"
            ),
        };
        let mut report = format!(
            "ring_ops: check failed at op #{}: {msg}\nops ({rings}):\n",
            self.log.len().saturating_sub(1)
        );
        for (i, op) in self.log.iter().enumerate() {
            report.push_str(&format!("  #{i}: {op:?}\n"));
        }
        panic!("{report}");
    }

    fn run(&mut self, op: Op) {
        if trace() {
            eprintln!("#{}: {op:?}", self.log.len());
        }
        self.log.push(op.clone());
        match op {
            Op::Add { name, vnodes } => {
                let got = self.edit(
                    |ring| ring.add_node(&name, vnodes),
                    |r| r.add_node(&name, vnodes),
                );
                if let Ok(id) = got {
                    if self.issued.contains(&id) {
                        self.fail(format_args!("add_node reused id {id}"));
                    }
                    self.issued.push(id);
                }
            }
            // `edit` has already compared these results with the reference.
            Op::Remove { id } => {
                let _ = self.edit(|ring| ring.remove_node(id), |r| r.remove_node(id));
            }
            Op::SetVnodes { id, vnodes } => {
                let _ = self.edit(
                    |ring| ring.set_weight(id, vnodes),
                    |r| r.set_weight(id, vnodes),
                );
            }
            Op::Lookup { key } => {
                self.check_lookup_n(&key, 1);
                self.last_key = key;
            }
            Op::LookupN { key, n } => {
                self.check_lookup_n(&key, n);
                self.last_key = key;
            }
            Op::Probe { hash } => {
                self.check_table();
                self.probe(hash);
            }
        }
    }

    /// Applies one edit to both rings and checks everything an edit may
    /// change; returns the (agreed) result.
    fn edit<T>(
        &mut self,
        on_ring: impl FnOnce(&Ring) -> Result<T, RingError>,
        on_reference: impl FnOnce(&mut ReferenceRing) -> Result<T, RingError>,
    ) -> Result<T, RingError>
    where
        T: PartialEq + fmt::Debug,
    {
        let keys = self.spot_keys();
        let expected_before: Vec<Option<NodeId>> =
            keys.iter().map(|k| self.reference.lookup(k)).collect();
        let version = self.ring.version();
        // Held across the edit: it must keep showing the old table.
        let before = self.ring.pin();
        if before.version() != version {
            self.fail(format_args!(
                "pin().version() = {} but version() = {version}",
                before.version()
            ));
        }

        let got = on_ring(&self.ring);
        let want = on_reference(&mut self.reference);
        if trace() {
            eprintln!("    -> {got:?}, version {}", self.ring.version());
        }
        if got != want {
            self.fail(format_args!(
                "edit result: Ring gave {got:?}, ReferenceRing gave {want:?}"
            ));
        }

        let after = self.ring.version();
        let expected = if got.is_ok() { version + 1 } else { version };
        if after != expected {
            self.fail(format_args!(
                "version was {version}, edit gave {got:?}, version is now {after} (expected {expected})"
            ));
        }
        if before.version() != version {
            self.fail(format_args!(
                "a snapshot pinned before the edit changed version from {version} to {}",
                before.version()
            ));
        }
        for (key, want) in keys.iter().zip(&expected_before) {
            let old = before.lookup(key);
            if old != *want {
                self.fail(format_args!(
                    "a snapshot pinned before the edit now maps {} to {old:?}; before the edit the reference said {want:?}",
                    show_key(key)
                ));
            }
        }
        drop(before);

        self.check_members();
        for key in &keys {
            self.check_lookup(key);
        }
        // One key gets a full replica walk: more replicas than nodes, so
        // every member once, in ring order.
        self.check_lookup_n(&keys[keys.len() - 2], self.ring.node_count() + 1);
        if got.is_ok() {
            self.check_table();
        }
        got
    }

    /// The keys spot-checked around an edit.
    fn spot_keys(&self) -> Vec<Vec<u8>> {
        let i = self.log.len() as u64;
        let mut keys: Vec<Vec<u8>> = SPOT_KEYS.iter().map(|k| k.to_vec()).collect();
        keys.push(i.to_le_bytes().to_vec());
        keys.push(format!("key-{i}").into_bytes());
        keys.push(self.last_key.clone());
        keys
    }

    /// `lookup(key)` agrees between the rings and with a pinned snapshot.
    fn check_lookup(&self, key: &[u8]) -> Option<NodeId> {
        let got = self.ring.lookup(key);
        let want = self.reference.lookup(key);
        if got != want {
            self.fail(format_args!(
                "lookup({}): Ring gave {got:?}, ReferenceRing gave {want:?}",
                show_key(key)
            ));
        }
        let pinned = self.ring.pin().lookup(key);
        if pinned != got {
            self.fail(format_args!(
                "lookup({}): pin().lookup gave {pinned:?}, Ring::lookup gave {got:?}",
                show_key(key)
            ));
        }
        got
    }

    /// `lookup_n(key, n)` agrees between the rings and with a pinned
    /// snapshot, has `min(n, node count)` entries (ketama: nodes with at
    /// least one point) and starts with `lookup`.
    ///
    /// A `lookup_n` that asks for every node walks most of the ring in both
    /// implementations, so edits check it on one key, not on every spot key:
    /// it was most of the target's time.
    fn check_lookup_n(&self, key: &[u8], n: usize) {
        let first = self.check_lookup(key);
        let got = self.ring.lookup_n(key, n);
        let want = self.reference.lookup_n(key, n);
        if got != want {
            self.fail(format_args!(
                "lookup_n({}, {n}): Ring gave {got:?}, ReferenceRing gave {want:?}",
                show_key(key)
            ));
        }
        let snap = self.ring.pin();
        let pinned = snap.lookup_n(key, n);
        if pinned != got {
            self.fail(format_args!(
                "lookup_n({}, {n}): pin().lookup_n gave {pinned:?}, Ring::lookup_n gave {got:?}",
                show_key(key)
            ));
        }
        // Only nodes with points can be found clockwise. Every xxh3 node has
        // one (vnodes >= 1); a ketama node whose weight is too small a share
        // of the total has none (its share is 0), so a ketama `lookup_n`
        // returns fewer ids than `Ring::lookup_n`'s docs promise
        // (`min(n, node count)`) while such a node is a member.
        let count = match self.placement {
            Placement::Xxh3 => snap.node_count(),
            Placement::Ketama => snap.nodes().iter().filter(|n| n.points > 0).count(),
        };
        if got.len() != n.min(count) || (n > 0 && got.first().copied() != first) {
            self.fail(format_args!(
                "lookup_n({}, {n}) = {got:?} with {count} nodes that have points and lookup = {first:?}",
                show_key(key)
            ));
        }
    }

    /// Member lists (id, name, weight, point count), node counts and shares
    /// agree.
    fn check_members(&self) {
        let counts: BTreeMap<NodeId, u32> = self.reference.point_counts().collect();
        let want: Vec<(NodeId, String, u32, u32)> = self
            .reference
            .members()
            .map(|(id, name, weight)| (id, name.to_owned(), weight, counts[&id]))
            .collect();
        let shares = self.ring.nodes();
        let got: Vec<(NodeId, String, u32, u32)> = shares
            .iter()
            .map(|s| (s.id, s.name.to_string(), s.weight, s.points))
            .collect();
        if got != want {
            self.fail(format_args!(
                "members: Ring has {:?}, ReferenceRing has {:?}",
                brief(&got),
                brief(&want)
            ));
        }
        if self.ring.node_count() != want.len() {
            self.fail(format_args!(
                "node_count() = {} but there are {} members",
                self.ring.node_count(),
                want.len()
            ));
        }
        let sum: f64 = shares.iter().map(|s| s.share).sum();
        let sane = shares.iter().all(|s| (0.0..=1.0).contains(&s.share))
            && (shares.is_empty() || (sum - 1.0).abs() < 1e-9);
        if !sane {
            self.fail(format_args!(
                "shares {:?} do not sum to 1 (sum {sum})",
                shares.iter().map(|s| s.share).collect::<Vec<_>>()
            ));
        }
    }

    /// The ring's current table equals the reference's, point for point.
    fn check_table(&self) {
        let want: Vec<(u64, NodeId)> = self.reference.points().collect();
        let snap = self.ring.pin();
        if snap.placement() != self.placement {
            self.fail(format_args!(
                "the table's placement is {:?}, the ring was made {:?}",
                snap.placement(),
                self.placement
            ));
        }
        let got: Vec<(u64, NodeId)> = snap.points().collect();
        if got != want {
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            self.fail(format_args!(
                "table: Ring has {} points, ReferenceRing has {}; first difference at {at}: {:?} vs {:?}",
                got.len(),
                want.len(),
                got.get(at),
                want.get(at)
            ));
        }
        if snap.point_count() != want.len() {
            self.fail(format_args!(
                "point_count() = {} but the table has {} points",
                snap.point_count(),
                want.len()
            ));
        }
    }

    /// `lookup_hash` at hand-picked positions agrees with the reference;
    /// `lookup`, `key_hash` and `point_for` of one key agree with the
    /// placement's key hash and the reference.
    fn probe(&self, hash: u64) {
        let snap = self.ring.pin();
        let mut hashes = vec![0, 1, u64::MAX, hash, hash.wrapping_sub(1)];
        match self.placement {
            Placement::Xxh3 => {
                // Bucket boundaries at every possible index resolution.
                for k in 1..64 {
                    let b = (hash >> k) << k;
                    hashes.extend([b, b.wrapping_sub(1)]);
                }
            }
            Placement::Ketama => {
                // The ends of the 32-bit space and positions beyond it
                // (which wrap to the first point), then the input's
                // position folded into the space and the bucket boundaries
                // around it at every index resolution.
                let top = u64::from(u32::MAX);
                hashes.extend([top - 1, top, top + 1, top + 2, 1 << 33, 1 << 63]);
                let h32 = hash & top;
                hashes.extend([h32, h32.wrapping_sub(1), h32 + 1]);
                for k in 1..32 {
                    let b = (h32 >> k) << k;
                    hashes.extend([b, b.wrapping_sub(1), b + (1 << k)]);
                }
            }
        }
        for (p, _) in self.reference.points() {
            hashes.extend([p.wrapping_sub(1), p, p.wrapping_add(1)]);
        }
        for h in hashes {
            let got = snap.lookup_hash(h);
            let want = self.reference.lookup_hash(h);
            if got != want {
                self.fail(format_args!(
                    "lookup_hash({h:#018x}): Ring gave {got:?}, ReferenceRing gave {want:?}"
                ));
            }
        }
        // `lookup` is `lookup_hash` of the key's hash, and `point_for` is
        // the point that answers it.
        let key = hash.to_le_bytes();
        let position = match self.placement {
            Placement::Xxh3 => key_hash(&key),
            Placement::Ketama => u64::from(ketama_key_hash(&key)),
        };
        if snap.key_hash(&key) != position {
            self.fail(format_args!(
                "key_hash({}) = {:#x}, the placement's key hash is {position:#x}",
                show_key(&key),
                snap.key_hash(&key)
            ));
        }
        let (by_key, by_hash) = (snap.lookup(&key), snap.lookup_hash(position));
        if by_key != by_hash {
            self.fail(format_args!(
                "lookup({}) = {by_key:?} but lookup_hash(key_hash(..)) = {by_hash:?}",
                show_key(&key)
            ));
        }
        let point = self.reference.point_for(&key);
        if snap.point_for(&key) != point {
            self.fail(format_args!(
                "point_for({}) = {:?}, ReferenceRing's first point >= {position:#x} is {point:?}",
                show_key(&key),
                snap.point_for(&key)
            ));
        }
    }
}

/// Members (id, name, weight, points) with long names shortened, for
/// reports.
fn brief(members: &[(NodeId, String, u32, u32)]) -> Vec<String> {
    members
        .iter()
        .map(|(id, name, w, v)| format!("{}:{}:w{w}:p{v}", id.0, short_name(name)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let live_at_start = LIVE_BLOCKS.load(Relaxed);
    let (placement, data) = match data.split_first() {
        Some((&KETAMA_MARKER, rest)) => (Placement::Ketama, rest),
        _ => (Placement::Xxh3, data),
    };
    if trace() {
        eprintln!("placement: {placement}");
    }
    let mut bytes = Bytes { data };
    let mut h = Harness::new(placement);
    if h.ring.max_weight() != MAX_VNODES || h.ring.placement() != placement {
        h.fail(format_args!(
            "max_weight() = {}, placement() = {:?}",
            h.ring.max_weight(),
            h.ring.placement()
        ));
    }
    for _ in 0..MAX_OPS {
        if bytes.is_empty() {
            break;
        }
        // Decoding an id needs the ids issued so far, so ops are decoded
        // one at a time, interleaved with running them.
        let op = match bytes.u8() % 6 {
            0 => {
                let name = bytes.name(placement);
                let vnodes = bytes.vnodes();
                Op::Add { name, vnodes }
            }
            1 => Op::Remove {
                id: bytes.id(&h.issued),
            },
            2 => {
                let id = bytes.id(&h.issued);
                let vnodes = bytes.vnodes();
                Op::SetVnodes { id, vnodes }
            }
            3 => Op::Lookup { key: bytes.key() },
            4 => {
                let n = usize::from(bytes.u8() % 9);
                let key = bytes.key();
                Op::LookupN { key, n }
            }
            _ => Op::Probe { hash: bytes.u64() },
        };
        h.run(op);
    }
    let ops = h.log.len();
    drop(h);
    collect_retired_tables(live_at_start, ops);
});

/// Frees the tables this input's edits retired, so the input ends having
/// freed what it allocated.
///
/// `Ring` retires each replaced table to crossbeam-epoch's global queue; it
/// is freed only once the epoch has advanced twice and someone collects.
/// Left there, inputs end with more mallocs than frees, and libFuzzer answers
/// that by re-running the input and doing a full LeakSanitizer scan, which
/// made the target several times slower. Each `flush` advances the epoch
/// (this thread is the only participant) and frees up to 8 expired bags, so
/// this repeats until no more blocks are live than when the input started.
/// It gives up after a bound; libFuzzer's leak check then judges, so a table
/// that is never retired or never freed still shows up as a leak.
fn collect_retired_tables(live_at_start: isize, ops: usize) {
    for _ in 0..ops + 64 {
        if LIVE_BLOCKS.load(Relaxed) <= live_at_start {
            return;
        }
        crossbeam_epoch::pin().flush();
    }
}

/// Heap blocks allocated and not yet freed, process-wide.
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live blocks for
/// [`collect_retired_tables`]. Allocation goes to `malloc` exactly as
/// without it, so AddressSanitizer and libFuzzer's malloc hooks see the same
/// calls.
struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments and
// returns its result unchanged; the counter has no effect on the memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from `System`) with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; a block that moves is still one block.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;
