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
//!
//! # Layout
//!
//! Each route lives in one file, with all that is its own: the type its
//! request line becomes (a [`Route`] variant's), the command its body makes
//! of it (a [`Command`] variant's), how that command runs on the cluster,
//! and its JSON. The route type says so by implementing [`Endpoint`].
//!
//! * [`keys`]: `GET`, `PUT` and `DELETE /keys/{key}`, the hot path.
//! * [`nodes`]: `GET` and `POST /nodes`, `PUT` and `DELETE /nodes/{index}`.
//! * [`ring`]: `GET /ring` and `GET /ring/points`.
//! * [`rebalance`]: `GET /rebalance`.
//! * [`dashboard`]: `GET /` (and `/ui`).
//! * [`monitor`]: `GET /metrics` and `GET /health`.
//!
//! `api/mod.rs` holds what they share: the route table, one line a route,
//! from which [`Route`], [`Command`], the metrics labels
//! ([`Route::LABELS`]) and the dispatch of [`command`] and [`execute`] are
//! generated (a `match` on the enums, never a trait object); [`route`],
//! which maps a path and method to its route; and errors, replies and
//! statuses.
//!
//! # Adding a route
//!
//! 1. In its file: its route type (what the request line gives), its
//!    command type (what runs), `impl Endpoint` (body, command, execution)
//!    and its JSON.
//! 2. One line in the route table (`routes!` in `api/mod.rs`): its
//!    variants and metrics label.
//! 3. Its method and path in [`route`] (and in the 404 hint, for a new
//!    path).
//! 4. For a membership change ([`Endpoint::ADMIN`]): its arm where the HTTP
//!    service hands such commands to its admin thread.

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterError};
use crate::hash::Placement;
use crate::node::RemoteErrorKind;
use crate::ring::{NodeId, RingError};
use crate::settings::{Limits, Settings};

pub mod dashboard;
pub mod keys;
pub mod monitor;
pub mod nodes;
pub mod rebalance;
pub mod ring;

/// What one route brings, implemented by its route type in its own file:
/// its command, body and admin guard, and how its command runs. The enums
/// of the route table dispatch to it by `match`.
pub trait Endpoint: Sized {
    /// What the route runs once its body is read. It may borrow from the
    /// route, so a request's key is never copied.
    type Command<'a>
    where
        Self: 'a;

    /// True for routes that change membership (guarded by the admin token).
    const ADMIN: bool = false;

    /// The body limit of the route, or `None` if it takes no body.
    fn body_limit(_limits: &Limits) -> Option<usize> {
        None
    }

    /// The key of a `/keys/` route.
    fn key(&self) -> Option<&[u8]> {
        None
    }

    /// Builds the route's command with its (already size-checked) body.
    ///
    /// # Errors
    ///
    /// 400 for a malformed body.
    fn command(&self, body: Vec<u8>, settings: &Settings) -> Result<Self::Command<'_>, ApiError>;

    /// Runs `cmd` against `cluster`. `metrics` renders the Prometheus text.
    fn execute(
        cmd: Self::Command<'_>,
        cluster: &Cluster,
        metrics: impl FnOnce() -> String,
    ) -> Reply;
}

