//! The HTTP/1.1 server: ringcache's own connection loop on may coroutines.
//!
//! This module owns sockets, framing, limits, timeouts and headers; it holds
//! no cache logic. A request becomes a [`Route`](crate::api::Route) and a
//! body, then a [`Command`](crate::api::Command) that [`crate::api::execute`]
//! runs on the cluster; the [`Reply`](crate::api::Reply) becomes the
//! response.
//!
//! # Layout
//!
//! * [`session`]: one connection's protocol without I/O (bytes in,
//!   requests to a service, bytes out): `httparse` heads, `Content-Length`
//!   and chunked bodies, `Expect: 100-continue`, keep-alive, pipelining in
//!   order, bounded buffers. The fuzz target drives it directly.
//! * `conn`: one coroutine per connection moving bytes between the socket
//!   and its session, with the head, body, idle and write timeouts.
//! * `service`: ringcache's routes behind a session: routing headers,
//!   the admin token, membership changes on their own thread.
//! * this file: binding, the accept loop (connection limit, back-off when
//!   descriptors run out), and the shutdown drain.
//!
//! # Guarantees
//!
//! * **Bounded memory per connection**: a head of at most
//!   [`SessionLimits::max_head_bytes`] (431 beyond), a body within its
//!   route's limit (413 beyond), and at most
//!   [`SessionLimits::max_pending_reply_bytes`] of unsent replies (plus one
//!   reply) before the connection stops reading: a client that pipelines
//!   without reading holds a bounded buffer, then is cut off by the write
//!   timeout.
//! * **Bounded time**: see `conn` for the head, body, idle and write
//!   timeouts; `max_connections` ([`crate::settings::Limits`]) bounds
//!   connections, and when `accept` fails (descriptors exhausted) the loop
//!   logs (at most once a minute) and backs off up to
//!   [`MAX_ACCEPT_BACKOFF`] instead of spinning. A closed connection keeps
//!   its descriptor for a quarter second more (see `conn::retire`), so
//!   leave the descriptor limit some headroom above `max_connections`.
//! * **Every reply is written before a close**, and the close lingers
//!   briefly so the reply is not destroyed by a reset.
//! * **No worker waits on membership**: see `service`.
//! * **Shutdown drains**: [`Server::shutdown`] stops accepting, lets each
//!   connection finish the request under way (answered with
//!   `Connection: close`), and returns when none is left or the grace
//!   period ends.
//!
//! A request holds an epoch pin only inside a cluster call, never across
//! socket I/O (a coroutine yield), so a slow client cannot hold back the
//! mover's grace period.

pub mod session;

#[cfg(any(test, feature = "testing"))]
pub mod replay;

mod conn;
mod date;
mod service;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use service::{AdminQueue, MAX_QUEUED_CHANGES};
pub use session::SessionLimits;

use crate::cluster::Cluster;
use crate::settings::Settings;
use crate::telemetry::Telemetry;

/// How often the connections' watchdog looks: their deadlines (seconds)
/// are kept to within this.
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

/// The longest pause of the accept loop after `accept` fails.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Coroutine stack size the server asks of `may`: 256 KiB. Routes and
/// the metrics rendering run on coroutines; `may`'s default (32 KiB) is too
/// small for them in debug builds.
pub const DEFAULT_STACK_SIZE: usize = 256 << 10;

/// Configures `may`'s runtime (worker threads, 0 for one per core, and the
/// coroutine stack size in bytes), once per process; later calls do
/// nothing. Call it before anything in the process uses `may`: its first
/// use (a Redis node's socket, for instance, when a cluster connects to its
/// servers) starts the runtime with whatever is configured then, and
/// coroutines reuse those stacks. [`Server::start`] calls it too.
pub fn configure_runtime(workers: usize, stack_size: usize) {
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    CONFIGURED.get_or_init(|| {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        // may counts stack size in machine words.
        may::config()
            .set_workers(workers)
            .set_stack_size(stack_size / std::mem::size_of::<usize>());
    });
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Limits, timeouts and the admin token (see [`Settings`]).
    pub settings: Settings,
    /// Coroutine worker threads (0: one per core).
    pub workers: usize,
    /// Coroutine stack size in bytes.
    pub stack_size: usize,
    /// Record request metrics (off only to measure their cost).
    pub metrics: bool,
    /// Config reload counts to export, when a config file is watched.
    pub reload_stats: Option<Arc<crate::telemetry::ReloadStats>>,
}

impl ServerConfig {
    /// The server for `settings`, with default workers, stacks and metrics.
    pub fn new(settings: Settings) -> ServerConfig {
        ServerConfig {
            settings,
            workers: 0,
            // Handlers keep their data on the heap; JSON bodies are capped.
            stack_size: DEFAULT_STACK_SIZE,
            metrics: true,
            reload_stats: None,
        }
    }

    fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_head_bytes: self.settings.limits.max_header_bytes,
            max_skipped_body_bytes: self.settings.limits.max_admin_body_bytes,
            ..SessionLimits::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new(Settings::default())
    }
}

