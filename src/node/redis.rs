//! A cache node that is a Redis server.
//!
//! This module owns what each [`Store`] operation means in Redis commands.
//! The wire (connections, framing, timeouts) is [`super::resp`]'s.
//!
//! # Data layout
//!
//! A value is a plain Redis string under the key's own bytes, after an
//! optional prefix ([`RedisOptions::prefix`]): `PUT /keys/k?ttl=5` is
//! `SET <prefix>k <body> PX 5000`, so `redis-cli GET <prefix>k` on the owner
//! returns what the client stored. TTLs are Redis expiries (millisecond
//! precision); memory limits and eviction are the server's own
//! (`maxmemory`, `maxmemory-policy`), reported, not re-implemented.
//!
//! # The operations
//!
//! | operation | commands |
//! |---|---|
//! | get | `GET` |
//! | set | `EXISTS`, `SET [PX]`, pipelined (the pair tells 201 from 200) |
//! | delete, remove | `DEL` |
//! | scan | `SCAN cursor MATCH <prefix>* COUNT 512`, each key hashed here |
//! | export | `GET`, `PTTL`, pipelined; for many keys, one round trip |
//! | import | `SET NX [PX]`: a value already on the owner (a newer write) wins |
//!
//! `EXISTS` then `SET` is not atomic: two writers racing on one new key
//! may both be told 201. The value stored is the last write's either way.
//!
//! Relocation keeps TTLs: an export reads the remaining `PTTL`, the import
//! sets it again, so a moved key expires when it would have (to the
//! millisecond, less the move's own duration). A key that expires during
//! its move is not written. Entries arriving from Redis carry no access
//! history; an embedded node that imports them counts them as just accessed.
//!
//! # Stats
//!
//! [`Store::stats`] answers from the last `INFO` the cluster's sweeper
//! thread fetched ([`Store::refresh`], about once a second), so a listing
//! never waits on a slow server. `keys` is the database's key count (the
//! whole database, other users' keys included when a prefix shares it),
//! `bytes` is `used_memory`, `max_bytes` is `maxmemory` (0: no limit), and
//! evictions and expirations are the server's own counters (`evicted_keys`,
//! `expired_keys`). Hits and misses are ringcache's gets through this node,
//! as for an embedded node (the server's `keyspace_hits` also counts each
//! set's `EXISTS`, and other clients).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{reply_bytes, Pool, RemoteError, RemoteErrorKind, Reply};
use super::{
    access_now, ImportOutcome, Imported, Key, MovedEntry, NodeStats, ScanPage, SetOutcome, Store,
    StoreError, Value,
};
use crate::hash::Placement;

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: &[u8] = b"512";

/// How ringcache talks to its Redis servers; one set for the whole cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prepended to every key in Redis, so ringcache can share a server
    /// without touching other data (scans match only this prefix).
    pub prefix: Vec<u8>,
    /// The longest one call may take, from waiting for a connection to the
    /// last reply byte; beyond it the request gets 504.
    pub timeout: Duration,
    /// Connections per server.
    pub connections: usize,
}

impl Default for RedisOptions {
    /// No prefix, a 1 s timeout, 8 connections per server.
    fn default() -> Self {
        RedisOptions {
            prefix: Vec::new(),
            timeout: Duration::from_secs(1),
            connections: 8,
        }
    }
}

/// Where a Redis node stands with the health observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Up,
    /// Failing its checks but kept in the ring (policy `fail`, or the cap
    /// on ejected nodes reached): calls fail at once with
    /// [`RemoteErrorKind::Down`].
    Down,
    /// Out of the ring: calls fail at once with
    /// [`RemoteErrorKind::Ejected`].
    Ejected,
}

/// Health counters of one Redis node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthStats {
    /// Checks (`PING`) sent.
    pub checks: u64,
    /// Checks that failed.
    pub check_failures: u64,
    /// The last check's round trip.
    pub last_check: Duration,
    /// Times the node was ejected.
    pub ejections: u64,
}

