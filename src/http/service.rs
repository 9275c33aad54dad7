//! ringcache's [`Service`]: a request head becomes a [`Route`], a complete
//! request a [`Command`](crate::api::Command) run on the cluster, and the
//! [`Reply`] a [`Response`] with the routing headers.
//!
//! This module owns the translation and what every reply carries
//! (`X-CacheServer-Index` and `X-CacheServer-Count` on every `/keys/`
//! response, errors included; JSON error bodies; the admin token check). It
//! holds no cache logic and no socket.
//!
//! # Membership changes never hold a worker
//!
//! `POST /nodes`, `PUT /nodes/{i}` and `DELETE /nodes/{i}` take the
//! cluster's membership lock and, when several changes already wait for the
//! mover, wait for it. They run on one OS thread of their own
//! ([`AdminQueue`]); the request's coroutine waits for the answer on a may
//! channel, which parks the coroutine, not the worker thread, so reads on
//! every other connection go on. Changes queue in arrival order; when
//! [`MAX_QUEUED_CHANGES`] are already waiting, the route answers 429 with
//! `Retry-After` at once instead of queueing more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use super::session::{Check, Head, HeaderValue, Response, ResponseBody, Service};
use super::Shared;
use crate::api::{self, ApiError, Body, Command, Reply, Route};
use crate::cluster::Cluster;
use crate::telemetry;

/// Membership changes that may wait for the admin thread before further
/// ones are refused with 429. A change takes well under a millisecond
/// unless the mover is far behind, so a full queue means a client is
/// flooding the admin API.
pub const MAX_QUEUED_CHANGES: usize = 32;

/// Seconds a refused change is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u64 = 1;

type Job = Box<dyn FnOnce() + Send>;

/// The OS thread that applies membership changes, so coroutine workers
/// never wait on the membership lock or the mover.
pub struct AdminQueue {
    jobs: parking_lot::Mutex<Option<mpsc::Sender<Job>>>,
    /// Changes sent and not yet finished. Incremented by [`AdminQueue::run`]
    /// before sending, decremented by the job when done; Relaxed suffices,
    /// as it only bounds the queue (no data is published through it).
    queued: Arc<AtomicUsize>,
}

impl AdminQueue {
    /// Starts the admin thread.
    ///
    /// # Panics
    ///
    /// If the OS cannot start a thread.
    pub fn start() -> AdminQueue {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ringcache-admin".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("starting the admin thread");
        AdminQueue {
            jobs: parking_lot::Mutex::new(Some(tx)),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `change` on the admin thread and waits for its reply without
    /// blocking the coroutine worker; `None` when the queue is full.
    fn run(&self, change: impl FnOnce() -> Reply + Send + 'static) -> Option<Reply> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_CHANGES {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let (tx, rx) = may::sync::mpsc::channel();
        let queued = self.queued.clone();
        let job: Job = Box::new(move || {
            let reply = change();
            queued.fetch_sub(1, Ordering::Relaxed);
            // The requester may have gone; its reply is then dropped.
            let _ = tx.send(reply);
        });
        let sent = match &*self.jobs.lock() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Some(Reply::error(503, "the server is shutting down"));
        }
        Some(
            rx.recv()
                .unwrap_or_else(|_| Reply::error(500, "the membership change failed")),
        )
    }
}

/// One connection's service.
pub(super) struct CacheService {
    shared: Arc<Shared>,
    /// The route [`Service::check`] found, for [`Service::call`].
    routed: Option<Result<Route, ApiError>>,
    /// When the current request's head was complete, for its latency.
    started: Instant,
}

impl CacheService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        CacheService {
            shared,
            routed: None,
            started: Instant::now(),
        }
    }

    fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// Translates a reply, adding the routing headers for `key` when the
    /// cluster did not route it itself (design: every `/keys/` response
    /// carries them), and records it.
    fn response(&self, metric: usize, reply: Reply, key: Option<&[u8]>) -> Response {
        let routing = reply.routing.or_else(|| {
            let key = key?;
            let owner = self.cluster().ring().lookup(key)?;
            Some((owner, self.cluster().node_count()))
        });
        let mut headers = Vec::with_capacity(3);
        if let Some((node, count)) = routing {
            headers.push(("X-CacheServer-Index", HeaderValue::Number(node.0.into())));
            headers.push(("X-CacheServer-Count", HeaderValue::Number(count as u64)));
        }
        if reply.status == 429 {
            headers.push(("Retry-After", HeaderValue::Number(RETRY_AFTER_SECS)));
        }
        let (content_type, body) = match reply.body {
            Body::Empty => (None, ResponseBody::Empty),
            Body::Value(v) => (Some("application/octet-stream"), ResponseBody::Shared(v)),
            Body::Json(s) => (
                Some("application/json"),
                ResponseBody::Owned(s.into_bytes()),
            ),
            Body::Html(page) => (
                Some("text/html; charset=utf-8"),
                ResponseBody::Static(page.as_bytes()),
            ),
            Body::Text(s) => (
                Some("text/plain; charset=utf-8"),
                ResponseBody::Owned(s.into_bytes()),
            ),
            Body::Metrics(s) => (
                Some("text/plain; version=0.0.4; charset=utf-8"),
                ResponseBody::Owned(s.into_bytes()),
            ),
        };
        if let Some(t) = content_type {
            headers.push(("Content-Type", HeaderValue::Static(t)));
        }
        self.shared
            .telemetry
            .record(metric, reply.status, self.started.elapsed());
        Response {
            status: reply.status,
            headers,
            body,
        }
    }

    /// Runs a command; membership changes go through the admin queue.
    fn execute(&self, command: Command<'_>) -> Reply {
        // The commands of the routes with `Endpoint::ADMIN` (api/nodes.rs):
        // they own their data, so they can move to the admin thread.
        let admin = match command {
            Command::AddNode(c) => Command::AddNode(c),
            Command::SetVnodes(c) => Command::SetVnodes(c),
            Command::RemoveNode(c) => Command::RemoveNode(c),
            other => {
                let shared = &*self.shared;
                return api::execute(&shared.cluster, other, || {
                    shared
                        .telemetry
                        .render(&shared.cluster, shared.config.reload_stats.as_deref())
                });
            }
        };
        let cluster = self.shared.cluster.clone();
        self.shared
            .admin
            .run(move || api::execute(&cluster, admin, String::new))
            .unwrap_or_else(|| {
                Reply::error(
                    429,
                    &format!(
                        "{MAX_QUEUED_CHANGES} membership changes are already waiting; retry in {RETRY_AFTER_SECS} s"
                    ),
                )
            })
    }
}

