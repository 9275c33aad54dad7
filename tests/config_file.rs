//! The YAML cluster file against the real binary: startup from the file,
//! hot reload by interval and SIGHUP, rejection of invalid files as a
//! whole, how the file and the admin API interact, a reload under traffic,
//! and the reload metrics.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Server;

/// A config file in the test's temporary directory.
struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    fn new(test: &str) -> ConfigFile {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ringcache-config-{}-{test}.yaml",
            std::process::id()
        ));
        ConfigFile { path }
    }

    /// Writes the file atomically (write then rename), as editors and
    /// config managers do, so a reload never sees half a file.
    fn write(&self, listen: &str, interval: &str, nodes: &str) {
        self.write_raw(&format!(
            "listen: {listen}\nreload_interval: {interval}\nnodes:\n{nodes}"
        ));
    }

    fn write_raw(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

fn start(file: &ConfigFile, interval: &str, nodes: &str) -> (Server, String) {
    let path = file.path.display().to_string();
    let server = Server::start_args(|addr| {
        file.write(&addr.to_string(), interval, nodes);
        vec!["--config".to_string(), path.clone()]
    });
    let listen = server.addr.to_string();
    (server, listen)
}

/// (name, vnodes) of the serving nodes, sorted by name.
fn members(server: &Server) -> Vec<(String, u64)> {
    let mut m: Vec<(String, u64)> = server
        .nodes()
        .iter()
        .filter(|n| n["state"] == "serving")
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["vnodes"].as_u64().unwrap(),
            )
        })
        .collect();
    m.sort();
    m
}

fn expect_members(server: &Server, want: &[(&str, u64)], within: Duration) {
    let want: Vec<(String, u64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let deadline = Instant::now() + within;
    loop {
        let got = members(server);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members {got:?}, expected {want:?}\nlog:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of a metric series in `GET /metrics`, 0 if absent.
fn metric(server: &Server, series: &str) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        })
        .unwrap_or(0)
}

const OK: &str = "ringcache_config_reloads_total{result=\"ok\"}";
const FAILED: &str = "ringcache_config_reloads_total{result=\"failed\"}";

fn wait_metric(server: &Server, series: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server, series) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {at_least}\nlog:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file defines listen address and nodes at startup; editing vnodes and
/// adding a node in the file applies them live, keys follow, none is lost.
#[test]
fn editing_the_file_changes_the_running_cluster_and_keys_follow() {
    let file = ConfigFile::new("edit");
    let nodes = "  - name: cache-0\n  - name: cache-1\n    vnodes: 320\n";
    let (server, listen) = start(&file, "100ms", nodes);
    expect_members(
        &server,
        &[("cache-0", 160), ("cache-1", 320)],
        Duration::ZERO,
    );
    for i in 0..300 {
        assert_eq!(
            server
                .put(&format!("/keys/k{i}"), format!("v{i}").as_bytes())
                .status,
            201
        );
    }
    file.write(
        &listen,
        "100ms",
        "  - name: cache-0\n  - name: cache-1\n    vnodes: 40\n  - name: cache-2\n",
    );
    expect_members(
        &server,
        &[("cache-0", 160), ("cache-1", 40), ("cache-2", 160)],
        Duration::from_secs(10),
    );
    server.wait_rebalanced();
    for i in 0..300 {
        let r = server.get(&format!("/keys/k{i}"));
        assert_eq!((r.status, r.text()), (200, format!("v{i}")), "key k{i}");
    }
    assert_eq!(server.total_keys(), 300, "stray copies after relocation");
    assert!(metric(&server, OK) >= 1);
    // Removing a node from the file removes it from the cluster.
    file.write(&listen, "100ms", "  - name: cache-0\n  - name: cache-2\n");
    expect_members(
        &server,
        &[("cache-0", 160), ("cache-2", 160)],
        Duration::from_secs(10),
    );
    server.wait_rebalanced();
    assert_eq!(server.total_keys(), 300);
}

