//! The health observer for Redis nodes under injected faults: the real
//! `ringcache` binary in front of three real `redis-server` processes, with
//! `--health-interval 200ms --health-timeout 200ms --eject-after 3
//! --readmit-after 2` and a short `--ejection-time`, checked against the
//! observer's contract (the `cluster::health` module docs):
//!
//! * a killed server (SIGKILL) is `"ejected"` in `GET /nodes` within the
//!   ejection bound below, `X-CacheServer-Count` drops to 2, its keys are
//!   served by the other nodes (404, then PUT 201, then GET 200), and it stays
//!   ejected while its server is still dead past its ejection time;
//!   restarted on the same port it is readmitted (`"serving"`, count 3)
//!   within the readmission bound, a key written while it was out reads the
//!   new value, a key deleted while it was out stays deleted, and no read
//!   at any point returned a value older than the last acknowledged write;
//! * the same for a paused server (SIGSTOP, then SIGCONT): it comes back
//!   with its old values, which must not be served (the stale-read trap);
//! * the same for a server killed and restarted from an RDB snapshot taken
//!   before the fault (`SAVE`), which also comes back with old values;
//! * a flapping server behind a fault proxy (connections dropped, refused,
//!   reset, delayed, black-holed, on a seeded schedule) under concurrent
//!   writers, a deleter and readers: no stale read, no resurrection, never
//!   more nodes ejected than the cap, and ringcache still healthy;
//! * with `--on-failure fail` a paused server's keys get a fast 503 naming
//!   the node while it is `"down"`, and keep their values when it resumes;
//! * with two of three servers killed, the cap (default 10%, at least one)
//!   lets exactly one be ejected; the other stays in the ring `"down"` with
//!   fast 503s;
//! * `/metrics` shows each node's state, ejections and health checks.
//!
//! Every read made by the traffic threads is checked against a per-key
//! model of acknowledged writes (each key has one writer): a value older
//! than the last acknowledged write or delete fails the test, whenever it
//! happens. Bounds are derived from the flags, as the contract states them:
//! ejection within `eject_after x (interval + timeout) + --redis-timeout +
//! 3 s`; readmission within the rest of the ejection time (+20% jitter) +
//! `readmit_after x (interval + timeout) + --redis-timeout + 3 s` of the
//! server answering again. "Fast" means under 1 s with a `--redis-timeout`
//! of 2 s, so a request that waited for the server cannot pass for one.
//!
//! The tests take turns (a lock), since each runs its own servers and
//! timing-based health checks on a machine that may be small. Every load
//! loop is bounded in operations and wall time, and everything listens on
//! 127.0.0.1. `redis-server` must be on `PATH` (scripts/test.sh installs
//! it); without it the tests fail naming it.

mod common;
mod rng;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy};
use common::redis::{RedisServer, Reply};
use common::{index_of, pct, request_bytes, Conn, Response, Server};
use rng::SplitMix;
use serde_json::Value;

/// `--health-interval`.
const INTERVAL: Duration = Duration::from_millis(200);
/// `--health-timeout`.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(200);
/// `--eject-after`.
const EJECT_AFTER: u32 = 3;
/// `--readmit-after`.
const READMIT_AFTER: u32 = 2;
/// `--ejection-time` of the kill and pause tests.
const EJECTION_TIME: Duration = Duration::from_secs(1);
/// `--redis-timeout` of the kill and pause tests (the default): a healthy
/// server on a loaded machine answers well within it.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// `--redis-timeout` where a fast failure is measured: a request that
/// waited for the server would take this long.
const SLOW_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Headroom on every bound, for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
/// What a failure that does not contact the server may take.
const FAST_FAIL: Duration = Duration::from_secs(1);
/// `--redis-prefix`: keys outside it are not ringcache's.
const PREFIX: &str = "rc:";
/// The node whose server fails (the second; index 1).
const VICTIM: u32 = 1;
/// How often a test polls `GET /nodes`.
const POLL: Duration = Duration::from_millis(50);
/// How long the traffic threads get to make progress when a test waits
/// for them.
const PROGRESS_WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Flags, bounds, and the cluster as GET /nodes shows it
// ---------------------------------------------------------------------------

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The health flags of every test, with `--redis-prefix`.
fn health_flags(ejection_time: Duration, redis_timeout: Duration) -> Vec<String> {
    [
        "--health-interval".to_owned(),
        ms(INTERVAL),
        "--health-timeout".to_owned(),
        ms(HEALTH_TIMEOUT),
        "--eject-after".to_owned(),
        EJECT_AFTER.to_string(),
        "--readmit-after".to_owned(),
        READMIT_AFTER.to_string(),
        "--ejection-time".to_owned(),
        ms(ejection_time),
        "--redis-timeout".to_owned(),
        ms(redis_timeout),
        "--redis-prefix".to_owned(),
        PREFIX.to_owned(),
    ]
    .into()
}

/// One failed check at most: the wait for the next PING and its timeout.
fn check_period() -> Duration {
    INTERVAL + HEALTH_TIMEOUT
}

/// How long after its server fails a node may take to be taken out.
fn eject_within(redis_timeout: Duration) -> Duration {
    check_period() * EJECT_AFTER + redis_timeout + SLACK
}

/// When a node ejected at `ejected_at` for `period` (before jitter) must
/// be back at the latest, its server answering again since `returned_at`:
/// the rest of the ejection time (+20% jitter), `readmit_after` good
/// PINGs, clearing its keys (a Redis call), and the slack.
fn readmit_deadline(
    ejected_at: Instant,
    period: Duration,
    returned_at: Instant,
    redis_timeout: Duration,
) -> Instant {
    let floor = ejected_at + period * 6 / 5;
    floor.max(returned_at) + check_period() * READMIT_AFTER + redis_timeout + SLACK
}

/// The tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn start_redis(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

/// Starts `ringcache --redis ADDR...` (node i is `addrs[i]`) with `flags`.
fn start_ringcache(addrs: &[String], flags: &[String]) -> Server {
    let mut args: Vec<&str> = Vec::new();
    for a in addrs {
        args.extend(["--redis", a.as_str()]);
    }
    args.extend(flags.iter().map(String::as_str));
    Server::start_with(&args)
}

/// Each node's state in `GET /nodes`, by index.
type States = HashMap<u32, String>;

/// Each node's state in `GET /nodes`, which must list every index once:
/// 0, 1 and 2, for every test here starts three nodes and removes none.
fn states(server: &Server) -> States {
    let nodes = server.nodes();
    let states: States = nodes
        .iter()
        .map(|n| {
            let state = n["state"]
                .as_str()
                .unwrap_or_else(|| panic!("a node without a state: {n}"));
            (index_of(n), state.to_owned())
        })
        .collect();
    if states.len() != nodes.len() {
        let listed: Vec<String> = nodes.iter().map(Value::to_string).collect();
        panic!(
            "GET /nodes lists a node twice:\n{}\nGET /rebalance: {}\nringcache's log:\n{}",
            listed.join("\n"),
            server.get("/rebalance").text(),
            server.log_text()
        );
    }
    let mut listed: Vec<u32> = states.keys().copied().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [0, 1, 2],
        "GET /nodes must list each of the three nodes, in any state: {states:?}\nringcache's log:\n{}",
        server.log_text()
    );
    states
}

fn in_state(states: &States, state: &str) -> Vec<u32> {
    let mut v: Vec<u32> = states
        .iter()
        .filter(|(_, s)| s.as_str() == state)
        .map(|(i, _)| *i)
        .collect();
    v.sort_unstable();
    v
}

