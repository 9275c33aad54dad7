//! Prometheus metrics: request counters and latency recorded on the request
//! path, cluster gauges read at scrape time.
//!
//! This module owns the metric names and how they are recorded. It uses the
//! `metrics` facade with `metrics-exporter-prometheus`'s recorder (no HTTP
//! listener of its own: `GET /metrics` renders it), held locally rather
//! than installed globally, so several servers in one process each keep
//! their own.
//!
//! Recording stays off locks on the request path: every (route, status)
//! counter and per-route histogram handle is registered once and cached, and
//! recording through a handle is an atomic add (counters) or a lock-free
//! bucket push (histograms). Cluster-wide figures (ring version,
//! relocation) are copied into gauges only when `/metrics` is scraped.
//! Per-node figures (keys, bytes, hits, evictions...) are written straight
//! into the scrape's text for the nodes the cluster holds at that moment, so
//! a node that has left and drained has no series any more.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::api::{Route, STATUSES};
use crate::cluster::{Cluster, NodeState, NodeStatus};

/// Label for requests refused before a route was known (bad path, method).
const UNROUTED: usize = Route::LABELS.len();

/// Statuses with a series of their own are the ones the server sends
/// ([`crate::api::STATUSES`]); anything else counts as "other", at this
/// index.
const OTHER_STATUS: usize = STATUSES.len();

/// Latency histogram buckets, in seconds: 25 µs to 1 s, roughly x2.5 per
/// step, which brackets an in-memory hit (tens of µs over loopback) and a
/// slow admin call.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// The index of a route in the metric tables.
pub fn route_index(route: Option<&Route>) -> usize {
    route.map_or(UNROUTED, Route::index)
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&(s, _)| s == status)
        .unwrap_or(OTHER_STATUS)
}

/// Counts of config file reloads, kept by the reloader and exported here.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that applied a changed file.
    pub ok: AtomicU64,
    /// Reloads rejected.
    pub failed: AtomicU64,
}

/// The server's metrics.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `requests[route][status]`, registered on first use.
    requests: Vec<Vec<OnceLock<Counter>>>,
    /// Latency per route.
    latency: Vec<Histogram>,
    /// False to measure the server without recording (see the load test).
    enabled: bool,
}

const METADATA: Metadata<'static> = Metadata::new("ringcache", Level::INFO, Some("ringcache"));

impl Telemetry {
    /// A recorder with the request metrics registered. With `enabled`
    /// false, requests are not recorded (scrapes still show cluster gauges).
    pub fn new(enabled: bool) -> Telemetry {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let route_label = |i: usize| Route::LABELS.get(i).copied().unwrap_or("unrouted");
        let latency = (0..=Route::LABELS.len())
            .map(|i| {
                let key = Key::from_parts(
                    "ringcache_http_request_duration_seconds",
                    vec![Label::new("route", route_label(i))],
                );
                recorder.register_histogram(&key, &METADATA)
            })
            .collect();
        let requests = (0..=Route::LABELS.len())
            .map(|_| (0..=STATUSES.len()).map(|_| OnceLock::new()).collect())
            .collect();
        Telemetry {
            recorder,
            handle,
            requests,
            latency,
            enabled,
        }
    }

    /// Records one answered request. Lock-free once the (route, status)
    /// counter exists.
    #[inline]
    pub fn record(&self, route: usize, status: u16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let s = status_index(status);
        self.requests[route][s]
            .get_or_init(|| {
                let status = match STATUSES.get(s) {
                    Some((code, _)) => code.to_string(),
                    None => "other".to_string(),
                };
                let route = Route::LABELS.get(route).copied().unwrap_or("unrouted");
                let key = Key::from_parts(
                    "ringcache_http_requests_total",
                    vec![Label::new("route", route), Label::new("status", status)],
                );
                self.recorder.register_counter(&key, &METADATA)
            })
            .increment(1);
        self.latency[route].record(elapsed.as_secs_f64());
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>, value: u64) {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
            .absolute(value);
    }

