//! Shared helpers for the HTTP integration tests (`http_api`, `http_hostile`).
//!
//! * [`Server`] runs the real `ringcache` binary on a free loopback port and
//!   kills it when dropped. Its stderr goes to a log file under cargo's test
//!   temp dir, so a worker panic that the coroutine runtime swallows still
//!   fails [`Server::assert_alive`].
//! * [`Conn`] is a tiny HTTP/1.1 client over a raw [`TcpStream`]: it sends
//!   whatever bytes a test gives it and reads one `Content-Length`-framed
//!   response at a time, so keep-alive and pipelining can be exercised
//!   byte for byte. Every socket has read and write timeouts, so no test can
//!   hang on a server that stopped answering.
//!
//! * [`redis`] runs real `redis-server` processes (for `redis_nodes`) and
//!   reads what they hold with a tiny RESP client.
//! * [`fault_proxy`] forwards TCP between `ringcache` and one
//!   `redis-server` and injects network faults on demand (for
//!   `redis_health`).
//!
//! No HTTP client crate is used on purpose: the hostile tests need to send
//! bytes no well-behaved client would.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod redis;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a test waits for any single read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a started server gets to answer `GET /health`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a relocation may take before a test gives up on it.
pub const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringcache");

/// A free loopback port: bind port 0, read the port, let the listener go.
/// (Another process could take it before the server binds; [`Server::start`]
/// retries on a fresh port if the server exits.)
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A running `ringcache` process, killed on drop.
pub struct Server {
    child: Child,
    /// Where it listens (always 127.0.0.1).
    pub addr: SocketAddr,
    /// Its stderr.
    log: PathBuf,
}

