//! Interop: ringcache's ketama placement agrees key for key with a real
//! twemproxy (`nutcracker` 0.5.0, `hash: md5`, `distribution: ketama`)
//! over real memcached servers.
//!
//! # What it proves, and how
//!
//! Three memcached servers listen on 127.0.0.1:11211, :11212 and :11213.
//! One nutcracker serves two pools over those same three backends:
//!
//! * `unnamed`: `127.0.0.1:11211:1`, `127.0.0.1:11212:2`,
//!   `127.0.0.1:11213:3`: unequal weights and no names.
//! * `named`: `127.0.0.1:11211:100 cache-a`, `127.0.0.1:11212:100 cache-b`,
//!   `127.0.0.1:11213:250 cache-c`: explicit names, other weights.
//!
//! A few thousand keys per pool (pool-specific prefixes, lengths from a few
//! bytes up to memcached's 250-byte limit, printable ASCII and multi-byte
//! UTF-8) are written through each pool with values naming their key. The
//! test then asks every memcached directly for every key, asserts each key
//! lives on exactly one server with the right value, and asserts that a
//! `Ring::with_placement(Placement::Ketama, ..)` built from the same server
//! list predicts that server for every key. The observation is twemproxy's
//! own; nothing about its placement is assumed.
//!
//! The name a server is hashed under comes from twemproxy's rule, which
//! [`twemproxy_name`] implements and which both the YAML and the prediction
//! are derived from: the configured name if there is one; otherwise
//! `host:port`, except that for port 11211 it is just `host` (libmemcached
//! compatibility). twemproxy's stats port, which reports servers by that
//! name, is checked to confirm it. Nodes join the ring in the order of the
//! `servers:` list with their configured weights, since ketama's point
//! counts depend on every weight and ties go to the earlier server.
//!
//! Negative controls show the test can fail: predictions with a wrong name
//! (always `host:port`, keeping `:11211`; `host:port` instead of the
//! configured names) or with the weights ignored must disagree with the
//! observed placement for more than 5% of keys. Keys must also reach all
//! three servers of each pool. The naive [`ReferenceRing`] (the continuum
//! rebuilt from the hash-level functions alone) cross-checks the ring.
//!
//! # Port 11211 and the network namespace
//!
//! The naming rule is only exercised by a backend on port 11211, which the
//! host may already use. So the test re-executes its own binary inside a
//! fresh network namespace (`unshare -n`, with a PID namespace as well where
//! possible so that nothing outlives the run), brings up `lo` there, and
//! runs the real check on fixed ports (memcached 11211-11213, pools
//! 22121/22122, stats 22222). The environment variable
//! `RINGCACHE_INTEROP_IN_NETNS` tells the re-executed test it is inside; the
//! outer test forwards its output and asserts that it passed and really ran.
//! Where no namespace can be made, the check runs on the host's loopback:
//! on 11211 if it is free (other ports free ones), and fails with a clear
//! message if 11211 is taken. Everything listens on 127.0.0.1 only.
//!
//! # Installing the programs
//!
//! Nothing is skipped silently. When `nutcracker` or `memcached` is missing
//! and the test runs as root, it installs them once per process
//! (`apt-get update`, `apt-get install -y nutcracker memcached`; Debian's
//! policy-rc.d in the image keeps the packages from starting their own
//! services). Otherwise it fails naming the program and the command.
//!
//! Every server is a child process killed on drop, even on panic; the
//! config and logs live in a uniquely named directory under the system temp
//! directory, removed at the end.

mod interop;
mod rng;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interop::{loopback, Memcache, Proc, TempDir};
use ringcache::hash::{ketama_key_hash, Placement};
use ringcache::ring::reference::ReferenceRing;
use ringcache::{NodeId, Ring, RingError};
use rng::SplitMix;

/// This test's name, which the re-executed binary is asked to run.
const TEST_NAME: &str = "ringcache_ketama_agrees_with_twemproxy";