/// Constant-time comparison of an `Authorization` value with
/// `Bearer <token>`.
fn authorized(value: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = value else { return false };
    let want = format!("Bearer {token}");
    value.len() == want.len()
        && value
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Service for CacheService {
    fn check(&mut self, head: &Head) -> Check {
        self.started = Instant::now();
        let settings = &self.shared.config.settings;
        let limits = &settings.limits;
        let routed = api::route(&head.method, &head.target, limits);
        let refuse = |this: &Self, routed: &Result<Route, ApiError>, status, msg: &str| {
            let key = match routed {
                Ok(r) => r.key(),
                Err(e) => e.raw_key.as_deref(),
            };
            let metric = telemetry::route_index(routed.as_ref().ok());
            Check::Refuse(this.response(metric, Reply::error(status, msg), key))
        };
        let route = match &routed {
            Ok(route) => route,
            Err(e) => return refuse(self, &routed, e.status, &e.message),
        };
        if route.is_admin() {
            if let Some(token) = &settings.admin_token {
                if !authorized(head.authorization.as_deref(), token) {
                    return refuse(
                        self,
                        &routed,
                        401,
                        "this route changes membership: send Authorization: Bearer <admin token>",
                    );
                }
            }
        }
        let body_limit = match route.body_limit(limits) {
            Some(_)
                if !head.has_content_length
                    && head.body != super::session::BodyFraming::Chunked =>
            {
                return refuse(
                    self,
                    &routed,
                    411,
                    "this route takes a body: send it with a Content-Length header or chunked",
                )
            }
            Some(limit) => limit,
            // A body on a route that takes none is read and ignored.
            None => limits.max_admin_body_bytes,
        };
        self.routed = Some(routed);
        Check::Accept { body_limit }
    }

    fn call(&mut self, _head: &Head, body: Vec<u8>) -> Response {
        let routed = self.routed.take().expect("call follows an accepting check");
        let route = routed.as_ref().expect("check accepts only routed requests");
        let metric = telemetry::route_index(Some(route));
        let reply = match api::command(route, body, &self.shared.config.settings) {
            Ok(command) => self.execute(command),
            Err(e) => Reply::error(e.status, &e.message),
        };
        self.response(metric, reply, route.key())
    }

    fn error(&mut self, head: Option<&Head>, status: u16, message: &str) -> Response {
        let limits = &self.shared.config.settings.limits;
        let routed = head.map(|h| api::route(&h.method, &h.target, limits));
        let key = match &routed {
            Some(Ok(r)) => r.key(),
            Some(Err(e)) => e.raw_key.as_deref(),
            None => None,
        };
        let metric = telemetry::route_index(routed.as_ref().and_then(|r| r.as_ref().ok()));
        self.routed = None;
        self.response(metric, Reply::error(status, message), key)
    }
}
