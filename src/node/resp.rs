//! A RESP2 client for one Redis server: a small pool of connections on
//! `may` sockets, each used by one caller at a time, commands pipelined
//! within a call.
//!
//! This module owns the wire: connecting, framing (by the `redis-protocol`
//! crate, which encodes and decodes RESP2 from plain byte buffers), the
//! command timeout, and what a failure looks like ([`RemoteError`]). It knows
//! no command's meaning; [`super::redis`] does.
//!
//! # Why may sockets
//!
//! Requests run on `may` coroutines, which must not block their worker
//! thread: a `std::net::TcpStream` read would stall every coroutine of that
//! worker for a whole round trip (or the whole timeout, if the server
//! hangs). `may::net::TcpStream` parks the coroutine instead, and on a plain
//! thread (the mover, the stats poller) it parks the thread, so one client
//! serves both.
//!
//! # The pool
//!
//! Up to `connections` sockets per server; a call takes one for its
//! exclusive use (waiting, within the command timeout, when all are busy),
//! writes its commands at once, reads their replies, and gives the socket
//! back. A socket that failed in any way (timeout, reset, a reply that does
//! not parse) is never reused, since a late reply on it would answer the next
//! caller's command. Exclusive use per call is what nginx does with its
//! upstream keepalive pool; twemproxy instead multiplexes all clients onto
//! one pipelined connection per server. Exclusive sockets keep a hung
//! server's damage to the callers that asked it, and the relocation path,
//! which sends hundreds of commands per call, gets its pipelining within the
//! call. The default of 8 sockets per server is measured (docs/redis.md,
//! "Connections per server"): 1 or 2 gave half to nine tenths of its
//! throughput over loopback, 16 and 32 no more.
//!
//! # Sockets stay put
//!
//! `may` 0.3's I/O wait has a window: `subscribe` (which parks the caller)
//! stores the parked coroutine in the socket's event data and then, still
//! on the parking worker, reads that event data again through a reference
//! to the socket (`io_data.io_flag`, `cancel.set_io(io_data.clone())`). If
//! the reply arrives in between, another worker resumes the caller, which
//! may finish its call and move on before the parking worker takes its
//! next step (a worker descheduled on a busy machine). That step then
//! reads wherever the socket was. So a socket must not move, and its
//! memory must not be freed, right after a wait:
//!
//! * each connection is boxed for its whole life, so taking it out of the
//!   pool and putting it back moves only the box's pointer, never the
//!   socket (a `Conn` moved into and out of a call's stack frame would
//!   leave the parking worker reading a stack slot that later calls
//!   reuse);
//! * a connection is never dropped at once: a failed one, and every idle
//!   one of a pool that is dropped (a node removed from the cluster), is
//!   shut down (the server sees the close at once) and kept in one
//!   process-wide list for a quarter second, far longer than any such
//!   window. The list is pruned whenever a connection joins it or a new
//!   one is made, so the last few (already shut down) may keep their two
//!   descriptors each until then: no connection;
//! * `may`'s own connect has the same window (its connect state lives in
//!   the caller's frame) and arms an I/O timer (next section), so the
//!   client does not use it: a short-lived plain thread connects with
//!   std's `connect_timeout` while the caller waits on a channel, and the
//!   connected socket is then handed to `may`.
//!
//! `http::conn`'s `retire` keeps a finished connection's coroutine alive
//! for the same reason, on the server side.
//!
//! # Timeouts
//!
//! Every call has one deadline, the command timeout from its start: waiting
//! for a socket, connecting, writing and reading all count against it. A
//! server that is down answers with a refused connection at once; one that
//! hangs (stopped, or overloaded) costs its callers the timeout and no
//! more, give or take the watchdog's 10 ms tick.
//!
//! No socket carries a `may` timeout: may 0.3's I/O timers are not safe
//! when a wait completes on another worker than the one that armed it (a
//! stress run of this client aborted inside may's timer list). Each socket
//! is registered instead with one process-wide watchdog
//! (`src/watchdog.rs`), which shuts it down once the call's deadline has
//! passed; the blocked read or write then returns, and the call fails with
//! [`RemoteErrorKind::Timeout`]. A socket the watchdog shut down as its
//! call finished is retired, not pooled. Connecting is bounded by std's
//! `connect_timeout` (previous section). Waiting for a free socket uses a
//! coroutine timer (a different list), and only when every socket is busy.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

