//! The HTTP API's meaning, without HTTP: routes, typed commands, and the
//! replies the cluster's answers become.
//!
//! This module owns the translation table of the HTTP API (the README's
//! API table):
//! `(method, path, query)` → [`Route`]; a route plus its body → [`Command`];
//! a command run against the [`Cluster`] → [`Reply`] (status, routing
//! headers, body). It never touches sockets, header parsing or the server
//! library (that is [`crate::http`]), and never reaches past the cluster's
//! API into stores or the ring's internals.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterError, NodeKind, NodeStatus, RebalanceStatus};
use crate::hash::Placement;
use crate::node::{RemoteErrorKind, SetOutcome};
use crate::ring::{NodeId, RingError};
use crate::settings::{Limits, Settings};

/// What a request asks for, from its method and path alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /keys/{key}`
    GetKey(Vec<u8>),
    /// `PUT /keys/{key}[?ttl=SECONDS]`
    PutKey(Vec<u8>, Option<Duration>),
    /// `DELETE /keys/{key}`
    DeleteKey(Vec<u8>),
    /// `GET /nodes`
    ListNodes,
    /// `POST /nodes`
    AddNode,
    /// `PUT /nodes/{index}`
    SetVnodes(NodeId),
    /// `DELETE /nodes/{index}`
    RemoveNode(NodeId),
    /// `GET /ring`
    Ring,
    /// `GET /ring/points`: the ring's points, sampled, for drawing.
    RingPoints,
    /// `GET /`: the dashboard page.
    Dashboard,
    /// `GET /rebalance`
    Rebalance,
    /// `GET /metrics`
    Metrics,
    /// `GET /health`
    Health,
}

impl Route {
    /// True for routes that change membership (guarded by the admin token).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::AddNode | Route::SetVnodes(_) | Route::RemoveNode(_)
        )
    }

    /// The body limit of the route, or `None` if it takes no body.
    pub fn body_limit(&self, limits: &Limits) -> Option<usize> {
        match self {
            Route::PutKey(..) => Some(limits.max_value_bytes),
            Route::AddNode | Route::SetVnodes(_) => Some(limits.max_admin_body_bytes),
            _ => None,
        }
    }

    /// The key of a `/keys/` route.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Route::GetKey(k) | Route::PutKey(k, _) | Route::DeleteKey(k) => Some(k),
            _ => None,
        }
    }

    /// Every route's label, in [`Route::index`] order: the one list of
    /// routes that metrics are kept for.
    pub const LABELS: [&'static str; 13] = [
        "get_key",
        "put_key",
        "delete_key",
        "list_nodes",
        "add_node",
        "set_vnodes",
        "remove_node",
        "ring",
        "ring_points",
        "dashboard",
        "rebalance",
        "metrics",
        "health",
    ];

    /// The route's position in [`Route::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            Route::GetKey(_) => 0,
            Route::PutKey(..) => 1,
            Route::DeleteKey(_) => 2,
            Route::ListNodes => 3,
            Route::AddNode => 4,
            Route::SetVnodes(_) => 5,
            Route::RemoveNode(_) => 6,
            Route::Ring => 7,
            Route::RingPoints => 8,
            Route::Dashboard => 9,
            Route::Rebalance => 10,
            Route::Metrics => 11,
            Route::Health => 12,
        }
    }

    /// A short, fixed label for metrics and logs.
    pub fn label(&self) -> &'static str {
        Route::LABELS[self.index()]
    }
}

/// A request refused before it reached the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// A message a person can act on.
    pub message: String,
    /// For `/keys/` requests: the raw key segment, so the reply can still
    /// name the node it maps to.
    pub raw_key: Option<Vec<u8>>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            raw_key: None,
        }
    }

    fn for_key(mut self, raw: &str) -> ApiError {
        self.raw_key = Some(raw.as_bytes().to_vec());
        self
    }
}