/// Set (to `1`) in the environment of the re-executed test that runs inside
/// the network namespace.
const IN_NETNS_ENV: &str = "RINGCACHE_INTEROP_IN_NETNS";

/// Passes the path of `ip` to the namespace's shell.
const IP_ENV: &str = "RINGCACHE_INTEROP_IP";

/// Printed by the inner test as its last line; the outer test requires it,
/// so a filter that matched no test cannot pass for a success.
const DONE_MARKER: &str = "twemproxy interop: all checks passed";

/// How long the re-executed test may take before it is killed.
const INNER_TIMEOUT: Duration = Duration::from_secs(180);

/// Keys written through each pool.
const KEYS_PER_POOL: usize = 3000;

/// memcached's (and twemproxy's) longest key, in bytes.
const MAX_KEY_BYTES: usize = 250;

/// The host every server listens on and every backend is configured with.
const HOST: &str = "127.0.0.1";

/// The port for which twemproxy leaves the port out of a server's name.
const KETAMA_DEFAULT_PORT: u16 = 11211;

/// ringcache's per-node weight limit for the rings built here.
const MAX_WEIGHT: u32 = 10_000;

/// Smallest fraction of keys a wrong prediction must get wrong.
const MIN_CONTROL_DISAGREEMENT: f64 = 0.05;

/// Multi-byte UTF-8 pieces mixed into keys (memcached keys are bytes; only
/// spaces and control characters are excluded).
const UTF8_PIECES: [&str; 6] = ["ключ", "キー", "🔑", "clé", "schlüssel", "€"];

/// The ports one run uses.
#[derive(Clone, Copy, Debug)]
struct Ports {
    /// The three memcached servers, in `servers:` order.
    memcached: [u16; 3],
    /// The `unnamed` and `named` pools' listen ports.
    pools: [u16; 2],
    /// nutcracker's stats port.
    stats: u16,
}

impl Ports {
    /// The fixed ports used inside a fresh network namespace.
    const NETNS: Ports = Ports {
        memcached: [11211, 11212, 11213],
        pools: [22121, 22122],
        stats: 22222,
    };

    /// Ports on the host's loopback: 11211 (which must be free) and free
    /// ports for the rest.
    fn host() -> Ports {
        Ports {
            memcached: [
                KETAMA_DEFAULT_PORT,
                interop::free_port(),
                interop::free_port(),
            ],
            pools: [interop::free_port(), interop::free_port()],
            stats: interop::free_port(),
        }
    }
}

/// One entry of a pool's `servers:` list.
#[derive(Clone, Debug)]
struct Backend {
    /// Its memcached's port on [`HOST`].
    port: u16,
    /// Its ketama weight.
    weight: u32,
    /// Its configured name, if any.
    name: Option<&'static str>,
}

impl Backend {
    /// The `servers:` line: `host:port:weight [name]`.
    fn yaml_entry(&self) -> String {
        match self.name {
            Some(name) => format!("{HOST}:{}:{} {name}", self.port, self.weight),
            None => format!("{HOST}:{}:{}", self.port, self.weight),
        }
    }

    /// Its address, `host:port`.
    fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }
}

/// twemproxy's rule for the name a server is hashed under (conf.c,
/// `conf_add_server`): the configured name if given; otherwise `host:port`,
/// except that the port is left out when it is 11211, as libmemcached does.
fn twemproxy_name(host: &str, port: u16, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_string(),
        None if port == KETAMA_DEFAULT_PORT => host.to_string(),
        None => format!("{host}:{port}"),
    }
}

/// How a prediction names servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Naming {
    /// twemproxy's rule ([`twemproxy_name`]).
    Twemproxy,
    /// Always `host:port` (wrong for port 11211 and for named servers).
    HostPort,
}

/// How a prediction weighs servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Weights {
    /// The configured weights.
    Configured,
    /// Every server weight 1 (wrong unless the configured ones are equal).
    Equal,
}

