//! Socket deadlines without a timer per read: a coarse watchdog.
//!
//! may arms and disarms a timer for every read or write that has a socket
//! timeout. That costs time (on the HTTP side every idle keep-alive read is
//! such a read: 0.84x the bare server's pipelined throughput with them,
//! 0.96x without), and may 0.3's I/O timers are not safe when a wait
//! completes on another worker than the one that armed it: the completing
//! worker removes the timer from a list only its owner may pop, which
//! under load failed an assertion inside may (a Redis client stress run
//! aborted that way). So no socket of ours has a may timeout. Instead each
//! socket publishes the deadline of what it is waiting for in a [`Watch`]
//! (one atomic store), and one thread per watchdog looks at every watch
//! each tick and shuts down the socket of any watch past its deadline: a
//! read side shutdown for a read (the blocked read returns end of file,
//! and the owner sees [`Guard::fired`]), both sides for a write (the
//! blocked write fails). Deadlines are therefore kept to within one tick.
//!
//! Users: the HTTP server's connections (`http::conn`, a 100 ms tick) and
//! the Redis client's sockets (`node::resp`, a 10 ms tick, since command
//! timeouts are often a few hundred milliseconds).
//!
//! # Orderings
//!
//! `deadline` is written by the socket's owner (Relaxed) and read by the
//! watchdog (Relaxed): a stale value only moves a shutdown by one tick.
//! `fired` is set (Release) before the shutdown and read (Acquire) by the
//! owner after its read or write returned, so an owner that sees end of
//! file caused by the watchdog also sees why.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// "No deadline".
const NONE: u64 = u64::MAX;

/// One socket's deadline, as the watchdog sees it.
pub(crate) struct Watch {
    /// Milliseconds since the watchdog's start, or [`NONE`].
    deadline: AtomicU64,
    /// Shut both sides (a write is waiting) rather than the read side.
    writing: AtomicBool,
    /// Set when the watchdog shut the socket down.
    fired: AtomicBool,
    /// A second descriptor of the watched socket (shutdown acts on the
    /// socket, so this reaches the blocked owner's reads).
    socket: std::net::TcpStream,
}

impl Watch {
    /// True once the watchdog has cut the socket off.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// The registry and its thread.
pub(crate) struct Watchdog {
    start: Instant,
    watches: Mutex<HashMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
}

/// A socket's registration; dropping it unregisters.
pub(crate) struct Guard {
    dog: Arc<Watchdog>,
    id: u64,
    watch: Arc<Watch>,
}

impl Watchdog {
    /// A watchdog that looks every `tick`, on a thread named `name` that
    /// runs while the returned `Arc` lives.
    ///
    /// # Panics
    ///
    /// If the OS cannot start a thread.
    pub(crate) fn start(name: &str, tick: Duration) -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            start: Instant::now(),
            watches: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let weak: Weak<Watchdog> = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                std::thread::sleep(tick);
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

    /// Registers a socket; `socket` is a second descriptor of it.
    pub(crate) fn register(self: &Arc<Self>, socket: std::net::TcpStream) -> Guard {
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
    /// The owner now waits to read until `at` at the latest.
    pub(crate) fn reading_until(&self, at: Instant) {
        self.set(at, false);
    }

    /// The owner now waits for a write, for at most `limit`.
    pub(crate) fn writing_for(&self, limit: Duration) {
        self.set(Instant::now() + limit, true);
    }

    /// The owner now waits for a write until `at` at the latest.
    pub(crate) fn writing_until(&self, at: Instant) {
        self.set(at, true);
    }

    /// The owner waits for nothing (an idle pooled socket).
    pub(crate) fn idle(&self) {
        self.watch.deadline.store(NONE, Ordering::Relaxed);
    }

    fn set(&self, at: Instant, writing: bool) {
        let ms = at.saturating_duration_since(self.dog.start).as_millis();
        self.watch.writing.store(writing, Ordering::Relaxed);
        self.watch
            .deadline
            .store(u64::try_from(ms).unwrap_or(NONE - 1), Ordering::Relaxed);
    }

    /// True once the watchdog has cut the socket off.
    pub(crate) fn fired(&self) -> bool {
        self.watch.fired()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.dog.watches.lock().remove(&self.id);
    }
}
