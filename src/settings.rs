//! Every value an operator can set, with its default, in one type.
//!
//! The config file fills a [`Settings`] ([`crate::config`]), command-line
//! flags overlay the defaults (the binary), and [`Settings::validate`]
//! checks the result once, whichever way it was filled. Defaults are written
//! here and nowhere else. The rule for a node's size (xxh3 nodes have
//! `vnodes`, ketama nodes a `weight`) is [`node_size`], which the CLI, the
//! file and the admin API all call.
//!
//! This module depends only on [`crate::hash`] and the ring's constants; it
//! applies nothing (the cluster is built from it by the binary and
//! [`crate::config::apply`]).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::{HealthOptions, NodeKind};
use crate::hash::Placement;
use crate::node::RedisOptions;
use crate::ring::{DEFAULT_KETAMA_WEIGHT, DEFAULT_MAX_WEIGHT, DEFAULT_VNODES};

/// Request, memory and connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes after percent-decoding (memcached's 250).
    pub max_key_bytes: usize,
    /// Largest value body, in bytes (memcached's default item size, 1 MiB).
    pub max_value_bytes: usize,
    /// Largest admin (JSON) body, in bytes.
    pub max_admin_body_bytes: usize,
    /// Longest TTL accepted, in seconds (30 days, memcached's relative-TTL
    /// ceiling; past it a client almost certainly sent a timestamp).
    pub max_ttl_secs: u64,
    /// Memory cap of each embedded node, in bytes (keys + values + a fixed
    /// overhead per entry).
    pub node_max_bytes: usize,
    /// Longest request head (request line and headers), in bytes; twice
    /// nginx's default header buffer.
    pub max_header_bytes: usize,
    /// Connections served at once; keep it below the descriptor limit.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 250,
            max_value_bytes: 1 << 20,
            max_admin_body_bytes: 64 << 10,
            max_ttl_secs: 30 * 24 * 3600,
            node_max_bytes: 256 << 20,
            max_header_bytes: 16 << 10,
            max_connections: 10_000,
        }
    }
}

/// How long a connection may take at each stage (see `http::conn`). The
/// config file's `timeouts:` section is this type, each field a duration
/// such as `10s` or `500ms` (absent fields keep their default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From a request's first byte to the end of its head (10 s, ample for
    /// any real client; a slow-loris sender is cut off).
    #[serde(deserialize_with = "duration")]
    pub head: Duration,
    /// From the end of the head to the end of the body (30 s: 1 MiB at
    /// 35 KB/s).
    #[serde(deserialize_with = "duration")]
    pub body: Duration,
    /// Between requests on a keep-alive connection (60 s, nginx's 75 s
    /// rounded down).
    #[serde(deserialize_with = "duration")]
    pub idle: Duration,
    /// For one write of replies to make progress (30 s).
    #[serde(deserialize_with = "duration")]
    pub write: Duration,
    /// For requests under way to finish at shutdown (10 s).
    #[serde(deserialize_with = "duration")]
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            head: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            write: Duration::from_secs(30),
            shutdown: Duration::from_secs(10),
        }
    }
}

/// Reads a duration written as text (`10s`, `500ms`, `1m`), for the
/// config file.
///
/// # Errors
///
/// Text that is not a duration, with an example of one.
pub fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration such as 5s or 1m: {e}"))
    })
}

/// One node to run: its name, what it is and, when given, its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's unique name.
    pub name: String,
    /// Its vnode count (xxh3); the default when neither is given.
    pub vnodes: Option<u32>,
    /// Its ketama weight (ketama); the default when neither is given.
    pub weight: Option<u32>,
    /// `HOST:PORT` of the Redis server it is; `None` for an embedded node.
    pub redis: Option<String>,
}

impl NodeSpec {
    /// An embedded node of the default size.
    pub fn named(name: impl Into<String>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            vnodes: None,
            weight: None,
            redis: None,
        }
    }

    /// What the node is.
    pub fn kind(&self) -> NodeKind {
        match &self.redis {
            None => NodeKind::Embedded,
            Some(addr) => NodeKind::Redis(addr.clone()),
        }
    }
}

/// Checks that `addr` is a Redis server address: `HOST:PORT` with a port
/// from 1 to 65535 (an IPv6 host in brackets: `[::1]:6379`). Whether it
/// resolves and answers is checked when the node is added.
///
/// # Errors
///
/// What is wrong, with an example.
pub fn check_redis_addr(addr: &str) -> Result<(), String> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Redis server address {addr:?} is not HOST:PORT (for example 127.0.0.1:6379)"
        ))
    }
}

/// Everything the binary runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Listen address.
    pub listen: String,
    /// How keys are placed.
    pub hash: Placement,
    /// vnodes of an xxh3 node that names none.
    pub default_vnodes: u32,
    /// The nodes to run, in order (ketama's server order).
    pub nodes: Vec<NodeSpec>,
    /// How often a config file is checked for changes.
    pub reload_interval: Duration,
    /// Limits.
    pub limits: Limits,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// When set, membership-changing routes need `Authorization: Bearer`
    /// with this token.
    pub admin_token: Option<String>,
    /// How Redis nodes are reached (prefix, timeout, connections).
    pub redis: RedisOptions,
    /// How Redis nodes are checked, ejected and readmitted.
    pub health: HealthOptions,
}