/// The name and weight a prediction gives `backend`.
fn member(backend: &Backend, naming: Naming, weights: Weights) -> (String, u32) {
    let name = match naming {
        Naming::Twemproxy => twemproxy_name(HOST, backend.port, backend.name),
        Naming::HostPort => backend.addr(),
    };
    let weight = match weights {
        Weights::Configured => backend.weight,
        Weights::Equal => 1,
    };
    (name, weight)
}

/// One twemproxy pool under test.
struct Pool {
    /// Its name in the YAML.
    name: &'static str,
    /// Where it listens, on [`HOST`].
    port: u16,
    /// Prefix of every key written through it, unique among pools.
    key_prefix: &'static str,
    /// Seed of its key generator.
    seed: u64,
    /// Its `servers:` list, in order.
    backends: Vec<Backend>,
}

impl Pool {
    /// The pool's YAML section.
    fn yaml(&self) -> String {
        let mut yaml = format!(
            "{}:\n  listen: {HOST}:{}\n  hash: md5\n  distribution: ketama\n  \
             auto_eject_hosts: false\n  preconnect: true\n  timeout: 5000\n  servers:\n",
            self.name, self.port
        );
        for backend in &self.backends {
            writeln!(yaml, "   - {}", backend.yaml_entry()).unwrap();
        }
        yaml
    }

    /// The ring a prediction uses: one node per backend, added in
    /// `servers:` order. Returns it with the node ids in that order.
    fn ring(&self, naming: Naming, weights: Weights) -> (Ring, Vec<NodeId>) {
        let ring = Ring::with_placement(Placement::Ketama, MAX_WEIGHT);
        let ids = self.add_backends(naming, weights, |name, weight| ring.add_node(name, weight));
        (ring, ids)
    }

    /// The naive [`ReferenceRing`] of the pool as twemproxy configures it
    /// (its names, the configured weights), backends added in `servers:`
    /// order: the continuum as twemproxy's `ketama_update` builds it (points
    /// per server from the weights, 4 points per MD5 of `"name-k"`, ties in
    /// server order), recomputed from the hash-level functions alone.
    /// Returns it with the node ids in `servers:` order.
    fn reference(&self) -> (ReferenceRing, Vec<NodeId>) {
        let mut reference = ReferenceRing::with_placement(Placement::Ketama, MAX_WEIGHT);
        let ids = self.add_backends(Naming::Twemproxy, Weights::Configured, |name, weight| {
            reference.add_node(name, weight)
        });
        (reference, ids)
    }

    /// Adds every backend, in `servers:` order, named and weighted as a
    /// prediction says, through `add`; returns the ids in that order.
    fn add_backends(
        &self,
        naming: Naming,
        weights: Weights,
        mut add: impl FnMut(&str, u32) -> Result<NodeId, RingError>,
    ) -> Vec<NodeId> {
        self.backends
            .iter()
            .map(|b| {
                let (name, weight) = member(b, naming, weights);
                add(&name, weight)
                    .unwrap_or_else(|e| panic!("adding {name:?} (weight {weight}): {e}"))
            })
            .collect()
    }

    /// The backend index ringcache predicts for each key.
    fn predict(&self, keys: &[Vec<u8>], naming: Naming, weights: Weights) -> Vec<usize> {
        let (ring, ids) = self.ring(naming, weights);
        backend_indexes(keys, &ids, |key| ring.lookup(key))
    }

    /// The same prediction by the [`ReferenceRing`], as twemproxy's
    /// `ketama_dispatch` computes it (the first point `>=` the key's
    /// [`ketama_key_hash`], wrapping): a cross-check of the ring.
    fn predict_by_reference(&self, keys: &[Vec<u8>]) -> Vec<usize> {
        let (reference, ids) = self.reference();
        backend_indexes(keys, &ids, |key| reference.lookup(key))
    }

    /// How many points each backend has on the continuum, in `servers:`
    /// order, as the [`ReferenceRing`] counts them.
    fn points_per_backend(&self) -> Vec<u32> {
        let (reference, ids) = self.reference();
        let counts: BTreeMap<NodeId, u32> = reference.point_counts().collect();
        ids.iter().map(|id| counts[id]).collect()
    }
}

