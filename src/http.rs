//! The HTTP server: may_minihttp coroutines translating requests into
//! [`crate::api`] commands and replies back into responses.
//!
//! This module owns sockets, framing, headers and limits. It holds no cache
//! logic: a request becomes a [`Route`] and a body, then a [`Command`](crate::api::Command) that
//! [`api::execute`] runs on the cluster; the [`api::Reply`] becomes the
//! response.
//!
//! # Living with may_minihttp
//!
//! may_minihttp is a small, fast server with sharp edges, each handled here:
//!
//! * **Response header values are `&'static str`.** The routing headers take
//!   one of a few values per node id and node count; `static_header`
//!   interns each distinct line once (a precomputed table for small numbers,
//!   a leak-once map beyond), so nothing leaks per request.
//! * **It parses `Content-Length` with `unwrap()`** when the body is read.
//!   Every request's framing is validated here first; the body reader is
//!   only created for a valid length within the route's limit.
//! * **It cannot close a connection from a handler**, and a body left unread
//!   would be parsed as the next request. When a body cannot be read (bad or
//!   oversized `Content-Length`, chunked encoding, a client that went away
//!   mid-body), the reply says `Connection: close` and the connection is
//!   *poisoned*: every later request on it is refused with 400 and touches
//!   nothing, so leftover bytes can never act as a request.
//! * **It writes whatever body the handler sets, HEAD included**, and always
//!   a `Content-Length`. A HEAD request (405 on every route) gets the status
//!   and headers only, so a keep-alive client stays in step.
//! * **16 headers at most**, request and response. A request with more is a
//!   parse error and its connection is dropped by the library.
//! * **Coroutine stacks are small** (32 KiB by default). The server sets
//!   [`ServerConfig::stack_size`] (256 KiB), bodies live on the heap, and
//!   JSON bodies are capped (64 KiB) and parsed into small typed structs.
//! * **Handlers run on the coroutine workers**, so nothing slow runs here:
//!   relocation and TTL sweeps are the cluster's own OS threads, and
//!   membership changes return without waiting for keys to move.
//!
//! A request holds an epoch pin only inside a cluster call, never across
//! socket I/O (a coroutine yield), so a slow client cannot hold back the
//! mover's grace period.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use may_minihttp::{HttpServiceFactory, Request, Response};
use parking_lot::Mutex;

use crate::api::{self, ApiError, Body, Limits, Reply, Route};
use crate::cluster::Cluster;
use crate::ring::NodeId;
use crate::telemetry::{self, Telemetry};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Request limits.
    pub limits: Limits,
    /// When set, membership-changing routes need `Authorization: Bearer`
    /// with this token.
    pub admin_token: Option<String>,
    /// Coroutine worker threads (0: one per core).
    pub workers: usize,
    /// Coroutine stack size in bytes.
    pub stack_size: usize,
    /// Record request metrics (off only to measure their cost).
    pub metrics: bool,
    /// Config reload counts to export, when a config file is watched.
    pub reload_stats: Option<Arc<crate::config::ReloadStats>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            admin_token: None,
            workers: 0,
            stack_size: 256 << 10,
            metrics: true,
            reload_stats: None,
        }
    }
}

/// Interns `"{prefix}{n}"` as a `&'static str`: numbers below 1024 come from
/// a table built once; larger ones are leaked once each (node ids are never
/// reused, so this grows by at most one line per node ever added).
fn static_header(
    prefix: &'static str,
    table: &'static OnceLock<Vec<&'static str>>,
    n: u64,
) -> &'static str {
    const TABLE: u64 = 1024;
    if n < TABLE {
        let t = table.get_or_init(|| {
            (0..TABLE)
                .map(|i| &*Box::leak(format!("{prefix}{i}").into_boxed_str()))
                .collect()
        });
        return t[n as usize];
    }
    static OVERFLOW: OnceLock<Mutex<HashMap<(&'static str, u64), &'static str>>> = OnceLock::new();
    let mut map = OVERFLOW.get_or_init(Default::default).lock();
    map.entry((prefix, n))
        .or_insert_with(|| Box::leak(format!("{prefix}{n}").into_boxed_str()))
}

fn index_header(id: NodeId) -> &'static str {
    static T: OnceLock<Vec<&'static str>> = OnceLock::new();
    static_header("X-CacheServer-Index: ", &T, u64::from(id.0))
}

