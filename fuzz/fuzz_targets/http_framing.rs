//! Fuzzes HTTP/1.1 request framing: arbitrary bytes, split into reads at
//! arbitrary points, through the server's sans-I/O session
//! (`ringcache::http::session`) with a small echo service
//! (`ringcache::http::replay`).
//!
//! Checked for every input:
//! * nothing panics;
//! * the session never buffers beyond its limits (input, body, unsent
//!   replies: `replay` asserts them after every step);
//! * the same byte stream split differently yields the same requests, the
//!   same reply bytes, and the same close.
//!
//! Input format: the first byte `k` (mod 8) is how many split sizes follow,
//! one byte each (0 means "as much as the session takes"); the rest is the
//! byte stream a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcache::http::replay::replay;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();
    let whole = replay(stream, &[0]);
    if !sizes.is_empty() {
        assert_eq!(
            replay(stream, &sizes),
            whole,
            "split {sizes:?} changed the outcome"
        );
    }
    assert_eq!(
        replay(stream, &[1]),
        whole,
        "byte-at-a-time changed the outcome"
    );
});
