//! Hit ratio of one cache node on read-through traces, side by side with an
//! exact LRU, a real Redis and a W-TinyLFU cache (moka), in one run.
//!
//! Each trace is replayed as a read-through cache would see it: GET the key;
//! on a miss, SET it. Every cache holds the same number of entries
//! (`cap` below): keys are fixed-width and values equal-sized, so the node's
//! byte cap is exactly `cap` entries; the exact LRU and moka count entries;
//! Redis's `maxmemory` is calibrated until it holds `cap` keys, and corrected
//! per trace when the trace's steady state holds more than 5% off `cap` (its
//! mean key count over the trace's second half is printed beside its hit
//! ratio).
//!
//! Traces: Zipf with s = 0.8, 0.9 and 1.0 over `keys` keys, and the same with
//! a periodic sequential scan mixed in: after every `scan_every` Zipf
//! accesses, `scan_len` accesses to keys never seen before (one-hit
//! wonders, which every policy misses; what differs is how much of the hot
//! set each keeps through the scan).
//!
//! Run: `cargo bench --bench hit_ratio` (100k keys, 10k entries, 1M Zipf
//! accesses per trace). Without `--bench` (as `cargo test --benches` runs
//! it) the same comparison runs on a small trace as a smoke test.
//!
//! Redis: `redis-server` must be on `PATH`; the bench starts its own on a
//! free 127.0.0.1 port (`--save '' --appendonly no --maxmemory-policy
//! allkeys-lru --maxmemory-samples 5`) and stops it when done. Each access
//! is one `SET key value GET` (Redis 6.2+), which returns the old value (a
//! hit) or nil (a miss, and the SET is the read-through fill); on a hit it
//! rewrites the same value, touching the key as a GET would. That makes the
//! trace pipelinable (batches of `PIPELINE` commands) without changing what
//! Redis evicts: it evicts before each command, pipelined or not.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringcache::hash::key_hash;
use ringcache::node::{MemStore, ENTRY_OVERHEAD};

/// Bytes of every value.
const VALUE_LEN: usize = 32;
/// Commands per pipelined batch sent to Redis.
const PIPELINE: usize = 128;

/// The sizes of one run.
#[derive(Clone, Copy)]
struct Sizes {
    keys: u32,
    cap: usize,
    accesses: usize,
    scan_every: usize,
    scan_len: usize,
}

const FULL: Sizes = Sizes {
    keys: 100_000,
    cap: 10_000,
    accesses: 1_000_000,
    scan_every: 50_000,
    scan_len: 10_000,
};

const SMOKE: Sizes = Sizes {
    keys: 10_000,
    cap: 1_000,
    accesses: 30_000,
    scan_every: 5_000,
    scan_len: 1_000,
};

/// Fixed-width key bytes of id `id` (12 bytes for every id below 10^8).
fn key(id: u32) -> Vec<u8> {
    format!("key:{id:08}").into_bytes()
}

/// splitmix64: a small deterministic generator, so every cache replays the
/// same trace and a run can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A trace of key ids: Zipf(s) over `keys` ids (rank r has weight
/// 1/(r+1)^s; rank r is id r), with scans of fresh ids (from `keys` up)
/// when `scan` is set.
fn trace(sizes: Sizes, s: f64, scan: bool, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(sizes.keys as usize);
    let mut sum = 0.0;
    for r in 0..sizes.keys {
        sum += 1.0 / f64::from(r + 1).powf(s);
        cdf.push(sum);
    }
    let mut rng = Rng(seed);
    let mut fresh = sizes.keys;
    let mut out =
        Vec::with_capacity(sizes.accesses + sizes.accesses / sizes.scan_every * sizes.scan_len);
    for i in 0..sizes.accesses {
        let u = rng.unit() * sum;
        out.push(cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u32);
        if scan && (i + 1) % sizes.scan_every == 0 {
            out.extend(fresh..fresh + sizes.scan_len as u32);
            fresh += sizes.scan_len as u32;
        }
    }
    out
}