/// The backend index of each key's owner by `lookup`, where `ids` are the
/// backends' node ids in `servers:` order.
fn backend_indexes(
    keys: &[Vec<u8>],
    ids: &[NodeId],
    lookup: impl Fn(&[u8]) -> Option<NodeId>,
) -> Vec<usize> {
    keys.iter()
        .map(|key| {
            let owner = lookup(key).expect("a ring with nodes has an owner");
            ids.iter()
                .position(|&id| id == owner)
                .expect("the owner is one of the nodes added")
        })
        .collect()
}

/// The two pools under test, over the three memcached ports.
fn pools(ports: &Ports) -> [Pool; 2] {
    let [a, b, c] = ports.memcached;
    let backend = |port, weight, name| Backend { port, weight, name };
    [
        Pool {
            name: "unnamed",
            port: ports.pools[0],
            key_prefix: "u:",
            seed: 0x7477_656d_0001,
            backends: vec![
                backend(a, 1, None),
                backend(b, 2, None),
                backend(c, 3, None),
            ],
        },
        Pool {
            name: "named",
            port: ports.pools[1],
            key_prefix: "n:",
            seed: 0x7477_656d_0002,
            backends: vec![
                backend(a, 100, Some("cache-a")),
                backend(b, 100, Some("cache-b")),
                backend(c, 250, Some("cache-c")),
            ],
        },
    ]
}

/// `count` distinct, valid memcached keys starting with `prefix`: mostly
/// short, some of any length up to [`MAX_KEY_BYTES`], some exactly that
/// long; printable ASCII (no space) with multi-byte UTF-8 pieces mixed in.
fn make_keys(prefix: &str, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix(seed);
    (0..count)
        .map(|i| {
            // "prefix + index + ':'" makes every key unique.
            let mut key = format!("{prefix}{i}:").into_bytes();
            let room = (MAX_KEY_BYTES - key.len()) as u64;
            let extra = match i % 50 {
                0 => room,
                1..=9 => rng.below(room + 1),
                _ => rng.below(24),
            };
            let target = key.len() + usize::try_from(extra).unwrap();
            while key.len() < target {
                let piece = UTF8_PIECES[usize::try_from(rng.below(6)).unwrap()];
                if rng.below(8) == 0 && key.len() + piece.len() <= target {
                    key.extend_from_slice(piece.as_bytes());
                } else {
                    // '!' (0x21) ..= '~' (0x7e): printable, no space.
                    key.push(0x21 + u8::try_from(rng.below(94)).unwrap());
                }
            }
            key
        })
        .collect()
}

/// The value stored under `key`: it names the key, so a value found under
/// another key would show.
fn value_for(key: &[u8]) -> Vec<u8> {
    [b"value-of:".as_slice(), key].concat()
}

