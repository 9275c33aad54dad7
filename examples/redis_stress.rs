//! A stress run of the Redis client (`node::resp::Pool`) for the `may`
//! races `docs/redis.md` describes ("Two races in may"): coroutines and
//! plain threads call a few pools without pause, and between calls a
//! function fills 32 KiB of stack with `0xdeadbeef`, so a worker that reads
//! a socket through a stale stack slot faults on that pattern instead of
//! reading plausible memory. A panic anywhere aborts the process, so every
//! failure shows as a non-zero exit. Bounded in time.
//!
//! Start a few redis-servers first (127.0.0.1 only), then run, best in a
//! debug build (as the tests are) and beside a couple of busy loops
//! (`while :; do :; done`) so that workers get descheduled mid-wait:
//!
//! ```text
//! for p in 17301 17302 17303; do redis-server --port $p --save '' --appendonly no --daemonize yes; done
//! cargo run --example redis_stress -- 17301,17302,17303 [SECONDS=30] [COROUTINES=64] [CONNECTIONS=4]
//! ```
//!
//! It prints `DONE ok=N err=M` and exits 0 when no call panicked or
//! crashed; errors (timeouts under load) are counted, not fatal.
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache::node::resp::Pool;

/// One step of xorshift64: the program's only randomness.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Overwrites 32 KiB of this stack with a recognisable pattern.
#[inline(never)]
fn smash_stack(seed: u64) -> u64 {
    let mut block = [0xdead_beef_dead_beef_u64; 4096];
    block[(seed % 4096) as usize] ^= seed;
    black_box(&mut block);
    block[(seed % 7) as usize]
}

/// One call with a random command shape on a random pool; true if it
/// succeeded.
fn one_call(pools: &[Pool], rng: &mut u64, big: &[u8]) -> bool {
    let pool = &pools[(next(rng) % pools.len() as u64) as usize];
    let key = format!("stress:{}", next(rng) % 10_000);
    let key = key.as_bytes();
    let result = match next(rng) % 5 {
        0 => pool.call(&[&[b"GET", key]]),
        1 => pool.call(&[&[b"SET", key, b"v"]]),
        2 => {
            let len = (next(rng) % big.len() as u64) as usize;
            pool.call(&[&[b"SET", key, &big[..len]]])
        }
        3 => pool.call(&[
            &[b"GET", key],
            &[b"INCR", b"stress:counter"],
            &[b"GET", key],
            &[b"PING"],
        ]),
        _ => pool.call(&[&[b"PING"]]),
    };
    result.is_ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(ports) = args.get(1) else {
        eprintln!("redis_stress: give the redis-servers' ports, e.g. 17301,17302,17303");
        std::process::exit(2);
    };
    let number = |at: usize, default: u64| -> u64 {
        args.get(at).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("redis_stress: argument {at} ({s}) is not a number");
                std::process::exit(2);
            })
        })
    };
    let seconds = number(2, 30);
    let coroutines = number(3, 64);
    let connections = number(4, 4) as usize;

    // Any panic (ours or the runtime's) ends the run with a failure.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    ringcache::http::configure_runtime(2, 256 << 10);

    let pools: Arc<Vec<Pool>> = Arc::new(
        ports
            .split(',')
            .map(|p| {
                Pool::new(
                    &format!("127.0.0.1:{p}"),
                    connections,
                    Duration::from_secs(2),
                )
                .unwrap_or_else(|e| {
                    eprintln!("redis_stress: {e}");
                    std::process::exit(2);
                })
            })
            .collect(),
    );
    let big = Arc::new(vec![b'x'; 40 << 10]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));

    let work = {
        let (pools, big, stop, ok, err) = (
            pools.clone(),
            big.clone(),
            stop.clone(),
            ok.clone(),
            err.clone(),
        );
        move |seed: u64| {
            let mut rng = seed | 1;
            let mut sink = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let counter = if one_call(&pools, &mut rng, &big) {
                    &ok
                } else {
                    &err
                };
                counter.fetch_add(1, Ordering::Relaxed);
                sink = sink.wrapping_add(smash_stack(next(&mut rng)));
                if next(&mut rng) % 16 == 0 {
                    may::coroutine::yield_now();
                }
            }
            black_box(sink);
        }
    };

    let mut coroutine_handles = Vec::new();
    for i in 0..coroutines {
        let work = work.clone();
        coroutine_handles.push(may::go!(move || work(0x9e37_79b9 * (i + 1))));
    }
    let threads: Vec<_> = (0..2u64)
        .map(|i| {
            let work = work.clone();
            std::thread::spawn(move || work(0x51_7cc1 * (i + 1)))
        })
        .collect();

    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for h in coroutine_handles {
        let _ = h.join();
    }
    for t in threads {
        let _ = t.join();
    }
    println!(
        "DONE ok={} err={}",
        ok.load(Ordering::Relaxed),
        err.load(Ordering::Relaxed)
    );
}