use crate::watchdog::{Guard, Watchdog};

/// A reply from the server.
pub type Reply = OwnedFrame;

/// How long a socket's memory outlives its use: a socket that is closed
/// (after a failure, or with its pool) is shut down at once and dropped
/// this long after. See "Sockets stay put" in the module docs.
const RETIRE_AFTER: Duration = Duration::from_millis(250);

/// How often the Redis sockets' watchdog looks: a call's deadline is kept
/// to within this.
const WATCHDOG_TICK: Duration = Duration::from_millis(10);

/// The process-wide watchdog of Redis sockets (module docs, "Timeouts").
fn watchdog() -> &'static Arc<Watchdog> {
    static DOG: OnceLock<Arc<Watchdog>> = OnceLock::new();
    DOG.get_or_init(|| Watchdog::start("ringcache-redis-watchdog", WATCHDOG_TICK))
}

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// How a call to a Redis server failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The address does not resolve, or the connection was refused.
    Connect,
    /// No reply within the command timeout.
    Timeout,
    /// The connection broke (reset, closed) or a reply did not parse.
    Io,
    /// The server answered with an error reply (`-ERR ...`, `-OOM ...`).
    Reply,
    /// Not tried: the health observer has marked the server down (failing
    /// checks), so callers fail at once instead of waiting on it.
    Down,
    /// Not tried: the node is ejected from the ring; whatever it holds is
    /// forfeit (it is cleared before it serves again).
    Ejected,
}

/// A failed call to a Redis server, with what a person needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// What went wrong.
    pub kind: RemoteErrorKind,
    /// The server's address as configured.
    pub addr: String,
    /// The details: the OS error, the timeout, or the server's error reply.
    pub detail: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RemoteErrorKind::Connect => "cannot connect",
            RemoteErrorKind::Timeout => "did not answer in time",
            RemoteErrorKind::Io => "connection failed",
            RemoteErrorKind::Reply => "answered with an error",
            RemoteErrorKind::Down => "is down",
            RemoteErrorKind::Ejected => "is ejected",
        };
        write!(f, "Redis server {} {what}: {}", self.addr, self.detail)
    }
}

impl std::error::Error for RemoteError {}

/// One open socket and the reply bytes read but not yet decoded. Always
/// boxed (see "Sockets stay put" in the module docs).
struct Conn {
    stream: may::net::TcpStream,
    /// The socket's registration with [`watchdog`], holding the deadline
    /// of the exchange under way.
    watch: Guard,
    buf: Vec<u8>,
    /// Start of the undecoded bytes in `buf`.
    at: usize,
}

/// Pooled connections to one Redis server.
pub struct Pool {
    addr: String,
    resolved: Vec<SocketAddr>,
    timeout: Duration,
    /// Boxed on purpose: a socket must not move (module docs).
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Conn>>>,
    /// One permit per socket the pool may have open.
    permits: may::sync::Semphore,
}

/// Closed connections waiting out [`RETIRE_AFTER`], from every pool (a
/// pool may be dropped sooner than that).
static RETIRED: Mutex<Vec<(Instant, Box<Conn>)>> = Mutex::new(Vec::new());

/// Shuts `conn` down now and drops it [`RETIRE_AFTER`] from now (at a
/// later call), dropping those whose time is up.
fn retire(conn: Box<Conn>) {
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    RETIRED.lock().push((Instant::now(), conn));
    prune_retired();
}

