//! What the benchmarks share: the CPU accounting that tells a slow
//! benchmark from one that lost its core to other processes (this is a
//! shared 2-core machine), and the numbered keys of the cluster and node
//! benchmarks and the stride the cluster's gets walk them by (which
//! `examples/get_path` shares too).
//!
//! * [`placement_hash_then_get`] is the floor of a get routed as the
//!   cluster routes.
//! * [`bench_noted`] runs one criterion benchmark and prints the share of
//!   it the thread spent waiting for a CPU.
//! * [`ThreadClock`] and [`Tally`] split a measured thread's time into
//!   on-CPU, waiting for a CPU and blocked, summed over a benchmark's
//!   samples and printed after it.
//! * [`sched_clocks`] reads the calling thread's clocks (Linux only;
//!   elsewhere there are none and nothing is printed).
//!
//! Include it with `mod support;` beside a benchmark's measurements.

// Each benchmark compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, BenchmarkId};
use ringcache::hash::key_hash;
use ringcache::node::MemStore;

/// The stride between consecutive gets' keys in the cluster benchmarks
/// and `examples/get_path`: a prime, so a walk visits every key before it
/// repeats one (for key counts it does not divide).
pub const STRIDE: usize = 104_729;

/// The least a get routed as the cluster routes does: `key`'s placement
/// hash (unseeded, the same in every process), then `store`'s get, whose
/// map hashes the key again with its own seed. A layer of the cluster
/// benchmark's get groups and of `examples/get_path`.
#[inline]
pub fn placement_hash_then_get(store: &MemStore, key: &[u8]) {
    black_box(key_hash(key));
    drop(black_box(store.get(key)));
}

/// `count` keys `user:00000000`, `user:00000001`, ...: fixed-width (13
/// bytes below 10^8 keys), the same on every run.
pub fn numbered_keys(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("user:{i:08}").into_bytes())
        .collect()
}

/// `group.bench_function(id, f)`, then prints the share of that run (warm
/// up, samples and analysis) the benchmark thread spent runnable but
/// waiting for a CPU, i.e. while other processes had both cores. A figure
/// from a run that waited much is disturbed; rerun it.
pub fn bench_noted<F>(group: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId, mut f: F)
where
    F: FnMut(&mut Bencher<'_, WallTime>),
{
    let before = ThreadClock::now();
    // Criterion calls `f` only when the benchmark passes the run's filter.
    let ran = Cell::new(false);
    group.bench_function(id, |b| {
        ran.set(true);
        f(b)
    });
    if !ran.get() {
        return;
    }
    if let (Some((_, wait0)), Some((_, wait1))) = (before.sched, sched_clocks()) {
        let share = (wait1 - wait0).as_secs_f64() / before.wall.elapsed().as_secs_f64();
        println!(
            "    (waited for a CPU {:.0}% of this benchmark)",
            share * 100.0
        );
    }
}

/// A thread's clocks at one moment: wall time, the thread's own CPU time,
/// and how long it has been runnable but waiting for a CPU. The split
/// tells a slow reader apart from a reader that lost its core to other
/// processes: this is a shared 2-core machine.
pub struct ThreadClock {
    /// When the clocks were read.
    wall: Instant,
    /// `None` where the thread clocks are not available (not Linux).
    sched: Option<(Duration, Duration)>,
}

impl ThreadClock {
    /// Reads the clocks of the calling thread (a few microseconds; call it
    /// outside measured loops).
    pub fn now() -> ThreadClock {
        ThreadClock {
            sched: sched_clocks(),
            wall: Instant::now(),
        }
    }

    /// Adds the time since `self` was taken, on the same thread, and
    /// `lookups`, to `tally`.
    pub fn add_to(&self, tally: &Tally, lookups: u64) {
        let wall = self.wall.elapsed();
        if let (Some((cpu0, wait0)), Some((cpu1, wait1))) = (self.sched, sched_clocks()) {
            tally.add(wall, cpu1 - cpu0, wait1 - wait0, lookups);
        }
    }
}

/// The calling thread's (CPU time, time waiting for a CPU). CPU time is
/// `CLOCK_THREAD_CPUTIME_ID` (exact; the schedstat file's CPU figure can
/// lag by a scheduler tick); the wait is the kernel's `run_delay` from
/// `/proc/thread-self/schedstat`, current whenever the thread is running.
#[cfg(target_os = "linux")]
pub fn sched_clocks() -> Option<(Duration, Duration)> {
    let mut tp = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `tp` is a live, writable `timespec` and the clock id is a
    // valid one; `clock_gettime` writes nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut tp) } != 0 {
        return None;
    }
    let cpu = Duration::new(
        u64::try_from(tp.tv_sec).ok()?,
        u32::try_from(tp.tv_nsec).ok()?,
    );
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let waiting = stat.split_whitespace().nth(1)?.parse().ok()?;
    Some((cpu, Duration::from_nanos(waiting)))
}

