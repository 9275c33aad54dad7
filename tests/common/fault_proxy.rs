//! A TCP fault proxy for the health tests: a forwarder on a free loopback
//! port between `ringcache` and one `redis-server`, which a test switches
//! between passing traffic and a few kinds of network failure.
//!
//! Each accepted connection gets its own upstream connection and two pump
//! threads (one per direction), plain `std::net` with short read timeouts so
//! that every thread notices a switch (and the proxy's drop) within tens of
//! milliseconds. What each [`Fault`] does is documented on it.
//!
//! Every switch ([`FaultProxy::set`]) first ends all current connections:
//! no byte held back under one fault is forwarded under the next. This
//! matters for the stale-read checks: a delayed write must never reach the
//! server after the proxy has moved on (it would overtake nothing, but a
//! held write released after a later write would be a reordering that no
//! TCP connection does and no cache could be blamed for).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often every proxy thread looks at the switch and the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// How long the proxy waits to connect to its upstream server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy does to the connections through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards every byte both ways as it arrives.
    Pass,
    /// The server is gone: current connections are closed (FIN), and each
    /// new one is accepted and closed at once, before any byte is read.
    Down,
    /// Current connections are reset (RST), and so is each new one as soon
    /// as it is accepted.
    Reset,
    /// Every chunk is forwarded (both ways) this long after it was read.
    Delay(Duration),
    /// Connections are accepted and kept open, but nothing is forwarded
    /// either way (a hung server or a black-holed route): every byte sent
    /// is dropped.
    Blackhole,
}

/// State shared by the proxy's threads.
struct Shared {
    fault: Mutex<Fault>,
    /// Bumped by every switch: connections opened under an older
    /// generation close (reset if the new fault is [`Fault::Reset`]).
    generation: AtomicU64,
    stop: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections forwarded to the server (not refused by the fault).
    forwarded: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stale(&self, generation: u64) -> bool {
        self.stop.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation
    }
}

/// A running fault proxy; its threads stop when it is dropped.
pub struct FaultProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `127.0.0.1:upstream`, passing traffic until told otherwise.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("local_addr").port();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("fault-proxy-accept".into())
                .spawn(move || accept_loop(&listener, upstream, &shared))
                .expect("spawning the fault proxy")
        };
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, as ringcache names the node behind it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Switches to `fault`. Every current connection is ended first (reset
    /// when switching to [`Fault::Reset`], closed otherwise), whatever it
    /// held undelivered is dropped, and connections opened from now on
    /// get the new treatment.
    pub fn set(&self, fault: Fault) {
        let mut current = self.shared.fault.lock().unwrap_or_else(|e| e.into_inner());
        *current = fault;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Connections accepted so far, and how many of them were forwarded.
    pub fn connections(&self) -> (u64, u64) {
        (
            self.shared.accepted.load(Ordering::SeqCst),
            self.shared.forwarded.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Sets SO_LINGER to zero, so that closing the socket sends RST.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a
    // `linger` and its exact size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::linger>())
                .expect("linger's size fits socklen_t"),
        );
    }
}

/// Ends a connection: RST under [`Fault::Reset`], FIN otherwise.
fn end(stream: &TcpStream, fault: Fault) {
    if fault == Fault::Reset {
        reset_on_close(stream);
    } else {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        pumps.retain(|p| !p.is_finished());
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        // The fault and generation together, so that a switch made while
        // this connection is set up ends it.
        let (fault, generation) = {
            let fault = shared.fault.lock().unwrap_or_else(|e| e.into_inner());
            (*fault, shared.generation.load(Ordering::SeqCst))
        };
        if matches!(fault, Fault::Down | Fault::Reset) {
            end(&client, fault);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) else {
            end(&client, Fault::Down);
            continue;
        };
        shared.forwarded.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn { client, server });
        for upward in [true, false] {
            let (mine, shared) = (Arc::clone(&conn), Arc::clone(shared));
            match std::thread::Builder::new()
                .name("fault-proxy-pump".into())
                .spawn(move || pump(&mine, upward, &shared, generation))
            {
                Ok(handle) => pumps.push(handle),
                Err(_) => conn.close(),
            }
        }
    }
    for p in pumps {
        let _ = p.join();
    }
}

/// Both ends of one proxied connection.
struct Conn {
    /// From ringcache.
    client: TcpStream,
    /// To the server.
    server: TcpStream,
}

impl Conn {
    /// Closes both sockets (FIN): both pumps' next reads end.
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// Copies one direction of `conn` (client to server if `upward`) as the
/// fault says, until a side closes or the generation changes. A switch to
/// [`Fault::Reset`] resets the client's socket (RST when its last
/// descriptor closes, as both pumps return); any other end closes both.
fn pump(conn: &Conn, upward: bool, shared: &Shared, generation: u64) {
    let (mut from, mut to) = if upward {
        (&conn.client, &conn.server)
    } else {
        (&conn.server, &conn.client)
    };
    let _ = from.set_read_timeout(Some(POLL));
    let _ = to.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if shared.stale(generation) {
            break;
        }
        let n = match from.read(&mut buf) {
            // The other pump closed this side at a switch.
            Ok(0) if shared.stale(generation) => break,
            Ok(0) => {
                // A half-close passes through: the other direction may
                // still carry replies.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                conn.close();
                return;
            }
        };
        let read_at = Instant::now();
        match shared.fault() {
            Fault::Pass => {}
            Fault::Delay(d) => {
                while read_at.elapsed() < d && !shared.stale(generation) {
                    std::thread::sleep(d.saturating_sub(read_at.elapsed()).min(POLL));
                }
            }
            // Swallowed; the connection stays open.
            Fault::Blackhole => continue,
            Fault::Down | Fault::Reset => break,
        }
        // Under the switch's lock, so that no byte is written once a
        // switch returned.
        let switch = shared.fault.lock().unwrap_or_else(|e| e.into_inner());
        if shared.stale(generation) {
            break;
        }
        let written = to.write_all(&buf[..n]);
        drop(switch);
        if written.is_err() {
            conn.close();
            return;
        }
    }
    // Ended by a switch (or the proxy's drop): both pumps get here.
    if !shared.stop.load(Ordering::SeqCst) && shared.fault() == Fault::Reset {
        reset_on_close(&conn.client);
        let _ = conn.server.shutdown(Shutdown::Both);
    } else {
        conn.close();
    }
}
