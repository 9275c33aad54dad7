//! The `ringcache` binary: parses the command line, builds the cluster,
//! serves it over HTTP until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use ringcache::cluster::{Cluster, ClusterConfig};
use ringcache::cluster::{FailurePolicy, HealthOptions};
use ringcache::hash::Placement;
use ringcache::http::{Listener, Server, ServerConfig};
use ringcache::node::RedisOptions;
use ringcache::settings::{node_size, Limits, NodeSpec, Settings, Timeouts};

/// A cache cluster behind one HTTP endpoint: keys are placed on embedded
/// cache nodes by a lock-free consistent hash ring with virtual nodes, and
/// nodes can be added, removed and re-weighted while it serves.
///
/// Defaults come from `ringcache::settings::Settings::default()`; the
/// flags overlay them.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Cluster file (YAML: listen, hash, default_vnodes, reload_interval,
    /// limits, timeouts, admin_token_file, nodes). It is re-read every
    /// reload_interval and on SIGHUP; a changed file is applied to the
    /// running cluster. Replaces the flags that describe the cluster, which
    /// may not be given with it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "hash", "nodes", "vnodes", "weight", "admin_token", "node_max_bytes", "max_key_bytes", "max_value_bytes", "max_header_bytes", "max_connections", "head_timeout", "body_timeout", "idle_timeout", "write_timeout", "shutdown_timeout", "redis", "redis_prefix", "redis_timeout", "redis_connections", "health_interval", "health_timeout", "eject_after", "readmit_after", "ejection_time", "max_ejected_percent", "on_failure"])]
    config: Option<std::path::PathBuf>,

    /// Address to listen on (host:port). Keep it on loopback unless a proxy
    /// or firewall guards it: the cache API has no authentication.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.listen.clone()), value_name = "ADDR")]
    listen: String,

    /// Embedded cache nodes to start with, named cache-0, cache-1, ...
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.nodes.len() as u32), value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N", conflicts_with = "redis")]
    nodes: u32,

    /// A Redis server as a cache node, named by its address (repeat for
    /// each server; replaces --nodes). Values are plain Redis strings under
    /// the key (after --redis-prefix); the server's maxmemory governs
    /// memory.
    #[arg(long, value_name = "HOST:PORT")]
    redis: Vec<String>,

    /// Prefix of every key stored in Redis, so ringcache can share a server
    /// with other data (relocation scans only keys with the prefix).
    #[arg(long, default_value = "", value_name = "PREFIX")]
    redis_prefix: String,

    /// Longest a call to a Redis server may take, from waiting for a
    /// connection to the last reply byte; the request gets 504 after it.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.redis.timeout.into()), value_name = "DURATION")]
    redis_timeout: humantime::Duration,

    /// Connections to each Redis server; a call uses one at a time.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.redis.connections), value_name = "N")]
    redis_connections: usize,

    /// Time between two health checks (PING on its own connection) of each
    /// Redis node.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.interval.into()), value_name = "DURATION")]
    health_interval: humantime::Duration,

    /// A health check without PONG within this time fails (an error reply
    /// such as LOADING or NOAUTH fails too).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.timeout.into()), value_name = "DURATION")]
    health_timeout: humantime::Duration,

    /// Consecutive failures (checks and requests to the node) after which a
    /// Redis node is ejected (or, with --on-failure fail, marked down).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.eject_after), value_name = "N")]
    eject_after: u32,

    /// Consecutive passed checks after which it serves again.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.readmit_after), value_name = "N")]
    readmit_after: u32,

    /// The least time an ejected node stays out; doubles with each repeated
    /// ejection (+-20% jitter, at most 5 minutes).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.ejection_time.into()), value_name = "DURATION")]
    ejection_time: humantime::Duration,

    /// At most this share of the nodes is ejected at once (always at least
    /// one); beyond it failing nodes stay in the ring and get fast 503s.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.max_ejected_percent), value_name = "PERCENT")]
    max_ejected_percent: u32,

    /// What a failing Redis node gets: eject (leave the ring; its keys are
    /// served elsewhere as misses, and it is cleared before it returns) or
    /// fail (keep its place; its keys get 503 until it recovers, data
    /// intact).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.health.policy), value_name = "eject|fail")]
    on_failure: FailurePolicy,

    /// How keys are placed: xxh3 (ringcache's own, with vnodes) or ketama
    /// (libmemcached's and twemproxy's weighted ketama, with weights; agrees
    /// with a ketama pool whose servers have the same names).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.hash), value_name = "xxh3|ketama")]
    hash: Placement,

    /// Virtual nodes per starting node (default 160); more gives an evener
    /// spread (about 1/sqrt(V) relative deviation) at a larger ring. xxh3
    /// only.
    #[arg(long, value_name = "V", conflicts_with = "weight")]
    vnodes: Option<u32>,

    /// Ketama weight of each starting node (default 1); with --hash ketama
    /// only.
    #[arg(long, value_name = "W")]
    weight: Option<u32>,

    /// Require `Authorization: Bearer <T>` on the routes that change
    /// membership (POST /nodes, PUT and DELETE /nodes/{index}).
    #[arg(
        long,
        value_name = "T",
        env = "RINGCACHE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Memory cap of each cache node, in bytes (keys + values + 112 bytes of
    /// overhead per entry); at the cap, writes evict approximately least
    /// recently used entries.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.limits.node_max_bytes), value_name = "BYTES")]
    node_max_bytes: usize,

    /// Longest key accepted, in bytes after percent-decoding (at most
    /// 65536).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.limits.max_key_bytes), value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536), value_name = "BYTES")]
    max_key_bytes: usize,

    /// Largest value accepted, in bytes.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.limits.max_value_bytes), value_name = "BYTES")]
    max_value_bytes: usize,

    /// Longest request head (request line and headers) accepted, in bytes
    /// (1 KiB to 1 MiB); a longer one gets 431 and the connection is closed.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.limits.max_header_bytes), value_name = "BYTES")]
    max_header_bytes: usize,

    /// Connections served at once; more get 503 and are closed. Keep it
    /// below the descriptor limit (ulimit -n).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.limits.max_connections), value_name = "N")]
    max_connections: usize,

    /// Time a request head may take to arrive, from its first byte (408
    /// after it).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.timeouts.head.into()), value_name = "DURATION")]
    head_timeout: humantime::Duration,

    /// Time a request body may take to arrive, from the end of the head
    /// (408 after it).
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.timeouts.body.into()), value_name = "DURATION")]
    body_timeout: humantime::Duration,

    /// Time a keep-alive connection may sit idle between requests.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.timeouts.idle.into()), value_name = "DURATION")]
    idle_timeout: humantime::Duration,

    /// Time a write of replies may wait for a client that does not read.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.timeouts.write.into()), value_name = "DURATION")]
    write_timeout: humantime::Duration,

    /// Time requests under way get to finish on SIGTERM or SIGINT.
    #[arg(long, default_value_t = DEFAULTS.with(|d| d.timeouts.shutdown.into()), value_name = "DURATION")]
    shutdown_timeout: humantime::Duration,

    /// Coroutine worker threads (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    workers: usize,

    /// Do not record request metrics (to measure what recording costs).
    #[arg(long)]
    no_request_metrics: bool,
}

