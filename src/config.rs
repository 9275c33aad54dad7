//! The YAML cluster file: parsing, validation, and applying it to a running
//! cluster on reload.
//!
//! This module owns what the file means. It changes nothing itself except
//! through the [`Cluster`]'s membership API, so a reload gets the same
//! relocation guarantees as the admin API.
//!
//! ```yaml
//! listen: 127.0.0.1:8000
//! default_vnodes: 160
//! reload_interval: 5s          # how often the file is checked; SIGHUP reloads at once
//! limits: { max_key_bytes: 250, max_value_bytes: 1MiB, node_max_bytes: 256MiB,
//!           max_header_bytes: 16KiB, max_connections: 10000 }
//! timeouts: { head: 10s, body: 30s, idle: 60s, write: 30s, shutdown: 10s }
//! admin_token_file: /path/to/token   # optional
//! nodes:
//!   - name: cache-0
//!   - name: cache-1
//!     vnodes: 320
//! ```
//!
//! # Ketama placement
//!
//! `hash: ketama` places keys as libmemcached's weighted ketama does (and
//! twemproxy with `distribution: ketama`, `hash: md5`), so ringcache agrees
//! with an existing ketama pool on every key. Nodes then have a `weight`
//! (default 1) instead of `vnodes`, and must be named as the pool names its
//! servers: twemproxy's configured name when its server line has one,
//! otherwise `host:port`, or just `host` when the port is 11211. List them
//! in the pool's server order (it breaks ties between equal points).
//!
//! ```yaml
//! hash: ketama
//! nodes:
//!   - { name: 10.0.1.1, weight: 600 }      # 10.0.1.1:11211:600
//!   - { name: "10.0.1.2:11212", weight: 300 }
//! ```
//!
//! # File and admin API
//!
//! **The file is the source of truth each time it changes.** A reload whose
//! file content differs from the last applied one makes the running node
//! list equal the file's (by name: add, remove, change vnodes). Between such
//! changes, admin API edits stand: the periodic check re-reads the file but
//! applies nothing while its content is unchanged. So an operator who edits
//! membership through the API should write the change into the file too, or
//! the next edit of the file undoes it.
//!
//! # What can change live
//!
//! `nodes`, `default_vnodes` and `reload_interval` apply on reload.
//! `listen`, `hash`, `limits`, `timeouts` and `admin_token_file` are read at startup
//! (changing `hash` would move nearly every key at once); a reload
//! that changes them is rejected as a whole (restart to change them), like
//! any other invalid file: bad YAML, an unknown field, a duplicate or bad
//! name, vnodes out of range, no nodes. A rejected file changes nothing, is
//! logged with what is wrong (and the line, where YAML has one), and is
//! counted in `ringcache_config_reloads_total{result="failed"}`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Deserialize;

use crate::cluster::{Cluster, ClusterError, FailurePolicy, HealthOptions, NodeKind};
use crate::hash::Placement;
use crate::node::RedisOptions;
use crate::settings::{Limits, NodeSpec, Settings, SettingsError, Timeouts};
pub use crate::telemetry::ReloadStats;

/// A byte size: a number, or a number with a unit (`B`, `KiB`, `MiB`,
/// `GiB`, `KB`, `MB`, `GB`).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1048576, 512KiB or 1MiB"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Number(usize),
    Text(String),
}

fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match SizeText::deserialize(d)? {
        SizeText::Number(n) => Ok(n),
        SizeText::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

fn placement<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Placement, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// Request and memory limits from the file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    /// Longest key in bytes.
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    #[serde(deserialize_with = "size")]
    pub max_value_bytes: usize,
    /// Memory cap of each node in bytes.
    #[serde(deserialize_with = "size")]
    pub node_max_bytes: usize,
    /// Longest request head in bytes (431 beyond it).
    #[serde(deserialize_with = "size")]
    pub max_header_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        let l = Limits::default();
        FileLimits {
            max_key_bytes: l.max_key_bytes,
            max_value_bytes: l.max_value_bytes,
            node_max_bytes: l.node_max_bytes,
            max_header_bytes: l.max_header_bytes,
            max_connections: l.max_connections,
        }
    }
}

