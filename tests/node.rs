//! The embedded cache node: memory cap and eviction, TTL, stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache::hash::key_hash;
use ringcache::node::{MemStore, SetOutcome, StoreError, Value, ENTRY_OVERHEAD};

/// `Store::set` with the key's xxh3 placement hash, as a cluster would
/// route it (the store itself never hashes keys).
trait Put {
    fn put(
        &self,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError>;
}

impl Put for MemStore {
    fn put(
        &self,
        key: &[u8],
        value: Value,
        expires_at: Option<Instant>,
    ) -> Result<SetOutcome, StoreError> {
        self.set(key_hash(key), key, value, expires_at)
    }
}

fn cost(key: &[u8], value_len: usize) -> usize {
    key.len() + value_len + ENTRY_OVERHEAD
}

/// A write flood from several threads never leaves a node over its cap, and
/// the evictions it reports account for every entry that is gone.
#[test]
fn eviction_keeps_a_node_under_its_cap_under_a_write_flood() {
    let cap = 1 << 20;
    let node = Arc::new(MemStore::new(cap));
    let per_thread = 20_000;
    std::thread::scope(|s| {
        for t in 0..4 {
            let node = node.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    let key = format!("t{t}-{i}");
                    node.put(key.as_bytes(), vec![7u8; 100].into(), None)
                        .unwrap();
                    // After a single writer's set returns, its own evictions
                    // are done; others may be mid-write, so allow one entry
                    // per concurrent writer above the cap.
                    assert!(node.stats().bytes <= cap + 4 * cost(key.as_bytes(), 100));
                }
            });
        }
    });
    let stats = node.stats();
    assert!(stats.bytes <= cap, "{stats:?}");
    assert!(stats.evictions > 0, "the flood never hit the cap");
    assert_eq!(stats.keys as u64 + stats.evictions, 4 * per_thread as u64);
    // Bytes are exactly the charge of what is stored.
    let mut charged = 0;
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let page = node.scan(c, &|_| true);
        for (_, k) in &page.keys {
            charged += cost(k, node.export(k).unwrap().value.len());
        }
        cursor = page.next;
    }
    assert_eq!(charged, stats.bytes);
}

/// Sampled LRU: entries read recently survive a flood that evicts most of
/// the node, far more often than entries never read again.
#[test]
fn eviction_prefers_entries_not_accessed_recently() {
    let node = MemStore::new(2_000 * cost(b"key-0000", 64));
    for i in 0..1_000 {
        node.put(format!("key-{i:04}").as_bytes(), vec![0; 64].into(), None)
            .unwrap();
    }
    // Touch the first half while writing the flood, so they stay warm.
    for round in 0..10 {
        for i in 0..500 {
            node.get(format!("key-{i:04}").as_bytes());
        }
        for j in 0..300 {
            node.put(
                format!("flood-{round}-{j:04}").as_bytes(),
                vec![0; 64].into(),
                None,
            )
            .unwrap();
        }
    }
    let alive = |range: std::ops::Range<usize>| {
        range
            .filter(|i| node.export(format!("key-{i:04}").as_bytes()).is_some())
            .count()
    };
    let (warm, cold) = (alive(0..500), alive(500..1000));
    assert!(node.stats().evictions > 0);
    assert!(
        warm > 2 * cold.max(1),
        "warm {warm} vs cold {cold} survivors"
    );
}

/// An entry larger than the whole cap is refused, and nothing is evicted
/// for it.
#[test]
fn an_entry_larger_than_the_cap_is_refused() {
    let node = MemStore::new(1000);
    node.put(b"small", vec![1; 10].into(), None).unwrap();
    let err = node.put(b"big", vec![0; 1000].into(), None).unwrap_err();
    assert!(matches!(
        err,
        StoreError::TooLarge {
            max_bytes: 1000,
            ..
        }
    ));
    assert!(err.to_string().contains("at most 1000"));
    assert_eq!(node.stats().keys, 1);
}

/// Expired entries are never returned, are counted, and are reclaimed by the
/// sweep even if nobody reads them.
#[test]
fn ttl_expiry_is_lazy_and_swept() {
    let node = MemStore::new(1 << 20);
    let soon = Some(Instant::now() + Duration::from_millis(50));
    node.put(b"read-later", b"a".as_slice().into(), soon)
        .unwrap();
    node.put(b"never-read", b"b".as_slice().into(), soon)
        .unwrap();
    node.put(b"forever", b"c".as_slice().into(), None).unwrap();
    assert!(node.get(b"read-later").is_some());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(node.get(b"read-later"), None, "expired entry returned");
    assert_eq!(node.export(b"never-read"), None);
    assert_eq!(node.stats().expirations, 1);
    assert_eq!(
        node.stats().keys,
        2,
        "lazy expiry removed the read entry only"
    );
    assert_eq!(node.sweep_expired(Instant::now()), 1);
    let stats = node.stats();
    assert_eq!((stats.keys, stats.expirations), (1, 2));
    assert_eq!(stats.bytes, cost(b"forever", 1));
    // Setting over an expired entry creates the key anew.
    node.put(b"gone", b"x".as_slice().into(), Some(Instant::now()))
        .unwrap();
    assert_eq!(
        node.put(b"gone", b"y".as_slice().into(), None),
        Ok(SetOutcome::Created)
    );
}