/// Every status the server sends, with its reason phrase (RFC 9110):
/// the one list the HTTP layer and the metrics use.
pub const STATUSES: [(u16, &str); 21] = [
    (100, "Continue"),
    (200, "OK"),
    (201, "Created"),
    (202, "Accepted"),
    (204, "No Content"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (411, "Length Required"),
    (413, "Content Too Large"),
    (417, "Expectation Failed"),
    (429, "Too Many Requests"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Gateway Timeout"),
];

/// The reason phrase for a status this server sends.
pub fn reason(status: u16) -> &'static str {
    STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("Unknown", |(_, r)| r)
}

/// Decodes `%XX` escapes; any byte value is allowed once decoded. `+` is a
/// literal plus (this is a path, not a form).
pub fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| {
                format!(
                    "invalid percent-encoding at byte {i}: '%' must be followed by two hex digits"
                )
            })?;
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(hex[0]), digit(hex[1])) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => {
                    return Err(format!(
                    "invalid percent-encoding at byte {i}: '%' must be followed by two hex digits"
                ))
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn parse_ttl(query: &str, limits: &Limits) -> Result<Option<Duration>, ApiError> {
    let mut ttl = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "ttl" {
            return Err(ApiError::new(
                400,
                format!("unknown query parameter {name:?}; the only one is ttl=SECONDS"),
            ));
        }
        let secs: u64 = value
            .parse()
            .ok()
            .filter(|s| (1..=limits.max_ttl_secs).contains(s))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    format!(
                        "ttl must be a whole number of seconds from 1 to {}, got {value:?}",
                        limits.max_ttl_secs
                    ),
                )
            })?;
        ttl = Some(Duration::from_secs(secs));
    }
    Ok(ttl)
}

fn parse_index(segment: &str) -> Result<NodeId, ApiError> {
    segment.parse().map(NodeId).map_err(|_| {
        ApiError::new(
            400,
            format!("node index must be a number, got {segment:?}; GET /nodes lists them"),
        )
    })
}

fn method_not_allowed(method: &str, allowed: &str) -> ApiError {
    ApiError::new(
        405,
        format!("method {method} is not allowed here; use {allowed}"),
    )
}

/// Maps a request line to a route.
///
/// # Errors
///
/// 404 for an unknown path, 405 for a known path with the wrong method, 400
/// for a bad key, index or query.
pub fn route(method: &str, target: &str, limits: &Limits) -> Result<Route, ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(raw) = path.strip_prefix("/keys/") {
        let key = percent_decode(raw).map_err(|m| ApiError::new(400, m).for_key(raw))?;
        if key.is_empty() || key.len() > limits.max_key_bytes {
            return Err(ApiError::new(
                400,
                format!(
                    "a key must be 1 to {} bytes once percent-decoded, got {}",
                    limits.max_key_bytes,
                    key.len()
                ),
            )
            .for_key(raw));
        }
        return match method {
            "GET" | "DELETE" if !query.is_empty() => Err(ApiError::new(
                400,
                "query parameters are only accepted on PUT (ttl=SECONDS)",
            )
            .for_key(raw)),
            "GET" => Ok(Route::GetKey(key)),
            "DELETE" => Ok(Route::DeleteKey(key)),
            "PUT" => {
                let ttl = parse_ttl(query, limits).map_err(|e| e.for_key(raw))?;
                Ok(Route::PutKey(key, ttl))
            }
            _ => Err(method_not_allowed(method, "GET, PUT or DELETE").for_key(raw)),
        };
    }
    if path == "/keys" || path == "/keys/" {
        return Err(ApiError::new(400, "the key is missing: use /keys/{key}"));
    }
    if !query.is_empty() {
        return Err(ApiError::new(
            400,
            format!("{path} takes no query parameters"),
        ));
    }
    let only = |want: &str, route: Route| {
        if method == want {
            Ok(route)
        } else {
            Err(method_not_allowed(method, want))
        }
    };
    match path {
        "/nodes" => match method {
            "GET" => Ok(Route::ListNodes),
            "POST" => Ok(Route::AddNode),
            _ => Err(method_not_allowed(method, "GET or POST")),
        },
        "/ring" => only("GET", Route::Ring),
        "/ring/points" => only("GET", Route::RingPoints),
        "/" | "/ui" => only("GET", Route::Dashboard),
        "/rebalance" => only("GET", Route::Rebalance),
        "/metrics" => only("GET", Route::Metrics),
        "/health" => only("GET", Route::Health),
        _ => match path.strip_prefix("/nodes/") {
            Some(segment) => match method {
                "PUT" => Ok(Route::SetVnodes(parse_index(segment)?)),
                "DELETE" => Ok(Route::RemoveNode(parse_index(segment)?)),
                _ => Err(method_not_allowed(method, "PUT or DELETE")),
            },
            None => Err(ApiError::new(
                404,
                format!(
                    "no route {path}; see /keys/{{key}}, /nodes, /ring, /ring/points, /rebalance, /metrics, /health, /"
                ),
            )),
        },
    }
}