fn count_header(count: usize) -> &'static str {
    static T: OnceLock<Vec<&'static str>> = OnceLock::new();
    static_header("X-CacheServer-Count: ", &T, count as u64)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// What the server shares between connections.
struct Shared {
    cluster: Arc<Cluster>,
    config: ServerConfig,
    telemetry: Telemetry,
}

/// One connection's service.
struct Connection {
    shared: Arc<Shared>,
    /// Set once a body could not be read; see the module docs.
    poisoned: bool,
}

/// How a request's body is framed, checked before anything reads it.
enum Framing {
    /// `Content-Length: n` (or none: 0).
    Length(usize),
    /// The body cannot be read; refuse with this status and message.
    Unreadable(u16, String),
}

fn framing(req: &Request, limit: usize) -> Framing {
    let mut length: Option<usize> = None;
    for h in req.headers() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Framing::Unreadable(
                411,
                "Transfer-Encoding is not supported; send the body with a Content-Length".into(),
            );
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            let Some(n) = parsed else {
                return Framing::Unreadable(
                    400,
                    format!(
                        "Content-Length must be a decimal byte count, got {:?}",
                        String::from_utf8_lossy(h.value)
                    ),
                );
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if length.is_some_and(|l| l != n) {
                return Framing::Unreadable(400, "conflicting Content-Length headers".into());
            }
            length = Some(n);
        }
    }
    let n = length.unwrap_or(0);
    if n > limit {
        return Framing::Unreadable(
            413,
            format!("the body is {n} bytes; at most {limit} are accepted here"),
        );
    }
    Framing::Length(n)
}

/// The key a `/keys/` request names (its raw segment when it does not
/// decode), so any reply to it can name the node the key maps to.
fn request_key(routed: &Result<Route, ApiError>) -> Option<&[u8]> {
    match routed {
        Ok(r) => r.key(),
        Err(e) => e.raw_key.as_deref(),
    }
}

/// Adds the routing headers for `key` (the key's owner under the current
/// ring, and the node count) to a reply the cluster did not route itself:
/// design.md asks for them on every `/keys/` response, errors included.
fn with_routing(cluster: &Cluster, mut reply: Reply, key: Option<&[u8]>) -> Reply {
    if reply.routing.is_none() {
        if let Some(k) = key {
            if let Some(owner) = cluster.ring().lookup(k) {
                reply.routing = Some((owner, cluster.node_count()));
            }
        }
    }
    reply
}