/// A cache under test: `access` is one read-through step, true on a hit.
trait Cache {
    fn access(&mut self, id: u32) -> bool;
}

/// ringcache's node, at a byte cap of exactly `cap` entries.
struct Node {
    store: MemStore,
    value: ringcache::node::Value,
}

impl Node {
    fn new(cap: usize) -> Node {
        Node {
            store: MemStore::new(cap * (key(0).len() + VALUE_LEN + ENTRY_OVERHEAD)),
            value: vec![b'v'; VALUE_LEN].into(),
        }
    }
}

impl Cache for Node {
    fn access(&mut self, id: u32) -> bool {
        let k = key(id);
        if self.store.get(&k).is_some() {
            return true;
        }
        self.store
            .set(key_hash(&k), &k, self.value.clone(), None)
            .expect("an entry smaller than the cap");
        false
    }
}

/// An exact LRU of `cap` entries: a map into a doubly linked list kept in a
/// vector (index `NIL` ends the list).
struct ExactLru {
    cap: usize,
    map: HashMap<u32, usize>,
    /// (prev, next, id) per slot.
    slots: Vec<(usize, usize, u32)>,
    head: usize,
    tail: usize,
}

const NIL: usize = usize::MAX;

impl ExactLru {
    fn new(cap: usize) -> ExactLru {
        ExactLru {
            cap,
            map: HashMap::with_capacity(cap),
            slots: Vec::with_capacity(cap),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next, _) = self.slots[i];
        match prev {
            NIL => self.head = next,
            p => self.slots[p].1 = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].0 = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].0 = NIL;
        self.slots[i].1 = self.head;
        if self.head != NIL {
            self.slots[self.head].0 = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
}

impl Cache for ExactLru {
    fn access(&mut self, id: u32) -> bool {
        if let Some(&i) = self.map.get(&id) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        let i = if self.slots.len() < self.cap {
            self.slots.push((NIL, NIL, id));
            self.slots.len() - 1
        } else {
            let victim = self.tail;
            self.unlink(victim);
            self.map.remove(&self.slots[victim].2);
            self.slots[victim].2 = id;
            victim
        };
        self.map.insert(id, i);
        self.push_front(i);
        false
    }
}

/// moka's W-TinyLFU cache, bounded to `cap` entries.
struct Moka(
    moka::sync::Cache<u32, ringcache::node::Value>,
    ringcache::node::Value,
);

impl Cache for Moka {
    fn access(&mut self, id: u32) -> bool {
        if self.0.get(&id).is_some() {
            return true;
        }
        self.0.insert(id, self.1.clone());
        false
    }
}

/// A `redis-server` this bench started; stopped when dropped.
struct Redis {
    child: Child,
    conn: BufReader<TcpStream>,
    dir: std::path::PathBuf,
    /// `used_memory` bytes per entry, measured by `fit_capacity`.
    per_entry: f64,
    /// The `maxmemory` last set.
    maxmemory: u64,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One RESP reply, as much as this bench needs.
#[derive(Debug, PartialEq)]
enum Reply {
    Nil,
    Bulk(Vec<u8>),
    Simple(String),
    Int(i64),
}

impl Redis {
    /// Starts `redis-server` on a free loopback port.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed or does not answer: this bench
    /// compares against a real Redis and never skips it.
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("ringcache-hit-ratio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir for redis-server");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args([
                "--maxmemory-policy",
                "allkeys-lru",
                "--maxmemory-samples",
                "5",
            ])
            .args(["--dir", dir.to_str().expect("a UTF-8 temp dir")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "benches/hit_ratio.rs needs `redis-server` on PATH to compare against a real \
                     Redis ({e}); install it (Debian: apt-get install -y redis-server)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("redis-server did not listen on 127.0.0.1:{port}: {e}"),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut redis = Redis {
            child,
            conn: BufReader::new(stream),
            dir,
            per_entry: 0.0,
            maxmemory: 0,
        };
        assert_eq!(redis.call(&[b"PING"]), Reply::Simple("PONG".into()));
        redis
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = Vec::new();
        self.conn
            .read_until(b'\n', &mut line)
            .expect("a reply from redis-server");
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Simple(text),
            b':' => Reply::Int(text.parse().unwrap()),
            b'-' => panic!("redis-server: {text}"),
            b'$' if text == "-1" => Reply::Nil,
            b'$' => {
                let mut buf = vec![0; text.parse::<usize>().unwrap() + 2];
                std::io::Read::read_exact(&mut self.conn, &mut buf).unwrap();
                buf.truncate(buf.len() - 2);
                Reply::Bulk(buf)
            }
            other => panic!("unexpected reply type {:?}", other as char),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Reply {
        let mut out = Vec::new();
        Redis::encode(&mut out, args);
        self.conn.get_mut().write_all(&out).unwrap();
        self.read_reply()
    }

    fn info_field(&mut self, field: &str) -> u64 {
        let Reply::Bulk(info) = self.call(&[b"INFO", b"memory"]) else {
            panic!("INFO answered oddly")
        };
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:"))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO memory has no {field}"))
    }

