//! Redis servers as cache nodes: the real `ringcache` binary in front of
//! real `redis-server` processes, every claim checked both through the HTTP
//! API and directly in the servers over RESP.
//!
//! * the key routes land on the owner's server as plain Redis strings (TTL
//!   as PTTL), with the usual status codes and routing headers; `GET /nodes`
//!   shows each node's address;
//! * `--redis-prefix` namespaces the keys, and relocation leaves keys it
//!   does not own alone;
//! * adding, removing and re-weighting a server under concurrent writers,
//!   deleters and readers loses no acknowledged write, resurrects no deleted
//!   key, and ends with every key on exactly one server, its owner, with its
//!   TTL;
//! * replacing a server in the cluster file relocates its keys;
//! * a killed server (SIGKILL) fails only its own keys, with 502/504 naming
//!   it, quickly, and serves again once restarted on the same port; a paused
//!   server (SIGSTOP) times out only its own keys with 504 and serves again
//!   on SIGCONT, each reply still matched to its request;
//! * a cluster mixing embedded and Redis nodes relocates keys in both
//!   directions.
//!
//! `redis-server` must be on `PATH` (scripts/test.sh installs it); without
//! it the tests fail naming it. Every load loop is bounded in operations and
//! wall time; no assertion depends on how fast the machine is except the
//! fault tests' generous bound on how long a failing request may take.

mod common;
mod rng;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::redis::{RedisClient, RedisServer};
use common::{index_of, pct, run_cli, Response, Server};
use ringcache::{NodeId, Ring};
use rng::SplitMix;
use serde_json::Value;

/// TTL in seconds of the keys written with one: long enough that none
/// expires during a test.
const TTL: u64 = 600;

/// How long a test waits for a cluster-file edit to show in `GET /nodes`.
const RELOAD_WITHIN: Duration = Duration::from_secs(10);

/// How long a test waits for a restarted or resumed server to be used
/// again (the first request after it is back may still fail).
const RECOVER_WITHIN: Duration = Duration::from_secs(10);