/// Body of `POST /nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeBody {
    /// Optional for a Redis node (defaults to its address).
    name: Option<String>,
    /// `HOST:PORT` of a Redis server; absent for an embedded node.
    redis: Option<String>,
    vnodes: Option<u32>,
    weight: Option<u32>,
}

/// Body of `PUT /nodes/{index}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetVnodesBody {
    vnodes: Option<u32>,
    weight: Option<u32>,
}

/// The node size an admin body gives under `settings`' placement (see
/// [`crate::settings::node_size`]), or `default` when it gives neither.
fn node_size(
    settings: &Settings,
    vnodes: Option<u32>,
    weight: Option<u32>,
    default: Option<u32>,
) -> Result<u32, ApiError> {
    let field = crate::settings::size_field(settings.hash);
    crate::settings::node_size(settings.hash, vnodes, weight)
        .map_err(|why| ApiError::new(400, why))?
        .or(default)
        .ok_or_else(|| {
            ApiError::new(
                400,
                format!("the body must give \"{field}\", like {{\"{field}\": 2}}"),
            )
        })
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("the body must be JSON like {shape}: {e}")))
}

/// A fully parsed request, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Read a key.
    Get(&'a [u8]),
    /// Write a key.
    Put(&'a [u8], Vec<u8>, Option<Duration>),
    /// Delete a key.
    Delete(&'a [u8]),
    /// List the nodes.
    ListNodes,
    /// Add a node.
    AddNode {
        /// Its name.
        name: String,
        /// Its weight: vnodes under xxh3, ketama weight under ketama.
        vnodes: u32,
        /// What it is: embedded, or a Redis server.
        kind: NodeKind,
    },
    /// Change a node's weight.
    SetVnodes(NodeId, u32),
    /// Remove a node.
    RemoveNode(NodeId),
    /// Describe the ring.
    Ring,
    /// The ring's points, sampled.
    RingPoints,
    /// The dashboard page.
    Dashboard,
    /// Describe relocation.
    Rebalance,
    /// Prometheus metrics.
    Metrics,
    /// Liveness.
    Health,
}

/// Builds the command for `route` with its (already size-checked) body.
///
/// # Errors
///
/// 400 for a malformed JSON body.
/// Keys are borrowed from `route`, so a request's key is never copied.
pub fn command<'a>(
    route: &'a Route,
    body: Vec<u8>,
    settings: &Settings,
) -> Result<Command<'a>, ApiError> {
    Ok(match route {
        Route::GetKey(k) => Command::Get(k),
        Route::PutKey(k, ttl) => Command::Put(k, body, *ttl),
        Route::DeleteKey(k) => Command::Delete(k),
        Route::ListNodes => Command::ListNodes,
        Route::AddNode => {
            let b: AddNodeBody = parse_json(&body, r#"{"name": "cache-3", "vnodes": 160}"#)?;
            let vnodes = node_size(settings, b.vnodes, b.weight, Some(settings.default_size()))?;
            match (b.name, b.redis) {
                (Some(name), None) => Command::AddNode {
                    name,
                    vnodes,
                    kind: NodeKind::Embedded,
                },
                (name, Some(addr)) => {
                    crate::settings::check_redis_addr(&addr).map_err(|e| ApiError::new(400, e))?;
                    Command::AddNode {
                        name: name.unwrap_or_else(|| addr.clone()),
                        vnodes,
                        kind: NodeKind::Redis(addr),
                    }
                }
                (None, None) => {
                    return Err(ApiError::new(
                        400,
                        r#"give "name" for an embedded node, or "redis": "HOST:PORT" for a Redis server, e.g. {"redis": "10.0.0.5:6379", "vnodes": 160}"#,
                    ))
                }
            }
        }
        Route::SetVnodes(id) => {
            let b: SetVnodesBody = parse_json(&body, r#"{"vnodes": 320}"#)?;
            Command::SetVnodes(*id, node_size(settings, b.vnodes, b.weight, None)?)
        }
        Route::RemoveNode(id) => Command::RemoveNode(*id),
        Route::Ring => Command::Ring,
        Route::RingPoints => Command::RingPoints,
        Route::Dashboard => Command::Dashboard,
        Route::Rebalance => Command::Rebalance,
        Route::Metrics => Command::Metrics,
        Route::Health => Command::Health,
    })
}

/// The body of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// A cached value, sent as `application/octet-stream`.
    Value(crate::node::Value),
    /// JSON text.
    Json(String),
    /// Plain text (`/health`).
    Text(String),
    /// The Prometheus text exposition (`/metrics`).
    Metrics(String),
    /// A static HTML page.
    Html(&'static str),
}

/// What to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// For `/keys/` replies: the serving node and the node count.
    pub routing: Option<(NodeId, usize)>,
    /// The body.
    pub body: Body,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Reply {
        Reply {
            status,
            routing: None,
            body: Body::Json(serde_json::to_string(value).expect("API types serialize")),
        }
    }

    /// A JSON `{"error": message}` reply.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &ErrorBody { error: message })
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A node in `GET /nodes` and `POST /nodes` replies.
#[derive(Serialize)]
struct NodeJson<'a> {
    index: u32,
    name: &'a str,
    /// The ketama weight; absent under xxh3, where the operator sets
    /// `vnodes` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    vnodes: u32,
    state: &'static str,
    /// The Redis server's `HOST:PORT`; absent for an embedded node.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'a str>,
    keys: usize,
    bytes: usize,
    max_bytes: usize,
    ownership: f64,
    hits: u64,
    misses: u64,
    evictions: u64,
    expirations: u64,
    /// Calls to the node's server that failed (0 for embedded nodes).
    errors: u64,
}

impl<'a> NodeJson<'a> {
    fn new(n: &'a NodeStatus, placement: Placement) -> Self {
        NodeJson {
            index: n.id.0,
            name: &n.name,
            weight: ketama_weight(placement, n.weight),
            vnodes: n.points,
            state: n.state.as_str(),
            redis: n.redis.as_deref(),
            keys: n.stats.keys,
            bytes: n.stats.bytes,
            max_bytes: n.stats.max_bytes,
            ownership: n.share,
            hits: n.stats.hits,
            misses: n.stats.misses,
            evictions: n.stats.evictions,
            expirations: n.stats.expirations,
            errors: n.stats.errors,
        }
    }
}

/// A node's weight as the API shows it: only under ketama.
fn ketama_weight(placement: Placement, weight: u32) -> Option<u32> {
    (placement == Placement::Ketama).then_some(weight)
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
}

#[derive(Serialize)]
struct RebalanceJson {
    active: bool,
    keys_scanned: u64,
    keys_moved: u64,
    keys_dropped: u64,
    started_at: Option<String>,
    finished_at: Option<String>,
    runs: u64,
    total_moved: u64,
    total_dropped: u64,
    settled_version: u64,
    /// Sweeps cut short by a failing node, and the last failure.
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

impl From<RebalanceStatus> for RebalanceJson {
    fn from(s: RebalanceStatus) -> Self {
        RebalanceJson {
            active: s.active,
            keys_scanned: s.keys_scanned,
            keys_moved: s.keys_moved,
            keys_dropped: s.keys_dropped,
            started_at: rfc3339(s.started_at),
            finished_at: rfc3339(s.finished_at),
            runs: s.runs,
            total_moved: s.total_moved,
            total_dropped: s.total_dropped,
            settled_version: s.settled_version,
            errors: s.errors,
            last_error: s.last_error,
        }
    }
}

#[derive(Serialize)]
struct RingNodeJson<'a> {
    index: u32,
    name: &'a str,
    /// Absent under xxh3, as in [`NodeJson`].
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    vnodes: u32,
    ownership: f64,
}

/// The dashboard: one self-contained page (no external fetch) that polls
/// the JSON routes and draws the ring.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The most points `GET /ring/points` returns; larger rings are sampled.
const MAX_DRAWN_POINTS: usize = 2000;

#[derive(Serialize)]
struct PointsJson {
    version: u64,
    /// Points on the ring.
    total: usize,
    /// Every `step`-th point is listed.
    step: usize,
    /// (position as a fraction of the hash space, owner index).
    points: Vec<(f64, u32)>,
}

#[derive(Serialize)]
struct BalanceJson {
    /// Mean share (1 / nodes).
    mean: f64,
    /// Population standard deviation of the shares.
    stddev: f64,
    /// stddev / mean: about 1/sqrt(vnodes) for equal counts.
    stddev_over_mean: f64,
    /// Smallest and largest share relative to the mean.
    min_over_mean: f64,
    max_over_mean: f64,
}

#[derive(Serialize)]
struct RingJson<'a> {
    version: u64,
    /// The placement: "xxh3" or "ketama".
    hash: &'static str,
    points: usize,
    nodes: Vec<RingNodeJson<'a>>,
    balance: Option<BalanceJson>,
}

