//! Real `redis-server` processes for the Redis-node tests, and a tiny RESP
//! client to look at what they hold.
//!
//! * [`RedisServer`] runs `redis-server` on a free loopback port with no
//!   persistence, in its own temporary directory, and kills it (SIGKILL) when
//!   dropped. A test can pause it (SIGSTOP), resume it (SIGCONT), kill it and
//!   restart it on the same port, empty as persistence is off.
//! * [`RedisClient`] speaks RESP over a plain [`TcpStream`]: just the
//!   commands the tests check with (GET, SET, PTTL, SCAN, DBSIZE, ...). It is
//!   test code only; the server under test has its own client.
//!
//! `redis-server` must be on `PATH` (scripts/test.sh installs it); a test
//! that needs it fails naming it rather than skipping.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, IO_TIMEOUT};

/// How long a started `redis-server` gets to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    /// `None` after [`RedisServer::kill`].
    child: Option<Child>,
    /// Its port, kept across restarts.
    pub port: u16,
    /// Its working directory (no file is written there: `save` and
    /// `appendonly` are off), and its log.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it
    /// answers PING.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH`, or does not come up (after a few
    /// attempts on fresh ports).
    pub fn start() -> RedisServer {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("creating a directory for redis-server");
            let mut server = RedisServer {
                child: None,
                port,
                dir,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("redis-server on port {port} did not start ({why}); retrying");
                }
                Err(why) => panic!("redis-server on port {port} did not start: {why}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    /// `127.0.0.1:PORT`, as ringcache names the node.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new client connection.
    pub fn client(&self) -> RedisClient {
        RedisClient::connect(self.port)
            .unwrap_or_else(|e| panic!("connecting to redis-server {}: {e}", self.addr()))
    }

    /// Stops the process (SIGSTOP): connections are still accepted by the
    /// kernel, but nothing is answered until [`RedisServer::resume`].
    /// Returns once the kernel reports the process stopped.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let pid = self.pid().expect("redis-server is running");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state is the first field after the parenthesised name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.trim().chars().next());
            if state == Some('T') {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server {pid} did not stop (state {state:?})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the process (SIGKILL) and reaps it; its port then refuses
    /// connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs, then starts a new one on the same
    /// port (empty: nothing was persisted) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just ours; a TIME_WAIT socket does not stop a
        // listener (redis-server sets SO_REUSEADDR), so a failure here is
        // another process taking the port, which a retry cannot fix.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() < deadline => {
                    eprintln!(
                        "redis-server restart on {} failed ({why}); retrying",
                        self.addr()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(why) => panic!("redis-server did not restart on {}: {why}", self.addr()),
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("redis-server is not running");
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Spawns `redis-server` on `self.port` and waits for PONG.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("redis.log"))
            .expect("creating the redis-server log");
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need `redis-server` on PATH ({e}); scripts/test.sh installs it \
                     (Debian: apt-get install -y redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("just spawned");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!(
                    "it exited with {status}\nlog:\n{}",
                    self.log_text()
                ));
            }
            if let Ok(mut c) = RedisClient::connect(self.port) {
                // The server that answers must be this child: another
                // process may have taken the port between `free_port` and
                // the child's bind, and would answer PING for it.
                let pid = child.id().to_string();
                if let Ok(Reply::Bulk(info)) = c.try_call(&[b"INFO", b"server"]) {
                    let info = String::from_utf8_lossy(&info).into_owned();
                    if info
                        .lines()
                        .any(|l| l.trim_end() == format!("process_id:{pid}"))
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no PONG within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `$-1` or `*-1`.
    Nil,
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:...`
    Int(i64),
    /// `$n ...`
    Bulk(Vec<u8>),
    /// `*n ...`
    Array(Vec<Reply>),
}

/// Appends a RESP command (an array of bulk strings).
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A RESP connection with read and write timeouts of [`IO_TIMEOUT`].
pub struct RedisClient {
    conn: BufReader<TcpStream>,
}

impl RedisClient {
    fn connect(port: u16) -> io::Result<RedisClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RedisClient {
            conn: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply.
    ///
    /// # Panics
    ///
    /// On an I/O error or a malformed reply (an error reply is returned).
    pub fn call(&mut self, args: &[&[u8]]) -> Reply {
        self.try_call(args).unwrap_or_else(|e| {
            let shown: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            panic!("redis {shown:?}: {e}")
        })
    }

    fn try_call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.conn.get_mut().write_all(&out)?;
        self.read_reply()
    }

    /// `SET key value` for every pair, pipelined a thousand at a time.
    ///
    /// # Panics
    ///
    /// On an I/O error or any reply but OK.
    pub fn set_many(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        for chunk in pairs.chunks(1000) {
            let mut out = Vec::new();
            for (k, v) in chunk {
                encode(&mut out, &[b"SET", k, v]);
            }
            self.conn
                .get_mut()
                .write_all(&out)
                .expect("writing a SET pipeline");
            for _ in chunk {
                let r = self.read_reply().expect("reading a SET pipeline's replies");
                assert_eq!(r, Reply::Simple("OK".into()), "SET in a pipeline");
            }
        }
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = Vec::new();
        self.conn.read_until(b'\n', &mut line)?;
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(bad(format!("bad reply line {line:?}")));
        }
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let number = || -> io::Result<i64> {
            text.parse()
                .map_err(|_| bad(format!("bad number in {text:?}")))
        };
        Ok(match line[0] {
            b'+' => Reply::Simple(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Int(number()?),
            b'$' => match number()? {
                -1 => Reply::Nil,
                n => {
                    let n = usize::try_from(n).map_err(|_| bad(format!("bulk length {n}")))?;
                    let mut buf = vec![0; n + 2];
                    io::Read::read_exact(&mut self.conn, &mut buf)?;
                    buf.truncate(n);
                    Reply::Bulk(buf)
                }
            },
            b'*' => match number()? {
                -1 => Reply::Nil,
                n => {
                    let mut items = Vec::new();
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(items)
                }
            },
            other => return Err(bad(format!("unknown reply type {:?}", char::from(other)))),
        })
    }

    /// `GET key`: the value, or `None` if absent.
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.call(&[b"GET", key]) {
            Reply::Nil => None,
            Reply::Bulk(v) => Some(v),
            r => panic!("GET answered {r:?}"),
        }
    }

    /// `SET key value`, without expiry.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        let r = self.call(&[b"SET", key, value]);
        assert_eq!(r, Reply::Simple("OK".into()), "SET");
    }

    /// `PTTL key`: milliseconds left, -1 for no expiry, -2 if absent.
    pub fn pttl(&mut self, key: &[u8]) -> i64 {
        match self.call(&[b"PTTL", key]) {
            Reply::Int(n) => n,
            r => panic!("PTTL answered {r:?}"),
        }
    }

    /// `DBSIZE`.
    pub fn dbsize(&mut self) -> u64 {
        match self.call(&[b"DBSIZE"]) {
            Reply::Int(n) => u64::try_from(n).expect("DBSIZE is not negative"),
            r => panic!("DBSIZE answered {r:?}"),
        }
    }

    /// Every key, through `SCAN` (all of them, in no order).
    pub fn keys(&mut self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let Reply::Array(parts) = self.call(&[b"SCAN", &cursor, b"COUNT", b"1000"]) else {
                panic!("SCAN did not answer an array")
            };
            let [Reply::Bulk(next), Reply::Array(page)] = parts.as_slice() else {
                panic!("SCAN answered {parts:?}")
            };
            for k in page {
                match k {
                    Reply::Bulk(k) => keys.push(k.clone()),
                    other => panic!("SCAN listed {other:?}"),
                }
            }
            if next.as_slice() == b"0" {
                keys.sort();
                keys.dedup();
                return keys;
            }
            cursor = next.clone();
        }
    }
}