/// One node of the file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    /// The node's unique name; a Redis node's defaults to its address.
    pub name: Option<String>,
    /// `HOST:PORT` of the Redis server this node is; absent for an
    /// embedded node.
    pub redis: Option<String>,
    /// Its vnode count (the file's `default_vnodes` when absent); xxh3 only.
    pub vnodes: Option<u32>,
    /// Its ketama weight (1 when absent); `hash: ketama` only.
    pub weight: Option<u32>,
}

/// The cluster file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How keys are placed: `xxh3` (the default) or `ketama`.
    #[serde(default, deserialize_with = "placement")]
    pub hash: Placement,
    /// vnodes of a node that names none (xxh3 only; see
    /// [`Settings::default_vnodes`]).
    #[serde(default, rename = "default_vnodes")]
    pub default_vnodes_given: Option<u32>,
    /// How often the file is checked for changes.
    #[serde(
        default = "default_interval",
        deserialize_with = "crate::settings::duration"
    )]
    pub reload_interval: Duration,
    /// Limits.
    #[serde(default)]
    pub limits: FileLimits,
    /// Connection timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// File holding the admin token (its content, trimmed).
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// How Redis nodes are reached.
    #[serde(default)]
    pub redis: FileRedis,
    /// How Redis nodes are checked, ejected and readmitted.
    #[serde(default)]
    pub health: FileHealth,
    /// The nodes, in order.
    pub nodes: Vec<FileNode>,
}

/// The file's `health:` section (see [`HealthOptions`]).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileHealth {
    /// Time between two checks of a node.
    #[serde(deserialize_with = "crate::settings::duration")]
    pub interval: Duration,
    /// A check without `PONG` within it fails.
    #[serde(deserialize_with = "crate::settings::duration")]
    pub timeout: Duration,
    /// Consecutive failures that take a node out.
    pub eject_after: u32,
    /// Consecutive passed checks that bring it back.
    pub readmit_after: u32,
    /// The least time an ejected node stays out.
    #[serde(deserialize_with = "crate::settings::duration")]
    pub ejection_time: Duration,
    /// The largest share of nodes ejected at once, in percent.
    pub max_ejected_percent: u32,
    /// `eject` or `fail`.
    #[serde(deserialize_with = "policy")]
    pub on_failure: FailurePolicy,
}

impl Default for FileHealth {
    fn default() -> Self {
        let h = HealthOptions::default();
        FileHealth {
            interval: h.interval,
            timeout: h.timeout,
            eject_after: h.eject_after,
            readmit_after: h.readmit_after,
            ejection_time: h.ejection_time,
            max_ejected_percent: h.max_ejected_percent,
            on_failure: h.policy,
        }
    }
}

fn policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FailurePolicy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// The file's `redis:` section: how every Redis node is reached.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileRedis {
    /// Prepended to every key stored in Redis.
    pub prefix: String,
    /// Longest a call to a server may take (504 after it).
    #[serde(deserialize_with = "crate::settings::duration")]
    pub timeout: Duration,
    /// Connections per server.
    pub connections: usize,
}

impl Default for FileRedis {
    fn default() -> Self {
        let r = RedisOptions::default();
        FileRedis {
            prefix: String::from_utf8_lossy(&r.prefix).into_owned(),
            timeout: r.timeout,
            connections: r.connections,
        }
    }
}

fn default_listen() -> String {
    Settings::default().listen
}
fn default_interval() -> Duration {
    Settings::default().reload_interval
}

/// Why a file was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong, for a person.
    pub message: String,
    /// The 1-based line, when the problem has one.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(message: String) -> ConfigError {
    ConfigError {
        message,
        line: None,
    }
}

/// Finds the line of `needle` in `text`, for messages about values serde
/// accepted but validation refused.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// A settings problem with the line of the file it is about, where one
/// can be found.
fn at_line(text: &str, e: SettingsError) -> ConfigError {
    let line = if let Some(name) = e.field.strip_prefix("node:") {
        line_of_node(text, name)
    } else if let Some(name) = e.field.strip_prefix("duplicate:") {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(name))
            .nth(1)
            .map(|(i, _)| i + 1)
    } else {
        line_of(text, &e.field)
    };
    ConfigError {
        message: e.message,
        line,
    }
}

