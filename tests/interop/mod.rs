//! Plumbing for `tests/twemproxy_interop.rs`: finding (and, as root,
//! installing) the external programs, running them as child processes that
//! are killed on drop, a scratch directory removed on drop, bounded command
//! runs, the network-namespace probe, and a tiny pipelining client for the
//! memcached text protocol (which twemproxy speaks too).
//!
//! Everything here is bounded: every socket has read and write timeouts,
//! every wait loop has a deadline, and every external command run through
//! [`run_bounded`] is killed when it overstays.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest any single socket read or write may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a started server gets to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long each `apt-get` step may take.
const APT_TIMEOUT: Duration = Duration::from_secs(300);

/// Commands pipelined per round trip by [`Memcache`].
const PIPELINE: usize = 100;

/// Largest value [`Memcache::get_many`] accepts, in bytes (ours are tiny).
const MAX_VALUE_BYTES: usize = 1 << 20;

/// The absolute paths of the external programs the interop test runs.
#[derive(Clone, Debug)]
pub struct Programs {
    /// The memcached server.
    pub memcached: PathBuf,
    /// twemproxy's proxy.
    pub nutcracker: PathBuf,
}

/// Finds an executable called `name` on `PATH` or in the sbin directories
/// (which a non-root `PATH` often lacks, and where Debian puts `ip`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file with an execute bit set.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs with effective uid 0 (read from
/// `/proc/self/status`, falling back to `id -u`).
pub fn is_root() -> bool {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            // "Uid:\treal\teffective\tsaved\tfs"
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The external programs, found once per process.
///
/// A missing program is installed with `apt-get` when `may_install` is set
/// and this process is root (at most once per process); otherwise this
/// panics naming the missing programs and the command that installs them.
/// Nothing is ever skipped silently.
pub fn programs(may_install: bool) -> Programs {
    static PROGRAMS: OnceLock<Result<Programs, String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| locate_or_install(may_install))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The body of [`programs`]: locate both programs, install the missing
/// ones if allowed, locate again.
fn locate_or_install(may_install: bool) -> Result<Programs, String> {
    let locate = || {
        Some(Programs {
            memcached: find_program("memcached")?,
            nutcracker: find_program("nutcracker")?,
        })
    };
    if let Some(found) = locate() {
        return Ok(found);
    }
    // The Debian packages are named after the programs.
    let missing: Vec<&str> = ["nutcracker", "memcached"]
        .into_iter()
        .filter(|p| find_program(p).is_none())
        .collect();
    let how = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    if !may_install || !is_root() {
        return Err(format!(
            "the twemproxy interop test needs {} (not found on PATH or in the sbin \
             directories); install it as root with: {how}",
            missing.join(" and ")
        ));
    }
    eprintln!("installing {} ({how})", missing.join(" "));
    let apt = find_program("apt-get").ok_or_else(|| {
        format!(
            "{} missing and no apt-get to install it with",
            missing.join(" and ")
        )
    })?;
    let mut update = Command::new(&apt);
    update.arg("update");
    let mut install = Command::new(&apt);
    install.args(["install", "-y", "--no-install-recommends"]);
    install.args(&missing);
    for cmd in [&mut update, &mut install] {
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        let out = run_bounded(cmd, APT_TIMEOUT)?;
        if !out.status.success() {
            return Err(format!(
                "`{how}` failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    locate().ok_or_else(|| format!("`{how}` succeeded but {missing:?} still not found"))
}

/// Runs `cmd` to completion with its stdout and stderr captured, killing it
/// if it has not finished within `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {shown}: {e}"))?;
    // Drain both pipes on their own threads, so a chatty child never blocks
    // on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                return Err(format!(
                    "{shown} did not finish within {timeout:?}; killed it. Its output:\n{}\n{}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {shown}: {e}"));
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// A command that runs what follows it in a fresh network namespace
/// (`unshare -n ...`), or why none can be made here.
///
/// Prefers a PID namespace as well (`-p -f --kill-child`): then the command
/// is PID 1 of its namespace, and however it ends, the kernel kills every
/// server it started, so nothing is left listening in an unreachable
/// namespace. Each variant is probed by bringing up `lo` with `ip`.
pub fn netns_command(ip: &Path) -> Result<Command, String> {
    let unshare = find_program("unshare").ok_or("no unshare program")?;
    let mut last_error = String::new();
    for args in [vec!["-n", "-p", "-f", "--kill-child"], vec!["-n"]] {
        let mut probe = Command::new(&unshare);
        probe
            .args(&args)
            .args(["sh", "-c", "\"$0\" link set lo up"])
            .arg(ip);
        match run_bounded(&mut probe, Duration::from_secs(10)) {
            Ok(out) if out.status.success() => {
                let mut cmd = Command::new(&unshare);
                cmd.args(&args);
                return Ok(cmd);
            }
            Ok(out) => {
                last_error = format!(
                    "`unshare {}` failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// A scratch directory under [`std::env::temp_dir`] with a unique name,
/// removed (with everything in it) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`; fails rather than reuse one.
    pub fn new(prefix: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process (a server) killed and reaped on drop, even when the test
/// panics. Its stdout and stderr go to a log file.
pub struct Proc {
    /// What it is, for messages ("memcached 127.0.0.1:11211").
    pub what: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr appended to
    /// `log`.
    pub fn spawn(what: impl Into<String>, cmd: &mut Command, log: &Path) -> Proc {
        let what = what.into();
        let out = File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        Proc {
            what,
            child,
            log: log.to_path_buf(),
        }
    }

    /// Panics, with the process's log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.what,
                self.log_text()
            );
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until `addr` accepts TCP connections, panicking (with the log)
    /// if the process exits or [`START_TIMEOUT`] passes first.
    pub fn wait_for_port(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.assert_running();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not accept connections on {addr} after {START_TIMEOUT:?}; its log:\n{}",
                self.what,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether nothing listens on 127.0.0.1:`port` (we could bind it).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port that was free a moment ago (bind port 0, read it back).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The address 127.0.0.1:`port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A connection speaking the memcached text protocol, to memcached or to
/// twemproxy, that pipelines up to [`PIPELINE`] commands per round trip.
pub struct Memcache {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Memcache {
    /// Connects to `addr` with [`IO_TIMEOUT`] on connect, reads and writes.
    pub fn connect(addr: SocketAddr) -> io::Result<Memcache> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Memcache {
            addr,
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// One `\r\n`-terminated reply line, terminator included.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(self.error(format!(
                "connection closed mid-reply (got {:?})",
                String::from_utf8_lossy(&line)
            )));
        }
        Ok(line)
    }

    /// An error naming the peer.
    fn error(&self, msg: String) -> io::Error {
        io::Error::other(format!("{}: {msg}", self.addr))
    }

    /// Stores every `(key, value)` pair with flags 0 and no expiry
    /// (`set KEY 0 0 LEN`), failing unless each is answered `STORED`.
    pub fn set_many(&mut self, items: &[(&[u8], &[u8])]) -> io::Result<()> {
        for batch in items.chunks(PIPELINE) {
            let mut out = Vec::new();
            for (key, value) in batch {
                out.extend_from_slice(b"set ");
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            self.writer.write_all(&out)?;
            for (key, _) in batch {
                let reply = self.line()?;
                if reply != b"STORED\r\n" {
                    return Err(self.error(format!(
                        "set {:?} answered {:?}",
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(&reply)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Reads every key (`get KEY`, one command per key): its value, or
    /// `None` where the peer answers a bare `END`.
    pub fn get_many(&mut self, keys: &[&[u8]]) -> io::Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(PIPELINE) {
            let mut out = Vec::new();
            for key in batch {
                out.extend_from_slice(b"get ");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\r\n");
            }
            self.writer.write_all(&out)?;
            for key in batch {
                values.push(self.get_reply(key)?);
            }
        }
        Ok(values)
    }

    /// Parses the reply to `get key`: `END`, or
    /// `VALUE key flags len` + data + `END`.
    fn get_reply(&mut self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let line = self.line()?;
        if line == b"END\r\n" {
            return Ok(None);
        }
        let shown = String::from_utf8_lossy(&line).into_owned();
        let fields: Vec<&[u8]> = line[..line.len() - 2].split(|&b| b == b' ').collect();
        let len = match fields.as_slice() {
            [b"VALUE", k, _flags, len] if *k == key => std::str::from_utf8(len)
                .ok()
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|&l| l <= MAX_VALUE_BYTES),
            _ => None,
        }
        .ok_or_else(|| {
            self.error(format!(
                "get {:?} answered {shown:?}",
                String::from_utf8_lossy(key)
            ))
        })?;
        let mut data = vec![0; len + 2];
        self.reader.read_exact(&mut data)?;
        if !data.ends_with(b"\r\n") {
            return Err(self.error(format!("value of {shown:?} not followed by CRLF")));
        }
        data.truncate(len);
        let end = self.line()?;
        if end != b"END\r\n" {
            return Err(self.error(format!(
                "get {:?}: {:?} after the value, not END",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&end)
            )));
        }
        Ok(Some(data))
    }
}

/// Reads twemproxy's stats port: one JSON document, then the connection
/// closes. Returns each pool's server entries (the objects nested in a
/// pool's object are its servers, keyed by their names).
pub fn twemproxy_stats_servers(addr: SocketAddr) -> io::Result<HashMap<String, Vec<String>>> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut text = Vec::new();
    stream.take(1 << 20).read_to_end(&mut text)?;
    let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        io::Error::other(format!(
            "stats on {addr} are not JSON ({e}): {:?}",
            String::from_utf8_lossy(&text)
        ))
    })?;
    let mut pools = HashMap::new();
    for (pool, value) in json.as_object().into_iter().flatten() {
        if let Some(fields) = value.as_object() {
            let servers = fields
                .iter()
                .filter(|(_, v)| v.is_object())
                .map(|(name, _)| name.clone())
                .collect();
            pools.insert(pool.clone(), servers);
        }
    }
    Ok(pools)
}