/// See the Linux version; elsewhere there are no per-thread clocks here.
#[cfg(not(target_os = "linux"))]
pub fn sched_clocks() -> Option<(Duration, Duration)> {
    None
}

/// Reader and writer time summed over one benchmark's samples, printed
/// after it by [`Tally::report`]: criterion reports only the median wall
/// time, which on a shared machine mixes the ring's cost with time the
/// reader spent off its core.
pub struct Tally {
    /// Reader nanoseconds, wall clock.
    wall: AtomicU64,
    /// Reader nanoseconds on a CPU.
    cpu: AtomicU64,
    /// Reader nanoseconds runnable but waiting for a CPU.
    waiting: AtomicU64,
    /// Lookups the readers did.
    lookups: AtomicU64,
    /// Membership changes the writer made while readers were timed.
    edits: AtomicU64,
}

impl Tally {
    /// An empty tally, for a `static`.
    pub const fn new() -> Tally {
        Tally {
            wall: AtomicU64::new(0),
            cpu: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            edits: AtomicU64::new(0),
        }
    }

    /// Counts `edits` membership changes of the writer.
    pub fn add_edits(&self, edits: u64) {
        self.edits.fetch_add(edits, Ordering::Relaxed);
    }

    fn add(&self, wall: Duration, cpu: Duration, waiting: Duration, lookups: u64) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.wall.fetch_add(ns(wall), Ordering::Relaxed);
        self.cpu.fetch_add(ns(cpu), Ordering::Relaxed);
        self.waiting.fetch_add(ns(waiting), Ordering::Relaxed);
        self.lookups.fetch_add(lookups, Ordering::Relaxed);
    }

    /// Prints the per-lookup split of reader time (wall = on-CPU + waiting
    /// for a CPU + the rest, which is blocked on a lock or the clocks'
    /// error) and the writer's rate, then resets the tally. A reader that
    /// yields while spinning on a lock (parking_lot does, before parking)
    /// shows that time as waiting for a CPU too.
    pub fn report(&self, label: &str) {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed) as f64;
        let (wall, cpu, waiting) = (take(&self.wall), take(&self.cpu), take(&self.waiting));
        let (lookups, edits) = (take(&self.lookups), take(&self.edits));
        if lookups == 0.0 {
            return;
        }
        let per = |ns: f64| ns / lookups;
        let mut line = format!(
            "{label}: reader ns/lookup: wall {:.1} = on-CPU {:.1} + waiting for a CPU {:.1} \
             + blocked/other {:.1}",
            per(wall),
            per(cpu),
            per(waiting),
            per(wall - cpu - waiting),
        );
        if edits > 0.0 {
            // `wall` is per reader thread; with one reader, the writer ran
            // for about that long.
            line += &format!("; writer {:.0} membership changes/s", edits / (wall / 1e9));
        }
        println!("{line}");
    }
}