    fn dbsize(&mut self) -> u64 {
        match self.call(&[b"DBSIZE"]) {
            Reply::Int(n) => n as u64,
            r => panic!("DBSIZE answered {r:?}"),
        }
    }

    fn set_maxmemory(&mut self, bytes: u64) {
        self.maxmemory = bytes;
        let b = bytes.to_string();
        assert_eq!(
            self.call(&[b"CONFIG", b"SET", b"maxmemory", b.as_bytes()]),
            Reply::Simple("OK".into())
        );
    }

    /// Replays `ids` as `SET key value GET`, `PIPELINE` at a time; returns
    /// the hits and the mean DBSIZE sampled every 64 batches in the trace's
    /// second half (the steady state: the first half includes the fill
    /// from empty, which would make a full cache look short of `cap`).
    fn replay(&mut self, ids: &[u32], value: &[u8]) -> (u64, f64) {
        let mut hits = 0;
        let (mut sizes, mut samples) = (0u64, 0u64);
        let mut out = Vec::new();
        let steady = ids.len().div_ceil(PIPELINE) / 2;
        for (b, batch) in ids.chunks(PIPELINE).enumerate() {
            out.clear();
            for &id in batch {
                Redis::encode(&mut out, &[b"SET", &key(id), value, b"GET"]);
            }
            self.conn.get_mut().write_all(&out).unwrap();
            for _ in batch {
                match self.read_reply() {
                    Reply::Nil => {}
                    Reply::Bulk(_) => hits += 1,
                    r => panic!("SET .. GET answered {r:?}"),
                }
            }
            if b >= steady && b % 64 == 63 {
                sizes += self.dbsize();
                samples += 1;
            }
        }
        (hits, sizes as f64 / samples.max(1) as f64)
    }

    /// Replays a trace from empty and returns its hits and mean steady-state
    /// key count. Capacity is matched by entry count, and a memory cap only
    /// approximates one (the key dictionary grows in powers of two, so its
    /// size shifts what fits), so when the trace held more than 5% off
    /// `cap`, `maxmemory` is corrected by the measured bytes per entry and
    /// the trace replayed, up to three times; the last run is returned.
    fn replay_at(&mut self, cap: usize, ids: &[u32], value: &[u8]) -> (u64, f64) {
        let mut run = (0, 0.0);
        for _ in 0..4 {
            assert_eq!(
                self.call(&[b"FLUSHALL", b"SYNC"]),
                Reply::Simple("OK".into())
            );
            run = self.replay(ids, value);
            let off = cap as f64 - run.1;
            if off.abs() <= 0.05 * cap as f64 {
                break;
            }
            let corrected = (self.maxmemory as f64 + off * self.per_entry).max(1.0);
            self.set_maxmemory(corrected as u64);
        }
        run
    }