    /// Copies the cluster's figures into the recorder and renders the
    /// Prometheus text exposition.
    pub fn render(&self, cluster: &Cluster, reloads: Option<&ReloadStats>) -> String {
        if let Some(r) = reloads {
            use std::sync::atomic::Ordering::Relaxed;
            for (result, n) in [
                ("ok", r.ok.load(Relaxed)),
                ("failed", r.failed.load(Relaxed)),
            ] {
                self.counter(
                    "ringcache_config_reloads_total",
                    vec![Label::new("result", result)],
                    n,
                );
            }
        }
        let ring = cluster.ring();
        self.gauge("ringcache_ring_version", vec![], ring.version() as f64);
        self.gauge("ringcache_ring_nodes", vec![], ring.node_count() as f64);
        let r = cluster.rebalance_status();
        self.gauge(
            "ringcache_rebalance_active",
            vec![],
            f64::from(u8::from(r.active)),
        );
        self.gauge(
            "ringcache_rebalance_keys_scanned",
            vec![],
            r.keys_scanned as f64,
        );
        self.gauge(
            "ringcache_rebalance_keys_moved",
            vec![],
            r.keys_moved as f64,
        );
        self.counter("ringcache_rebalance_runs_total", vec![], r.runs);
        self.counter(
            "ringcache_rebalance_moved_keys_total",
            vec![],
            r.total_moved,
        );
        self.gauge(
            "ringcache_rebalance_keys_dropped",
            vec![],
            r.keys_dropped as f64,
        );
        self.counter(
            "ringcache_rebalance_dropped_keys_total",
            vec![],
            r.total_dropped,
        );
        self.counter("ringcache_membership_changes_total", vec![], ring.version());
        let mut text = self.handle.render();
        render_nodes(&mut text, &cluster.nodes());
        text
    }
}

/// Per-node series, by name: (name, Prometheus type, value of a node).
type NodeSeries = (&'static str, &'static str, fn(&NodeStatus) -> f64);

/// The per-node series. Points on the ring sit beside the configured
/// weight they follow from (equal under xxh3; under ketama points follow
/// all weights).
const NODE_SERIES: [NodeSeries; 19] = [
    ("ringcache_node_keys", "gauge", |n| n.stats.keys as f64),
    ("ringcache_node_bytes", "gauge", |n| n.stats.bytes as f64),
    ("ringcache_node_max_bytes", "gauge", |n| {
        n.stats.max_bytes as f64
    }),
    ("ringcache_node_vnodes", "gauge", |n| f64::from(n.points)),
    ("ringcache_node_weight", "gauge", |n| f64::from(n.weight)),
    ("ringcache_node_ownership", "gauge", |n| n.share),
    ("ringcache_node_draining", "gauge", |n| {
        f64::from(u8::from(n.state == NodeState::Draining))
    }),
    ("ringcache_node_hits_total", "counter", |n| {
        n.stats.hits as f64
    }),
    ("ringcache_node_misses_total", "counter", |n| {
        n.stats.misses as f64
    }),
    ("ringcache_node_evictions_total", "counter", |n| {
        n.stats.evictions as f64
    }),
    ("ringcache_node_expirations_total", "counter", |n| {
        n.stats.expirations as f64
    }),
    // Calls to a Redis node's server that failed (refused, error reply,
    // timeout); 0 for embedded nodes.
    ("ringcache_node_errors_total", "counter", |n| {
        n.stats.errors as f64
    }),
    ("ringcache_node_remote", "gauge", |n| {
        f64::from(u8::from(n.redis.is_some()))
    }),
    // Health of Redis nodes (all 0 for embedded nodes): 1 while failing
    // its checks in the ring (its keys get 503) or ejected from it.
    ("ringcache_node_down", "gauge", |n| {
        f64::from(u8::from(n.state == NodeState::Down))
    }),
    ("ringcache_node_ejected", "gauge", |n| {
        f64::from(u8::from(n.state == NodeState::Ejected))
    }),
    ("ringcache_node_ejections_total", "counter", |n| {
        n.health.ejections as f64
    }),
    ("ringcache_node_health_checks_total", "counter", |n| {
        n.health.checks as f64
    }),
    (
        "ringcache_node_health_check_failures_total",
        "counter",
        |n| n.health.check_failures as f64,
    ),
    ("ringcache_node_health_check_seconds", "gauge", |n| {
        n.health.last_check.as_secs_f64()
    }),
];

/// Appends the per-node series of `nodes` to a Prometheus text exposition.
///
/// They are written here at each scrape rather than registered in the
/// recorder, which keeps every series it ever saw: a node dropped from the
/// cluster (after draining) is simply absent from the next scrape, so
/// ownership sums to 1 and series do not pile up with every node ever added.
fn render_nodes(out: &mut String, nodes: &[NodeStatus]) {
    use std::fmt::Write;
    if nodes.is_empty() {
        return;
    }
    for (name, kind, value) in NODE_SERIES {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for n in nodes {
            let _ = writeln!(
                out,
                "{name}{{node=\"{}\",name=\"{}\"}} {}",
                n.id,
                escape_label(&n.name),
                value(n)
            );
        }
        out.push('\n');
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