/// A Redis server as a cache node.
#[derive(Debug)]
pub struct RedisStore {
    pool: Pool,
    prefix: Vec<u8>,
    /// `SCAN`'s `MATCH` pattern: the prefix, glob-escaped, then `*`.
    pattern: Vec<u8>,
    /// Hashes scanned keys: the store keeps no hashes of its own.
    placement: Placement,
    /// Counters from the last `INFO`.
    stats: Mutex<NodeStats>,
    /// Calls to this server that failed.
    errors: AtomicU64,
    /// Gets that found a value, and that found none (counted here: the
    /// server's `keyspace_hits` also counts the `EXISTS` of every set, and
    /// other users' reads).
    hits: AtomicU64,
    misses: AtomicU64,
    /// [`Health`] as a `u8`.
    health: AtomicU8,
    /// Failures (requests or checks) since the last success.
    failures: AtomicU32,
    checks: AtomicU64,
    check_failures: AtomicU64,
    last_check_micros: AtomicU64,
    ejections: AtomicU64,
    /// The health observer's own connection, made at its first check.
    probe: OnceLock<Pool>,
}

impl RedisStore {
    /// A store for the server at `addr` (`HOST:PORT`). Resolves the address
    /// and checks the server answers `PING` (blocking: call it off the
    /// request path).
    ///
    /// # Errors
    ///
    /// [`RemoteError`] if the address does not resolve or the server does
    /// not answer `PING` with `PONG` within the timeout.
    pub fn connect(
        addr: &str,
        options: &RedisOptions,
        placement: Placement,
    ) -> Result<RedisStore, RemoteError> {
        let pool = Pool::new(addr, options.connections, options.timeout)?;
        let mut pattern = Vec::with_capacity(options.prefix.len() + 1);
        for &b in &options.prefix {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        let store = RedisStore {
            pool,
            prefix: options.prefix.clone(),
            pattern,
            placement,
            stats: Mutex::new(NodeStats::default()),
            errors: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            health: AtomicU8::new(Health::Up as u8),
            failures: AtomicU32::new(0),
            checks: AtomicU64::new(0),
            check_failures: AtomicU64::new(0),
            last_check_micros: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            probe: OnceLock::new(),
        };
        let pong = store.call_ungated(&[&[b"PING"]])?;
        match reply_bytes(&pong[0]) {
            Some(b"PONG") => {}
            _ => {
                return Err(store.unexpected("PING", &pong[0]));
            }
        }
        store.refresh();
        Ok(store)
    }

    /// `prefix + key`.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// Where the node stands with the health observer.
    pub fn health(&self) -> Health {
        // Relaxed: a routing hint; the ring change that goes with an
        // ejection is published with its own ordering.
        match self.health.load(Ordering::Relaxed) {
            0 => Health::Up,
            1 => Health::Down,
            _ => Health::Ejected,
        }
    }

    /// Sets the node's health (the observer's call).
    pub fn set_health(&self, health: Health) {
        if health == Health::Ejected && self.health() != Health::Ejected {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        self.health.store(health as u8, Ordering::Relaxed);
        if health == Health::Up {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Failures (failed requests and checks) since the last success.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The health counters.
    pub fn health_stats(&self) -> HealthStats {
        HealthStats {
            checks: self.checks.load(Ordering::Relaxed),
            check_failures: self.check_failures.load(Ordering::Relaxed),
            last_check: Duration::from_micros(self.last_check_micros.load(Ordering::Relaxed)),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }

    /// One health check: `PING` on the observer's own connection, answered
    /// `PONG` within `timeout`. An error reply (`NOAUTH`, `LOADING`,
    /// `MASTERDOWN`, ...) is a failure. Counts toward [`RedisStore::failures`]
    /// (a success resets it).
    ///
    /// # Errors
    ///
    /// Why the check failed.
    pub fn check(&self, timeout: Duration) -> Result<(), RemoteError> {
        let started = Instant::now();
        let probe = match self.probe.get() {
            Some(p) => p,
            None => {
                let pool = Pool::new(self.pool.addr(), 1, timeout)?;
                self.probe.get_or_init(|| pool)
            }
        };
        let result = probe.call(&[&[b"PING"]]).and_then(|r| match &r[0] {
            OwnedFrame::SimpleString(s) if s == b"PONG" => Ok(()),
            OwnedFrame::Error(e) => Err(RemoteError {
                kind: RemoteErrorKind::Reply,
                addr: self.pool.addr().to_string(),
                detail: e.clone(),
            }),
            other => Err(RemoteError {
                kind: RemoteErrorKind::Io,
                addr: self.pool.addr().to_string(),
                detail: format!("unexpected reply to PING: {other:?}"),
            }),
        });
        // Relaxed: statistics and a failure count read by the one observer.
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.last_check_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match &result {
            Ok(()) => self.failures.store(0, Ordering::Relaxed),
            Err(_) => {
                self.check_failures.fetch_add(1, Ordering::Relaxed);
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Deletes every key ringcache stored on the server (every key under
    /// the prefix; with no prefix, every key of the database), whatever the
    /// node's health: what a node readmitted after an ejection does before
    /// it serves again. Returns how many keys it deleted.
    ///
    /// # Errors
    ///
    /// The first failed call; the server may then hold some of the keys
    /// still.
    pub fn clear(&self) -> Result<u64, RemoteError> {
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys) = self.scan_page(cursor, false)?;
            let names: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            if !names.is_empty() {
                let mut command: Vec<&[u8]> = Vec::with_capacity(names.len() + 1);
                command.push(b"DEL");
                command.extend(names);
                let r = self.call_ungated(&[&command])?;
                deleted += self.int("DEL", &r[0])? as u64;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// One `SCAN cursor MATCH <prefix>* COUNT 512`: the next cursor (0 when
    /// the scan is complete) and the full key names returned. `gated`:
    /// refused at once if the node is down or ejected (a relocation scan);
    /// otherwise sent whatever its health (clearing it for readmission).
    fn scan_page(&self, cursor: u64, gated: bool) -> Result<(u64, Vec<Vec<u8>>), RemoteError> {
        let c = cursor.to_string();
        let command: [&[u8]; 6] = [
            b"SCAN",
            c.as_bytes(),
            b"MATCH",
            &self.pattern,
            b"COUNT",
            SCAN_COUNT,
        ];
        let replies = if gated {
            self.call(&[&command])?
        } else {
            self.call_ungated(&[&command])?
        };
        let parsed = match &replies[0] {
            OwnedFrame::Array(parts) if parts.len() == 2 => {
                let next = reply_bytes(&parts[0])
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                match (next, &parts[1]) {
                    (Some(next), OwnedFrame::Array(keys)) => keys
                        .iter()
                        .map(|k| reply_bytes(k).map(<[u8]>::to_vec))
                        .collect::<Option<Vec<_>>>()
                        .map(|keys| (next, keys)),
                    _ => None,
                }
            }
            _ => None,
        };
        parsed.ok_or_else(|| self.unexpected("SCAN", &replies[0]))
    }

    /// Sends `commands` unless the node is down or ejected (then fails at
    /// once); every error reply becomes a [`RemoteError`]. A failure to
    /// reach the server counts toward [`RedisStore::failures`]; a success
    /// resets it.
    fn call(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, RemoteError> {
        let kind = match self.health() {
            Health::Up => None,
            Health::Down => Some(RemoteErrorKind::Down),
            Health::Ejected => Some(RemoteErrorKind::Ejected),
        };
        if let Some(kind) = kind {
            return Err(RemoteError {
                kind,
                addr: self.pool.addr().to_string(),
                detail: "failing health checks; its keys are unavailable until it recovers".into(),
            });
        }
        let result = self.call_ungated(commands);
        match &result {
            // Relaxed: a hint for the observer, which re-reads it each tick.
            Ok(_) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind != RemoteErrorKind::Reply => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }

    /// Sends `commands` whatever the node's health.
    fn call_ungated(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, RemoteError> {
        let result = self.pool.call(commands).and_then(|replies| {
            match replies.iter().find_map(|r| match r {
                OwnedFrame::Error(e) => Some(e.clone()),
                _ => None,
            }) {
                Some(e) => Err(RemoteError {
                    kind: RemoteErrorKind::Reply,
                    addr: self.pool.addr().to_string(),
                    detail: e,
                }),
                None => Ok(replies),
            }
        });
        if result.is_err() {
            // Relaxed: a statistic.
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn unexpected(&self, command: &str, reply: &Reply) -> RemoteError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        RemoteError {
            kind: RemoteErrorKind::Io,
            addr: self.pool.addr().to_string(),
            detail: format!("unexpected reply to {command}: {reply:?}"),
        }
    }

    /// Milliseconds until `at`, at least 1 (Redis refuses `PX 0`), or `None`
    /// if `at` has passed.
    fn px(at: Instant) -> Option<Vec<u8>> {
        let left = at.checked_duration_since(Instant::now())?;
        let ms = left.as_millis().max(1);
        Some(ms.to_string().into_bytes())
    }

    fn int(&self, command: &str, reply: &Reply) -> Result<i64, RemoteError> {
        match reply {
            OwnedFrame::Integer(n) => Ok(*n),
            r => Err(self.unexpected(command, r)),
        }
    }

    /// The entry an export's `GET` and `PTTL` replies describe.
    fn entry(
        &self,
        key: &[u8],
        get: &Reply,
        pttl: &Reply,
    ) -> Result<Option<MovedEntry>, RemoteError> {
        let value: Value = match get {
            OwnedFrame::Null => return Ok(None),
            OwnedFrame::BulkString(v) => v.as_slice().into(),
            r => return Err(self.unexpected("GET", r)),
        };
        let expires_at = match self.int("PTTL", pttl)? {
            // No expiry.
            -1 => None,
            // Gone between the two commands (they run back to back, so only
            // an expiry in that instant).
            ms if ms < 0 => return Ok(None),
            ms => Some(Instant::now() + Duration::from_millis(ms as u64)),
        };
        Ok(Some(MovedEntry {
            value,
            expires_at,
            hash: self.placement.key_hash(key),
            last_access: access_now(),
        }))
    }

    /// Parses one `INFO` reply's `field:value` lines into stats.
    fn parse_info(info: &str) -> NodeStats {
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        // "db0:keys=12,expires=0,avg_ttl=0"
        let keys = info
            .lines()
            .find_map(|l| l.strip_prefix("db0:keys="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        NodeStats {
            keys,
            bytes: field("used_memory") as usize,
            max_bytes: field("maxmemory") as usize,
            hits: field("keyspace_hits"),
            misses: field("keyspace_misses"),
            evictions: field("evicted_keys"),
            expirations: field("expired_keys"),
            errors: 0,
        }
    }
}

impl Store for RedisStore {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, StoreError> {
        let k = self.key(key);
        let replies = self.call(&[&[b"GET", &k]])?;
        // Relaxed: statistics.
        match &replies[0] {
            OwnedFrame::Null => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            OwnedFrame::BulkString(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(v.as_slice().into()))
            }
            r => Err(self.unexpected("GET", r).into()),
        }
    }

    fn set(
        &self,
        _hash: u64,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError> {
        let k = self.key(key);
        let replies = match expires_at {
            None => self.call(&[&[b"EXISTS", &k], &[b"SET", &k, &value]])?,
            Some(at) => {
                // Already expired: Redis's own answer to a past expiry is to
                // delete the key, which is what storing it would come to.
                let px = Self::px(at).unwrap_or_else(|| b"1".to_vec());
                self.call(&[&[b"EXISTS", &k], &[b"SET", &k, &value, b"PX", &px]])?
            }
        };
        match self.int("EXISTS", &replies[0])? {
            0 => Ok(SetOutcome::Created),
            _ => Ok(SetOutcome::Replaced),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        let replies = self.call(&[&[b"DEL", &self.key(key)]])?;
        Ok(self.int("DEL", &replies[0])? > 0)
    }

    fn scan(&self, cursor: u64, filter: &dyn Fn(u64) -> bool) -> Result<ScanPage, StoreError> {
        let (next, keys) = self.scan_page(cursor, true)?;
        let mut page = ScanPage {
            keys: Vec::new(),
            examined: keys.len(),
            next: (next != 0).then_some(next),
        };
        for full in &keys {
            // MATCH guarantees the prefix.
            let Some(key) = full.strip_prefix(self.prefix.as_slice()) else {
                continue;
            };
            let hash = self.placement.key_hash(key);
            if filter(hash) {
                page.keys.push((hash, key.into()));
            }
        }
        Ok(page)
    }

    fn export(&self, key: &[u8]) -> Result<Option<MovedEntry>, StoreError> {
        Ok(self
            .export_many(&[Key::from(key)])?
            .pop()
            .expect("one entry per key"))
    }

    fn export_many(&self, keys: &[Key]) -> Result<Vec<Option<MovedEntry>>, StoreError> {
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let commands: Vec<[&[u8]; 2]> = full
            .iter()
            .flat_map(|k| [[b"GET".as_slice(), k.as_slice()], [b"PTTL", k.as_slice()]])
            .collect();
        let refs: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
        let replies = self.call(&refs)?;
        keys.iter()
            .zip(replies.chunks(2))
            .map(|(k, r)| self.entry(k, &r[0], &r[1]).map_err(StoreError::from))
            .collect()
    }

    fn import(&self, key: &Key, entry: MovedEntry) -> Result<Imported, StoreError> {
        self.import_many(vec![(key.clone(), entry)])?
            .pop()
            .expect("one result per entry")
    }

    fn import_many(
        &self,
        entries: Vec<(Key, MovedEntry)>,
    ) -> Result<Vec<Result<Imported, StoreError>>, StoreError> {
        // Entries that expired on the way are not written.
        let mut live = Vec::with_capacity(entries.len());
        let mut results: Vec<Option<Result<Imported, StoreError>>> = Vec::new();
        for (k, e) in &entries {
            let px = match e.expires_at {
                None => None,
                Some(at) => match Self::px(at) {
                    Some(px) => Some(px),
                    None => {
                        results.push(Some(Ok(Imported {
                            outcome: ImportOutcome::Present,
                            evicted: 0,
                        })));
                        continue;
                    }
                },
            };
            results.push(None);
            live.push((self.key(k), &e.value, px));
        }
        let commands: Vec<Vec<&[u8]>> = live
            .iter()
            .map(|(k, v, px)| {
                let mut c: Vec<&[u8]> = vec![b"SET", k, v, b"NX"];
                if let Some(px) = px {
                    c.extend([b"PX".as_slice(), px.as_slice()]);
                }
                c
            })
            .collect();
        let refs: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
        let replies = if refs.is_empty() {
            Vec::new()
        } else {
            self.call(&refs)?
        };
        let mut replies = replies.into_iter();
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(done) => done,
                None => match replies.next() {
                    // Stored.
                    Some(OwnedFrame::SimpleString(_)) => Ok(Imported {
                        outcome: ImportOutcome::Stored,
                        evicted: 0,
                    }),
                    // NX: the owner already had a value, newer than this.
                    Some(OwnedFrame::Null) => Ok(Imported {
                        outcome: ImportOutcome::Present,
                        evicted: 0,
                    }),
                    Some(r) => Err(self.unexpected("SET NX", &r).into()),
                    None => Err(self.unexpected("SET NX", &OwnedFrame::Null).into()),
                },
            })
            .collect())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.delete(key)
    }

    fn remove_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let mut command: Vec<&[u8]> = Vec::with_capacity(full.len() + 1);
        command.push(b"DEL");
        command.extend(full.iter().map(|k| k.as_slice()));
        self.call(&[&command])?;
        Ok(())
    }

    fn sweep_expired(&self, _now: Instant) -> usize {
        0
    }

    fn stats(&self) -> NodeStats {
        let mut s = *self.stats.lock();
        s.errors = self.errors.load(Ordering::Relaxed);
        s.hits = self.hits.load(Ordering::Relaxed);
        s.misses = self.misses.load(Ordering::Relaxed);
        s
    }

    fn refresh(&self) {
        // INFO's sections, asked for by name: "INFO" alone would include
        // the slow ones (commandstats, latencystats) on newer servers.
        let info = self.call(&[
            &[b"INFO", b"memory"],
            &[b"INFO", b"stats"],
            &[b"INFO", b"keyspace"],
        ]);
        if let Ok(replies) = info {
            let text: String = replies
                .iter()
                .filter_map(reply_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
            *self.stats.lock() = Self::parse_info(&text);
        }
    }

    fn remote_addr(&self) -> Option<&str> {
        Some(self.pool.addr())
    }

    fn as_redis(&self) -> Option<&RedisStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_become_stats() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1M\r\nmaxmemory:0\r\n\
                    # Stats\r\nkeyspace_hits:7\r\nkeyspace_misses:3\r\nevicted_keys:2\r\nexpired_keys:5\r\n\
                    # Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\n";
        let s = RedisStore::parse_info(info);
        assert_eq!(
            (
                s.keys,
                s.bytes,
                s.max_bytes,
                s.hits,
                s.misses,
                s.evictions,
                s.expirations
            ),
            (12, 1 << 20, 0, 7, 3, 2, 5)
        );
    }

    #[test]
    fn a_ttl_in_the_past_has_no_px() {
        assert_eq!(
            RedisStore::px(Instant::now() - Duration::from_secs(1)),
            None
        );
        let px = RedisStore::px(Instant::now() + Duration::from_secs(2)).unwrap();
        let ms: u64 = String::from_utf8(px).unwrap().parse().unwrap();
        assert!((1..=2000).contains(&ms));
    }
}
