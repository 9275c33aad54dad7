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
//! hits, misses, evictions and expirations are the server's own counters
//! (`keyspace_hits`, `keyspace_misses`, `evicted_keys`, `expired_keys`).

use std::sync::atomic::{AtomicU64, Ordering};
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
        };
        let pong = store.call(&[&[b"PING"]])?;
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

    /// Sends `commands`; every error reply becomes a [`RemoteError`].
    fn call(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, RemoteError> {
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
        match &replies[0] {
            OwnedFrame::Null => Ok(None),
            OwnedFrame::BulkString(v) => Ok(Some(v.as_slice().into())),
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
        let c = cursor.to_string();
        let replies = self.call(&[&[
            b"SCAN",
            c.as_bytes(),
            b"MATCH",
            &self.pattern,
            b"COUNT",
            SCAN_COUNT,
        ]])?;
        let (next, keys) = match &replies[0] {
            OwnedFrame::Array(parts) if parts.len() == 2 => {
                let next = reply_bytes(&parts[0])
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                match (next, &parts[1]) {
                    (Some(next), OwnedFrame::Array(keys)) => (next, keys),
                    _ => return Err(self.unexpected("SCAN", &replies[0]).into()),
                }
            }
            r => return Err(self.unexpected("SCAN", r).into()),
        };
        let mut page = ScanPage {
            keys: Vec::new(),
            examined: keys.len(),
            next: (next != 0).then_some(next),
        };
        for k in keys {
            let Some(full) = reply_bytes(k) else {
                return Err(self.unexpected("SCAN", k).into());
            };
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