/// Finds the line that names node `name` (`name: NAME`, quoted or not,
/// block or flow style).
fn line_of_node(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.find("name:").is_some_and(|i| {
                l[i + 5..]
                    .trim_start()
                    .trim_start_matches(['"', '\''])
                    .starts_with(name)
            })
        })
        .map(|i| i + 1)
}

impl FileConfig {
    /// Parses and validates a file's text.
    ///
    /// # Errors
    ///
    /// What is wrong and, where known, the line.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        let cfg: FileConfig = serde_yaml_ng::from_str(text).map_err(|e| ConfigError {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        cfg.validate(text)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        if self.hash == Placement::Ketama && self.default_vnodes_given.is_some() {
            return Err(ConfigError {
                message: "default_vnodes does not apply with hash: ketama; ketama nodes have a weight (default 1)".into(),
                line: line_of(text, "default_vnodes"),
            });
        }
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.name.is_none() && n.redis.is_none())
        {
            return Err(invalid(format!(
                "node {} has neither a name nor a redis address; give name: for an embedded node or redis: HOST:PORT for a Redis server",
                i + 1
            )));
        }
        self.settings().validate().map_err(|e| at_line(text, e))
    }

    /// The settings this file gives (the admin token is read separately,
    /// by [`FileConfig::admin_token`]).
    pub fn settings(&self) -> Settings {
        let l = &self.limits;
        let defaults = Settings::default();
        Settings {
            listen: self.listen.clone(),
            hash: self.hash,
            default_vnodes: self.default_vnodes_given.unwrap_or(defaults.default_vnodes),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    // A node without either is refused by `validate`.
                    name: n
                        .name
                        .clone()
                        .or_else(|| n.redis.clone())
                        .unwrap_or_default(),
                    vnodes: n.vnodes,
                    weight: n.weight,
                    redis: n.redis.clone(),
                })
                .collect(),
            reload_interval: self.reload_interval,
            limits: Limits {
                max_key_bytes: l.max_key_bytes,
                max_value_bytes: l.max_value_bytes,
                node_max_bytes: l.node_max_bytes,
                max_header_bytes: l.max_header_bytes,
                max_connections: l.max_connections,
                ..defaults.limits
            },
            timeouts: self.timeouts,
            admin_token: None,
            redis: RedisOptions {
                prefix: self.redis.prefix.clone().into_bytes(),
                timeout: self.redis.timeout,
                connections: self.redis.connections,
            },
            health: HealthOptions {
                interval: self.health.interval,
                timeout: self.health.timeout,
                eject_after: self.health.eject_after,
                readmit_after: self.health.readmit_after,
                ejection_time: self.health.ejection_time,
                max_ejected_percent: self.health.max_ejected_percent,
                policy: self.health.on_failure,
            },
        }
    }

    /// Reads the admin token file, if any.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is empty.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|e| {
            invalid(format!(
                "cannot read admin_token_file {}: {e}",
                path.display()
            ))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid(format!(
                "admin_token_file {} is empty",
                path.display()
            )));
        }
        Ok(Some(token.to_owned()))
    }

    /// The settings a reload cannot change, for comparison with the
    /// running ones.
    #[allow(clippy::type_complexity)]
    fn startup_only(
        &self,
    ) -> (
        &str,
        Placement,
        &FileLimits,
        &Timeouts,
        Option<&Path>,
        &FileRedis,
        &FileHealth,
    ) {
        (
            &self.listen,
            self.hash,
            &self.limits,
            &self.timeouts,
            self.admin_token_file.as_deref(),
            &self.redis,
            &self.health,
        )
    }
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Nodes added.
    pub added: Vec<String>,
    /// Nodes removed.
    pub removed: Vec<String>,
    /// Nodes whose size (vnodes, or ketama weight) changed.
    pub reweighted: Vec<String>,
}