/// A key for error messages.
fn show(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// Whether `key` is a valid memcached text-protocol key.
fn is_valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// The whole check on `ports`; servers it starts are killed when it
/// returns or panics.
fn run_interop(ports: Ports) {
    let started = Instant::now();
    let programs = interop::programs(false);
    let pools = pools(&ports);
    let dir = TempDir::new("ringcache-twemproxy");
    println!("scratch directory {}", dir.path().display());

    let mut memcacheds = start_memcacheds(&programs.memcached, &ports, dir.path());
    let mut nutcracker = start_nutcracker(&programs.nutcracker, &pools, &ports, dir.path());

    check_stats_names(&pools, &ports, &mut nutcracker);

    for pool in &pools {
        check_pool(pool, &mut nutcracker);
    }
    for m in &mut memcacheds {
        m.assert_running();
    }
    nutcracker.assert_running();
    drop(nutcracker);
    drop(memcacheds);
    drop(dir);
    println!("took {:.1?}", started.elapsed());
    println!("{DONE_MARKER}");
}

/// Starts memcached on each of `ports.memcached` and waits until each
/// accepts connections.
fn start_memcacheds(memcached: &Path, ports: &Ports, dir: &Path) -> Vec<Proc> {
    let root = interop::is_root();
    ports
        .memcached
        .iter()
        .map(|&port| {
            let mut cmd = Command::new(memcached);
            cmd.args(["-l", HOST, "-U", "0", "-m", "64", "-p"])
                .arg(port.to_string());
            if root {
                // memcached refuses to run as root unless told whom to be.
                cmd.args(["-u", "root"]);
            }
            let mut proc = Proc::spawn(
                format!("memcached {HOST}:{port}"),
                &mut cmd,
                &dir.join(format!("memcached-{port}.log")),
            );
            proc.wait_for_port(loopback(port));
            proc
        })
        .collect()
}

/// Writes the YAML for `pools`, has nutcracker check it (`-t`), starts it,
/// and waits until a `set`/`get` round-trips through every pool.
fn start_nutcracker(nutcracker: &Path, pools: &[Pool], ports: &Ports, dir: &Path) -> Proc {
    let yaml: String = pools.iter().map(Pool::yaml).collect();
    println!("nutcracker config:\n{yaml}");
    let conf = dir.join("nutcracker.yml");
    std::fs::write(&conf, &yaml).expect("writing nutcracker.yml");

    let checked = interop::run_bounded(
        Command::new(nutcracker).arg("-t").arg("-c").arg(&conf),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        checked.status.success(),
        "nutcracker -t rejects the config ({}):\n{}{}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let log = dir.join("nutcracker.log");
    let mut cmd = Command::new(nutcracker);
    cmd.arg("-c")
        .arg(&conf)
        .args(["-s", &ports.stats.to_string(), "-a", HOST, "-v", "5", "-o"])
        .arg(&log);
    let mut proc = Proc::spawn("nutcracker", &mut cmd, &dir.join("nutcracker.out"));
    for pool in pools {
        proc.wait_for_port(loopback(pool.port));
        wait_for_round_trip(pool, &mut proc, &log);
    }
    proc.wait_for_port(loopback(ports.stats));
    proc
}

/// Waits until a probe key set through `pool` reads back through it.
fn wait_for_round_trip(pool: &Pool, proc: &mut Proc, log: &Path) {
    let key = format!("probe:{}", pool.name).into_bytes();
    let value = b"probe".to_vec();
    let deadline = Instant::now() + interop::START_TIMEOUT;
    for attempt in 1.. {
        proc.assert_running();
        let round_trip = Memcache::connect(loopback(pool.port)).and_then(|mut conn| {
            conn.set_many(&[(&key, &value)])?;
            conn.get_many(&[&key])
        });
        let last_error = match round_trip {
            Ok(got) if got == [Some(value.clone())] => {
                if attempt > 1 {
                    println!("pool {} answered after {attempt} attempts", pool.name);
                }
                return;
            }
            Ok(got) => format!("probe read back {got:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "no set/get round trip through pool {} within {:?} ({attempt} attempts); \
             last error: {last_error}; nutcracker log:\n{}",
            pool.name,
            interop::START_TIMEOUT,
            String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// twemproxy's stats report each server under the name it hashes; assert
/// they are exactly the names [`twemproxy_name`] gives.
fn check_stats_names(pools: &[Pool], ports: &Ports, nutcracker: &mut Proc) {
    nutcracker.assert_running();
    let stats = interop::twemproxy_stats_servers(loopback(ports.stats))
        .unwrap_or_else(|e| panic!("reading nutcracker's stats: {e}"));
    for pool in pools {
        let mut reported = stats
            .get(pool.name)
            .unwrap_or_else(|| panic!("stats have no pool {:?}: {stats:?}", pool.name))
            .clone();
        reported.sort();
        let mut expected: Vec<String> = pool
            .backends
            .iter()
            .map(|b| twemproxy_name(HOST, b.port, b.name))
            .collect();
        expected.sort();
        assert_eq!(
            reported, expected,
            "pool {}: nutcracker's stats name the servers differently than twemproxy_name",
            pool.name
        );
        println!("pool {}: stats name the servers {reported:?}", pool.name);
    }
}

/// Writes the pool's keys through twemproxy, finds each on the memcached
/// servers directly, and compares the placement with ringcache's and with
/// the negative controls'.
fn check_pool(pool: &Pool, nutcracker: &mut Proc) {
    let keys = make_keys(pool.key_prefix, KEYS_PER_POOL, pool.seed);
    for key in &keys {
        assert!(is_valid_key(key), "generated an invalid key {}", show(key));
    }
    let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k)).collect();

    // Write every key through twemproxy.
    let items: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    Memcache::connect(loopback(pool.port))
        .and_then(|mut conn| conn.set_many(&items))
        .unwrap_or_else(|e| {
            panic!(
                "writing through pool {}: {e}; nutcracker:\n{}",
                pool.name,
                nutcracker.log_text()
            )
        });

    // Read every key from every server directly.
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let found: Vec<Vec<Option<Vec<u8>>>> = pool
        .backends
        .iter()
        .map(|b| {
            Memcache::connect(loopback(b.port))
                .and_then(|mut conn| conn.get_many(&key_refs))
                .unwrap_or_else(|e| panic!("reading from memcached {}: {e}", b.addr()))
        })
        .collect();
    let observed = observed_owners(pool, &keys, &values, &found);

    // Every key sits where ringcache says.
    let predicted = pool.predict(&keys, Naming::Twemproxy, Weights::Configured);
    let by_reference = pool.predict_by_reference(&keys);
    assert_eq!(
        disagreements(&predicted, &by_reference),
        0,
        "pool {}: the ring and the reference ring disagree",
        pool.name
    );
    let wrong: Vec<String> = (0..keys.len())
        .filter(|&i| predicted[i] != observed[i])
        .map(|i| {
            format!(
                "{} (hash {}): twemproxy put it on {}, ringcache predicts {}",
                show(&keys[i]),
                ketama_key_hash(&keys[i]),
                pool.backends[observed[i]].addr(),
                pool.backends[predicted[i]].addr()
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "pool {}: {} of {} keys are not where ringcache predicts, e.g.:\n{}",
        pool.name,
        wrong.len(),
        keys.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );

    report(pool, &observed, &predicted);

    // Every server holds some of the keys.
    for (index, backend) in pool.backends.iter().enumerate() {
        let count = observed.iter().filter(|&&o| o == index).count();
        assert!(
            count * 100 >= keys.len(),
            "pool {}: {} holds only {count} of {} keys",
            pool.name,
            backend.addr(),
            keys.len()
        );
    }

    // Negative controls: wrong names or weights must visibly disagree.
    for (naming, weights, what) in [
        (
            Naming::HostPort,
            Weights::Configured,
            "always host:port as the name",
        ),
        (
            Naming::Twemproxy,
            Weights::Equal,
            "right names, weights ignored",
        ),
    ] {
        let control = pool.predict(&keys, naming, weights);
        let rate = disagreements(&control, &observed) as f64 / keys.len() as f64;
        println!(
            "pool {}: negative control ({what}) disagrees on {:.1}% of keys",
            pool.name,
            rate * 100.0
        );
        assert!(
            rate > MIN_CONTROL_DISAGREEMENT,
            "pool {}: the negative control ({what}) disagrees on only {:.1}% of keys; \
             the check could not tell it from the right prediction",
            pool.name,
            rate * 100.0
        );
    }
}

/// Where each key was found: asserts it is on exactly one server, with the
/// value written for it, and returns that server's index per key.
fn observed_owners(
    pool: &Pool,
    keys: &[Vec<u8>],
    values: &[Vec<u8>],
    found: &[Vec<Option<Vec<u8>>>],
) -> Vec<usize> {
    let mut problems = Vec::new();
    let mut owners = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let holders: Vec<usize> = (0..found.len())
            .filter(|&s| found[s][i].is_some())
            .collect();
        match holders.as_slice() {
            [only] => {
                if found[*only][i].as_deref() != Some(values[i].as_slice()) {
                    problems.push(format!(
                        "{} on {} has value {:?}",
                        show(key),
                        pool.backends[*only].addr(),
                        found[*only][i].as_deref().map(String::from_utf8_lossy)
                    ));
                }
                owners.push(*only);
            }
            _ => {
                let on: Vec<String> = holders.iter().map(|&s| pool.backends[s].addr()).collect();
                problems.push(format!("{} found on {on:?}", show(key)));
                owners.push(usize::MAX);
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pool {}: {} of {} keys are not on exactly one server with their value, e.g.:\n{}",
        pool.name,
        problems.len(),
        keys.len(),
        problems[..problems.len().min(10)].join("\n")
    );
    owners
}

/// How many positions of `a` and `b` differ.
fn disagreements(a: &[usize], b: &[usize]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Prints the pool's per-server table: weight, ketama name, points, keys
/// observed and predicted.
fn report(pool: &Pool, observed: &[usize], predicted: &[usize]) {
    println!(
        "pool {} ({HOST}:{}): {} keys, every one where ringcache predicts",
        pool.name,
        pool.port,
        observed.len()
    );
    println!(
        "  {:<16} {:>6}  {:<16} {:>6} {:>9} {:>10}",
        "server", "weight", "ketama name", "points", "observed", "predicted"
    );
    let points = pool.points_per_backend();
    for (index, backend) in pool.backends.iter().enumerate() {
        let name = twemproxy_name(HOST, backend.port, backend.name);
        println!(
            "  {:<16} {:>6}  {:<16} {:>6} {:>9} {:>10}",
            backend.addr(),
            backend.weight,
            name,
            points[index],
            observed.iter().filter(|&&o| o == index).count(),
            predicted.iter().filter(|&&p| p == index).count()
        );
    }
}

/// Runs the check inside a fresh network namespace (re-executing this test),
/// or on the host's loopback when no namespace can be made.
#[test]
fn ringcache_ketama_agrees_with_twemproxy() {
    if std::env::var_os(IN_NETNS_ENV).is_some() {
        run_interop(Ports::NETNS);
        return;
    }
    // Install (if needed) out here: the namespace has no network.
    interop::programs(true);

    let netns = interop::find_program("ip")
        .ok_or_else(|| "no ip program to bring up lo".to_string())
        .and_then(|ip| interop::netns_command(&ip).map(|unshare| (ip, unshare)));
    match netns {
        Ok((ip, unshare)) => run_in_netns(&ip, unshare),
        Err(why) => {
            assert!(
                interop::port_is_free(KETAMA_DEFAULT_PORT),
                "port {KETAMA_DEFAULT_PORT} is in use on this host and no network namespace \
                 can be made ({why}), so twemproxy's port-11211 naming rule cannot be \
                 exercised; free the port or run as root with unshare and ip available"
            );
            println!("no network namespace ({why}); running on the host's loopback");
            run_interop(Ports::host());
        }
    }
}

/// The path to re-execute this test binary by: `/proc/PID/exe` where it
/// exists, since it still opens the running binary after a rebuild has
/// replaced (deleted) the file; otherwise [`std::env::current_exe`].
fn own_executable() -> PathBuf {
    let proc_exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().expect("current_exe")
    }
}

/// Re-executes this test under `unshare` (from [`interop::netns_command`])
/// with `lo` up, forwards its output, and asserts it passed and really ran
/// the check.
fn run_in_netns(ip: &Path, mut unshare: Command) {
    let exe = own_executable();
    let script = format!("\"${IP_ENV}\" link set lo up && exec \"$0\" \"$@\"");
    unshare
        .args(["sh", "-c", &script])
        .arg(&exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS_ENV, "1")
        .env(IP_ENV, ip);
    println!("running the check in a network namespace: {unshare:?}");
    let out = interop::run_bounded(&mut unshare, INNER_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "the check in the network namespace failed ({}); its output is above",
        out.status
    );
    assert!(
        stdout.contains(DONE_MARKER),
        "the re-executed test exited successfully but never finished the check \
         (did the filter {TEST_NAME:?} match no test?)"
    );
}