/// Declares the route table: for each route, its doc, its [`Route`]
/// variant and type, its [`Command`] variant and type, and its metrics
/// label; generates the enums and every per-route `match` from it.
macro_rules! routes {
    ($(
        $(#[doc = $doc:literal])+
        $route:ident($route_ty:ty) => $command:ident($command_ty:ty), $label:literal;
    )+) => {
        /// What a request asks for, from its method and path alone: one
        /// variant a line of the route table.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Route {
            $($(#[doc = $doc])+ $route($route_ty),)+
        }

        /// A fully parsed request, ready to run: one variant a line of the
        /// route table.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Command<'a> {
            $($(#[doc = $doc])+ $command($command_ty),)+
        }

        /// The routes in table order: [`Route::index`].
        #[derive(Clone, Copy)]
        enum Position {
            $($route,)+
        }

        impl Route {
            /// Every route's label, in [`Route::index`] order: the one list of
            /// routes that metrics are kept for.
            pub const LABELS: [&'static str; [$($label),+].len()] = [$($label),+];

            /// The route's position in [`Route::LABELS`].
            pub fn index(&self) -> usize {
                let position = match self {
                    $(Route::$route(_) => Position::$route,)+
                };
                position as usize
            }

            /// True for routes that change membership (guarded by the admin
            /// token).
            pub fn is_admin(&self) -> bool {
                match self {
                    $(Route::$route(_) => <$route_ty as Endpoint>::ADMIN,)+
                }
            }

            /// The body limit of the route, or `None` if it takes no body.
            pub fn body_limit(&self, limits: &Limits) -> Option<usize> {
                match self {
                    $(Route::$route(_) => <$route_ty as Endpoint>::body_limit(limits),)+
                }
            }

            /// The key of a `/keys/` route.
            pub fn key(&self) -> Option<&[u8]> {
                match self {
                    $(Route::$route(r) => r.key(),)+
                }
            }

            /// The route's command: see [`command`].
            fn build(&self, body: Vec<u8>, settings: &Settings) -> Result<Command<'_>, ApiError> {
                match self {
                    $(Route::$route(r) => r.command(body, settings).map(Command::$command),)+
                }
            }
        }

        impl Command<'_> {
            /// Runs the command: see [`execute`].
            fn run(self, cluster: &Cluster, metrics: impl FnOnce() -> String) -> Reply {
                match self {
                    $(Command::$command(c) => <$route_ty as Endpoint>::execute(c, cluster, metrics),)+
                }
            }
        }
    };
}

// The route table: `Route variant(route type) => Command variant(command
// type), metrics label`. The labels name the metrics' series: keep them.
routes! {
    /// `GET /keys/{key}`: read a key.
    GetKey(keys::GetKey) => Get(keys::Get<'a>), "get_key";
    /// `PUT /keys/{key}[?ttl=SECONDS]`: write a key.
    PutKey(keys::PutKey) => Put(keys::Put<'a>), "put_key";
    /// `DELETE /keys/{key}`: delete a key.
    DeleteKey(keys::DeleteKey) => Delete(keys::Delete<'a>), "delete_key";
    /// `GET /nodes`: list the nodes.
    ListNodes(nodes::ListNodes) => ListNodes(nodes::ListNodes), "list_nodes";
    /// `POST /nodes`: add a node.
    AddNode(nodes::AddNode) => AddNode(nodes::NewNode), "add_node";
    /// `PUT /nodes/{index}`: change a node's weight.
    SetVnodes(nodes::SetVnodes) => SetVnodes(nodes::Reweight), "set_vnodes";
    /// `DELETE /nodes/{index}`: remove a node.
    RemoveNode(nodes::RemoveNode) => RemoveNode(nodes::RemoveNode), "remove_node";
    /// `GET /ring`: describe the ring.
    Ring(ring::Ring) => Ring(ring::Ring), "ring";
    /// `GET /ring/points`: the ring's points, sampled, for drawing.
    RingPoints(ring::RingPoints) => RingPoints(ring::RingPoints), "ring_points";
    /// `GET /`: the dashboard page.
    Dashboard(dashboard::Dashboard) => Dashboard(dashboard::Dashboard), "dashboard";
    /// `GET /rebalance`: describe relocation.
    Rebalance(rebalance::Rebalance) => Rebalance(rebalance::Rebalance), "rebalance";
    /// `GET /metrics`: Prometheus metrics.
    Metrics(monitor::Metrics) => Metrics(monitor::Metrics), "metrics";
    /// `GET /health`: liveness.
    Health(monitor::Health) => Health(monitor::Health), "health";
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

fn method_not_allowed(method: &str, allowed: &str) -> ApiError {
    ApiError::new(
        405,
        format!("method {method} is not allowed here; use {allowed}"),
    )
}

/// Maps a request line to a route.
///
/// This is the path table: which path and method make which route. What
/// the line carries besides (a key, a TTL, a node index) is parsed by the
/// route's own file.
///
/// # Errors
///
/// 404 for an unknown path, 405 for a known path with the wrong method, 400
/// for a bad key, index or query.
pub fn route(method: &str, target: &str, limits: &Limits) -> Result<Route, ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(raw) = path.strip_prefix("/keys/") {
        return keys::route(method, raw, query, limits);
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
            "GET" => Ok(Route::ListNodes(nodes::ListNodes)),
            "POST" => Ok(Route::AddNode(nodes::AddNode)),
            _ => Err(method_not_allowed(method, "GET or POST")),
        },
        "/ring" => only("GET", Route::Ring(ring::Ring)),
        "/ring/points" => only("GET", Route::RingPoints(ring::RingPoints)),
        "/" | "/ui" => only("GET", Route::Dashboard(dashboard::Dashboard)),
        "/rebalance" => only("GET", Route::Rebalance(rebalance::Rebalance)),
        "/metrics" => only("GET", Route::Metrics(monitor::Metrics)),
        "/health" => only("GET", Route::Health(monitor::Health)),
        _ => match path.strip_prefix("/nodes/") {
            Some(segment) => match method {
                "PUT" => Ok(Route::SetVnodes(nodes::SetVnodes(nodes::parse_index(
                    segment,
                )?))),
                "DELETE" => Ok(Route::RemoveNode(nodes::RemoveNode(nodes::parse_index(
                    segment,
                )?))),
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

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("the body must be JSON like {shape}: {e}")))
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
    route.build(body, settings)
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

/// A node's weight as the API shows it: only under ketama.
fn ketama_weight(placement: Placement, weight: u32) -> Option<u32> {
    (placement == Placement::Ketama).then_some(weight)
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
    cmd.run(cluster, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route of a request line under the default limits (the route
    /// files' tests use it too).
    pub(super) fn r(method: &str, target: &str) -> Result<Route, ApiError> {
        route(method, target, &Limits::default())
    }

    #[test]
    fn methods_and_paths() {
        assert_eq!(r("PATCH", "/keys/k").unwrap_err().status, 405);
        assert_eq!(r("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(r("POST", "/ring").unwrap_err().status, 405);
        assert_eq!(
            r("PUT", "/nodes/7"),
            Ok(Route::SetVnodes(nodes::SetVnodes(NodeId(7))))
        );
        assert_eq!(r("GET", "/"), Ok(Route::Dashboard(dashboard::Dashboard)));
        assert_eq!(
            r("GET", "/ring/points"),
            Ok(Route::RingPoints(ring::RingPoints))
        );
        assert_eq!(r("POST", "/").unwrap_err().status, 405);
        assert_eq!(r("DELETE", "/nodes/x").unwrap_err().status, 400);
        assert_eq!(r("DELETE", "/nodes/-1").unwrap_err().status, 400);
        assert!(Route::AddNode(nodes::AddNode).is_admin() && !Route::Ring(ring::Ring).is_admin());
    }
}
