//! One connection's I/O loop: moves bytes between a may socket and a
//! [`Session`], and enforces time.
//!
//! This module owns reads, writes, timeouts and the closing handshake. It
//! makes no protocol decision (that is [`super::session`]) and runs no
//! request (that is [`super::service`]).
//!
//! # Timeouts
//!
//! The deadline follows the session's phase:
//! * **idle** (between requests): `Timeouts::idle` for the first byte of
//!   the next request, then the connection closes silently;
//! * **head**: the whole head must arrive within `Timeouts::head` of its
//!   first byte, however slowly it trickles in (a deadline, not a per-read
//!   timeout, so one byte every few seconds cannot hold a connection);
//! * **body**: likewise `Timeouts::body` from the end of the head.
//!
//! A head or body that misses its deadline gets 408 and a close
//! ([`crate::settings::Timeouts`] has the defaults). A write must finish
//! within `Timeouts::write`: a client that stops reading its replies is
//! disconnected, and until then it is back-pressured (the session stops
//! taking its requests).
//!
//! Deadlines are kept by the watchdog (`crate::watchdog`), to within its
//! tick: the connection stores its deadline before each wait, and the
//! watchdog shuts the socket down when it passes. Reads and writes carry no
//! socket timeout, so none arms a timer.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::net::TcpStream;

use super::service::CacheService;
use super::session::{Phase, Session, Step};
use super::Shared;
use crate::watchdog::Guard;

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends after the last reply, so the kernel does not answer
/// those bytes with a reset that could destroy the reply in flight.
const LINGER: Duration = Duration::from_millis(500);

/// Bytes read at most while lingering.
const LINGER_BYTES: usize = 256 << 10;

/// Counts the connection as having a request under way while it lives
/// (for the shutdown drain).
struct InFlight<'a>(&'a Shared, bool);

impl InFlight<'_> {
    fn set(&mut self, busy: bool) {
        if busy != self.1 {
            self.1 = busy;
            // Relaxed: a counter read by the drain loop, which only needs
            // to see it reach zero eventually; no data is published.
            if busy {
                self.0.in_flight.fetch_add(1, Ordering::Relaxed);
            } else {
                self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// How long a finished connection's coroutine stays parked, socket shut
/// down but not yet dropped, before it ends. See [`retire`].
const RETIRE_GRACE: Duration = Duration::from_millis(250);

/// Ends a connection: shuts the socket down (the client sees the close at
/// once), then keeps the coroutine and its stream alive for
/// [`RETIRE_GRACE`] before dropping them.
///
/// Why: may 0.3's I/O wait registers the parked coroutine with the event
/// loop (`io_data.co.store(co)`) and then, still on the registering
/// thread, reads the stream's `IoData` and the coroutine's cancel slot
/// (`cancel.set_io(io_data.clone())` in `SocketRead::subscribe` and
/// `RawIoBlock::subscribe`). If the event fires on the other worker in
/// between, the coroutine runs there; should it finish and free its stack
/// before the registering thread resumes (a thread descheduled on a busy
/// machine), that thread reads freed memory. Under load this crashed the
/// server (SIGSEGV in `socket_read.rs`, a few runs in a hundred of
/// `tests/http_ketama.rs` in a debug build). Parking the coroutine after
/// the connection is done keeps both alive far longer than any such
/// window; the socket is already shut down, so the client is not kept
/// waiting, and the cost is one parked coroutine per connection closed in
/// the last quarter second.
pub(super) fn retire(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
    may::coroutine::sleep(RETIRE_GRACE);
    drop(stream);
}

/// Serves one connection until it closes (the caller then [`retire`]s the
/// stream).
pub(super) fn serve(stream: &mut TcpStream, shared: Arc<Shared>) {
    let timeouts = shared.config.settings.timeouts;
    // Replies are written whole, one write per batch: Nagle would only
    // delay the last segment of each.
    let _ = stream.set_nodelay(true);
    // Deadlines are the watchdog's (see its module docs): no socket
    // timeouts, so no timer per read.
    let Ok(second) = stream.inner().try_clone() else {
        return;
    };
    let watch = shared.watchdog.register(second);
    let mut session = Session::new(
        CacheService::new(shared.clone()),
        shared.config.session_limits(),
    );
    let mut in_flight = InFlight(&shared, false);
    // When the current phase began (the deadline's origin).
    let mut phase = Phase::Idle;
    let mut since = Instant::now();
    let mut date = super::date::Cached::default();
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            session.stop_after_reply();
        }
        match session.advance() {
            Step::Read(now_in) => {
                if write_out(stream, &mut session, &watch, timeouts.write).is_err() {
                    return;
                }
                let now = Instant::now();
                if now_in != phase || phase == Phase::Idle {
                    phase = now_in;
                    since = now;
                }
                in_flight.set(phase != Phase::Idle);
                watch.reading_until(
                    since
                        + match phase {
                            Phase::Idle => timeouts.idle,
                            Phase::Head => timeouts.head,
                            Phase::Body => timeouts.body,
                        },
                );
                match stream.read(session.spare()) {
                    Ok(n) if n > 0 && !watch.fired() => {
                        session.filled(n);
                        // Stamp replies with the date of their request's
                        // arrival, formatted at most once a second.
                        session.set_date(date.now());
                    }
                    // End of file: the client's, or the watchdog's.
                    Ok(_) if watch.fired() && phase != Phase::Idle => session.timed_out(),
                    Ok(_) | Err(_) => return,
                }
            }
            Step::Flush => {
                if write_out(stream, &mut session, &watch, timeouts.write).is_err() {
                    return;
                }
            }
            Step::Close => {
                if write_out(stream, &mut session, &watch, timeouts.write).is_ok() {
                    linger(stream);
                }
                return;
            }
        }
    }
}

/// Writes all pending output (or fails: the client is gone or stopped
/// reading for longer than the write timeout).
fn write_out(
    stream: &mut TcpStream,
    session: &mut Session<CacheService>,
    watch: &Guard,
    limit: Duration,
) -> io::Result<()> {
    let out = session.output();
    if out.is_empty() {
        return Ok(());
    }
    watch.writing_for(limit);
    let result = stream.write_all(out);
    let n = out.len();
    session.consume_output(n);
    result
}

/// Half-closes, then reads and discards briefly so that what the client
/// already sent cannot turn the close into a reset that destroys the
/// reply it has not read yet.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}