/// Drops the retired connections whose time is up.
fn prune_retired() {
    let now = Instant::now();
    let expired: Vec<(Instant, Box<Conn>)> = {
        let mut retired = RETIRED.lock();
        let (keep, expired) = std::mem::take(&mut *retired)
            .into_iter()
            .partition(|(at, _)| now.duration_since(*at) < RETIRE_AFTER);
        *retired = keep;
        expired
    };
    // Closed outside the lock.
    drop(expired);
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last caller may have put its socket back a moment ago, with
        // its wait's tail still running on another worker.
        for conn in self.idle.get_mut().drain(..) {
            retire(conn);
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Pool {
    /// A pool of at most `connections` sockets to `addr` (`HOST:PORT`),
    /// each call bounded by `timeout`. Resolves the address now (blocking:
    /// call it off the request path) and opens no socket yet.
    ///
    /// # Errors
    ///
    /// [`RemoteErrorKind::Connect`] if `addr` does not resolve.
    pub fn new(addr: &str, connections: usize, timeout: Duration) -> Result<Pool, RemoteError> {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| RemoteError {
                kind: RemoteErrorKind::Connect,
                addr: addr.to_string(),
                detail: format!("the address does not resolve ({e}); give HOST:PORT"),
            })?
            .collect();
        if resolved.is_empty() {
            return Err(RemoteError {
                kind: RemoteErrorKind::Connect,
                addr: addr.to_string(),
                detail: "the address resolves to nothing".into(),
            });
        }
        Ok(Pool {
            addr: addr.to_string(),
            resolved,
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: may::sync::Semphore::new(connections.max(1)),
        })
    }

    /// The server's address as configured.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn error(&self, kind: RemoteErrorKind, detail: impl Into<String>) -> RemoteError {
        RemoteError {
            kind,
            addr: self.addr.clone(),
            detail: detail.into(),
        }
    }

    /// The call ran out of its deadline.
    fn timed_out(&self) -> RemoteError {
        self.error(
            RemoteErrorKind::Timeout,
            format!("no reply within {:?}", self.timeout),
        )
    }

    fn io_error(&self, e: &io::Error, what: &str) -> RemoteError {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.timed_out(),
            _ => self.error(RemoteErrorKind::Io, format!("{what}: {e}")),
        }
    }

    /// Sends `commands` (each a list of arguments, the command name first)
    /// in one write and returns their replies in order. Error replies are
    /// returned as [`OwnedFrame::Error`] among the others: whether one is a
    /// failure is the caller's call.
    ///
    /// # Errors
    ///
    /// [`RemoteError`] if the server cannot be reached, the connection
    /// breaks, a reply does not parse, or the replies do not all arrive
    /// within the command timeout.
    pub fn call(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, RemoteError> {
        let deadline = Instant::now() + self.timeout;
        if !self.permits.wait_timeout(self.timeout) {
            return Err(self.error(
                RemoteErrorKind::Timeout,
                format!(
                    "all connections stayed busy for {:?} (raise the connection count or the timeout)",
                    self.timeout
                ),
            ));
        }
        let result = self.call_with_permit(commands, deadline);
        self.permits.post();
        result
    }

    fn call_with_permit(
        &self,
        commands: &[&[&[u8]]],
        deadline: Instant,
    ) -> Result<Vec<Reply>, RemoteError> {
        // Out of time already (a long wait for a socket): fail without
        // touching one, so a healthy pooled socket is not retired for it.
        if Instant::now() >= deadline {
            return Err(self.timed_out());
        }
        let request = encode_commands(commands);
        let pooled = self.idle.lock().pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(deadline)?,
        };
        match self.exchange(&mut conn, &request, commands.len(), deadline) {
            Ok(replies) => {
                self.put_back(conn);
                Ok(replies)
            }
            Err((e, got_bytes)) => {
                retire(conn);
                // A pooled socket the server closed while it sat idle (the
                // server restarted, or dropped idle clients): nothing of the
                // request reached a live server, so it goes again, once, on
                // a fresh socket.
                if reused && !got_bytes && e.kind == RemoteErrorKind::Io {
                    let mut fresh = self.connect(deadline)?;
                    return match self.exchange(&mut fresh, &request, commands.len(), deadline) {
                        Ok(replies) => {
                            self.put_back(fresh);
                            Ok(replies)
                        }
                        Err((e, _)) => {
                            retire(fresh);
                            Err(e)
                        }
                    };
                }
                Err(e)
            }
        }
    }

    /// Returns a socket after a successful call to the pool, unless the
    /// watchdog shut it down as the call finished, or bytes beyond the
    /// replies arrived (the stream is out of step): then it is retired.
    fn put_back(&self, conn: Box<Conn>) {
        if conn.watch.fired() || conn.at != conn.buf.len() {
            retire(conn);
        } else {
            self.idle.lock().push(conn);
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Box<Conn>, RemoteError> {
        prune_retired();
        let mut last = None;
        for addr in &self.resolved {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match connect_off_runtime(*addr, left) {
                Ok(std) => {
                    // Nagle would hold back a pipelined write's tail.
                    let _ = std.set_nodelay(true);
                    // The watchdog's own descriptor of the socket, taken
                    // while it is a plain socket (dropping it on failure is
                    // then free of may's windows).
                    let second = std
                        .try_clone()
                        .map_err(|e| self.io_error(&e, "registering the socket"))?;
                    let stream =
                        into_may(std).map_err(|e| self.io_error(&e, "registering the socket"))?;
                    return Ok(Box::new(Conn {
                        watch: watchdog().register(second),
                        stream,
                        buf: Vec::with_capacity(READ_CHUNK),
                        at: 0,
                    }));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => self.error(
                RemoteErrorKind::Timeout,
                format!("connecting took longer than {:?}", self.timeout),
            ),
            Some(e) => self.error(RemoteErrorKind::Connect, e.to_string()),
            None => self.error(
                RemoteErrorKind::Timeout,
                format!("no time left to connect within {:?}", self.timeout),
            ),
        })
    }

    /// Writes `request` and reads `count` replies; on failure, the error and
    /// whether any reply byte had arrived. The watchdog holds the deadline
    /// (module docs, "Timeouts").
    fn exchange(
        &self,
        conn: &mut Conn,
        request: &[u8],
        count: usize,
        deadline: Instant,
    ) -> Result<Vec<Reply>, (RemoteError, bool)> {
        // A socket the watchdog fired on never reaches here: `put_back`
        // retires it instead of pooling it.
        if Instant::now() >= deadline {
            return Err((self.timed_out(), true));
        }
        conn.watch.writing_until(deadline);
        if let Err(e) = conn.stream.write_all(request) {
            return Err(if conn.watch.fired() {
                (self.timed_out(), false)
            } else {
                (self.io_error(&e, "sending the command"), false)
            });
        }
        conn.watch.reading_until(deadline);
        let mut replies = Vec::with_capacity(count);
        let mut got_bytes = false;
        while replies.len() < count {
            match decode(&conn.buf[conn.at..]) {
                Ok(Some((frame, used))) => {
                    conn.at += used;
                    replies.push(frame);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err((
                        self.error(
                            RemoteErrorKind::Io,
                            format!("a reply does not parse: {e:?}"),
                        ),
                        true,
                    ))
                }
            }
            // Need more bytes: compact, then read.
            if conn.at > 0 {
                conn.buf.drain(..conn.at);
                conn.at = 0;
            }
            if Instant::now() >= deadline {
                return Err((self.timed_out(), got_bytes));
            }
            let len = conn.buf.len();
            conn.buf.resize(len + READ_CHUNK, 0);
            let n = conn.stream.read(&mut conn.buf[len..]);
            match n {
                Ok(n) if n > 0 && !conn.watch.fired() => {
                    conn.buf.truncate(len + n);
                    got_bytes = true;
                }
                // The watchdog shut the socket down: end of file, or an
                // error, or bytes that raced the shutdown (dropped: the
                // socket is retired either way).
                _ if conn.watch.fired() => {
                    conn.buf.truncate(len);
                    return Err((self.timed_out(), got_bytes));
                }
                Ok(_) => {
                    conn.buf.truncate(len);
                    return Err((
                        self.error(RemoteErrorKind::Io, "the server closed the connection"),
                        got_bytes,
                    ));
                }
                Err(e) => {
                    conn.buf.truncate(len);
                    return Err((self.io_error(&e, "reading the reply"), got_bytes));
                }
            }
        }
        conn.watch.idle();
        if conn.at == conn.buf.len() {
            conn.buf.clear();
            conn.at = 0;
        }
        Ok(replies)
    }
}

/// Connects to `addr` within `timeout` on a short-lived plain thread (a
/// blocking connect there parks no worker), and waits for it through a
/// `may` channel: a coroutine parks, a plain thread blocks. This keeps
/// `may`'s own connect, and its I/O timer, out of the client (module docs,
/// "Sockets stay put"). Connects are rare (a new pool's sockets, and one
/// after each failed call), so a thread each is cheap.
fn connect_off_runtime(addr: SocketAddr, timeout: Duration) -> io::Result<std::net::TcpStream> {
    let (tx, rx) = may::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ringcache-redis-connect".into())
        .spawn(move || {
            // The receiver may be gone (a caller that gave up): nothing to do.
            let _ = tx.send(std::net::TcpStream::connect_timeout(&addr, timeout));
        })?;
    rx.recv()
        .map_err(|_| io::Error::other("the connecting thread ended without an answer"))?
}

/// Hands a connected plain socket to `may` (non-blocking, registered with
/// its event loop). may's `from_raw_fd` panics when registration fails
/// (the descriptor is closed by then); that becomes an error here.
fn into_may(stream: std::net::TcpStream) -> io::Result<may::net::TcpStream> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = stream.into_raw_fd();
    // SAFETY: `fd` is a connected TCP socket this function owns (taken
    // from `stream` above) and hands over exactly once.
    std::panic::catch_unwind(|| unsafe { may::net::TcpStream::from_raw_fd(fd) })
        .map_err(|_| io::Error::other("the socket could not be registered with the runtime"))
}

/// Encodes commands as RESP arrays of bulk strings, back to back.
fn encode_commands(commands: &[&[&[u8]]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut args = Vec::new();
    for command in commands {
        args.clear();
        args.extend(command.iter().map(|a| BorrowedFrame::BulkString(a)));
        let frame = BorrowedFrame::Array(&args);
        let at = out.len();
        out.resize(at + frame.encode_len(false), 0);
        // The buffer was sized by the frame's own length: encoding cannot
        // run out of room.
        let n = encode_borrowed(&mut out[at..], &frame, false).expect("sized by encode_len");
        out.truncate(at + n);
    }
    out
}

/// The bytes of a bulk or simple string reply, if it is one.
pub fn reply_bytes(reply: &Reply) -> Option<&[u8]> {
    match reply {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let out = encode_commands(&[&[b"SET", b"k", b"v"], &[b"GET", b"k"]]);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn an_unresolvable_address_is_refused_with_its_name() {
        let e = Pool::new("no-such-host.invalid:6379", 1, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind, RemoteErrorKind::Connect);
        assert!(e.to_string().contains("no-such-host.invalid:6379"), "{e}");
    }

    #[test]
    fn a_refused_connection_is_a_connect_error_not_a_hang() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = Pool::new(&format!("127.0.0.1:{port}"), 1, Duration::from_secs(5)).unwrap();
        let e = pool.call(&[&[b"PING"]]).unwrap_err();
        assert_eq!(e.kind, RemoteErrorKind::Connect, "{e}");
    }

    #[test]
    fn a_dropped_pool_closes_its_sockets_at_once() {
        // A one-connection server answering PONG until its client closes.
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 64];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => s.write_all(b"+PONG\r\n").unwrap(),
                    // Still open after 10 s: the socket was kept open.
                    Err(_) => return false,
                }
            }
        });
        let pool = Pool::new(&addr.to_string(), 1, Duration::from_secs(5)).unwrap();
        let r = pool.call(&[&[b"PING"]]).unwrap();
        assert_eq!(reply_bytes(&r[0]), Some(&b"PONG"[..]));
        drop(pool);
        assert!(
            server.join().unwrap(),
            "the server did not see the close of a dropped pool's socket"
        );
    }

    #[test]
    fn a_silent_server_times_out() {
        // Accepts (the kernel completes the handshake) and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(&addr.to_string(), 1, Duration::from_millis(200)).unwrap();
        let e = pool.call(&[&[b"PING"]]).unwrap_err();
        assert_eq!(e.kind, RemoteErrorKind::Timeout, "{e}");
        drop(listener);
    }
}