/// With three nodes and the default `--max-ejected-percent` (10), at most
/// one node may be ejected at once.
fn assert_cap(states: &States, when: &str) {
    let ejected = in_state(states, "ejected");
    assert!(
        ejected.len() <= 1,
        "{when}: nodes {ejected:?} are ejected at once, over the cap of one (3 nodes, 10%): \
         {states:?}"
    );
}

/// Polls `GET /nodes` until `done` holds; every listing must respect the
/// cap. Returns the listing and how long it took.
///
/// # Panics
///
/// After `within`, with the last listing and ringcache's log.
fn wait_nodes(
    server: &Server,
    within: Duration,
    what: &str,
    done: impl Fn(&States) -> bool,
) -> (States, Duration) {
    let start = Instant::now();
    loop {
        let s = states(server);
        assert_cap(&s, what);
        if done(&s) {
            return (s, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; GET /nodes states {s:?}\nringcache's log:\n{}",
            server.log_text()
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until node `index` is in `state`; how long that took.
fn wait_state(server: &Server, index: u32, state: &str, within: Duration) -> Duration {
    let what = format!("node {index} to be {state:?}");
    wait_nodes(server, within, &what, |s| {
        s.get(&index).map(String::as_str) == Some(state)
    })
    .1
}

/// `X-CacheServer-Count` now, from a GET of a key nobody writes.
fn node_count(server: &Server) -> usize {
    server.get("/keys/count-probe").routing().1
}

/// `GET /metrics`, or why there was no answer (the caller decides when
/// to fail on it, so that a broken exposition does not hide the rest).
fn metric_text(server: &Server) -> Result<String, String> {
    let mut conn = server.conn();
    conn.send(&request_bytes("GET", b"/metrics", &[], None))
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let r = conn
        .read_response()
        .map_err(|e| format!("GET /metrics: no answer ({e})"))?;
    if r.status != 200 {
        return Err(format!("GET /metrics: {} {:?}", r.status, r.text()));
    }
    Ok(r.text())
}

/// How long relocation may take to settle once every node serves.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// Polls `GET /rebalance` until relocation is over.
///
/// # Panics
///
/// After [`SETTLE_WITHIN`], with the last status, `GET /nodes` and
/// ringcache's log.
fn wait_settled(server: &Server) {
    let start = Instant::now();
    loop {
        let r = server.get("/rebalance");
        assert_eq!(r.status, 200, "GET /rebalance: {}", r.text());
        if r.json()["active"] == false {
            return;
        }
        assert!(
            start.elapsed() < SETTLE_WITHIN,
            "relocation still active after {SETTLE_WITHIN:?}: {}\nGET /nodes: {}\nringcache's log:\n{}",
            r.text(),
            server.get("/nodes").text(),
            server.log_text()
        );
        std::thread::sleep(POLL);
    }
}

/// The value of the series `family` of node `node` (whose labels contain
/// `label`, if given) in the `/metrics` text `text`.
fn series(text: &str, family: &str, node: u32, label: Option<&str>) -> Option<f64> {
    let open = format!("{family}{{");
    let node_label = format!("node=\"{node}\"");
    text.lines()
        .find(|l| {
            l.starts_with(&open) && l.contains(&node_label) && label.is_none_or(|x| l.contains(x))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The server is up and healthy ([`Server::assert_alive`]), and its log
/// shows no crashed coroutine either (the coroutine runtime reports a
/// segmentation fault in one, of which the process survives, as
/// "coroutine has overflowed its stack").
fn assert_running(server: &mut Server) {
    server.assert_alive(&[]);
    let log = server.log_text();
    assert!(
        !log.contains("overflowed its stack"),
        "a coroutine of ringcache crashed:\n{log}"
    );
}

/// The error message of a failed request, which must be JSON.
fn error_of(r: &Response) -> String {
    r.expect_error(r.status)
}

// ---------------------------------------------------------------------------
// The model: every key has one writer, every read is checked
// ---------------------------------------------------------------------------

/// Phases of a fault test, as the test knows them. A write remembers the
/// phase it was issued in; a read, the phase it started in.
mod phase {
    /// All servers up, nothing injected yet.
    pub const BEFORE: u64 = 0;
    /// The fault is injected; the node is not seen ejected yet (the whole
    /// of the flapping test is this phase).
    pub const FAULTED: u64 = 1;
    /// The node was seen ejected: every request routes around it.
    pub const OUT: u64 = 2;
    /// Its server answers again; it may or may not be readmitted yet.
    pub const RETURNING: u64 = 3;
    /// It was seen readmitted.
    pub const BACK: u64 = 4;
}

/// One key's history, written by its writer only. Ops on a key are
/// numbered 1, 2, ...: `issued` is the newest op started, `last_delete`
/// the newest delete started, and `acked` packs the newest op acknowledged
/// (see [`Acked`]).
#[derive(Default)]
struct KeyModel {
    issued: AtomicU64,
    acked: AtomicU64,
    last_delete: AtomicU64,
}

/// An acknowledged op: its number, the phase it was issued in, and whether
/// it was a PUT (else a DELETE).
#[derive(Clone, Copy, Debug)]
struct Acked {
    seq: u64,
    phase: u64,
    put: bool,
}

impl Acked {
    fn pack(self) -> u64 {
        self.seq << 4 | self.phase << 1 | u64::from(self.put)
    }

    fn unpack(word: u64) -> Acked {
        Acked {
            seq: word >> 4,
            phase: (word >> 1) & 7,
            put: word & 1 == 1,
        }
    }
}

struct Key {
    name: Vec<u8>,
    path: String,
    /// Its node while every server was up.
    node: u32,
    model: KeyModel,
}

fn value_for(name: &[u8], seq: u64) -> Vec<u8> {
    let mut v = name.to_vec();
    v.extend_from_slice(format!("#{seq}").as_bytes());
    v
}

fn seq_of(name: &[u8], value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(name)?.strip_prefix(b"#")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The first few violations, kept for the final assertion, each with the
/// time it was seen (since `started`).
struct Failures {
    started: Instant,
    kept: Mutex<Vec<String>>,
    count: AtomicU64,
}

impl Failures {
    fn new() -> Failures {
        Failures {
            started: Instant::now(),
            kept: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
        }
    }

    fn report(&self, msg: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < 20 {
            kept.push(format!("[{:.3?}] {msg}", self.started.elapsed()));
        }
    }

    fn assert_none(&self, what: &str) {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            kept.is_empty(),
            "{what}: {} violations (first {}):\n{}",
            self.count.load(Ordering::SeqCst),
            kept.len(),
            kept.join("\n")
        );
    }
}

/// Sets its flag when dropped: the traffic threads stop when the test's
/// main thread finishes, or panics (so a failed assertion does not wait for
/// them to reach their caps).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Counts of what the traffic saw, for the test's output.
#[derive(Default)]
struct Tally {
    /// Reads by the phase they started in.
    reads: [AtomicU64; 5],
    hits: AtomicU64,
    misses: AtomicU64,
    read_errors: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
}

/// The keys, their models and the shared state of the traffic threads.
struct Model<'a> {
    server: &'a Server,
    keys: Vec<Key>,
    by_name: HashMap<Vec<u8>, usize>,
    phase: AtomicU64,
    stop: AtomicBool,
    ops: AtomicU64,
    failures: Failures,
    tally: Tally,
}

impl<'a> Model<'a> {
    /// Writes every key once (PUT, 201: all new) with every server up, and
    /// notes its node.
    fn new(server: &'a Server, names: Vec<Vec<u8>>) -> Model<'a> {
        let mut conn = server.conn();
        let keys: Vec<Key> = names
            .into_iter()
            .map(|name| {
                let path = format!("/keys/{}", pct(&name));
                let r = conn.request("PUT", &path, &[], Some(&value_for(&name, 1)));
                assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
                let model = KeyModel::default();
                model.issued.store(1, Ordering::SeqCst);
                let acked = Acked {
                    seq: 1,
                    phase: phase::BEFORE,
                    put: true,
                };
                model.acked.store(acked.pack(), Ordering::SeqCst);
                Key {
                    node: r.routing().0,
                    name,
                    path,
                    model,
                }
            })
            .collect();
        let by_name = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.name.clone(), i))
            .collect();
        Model {
            server,
            keys,
            by_name,
            phase: AtomicU64::new(phase::BEFORE),
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            failures: Failures::new(),
            tally: Tally::default(),
        }
    }

    fn set_phase(&self, p: u64) {
        self.phase.store(p, Ordering::SeqCst);
    }

    /// Indices of the keys whose node was `node` with every server up.
    fn on_node(&self, node: u32) -> Vec<usize> {
        (0..self.keys.len())
            .filter(|&k| self.keys[k].node == node)
            .collect()
    }

    /// A request on key `k` that started in phase `started` (and has just
    /// ended) may fail (5xx) only if the key is the failed node's and the
    /// request overlapped the fault before the node was seen ejected.
    fn may_fail(&self, k: usize, started: u64) -> bool {
        let now = self.phase.load(Ordering::SeqCst);
        self.keys[k].node == VICTIM && started <= phase::FAULTED && now >= phase::FAULTED
    }

    /// PUTs the key's next value; acknowledged on 200 or 201.
    fn put(&self, conn: &mut Conn, k: usize) -> Response {
        self.write(conn, k, true)
    }

    /// DELETEs the key; acknowledged on 204 or 404.
    fn delete(&self, conn: &mut Conn, k: usize) -> Response {
        self.write(conn, k, false)
    }

    /// The key's next op: a PUT of its next value or a DELETE.
    fn write(&self, conn: &mut Conn, k: usize, put: bool) -> Response {
        let key = &self.keys[k];
        let m = &key.model;
        let phase = self.phase.load(Ordering::SeqCst);
        let seq = m.issued.load(Ordering::SeqCst) + 1;
        if !put {
            m.last_delete.store(seq, Ordering::SeqCst);
        }
        m.issued.store(seq, Ordering::SeqCst);
        let (r, ok, what) = if put {
            let value = value_for(&key.name, seq);
            let r = conn.request("PUT", &key.path, &[], Some(&value));
            (r, [200, 201], "PUT")
        } else {
            let r = conn.request("DELETE", &key.path, &[], None);
            (r, [204, 404], "DELETE")
        };
        self.tally.writes.fetch_add(1, Ordering::Relaxed);
        if ok.contains(&r.status) {
            let acked = Acked { seq, phase, put };
            m.acked.store(acked.pack(), Ordering::SeqCst);
        } else {
            self.write_failed(k, phase, what, seq, &r);
        }
        r
    }

    fn write_failed(&self, k: usize, phase: u64, what: &str, seq: u64, r: &Response) {
        self.tally.write_errors.fetch_add(1, Ordering::Relaxed);
        if !(r.status >= 500 && self.may_fail(k, phase)) {
            self.failures.report(format!(
                "{what} of {} (op {seq}, node {}, phase {phase}) answered {} {:?}",
                show(&self.keys[k].name),
                self.keys[k].node,
                r.status,
                r.text()
            ));
        }
    }

    /// GETs key `k` and checks the answer; `who` names the reader.
    fn get(&self, conn: &mut Conn, k: usize, who: &str) -> Response {
        let key = &self.keys[k];
        let phase = self.phase.load(Ordering::SeqCst);
        let before = key.model.acked.load(Ordering::SeqCst);
        let r = conn.request("GET", &key.path, &[], None);
        self.check_read(k, Acked::unpack(before), phase, &r, who);
        r
    }

    /// Checks a read of key `k` that started in `phase`, after op `before`
    /// was acknowledged:
    ///
    /// * a value must be no older than `before` (older than an
    ///   acknowledged PUT: a stale read; than an acknowledged DELETE: a
    ///   resurrection), and no newer than the last op issued by the end of
    ///   the read;
    /// * a miss is a lost write if `before` was a PUT, no DELETE was issued
    ///   since, and the write could not have been lost with the failed
    ///   server: the key is another node's, or the PUT was issued once the
    ///   node was seen ejected (it went to another node, or to the node
    ///   after it came back, and either way must survive);
    /// * a 5xx only as [`Model::may_fail`] allows.
    fn check_read(&self, k: usize, before: Acked, phase: u64, r: &Response, who: &str) {
        let key = &self.keys[k];
        let m = &key.model;
        let issued_after = m.issued.load(Ordering::SeqCst);
        let delete_after = m.last_delete.load(Ordering::SeqCst);
        let name = show(&key.name);
        self.tally.reads[phase as usize].fetch_add(1, Ordering::Relaxed);
        match r.status {
            200 => {
                self.tally.hits.fetch_add(1, Ordering::Relaxed);
                match seq_of(&key.name, &r.body) {
                    None => self
                        .failures
                        .report(format!("{who}: {name} has a foreign value {:?}", r.text())),
                    Some(x) if x < before.seq => {
                        let what = if before.put {
                            "a STALE READ: PUT"
                        } else {
                            "a RESURRECTION: DELETE"
                        };
                        self.failures.report(format!(
                            "{who}: {name} (node {}) read op {x} in phase {phase}, {what} op {} \
                             (issued in phase {}) was acknowledged before the read; \
                             X-CacheServer-Index {:?}",
                            key.node,
                            before.seq,
                            before.phase,
                            r.header("X-CacheServer-Index")
                        ));
                    }
                    Some(x) if x > issued_after => self.failures.report(format!(
                        "{who}: {name} read op {x}, but only {issued_after} were issued"
                    )),
                    Some(_) => {}
                }
            }
            404 => {
                self.tally.misses.fetch_add(1, Ordering::Relaxed);
                let must_survive = key.node != VICTIM || before.phase >= phase::OUT;
                if before.put && delete_after < before.seq && must_survive {
                    self.failures.report(format!(
                        "{who}: {name} (node {}) missing in phase {phase}, but PUT op {} \
                         (issued in phase {}) was acknowledged before the read and no DELETE \
                         was issued since: a LOST WRITE; X-CacheServer-Index {:?}",
                        key.node,
                        before.seq,
                        before.phase,
                        r.header("X-CacheServer-Index")
                    ));
                }
            }
            s if s >= 500 && self.may_fail(k, phase) => {
                self.tally.read_errors.fetch_add(1, Ordering::Relaxed);
            }
            s => {
                self.tally.read_errors.fetch_add(1, Ordering::Relaxed);
                self.failures.report(format!(
                    "{who}: GET {name} (node {}) in phase {phase} answered {s} {:?}",
                    key.node,
                    r.text()
                ));
            }
        }
    }

    /// A writer thread: PUTs and (`delete_pct` percent of the time)
    /// DELETEs random keys of `mine`, one op every `pace`, until stopped or
    /// `max_ops`.
    fn mutate(&self, mine: Range<usize>, delete_pct: u64, pace: Duration, seed: u64) -> u64 {
        let mut rng = SplitMix(seed);
        let mut conn = self.server.conn();
        let mut ops = 0;
        while !self.stop.load(Ordering::SeqCst) && ops < MAX_OPS_PER_THREAD {
            let k = mine.start + rng.below(mine.len() as u64) as usize;
            if rng.below(100) < delete_pct {
                self.delete(&mut conn, k);
            } else {
                self.put(&mut conn, k);
            }
            ops += 1;
            self.ops.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(pace);
        }
        ops
    }

    /// A reader thread: GETs random keys (all of them), one every `pace`,
    /// until stopped or `max_ops`.
    fn read(&self, pace: Duration, seed: u64, who: &str) -> u64 {
        let mut rng = SplitMix(seed);
        let mut conn = self.server.conn();
        let mut ops = 0;
        while !self.stop.load(Ordering::SeqCst) && ops < MAX_OPS_PER_THREAD {
            let k = rng.below(self.keys.len() as u64) as usize;
            self.get(&mut conn, k, who);
            ops += 1;
            self.ops.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(pace);
        }
        ops
    }

    /// Waits until the traffic threads have made `n` more ops (or
    /// [`PROGRESS_WITHIN`] passed).
    fn let_run(&self, n: u64) {
        let target = self.ops.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + PROGRESS_WITHIN;
        while self.ops.load(Ordering::SeqCst) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Once the traffic stopped and relocation is over: every key reads as
    /// [`Model::check_read`] requires (no failure allowed now), and on the
    /// servers themselves (over RESP) every key under the prefix is a key
    /// of the model, held by one server at most, with no value older than
    /// its last acknowledged op (no stale copy left anywhere to be served
    /// later).
    fn check_final(&self, servers: &[&RedisServer]) {
        let mut conn = self.server.conn();
        for k in 0..self.keys.len() {
            let before = Acked::unpack(self.keys[k].model.acked.load(Ordering::SeqCst));
            let r = conn.request("GET", &self.keys[k].path, &[], None);
            self.check_read(k, before, phase::BACK, &r, "final check");
        }
        let mut copies: HashMap<usize, Vec<String>> = HashMap::new();
        for s in servers {
            let mut client = s.client();
            for stored in client.keys() {
                let Some(name) = stored.strip_prefix(PREFIX.as_bytes()) else {
                    continue;
                };
                let Some(&k) = self.by_name.get(name) else {
                    self.failures.report(format!(
                        "server {} holds {:?}, not a key of this test",
                        s.addr(),
                        show(&stored)
                    ));
                    continue;
                };
                copies.entry(k).or_default().push(s.addr());
                let before = Acked::unpack(self.keys[k].model.acked.load(Ordering::SeqCst));
                let value = client.get(&stored);
                let seq = value.as_deref().and_then(|v| seq_of(name, v));
                if seq.is_some_and(|x| x < before.seq) {
                    self.failures.report(format!(
                        "server {} holds op {seq:?} of {}, older than the acknowledged {} op {}: \
                         a stale copy",
                        s.addr(),
                        show(name),
                        if before.put { "PUT" } else { "DELETE" },
                        before.seq
                    ));
                }
            }
        }
        for (k, on) in copies {
            if on.len() > 1 {
                self.failures.report(format!(
                    "{} is on {} servers after relocation: {on:?}",
                    show(&self.keys[k].name),
                    on.len()
                ));
            }
        }
    }

    fn summary(&self) -> String {
        let t = &self.tally;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "reads by phase {:?}: {} hits, {} misses, {} errors; {} writes, {} failed",
            t.reads.iter().map(load).collect::<Vec<_>>(),
            load(&t.hits),
            load(&t.misses),
            load(&t.read_errors),
            load(&t.writes),
            load(&t.write_errors)
        )
    }
}

/// Cap on each traffic thread's operations.
const MAX_OPS_PER_THREAD: u64 = 20_000;

// ---------------------------------------------------------------------------
// Eject and readmit: a killed, paused, or snapshot-restored server
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerFault {
    /// SIGKILL; restarted on the same port, empty.
    Kill,
    /// SIGSTOP; SIGCONT, with every value it held.
    Pause,
    /// `SAVE`, then SIGKILL; restarted on the same port from the snapshot
    /// (same `--dir`, same `--dbfilename`: the harness's), with every value
    /// it held at the `SAVE`.
    KillAfterSave,
}

/// Keys the test's main thread writes (`s/...`) and those of the light
/// background traffic (`t/...`).
const SCRIPTED_KEYS: usize = 120;
const TRAFFIC_KEYS: usize = 60;

/// A key that ringcache does not own (outside the prefix), set directly on
/// the failing server: clearing the server on readmission must leave it.
const FOREIGN_KEY: &[u8] = b"not-ringcache-s";

/// The scenario of the first three tests; see their docs.
fn eject_and_readmit(fault: ServerFault) {
    let _turn = serial();
    let started = Instant::now();
    let mut redis = start_redis(3);
    let addrs: Vec<String> = redis.iter().map(RedisServer::addr).collect();
    let mut server = start_ringcache(&addrs, &health_flags(EJECTION_TIME, REDIS_TIMEOUT));
    let mut names: Vec<Vec<u8>> = (0..SCRIPTED_KEYS)
        .map(|i| format!("s/key-{i}").into_bytes())
        .collect();
    names.extend((0..TRAFFIC_KEYS).map(|i| format!("t/key-{i}").into_bytes()));
    let model = Model::new(&server, names);
    let scripted = 0..SCRIPTED_KEYS;
    let victim_keys: Vec<usize> = model
        .on_node(VICTIM)
        .into_iter()
        .filter(|k| scripted.contains(k))
        .collect();
    assert!(
        victim_keys.len() >= 12,
        "only {} scripted keys on node {VICTIM}",
        victim_keys.len()
    );
    // Groups of the failed node's keys: overwritten (A), deleted (B),
    // written and deleted (C) while it is out, and left alone (D).
    let group = |k: usize| victim_keys.iter().position(|&v| v == k).map(|p| p % 4);
    let mut victim_client = redis[VICTIM as usize].client();
    victim_client.set(FOREIGN_KEY, b"kept");
    if fault == ServerFault::KillAfterSave {
        assert_eq!(
            victim_client.call(&[b"SAVE"]),
            Reply::Simple("OK".into()),
            "SAVE"
        );
    }
    drop(victim_client);

    let mut conn = server.conn();
    let (ejected_in, readmitted_in) = std::thread::scope(|s| {
        let stopper = StopOnDrop(&model.stop);
        let traffic = [
            s.spawn(|| {
                model.mutate(
                    SCRIPTED_KEYS..SCRIPTED_KEYS + TRAFFIC_KEYS,
                    20,
                    Duration::from_millis(10),
                    0x5EED_0001,
                )
            }),
            s.spawn(|| model.read(Duration::from_millis(5), 0x5EED_0002, "reader")),
        ];
        model.let_run(50);

        // The fault.
        model.set_phase(phase::FAULTED);
        match fault {
            ServerFault::Kill | ServerFault::KillAfterSave => redis[VICTIM as usize].kill(),
            ServerFault::Pause => redis[VICTIM as usize].pause(),
        }
        let ejected_in = wait_state(&server, VICTIM, "ejected", eject_within(REDIS_TIMEOUT));
        let ejected_at = Instant::now();
        model.set_phase(phase::OUT);
        let s = states(&server);
        for i in 0..3 {
            if i != VICTIM {
                assert_eq!(s[&i], "serving", "node {i}, healthy, in {s:?}");
            }
        }
        assert_eq!(node_count(&server), 2, "X-CacheServer-Count once ejected");

        // Its keys are served by the others: misses, then writes.
        for k in scripted.clone() {
            let r = model.get(&mut conn, k, "main");
            let (index, count) = r.routing();
            let name = show(&model.keys[k].name);
            assert_eq!(
                count, 2,
                "GET {name}: X-CacheServer-Count while node {VICTIM} is out"
            );
            let Some(g) = group(k) else {
                assert_eq!(
                    (r.status, index),
                    (200, model.keys[k].node),
                    "GET {name} of a healthy node: {}",
                    r.text()
                );
                continue;
            };
            assert!(
                r.status == 404 && index != VICTIM,
                "GET {name} of the ejected node: {} {:?} from node {index}: it should be a miss \
                 on another node",
                r.status,
                r.text()
            );
            match g {
                0 => {
                    let r = model.put(&mut conn, k);
                    assert_eq!(
                        (r.status, r.routing()),
                        (201, (index, 2)),
                        "PUT {name} while its node is out: {}",
                        r.text()
                    );
                    let r = model.get(&mut conn, k, "main");
                    assert_eq!(r.status, 200, "GET {name} after its PUT: {}", r.text());
                }
                1 => {
                    let r = model.delete(&mut conn, k);
                    assert_eq!(r.status, 404, "DELETE {name}, absent: {}", r.text());
                }
                2 => {
                    let r = model.put(&mut conn, k);
                    assert_eq!(r.status, 201, "PUT {name}: {}", r.text());
                    let r = model.delete(&mut conn, k);
                    assert_eq!(r.status, 204, "DELETE {name}: {}", r.text());
                    let r = model.get(&mut conn, k, "main");
                    assert_eq!(r.status, 404, "GET {name} after its DELETE: {}", r.text());
                }
                _ => {}
            }
        }

        // Past its ejection time it stays out while its server still fails:
        // the readmission PINGs fail.
        while ejected_at.elapsed() < EJECTION_TIME * 2 {
            let s = states(&server);
            assert_eq!(
                s[&VICTIM],
                "ejected",
                "node {VICTIM} left \"ejected\" {:?} after its ejection while its server is \
                 still {fault:?}: {s:?}",
                ejected_at.elapsed()
            );
            std::thread::sleep(POLL);
        }

        // The server comes back.
        model.set_phase(phase::RETURNING);
        match fault {
            ServerFault::Kill | ServerFault::KillAfterSave => redis[VICTIM as usize].restart(),
            ServerFault::Pause => redis[VICTIM as usize].resume(),
        }
        let returned_at = Instant::now();
        if fault == ServerFault::KillAfterSave {
            let log = redis[VICTIM as usize].log_text();
            assert!(
                log.contains("DB loaded from disk"),
                "the restarted server did not load its snapshot:\n{log}"
            );
        }
        let deadline = readmit_deadline(ejected_at, EJECTION_TIME, returned_at, REDIS_TIMEOUT);
        let within = deadline.saturating_duration_since(Instant::now());
        wait_nodes(&server, within, "readmission", |s| s[&VICTIM] == "serving");
        let readmitted_in = returned_at.elapsed();
        model.set_phase(phase::BACK);
        assert_eq!(
            node_count(&server),
            3,
            "X-CacheServer-Count once readmitted"
        );
        model.let_run(100);
        wait_settled(&server);
        drop(stopper);
        for t in traffic {
            t.join().expect("a traffic thread panicked");
        }
        (ejected_in, readmitted_in)
    });

    // What was done while it was out holds, on its node again. (The model
    // checks each of these reads too; its verdict comes first.)
    let mut victim_client = redis[VICTIM as usize].client();
    let mut warm = 0;
    let mut wrong = Vec::new();
    for &k in &victim_keys {
        let key = &model.keys[k];
        let name = show(&key.name);
        let r = model.get(&mut conn, k, "main after readmission");
        let got = format!("{} {:?} from node {:?}", r.status, r.text(), r.routing());
        let acked = Acked::unpack(key.model.acked.load(Ordering::SeqCst));
        let stored = [PREFIX.as_bytes(), &key.name].concat();
        let ok = r.routing() == (VICTIM, 3)
            && match group(k) {
                Some(0) => {
                    let want = value_for(&key.name, acked.seq);
                    r.status == 200
                        && r.body == want
                        && victim_client.get(&stored).as_ref() == Some(&want)
                }
                Some(1 | 2) => r.status == 404,
                // Untouched: a miss (the server was cleared, or restarted
                // empty), or its old value kept warm, which is still the
                // latest.
                _ => {
                    warm += usize::from(r.status == 200);
                    r.status == 404 || (r.status == 200 && fault != ServerFault::Kill)
                }
            };
        if !ok {
            let what = ["overwritten", "deleted", "written and deleted", "untouched"];
            let g = group(k).unwrap_or(3);
            wrong.push(format!(
                "GET {name} ({} while node {VICTIM} was out; last acknowledged op {acked:?}): \
                 {got}; on its server: {:?}",
                what[g],
                victim_client.get(&stored).map(|v| show(&v))
            ));
        }
    }
    let all: Vec<&RedisServer> = redis.iter().collect();
    model.check_final(&all);
    model
        .failures
        .assert_none("reads and writes through the fault");
    assert!(
        wrong.is_empty(),
        "{} of node {VICTIM}'s keys wrong once it was readmitted (expected at node {VICTIM} \
         with count 3: overwritten ones with their new value, also on its server; deleted ones \
         404):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    if fault != ServerFault::Kill {
        assert_eq!(
            victim_client.get(FOREIGN_KEY).as_deref(),
            Some(&b"kept"[..]),
            "a key outside the prefix on the readmitted server"
        );
    }
    let summary = model.summary();
    drop(model);
    eprintln!("{fault:?}: {summary}");
    assert_running(&mut server);
    eprintln!(
        "{fault:?}: ejected {ejected_in:?} after the fault, readmitted {readmitted_in:?} after \
         the server returned; {warm} untouched keys kept warm; {:?} in all",
        started.elapsed()
    );
}

/// One of three servers is killed (SIGKILL) under light traffic: within
/// the ejection bound its node is `"ejected"` (same index), the count is
/// 2, and its keys miss on other nodes and take writes there; it stays out
/// while dead past its ejection time. Restarted on the same port (empty),
/// it is readmitted within the bound; keys written while it was out read
/// their new values on it, keys deleted meanwhile stay deleted, untouched
/// ones miss, and no read of any key, at any point, was stale.
#[test]
fn killed_server_is_ejected_and_readmitted_empty_with_no_stale_read() {
    eject_and_readmit(ServerFault::Kill);
}

/// As the kill test, with SIGSTOP (detected through timeouts) and SIGCONT:
/// the server resumes with every value it held, older than the writes and
/// deletes made while it was out, and none of them may be served. A key
/// outside the prefix on it is left alone.
#[test]
fn paused_server_is_ejected_and_readmitted_without_serving_its_old_values() {
    eject_and_readmit(ServerFault::Pause);
}

/// As the kill test, but the server saved a snapshot before it was killed
/// and is restarted from it: it comes back with the values from before,
/// which must not be served where they were overwritten or deleted.
#[test]
fn server_restored_from_a_snapshot_is_readmitted_without_serving_its_old_values() {
    eject_and_readmit(ServerFault::KillAfterSave);
}

// ---------------------------------------------------------------------------
// Flapping, through a fault proxy
// ---------------------------------------------------------------------------

/// How long the proxy flaps.
const FLAP_FOR: Duration = Duration::from_secs(15);
/// `--ejection-time` while flapping (it doubles with each ejection).
const FLAP_EJECTION_TIME: Duration = Duration::from_millis(500);
/// `--redis-timeout` while flapping (the default): the delays below stay
/// under it, so a delayed request succeeds (slowly) while the checks, with
/// their 200 ms timeout, fail.
const FLAP_REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// The schedule's seed: the same faults every run.
const FLAP_SEED: u64 = 0xF1A9_2026;

/// The flapping schedule: from `rng`, alternately a pass and a fault, each
/// between 0.3 s and 2.5 s (some shorter than an ejection, some longer
/// than the ejection time), starting with the server down long enough to
/// be ejected. A delay stays below the least ejection time (500 ms - 20%),
/// so no write the proxy holds can reach the server after its node was
/// ejected and cleared for readmission; every switch drops what it holds.
fn flap_schedule(rng: &mut SplitMix) -> Vec<(Fault, Duration)> {
    let mut schedule = vec![(Fault::Down, Duration::from_millis(2500))];
    let mut total = Duration::from_millis(2500);
    let mut fault = false;
    while total < FLAP_FOR {
        let len = Duration::from_millis(300 + rng.below(2200));
        let f = if fault {
            match rng.below(4) {
                0 => Fault::Down,
                1 => Fault::Reset,
                2 => Fault::Delay(Duration::from_millis(120 + rng.below(131))),
                _ => Fault::Blackhole,
            }
        } else {
            Fault::Pass
        };
        schedule.push((f, len));
        total += len;
        fault = !fault;
    }
    schedule
}

/// A server flaps behind a fault proxy for 15 s (down, refusing, reset,
/// delayed, black-holed, passing; a seeded schedule) under two writers, a
/// deleter (half its ops DELETE) and two readers on their own keys, while
/// a sampler polls `GET /nodes`. No read is stale, no deleted key comes
/// back, no key of a healthy node is lost or fails, at no sample are two
/// nodes ejected, the node was ejected at least once, and once the proxy
/// passes again it is readmitted (within the bound of its last, doubled,
/// ejection time); in the end every key reads its last acknowledged state
/// (or, for the flapping node's keys, a miss), no stale copy is left on
/// any server, and ringcache is healthy.
#[test]
fn flapping_server_never_serves_a_stale_value_and_ejection_is_capped() {
    let _turn = serial();
    let started = Instant::now();
    let redis = start_redis(3);
    let proxy = FaultProxy::start(redis[VICTIM as usize].port);
    let addrs = [redis[0].addr(), proxy.addr(), redis[2].addr()];
    let mut server = start_ringcache(
        &addrs,
        &health_flags(FLAP_EJECTION_TIME, FLAP_REDIS_TIMEOUT),
    );
    const PER_THREAD: usize = 50;
    let names: Vec<Vec<u8>> = (0..3 * PER_THREAD)
        .map(|i| format!("t{}/key-{i}", i / PER_THREAD).into_bytes())
        .collect();
    let model = Model::new(&server, names);
    assert!(
        !model.on_node(VICTIM).is_empty(),
        "no key on the flapping node"
    );
    let mut rng = SplitMix(FLAP_SEED);
    let schedule = flap_schedule(&mut rng);
    eprintln!("flap schedule (seed {FLAP_SEED:#x}): {schedule:?}");

    model.set_phase(phase::FAULTED);
    let samples = AtomicU64::new(0);
    let victim_out_samples = AtomicU64::new(0);
    // Times the sampler saw the node go from serving to ejected.
    let ejections_seen = AtomicU64::new(0);
    let others_not_serving = Failures::new();
    std::thread::scope(|s| {
        let stopper = StopOnDrop(&model.stop);
        let pace = Duration::from_millis(2);
        let mut threads = Vec::new();
        for w in 0..2 {
            let model = &model;
            threads.push(s.spawn(move || {
                model.mutate(
                    w * PER_THREAD..(w + 1) * PER_THREAD,
                    0,
                    pace,
                    0xAA00 + w as u64,
                )
            }));
        }
        let deleter = &model;
        threads
            .push(s.spawn(move || deleter.mutate(2 * PER_THREAD..3 * PER_THREAD, 50, pace, 0xDE1)));
        for r in 0..2 {
            let model = &model;
            let who = format!("reader {r}");
            threads.push(s.spawn(move || model.read(pace, 0xBB00 + r, &who)));
        }
        let sampler = s.spawn(|| {
            let mut last = String::from("serving");
            while !model.stop.load(Ordering::SeqCst) {
                let st = states(&server);
                samples.fetch_add(1, Ordering::SeqCst);
                let ejected = in_state(&st, "ejected");
                if ejected.len() > 1 {
                    model.failures.report(format!(
                        "nodes {ejected:?} ejected at once, over the cap of one: {st:?}"
                    ));
                }
                if st[&VICTIM] != "serving" {
                    victim_out_samples.fetch_add(1, Ordering::SeqCst);
                }
                if st[&VICTIM] == "ejected" && last != "ejected" {
                    ejections_seen.fetch_add(1, Ordering::SeqCst);
                }
                last.clone_from(&st[&VICTIM]);
                for i in [0, 2] {
                    if st[&i] != "serving" {
                        others_not_serving.report(format!("healthy node {i}: {st:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for (fault, len) in &schedule {
            proxy.set(*fault);
            eprintln!(
                "[{:.3?}] proxy: {fault:?} for {len:?}",
                model.failures.started.elapsed()
            );
            std::thread::sleep(*len);
        }
        proxy.set(Fault::Pass);
        model.let_run(200);
        drop(stopper);
        for t in threads {
            t.join().expect("a traffic thread panicked");
        }
        sampler.join().expect("the sampler panicked");
    });

    // The proxy passes: the node comes back within the bound of its last
    // ejection time, doubled for each ejection so far. The sampler counts
    // ejections (each lasts longer than its period); one more in case it
    // missed one.
    let seen = ejections_seen.load(Ordering::SeqCst);
    assert!(
        seen >= 1,
        "the flapping node was never seen ejected: the test tested nothing"
    );
    let doublings = u32::try_from(seen).unwrap_or(u32::MAX).min(20);
    let period = (FLAP_EJECTION_TIME * 2u32.pow(doublings)).min(Duration::from_secs(300));
    let now = Instant::now();
    let deadline = readmit_deadline(now, period, now, FLAP_REDIS_TIMEOUT);
    wait_nodes(
        &server,
        deadline.saturating_duration_since(now),
        "readmission after flapping",
        |s| s.values().all(|st| st == "serving"),
    );
    assert_eq!(node_count(&server), 3, "X-CacheServer-Count after flapping");
    wait_settled(&server);
    let all: Vec<&RedisServer> = redis.iter().collect();
    model.check_final(&all);
    model.failures.assert_none("traffic through the flapping");
    others_not_serving.assert_none("healthy nodes while one flapped");
    assert_eq!(server.get("/health").status, 200, "GET /health");
    let summary = model.summary();
    drop(model);
    eprintln!(
        "flapping: {seen} ejections seen, {} of {} samples with the node out, proxy \
         connections (accepted, forwarded) {:?}; {summary}; {:?} in all",
        victim_out_samples.load(Ordering::SeqCst),
        samples.load(Ordering::SeqCst),
        proxy.connections(),
        started.elapsed()
    );
    assert_running(&mut server);
}

// ---------------------------------------------------------------------------
// Policy fail, and the cap
// ---------------------------------------------------------------------------

/// Checks a request that must fail fast because node `node` is down: 503
/// within [`FAST_FAIL`], a JSON error naming the node, routed to it.
fn assert_fast_503(r: &Response, took: Duration, node: u32, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert!(
        took < FAST_FAIL,
        "{what}: the 503 took {took:?} (the server should not be contacted)"
    );
    let message = error_of(r);
    assert!(
        message.contains(&format!("node {node}")),
        "{what}: the error {message:?} does not name node {node}"
    );
    assert_eq!(r.routing().0, node, "{what}: X-CacheServer-Index");
}

/// With `--on-failure fail`, a paused server's node goes `"down"` (never
/// ejected) within the bound and stays in the ring (count 3): its keys'
/// GET, PUT and DELETE get 503 in under 1 s with `--redis-timeout 2s`,
/// naming it, while the other nodes' keys read and write as usual. Resumed,
/// it serves again within the bound, every value written before intact.
#[test]
fn policy_fail_answers_fast_503_while_down_and_keeps_the_data() {
    let _turn = serial();
    let started = Instant::now();
    let redis = start_redis(3);
    let addrs: Vec<String> = redis.iter().map(RedisServer::addr).collect();
    let mut flags = health_flags(EJECTION_TIME, SLOW_REDIS_TIMEOUT);
    flags.extend(["--on-failure".to_owned(), "fail".to_owned()]);
    let mut server = start_ringcache(&addrs, &flags);
    let names: Vec<Vec<u8>> = (0..90).map(|i| format!("f/key-{i}").into_bytes()).collect();
    let model = Model::new(&server, names);
    let victim_keys = model.on_node(VICTIM);
    assert!(victim_keys.len() >= 3, "too few keys on node {VICTIM}");

    redis[VICTIM as usize].pause();
    let down_in = {
        let what = format!("node {VICTIM} to be \"down\"");
        let (_, took) = wait_nodes(&server, eject_within(SLOW_REDIS_TIMEOUT), &what, |s| {
            assert_ne!(s[&VICTIM], "ejected", "ejected under --on-failure fail");
            s[&VICTIM] == "down"
        });
        took
    };
    assert_eq!(
        node_count(&server),
        3,
        "X-CacheServer-Count with a node down"
    );
    let mut conn = server.conn();
    let mut slowest = Duration::ZERO;
    for (k, key) in model.keys.iter().enumerate() {
        let t = Instant::now();
        let r = conn.request("GET", &key.path, &[], None);
        let took = t.elapsed();
        let name = show(&key.name);
        if key.node == VICTIM {
            assert_fast_503(&r, took, VICTIM, &format!("GET {name}"));
            slowest = slowest.max(took);
        } else {
            assert_eq!(
                (r.status, r.body.as_slice(), r.routing()),
                (200, value_for(&key.name, 1).as_slice(), (key.node, 3)),
                "GET {name} of a healthy node"
            );
            let r = model.put(&mut conn, k);
            assert_eq!(r.status, 200, "PUT {name} of a healthy node: {}", r.text());
        }
    }
    // Writes to the down node fail fast too, and never reach its server.
    for &k in victim_keys.iter().take(3) {
        let key = &model.keys[k];
        let name = show(&key.name);
        let t = Instant::now();
        let r = conn.request("PUT", &key.path, &[], Some(b"written while down"));
        assert_fast_503(&r, t.elapsed(), VICTIM, &format!("PUT {name}"));
        let t = Instant::now();
        let r = conn.request("DELETE", &key.path, &[], None);
        assert_fast_503(&r, t.elapsed(), VICTIM, &format!("DELETE {name}"));
    }

    redis[VICTIM as usize].resume();
    let within = check_period() * READMIT_AFTER + SLOW_REDIS_TIMEOUT + SLACK;
    let back_in = wait_state(&server, VICTIM, "serving", within);
    let mut client = redis[VICTIM as usize].client();
    for (k, key) in model.keys.iter().enumerate() {
        let acked = Acked::unpack(key.model.acked.load(Ordering::SeqCst));
        let want = value_for(&key.name, acked.seq);
        let r = model.get(&mut conn, k, "after SIGCONT");
        assert_eq!(
            (r.status, r.body.as_slice(), r.routing()),
            (200, want.as_slice(), (key.node, 3)),
            "GET {} once its node serves again: {:?}",
            show(&key.name),
            r.text()
        );
        if key.node == VICTIM {
            let stored = [PREFIX.as_bytes(), &key.name].concat();
            assert_eq!(
                client.get(&stored),
                Some(want),
                "{} on its server",
                show(&key.name)
            );
        }
    }
    model.failures.assert_none("reads after the node came back");
    drop(model);
    eprintln!(
        "policy fail: down {down_in:?} after SIGSTOP, slowest 503 {slowest:?}, serving again \
         {back_in:?} after SIGCONT; {:?} in all",
        started.elapsed()
    );
    assert_running(&mut server);
}

/// Two of three servers are killed with the default
/// `--max-ejected-percent` (10%, but at least one node): exactly one node
/// is ejected and the other stays in the ring `"down"` (count 2), at every
/// sample for 2 s; the down node's keys get fast 503s naming it, the
/// healthy node's keys read as before, and the ejected node's keys miss
/// (or, where the ring now places them on the down node, get its 503).
/// Both servers restarted, all three nodes serve again within the bound.
#[test]
fn ejection_cap_ejects_one_of_two_failed_servers_and_fails_the_other_fast() {
    let _turn = serial();
    let started = Instant::now();
    let mut redis = start_redis(3);
    let addrs: Vec<String> = redis.iter().map(RedisServer::addr).collect();
    let mut server = start_ringcache(&addrs, &health_flags(EJECTION_TIME, SLOW_REDIS_TIMEOUT));
    let names: Vec<Vec<u8>> = (0..90).map(|i| format!("c/key-{i}").into_bytes()).collect();
    let model = Model::new(&server, names);
    let healthy = 1;

    redis[0].kill();
    redis[2].kill();
    let killed_at = Instant::now();
    let (s, took) = wait_nodes(
        &server,
        eject_within(SLOW_REDIS_TIMEOUT),
        "one of nodes 0 and 2 ejected, the other down",
        |s| {
            let mut failed = [s[&0].as_str(), s[&2].as_str()];
            failed.sort_unstable();
            failed == ["down", "ejected"]
        },
    );
    let ejected = in_state(&s, "ejected")[0];
    let down = 2 - ejected;
    let held_from = Instant::now();
    while held_from.elapsed() < Duration::from_secs(2) {
        let now = states(&server);
        assert_eq!(now, s, "the states changed while both servers stay dead");
        std::thread::sleep(POLL);
    }
    assert_eq!(node_count(&server), 2, "X-CacheServer-Count");

    let mut conn = server.conn();
    let mut counts = [0usize; 3];
    // The ejected node's keys written (on the healthy node) while it was out.
    let mut moved = Vec::new();
    for key in &model.keys {
        let name = show(&key.name);
        let t = Instant::now();
        let r = conn.request("GET", &key.path, &[], None);
        let took = t.elapsed();
        let index = r.routing().0;
        if key.node == healthy {
            assert_eq!(
                (r.status, r.body.as_slice(), index),
                (200, value_for(&key.name, 1).as_slice(), healthy),
                "GET {name} of the healthy node"
            );
            counts[0] += 1;
        } else if key.node == down || index == down {
            assert_fast_503(
                &r,
                took,
                down,
                &format!("GET {name} (placed on node {})", key.node),
            );
            counts[1] += 1;
        } else {
            assert_eq!(
                (r.status, index),
                (404, healthy),
                "GET {name} of the ejected node: {:?}",
                r.text()
            );
            let r = conn.request("PUT", &key.path, &[], Some(b"while two are dead"));
            assert_eq!((r.status, r.routing().0), (201, healthy), "PUT {name}");
            moved.push(key.name.clone());
            counts[2] += 1;
        }
    }
    assert!(
        counts.iter().all(|&c| c > 0),
        "keys (healthy, 503, moved) {counts:?}: a case went untested"
    );

    // The down node's server first: with the cap free again it is never
    // ejected.
    redis[down as usize].restart();
    redis[ejected as usize].restart();
    let returned_at = Instant::now();
    let deadline = readmit_deadline(killed_at, EJECTION_TIME, returned_at, SLOW_REDIS_TIMEOUT);
    wait_nodes(
        &server,
        deadline.saturating_duration_since(Instant::now()),
        "all three serving after both restarts",
        |s| s.values().all(|st| st == "serving"),
    );
    assert_eq!(
        node_count(&server),
        3,
        "X-CacheServer-Count after the restarts"
    );
    wait_settled(&server);
    for key in &model.keys {
        let r = conn.request("GET", &key.path, &[], None);
        assert!(
            r.status == 200 || r.status == 404,
            "GET {} after both restarts: {} {:?}",
            show(&key.name),
            r.status,
            r.text()
        );
        if key.node == healthy {
            assert_eq!(r.body, value_for(&key.name, 1), "{}", show(&key.name));
        }
        if moved.contains(&key.name) {
            assert_eq!(
                (r.status, r.text().as_str(), r.routing().0),
                (200, "while two are dead", ejected),
                "GET {}, written while its node was ejected, once it is back",
                show(&key.name)
            );
        }
    }
    drop(model);
    eprintln!(
        "cap: node {ejected} ejected and node {down} down {took:?} after the kills; keys \
         (healthy, 503, moved) {counts:?}; {:?} in all",
        started.elapsed()
    );
    assert_running(&mut server);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// The states with a gauge per node (1 while the node is in it); a
/// serving node has 0 in each.
const STATE_GAUGES: [(&str, &str); 3] = [
    ("draining", "ringcache_node_draining"),
    ("down", "ringcache_node_down"),
    ("ejected", "ringcache_node_ejected"),
];

/// `/metrics` per node, with one of three servers killed and its node
/// ejected: `ringcache_node_ejected` is 1 on it and every state gauge 0 on
/// the others; `ringcache_node_ejections_total` is 1 on it and 0 on the
/// others; every node has counted health checks and a last check latency;
/// the killed one has counted failed checks. Restarted and readmitted, it
/// is `serving` in the series too, with its one ejection still counted.
#[test]
fn metrics_show_each_nodes_health_state_and_checks() {
    let _turn = serial();
    let mut redis = start_redis(3);
    let addrs: Vec<String> = redis.iter().map(RedisServer::addr).collect();
    let mut server = start_ringcache(&addrs, &health_flags(EJECTION_TIME, REDIS_TIMEOUT));
    // Let every node pass a few checks.
    std::thread::sleep(check_period() * 2);
    redis[VICTIM as usize].kill();
    wait_state(&server, VICTIM, "ejected", eject_within(REDIS_TIMEOUT));
    let ejected_at = Instant::now();
    let scrape = |when: &str| {
        metric_text(&server)
            .unwrap_or_else(|e| panic!("{when}: {e}\nringcache's log:\n{}", server.log_text()))
    };
    let value = |text: &str, family: &str, node: u32| {
        series(text, family, node, None)
            .unwrap_or_else(|| panic!("no {family} series for node {node} in /metrics:\n{text}"))
    };
    let expect_states = |text: &str, victim_state: &str| {
        for node in 0..3 {
            let state = if node == VICTIM {
                victim_state
            } else {
                "serving"
            };
            for (s, family) in STATE_GAUGES {
                assert_eq!(
                    series(text, family, node, None),
                    Some(f64::from(u8::from(s == state))),
                    "{family}{{node=\"{node}\"}} with node {node} {state}; /metrics:\n{text}"
                );
            }
        }
    };

    let text = scrape("with node 1 ejected");
    expect_states(&text, "ejected");
    for node in 0..3 {
        let checks = value(&text, "ringcache_node_health_checks_total", node);
        assert!(checks >= 1.0, "node {node}: {checks} health checks");
        value(&text, "ringcache_node_health_check_seconds", node);
        assert_eq!(
            value(&text, "ringcache_node_ejections_total", node),
            f64::from(u8::from(node == VICTIM)),
            "node {node}'s ejections"
        );
    }
    let failed = value(&text, "ringcache_node_health_check_failures_total", VICTIM);
    assert!(failed >= 1.0, "the killed node's failed checks: {failed}");

    redis[VICTIM as usize].restart();
    let deadline = readmit_deadline(ejected_at, EJECTION_TIME, Instant::now(), REDIS_TIMEOUT);
    wait_nodes(
        &server,
        deadline.saturating_duration_since(Instant::now()),
        "readmission",
        |s| s[&VICTIM] == "serving",
    );
    let text = scrape("with node 1 readmitted");
    expect_states(&text, "serving");
    assert_eq!(
        value(&text, "ringcache_node_ejections_total", VICTIM),
        1.0,
        "ejections once readmitted"
    );
    assert_running(&mut server);
}

// ---------------------------------------------------------------------------
// The fault proxy itself
// ---------------------------------------------------------------------------

/// Sends an inline `PING` to `127.0.0.1:port` on a new connection and
/// reads one line, waiting at most `wait`; the line and how long it took.
fn ping_through(port: u16, wait: Duration) -> (std::io::Result<String>, Duration) {
    use std::io::{BufRead, BufReader, Write};
    let t = Instant::now();
    let result = (|| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(wait))?;
        stream.write_all(b"PING\r\n")?;
        let mut line = String::new();
        let n = BufReader::new(stream).read_line(&mut line)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    })();
    (result, t.elapsed())
}

/// The proxy does what each fault says: passes PING and PONG; closes
/// (EOF) or resets (ECONNRESET) every new connection; answers a delayed
/// PING no sooner than twice the delay (both ways); answers nothing when
/// black-holed; and a switch ends a connection opened before it.
#[test]
fn fault_proxy_passes_drops_resets_delays_and_blackholes() {
    let _turn = serial();
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.port);
    let wait = Duration::from_secs(2);
    let pong = |what: &str| {
        let (r, took) = ping_through(proxy.port, wait);
        assert_eq!(r.ok().as_deref(), Some("+PONG"), "{what}");
        took
    };
    pong("passing");

    // A refused PING: the connection ends with one of `kinds`.
    let refused = |fault: Fault, kinds: &[std::io::ErrorKind]| {
        proxy.set(fault);
        let (r, _) = ping_through(proxy.port, wait);
        let e = r.expect_err("a PING through a failing proxy");
        assert!(kinds.contains(&e.kind()), "{fault:?}: {e}");
    };
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    refused(Fault::Down, &[UnexpectedEof, ConnectionReset, BrokenPipe]);
    refused(Fault::Reset, &[ConnectionReset, BrokenPipe]);

    let delay = Duration::from_millis(150);
    proxy.set(Fault::Delay(delay));
    let took = pong("delayed");
    assert!(took >= delay * 2, "a delayed PING answered in {took:?}");

    proxy.set(Fault::Blackhole);
    let (r, took) = ping_through(proxy.port, Duration::from_millis(500));
    assert!(r.is_err(), "black-holed, a PING got {r:?} after {took:?}");

    // A connection opened while passing ends at the next switch.
    proxy.set(Fault::Pass);
    pong("passing again");
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        stream.set_read_timeout(Some(wait)).unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+PONG\r\n");
        proxy.set(Fault::Reset);
        let t = Instant::now();
        let r = stream.read(&mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "an open connection at a switch to Reset: {r:?} after {:?}",
            t.elapsed()
        );
    }
    let (accepted, forwarded) = proxy.connections();
    assert!(
        accepted >= 7 && forwarded >= 4,
        "connections {accepted} accepted, {forwarded} forwarded"
    );
}