/// Makes the cluster's serving nodes equal `cfg`'s, by name, through the
/// cluster API: weight changes first, then additions in file order (which
/// under ketama is server order), then removals (so the cluster never drops
/// to zero nodes mid-way). A node whose name stays but whose kind changes
/// (embedded to Redis, or another Redis server) is removed and added again
/// after the other removals: it is another store, and its keys move. The
/// cluster must have been built with the file's `hash`.
///
/// # Errors
///
/// The first change the cluster refused; the changes before it stand.
pub fn apply(cluster: &Cluster, cfg: &Settings) -> Result<Applied, ClusterError> {
    let running: HashMap<String, (crate::ring::NodeId, u32, NodeKind)> = cluster
        .nodes()
        .into_iter()
        // Ejected and down nodes are still the file's nodes.
        .filter(|n| n.state != crate::cluster::NodeState::Draining)
        .map(|n| {
            let kind = match n.redis {
                Some(addr) => NodeKind::Redis(addr),
                None => NodeKind::Embedded,
            };
            (n.name.to_string(), (n.id, n.weight, kind))
        })
        .collect();
    let mut applied = Applied::default();
    let mut replaced = Vec::new();
    for spec in &cfg.nodes {
        let size = cfg.size_of(spec);
        match running.get(&spec.name) {
            Some((id, _, kind)) if *kind != spec.kind() => replaced.push((*id, spec, size)),
            Some(&(id, current, _)) if current != size => {
                cluster.set_weight(id, size)?;
                applied.reweighted.push(spec.name.clone());
            }
            _ => {}
        }
    }
    for spec in &cfg.nodes {
        if !running.contains_key(&spec.name) {
            cluster.add_node_of(&spec.name, cfg.size_of(spec), &spec.kind())?;
            applied.added.push(spec.name.clone());
        }
    }
    let keep: HashSet<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
    for (name, &(id, _, _)) in &running {
        if !keep.contains(name.as_str()) {
            cluster.remove_node(id)?;
            applied.removed.push(name.clone());
        }
    }
    for (id, spec, size) in replaced {
        cluster.remove_node(id)?;
        cluster.add_node_of(&spec.name, size, &spec.kind())?;
        applied.removed.push(spec.name.clone());
        applied.added.push(spec.name.clone());
    }
    Ok(applied)
}

/// Watches the file: re-reads it every `reload_interval` and at once when
/// [`Reloader::trigger`] is called (SIGHUP), applying it when its content
/// changed. Runs on its own thread.
pub struct Reloader {
    wake: Arc<(Mutex<bool>, Condvar)>,
    /// Reload counts.
    pub stats: Arc<ReloadStats>,
}

impl Reloader {
    /// Starts watching `path`, whose content `applied_text` (parsed as
    /// `applied`) the cluster already runs.
    pub fn spawn(
        path: PathBuf,
        applied_text: String,
        applied: FileConfig,
        cluster: Arc<Cluster>,
    ) -> Reloader {
        let wake = Arc::new((Mutex::new(false), Condvar::new()));
        let stats = Arc::new(ReloadStats::default());
        let (w, s) = (wake.clone(), stats.clone());
        std::thread::Builder::new()
            .name("ringcache-config".into())
            .spawn(move || watch(&path, applied_text, applied, &cluster, &w, &s))
            .expect("spawning the config thread");
        Reloader { wake, stats }
    }

    /// Reloads now (what SIGHUP does).
    pub fn trigger(&self) {
        *self.wake.0.lock() = true;
        self.wake.1.notify_all();
    }
}

fn watch(
    path: &Path,
    mut last_text: String,
    mut last: FileConfig,
    cluster: &Cluster,
    wake: &(Mutex<bool>, Condvar),
    stats: &ReloadStats,
) {
    loop {
        {
            let mut woken = wake.0.lock();
            if !*woken {
                wake.1.wait_for(&mut woken, last.reload_interval);
            }
            *woken = false;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "config {}: cannot read it: {e}; keeping the running config",
                    path.display()
                );
                continue;
            }
        };
        if text == last_text {
            continue;
        }
        let outcome = FileConfig::parse(&text).and_then(|cfg| {
            if cfg.startup_only() != last.startup_only() {
                return Err(invalid(
                    "listen, hash, limits, timeouts, admin_token_file, redis and health cannot change while running; restart ringcache to change them".into(),
                ));
            }
            Ok(cfg)
        });
        match outcome {
            Ok(cfg) => match apply(cluster, &cfg.settings()) {
                Ok(done) => {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "config {} reloaded: added {:?}, removed {:?}, re-weighted {:?}",
                        path.display(),
                        done.added,
                        done.removed,
                        done.reweighted
                    );
                    last = cfg;
                    last_text = text;
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    log::error!(
                        "config {}: the cluster refused a change: {e}",
                        path.display()
                    );
                    // Treated as seen, so the error is not logged every interval.
                    last_text = text;
                }
            },
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "config {} rejected, keeping the running config: {e}",
                    path.display()
                );
                last_text = text;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