thread_local! {
    /// The defaults the flags show and overlay.
    static DEFAULTS: Settings = Settings::default();
}

impl Cli {
    /// The flags over the defaults.
    fn settings(&self) -> Result<Settings, String> {
        // The same rule as the file and the admin API.
        let size = node_size(self.hash, self.vnodes, self.weight)
            .map_err(|why| format!("{why} (--vnodes or --weight)"))?;
        let defaults = Settings::default();
        let settings = Settings {
            listen: self.listen.clone(),
            hash: self.hash,
            default_vnodes: self.vnodes.unwrap_or(defaults.default_vnodes),
            nodes: if self.redis.is_empty() {
                (0..self.nodes)
                    .map(|i| NodeSpec {
                        name: format!("cache-{i}"),
                        vnodes: size.filter(|_| self.hash == Placement::Xxh3),
                        weight: size.filter(|_| self.hash == Placement::Ketama),
                        redis: None,
                    })
                    .collect()
            } else {
                self.redis
                    .iter()
                    .map(|addr| NodeSpec {
                        name: addr.clone(),
                        vnodes: size.filter(|_| self.hash == Placement::Xxh3),
                        weight: size.filter(|_| self.hash == Placement::Ketama),
                        redis: Some(addr.clone()),
                    })
                    .collect()
            },
            redis: RedisOptions {
                prefix: self.redis_prefix.clone().into_bytes(),
                timeout: self.redis_timeout.into(),
                connections: self.redis_connections,
            },
            health: HealthOptions {
                interval: self.health_interval.into(),
                timeout: self.health_timeout.into(),
                eject_after: self.eject_after,
                readmit_after: self.readmit_after,
                ejection_time: self.ejection_time.into(),
                max_ejected_percent: self.max_ejected_percent,
                policy: self.on_failure,
            },
            limits: Limits {
                max_key_bytes: self.max_key_bytes,
                max_value_bytes: self.max_value_bytes,
                node_max_bytes: self.node_max_bytes,
                max_header_bytes: self.max_header_bytes,
                max_connections: self.max_connections,
                ..defaults.limits
            },
            timeouts: Timeouts {
                head: self.head_timeout.into(),
                body: self.body_timeout.into(),
                idle: self.idle_timeout.into(),
                write: self.write_timeout.into(),
                shutdown: self.shutdown_timeout.into(),
            },
            admin_token: self.admin_token.clone(),
            ..defaults
        };
        settings.validate().map_err(|e| flag_error(e.message))?;
        Ok(settings)
    }
}