impl Server {
    /// Starts `ringcache` with its defaults (3 nodes x 160 vnodes).
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts `ringcache --listen 127.0.0.1:PORT ARGS...` and waits until
    /// `GET /health` answers 200.
    ///
    /// # Panics
    ///
    /// If the server does not come up within the start timeout (after a few
    /// attempts on fresh ports).
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_args(|addr| {
            let mut full = vec!["--listen".to_string(), addr.to_string()];
            full.extend(args.iter().map(|a| a.to_string()));
            full
        })
    }

    /// Starts `ringcache` with the arguments `args_for(addr)` returns for a
    /// free loopback address (which they must make it listen on, e.g.
    /// through a config file), and waits until `GET /health` answers 200.
    ///
    /// # Panics
    ///
    /// As [`Server::start_with`].
    pub fn start_args(args_for: impl Fn(SocketAddr) -> Vec<String>) -> Server {
        Server::start_inner(args_for, None)
    }

    /// As [`Server::start_with`], with the process's descriptor limit
    /// (`ulimit -n`) set to `nofile`.
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Server {
        Server::start_inner(
            |addr| {
                let mut full = vec!["--listen".to_string(), addr.to_string()];
                full.extend(args.iter().map(|a| a.to_string()));
                full
            },
            Some(nofile),
        )
    }

    fn start_inner(args_for: impl Fn(SocketAddr) -> Vec<String>, nofile: Option<u32>) -> Server {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let args = args_for(addr);
            let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("ringcache-http-{}-{port}.log", std::process::id()));
            let stderr = std::fs::File::create(&log).expect("creating the server log");
            // stdout into the same log: ringcache writes nothing there, but
            // `may`'s runtime prints a backtrace there when a thread faults
            // (its SIGSEGV handler), which a crash report needs.
            let stdout = stderr.try_clone().expect("sharing the server log");
            let mut command = match nofile {
                // `exec` keeps the pid: the child is ringcache itself.
                Some(n) => {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                        .arg(BIN);
                    c
                }
                None => Command::new(BIN),
            };
            let child = command
                .args(&args)
                // The defaults under test, not whatever the caller's shell has.
                .env_remove("RUST_LOG")
                .env_remove("RINGCACHE_ADMIN_TOKEN")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("spawning ringcache");
            let mut server = Server { child, addr, log };
            match server.wait_healthy() {
                Ok(()) => return server,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("ringcache on {addr} did not start ({why}); retrying on a new port");
                }
                Err(why) => panic!(
                    "ringcache on {addr} did not start: {why}\nstderr:\n{}",
                    server.log_text()
                ),
            }
        }
        unreachable!("the last attempt panics")
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("it exited with {status}"));
            }
            // The server that answers must be this child: another process
            // may have taken the port between `free_port` and the child's
            // bind (the child then exits), and would answer for it. The
            // child logs its address once it has bound it.
            let bound = format!("listening on http://{}", self.addr);
            if self.log_text().contains(&bound) {
                if let Ok(mut conn) = Conn::try_open(self.addr) {
                    if let Ok(r) = conn.try_request("GET", "/health", &[], None) {
                        if r.status == 200 {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no 200 from GET /health within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// CPU time the process has used (user + system, /proc/PID/stat).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("reading /proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100
        // on Linux).
        let after = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// Sends `signal` (e.g. "HUP") to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// A new connection to the server.
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One request on a new connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.conn()
            .try_request(method, path, headers, body)
            .unwrap_or_else(|e| {
                let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                    .ok()
                    .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
                    .flatten();
                panic!(
                    "{method} {path}: {e}\nserver process state {state:?} (Z: it died)\nserver stderr:\n{}",
                    self.log_text()
                )
            })
    }

    /// `GET path` on a new connection.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    /// `PUT path` with `body` on a new connection.
    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        self.request("PUT", path, &[], Some(body))
    }

    /// `DELETE path` on a new connection.
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], None)
    }

    /// `method path` with a JSON body on a new connection.
    pub fn send_json(&self, method: &str, path: &str, json: &str) -> Response {
        self.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            Some(json.as_bytes()),
        )
    }

    /// `GET /nodes`, parsed.
    pub fn nodes(&self) -> Vec<Value> {
        let r = self.get("/nodes");
        assert_eq!(r.status, 200, "GET /nodes: {}", r.text());
        r.json()
            .as_array()
            .expect("GET /nodes is a JSON list")
            .clone()
    }

    /// Indices of the nodes `GET /nodes` lists as serving (in the ring).
    pub fn serving_indices(&self) -> Vec<u32> {
        self.nodes()
            .iter()
            .filter(|n| n["state"] == "serving")
            .map(index_of)
            .collect()
    }

    /// The number of keys all nodes hold together, from `GET /nodes`.
    pub fn total_keys(&self) -> u64 {
        self.nodes()
            .iter()
            .map(|n| n["keys"].as_u64().expect("keys is a number"))
            .sum()
    }

    /// Polls `GET /rebalance` until `active` is false; returns that reply.
    ///
    /// # Panics
    ///
    /// If relocation is still active after [`REBALANCE_TIMEOUT`].
    pub fn wait_rebalanced(&self) -> Value {
        let deadline = Instant::now() + REBALANCE_TIMEOUT;
        loop {
            let r = self.get("/rebalance");
            assert_eq!(r.status, 200, "GET /rebalance: {}", r.text());
            let status = r.json();
            if status["active"] == false {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "relocation still active after {REBALANCE_TIMEOUT:?}: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server is still up and unharmed: the process has not exited,
    /// `GET /health` answers 200 on a new connection, every `(path, value)`
    /// in `canaries` still reads back exactly, and nothing panicked.
    pub fn assert_alive(&mut self, canaries: &[(&str, &[u8])]) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "ringcache exited with {status}\nstderr:\n{}",
                self.log_text()
            );
        }
        let health = Conn::open(self.addr).request("GET", "/health", &[], None);
        assert_eq!(health.status, 200, "GET /health: {}", health.text());
        for (path, value) in canaries {
            let r = self.get(path);
            assert_eq!(r.status, 200, "canary {path} is gone: {}", r.text());
            assert!(r.body == *value, "canary {path} changed: {:?}", r.text());
        }
        let log = self.log_text();
        assert!(
            !log.contains("panicked"),
            "the server logged a panic:\n{log}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test shows how the server ended and the end of its log
        // (the log file goes with the server).
        if std::thread::panicking() {
            let status = self.child.try_wait().ok().flatten();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            // A fault's backtrace (see `start_inner`) is long; show it whole.
            let killed = status.is_some_and(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.signal().is_some()
            });
            let keep = if killed { 400 } else { 40 };
            let tail = lines[lines.len().saturating_sub(keep)..].join("\n");
            eprintln!(
                "ringcache at {}: {}; the end of its log:\n{tail}",
                self.addr,
                match status {
                    Some(s) => format!("exited, {s}"),
                    None => "still running".into(),
                }
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A node's `index` from its JSON.
pub fn index_of(node: &Value) -> u32 {
    let index = node["index"].as_u64().expect("a node has a numeric index");
    u32::try_from(index).expect("node indices fit u32")
}

/// One parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the status is `status` and the body is a JSON error
    /// `{"error": "<non-empty message>"}`; returns the message.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body {:?}",
            self.text()
        );
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        let json = self.json();
        let message = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string in {json}"));
        assert!(!message.trim().is_empty(), "empty error message");
        message.to_owned()
    }

    /// The routing headers: (`X-CacheServer-Index`, `X-CacheServer-Count`).
    ///
    /// # Panics
    ///
    /// If either is missing or not a number.
    pub fn routing(&self) -> (u32, usize) {
        let number = |name: &str| {
            self.header(name)
                .unwrap_or_else(|| {
                    panic!(
                        "status {} without {name}; headers {:?}",
                        self.status, self.headers
                    )
                })
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{name} is not a number: {e}"))
        };
        let index = number("X-CacheServer-Index");
        let count = number("X-CacheServer-Count");
        (
            u32::try_from(index).expect("index fits u32"),
            usize::try_from(count).expect("count fits usize"),
        )
    }
}

