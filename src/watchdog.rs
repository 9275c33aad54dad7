//! Socket deadlines without a timer per read: a coarse watchdog.
//!
//! may arms and disarms a timer for every read or write that has a socket
//! timeout. That costs time (on the HTTP side every idle keep-alive read is
//! such a read: 0.84x the bare server's pipelined throughput with them,
//! 0.96x without), and may 0.3's I/O timers are not safe when a wait
//! completes on another worker than the one that armed it: the completing
//! worker removes the timer from a list only its owner may pop, which
//! under load failed an assertion inside may (a Redis client stress run
//! aborted that way). So no socket of ours has a may timeout (the Redis
//! client does not even use may's connect, see `node::resp`). Instead each
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
//! One word, `deadline`, holds the state: a deadline in milliseconds,
//! [`NONE`], or [`FIRED`]. The watchdog fires a watch by swapping the exact
//! deadline it read for `FIRED` (a compare-exchange), and only the winner
//! shuts the socket down. The owner changes the deadline by a
//! read-modify-write that leaves `FIRED` alone. So a firing and the
//! owner's next step are ordered one way or the other: an owner that
//! clears its deadline ([`Guard::idle`]) before the watchdog's exchange is
//! never shut down for it, and one that comes after sees `FIRED` and knows
//! its socket is gone (it must not reuse it). A deadline that is stale
//! for the watchdog only moves a shutdown by one tick.
//!
//! The owner stores `writing` before it publishes the deadline (Release);
//! the watchdog reads the deadline (Acquire) before `writing`, so the side
//! it shuts matches the wait that set that deadline or a later one. The
//! owner reads `FIRED` (Acquire) after its read or write returned, which
//! orders the shutdown's cause before the owner's conclusion.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// "No deadline".
const NONE: u64 = u64::MAX;

/// The watchdog has shut the socket down (final).
const FIRED: u64 = u64::MAX - 1;

/// The latest deadline that can be stored (a later one is clamped).
const LATEST: u64 = u64::MAX - 2;

/// One socket's deadline, as the watchdog sees it.
pub(crate) struct Watch {
    /// Milliseconds since the watchdog's start, [`NONE`] or [`FIRED`]
    /// (module docs, "Orderings").
    deadline: AtomicU64,
    /// Shut both sides (a write is waiting) rather than the read side.
    writing: AtomicBool,
    /// A second descriptor of the watched socket (shutdown acts on the
    /// socket, so this reaches the blocked owner's reads).
    socket: std::net::TcpStream,
}

impl Watch {
    /// True once the watchdog has cut the socket off.
    pub(crate) fn fired(&self) -> bool {
        self.deadline.load(Ordering::Acquire) == FIRED
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
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(LATEST)
    }

    fn tick(&self) {
        let now = self.now_ms();
        for watch in self.watches.lock().values() {
            // Acquire pairs with the owner's Release: `writing` below is
            // at least as new as this deadline.
            let deadline = watch.deadline.load(Ordering::Acquire);
            if deadline > now || deadline == FIRED {
                continue;
            }
            // Claim this very deadline: an owner that moved on since
            // (cleared or changed it) wins, and nothing is shut down.
            if watch
                .deadline
                .compare_exchange(deadline, FIRED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let how = if watch.writing.load(Ordering::Relaxed) {
                Shutdown::Both
            } else {
                Shutdown::Read
            };
            let _ = watch.socket.shutdown(how);
        }
    }

    /// Registers a socket; `socket` is a second descriptor of it.
    pub(crate) fn register(self: &Arc<Self>, socket: std::net::TcpStream) -> Guard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            deadline: AtomicU64::new(NONE),
            writing: AtomicBool::new(false),
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

    /// The owner waits for nothing (an idle pooled socket). Afterwards
    /// [`Guard::fired`] says whether the watchdog got there first: then
    /// the socket is shut down and must not be used again.
    pub(crate) fn idle(&self) {
        self.store(NONE);
    }

    fn set(&self, at: Instant, writing: bool) {
        // Rounded up, so a shutdown never comes before the deadline.
        let nanos = at.saturating_duration_since(self.dog.start).as_nanos();
        let ms = u64::try_from(nanos.div_ceil(1_000_000)).map_or(LATEST, |ms| ms.min(LATEST));
        self.watch.writing.store(writing, Ordering::Relaxed);
        self.store(ms);
    }

    /// Publishes `value` as the deadline unless the watch has fired.
    fn store(&self, value: u64) {
        // Release: `writing`, stored before, is visible with the deadline.
        let _ = self
            .watch
            .deadline
            .fetch_update(Ordering::Release, Ordering::Relaxed, |d| {
                (d != FIRED).then_some(value)
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A watchdog ticking every millisecond and a registration of one end
    /// of a fresh loopback connection (the other end is returned too, to
    /// keep the connection open).
    fn watched() -> (Arc<Watchdog>, Guard, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let dog = Watchdog::start("watchdog-test", Duration::from_millis(1));
        let guard = dog.register(client);
        (dog, guard, server)
    }

    #[test]
    fn a_passed_deadline_fires_and_stays_fired() {
        let (_dog, guard, _peer) = watched();
        guard.reading_until(Instant::now());
        let give_up = Instant::now() + Duration::from_secs(5);
        while !guard.fired() {
            assert!(Instant::now() < give_up, "the watchdog never fired");
            std::thread::sleep(Duration::from_millis(1));
        }
        // An owner that comes after the firing cannot clear it: the socket
        // is gone and must not be reused.
        guard.idle();
        guard.writing_until(Instant::now() + Duration::from_secs(60));
        assert!(guard.fired());
    }

    #[test]
    fn a_deadline_cleared_in_time_never_fires() {
        let (_dog, guard, _peer) = watched();
        for _ in 0..20 {
            guard.reading_until(Instant::now() + Duration::from_millis(50));
            guard.idle();
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(!guard.fired(), "fired on a cleared deadline");
    }
}