/// The reply for a failed cluster call. A node that failed a request is
/// named in `X-CacheServer-Index` as well as in the message: 504 when its
/// server did not answer in time, 502 when it refused or failed (as a
/// gateway reports its upstream).
fn cluster_error(cluster: &Cluster, e: &ClusterError) -> Reply {
    let status = match e {
        ClusterError::Ring(RingError::UnknownNode(_)) => 404,
        ClusterError::Ring(RingError::DuplicateName(_)) => 409,
        ClusterError::LastNode(_) => 409,
        ClusterError::ServerTaken { .. } => 409,
        ClusterError::Ejected(_) => 409,
        ClusterError::Ring(_) => 400,
        ClusterError::NoNodes => 503,
        ClusterError::Store(_) => 413,
        ClusterError::Unreachable(_) => 502,
        ClusterError::NodeFailed { error, .. } => match error.kind {
            RemoteErrorKind::Timeout => 504,
            // Known down (or ejected): failed at once, without a call.
            RemoteErrorKind::Down | RemoteErrorKind::Ejected => 503,
            _ => 502,
        },
    };
    let mut reply = Reply::error(status, &e.to_string());
    if let ClusterError::NodeFailed { node, .. } = e {
        reply.routing = Some((*node, cluster.node_count()));
    }
    reply
}