listen: 127.0.0.1:8000
default_vnodes: 160
reload_interval: 5s
limits: { max_key_bytes: 250, max_value_bytes: 1MiB, node_max_bytes: 256MiB }
nodes:
  - name: cache-0
  - name: cache-1
    vnodes: 320
";

    #[test]
    fn the_documented_example_parses() {
        let c = FileConfig::parse(GOOD).unwrap();
        assert_eq!(c.limits.max_value_bytes, 1 << 20);
        assert_eq!(c.limits.node_max_bytes, 256 << 20);
        assert_eq!(c.reload_interval, Duration::from_secs(5));
        assert_eq!(
            c.settings().node_sizes(),
            vec![("cache-0", 160), ("cache-1", 320)]
        );
    }

    #[test]
    fn bad_files_name_the_problem_and_line() {
        let cases = [
            ("nodes:\n  - name: a\n   vnodes: [", Some(3)),
            ("nodes:\n  - name: a\n    weight: 3\n", Some(2)),
            (
                "hash: ketama\nnodes:\n  - name: a\n    vnodes: 3\n",
                Some(3),
            ),
            (
                "hash: ketama\ndefault_vnodes: 100\nnodes:\n  - name: a\n",
                Some(2),
            ),
            (
                "hash: ketama\nnodes:\n  - name: a\n    weight: 0\n",
                Some(3),
            ),
            ("hash: md5\nnodes:\n  - name: a\n", Some(1)),
            ("nodes:\n  - name: a\n  - name: a\n", Some(3)),
            ("nodes:\n  - name: a\n    vnodes: 0\n", Some(2)),
            ("nodes: []\n", Some(1)),
            (
                "limits: { max_value_bytes: 1XB }\nnodes:\n  - name: a\n",
                Some(1),
            ),
            ("reload_interval: soon\nnodes:\n  - name: a\n", Some(1)),
        ];
        for (text, line) in cases {
            let e = FileConfig::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(!e.message.is_empty());
        }
        assert!(
            FileConfig::parse("nodes:\n  - name: a\n    vnodes: 10001\n")
                .unwrap_err()
                .message
                .contains("between 1 and 10000")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn ketama_files_give_weights_in_server_order() {
        let text = "hash: ketama\nnodes:\n  - { name: 10.0.1.1, weight: 600 }\n  - name: \"10.0.1.2:11212\"\n";
        let c = FileConfig::parse(text).unwrap();
        assert_eq!(c.hash, Placement::Ketama);
        assert_eq!(
            c.settings().node_sizes(),
            vec![
                ("10.0.1.1", 600),
                ("10.0.1.2:11212", crate::ring::DEFAULT_KETAMA_WEIGHT)
            ]
        );
        let long = format!("hash: ketama\nnodes:\n  - name: {}\n", "h".repeat(75));
        let e = FileConfig::parse(&long).unwrap_err();
        assert!(e.message.contains("1 to 74 bytes"), "{e}");
        // The same name is fine under xxh3.
        assert!(FileConfig::parse(&long.replace("hash: ketama\n", "")).is_ok());
    }

    #[test]
    fn hash_is_startup_only() {
        let a = FileConfig::parse("nodes:\n  - name: a\n").unwrap();
        let b = FileConfig::parse("hash: ketama\nnodes:\n  - name: a\n").unwrap();
        assert_ne!(a.startup_only(), b.startup_only());
    }
}