impl Default for Settings {
    /// Three embedded nodes `cache-0`..`cache-2` of 160 vnodes on
    /// 127.0.0.1:8000.
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8000".into(),
            hash: Placement::Xxh3,
            default_vnodes: DEFAULT_VNODES,
            nodes: (0..3)
                .map(|i| NodeSpec::named(format!("cache-{i}")))
                .collect(),
            reload_interval: Duration::from_secs(5),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            admin_token: None,
            redis: RedisOptions::default(),
            health: HealthOptions::default(),
        }
    }
}

/// Why settings were refused: what is wrong, and the setting it is about
/// (a file name for it, so a config file can point at its line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    /// The setting: a file field such as `max_value_bytes`, or
    /// `node:NAME` for one node.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingsError {}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        message: message.into(),
    }
}

/// The size a node is given under `hash`: `vnodes` under xxh3, `weight`
/// under ketama, `None` when neither is given. The other placement's field
/// is refused, so a node written for one kind of cluster never silently
/// means something else in the other; a size must be 1 to
/// [`DEFAULT_MAX_WEIGHT`].
///
/// # Errors
///
/// A message naming the field to give instead, or the range.
pub fn node_size(
    hash: Placement,
    vnodes: Option<u32>,
    weight: Option<u32>,
) -> Result<Option<u32>, String> {
    let (given, other) = match hash {
        Placement::Xxh3 => (vnodes, weight),
        Placement::Ketama => (weight, vnodes),
    };
    if other.is_some() {
        return Err(match hash {
            Placement::Xxh3 => "this cluster places keys by xxh3 vnodes: give vnodes, not weight (weights are for hash ketama)".into(),
            Placement::Ketama => "this cluster places keys by ketama: give weight, not vnodes (a node's points follow from the weights)".into(),
        });
    }
    match given {
        Some(n) if !(1..=DEFAULT_MAX_WEIGHT).contains(&n) => Err(format!(
            "{} must be between 1 and {DEFAULT_MAX_WEIGHT}, got {n}",
            size_field(hash)
        )),
        _ => Ok(given),
    }
}

/// The name of a node's size under `hash`: `vnodes` or `weight`.
pub fn size_field(hash: Placement) -> &'static str {
    match hash {
        Placement::Xxh3 => "vnodes",
        Placement::Ketama => "weight",
    }
}

impl Settings {
    /// The size a node added without one gets: `default_vnodes` under xxh3,
    /// [`DEFAULT_KETAMA_WEIGHT`] under ketama.
    pub fn default_size(&self) -> u32 {
        match self.hash {
            Placement::Xxh3 => self.default_vnodes,
            Placement::Ketama => DEFAULT_KETAMA_WEIGHT,
        }
    }

    /// Each node's name and size (its vnodes under xxh3, its weight under
    /// ketama), in order. Call after [`Settings::validate`].
    pub fn node_sizes(&self) -> Vec<(&str, u32)> {
        self.nodes
            .iter()
            .map(|n| (n.name.as_str(), self.size_of(n)))
            .collect()
    }

    /// A node's size (its vnodes under xxh3, its weight under ketama), the
    /// default when it gives none. Call after [`Settings::validate`].
    pub fn size_of(&self, node: &NodeSpec) -> u32 {
        node_size(self.hash, node.vnodes, node.weight)
            .ok()
            .flatten()
            .unwrap_or(self.default_size())
    }