/// Runs `cmd` against `cluster`. `metrics` renders the Prometheus text.
pub fn execute(cluster: &Cluster, cmd: Command<'_>, metrics: impl FnOnce() -> String) -> Reply {
    let keyed = |status, served: (NodeId, usize), body| Reply {
        status,
        routing: Some(served),
        body,
    };
    match cmd {
        Command::Get(key) => match cluster.get(key) {
            Ok(s) => match s.value {
                Some(v) => keyed(200, (s.node, s.node_count), Body::Value(v)),
                None => Reply {
                    routing: Some((s.node, s.node_count)),
                    ..Reply::error(404, "no such key")
                },
            },
            Err(e) => cluster_error(cluster, &e),
        },
        Command::Put(key, value, ttl) => match cluster.set(key, value, ttl) {
            Ok(s) => {
                let status = if s.value == SetOutcome::Created {
                    201
                } else {
                    200
                };
                keyed(status, (s.node, s.node_count), Body::Empty)
            }
            Err(e) => cluster_error(cluster, &e),
        },
        Command::Delete(key) => match cluster.delete(key) {
            Ok(s) if s.value => keyed(204, (s.node, s.node_count), Body::Empty),
            Ok(s) => Reply {
                routing: Some((s.node, s.node_count)),
                ..Reply::error(404, "no such key")
            },
            Err(e) => cluster_error(cluster, &e),
        },
        Command::ListNodes => {
            let nodes = cluster.nodes();
            let json: Vec<NodeJson> = nodes
                .iter()
                .map(|n| NodeJson::new(n, cluster.placement()))
                .collect();
            Reply::json(200, &json)
        }
        Command::AddNode { name, vnodes, kind } => {
            match cluster.add_node_of(&name, vnodes, &kind) {
                Ok(id) => match cluster.nodes().iter().find(|n| n.id == id) {
                    Some(n) => Reply::json(201, &NodeJson::new(n, cluster.placement())),
                    None => {
                        Reply::error(409, "the node was removed again before it could be listed")
                    }
                },
                Err(e) => cluster_error(cluster, &e),
            }
        }
        Command::SetVnodes(id, vnodes) => match cluster.set_weight(id, vnodes) {
            Ok(()) => Reply::json(202, &RebalanceJson::from(cluster.rebalance_status())),
            Err(e) => cluster_error(cluster, &e),
        },
        Command::RemoveNode(id) => match cluster.remove_node(id) {
            Ok(()) => Reply::json(202, &RebalanceJson::from(cluster.rebalance_status())),
            Err(e) => cluster_error(cluster, &e),
        },
        Command::Ring => {
            let snap = cluster.ring().pin();
            let shares = snap.shares();
            let nodes: Vec<RingNodeJson> = shares
                .iter()
                .map(|s| RingNodeJson {
                    index: s.id.0,
                    name: &s.name,
                    weight: ketama_weight(snap.placement(), s.weight),
                    vnodes: s.points,
                    ownership: s.share,
                })
                .collect();
            let balance = (!shares.is_empty()).then(|| {
                let n = shares.len() as f64;
                let mean = 1.0 / n;
                let var = shares.iter().map(|s| (s.share - mean).powi(2)).sum::<f64>() / n;
                let fold =
                    |f: fn(f64, f64) -> f64, init| shares.iter().map(|s| s.share).fold(init, f);
                BalanceJson {
                    mean,
                    stddev: var.sqrt(),
                    stddev_over_mean: var.sqrt() / mean,
                    min_over_mean: fold(f64::min, f64::INFINITY) / mean,
                    max_over_mean: fold(f64::max, 0.0) / mean,
                }
            });
            let reply = Reply::json(
                200,
                &RingJson {
                    version: snap.version(),
                    hash: snap.placement().as_str(),
                    points: snap.point_count(),
                    nodes,
                    balance,
                },
            );
            drop(snap);
            reply
        }
        Command::Rebalance => Reply::json(200, &RebalanceJson::from(cluster.rebalance_status())),
        Command::RingPoints => {
            let snap = cluster.ring().pin();
            let total = snap.point_count();
            // Every k-th point, so a 1000-node ring stays a light poll.
            let step = total.div_ceil(MAX_DRAWN_POINTS).max(1);
            let points: Vec<(f64, u32)> = snap
                .points()
                .step_by(step)
                .map(|(p, owner)| (snap.fraction(p), owner.0))
                .collect();
            let reply = Reply::json(
                200,
                &PointsJson {
                    version: snap.version(),
                    total,
                    step,
                    points,
                },
            );
            drop(snap);
            reply
        }
        Command::Dashboard => Reply {
            status: 200,
            routing: None,
            body: Body::Html(DASHBOARD),
        },
        Command::Metrics => Reply {
            status: 200,
            routing: None,
            body: Body::Metrics(metrics()),
        },
        Command::Health => Reply {
            status: 200,
            routing: None,
            body: Body::Text("ok\n".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, target: &str) -> Result<Route, ApiError> {
        route(method, target, &Limits::default())
    }

    #[test]
    fn keys_are_percent_decoded_to_any_bytes() {
        assert_eq!(
            r("GET", "/keys/a%2Fb%20c%00%FF"),
            Ok(Route::GetKey(b"a/b c\0\xff".to_vec()))
        );
        assert_eq!(r("GET", "/keys/a+b"), Ok(Route::GetKey(b"a+b".to_vec())));
        assert_eq!(r("GET", "/keys/x%zz").unwrap_err().status, 400);
        assert_eq!(r("GET", "/keys/x%4").unwrap_err().status, 400);
        assert_eq!(r("GET", "/keys/").unwrap_err().status, 400);
        let long = format!("/keys/{}", "k".repeat(251));
        let err = r("GET", &long).unwrap_err();
        assert_eq!((err.status, err.raw_key.map(|k| k.len())), (400, Some(251)));
        assert!(r("GET", &format!("/keys/{}", "%41".repeat(250))).is_ok());
    }

    #[test]
    fn ttl_is_validated() {
        assert_eq!(
            r("PUT", "/keys/k?ttl=60"),
            Ok(Route::PutKey(b"k".to_vec(), Some(Duration::from_secs(60))))
        );
        for bad in [
            "ttl=0",
            "ttl=-1",
            "ttl=abc",
            "ttl=",
            "ttl=99999999999",
            "foo=1",
        ] {
            assert_eq!(
                r("PUT", &format!("/keys/k?{bad}")).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn methods_and_paths() {
        assert_eq!(r("PATCH", "/keys/k").unwrap_err().status, 405);
        assert_eq!(r("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(r("POST", "/ring").unwrap_err().status, 405);
        assert_eq!(r("PUT", "/nodes/7"), Ok(Route::SetVnodes(NodeId(7))));
        assert_eq!(r("GET", "/"), Ok(Route::Dashboard));
        assert_eq!(r("GET", "/ring/points"), Ok(Route::RingPoints));
        assert_eq!(r("POST", "/").unwrap_err().status, 405);
        assert_eq!(r("DELETE", "/nodes/x").unwrap_err().status, 400);
        assert_eq!(r("DELETE", "/nodes/-1").unwrap_err().status, 400);
        assert!(Route::AddNode.is_admin() && !Route::Ring.is_admin());
    }

    #[test]
    fn admin_bodies_are_typed() {
        let l = Settings::default();
        assert_eq!(
            command(&Route::AddNode, br#"{"name":"n"}"#.to_vec(), &l),
            Ok(Command::AddNode {
                name: "n".into(),
                vnodes: 160,
                kind: NodeKind::Embedded,
            })
        );
        assert_eq!(
            command(
                &Route::AddNode,
                br#"{"redis":"10.0.0.5:6379","vnodes":40}"#.to_vec(),
                &l
            ),
            Ok(Command::AddNode {
                name: "10.0.0.5:6379".into(),
                vnodes: 40,
                kind: NodeKind::Redis("10.0.0.5:6379".into()),
            })
        );
        for bad in [&br#"{"vnodes":40}"#[..], br#"{"redis":"no-port"}"#] {
            let e = command(&Route::AddNode, bad.to_vec(), &l).unwrap_err();
            assert_eq!(e.status, 400, "{e:?}");
        }
        let ketama = Settings {
            hash: crate::hash::Placement::Ketama,
            ..l.clone()
        };
        assert_eq!(
            command(
                &Route::AddNode,
                br#"{"name":"n","weight":3}"#.to_vec(),
                &ketama
            ),
            Ok(Command::AddNode {
                name: "n".into(),
                vnodes: 3,
                kind: NodeKind::Embedded,
            })
        );
        assert_eq!(
            command(&Route::AddNode, br#"{"name":"n"}"#.to_vec(), &ketama),
            Ok(Command::AddNode {
                name: "n".into(),
                vnodes: crate::ring::DEFAULT_KETAMA_WEIGHT,
                kind: NodeKind::Embedded,
            })
        );
        let wrong = [
            (
                &Route::AddNode,
                &br#"{"name":"n","vnodes":3}"#[..],
                &ketama,
                "give weight",
            ),
            (
                &Route::SetVnodes(NodeId(0)),
                br#"{"vnodes":3}"#,
                &ketama,
                "give weight",
            ),
            (
                &Route::SetVnodes(NodeId(0)),
                br#"{"weight":3}"#,
                &l,
                "give vnodes",
            ),
            (
                &Route::SetVnodes(NodeId(0)),
                br#"{}"#,
                &l,
                "must give \"vnodes\"",
            ),
            (
                &Route::SetVnodes(NodeId(0)),
                br#"{}"#,
                &ketama,
                "must give \"weight\"",
            ),
        ];
        for (route, body, limits, says) in wrong {
            let err = command(route, body.to_vec(), limits).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(says), "{}", err.message);
        }
        for bad in [
            &br#"{"name":1}"#[..],
            b"{",
            br#"{"vnodes":-1}"#,
            br#"{"vnodes":"2"}"#,
            br#"{"vnodes":5000000000}"#,
        ] {
            let err = command(&Route::SetVnodes(NodeId(0)), bad.to_vec(), &l).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains("JSON like"), "{}", err.message);
        }
        assert_eq!(
            command(&Route::AddNode, br#"{"name":"n","extra":1}"#.to_vec(), &l)
                .unwrap_err()
                .status,
            400
        );
    }
}