/// What a hostile request got back.
#[derive(Debug)]
pub enum Outcome {
    /// A complete response.
    Response(Response),
    /// The server closed (or reset) the connection without one.
    Closed,
}

impl Outcome {
    /// Asserts the outcome is a response with `status`, or (when the server
    /// library refuses to parse the request at all) a closed connection.
    pub fn expect_status_or_closed(&self, status: u16) {
        if let Outcome::Response(r) = self {
            assert_eq!(r.status, status, "body {:?}", r.text());
        }
    }

    /// Asserts the outcome is a 4xx response or a closed connection.
    pub fn expect_4xx_or_closed(&self) {
        if let Outcome::Response(r) = self {
            assert!(
                (400..500).contains(&r.status),
                "expected 4xx, got {}: {:?}",
                r.status,
                r.text()
            );
        }
    }
}

/// A client connection. Reads are buffered so that several responses on
/// one connection (keep-alive, pipelining) are split exactly.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The next response answers a HEAD request, so it has no content.
    pub reply_to_head: bool,
}

impl Conn {
    /// Connects, with read and write timeouts of [`IO_TIMEOUT`].
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
    }

    fn try_open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            reply_to_head: false,
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A second handle on the socket, to write from another thread while
    /// this one reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("cloning the socket")
    }

    /// Half-closes: no more bytes from us, but responses can still arrive.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sends one request and reads its response.
    ///
    /// # Panics
    ///
    /// On any I/O error or malformed response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        self.send(&request_bytes(method, path.as_bytes(), headers, body))?;
        self.reply_to_head = method == "HEAD";
        let r = self.read_response();
        self.reply_to_head = false;
        r
    }

    /// Reads one response: status line, headers, `Content-Length` body.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the server closed first; the socket's error
    /// (`WouldBlock`/`TimedOut` after [`IO_TIMEOUT`]); `InvalidData` for a
    /// malformed response.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "HTTP/1.1" {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        // 1xx and 204 replies have no content and no Content-Length, nor
        // do replies to HEAD (the server never sends one there).
        let length: usize = match headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            Some((_, v)) => v
                .parse()
                .map_err(|e| bad(format!("bad Content-Length: {e}")))?,
            None if status == 204 || (100..200).contains(&status) || self.reply_to_head => 0,
            None => return Err(bad("no Content-Length in the response".into())),
        };
        let body_start = head_end + 4;
        while self.buf.len() < body_start + length {
            self.fill()?;
        }
        let body = self.buf[body_start..body_start + length].to_vec();
        self.buf.drain(..body_start + length);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads one response, or notices that the server closed the
    /// connection instead.
    ///
    /// # Panics
    ///
    /// If neither happens within [`IO_TIMEOUT`] (the server hung), or the
    /// response is malformed.
    pub fn read_outcome(&mut self) -> Outcome {
        match self.read_response() {
            Ok(r) => Outcome::Response(r),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Outcome::Closed
            }
            Err(e) => panic!("neither a response nor a close: {e}"),
        }
    }

    /// Sends `bytes` (a write error means the server already closed) and
    /// reads the outcome.
    pub fn send_and_read(&mut self, bytes: &[u8]) -> Outcome {
        match self.send(bytes) {
            Ok(()) => self.read_outcome(),
            Err(_) => Outcome::Closed,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed with {} bytes of a response",
                    self.buf.len()
                ),
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// The bytes of a request: request line, `Host`, `headers`, and for a body a
/// `Content-Length` and the body.
pub fn request_bytes(
    method: &str,
    path: &[u8],
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ringcache.test\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

/// Percent-encodes every byte but RFC 3986's unreserved characters.
pub fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs the binary with `args` to completion (with a deadline); returns
/// (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RINGCACHE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ringcache");
    // Its output is a few lines at most, so the pipes cannot fill up while
    // it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            // Still running: it would have served instead of exiting.
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringcache {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .expect("collecting ringcache's output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