    /// Checks every setting and how they fit together.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.nodes.is_empty() {
            return Err(refuse(
                "nodes",
                "nodes is empty; a cluster needs at least one node",
            ));
        }
        if !(1..=DEFAULT_MAX_WEIGHT).contains(&self.default_vnodes) {
            return Err(refuse(
                "default_vnodes",
                format!(
                    "default_vnodes must be between 1 and {DEFAULT_MAX_WEIGHT}, got {}",
                    self.default_vnodes
                ),
            ));
        }
        let max_name = self.hash.max_name_bytes();
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            let field = format!("node:{}", n.name);
            if n.name.is_empty() || n.name.len() > max_name {
                return Err(refuse(
                    field,
                    format!(
                        "node name {:?} must be 1 to {max_name} bytes{}",
                        n.name,
                        if self.hash == Placement::Ketama {
                            " with hash ketama (libmemcached's and twemproxy's limit)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            if let Err(why) = node_size(self.hash, n.vnodes, n.weight) {
                return Err(refuse(field, format!("node {:?}: {why}", n.name)));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(refuse(
                    format!("duplicate:{}", n.name),
                    format!("node {:?} is listed twice; names must be unique", n.name),
                ));
            }
            if let Some(addr) = &n.redis {
                check_redis_addr(addr).map_err(|why| refuse(format!("node:{}", n.name), why))?;
                if self
                    .nodes
                    .iter()
                    .filter(|m| m.redis.as_deref() == Some(addr))
                    .count()
                    > 1
                {
                    return Err(refuse(
                        format!("duplicate:{addr}"),
                        format!("Redis server {addr} is listed twice; one server can back only one node"),
                    ));
                }
            }
        }
        let r = &self.redis;
        if r.timeout.is_zero() {
            return Err(refuse(
                "redis",
                "the Redis command timeout must be positive",
            ));
        }
        if !(1..=1024).contains(&r.connections) {
            return Err(refuse(
                "redis",
                format!(
                    "Redis connections per server must be from 1 to 1024, got {}",
                    r.connections
                ),
            ));
        }
        if r.prefix.len() > 1024 {
            return Err(refuse(
                "redis",
                "the Redis key prefix must be at most 1024 bytes",
            ));
        }
        if self.reload_interval < Duration::from_millis(50) {
            return Err(refuse(
                "reload_interval",
                "reload_interval must be at least 50ms",
            ));
        }
        let l = &self.limits;
        if l.max_key_bytes == 0 || l.max_value_bytes == 0 {
            return Err(refuse(
                "max_value_bytes",
                "max_key_bytes and max_value_bytes must be positive",
            ));
        }
        // Checked: a value near usize::MAX must not wrap into a small total
        // that passes (and switches the body limit off).
        let largest_entry = l
            .max_key_bytes
            .checked_add(l.max_value_bytes)
            .and_then(|n| n.checked_add(crate::node::ENTRY_OVERHEAD));
        if largest_entry.is_none_or(|n| n > l.node_max_bytes) {
            return Err(refuse(
                "max_value_bytes",
                format!(
                    "the largest key ({}) and value ({}) must fit in node_max_bytes ({}) with {} bytes of overhead",
                    l.max_key_bytes,
                    l.max_value_bytes,
                    l.node_max_bytes,
                    crate::node::ENTRY_OVERHEAD
                ),
            ));
        }
        if !(1024..=1 << 20).contains(&l.max_header_bytes) {
            return Err(refuse(
                "max_header_bytes",
                format!(
                    "max_header_bytes must be from 1KiB to 1MiB, got {}",
                    l.max_header_bytes
                ),
            ));
        }
        if l.max_connections == 0 {
            return Err(refuse(
                "max_connections",
                "max_connections must be at least 1",
            ));
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("head", t.head),
            ("body", t.body),
            ("idle", t.idle),
            ("write", t.write),
            ("shutdown", t.shutdown),
        ] {
            if d.is_zero() {
                return Err(refuse(
                    "timeouts",
                    format!("the {name} timeout must be positive"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(
            s.node_sizes(),
            [("cache-0", 160), ("cache-1", 160), ("cache-2", 160)]
        );
    }

    #[test]
    fn node_sizes_follow_the_placement() {
        assert_eq!(node_size(Placement::Xxh3, Some(3), None), Ok(Some(3)));
        assert_eq!(node_size(Placement::Ketama, None, Some(3)), Ok(Some(3)));
        assert_eq!(node_size(Placement::Ketama, None, None), Ok(None));
        assert!(node_size(Placement::Xxh3, None, Some(3))
            .unwrap_err()
            .contains("give vnodes"));
        assert!(node_size(Placement::Ketama, Some(3), None)
            .unwrap_err()
            .contains("give weight"));
        assert!(node_size(Placement::Xxh3, Some(0), None).is_err());
        assert!(node_size(Placement::Ketama, None, Some(DEFAULT_MAX_WEIGHT + 1)).is_err());
    }

    #[test]
    fn redis_addresses_are_host_and_port() {
        for ok in ["127.0.0.1:6379", "cache-a:7000", "[::1]:6379"] {
            check_redis_addr(ok).unwrap();
        }
        for bad in ["127.0.0.1", ":6379", "h:0", "h:70000", "h:port", "a b:1"] {
            assert!(check_redis_addr(bad).is_err(), "{bad}");
        }
        let mut s = Settings::default();
        s.nodes[0].redis = Some("127.0.0.1:6379".into());
        s.nodes[1].redis = Some("127.0.0.1:6379".into());
        assert!(s.validate().unwrap_err().message.contains("listed twice"));
    }

    #[test]
    fn limits_are_checked_without_overflow() {
        let mut s = Settings::default();
        s.limits.max_value_bytes = usize::MAX;
        assert_eq!(s.validate().unwrap_err().field, "max_value_bytes");
        s.limits.max_value_bytes = usize::MAX - 250 - crate::node::ENTRY_OVERHEAD + 1;
        assert!(s.validate().is_err());
        let mut s = Settings::default();
        s.timeouts.idle = Duration::ZERO;
        assert_eq!(s.validate().unwrap_err().field, "timeouts");
    }
}