/// Hits, misses, keys and bytes add up over a known sequence of operations.
#[test]
fn stats_add_up() {
    let node = MemStore::new(1 << 20);
    assert_eq!(
        node.put(b"a", b"1".as_slice().into(), None),
        Ok(SetOutcome::Created)
    );
    assert_eq!(
        node.put(b"a", b"22".as_slice().into(), None),
        Ok(SetOutcome::Replaced)
    );
    assert_eq!(
        node.put(b"b", b"3".as_slice().into(), None),
        Ok(SetOutcome::Created)
    );
    for _ in 0..3 {
        assert!(node.get(b"a").is_some());
    }
    for _ in 0..2 {
        assert!(node.get(b"zzz").is_none());
    }
    assert!(node.delete(b"b"));
    assert!(!node.delete(b"b"));
    let s = node.stats();
    assert_eq!((s.hits, s.misses, s.keys), (3, 2, 1));
    assert_eq!(s.bytes, cost(b"a", 2));
    assert_eq!((s.evictions, s.expirations), (0, 0));
    // Relocation primitives do not count as hits or misses.
    node.export(b"a");
    node.export(b"nope");
    assert_eq!(node.stats().hits, 3);
    assert_eq!(node.stats().misses, 2);
}

/// `import` never overwrites a live value (relocation must not clobber a
/// newer write), but does fill an absent or expired key.
#[test]
fn import_only_fills_absent_keys() {
    use ringcache::node::{ImportOutcome, Imported, Key, MovedEntry};
    let node = MemStore::new(1 << 20);
    node.put(b"k", b"new".as_slice().into(), None).unwrap();
    let old = MovedEntry {
        value: b"old".as_slice().into(),
        expires_at: None,
        hash: key_hash(b"k"),
        last_access: 0,
    };
    let stored = Ok(Imported {
        outcome: ImportOutcome::Stored,
        evicted: 0,
    });
    assert_eq!(
        node.import(&Key::from(&b"k"[..]), old.clone()),
        Ok(Imported {
            outcome: ImportOutcome::Present,
            evicted: 0
        })
    );
    assert_eq!(node.get(b"k").as_deref(), Some(b"new".as_slice()));
    assert_eq!(node.import(&Key::from(&b"j"[..]), old.clone()), stored);
    node.put(b"e", b"x".as_slice().into(), Some(Instant::now()))
        .unwrap();
    assert_eq!(node.import(&Key::from(&b"e"[..]), old), stored);
    assert_eq!(node.get(b"e").as_deref(), Some(b"old".as_slice()));
}

/// The batch forms relocation uses agree with the one-key forms: a node
/// grown through many table resizes (which rehash from each entry's stored
/// map hash, not from its key) still finds every key; `export_many` hands
/// back each live entry with its value, TTL and placement hash, `None` for
/// absent and expired keys; `remove_many` removes exactly the keys given
/// and gives their bytes back.
#[test]
fn batch_export_and_remove_agree_with_single_key_forms() {
    use ringcache::node::Key;
    let node = MemStore::new(1 << 30);
    let ttl = Instant::now() + Duration::from_secs(3600);
    let keys: Vec<Key> = (0..20_000)
        .map(|i| Key::from(format!("key:{i:08}").into_bytes()))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let expiry = (i % 3 == 0).then_some(ttl);
        node.put(k, format!("v{i}").into_bytes().into(), expiry)
            .unwrap();
    }
    node.put(b"expired", b"x".as_slice().into(), Some(Instant::now()))
        .unwrap();
    assert_eq!(node.len(), keys.len() + 1);
    for k in &keys {
        assert!(node.get(k).is_some(), "lost {:?} after growth", k);
    }
    let mut asked: Vec<Key> = keys.iter().step_by(7).cloned().collect();
    asked.push(Key::from(&b"absent"[..]));
    asked.push(Key::from(&b"expired"[..]));
    let exported = node.export_many(&asked);
    assert_eq!(exported.len(), asked.len());
    for (k, e) in asked.iter().zip(&exported) {
        assert_eq!(e, &node.export(k), "{k:?}");
    }
    let first = exported[0].as_ref().expect("key:00000000 is live");
    assert_eq!(&*first.value, b"v0");
    assert_eq!(
        first.expires_at,
        Some(ttl),
        "the TTL survives to the nanosecond"
    );
    assert_eq!(first.hash, key_hash(b"key:00000000"));
    assert!(exported[exported.len() - 2].is_none() && exported[exported.len() - 1].is_none());

    let before = node.stats().bytes;
    let removed: Vec<Key> = keys.iter().step_by(2).cloned().collect();
    let freed: usize = removed
        .iter()
        .map(|k| cost(k, node.get(k).unwrap().len()))
        .sum();
    node.remove_many(&removed);
    assert_eq!(node.stats().bytes, before - freed);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(node.get(k).is_some(), i % 2 == 1, "{k:?}");
    }
}
