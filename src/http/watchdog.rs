//! Connection deadlines without a timer per read: a coarse watchdog.
//!
//! may arms and disarms a timer for every read or write that has a socket
//! timeout, and every idle keep-alive read is such a read; under pipelined
//! load that cost showed (0.84x against 0.96x of the bare server without
//! it). Instead each connection publishes the deadline of what it is
//! waiting for in a [`Watch`] (one atomic store), and one thread looks at
//! every watch each [`TICK`] and shuts down the socket of any connection
//! past its deadline: a read side shutdown for a read (the blocked read
//! returns end of file, and the connection sees [`Watch::fired`]), both
//! sides for a write (the blocked write fails). Deadlines are therefore
//! kept to within one tick.
//!
//! # Orderings
//!
//! `deadline` is written by the connection (Relaxed) and read by the
//! watchdog (Relaxed): a stale value only moves a shutdown by one tick.
//! `fired` is set (Release) before the shutdown and read (Acquire) by the
//! connection after its read returned, so a connection that sees end of
//! file caused by the watchdog also sees why.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often the watchdog looks; deadlines are kept to within this.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// "No deadline".
const NONE: u64 = u64::MAX;

/// One connection's deadline, as the watchdog sees it.
pub(super) struct Watch {
    /// Milliseconds since the watchdog's start, or [`NONE`].
    deadline: AtomicU64,
    /// Shut both sides (a write is waiting) rather than the read side.
    writing: AtomicBool,
    /// Set when the watchdog shut the socket down.
    fired: AtomicBool,
    /// A second descriptor of the connection's socket (shutdown acts on
    /// the socket, so this reaches the blocked coroutine's reads).
    socket: std::net::TcpStream,
}

impl Watch {
    /// True once the watchdog has cut the connection off.
    pub(super) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// The registry and its thread.
pub(super) struct Watchdog {
    start: Instant,
    watches: Mutex<HashMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
}

/// A connection's registration; dropping it unregisters.
pub(super) struct Guard {
    dog: Arc<Watchdog>,
    id: u64,
    watch: Arc<Watch>,
}

impl Watchdog {
    /// A watchdog whose thread runs while the returned `Arc` lives.
    ///
    /// # Panics
    ///
    /// If the OS cannot start a thread.
    pub(super) fn start() -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            start: Instant::now(),
            watches: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let weak: Weak<Watchdog> = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name("ringcache-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(dog) => dog.tick(),
                    None => return,
                }
            })
            .expect("starting the watchdog thread");
        dog
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn tick(&self) {
        let now = self.now_ms();
        for watch in self.watches.lock().values() {
            let deadline = watch.deadline.load(Ordering::Relaxed);
            if deadline <= now && !watch.fired.load(Ordering::Relaxed) {
                watch.fired.store(true, Ordering::Release);
                let how = if watch.writing.load(Ordering::Relaxed) {
                    Shutdown::Both
                } else {
                    Shutdown::Read
                };
                let _ = watch.socket.shutdown(how);
            }
        }
    }

    /// Registers a connection whose socket `socket` is a second descriptor
    /// of.
    pub(super) fn register(self: &Arc<Self>, socket: std::net::TcpStream) -> Guard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            deadline: AtomicU64::new(NONE),
            writing: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            socket,
        });
        self.watches.lock().insert(id, watch.clone());
        Guard {
            dog: self.clone(),
            id,
            watch,
        }
    }
}

impl Guard {
    /// The connection now waits to read until `at` at the latest.
    pub(super) fn reading_until(&self, at: Instant) {
        self.set(at, false);
    }

    /// The connection now waits for a write, for at most `limit`.
    pub(super) fn writing_for(&self, limit: Duration) {
        self.set(Instant::now() + limit, true);
    }

    fn set(&self, at: Instant, writing: bool) {
        let ms = at.saturating_duration_since(self.dog.start).as_millis();
        self.watch.writing.store(writing, Ordering::Relaxed);
        self.watch
            .deadline
            .store(u64::try_from(ms).unwrap_or(NONE - 1), Ordering::Relaxed);
    }

    /// True once the watchdog has cut the connection off.
    pub(super) fn fired(&self) -> bool {
        self.watch.fired()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.dog.watches.lock().remove(&self.id);
    }
}