/// What every connection of a server shares.
struct Shared {
    cluster: Arc<Cluster>,
    config: ServerConfig,
    telemetry: Telemetry,
    admin: AdminQueue,
    /// Set by [`Server::shutdown`]. Relaxed: connections poll it between
    /// requests; being late by one request is harmless.
    stopping: AtomicBool,
    /// Open connections (Relaxed: a bound, not a publication).
    connections: AtomicUsize,
    /// Connections with a request under way (see `conn::InFlight`).
    in_flight: AtomicUsize,
    /// Every connection's deadline (see `watchdog`).
    watchdog: Arc<crate::watchdog::Watchdog>,
}

/// A bound listening socket, not yet serving: binding first lets the binary
/// report a busy port before it does anything else.
pub struct Listener {
    std: StdListener,
}

impl Listener {
    /// Binds `addr`.
    ///
    /// Unlike may's own `TcpListener::bind`, this sets no `SO_REUSEPORT`, so
    /// a second server on a busy port fails with "address in use" instead
    /// of silently sharing it.
    ///
    /// # Errors
    ///
    /// The bind error (address in use, permission, bad address).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        Ok(Listener {
            std: StdListener::bind(addr)?,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// As `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<may::coroutine::JoinHandle<()>>,
}

impl Server {
    /// Serves `cluster` on `listener` with may coroutines.
    ///
    /// may's worker count and stack size are process-wide and are set from
    /// `config` by the first server started.
    ///
    /// # Errors
    ///
    /// The listener cannot be registered with may's event loop, or its
    /// address read.
    pub fn start(
        listener: Listener,
        cluster: Arc<Cluster>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        configure_runtime(config.workers, config.stack_size);
        let addr = listener.local_addr()?;
        listener.std.set_nonblocking(true)?;
        let fd = listener.std.into_raw_fd();
        // SAFETY: `fd` is a listening socket this function owns (taken from
        // the std listener just above), handed to may exactly once.
        let listener = unsafe { may::net::TcpListener::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            cluster,
            telemetry: Telemetry::new(config.metrics),
            config,
            admin: AdminQueue::start(),
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            watchdog: crate::watchdog::Watchdog::start("ringcache-watchdog", WATCHDOG_TICK),
        });
        let accepting = shared.clone();
        let accept = may::go!(
            may::coroutine::Builder::new().name("ringcache-accept".into()),
            move || accept_loop(listener, accepting)
        )?;
        Ok(Server {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets the requests under way finish
    /// (each answered with `Connection: close`), and waits until none is
    /// left or `grace` has passed. Returns true if every request finished.
    pub fn shutdown(&mut self, grace: Duration) -> bool {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Wake the accept loop (it is parked in accept) so it sees the flag
        // and closes the listening socket.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = std::net::TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let deadline = Instant::now() + grace;
        // Two quiet looks in a row, so a request whose bytes were read just
        // before the first look is counted by the second.
        let mut quiet = 0;
        while Instant::now() < deadline {
            if self.shared.in_flight.load(Ordering::Relaxed) == 0 {
                quiet += 1;
                if quiet == 2 {
                    return true;
                }
            } else {
                quiet = 0;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

fn accept_loop(listener: may::net::TcpListener, shared: Arc<Shared>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(10);
    /// Accept failures are logged at most this often.
    const LOG_EVERY: Duration = Duration::from_secs(60);
    let mut backoff = MIN_BACKOFF;
    // Whether the last accept failed, and when a failure was last logged.
    let mut failing = false;
    let mut logged: Option<Instant> = None;
    let mut refusing = false;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !failing && logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    logged = Some(Instant::now());
                    log::warn!(
                        "cannot accept connections ({e}); retrying with back-off up to {MAX_ACCEPT_BACKOFF:?} (raise the descriptor limit, ulimit -n, or lower --max-connections)"
                    );
                    failing = true;
                }
                may::coroutine::sleep(backoff);
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        if failing {
            failing = false;
            backoff = MIN_BACKOFF;
        }
        let max = shared.config.settings.limits.max_connections;
        // Relaxed: the count bounds connections, it publishes nothing.
        if shared.connections.fetch_add(1, Ordering::Relaxed) >= max {
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            if !refusing {
                log::warn!(
                    "{max} connections are open (--max-connections); refusing more with 503"
                );
                refusing = true;
            }
            refuse(stream);
            continue;
        }
        refusing = false;
        let conn = shared.clone();
        let spawned = may::go!(may::coroutine::Builder::new(), move || {
            let mut stream = stream;
            conn::serve(&mut stream, conn.clone());
            // Counted as closed once shut down, although its descriptor
            // stays open for the retire grace period.
            conn.connections.fetch_sub(1, Ordering::Relaxed);
            conn::retire(stream);
        });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection coroutine: {e}");
            shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Answers a connection over the limit with 503 (best effort, never
/// waiting) and closes it.
fn refuse(stream: may::net::TcpStream) {
    const BODY: &str = "{\"error\":\"too many connections; retry later\"}";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // The socket is non-blocking underneath: a full buffer drops the reply
    // rather than stall the accept loop.
    let mut raw = stream.inner();
    let _ = raw.write(reply.as_bytes());
}