fn authorized(req: &Request, token: &str) -> bool {
    let want = format!("Bearer {token}");
    req.headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
        // Compare in constant time for the token's length.
        .any(|h| {
            h.value.len() == want.len()
                && h.value
                    .iter()
                    .zip(want.as_bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

impl Connection {
    /// Turns one request into a reply; may poison the connection.
    /// Returns the route's metric index with the reply.
    fn handle(&mut self, req: Request) -> (usize, Reply) {
        let shared = &*self.shared;
        let limits = &shared.config.limits;
        let routed = api::route(req.method(), req.path(), limits);
        let route = routed.as_ref().ok();
        let metric = telemetry::route_index(route);
        let with_routing =
            |reply: Reply| with_routing(&shared.cluster, reply, request_key(&routed));
        let body_limit = route.and_then(|r| r.body_limit(limits));
        let n = match framing(&req, body_limit.unwrap_or(limits.max_admin_body_bytes)) {
            Framing::Length(n) => n,
            Framing::Unreadable(status, msg) => {
                self.poisoned = true;
                return (metric, with_routing(Reply::error(status, &msg)));
            }
        };
        if body_limit.is_some()
            && !req
                .headers()
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            // Nothing to drain: without Content-Length the body is empty.
            return (
                metric,
                with_routing(Reply::error(411, "a Content-Length header is required")),
            );
        }
        let admin_ok = match (&shared.config.admin_token, route) {
            (Some(token), Some(r)) if r.is_admin() => authorized(&req, token),
            _ => true,
        };
        // Read (or drain) the body before answering, so the connection
        // stays in step whatever the answer.
        let mut body = Vec::with_capacity(n.min(64 << 10));
        if n > 0 {
            let read = req.body().take(n as u64).read_to_end(&mut body);
            if read.is_err() || body.len() < n {
                self.poisoned = true;
                return (
                    metric,
                    with_routing(Reply::error(
                        400,
                        &format!("the body ended after {} of {n} bytes", body.len()),
                    )),
                );
            }
        }
        let route = match &routed {
            Ok(r) => r,
            Err(ApiError {
                status, message, ..
            }) => return (metric, with_routing(Reply::error(*status, message))),
        };
        if !admin_ok {
            return (
                metric,
                Reply::error(
                    401,
                    "this route changes membership: send Authorization: Bearer <admin token>",
                ),
            );
        }
        let reply = match api::command(route, body, limits) {
            Ok(command) => api::execute(&shared.cluster, command, || {
                shared
                    .telemetry
                    .render(&shared.cluster, shared.config.reload_stats.as_deref())
            }),
            Err(e) => Reply::error(e.status, &e.message),
        };
        (metric, with_routing(reply))
    }
}

impl may_minihttp::HttpService for Connection {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        let started = Instant::now();
        // A response to HEAD must not carry content (RFC 9110, 9.3.2): a
        // client would read it as the start of the next response.
        let head = req.method() == "HEAD";
        let (metric, reply) = if self.poisoned {
            // Refused without reading anything; a `/keys/` request still
            // gets its routing headers.
            let shared = &*self.shared;
            let routed = api::route(req.method(), req.path(), &shared.config.limits);
            let reply = Reply::error(
                400,
                "an earlier request on this connection could not be read; open a new connection",
            );
            (
                telemetry::route_index(None),
                with_routing(&shared.cluster, reply, request_key(&routed)),
            )
        } else {
            self.handle(req)
        };
        rsp.status_code(usize::from(reply.status), reason(reply.status));
        if let Some((node, count)) = reply.routing {
            rsp.header(index_header(node));
            rsp.header(count_header(count));
        }
        if self.poisoned {
            rsp.header("Connection: close");
        }
        match reply.body {
            _ if head => {}
            Body::Empty => {}
            Body::Value(v) => {
                rsp.header("Content-Type: application/octet-stream");
                rsp.body_mut().extend_from_slice(&v);
            }
            Body::Json(s) => {
                rsp.header("Content-Type: application/json");
                rsp.body_vec(s.into_bytes());
            }
            Body::Html(page) => {
                rsp.header("Content-Type: text/html; charset=utf-8");
                rsp.body(page);
            }
            Body::Text(s) => {
                rsp.header("Content-Type: text/plain; version=0.0.4; charset=utf-8");
                rsp.body_vec(s.into_bytes());
            }
        }
        self.shared
            .telemetry
            .record(metric, reply.status, started.elapsed());
        Ok(())
    }
}

struct Factory(Arc<Shared>);

impl HttpServiceFactory for Factory {
    type Service = Connection;

    fn new_service(&self, _id: usize) -> Connection {
        Connection {
            shared: self.0.clone(),
            poisoned: false,
        }
    }
}

/// A running server.
pub struct Server {
    handle: may::coroutine::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves `cluster` on may coroutines.
    ///
    /// may's worker count and stack size are process-wide and are set from
    /// `config` by the first server started.
    ///
    /// # Errors
    ///
    /// The bind error (address in use, permission, bad address).
    pub fn start(addr: &str, cluster: Arc<Cluster>, config: ServerConfig) -> io::Result<Server> {
        static CONFIGURED: OnceLock<()> = OnceLock::new();
        CONFIGURED.get_or_init(|| {
            let workers = if config.workers == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                config.workers
            };
            // may counts stack size in machine words.
            may::config()
                .set_workers(workers)
                .set_stack_size(config.stack_size / std::mem::size_of::<usize>());
        });
        // may binds with SO_REUSEPORT, so a second server on a busy port
        // would silently share it with the first instead of failing. A plain
        // bind first (no SO_REUSEPORT) fails with "address in use" then.
        drop(std::net::TcpListener::bind(addr)?);
        let telemetry = Telemetry::new(config.metrics);
        let shared = Arc::new(Shared {
            cluster,
            config,
            telemetry,
        });
        let handle = Factory(shared).start(addr)?;
        Ok(Server { handle })
    }

    /// Blocks until the server stops (it does not stop on its own).
    pub fn wait(self) {
        // The accept coroutine only ends if cancelled; its result is ().
        let _ = self.handle.join();
    }
}