/// A settings message in the flags' words.
fn flag_error(message: String) -> String {
    [
        ("max_value_bytes", "--max-value-bytes"),
        ("max_key_bytes", "--max-key-bytes"),
        ("node_max_bytes", "--node-max-bytes"),
        ("max_header_bytes", "--max-header-bytes"),
        ("max_connections", "--max-connections"),
        ("Redis command timeout", "--redis-timeout"),
        ("Redis connections per server", "--redis-connections"),
        ("Redis key prefix", "--redis-prefix"),
        ("the health check interval", "--health-interval"),
        ("the ejection time", "--ejection-time"),
        ("the max ejected percent", "--max-ejected-percent"),
    ]
    .iter()
    .fold(message, |m, (field, flag)| m.replace(field, flag))
}

/// Default log filter: ringcache at info; may's per-connection lines and
/// may_minihttp's report of every closed or malformed connection are noise
/// at that level (override with RUST_LOG).
const LOG_FILTER: &str = "info,may=warn";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // One line saying what is wrong; --help has the rest.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringcache: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(LOG_FILTER))
        .format_timestamp_millis()
        .init();
    let setup = match &cli.config {
        Some(path) => from_file(path),
        None => cli
            .settings()
            .map_err(Failure::from)
            .and_then(|settings| serve(settings, None)),
    };
    let Setup {
        listener,
        cluster,
        mut config,
        watched,
    } = match setup {
        Ok(s) => s,
        Err(Failure(code, msg)) => {
            eprintln!("ringcache: {msg}");
            return ExitCode::from(code);
        }
    };
    config.workers = cli.workers;
    config.metrics = !cli.no_request_metrics;
    let reloader = watched.map(|(path, text, file)| {
        let r = ringcache::config::Reloader::spawn(path, text, file, cluster.clone());
        config.reload_stats = Some(r.stats.clone());
        r
    });
    let admin = config.settings.admin_token.is_some();
    let grace = config.settings.timeouts.shutdown;
    let mut server = match Server::start(listener, cluster.clone(), config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringcache: cannot serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "ringcache {} listening on http://{} with {} nodes{}",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        cluster.node_count(),
        if admin { " (admin token required)" } else { "" }
    );
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringcache: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            match &reloader {
                Some(r) => {
                    log::info!("SIGHUP: reloading the config file");
                    r.trigger();
                }
                None => log::info!("SIGHUP ignored: no --config file to reload"),
            }
            continue;
        }
        log::info!("signal {signal} received; finishing requests under way (up to {grace:?})");
        break;
    }
    if server.shutdown(grace) {
        log::info!("every request under way was answered");
    } else {
        log::warn!("exiting with requests still under way after {grace:?}");
    }
    // In-memory data has nothing to flush; let a running relocation finish
    // briefly so the log says where it stood, then exit.
    if !cluster.wait_rebalanced(Duration::from_millis(500)) {
        log::info!(
            "exiting with relocation still running: {:?}",
            cluster.rebalance_status()
        );
    }
    ExitCode::SUCCESS
}

/// Why the binary cannot start: the exit code (2 for bad arguments or
/// file, 1 for the environment, such as a busy port) and one line.
struct Failure(u8, String);

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure(2, msg)
    }
}

/// Binds first, so a busy port is the one line a failed start prints.
fn bind(addr: &str) -> Result<Listener, Failure> {
    Listener::bind(addr).map_err(|e| Failure(1, format!("cannot listen on {addr}: {e}")))
}

/// What main needs to serve: the address, the cluster, the server settings
/// and, with a config file, what the reloader watches.
struct Setup {
    listener: Listener,
    cluster: Arc<Cluster>,
    config: ServerConfig,
    watched: Option<(std::path::PathBuf, String, ringcache::config::FileConfig)>,
}

/// Binds, builds the cluster `settings` describe (empty, then each node
/// added: nothing to relocate yet), and the server config.
fn serve(
    settings: Settings,
    watched: Option<(std::path::PathBuf, String, ringcache::config::FileConfig)>,
) -> Result<Setup, Failure> {
    let listener = bind(&settings.listen)?;
    let cluster = Cluster::new(ClusterConfig {
        node_max_bytes: settings.limits.node_max_bytes,
        placement: settings.hash,
        redis: settings.redis.clone(),
        health: settings.health.clone(),
        ..ClusterConfig::default()
    });
    ringcache::config::apply(&cluster, &settings)
        .map_err(|e| Failure::from(format!("cannot build the cluster: {e}")))?;
    cluster.wait_rebalanced(Duration::from_secs(60));
    Ok(Setup {
        listener,
        cluster: Arc::new(cluster),
        config: ServerConfig::new(settings),
        watched,
    })
}

fn from_file(path: &std::path::Path) -> Result<Setup, Failure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let file = ringcache::config::FileConfig::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
    let mut settings = file.settings();
    settings.admin_token = file.admin_token().map_err(|e| format!("{shown}: {e}"))?;
    serve(settings, Some((path.to_path_buf(), text, file)))
}