    /// Sets `maxmemory` so that Redis holds about `cap` of this bench's
    /// entries: measures `used_memory` per entry, then corrects on the key
    /// count reached by a fill of fresh keys, three times; ends empty.
    fn fit_capacity(&mut self, cap: usize, value: &[u8]) {
        assert_eq!(
            self.call(&[b"FLUSHALL", b"SYNC"]),
            Reply::Simple("OK".into())
        );
        self.set_maxmemory(0);
        let empty = self.info_field("used_memory");
        // Calibration keys: ids far above any trace's, same width.
        let fill: Vec<u32> = (90_000_000..90_000_000 + cap as u32).collect();
        self.replay(&fill, value);
        let per_entry = (self.info_field("used_memory") - empty) as f64 / cap as f64;
        self.per_entry = per_entry;
        let mut maxmemory = empty + (per_entry * cap as f64) as u64;
        for round in 0..3 {
            assert_eq!(
                self.call(&[b"FLUSHALL", b"SYNC"]),
                Reply::Simple("OK".into())
            );
            self.set_maxmemory(maxmemory);
            let start = 91_000_000 + round * 2 * cap as u32;
            let fill: Vec<u32> = (start..start + 2 * cap as u32).collect();
            self.replay(&fill, value);
            let held = self.dbsize() as f64;
            maxmemory = (maxmemory as f64 + (cap as f64 - held) * per_entry) as u64;
        }
        self.set_maxmemory(maxmemory);
        assert_eq!(
            self.call(&[b"FLUSHALL", b"SYNC"]),
            Reply::Simple("OK".into())
        );
    }
}

fn replay(cache: &mut dyn Cache, ids: &[u32]) -> u64 {
    ids.iter().filter(|&&id| cache.access(id)).count() as u64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let value = vec![b'v'; VALUE_LEN];
    let mut redis = Redis::start();
    redis.fit_capacity(sizes.cap, &value);
    println!(
        "hit ratio, read-through, {} keys, {} entries per cache, {} Zipf accesses per trace{}",
        sizes.keys,
        sizes.cap,
        sizes.accesses,
        if full {
            ""
        } else {
            " (smoke sizes; run `cargo bench --bench hit_ratio` for the full run)"
        }
    );
    println!(
        "scan-mixed: {} fresh keys after every {} Zipf accesses\n",
        sizes.scan_len, sizes.scan_every
    );
    println!(
        "{:<14} {:>9} {:>16} {:>16} {:>9} {:>16} {:>16}",
        "trace",
        "exact LRU",
        "ringcache node",
        "(x exact LRU)",
        "redis",
        "(redis entries)",
        "moka W-TinyLFU"
    );
    for scan in [false, true] {
        for s in [0.8, 0.9, 1.0] {
            let ids = trace(sizes, s, scan, 0x5EED ^ (s * 10.0) as u64 ^ u64::from(scan));
            let n = ids.len() as f64;
            let lru = replay(&mut ExactLru::new(sizes.cap), &ids) as f64 / n;
            let mut node = Node::new(sizes.cap);
            let ours = replay(&mut node, &ids) as f64 / n;
            assert!(node.store.len() <= sizes.cap);
            let moka = moka::sync::Cache::builder()
                .max_capacity(sizes.cap as u64)
                .build();
            let moka = replay(&mut Moka(moka, value.clone().into()), &ids) as f64 / n;
            let (hits, entries) = redis.replay_at(sizes.cap, &ids, &value);
            let redis_ratio = hits as f64 / n;
            // Capacity matched by entry count: a Redis far from `cap`
            // entries would make its ratio meaningless.
            assert!(
                (entries - sizes.cap as f64).abs() < 0.1 * sizes.cap as f64,
                "redis held {entries:.0} entries on average, not ~{}",
                sizes.cap
            );
            println!(
                "{:<14} {:>9.4} {:>16.4} {:>16.4} {:>9.4} {:>16.0} {:>16.4}",
                format!("zipf {s:.1}{}", if scan { "+scan" } else { "" }),
                lru,
                ours,
                ours / lru,
                redis_ratio,
                entries,
                moka
            );
        }
    }
}