/// Every kind of invalid file is rejected whole: the cluster keeps its last
/// good config, the failure is counted and logged with what is wrong (and
/// the line for YAML errors); a good file afterwards applies.
#[test]
fn invalid_files_are_rejected_whole() {
    let file = ConfigFile::new("invalid");
    let (server, listen) = start(&file, "100ms", "  - name: a\n  - name: b\n");
    let good = [("a", 160), ("b", 160)];
    let bad = [
        (
            format!(
                "listen: {listen}\nreload_interval: 100ms\nnodes:\n  - name: a\n   vnodes: [\n"
            ),
            "line",
        ),
        (
            format!(
                "listen: {listen}\nreload_interval: 100ms\nnodes:\n  - name: a\n    weight: 3\n"
            ),
            "weight",
        ),
        (
            format!("listen: {listen}\nreload_interval: 100ms\nnodes:\n  - name: a\n  - name: a\n"),
            "twice",
        ),
        (
            format!(
                "listen: {listen}\nreload_interval: 100ms\nnodes:\n  - name: a\n    vnodes: 0\n"
            ),
            "vnodes",
        ),
        (
            "listen: 127.0.0.1:1\nreload_interval: 100ms\nnodes:\n  - name: a\n".to_string(),
            "restart",
        ),
        (
            format!("listen: {listen}\nreload_interval: 100ms\nnodes: []\n"),
            "at least one node",
        ),
    ];
    for (n, (text, needle)) in bad.iter().enumerate() {
        file.write_raw(text);
        wait_metric(&server, FAILED, n as u64 + 1);
        expect_members(&server, &good, Duration::ZERO);
        let log = server.log_text();
        let last = log.lines().rfind(|l| l.contains("rejected")).unwrap_or("");
        assert!(
            last.contains(needle),
            "log line for {text:?} lacks {needle:?}: {last}"
        );
    }
    assert_eq!(metric(&server, OK), 0);
    file.write(&listen, "100ms", "  - name: a\n  - name: c\n");
    expect_members(&server, &[("a", 160), ("c", 160)], Duration::from_secs(10));
    assert_eq!(metric(&server, OK), 1);
}

/// SIGHUP reloads at once, however long the interval.
#[test]
fn sighup_reloads_at_once() {
    let file = ConfigFile::new("sighup");
    let (server, listen) = start(&file, "1h", "  - name: a\n");
    file.write(&listen, "1h", "  - name: a\n    vnodes: 7\n");
    std::thread::sleep(Duration::from_millis(300));
    expect_members(&server, &[("a", 160)], Duration::ZERO);
    server.signal("HUP");
    expect_members(&server, &[("a", 7)], Duration::from_secs(5));
}

/// Admin API changes stand while the file is unchanged (the periodic check
/// applies nothing), and the file is the truth again once it changes.
#[test]
fn admin_changes_stand_until_the_file_changes() {
    let file = ConfigFile::new("admin");
    let (server, listen) = start(&file, "100ms", "  - name: a\n");
    let r = server.send_json("POST", "/nodes", r#"{"name": "x", "vnodes": 50}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    std::thread::sleep(Duration::from_millis(500));
    expect_members(&server, &[("a", 160), ("x", 50)], Duration::ZERO);
    file.write(&listen, "100ms", "  - name: a\n  - name: y\n");
    expect_members(&server, &[("a", 160), ("y", 160)], Duration::from_secs(10));
}

/// Reloads that add, re-weight and remove nodes while a client reads and
/// writes: no request fails and every read returns the last write.
#[test]
fn reload_under_traffic_fails_no_request() {
    let file = ConfigFile::new("traffic");
    let (server, listen) = start(&file, "50ms", "  - name: a\n  - name: b\n");
    let stop = AtomicBool::new(false);
    let failures = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut failures = Vec::new();
            let mut conn = server.conn();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 200_000 {
                let key = format!("/keys/t{}", i % 500);
                let value = format!("v{i}");
                let put = conn.request("PUT", &key, &[], Some(value.as_bytes()));
                if put.status != 200 && put.status != 201 {
                    failures.push(format!("PUT {key}: {}", put.status));
                }
                let get = conn.request("GET", &key, &[], None);
                if get.status != 200 || get.text() != value {
                    failures.push(format!(
                        "GET {key}: {} {:?}, wanted {value}",
                        get.status,
                        get.text()
                    ));
                }
                i += 1;
            }
            (failures, i)
        });
        let steps = [
            "  - name: a\n  - name: b\n  - name: c\n",
            "  - name: a\n    vnodes: 400\n  - name: b\n  - name: c\n",
            "  - name: a\n    vnodes: 400\n  - name: c\n",
            "  - name: a\n  - name: c\n  - name: d\n    vnodes: 30\n",
            "  - name: b\n  - name: d\n",
        ];
        for (n, nodes) in steps.iter().enumerate() {
            file.write(&listen, "50ms", nodes);
            wait_metric(&server, OK, n as u64 + 1);
            std::thread::sleep(Duration::from_millis(150));
        }
        stop.store(true, Ordering::Relaxed);
        client.join().unwrap()
    });
    let (failures, ops) = failures;
    assert!(ops > 100, "the client made only {ops} round trips");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    expect_members(&server, &[("b", 160), ("d", 160)], Duration::ZERO);
}

/// `--config` with cluster flags, a missing file, or an invalid file at
/// startup: non-zero exit, one line naming the problem.
#[test]
fn bad_config_at_startup_fails_with_one_line() {
    let file = ConfigFile::new("startup");
    file.write_raw("nodes:\n  - name: a\n  - name: a\n");
    let path = file.path.display().to_string();
    let missing = format!("{path}.missing");
    for (args, needle) in [
        (vec!["--config", path.as_str(), "--nodes", "2"], "--nodes"),
        (vec!["--config", missing.as_str()], "cannot read"),
        (vec!["--config", path.as_str()], "twice"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(needle), "{args:?}: {stderr}");
    }
}