/// Headroom over `--redis-timeout` that a failing request may take.
const FAIL_SLACK: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn start_redis(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

/// Starts `ringcache --redis ADDR...` (node i is `servers[i]`) with `extra`
/// flags.
fn start_ringcache(servers: &[&RedisServer], extra: &[&str]) -> Server {
    let mut args: Vec<String> = Vec::new();
    for s in servers {
        args.push("--redis".into());
        args.push(s.addr());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&args)
}

/// Every node `GET /nodes` lists: its index and its Redis address (`None`
/// for an embedded node).
fn node_backends(server: &Server) -> HashMap<u32, Option<String>> {
    server
        .nodes()
        .iter()
        .map(|n| (index_of(n), n["redis"].as_str().map(str::to_owned)))
        .collect()
}

/// `GET /rebalance`, parsed.
fn rebalance(server: &Server) -> Value {
    let r = server.get("/rebalance");
    assert_eq!(r.status, 200, "GET /rebalance: {}", r.text());
    r.json()
}

/// A number field of a JSON object.
fn number(json: &Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a number in {json}"))
}

/// Keys whose node differs between two placements (of the same keys).
fn changed(before: &HashMap<Vec<u8>, u32>, after: &HashMap<Vec<u8>, u32>) -> usize {
    assert_eq!(before.len(), after.len(), "placements of different keys");
    before.iter().filter(|(k, i)| after[*k] != **i).count()
}

/// What one key should be at a check.
struct Want {
    key: Vec<u8>,
    /// The value, or `None` for a deleted (or never written) key.
    value: Option<Vec<u8>>,
    /// The TTL in seconds its last write gave it.
    ttl: Option<u64>,
}

/// Checks every key of `want` through the API and directly in each of
/// `servers` (removed ones included):
///
/// * `GET /keys/{key}` answers 200 with the value, or 404 for a deleted key;
/// * a live key is stored as `prefix + key` on exactly one server, that of
///   the node its `X-CacheServer-Index` names (on none if that node is
///   embedded), with the value, and a PTTL in (0, ttl] if it was written
///   with a TTL, else none (-1);
/// * a deleted key is on no server, and no server holds any other key under
///   the prefix (no stray copy left behind by relocation), but for ballast
///   (see [`is_ballast`]), which its test checks itself.
///
/// Returns each live key's node index.
fn assert_placement(
    server: &Server,
    servers: &[&RedisServer],
    prefix: &[u8],
    want: &[Want],
) -> HashMap<Vec<u8>, u32> {
    let backends = node_backends(server);
    let mut clients: Vec<(String, RedisClient)> =
        servers.iter().map(|s| (s.addr(), s.client())).collect();
    // Where each key under the prefix is stored.
    let mut held: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for (addr, c) in &mut clients {
        for k in c.keys() {
            if let Some(k) = k.strip_prefix(prefix).filter(|k| !is_ballast(k)) {
                held.entry(k.to_vec()).or_default().push(addr.clone());
            }
        }
    }
    let mut conn = server.conn();
    let mut owners = HashMap::new();
    let mut failures = Vec::new();
    for w in want {
        let name = show(&w.key);
        let r = conn.request("GET", &format!("/keys/{}", pct(&w.key)), &[], None);
        let (index, _) = r.routing();
        let on = held.remove(&w.key).unwrap_or_default();
        let Some(value) = &w.value else {
            if r.status != 404 {
                failures.push(format!(
                    "deleted key {name}: GET answered {} {:?} (resurrected)",
                    r.status,
                    r.text()
                ));
            }
            if !on.is_empty() {
                failures.push(format!("deleted key {name} is still stored on {on:?}"));
            }
            continue;
        };
        if r.status != 200 || r.body != *value {
            failures.push(format!(
                "key {name}: GET answered {} {:?}, expected 200 {:?}",
                r.status,
                r.text(),
                show(value)
            ));
        }
        owners.insert(w.key.clone(), index);
        let Some(backend) = backends.get(&index) else {
            failures.push(format!(
                "key {name}: X-CacheServer-Index {index} is not in GET /nodes {backends:?}"
            ));
            continue;
        };
        let expected_on: Vec<String> = backend.iter().cloned().collect();
        if on != expected_on {
            failures.push(format!(
                "key {name} is stored on {on:?}; its node {index} is {}",
                backend.as_deref().unwrap_or("embedded")
            ));
            continue;
        }
        let Some(addr) = backend else { continue };
        let Some((_, c)) = clients.iter_mut().find(|(a, _)| a == addr) else {
            failures.push(format!(
                "key {name}: node {index} is {addr}, not a server of this test"
            ));
            continue;
        };
        let stored_key = [prefix, &w.key].concat();
        let stored = c.get(&stored_key);
        if stored.as_ref() != Some(value) {
            failures.push(format!(
                "key {name} on {addr} holds {:?}, expected {:?}",
                stored.as_deref().map(show),
                show(value)
            ));
        }
        let pttl = c.pttl(&stored_key);
        match w.ttl {
            Some(ttl) if !(pttl > 0 && pttl <= (ttl * 1000) as i64) => failures.push(format!(
                "key {name} on {addr}: PTTL {pttl}, expected in (0, {}]",
                ttl * 1000
            )),
            None if pttl != -1 => failures.push(format!(
                "key {name} on {addr}: PTTL {pttl}, but it was written without a TTL"
            )),
            _ => {}
        }
    }
    for (k, on) in &held {
        failures.push(format!(
            "stray key {} on {on:?}: no such key should exist",
            show(k)
        ));
    }
    assert!(
        failures.is_empty(),
        "{} placement violations (first 20):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    owners
}

/// The keys `key-0..n` with values `value-i`, every fourth with a TTL.
fn numbered_keys(n: usize) -> Vec<Want> {
    (0..n)
        .map(|i| Want {
            key: format!("key-{i}").into_bytes(),
            value: Some(format!("value-{i}").into_bytes()),
            ttl: (i % 4 == 0).then_some(TTL),
        })
        .collect()
}

/// Writes every live key of `want` through the API (201: all are new).
fn put_all(server: &Server, want: &[Want]) {
    let mut conn = server.conn();
    for w in want {
        let Some(value) = &w.value else { continue };
        let path = match w.ttl {
            Some(ttl) => format!("/keys/{}?ttl={ttl}", pct(&w.key)),
            None => format!("/keys/{}", pct(&w.key)),
        };
        let r = conn.request("PUT", &path, &[], Some(value));
        assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
    }
}

/// A cluster file in the test's temporary directory, removed on drop.
struct ConfigFile {
    path: PathBuf,
    /// Top-level sections written before `nodes:` each time.
    sections: String,
}

impl ConfigFile {
    fn new(test: &str, sections: &str) -> ConfigFile {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ringcache-redis-{}-{test}.yaml",
            std::process::id()
        ));
        ConfigFile {
            path,
            sections: sections.to_owned(),
        }
    }

    /// Writes the file with `listen`, a 100 ms reload interval, the
    /// sections and `nodes` (YAML list items), atomically (write then
    /// rename) so that a reload never sees half a file.
    fn write(&self, listen: &str, nodes: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(
            &tmp,
            format!(
                "listen: {listen}\nreload_interval: 100ms\n{}nodes:\n{nodes}",
                self.sections
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// Starts `ringcache --config FILE` with `nodes`.
    fn start(&self, nodes: &str) -> Server {
        let path = self.path.display().to_string();
        Server::start_args(|addr| {
            self.write(&addr.to_string(), nodes);
            vec!["--config".to_string(), path.clone()]
        })
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// (name, Redis address) of the serving nodes, sorted.
fn members(server: &Server) -> Vec<(String, Option<String>)> {
    let mut m: Vec<(String, Option<String>)> = server
        .nodes()
        .iter()
        .filter(|n| n["state"] == "serving")
        .map(|n| {
            (
                n["name"].as_str().expect("a node has a name").to_owned(),
                n["redis"].as_str().map(str::to_owned),
            )
        })
        .collect();
    m.sort();
    m
}

/// Waits until the serving nodes are `want` (name, Redis address), then
/// until relocation is done.
fn expect_members(server: &Server, want: &[(&str, Option<&str>)]) {
    let mut want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(n, r)| (n.to_string(), r.map(str::to_owned)))
        .collect();
    want.sort();
    let deadline = Instant::now() + RELOAD_WITHIN;
    loop {
        let got = members(server);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members {got:?}, expected {want:?}\nlog:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.wait_rebalanced();
}

// ---------------------------------------------------------------------------
// The key routes
// ---------------------------------------------------------------------------

/// `--redis a --redis b --redis c`: GET /nodes lists the three servers in
/// order (index i = i-th flag, named and addressed by the address,
/// serving, with the stat fields); each key's routing headers name the node
/// the library's ring predicts for those names, with a count of 3; PUT
/// stores a plain string on that server only (201, then 200 on replace),
/// with `?ttl` as a PTTL in (0, ttl], without as no expiry; GET reads it,
/// also when it was SET directly in the server; DELETE removes it (204, then
/// 404); an empty value is a value; keys are binary-safe; the node stats
/// follow the servers' key counts.
#[test]
fn keys_are_plain_strings_on_the_owners_server() {
    let redis = start_redis(3);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let server = start_ringcache(&all, &[]);

    let nodes = server.nodes();
    assert_eq!(nodes.len(), 3, "GET /nodes: {nodes:?}");
    for (i, n) in nodes.iter().enumerate() {
        let addr = redis[i].addr();
        assert_eq!(index_of(n), i as u32, "{n}");
        assert_eq!(n["redis"], addr.as_str(), "{n}");
        assert_eq!(
            n["name"],
            addr.as_str(),
            "a --redis node is named by its address: {n}"
        );
        assert_eq!(n["state"], "serving", "{n}");
        assert_eq!(n["vnodes"], 160, "the default vnodes: {n}");
        for field in [
            "keys",
            "bytes",
            "hits",
            "misses",
            "evictions",
            "expirations",
            "ownership",
        ] {
            assert!(n[field].is_number(), "{field} is not a number: {n}");
        }
    }

    let ring = Ring::new();
    for s in &redis {
        ring.add_node(&s.addr(), 160).unwrap();
    }
    let mut clients: Vec<RedisClient> = redis.iter().map(RedisServer::client).collect();
    let mut conn = server.conn();
    let mut req = |method: &str, path: &str, body: Option<&[u8]>| -> Response {
        conn.request(method, path, &[], body)
    };
    let mut used = HashSet::new();
    for i in 0..60 {
        let key = format!("key-{i}");
        let k = key.as_bytes();
        let path = format!("/keys/{key}");
        let owner = ring.lookup(k).expect("a ring with nodes has an owner");
        let o = owner.0 as usize;
        used.insert(o);
        // Absent.
        let r = req("GET", &path, None);
        r.expect_error(404);
        assert_eq!(r.routing(), (owner.0, 3), "GET {path}");
        // New, without a TTL: on the owner only, no expiry.
        let r = req("PUT", &path, Some(b"first"));
        assert_eq!((r.status, r.routing()), (201, (owner.0, 3)), "{}", r.text());
        for (j, c) in clients.iter_mut().enumerate() {
            let want = (j == o).then(|| b"first".to_vec());
            assert_eq!(c.get(k), want, "{key} on {}", redis[j].addr());
        }
        assert_eq!(clients[o].pttl(k), -1, "{key} was written without a TTL");
        // Replaced.
        let r = req("PUT", &path, Some(b"second"));
        assert_eq!((r.status, r.routing()), (200, (owner.0, 3)), "{}", r.text());
        assert_eq!(clients[o].get(k), Some(b"second".to_vec()));
        // Replaced with a TTL.
        let r = req("PUT", &format!("{path}?ttl=100"), Some(b"third"));
        assert_eq!((r.status, r.routing()), (200, (owner.0, 3)), "{}", r.text());
        assert_eq!(clients[o].get(k), Some(b"third".to_vec()));
        let pttl = clients[o].pttl(k);
        assert!(
            pttl > 0 && pttl <= 100_000,
            "{key}: PTTL {pttl} for ttl=100"
        );
        let r = req("GET", &path, None);
        assert_eq!((r.status, r.routing()), (200, (owner.0, 3)));
        assert_eq!(r.body, b"third");
        // Deleted.
        let r = req("DELETE", &path, None);
        assert_eq!((r.status, r.routing()), (204, (owner.0, 3)), "{}", r.text());
        assert_eq!(clients[o].get(k), None, "{key} still in Redis after DELETE");
        let r = req("DELETE", &path, None);
        r.expect_error(404);
        assert_eq!(r.routing(), (owner.0, 3));
        req("GET", &path, None).expect_error(404);

        // A new key with a TTL.
        let tkey = format!("ttl-{i}");
        let towner = ring.lookup(tkey.as_bytes()).unwrap().0;
        let r = req("PUT", &format!("/keys/{tkey}?ttl=50"), Some(b"t"));
        assert_eq!((r.status, r.routing()), (201, (towner, 3)), "{}", r.text());
        let pttl = clients[towner as usize].pttl(tkey.as_bytes());
        assert!(pttl > 0 && pttl <= 50_000, "{tkey}: PTTL {pttl} for ttl=50");
    }
    assert_eq!(used.len(), 3, "60 keys used only nodes {used:?}");

    // A value SET directly in the owner's server is a value.
    let owner = ring.lookup(b"planted").unwrap().0;
    clients[owner as usize].set(b"planted", b"set by another client");
    let r = req("GET", "/keys/planted", None);
    assert_eq!((r.status, r.routing()), (200, (owner, 3)));
    assert_eq!(r.body, b"set by another client");

    // An empty value is a value, not an absent key.
    let owner = ring.lookup(b"empty").unwrap().0;
    let r = req("PUT", "/keys/empty", Some(b""));
    assert_eq!((r.status, r.routing()), (201, (owner, 3)), "{}", r.text());
    assert_eq!(clients[owner as usize].get(b"empty"), Some(Vec::new()));
    let r = req("GET", "/keys/empty", None);
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());

    // Binary keys and values are stored byte for byte.
    let key = b"bin \x00\xff/\r\n key";
    let value = b"\x00\x01\xfe\xff\r\n";
    let owner = ring.lookup(key).unwrap().0;
    let r = req("PUT", &format!("/keys/{}", pct(key)), Some(value));
    assert_eq!((r.status, r.routing()), (201, (owner, 3)), "{}", r.text());
    assert_eq!(clients[owner as usize].get(key), Some(value.to_vec()));
    let r = req("GET", &format!("/keys/{}", pct(key)), None);
    assert_eq!(r.body, value);

    // The node stats come from the servers (refreshed about once a
    // second): they reach the servers' key counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Vec<u64> = server.nodes().iter().map(|n| number(n, "keys")).collect();
        let sizes: Vec<u64> = clients.iter_mut().map(RedisClient::dbsize).collect();
        if stats == sizes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GET /nodes keys {stats:?} never reached the servers' DBSIZE {sizes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut server = server;
    server.assert_alive(&[]);
}

/// `--redis-prefix rc:` stores every key as `rc:` + key; keys of another
/// application in the same servers (some with our keys' names unprefixed,
/// all without the prefix) are never read as ours, and adding then removing
/// a server relocates exactly the keys whose owner changed, leaving the
/// other application's keys where they were, unchanged, without expiry.
#[test]
fn prefix_namespaces_keys_and_relocation_leaves_other_keys_alone() {
    let redis = start_redis(3);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let server = start_ringcache(&all[..2], &["--redis-prefix", "rc:"]);

    // The other application's keys, on every server (the third not yet a
    // node).
    let mut planted: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    for (s, r) in redis.iter().enumerate() {
        let mut c = r.client();
        for j in 0..30 {
            for key in [format!("key-{j}"), format!("other:{s}:{j}")] {
                let value = format!("foreign {s} {key}").into_bytes();
                c.set(key.as_bytes(), &value);
                planted.push((s, key.into_bytes(), value));
            }
        }
    }
    let check_planted = || {
        for (s, key, value) in &planted {
            let mut c = redis[*s].client();
            assert_eq!(
                c.get(key).as_ref(),
                Some(value),
                "planted key {} on {} changed",
                show(key),
                redis[*s].addr()
            );
            assert_eq!(c.pttl(key), -1, "planted key {} got a TTL", show(key));
        }
    };

    let want = numbered_keys(200);
    put_all(&server, &want);
    let before = assert_placement(&server, &all, b"rc:", &want);
    check_planted();
    // Our key-0 is not the other application's key-0.
    assert_eq!(server.get("/keys/key-0").body, b"value-0");

    let r = server.send_json(
        "POST",
        "/nodes",
        &format!(r#"{{"redis": "{}", "vnodes": 160}}"#, redis[2].addr()),
    );
    assert_eq!(r.status, 201, "POST /nodes: {}", r.text());
    let node = r.json();
    assert_eq!(node["redis"], redis[2].addr().as_str(), "{node}");
    assert_eq!(node["name"], redis[2].addr().as_str(), "{node}");
    assert_eq!(index_of(&node), 2, "{node}");
    let status = server.wait_rebalanced();
    let after_add = assert_placement(&server, &all, b"rc:", &want);
    let moved = changed(&before, &after_add);
    assert!(moved > 0, "adding a server moved no key");
    assert_eq!(
        number(&status, "keys_moved"),
        moved as u64,
        "keys moved vs keys whose owner changed: {status}"
    );
    check_planted();

    let r = server.delete("/nodes/0");
    assert_eq!(r.status, 202, "DELETE /nodes/0: {}", r.text());
    let status = server.wait_rebalanced();
    let after_remove = assert_placement(&server, &all, b"rc:", &want);
    let moved = changed(&after_add, &after_remove);
    assert!(moved > 0, "removing a server moved no key");
    assert_eq!(
        number(&status, "keys_moved"),
        moved as u64,
        "keys moved vs keys whose owner changed: {status}"
    );
    check_planted();
    assert_eq!(
        redis[0].client().dbsize(),
        60,
        "the removed server keeps exactly the other application's keys"
    );
}

// ---------------------------------------------------------------------------
// Live changes under traffic
// ---------------------------------------------------------------------------

/// Threads that write (and sometimes delete) their own keys.
const WRITERS: usize = 2;
/// Threads that mostly delete their own keys.
const DELETERS: usize = 1;
/// Threads that read every key and check it against the model.
const READERS: usize = 2;
const KEYS_PER_THREAD: usize = 120;
/// Operations per thread at most, whatever the time.
const MAX_OPS_PER_THREAD: u64 = 30_000;
/// Operations all threads together run between two membership changes
/// (when they get there within [`PROGRESS_WITHIN`]).
const OPS_BETWEEN_CHANGES: u64 = 600;
const PROGRESS_WITHIN: Duration = Duration::from_secs(20);

/// Keys planted directly in their owners' servers before the traffic
/// starts, so that every change has thousands of keys to relocate and the
/// traffic runs while it does.
const BALLAST: usize = 60_000;

/// Whether `key` is ballast (`ballast/...`).
fn is_ballast(key: &[u8]) -> bool {
    key.starts_with(b"ballast/")
}

/// Plants [`BALLAST`] keys, each in the server `ring` places it on (node i
/// of the ring is `servers[i]`).
fn plant_ballast(ring: &Ring, servers: &[&RedisServer]) {
    let mut per_server: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); servers.len()];
    for i in 0..BALLAST {
        let key = format!("ballast/{i}").into_bytes();
        let owner = ring.lookup(&key).expect("a ring with nodes has an owner");
        per_server[owner.0 as usize].push((key, format!("ballast value {i}").into_bytes()));
    }
    for (s, pairs) in servers.iter().zip(&per_server) {
        s.client().set_many(pairs);
    }
}

/// Every ballast key is in exactly one of `servers`: the one `ring` places
/// it on (`addrs[i]` is node i's address), none lost, none copied.
fn assert_ballast(ring: &Ring, addrs: &HashMap<u32, String>, servers: &[&RedisServer]) {
    let mut seen: HashMap<Vec<u8>, String> = HashMap::new();
    let mut failures = Vec::new();
    for s in servers {
        let addr = s.addr();
        for key in s.client().keys().into_iter().filter(|k| is_ballast(k)) {
            let owner = ring.lookup(&key).expect("a ring with nodes has an owner");
            if addrs.get(&owner.0) != Some(&addr) {
                failures.push(format!(
                    "ballast {} is on {addr}, its owner is node {} ({:?})",
                    show(&key),
                    owner.0,
                    addrs.get(&owner.0)
                ));
            }
            if let Some(other) = seen.insert(key.clone(), addr.clone()) {
                failures.push(format!(
                    "ballast {} is on both {other} and {addr}",
                    show(&key)
                ));
            }
        }
    }
    if seen.len() != BALLAST {
        failures.push(format!(
            "{} of {BALLAST} ballast keys are stored anywhere",
            seen.len()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} ballast violations (first 20):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

/// Per-key model shared by the key's single writing thread and every
/// reader, as in `cluster_stress`: ops on a key are numbered 1, 2, ...;
/// `issued` is the newest op started, `acked` the newest acknowledged
/// (shifted left one bit, low bit set for a PUT, clear for a DELETE),
/// `last_delete` the newest DELETE started.
#[derive(Default)]
struct KeyModel {
    issued: AtomicU64,
    acked: AtomicU64,
    last_delete: AtomicU64,
}

struct LiveKey {
    key: Vec<u8>,
    ttl: Option<u64>,
    model: KeyModel,
}

fn value_for(key: &[u8], seq: u64) -> Vec<u8> {
    let mut v = key.to_vec();
    v.extend_from_slice(format!("#{seq}").as_bytes());
    v
}

fn seq_of(key: &[u8], value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(key)?.strip_prefix(b"#")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

fn put_path(k: &LiveKey) -> String {
    match k.ttl {
        Some(ttl) => format!("/keys/{}?ttl={ttl}", pct(&k.key)),
        None => format!("/keys/{}", pct(&k.key)),
    }
}

struct Failures(Mutex<Vec<String>>);

impl Failures {
    fn report(&self, msg: String) {
        let mut f = self.0.lock().unwrap();
        if f.len() < 20 {
            f.push(msg);
        }
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

/// Shared state of the traffic threads.
struct Traffic<'a> {
    server: &'a Server,
    keys: Vec<LiveKey>,
    stop: AtomicBool,
    ops: AtomicU64,
    failures: Failures,
}

impl Traffic<'_> {
    /// Thread `t` owns keys `t*KEYS_PER_THREAD..` (all live at the start):
    /// PUTs them, and DELETEs one in `delete_in` of `delete_of` ops. Being
    /// a key's only writer it knows whether the key exists, so each answer
    /// must be exact, relocation or not: PUT 200 on a live key, 201 on a
    /// deleted one; DELETE 204 on a live key, 404 on a deleted one.
    fn mutate(&self, t: usize, delete_in: u64, delete_of: u64) -> u64 {
        let mut rng = SplitMix(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
        let range = t * KEYS_PER_THREAD..(t + 1) * KEYS_PER_THREAD;
        let mine = &self.keys[range];
        // Whether each key exists (`None` after a failed op: unknown).
        let mut live: Vec<Option<bool>> = vec![Some(true); mine.len()];
        let mut conn = self.server.conn();
        let mut ops = 0;
        while !self.stop.load(Ordering::Relaxed) && ops < MAX_OPS_PER_THREAD {
            let i = rng.below(mine.len() as u64) as usize;
            let k = &mine[i];
            let m = &k.model;
            let seq = m.issued.load(Ordering::SeqCst) + 1;
            let delete = rng.below(delete_of) < delete_in;
            if delete {
                m.last_delete.store(seq, Ordering::SeqCst);
            }
            m.issued.store(seq, Ordering::SeqCst);
            let (r, ok): (Response, [u16; 2]) = if delete {
                let path = format!("/keys/{}", pct(&k.key));
                (conn.request("DELETE", &path, &[], None), [204, 404])
            } else {
                let value = value_for(&k.key, seq);
                (
                    conn.request("PUT", &put_path(k), &[], Some(&value)),
                    [200, 201],
                )
            };
            let what = if delete { "DELETE" } else { "PUT" };
            if ok.contains(&r.status) {
                m.acked
                    .store(seq << 1 | u64::from(!delete), Ordering::SeqCst);
                // ok[0] is the answer for a live key.
                if let Some(was_live) = live[i] {
                    let expected = if was_live { ok[0] } else { ok[1] };
                    if r.status != expected {
                        self.failures.report(format!(
                            "thread {t}: {what} of {} (op {seq}) answered {}, but the key {} \
                             so it should be {expected}",
                            show(&k.key),
                            r.status,
                            if was_live { "existed" } else { "did not exist" }
                        ));
                    }
                }
                live[i] = Some(!delete);
            } else {
                live[i] = None;
                self.failures.report(format!(
                    "thread {t}: {what} of {} (op {seq}) answered {} {:?}",
                    show(&k.key),
                    r.status,
                    r.text()
                ));
            }
            ops += 1;
            self.ops.fetch_add(1, Ordering::Relaxed);
        }
        ops
    }

    /// Reads random keys and checks each answer against the model: a value
    /// no older than the op acknowledged before the read and no newer than
    /// the last issued by its end; a 404 only if a DELETE was acknowledged
    /// before the read or issued since.
    fn read(&self, r: usize) -> u64 {
        let mut rng = SplitMix(0xD1B5_4A32_D192_ED03 ^ (r as u64 + 7));
        let mut conn = self.server.conn();
        let mut reads = 0;
        while !self.stop.load(Ordering::Relaxed) && reads < MAX_OPS_PER_THREAD {
            let k = &self.keys[rng.below(self.keys.len() as u64) as usize];
            let m = &k.model;
            let before = m.acked.load(Ordering::SeqCst);
            let resp = conn.request("GET", &format!("/keys/{}", pct(&k.key)), &[], None);
            let issued_after = m.issued.load(Ordering::SeqCst);
            let delete_after = m.last_delete.load(Ordering::SeqCst);
            let (before_seq, before_was_put) = (before >> 1, before & 1 == 1);
            let name = show(&k.key);
            match resp.status {
                200 => match seq_of(&k.key, &resp.body) {
                    None => self.failures.report(format!(
                        "reader {r}: {name} has a foreign value {:?}",
                        resp.text()
                    )),
                    Some(x) if x < before_seq || x > issued_after => self.failures.report(format!(
                        "reader {r}: {name} read op {x}, but op {before_seq} was \
                             acknowledged before the read and only {issued_after} were \
                             issued by its end (a lost write or a resurrection)"
                    )),
                    Some(_) => {}
                },
                404 => {
                    if before_was_put && delete_after <= before_seq {
                        self.failures.report(format!(
                            "reader {r}: {name} missing, but PUT op {before_seq} was \
                             acknowledged before the read and no DELETE was issued since \
                             (lost write)"
                        ));
                    }
                }
                other => self.failures.report(format!(
                    "reader {r}: GET {name} answered {other} {:?}",
                    resp.text()
                )),
            }
            reads += 1;
            self.ops.fetch_add(1, Ordering::Relaxed);
        }
        reads
    }

    /// Waits until the threads have run `n` more operations (or
    /// [`PROGRESS_WITHIN`] passed, e.g. because they hit their caps).
    fn let_run(&self, n: u64) {
        let target = self.ops.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + PROGRESS_WITHIN;
        while self.ops.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The model's final state of every key.
    fn wants(&self) -> Vec<Want> {
        self.keys
            .iter()
            .map(|k| {
                let acked = k.model.acked.load(Ordering::SeqCst);
                Want {
                    key: k.key.clone(),
                    value: (acked & 1 == 1).then(|| value_for(&k.key, acked >> 1)),
                    ttl: k.ttl,
                }
            })
            .collect()
    }
}

/// Three servers holding [`BALLAST`] keys; writers, a deleter and readers
/// (of their keys and of keys written once before) run while a fourth
/// server is added (POST /nodes), one removed (DELETE
/// /nodes/1) and one re-weighted (PUT /nodes/0 to 40 vnodes), each waited
/// out (GET /rebalance active false). No reader sees a lost write or a
/// resurrected key, every write and delete answers exactly (200/201,
/// 204/404 as the key existed), every change moves keys, and at the end
/// every live key is on exactly one server, the one GET reports, with its
/// TTL kept; no deleted key is anywhere; every ballast key is on its owner
/// under the final ring, once; and the removed server is empty.
#[test]
fn live_changes_under_traffic_lose_no_write_and_resurrect_no_key() {
    let redis = start_redis(4);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let server = start_ringcache(&all[..3], &[]);
    // The library's ring with the servers' names predicts every owner.
    let ring = Ring::new();
    for s in &redis[..3] {
        ring.add_node(&s.addr(), 160).unwrap();
    }
    plant_ballast(&ring, &all[..3]);
    for i in (0..BALLAST).step_by(997) {
        let key = format!("ballast/{i}");
        let r = server.get(&format!("/keys/{}", pct(key.as_bytes())));
        assert_eq!(
            (r.status, r.routing().0),
            (200, ring.lookup(key.as_bytes()).unwrap().0),
            "{key} planted where ringcache does not look"
        );
    }

    let threads = WRITERS + DELETERS;
    let traffic = Traffic {
        server: &server,
        // One group of keys per writing thread, and one group no thread
        // writes after the first PUT: their final values and TTLs are the
        // relocations' work alone.
        keys: (0..(threads + 1) * KEYS_PER_THREAD)
            .map(|i| {
                let group = i / KEYS_PER_THREAD;
                let key = if group < threads {
                    format!("t{group}/key-{i}")
                } else {
                    format!("still/key-{i}")
                };
                LiveKey {
                    key: key.into_bytes(),
                    ttl: (i % 3 == 0).then_some(TTL),
                    model: KeyModel::default(),
                }
            })
            .collect(),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        failures: Failures(Mutex::new(Vec::new())),
    };
    // Every key exists before the traffic starts (op 1), so that deletes
    // delete something from the start.
    let mut conn = server.conn();
    for k in &traffic.keys {
        k.model.issued.store(1, Ordering::SeqCst);
        let r = conn.request("PUT", &put_path(k), &[], Some(&value_for(&k.key, 1)));
        assert_eq!(r.status, 201, "{}", r.text());
        k.model.acked.store(1 << 1 | 1, Ordering::SeqCst);
    }
    drop(conn);

    let started = Instant::now();
    // (change, total keys moved after it, operations from the request
    // until relocation was done)
    let mut log: Vec<(&str, u64, u64)> = vec![("start", 0, 0)];
    let (mutations, reads) = std::thread::scope(|s| {
        let traffic = &traffic;
        let mutators: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    if t < WRITERS {
                        traffic.mutate(t, 1, 5)
                    } else {
                        traffic.mutate(t, 3, 4)
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| s.spawn(move || traffic.read(r)))
            .collect();
        let stop = StopOnDrop(&traffic.stop);

        let mut change = |what: &'static str, method: &str, path: &str, json: &str, want: u16| {
            traffic.let_run(OPS_BETWEEN_CHANGES);
            let ops_before = traffic.ops.load(Ordering::Relaxed);
            let r = if json.is_empty() {
                server.request(method, path, &[], None)
            } else {
                server.send_json(method, path, json)
            };
            assert_eq!(r.status, want, "{what}: {method} {path}: {}", r.text());
            traffic.let_run(OPS_BETWEEN_CHANGES);
            let status = server.wait_rebalanced();
            log.push((
                what,
                number(&status, "total_moved"),
                traffic.ops.load(Ordering::Relaxed) - ops_before,
            ));
            r
        };
        let added = change(
            "add server 3",
            "POST",
            "/nodes",
            &format!(r#"{{"redis": "{}", "vnodes": 160}}"#, redis[3].addr()),
            201,
        )
        .json();
        assert_eq!(added["redis"], redis[3].addr().as_str(), "{added}");
        assert_eq!(index_of(&added), 3, "{added}");
        change("remove server 1", "DELETE", "/nodes/1", "", 202);
        change(
            "re-weight server 0",
            "PUT",
            "/nodes/0",
            r#"{"vnodes": 40}"#,
            202,
        );

        traffic.let_run(OPS_BETWEEN_CHANGES);
        drop(stop);
        (
            mutators.into_iter().map(|h| h.join().unwrap()).sum::<u64>(),
            readers.into_iter().map(|h| h.join().unwrap()).sum::<u64>(),
        )
    });
    eprintln!(
        "{mutations} writes and deletes, {reads} checked reads in {:?}; (change, total keys \
         moved after it, operations while it was applied): {log:?}",
        started.elapsed()
    );
    let failures = traffic.failures.0.lock().unwrap().clone();
    assert!(failures.is_empty(), "violations:\n{}", failures.join("\n"));
    for pair in log.windows(2) {
        assert!(pair[1].1 > pair[0].1, "{} moved no key: {log:?}", pair[1].0);
    }

    server.wait_rebalanced();
    let nodes = server.nodes();
    let listed: Vec<(u32, &Value, &Value)> = nodes
        .iter()
        .map(|n| (index_of(n), &n["redis"], &n["state"]))
        .collect();
    assert_eq!(
        listed,
        [
            (0, &Value::from(redis[0].addr()), &Value::from("serving")),
            (2, &Value::from(redis[2].addr()), &Value::from("serving")),
            (3, &Value::from(redis[3].addr()), &Value::from("serving")),
        ],
        "GET /nodes after the changes"
    );
    let want = traffic.wants();
    let live = want.iter().filter(|w| w.value.is_some()).count();
    assert!(
        live > 0 && live < want.len(),
        "{live} of {} keys live: the test tested nothing",
        want.len()
    );
    assert_placement(&server, &all, b"", &want);

    ring.add_node(&redis[3].addr(), 160).unwrap();
    ring.remove_node(NodeId(1)).unwrap();
    ring.set_weight(NodeId(0), 40).unwrap();
    let addrs: HashMap<u32, String> = [
        (0, redis[0].addr()),
        (2, redis[2].addr()),
        (3, redis[3].addr()),
    ]
    .into_iter()
    .collect();
    assert_ballast(&ring, &addrs, &all);
    assert_eq!(
        redis[1].client().dbsize(),
        0,
        "the removed server is not empty"
    );
    let mut server = server;
    server.assert_alive(&[]);
}

// ---------------------------------------------------------------------------
// The cluster file
// ---------------------------------------------------------------------------

/// A cluster file with three named Redis nodes and a `redis:` section
/// (prefix `cfg:`); the file is rewritten to replace one node with a fourth
/// server under a new name: the running cluster follows (GET /nodes), the
/// replaced server's keys move to their new owners, and every key ends on
/// exactly one server, its owner's, under the prefix, TTL kept; the
/// replaced server is left empty.
#[test]
fn replacing_a_server_in_the_cluster_file_relocates_its_keys() {
    let redis = start_redis(4);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let file = ConfigFile::new(
        "replace",
        "redis: { prefix: \"cfg:\", timeout: 2s, connections: 2 }\n",
    );
    let entry =
        |name: &str, s: &RedisServer| format!("  - {{ name: {name}, redis: \"{}\" }}\n", s.addr());
    let server = file.start(&format!(
        "{}{}{}",
        entry("cache-a", &redis[0]),
        entry("cache-b", &redis[1]),
        entry("cache-c", &redis[2])
    ));
    let (a, b, c, d) = (
        redis[0].addr(),
        redis[1].addr(),
        redis[2].addr(),
        redis[3].addr(),
    );
    expect_members(
        &server,
        &[
            ("cache-a", Some(&a)),
            ("cache-b", Some(&b)),
            ("cache-c", Some(&c)),
        ],
    );
    let want = numbered_keys(300);
    put_all(&server, &want);
    let before = assert_placement(&server, &all, b"cfg:", &want);
    assert!(
        before.values().any(|&i| i == 1),
        "no key on cache-b: the test tests nothing"
    );
    let moved_before = number(&rebalance(&server), "total_moved");

    file.write(
        &server.addr.to_string(),
        &format!(
            "{}{}{}",
            entry("cache-a", &redis[0]),
            entry("cache-d", &redis[3]),
            entry("cache-c", &redis[2])
        ),
    );
    expect_members(
        &server,
        &[
            ("cache-a", Some(&a)),
            ("cache-c", Some(&c)),
            ("cache-d", Some(&d)),
        ],
    );
    let after = assert_placement(&server, &all, b"cfg:", &want);
    assert!(
        after.values().all(|&i| i != 1),
        "a key still reports the replaced node"
    );
    let moved = number(&rebalance(&server), "total_moved") - moved_before;
    let owner_changed = changed(&before, &after);
    // The add and the remove may run as one relocation or two; with two, a
    // key can move twice.
    assert!(
        moved >= owner_changed as u64 && owner_changed > 0,
        "{moved} keys moved for {owner_changed} whose owner changed"
    );
    assert_eq!(
        redis[1].client().dbsize(),
        0,
        "the replaced server is not empty"
    );
}

/// What a node keeps its keys in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Embedded,
    Redis,
}

fn kind(backends: &HashMap<u32, Option<String>>, index: u32) -> Kind {
    match backends.get(&index) {
        Some(Some(_)) => Kind::Redis,
        Some(None) => Kind::Embedded,
        None => panic!("node {index} is not in GET /nodes {backends:?}"),
    }
}

/// One edit of the mixed cluster's file.
struct Step<'a> {
    what: &'static str,
    /// The file's node list.
    nodes: String,
    /// (name, Redis address) of the nodes it should leave serving.
    members: Vec<(&'a str, Option<&'a str>)>,
    /// Moves (from, to) it must make at least one key of.
    moves: &'static [(Kind, Kind)],
}

/// A cluster file mixing an embedded node (`- name: mem-0`) and two Redis
/// nodes: embedded nodes list no `redis` address; keys on the embedded node
/// are in no server. Removing a Redis node moves its keys to the embedded
/// node and the other server; adding an embedded node moves keys to it
/// from a server and from the other embedded node; removing the first
/// embedded node moves its keys to the server. Each change moves exactly
/// the keys whose owner changed, and ends with every key in one place, its
/// owner (the embedded nodes' key counts included), TTLs kept on the
/// servers.
#[test]
fn mixed_cluster_relocates_between_embedded_and_redis_nodes() {
    let redis = start_redis(2);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let (a, b) = (redis[0].addr(), redis[1].addr());
    let file = ConfigFile::new("mixed", "");
    let mem = |name: &str| format!("  - name: {name}\n");
    let red = |addr: &str| format!("  - {{ redis: \"{addr}\", vnodes: 160 }}\n");
    let server = file.start(&format!("{}{}{}", mem("mem-0"), red(&a), red(&b)));
    let listen = server.addr.to_string();
    expect_members(
        &server,
        &[
            ("mem-0", None),
            (a.as_str(), Some(&a)),
            (b.as_str(), Some(&b)),
        ],
    );
    let want = numbered_keys(300);
    put_all(&server, &want);

    let mut backends = node_backends(&server);
    let mut placed = assert_placement(&server, &all, b"", &want);
    let check_embedded_counts = |placed: &HashMap<Vec<u8>, u32>| {
        // The embedded nodes' key counts are exact: together with the
        // servers' DBSIZE they account for every key once.
        let on_embedded: u64 = server
            .nodes()
            .iter()
            .filter(|n| n["redis"].is_null())
            .map(|n| number(n, "keys"))
            .sum();
        let in_servers: u64 = redis.iter().map(|r| r.client().dbsize()).sum();
        assert_eq!(
            (on_embedded + in_servers) as usize,
            placed.len(),
            "{on_embedded} keys on embedded nodes + {in_servers} in servers"
        );
    };
    check_embedded_counts(&placed);
    assert!(
        placed
            .values()
            .any(|&i| kind(&backends, i) == Kind::Embedded)
            && placed.values().any(|&i| kind(&backends, i) == Kind::Redis),
        "keys on only one kind of node"
    );

    use Kind::{Embedded, Redis};
    let steps = [
        Step {
            what: "remove the Redis node b",
            nodes: format!("{}{}", mem("mem-0"), red(&a)),
            members: vec![("mem-0", None), (a.as_str(), Some(&a))],
            moves: &[(Redis, Embedded), (Redis, Redis)],
        },
        Step {
            what: "add the embedded node mem-1",
            nodes: format!("{}{}{}", mem("mem-0"), red(&a), mem("mem-1")),
            members: vec![("mem-0", None), (a.as_str(), Some(&a)), ("mem-1", None)],
            moves: &[(Redis, Embedded), (Embedded, Embedded)],
        },
        Step {
            what: "remove the embedded node mem-0",
            nodes: format!("{}{}", red(&a), mem("mem-1")),
            members: vec![(a.as_str(), Some(&a)), ("mem-1", None)],
            moves: &[(Embedded, Redis), (Embedded, Embedded)],
        },
    ];
    for step in steps {
        let what = step.what;
        file.write(&listen, &step.nodes);
        expect_members(&server, &step.members);
        let status = rebalance(&server);
        let next_backends = node_backends(&server);
        let next = assert_placement(&server, &all, b"", &want);
        check_embedded_counts(&next);
        let mut moves: HashMap<(Kind, Kind), usize> = HashMap::new();
        for (k, &from) in &placed {
            let to = next[k];
            if to != from {
                *moves
                    .entry((kind(&backends, from), kind(&next_backends, to)))
                    .or_default() += 1;
            }
        }
        eprintln!("{what}: keys moved (from, to): {moves:?}");
        for direction in step.moves {
            assert!(
                moves.get(direction).copied().unwrap_or(0) > 0,
                "{what}: no key moved {direction:?}: {moves:?}"
            );
        }
        assert_eq!(
            number(&status, "keys_moved"),
            changed(&placed, &next) as u64,
            "{what}: keys moved vs keys whose owner changed: {status}"
        );
        backends = next_backends;
        placed = next;
    }
    assert_eq!(
        redis[1].client().dbsize(),
        0,
        "the removed server is not empty"
    );
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// One GET made while a server failed.
struct Observed {
    key: usize,
    /// The request was sent after the fault was in place.
    after_fault: bool,
    elapsed: Duration,
    response: Response,
}

/// Reader threads GET `keys` (round robin, on keep-alive connections)
/// while `fault` is injected; returns every response once at least
/// `keys.len()` requests were made after the fault (or the cap on
/// operations or time was reached).
fn reads_through_a_fault(server: &Server, keys: &[Want], fault: impl FnOnce()) -> Vec<Observed> {
    const READERS: usize = 2;
    const MAX_READS: usize = 4_000;
    let stop = AtomicBool::new(false);
    let faulted = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let after = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..READERS)
            .map(|r| {
                let (stop, faulted, ops, after) = (&stop, &faulted, &ops, &after);
                s.spawn(move || {
                    let mut conn = server.conn();
                    let mut seen = Vec::new();
                    let mut i = r * keys.len() / READERS;
                    while !stop.load(Ordering::SeqCst) && seen.len() < MAX_READS {
                        let key = i % keys.len();
                        i += 1;
                        let after_fault = faulted.load(Ordering::SeqCst);
                        let path = format!("/keys/{}", pct(&keys[key].key));
                        let t = Instant::now();
                        let response = conn.request("GET", &path, &[], None);
                        seen.push(Observed {
                            key,
                            after_fault,
                            elapsed: t.elapsed(),
                            response,
                        });
                        ops.fetch_add(1, Ordering::SeqCst);
                        if after_fault {
                            after.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    seen
                })
            })
            .collect();
        let wait = |counter: &AtomicU64, n: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while counter.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let stopper = StopOnDrop(&stop);
        wait(&ops, keys.len() as u64);
        fault();
        faulted.store(true, Ordering::SeqCst);
        wait(&after, keys.len() as u64);
        drop(stopper);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Whether an error message names node `index` ("node 1", not "node 10")
/// and its server's address.
fn names_node(message: &str, index: u32, addr: &str) -> bool {
    let node = format!("node {index}");
    let names_index = message.match_indices(&node).any(|(at, _)| {
        !message[at + node.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    names_index && message.contains(addr)
}

/// Checks reads made through a fault of node `failed` (at `addr`): each
/// came back within `bound`; keys of other nodes always read their value;
/// the failed node's keys read their value before the fault and, after it,
/// fail with one of `statuses` and a JSON error naming the node and its
/// address, routed to it. Returns the number of failed reads.
fn check_reads_through_a_fault(
    seen: &[Observed],
    keys: &[Want],
    owners: &[u32],
    failed: u32,
    addr: &str,
    statuses: &[u16],
    bound: Duration,
) -> usize {
    let mut failures = Vec::new();
    let mut failed_reads = 0;
    let mut after_on_failed = 0;
    for o in seen {
        let w = &keys[o.key];
        let name = show(&w.key);
        let r = &o.response;
        if o.elapsed > bound {
            failures.push(format!(
                "GET {name} took {:?} (more than {bound:?}), answered {}",
                o.elapsed, r.status
            ));
        }
        let ok = r.status == 200 && Some(&r.body) == w.value.as_ref();
        if owners[o.key] != failed {
            if !ok {
                failures.push(format!(
                    "GET {name} (node {}) answered {} {:?}: a healthy node's key",
                    owners[o.key],
                    r.status,
                    r.text()
                ));
            }
            continue;
        }
        if o.after_fault {
            after_on_failed += 1;
        }
        if ok && !o.after_fault {
            continue;
        }
        failed_reads += 1;
        if !statuses.contains(&r.status) {
            failures.push(format!(
                "GET {name} on the failed node {failed} answered {} {:?}, expected one of \
                 {statuses:?}{}",
                r.status,
                r.text(),
                if o.after_fault {
                    ""
                } else {
                    " (sent as the fault began)"
                }
            ));
            continue;
        }
        let message = r.expect_error(r.status);
        if !names_node(&message, failed, addr) {
            failures.push(format!(
                "GET {name}: the error {message:?} does not name node {failed} and {addr}"
            ));
        }
        if r.routing().0 != failed {
            failures.push(format!(
                "GET {name}: X-CacheServer-Index {} on a failure of node {failed}",
                r.routing().0
            ));
        }
    }
    assert!(
        after_on_failed > 0,
        "no read of the failed node's keys after the fault: the test tested nothing"
    );
    assert!(
        failures.is_empty(),
        "{} violations (first 20):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    failed_reads
}

/// Each key's node, from PUT's routing headers.
fn owners_of(server: &Server, keys: &[Want]) -> Vec<u32> {
    keys.iter()
        .map(|w| server.get(&format!("/keys/{}", pct(&w.key))).routing().0)
        .collect()
}

/// Polls GET of `key` until it answers 200 or 404 (not a 5xx); the first
/// request after a server is back may still fail.
fn wait_served(server: &Server, key: &[u8]) -> Response {
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let r = server.get(&format!("/keys/{}", pct(key)));
        if r.status == 200 || r.status == 404 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "GET {} still answers {} {:?} {RECOVER_WITHIN:?} after its server came back",
            show(key),
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One of three servers is killed (SIGKILL) under reads: its keys fail
/// with 502 (or 504), quickly (within --redis-timeout + 2 s), naming it;
/// the other servers' keys read and write as before; ringcache stays up.
/// Restarted on the same port (empty: no persistence), the server's keys
/// are served again: absent (404), then PUT and GET work, stored in it.
#[test]
fn a_killed_server_fails_only_its_keys_and_serves_again_after_restart() {
    let mut redis = start_redis(3);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let timeout = Duration::from_secs(1);
    // The health observer would eject the node (tests/redis_health.rs);
    // here it is kept in the ring, to test the request path's own errors.
    let mut server = start_ringcache(&all, &["--redis-timeout", "1s", "--eject-after", "1000000"]);
    let keys = numbered_keys(60);
    put_all(&server, &keys);
    let owners = owners_of(&server, &keys);
    let victim = 1;
    let addr = redis[victim].addr();
    assert!(owners.contains(&(victim as u32)), "no key on node {victim}");

    let seen = reads_through_a_fault(&server, &keys, || redis[victim].kill());
    let failed = check_reads_through_a_fault(
        &seen,
        &keys,
        &owners,
        victim as u32,
        &addr,
        &[502, 504],
        timeout + FAIL_SLACK,
    );
    eprintln!("{} reads, {failed} failed on the killed node", seen.len());

    // Writes: the other servers take them, the dead one fails them.
    for (i, w) in keys.iter().enumerate() {
        let path = format!("/keys/{}", pct(&w.key));
        let t = Instant::now();
        let r = server.put(&path, b"while one server is dead");
        if owners[i] == victim as u32 {
            assert!(
                r.status == 502 || r.status == 504,
                "PUT {path} on the killed node: {} {:?}",
                r.status,
                r.text()
            );
            assert!(
                t.elapsed() <= timeout + FAIL_SLACK,
                "PUT {path} took {:?}",
                t.elapsed()
            );
        } else {
            assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
        }
    }
    server.assert_alive(&[]);

    redis[victim].restart();
    let first = keys
        .iter()
        .zip(&owners)
        .find(|(_, &o)| o == victim as u32)
        .unwrap()
        .0;
    wait_served(&server, &first.key);
    let mut client = redis[victim].client();
    for (i, w) in keys.iter().enumerate() {
        let path = format!("/keys/{}", pct(&w.key));
        if owners[i] != victim as u32 {
            let r = server.get(&path);
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "while one server is dead")
            );
            continue;
        }
        // The data died with the process.
        server.get(&path).expect_error(404);
        let r = server.put(&path, b"after the restart");
        assert_eq!(
            (r.status, r.routing().0),
            (201, victim as u32),
            "PUT {path}: {}",
            r.text()
        );
        let r = server.get(&path);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "after the restart"),
            "GET {path}"
        );
        assert_eq!(client.get(&w.key), Some(b"after the restart".to_vec()));
    }
    server.assert_alive(&[]);
}

/// One of three servers is paused (SIGSTOP) under reads with
/// --redis-timeout 300ms: its keys answer 504 naming it within a few
/// seconds, the other servers' keys read and write as before. Resumed
/// (SIGCONT), it serves again, every reply matched to its own request: each
/// key reads its own value, and new writes read back.
#[test]
fn a_paused_server_times_out_only_its_keys_and_serves_again_when_resumed() {
    let redis = start_redis(3);
    let all: Vec<&RedisServer> = redis.iter().collect();
    let timeout = Duration::from_millis(300);
    // As above: no ejection, so the requests meet the hung server.
    let mut server = start_ringcache(
        &all,
        &["--redis-timeout", "300ms", "--eject-after", "1000000"],
    );
    let keys = numbered_keys(60);
    put_all(&server, &keys);
    let owners = owners_of(&server, &keys);
    let victim = 2;
    let addr = redis[victim].addr();
    assert!(owners.contains(&(victim as u32)), "no key on node {victim}");

    let seen = reads_through_a_fault(&server, &keys, || redis[victim].pause());
    let failed = check_reads_through_a_fault(
        &seen,
        &keys,
        &owners,
        victim as u32,
        &addr,
        &[504],
        timeout + FAIL_SLACK,
    );
    eprintln!(
        "{} reads, {failed} timed out on the paused node",
        seen.len()
    );
    // The other servers still take writes (none is sent to the paused one:
    // a write that timed out may still be applied when it resumes).
    for (i, w) in keys.iter().enumerate() {
        if owners[i] != victim as u32 {
            let path = format!("/keys/{}", pct(&w.key));
            let r = server.put(&path, w.value.as_deref().unwrap());
            assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
        }
    }
    server.assert_alive(&[]);

    redis[victim].resume();
    let first = keys
        .iter()
        .zip(&owners)
        .find(|(_, &o)| o == victim as u32)
        .unwrap()
        .0;
    wait_served(&server, &first.key);
    // Twice over every key, so that every pooled connection is used: a
    // late reply to a timed-out command must never answer a later one.
    for _ in 0..2 {
        for w in &keys {
            let path = format!("/keys/{}", pct(&w.key));
            let r = server.get(&path);
            assert_eq!(
                (r.status, r.text()),
                (200, show(w.value.as_deref().unwrap())),
                "GET {path} after SIGCONT (another key's value: a late reply \
                 answered a later request)"
            );
        }
    }
    let mut client = redis[victim].client();
    for (i, w) in keys.iter().enumerate() {
        let path = format!("/keys/{}", pct(&w.key));
        let value = [&w.key[..], b" again"].concat();
        let r = server.put(&path, &value);
        assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
        assert_eq!(server.get(&path).body, value, "GET {path}");
        if owners[i] == victim as u32 {
            assert_eq!(client.get(&w.key), Some(value));
        }
    }
    server.assert_alive(&[]);
}

/// `--help` documents the Redis flags; `--redis` with `--nodes` (two
/// different clusters), a bad `--redis-timeout` and a `--redis` without a
/// value each exit non-zero with one line on stderr naming the problem.
#[test]
fn cli_redis_flags_documented_and_checked() {
    let (code, stdout, _) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--redis ",
        "--redis-prefix",
        "--redis-timeout",
        "--redis-connections",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not mention {flag:?}:\n{stdout}"
        );
    }
    // No server is needed: the arguments are refused before any connection.
    for (args, needle) in [
        (&["--redis", "127.0.0.1:1", "--nodes", "3"][..], "--nodes"),
        (
            &["--redis", "127.0.0.1:1", "--redis-timeout", "soon"],
            "soon",
        ),
        (&["--redis"], "--redis"),
    ] {
        let (code, stdout, stderr) = run_cli(args);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{args:?} exited with {code:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "{args:?}: stdout {stdout:?}");
    }
}

/// The ring the library builds for the servers' names agrees with the
/// binary on a node's index being its position in the flags: a guard
/// against reading `NodeId` as anything but that position.
#[test]
fn node_index_is_the_flag_position() {
    let redis = start_redis(2);
    let server = start_ringcache(&[&redis[1], &redis[0]], &[]);
    let backends = node_backends(&server);
    assert_eq!(backends[&0], Some(redis[1].addr()));
    assert_eq!(backends[&1], Some(redis[0].addr()));
    let ring = Ring::new();
    ring.add_node(&redis[1].addr(), 160).unwrap();
    ring.add_node(&redis[0].addr(), 160).unwrap();
    for i in 0..40 {
        let key = format!("key-{i}");
        let r = server.put(&format!("/keys/{key}"), b"v");
        assert_eq!(r.status, 201);
        assert_eq!(Some(NodeId(r.routing().0)), ring.lookup(key.as_bytes()));
    }
}

/// The fault tests' premises, checked on the harness alone: a paused
/// server accepts a connection but answers nothing until resumed; a killed
/// one refuses connections; restarted on the same port it answers again,
/// empty.
#[test]
fn harness_pauses_resumes_kills_and_restarts_a_server() {
    use std::io::{Read, Write};
    let mut redis = RedisServer::start();
    redis.client().set(b"k", b"v");
    let port = redis.port;
    let ping = |wait: Duration| -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(wait))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    };
    assert_eq!(ping(Duration::from_secs(10)).unwrap(), b"+PONG\r\n");
    redis.pause();
    let e = ping(Duration::from_millis(300)).expect_err("a paused server answered");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    redis.resume();
    assert_eq!(ping(Duration::from_secs(10)).unwrap(), b"+PONG\r\n");
    assert_eq!(redis.client().get(b"k"), Some(b"v".to_vec()));
    redis.kill();
    let e = ping(Duration::from_secs(10)).expect_err("a killed server answered");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    redis.restart();
    assert_eq!(ping(Duration::from_secs(10)).unwrap(), b"+PONG\r\n");
    assert_eq!(redis.client().get(b"k"), None, "nothing is persisted");
    assert_eq!(redis.client().dbsize(), 0);
}
