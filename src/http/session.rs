//! One connection's HTTP/1.1 protocol, without I/O: bytes in, requests to a
//! [`Service`], response bytes out.
//!
//! This module owns request framing (the head, parsed by `httparse`;
//! `Content-Length` and chunked bodies), the protocol decisions around it
//! (keep-alive, `Expect: 100-continue`, which errors close the connection)
//! and response encoding. It never touches a socket or a clock (the date is
//! passed in), so the fuzz target and the unit tests drive it with any split
//! of any byte stream, and the connection loop (`http::conn`) only moves
//! bytes and enforces time.
//!
//! # Bounded memory
//!
//! A session holds at most:
//! * the unparsed input: a request head of at most
//!   [`SessionLimits::max_head_bytes`] (431 beyond it), plus what one read
//!   adds ([`READ_CHUNK`]); body bytes leave the input buffer as they
//!   arrive;
//! * the current request's body: at most the limit the service gave for
//!   its route (413 beyond it, checked before reading for
//!   `Content-Length`, as bytes arrive for chunked bodies);
//! * unsent replies: [`Session::advance`] stops taking requests and asks for
//!   a flush once they reach [`SessionLimits::max_pending_reply_bytes`], so a
//!   client that pipelines without reading is back-pressured and holds at
//!   most that bound plus one reply.
//!
//! # Errors and closing
//!
//! A request whose framing cannot be trusted (malformed head, bad or
//! conflicting `Content-Length`, `Transfer-Encoding` with `Content-Length`,
//! a coding other than `chunked`, bad chunk framing, a body over its limit)
//! gets its error reply with `Connection: close`, and nothing after it on
//! the connection is read: bytes that follow can never run as a request.
//! A request the service refuses from its head alone (bad key, unknown
//! route, missing admin token) keeps the connection when its body is small
//! enough to skip ([`SessionLimits::max_skipped_body_bytes`]); otherwise it
//! closes too. Closing after a reply is the connection loop's job
//! ([`Step::Close`]): it writes the reply first, always.
//!
//! # Expect: 100-continue
//!
//! A request that sends `Expect: 100-continue` with a body gets
//! `100 Continue` as soon as its head is accepted (route, limits and admin
//! token checked), or its final error without the body being read (and the
//! connection closes, since the client may send the body anyway). `100
//! Continue` is sent even when the body already arrived, so the bytes a
//! session writes never depend on how its input was split.

use std::borrow::Cow;
use std::sync::Arc;

/// How many bytes one read may add to the input buffer.
pub const READ_CHUNK: usize = 16 << 10;

/// Header lines a request may have: `httparse` parses into an array of this
/// size, and more is a 431 like an over-long head. Browsers and proxies send
/// around 10 to 20.
pub const MAX_HEADERS: usize = 64;

/// The longest chunk-size line (hex size plus extensions) accepted in a
/// chunked body.
pub const MAX_CHUNK_LINE: usize = 1024;

/// What a session accepts and buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest request head (request line and headers), in bytes; a longer
    /// one is refused with 431 and the connection closed (default:
    /// `Limits::max_header_bytes`).
    pub max_head_bytes: usize,
    /// A refused request's body up to this many bytes is read and thrown
    /// away so the connection stays in step; a larger one closes it
    /// (default: the admin body limit).
    pub max_skipped_body_bytes: usize,
    /// Unsent reply bytes at which the session stops taking requests until
    /// they are written.
    pub max_pending_reply_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        let limits = crate::settings::Limits::default();
        SessionLimits {
            max_head_bytes: limits.max_header_bytes,
            max_skipped_body_bytes: limits.max_admin_body_bytes,
            max_pending_reply_bytes: 256 << 10,
        }
    }
}

/// How a request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: n`, or no body header at all (`n` = 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head: what the service needs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method, as sent (methods are case-sensitive).
    pub method: Cow<'static, str>,
    /// The request target (path and query), as sent.
    pub target: String,
    /// HTTP/1.0 rather than HTTP/1.1.
    pub http10: bool,
    /// Whether the client wants the connection kept after this request.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The body's framing.
    pub body: BodyFraming,
    /// Whether a `Content-Length` header was sent (a route that needs a
    /// body may insist on one, or on chunked framing).
    pub has_content_length: bool,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<Vec<u8>>,
}

impl Head {
    /// True when the request carries a body (chunked, or a non-zero
    /// length).
    pub fn has_body(&self) -> bool {
        self.body != BodyFraming::Length(0)
    }
}

/// A header value that needs no allocation in the common cases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    /// Fixed text.
    Static(&'static str),
    /// A decimal number.
    Number(u64),
}

/// A response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No content.
    Empty,
    /// Fixed content (the dashboard page).
    Static(&'static [u8]),
    /// Owned content (JSON, metrics text).
    Owned(Vec<u8>),
    /// A cached value, shared with the store.
    Shared(Arc<[u8]>),
}

impl ResponseBody {
    fn bytes(&self) -> &[u8] {
        match self {
            ResponseBody::Empty => &[],
            ResponseBody::Static(b) => b,
            ResponseBody::Owned(b) => b,
            ResponseBody::Shared(b) => b,
        }
    }
}

/// A response a [`Service`] gives; the session adds `Date`,
/// `Content-Length` and `Connection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Further headers (name without colon, value).
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// The content (not sent in reply to HEAD).
    pub body: ResponseBody,
}

/// What a service decides from a request's head, before its body is read.
#[derive(Debug)]
pub enum Check {
    /// Read the body (at most `body_limit` bytes, else 413), then call
    /// [`Service::call`].
    Accept {
        /// The most body bytes this request may send.
        body_limit: usize,
    },
    /// Answer with this response without calling the service; the body, if
    /// any, is skipped (or the connection closed; see the module docs).
    Refuse(Response),
}

/// The application behind a session.
pub trait Service {
    /// Decides on a request from its head alone. Called once per request;
    /// [`Service::call`] follows for the same head when it accepts.
    fn check(&mut self, head: &Head) -> Check;

    /// Answers a complete request.
    fn call(&mut self, head: &Head, body: Vec<u8>) -> Response;

    /// The response for a protocol error the session found (`head` is the
    /// request's, when it was parsed), so the service can add what every
    /// reply of its carries.
    fn error(&mut self, head: Option<&Head>, status: u16, message: &str) -> Response;
}

/// Where a session is in a request, for the connection loop's timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: no byte of the next one has arrived.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// The head is complete; the body is being read.
    Body,
}

/// What the connection loop should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write any pending output, then read more input (the session is in
    /// this phase).
    Read(Phase),
    /// Write the pending output before the session takes more requests.
    Flush,
    /// Write the pending output, then close the connection.
    Close,
}

/// A chunked body's decoding state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Reading chunk data; this many bytes remain.
    Data(u64),
    /// Reading the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk; bytes seen so far.
    Trailers(usize),
}

/// How the body of the current request is being read.
#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(Chunk),
}

/// The current request, once its head is parsed.
struct Current {
    head: Head,
    body: Vec<u8>,
    state: BodyState,
    limit: usize,
    /// `Some` when the service refused the request: the body is skipped
    /// (not kept) and this is the answer.
    refusal: Option<Response>,
}

/// A body framing problem, with the status it earns.
struct FrameError(u16, Cow<'static, str>);

/// One connection's protocol state. See the module docs.
pub struct Session<S> {
    service: S,
    limits: SessionLimits,
    /// Input; `input[lo..hi]` is not yet consumed.
    input: Vec<u8>,
    lo: usize,
    hi: usize,
    current: Option<Current>,
    output: Vec<u8>,
    /// Set once the connection must close after the pending output.
    closing: bool,
    /// Set by [`Session::stop_after_reply`]: answer what is under way,
    /// then close.
    stopping: bool,
    /// The `Date` header line to send (`Date: ...\r\n`), or empty.
    date: Vec<u8>,
}

impl<S: Service> Session<S> {
    /// A session for one new connection.
    pub fn new(service: S, limits: SessionLimits) -> Self {
        Session {
            service,
            limits,
            input: Vec::new(),
            lo: 0,
            hi: 0,
            current: None,
            output: Vec::with_capacity(4096),
            closing: false,
            stopping: false,
            date: Vec::new(),
        }
    }

    /// The service.
    pub fn service(&mut self) -> &mut S {
        &mut self.service
    }

    /// Sets the `Date` value sent with every response from now on (an
    /// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`); empty sends none.
    pub fn set_date(&mut self, date: &[u8]) {
        self.date.clear();
        if !date.is_empty() {
            self.date.extend_from_slice(b"Date: ");
            self.date.extend_from_slice(date);
            self.date.extend_from_slice(b"\r\n");
        }
    }

    /// Space to read into: at least [`READ_CHUNK`] bytes. Call
    /// [`Session::filled`] with how many were written.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.lo == self.hi {
            self.lo = 0;
            self.hi = 0;
        }
        if self.input.len() - self.hi < READ_CHUNK {
            if self.lo > 0 {
                self.input.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            if self.input.len() - self.hi < READ_CHUNK {
                self.input.resize(self.hi + READ_CHUNK, 0);
            }
        }
        &mut self.input[self.hi..]
    }

    /// Records that `n` bytes were read into [`Session::spare`].
    ///
    /// # Panics
    ///
    /// If `n` is more than the spare space (a caller bug).
    pub fn filled(&mut self, n: usize) {
        assert!(
            self.hi + n <= self.input.len(),
            "filled past the spare space"
        );
        self.hi += n;
    }

    /// Copies `bytes` in as if read (for tests and the fuzz target).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// Bytes buffered but not yet consumed (for the bounded-memory checks).
    pub fn buffered(&self) -> usize {
        self.hi - self.lo + self.current.as_ref().map_or(0, |c| c.body.len())
    }

    /// Capacity held by the input buffer, in bytes.
    pub fn input_capacity(&self) -> usize {
        self.input.len()
    }

    /// The response bytes to write.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Forgets the first `n` output bytes (they were written).
    pub fn consume_output(&mut self, n: usize) {
        self.output.drain(..n);
    }

    /// Where the session is in the current request.
    pub fn phase(&self) -> Phase {
        match &self.current {
            Some(_) => Phase::Body,
            None if self.lo == self.hi => Phase::Idle,
            None => Phase::Head,
        }
    }

    /// Answers the request under way (and nothing after it), then closes:
    /// for a server shutting down.
    pub fn stop_after_reply(&mut self) {
        self.stopping = true;
    }

    /// The connection timed out mid-request: queues a 408 and closes.
    pub fn timed_out(&mut self) {
        if !self.closing {
            let head = self.current.take().map(|c| c.head);
            let r = self.service.error(
                head.as_ref(),
                408,
                "the request did not arrive in time; send it again on a new connection",
            );
            self.respond(head.as_ref(), r, false);
        }
    }

    /// Takes requests from the input as far as it can. See [`Step`].
    pub fn advance(&mut self) -> Step {
        loop {
            if self.closing {
                return Step::Close;
            }
            if self.output.len() >= self.limits.max_pending_reply_bytes {
                return Step::Flush;
            }
            if self.current.is_none() {
                if self.lo == self.hi && self.stopping {
                    self.closing = true;
                    continue;
                }
                if !self.parse_head() {
                    return Step::Read(self.phase());
                }
                if self.current.is_none() {
                    // Answered from the head alone (refused, too large, or
                    // not HTTP).
                    continue;
                }
            }
            match self.read_body() {
                Ok(false) => return Step::Read(Phase::Body),
                Ok(true) => {
                    let cur = self.current.take().expect("a request is under way");
                    let keep = cur.head.keep_alive;
                    let r = match cur.refusal {
                        Some(r) => r,
                        None => self.service.call(&cur.head, cur.body),
                    };
                    self.respond(Some(&cur.head), r, keep);
                }
                Err(FrameError(status, message)) => {
                    let cur = self.current.take().expect("a request is under way");
                    let r = match (cur.refusal, status) {
                        // A refused request whose body is too large to skip:
                        // its own answer, then close.
                        (Some(r), 413) => r,
                        _ => self.service.error(Some(&cur.head), status, &message),
                    };
                    self.respond(Some(&cur.head), r, false);
                }
            }
        }
    }

    /// Answers a request that cannot be read on with an error, and closes.
    fn fail(&mut self, head: Option<&Head>, status: u16, message: &str) -> bool {
        let r = self.service.error(head, status, message);
        self.respond(head, r, false);
        true
    }

    /// Parses a head from the input. True: a request is under way
    /// (`self.current` is set), or its reply is already queued. False: more
    /// input is needed.
    fn parse_head(&mut self) -> bool {
        let max = self.limits.max_head_bytes;
        // Only the first `max` bytes are parsed, so the outcome (a head, a
        // 400 or a 431) never depends on how much input arrived at once.
        let buf = &self.input[self.lo..self.hi.min(self.lo + max)];
        if buf.is_empty() {
            return false;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(buf);
        let n = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < max => return false,
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return self.fail(
                    None,
                    431,
                    &format!(
                        "the request head is larger than this server accepts ({max} bytes, {MAX_HEADERS} header lines)"
                    ),
                )
            }
            Err(e) => {
                return self.fail(
                    None,
                    400,
                    &format!("the request is not valid HTTP/1.1: {e}"),
                )
            }
        };
        let method: Cow<'static, str> = match req.method.unwrap_or_default() {
            "GET" => "GET".into(),
            "PUT" => "PUT".into(),
            "POST" => "POST".into(),
            "DELETE" => "DELETE".into(),
            "HEAD" => "HEAD".into(),
            other => other.to_owned().into(),
        };
        let target = req.path.unwrap_or_default().to_owned();
        let http10 = req.version == Some(0);
        let mut head = Head {
            method,
            target,
            http10,
            keep_alive: !http10,
            expect_continue: false,
            body: BodyFraming::Length(0),
            has_content_length: false,
            authorization: None,
        };
        let framing = framing(req.headers, &mut head);
        self.lo += n;
        if let Err(FrameError(status, message)) = framing {
            return self.fail(Some(&head), status, &message);
        }
        let (limit, refusal) = match self.service.check(&head) {
            Check::Accept { body_limit } => (body_limit, None),
            Check::Refuse(r) => (self.limits.max_skipped_body_bytes, Some(r)),
        };
        if let Some(r) = &refusal {
            if head.has_body() && head.expect_continue {
                // The client waits before sending the body: answer now and
                // close rather than read a body nobody wants.
                let r = r.clone();
                self.respond(Some(&head), r, false);
                return true;
            }
        }
        if let BodyFraming::Length(len) = head.body {
            if len > limit as u64 {
                let r = match refusal {
                    Some(r) => r,
                    None => self.service.error(
                        Some(&head),
                        413,
                        &format!("the body is {len} bytes; at most {limit} are accepted here"),
                    ),
                };
                self.respond(Some(&head), r, false);
                return true;
            }
        }
        if head.expect_continue && head.has_body() {
            self.output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let state = match head.body {
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(Chunk::Size),
        };
        let keep = refusal.is_none();
        self.current = Some(Current {
            body: Vec::with_capacity(match head.body {
                // The length was checked against the limit above.
                BodyFraming::Length(n) if keep => usize::try_from(n).unwrap_or(0),
                _ => 0,
            }),
            head,
            state,
            limit,
            refusal,
        });
        true
    }

    /// Moves body bytes from the input into the current request. `Ok(true)`
    /// when the body is complete.
    fn read_body(&mut self) -> Result<bool, FrameError> {
        let cur = self.current.as_mut().expect("a request is under way");
        let keep = cur.refusal.is_none();
        loop {
            let buf = &self.input[self.lo..self.hi];
            match &mut cur.state {
                BodyState::Length(remaining) => {
                    let n = usize::try_from(*remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    if keep {
                        cur.body.extend_from_slice(&buf[..n]);
                    }
                    self.lo += n;
                    *remaining -= n as u64;
                    return Ok(*remaining == 0);
                }
                BodyState::Chunked(Chunk::Size) => {
                    let Some(end) = buf.iter().take(MAX_CHUNK_LINE).position(|&b| b == b'\n')
                    else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(bad_chunk("a chunk-size line is too long"));
                        }
                        return Ok(false);
                    };
                    let size = chunk_size(&buf[..end])?;
                    self.lo += end + 1;
                    cur.state = BodyState::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        if cur.body.len() as u64 + size > cur.limit as u64
                            || (!keep && size > cur.limit as u64)
                        {
                            return Err(FrameError(
                                413,
                                format!(
                                    "the chunked body is larger than the {} bytes accepted here",
                                    cur.limit
                                )
                                .into(),
                            ));
                        }
                        if !keep {
                            // Skipped bodies count against the limit too.
                            cur.limit -= usize::try_from(size).unwrap_or(usize::MAX);
                        }
                        Chunk::Data(size)
                    });
                }
                BodyState::Chunked(Chunk::Data(remaining)) => {
                    let n = usize::try_from(*remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    if n == 0 {
                        return Ok(false);
                    }
                    if keep {
                        cur.body.extend_from_slice(&buf[..n]);
                    }
                    self.lo += n;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        cur.state = BodyState::Chunked(Chunk::DataEnd);
                    }
                }
                BodyState::Chunked(Chunk::DataEnd) => {
                    match buf {
                        [b'\r', b'\n', ..] => self.lo += 2,
                        [b'\r'] | [] => return Ok(false),
                        _ => return Err(bad_chunk("chunk data must be followed by CRLF")),
                    }
                    cur.state = BodyState::Chunked(Chunk::Size);
                }
                BodyState::Chunked(Chunk::Trailers(seen)) => {
                    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                        if *seen + buf.len() > self.limits.max_head_bytes {
                            return Err(bad_chunk("the chunked body's trailers are too long"));
                        }
                        return Ok(false);
                    };
                    *seen += end + 1;
                    if *seen > self.limits.max_head_bytes {
                        return Err(bad_chunk("the chunked body's trailers are too long"));
                    }
                    let line = &buf[..end];
                    self.lo += end + 1;
                    match line {
                        b"\r" => return Ok(true),
                        [.., b'\r'] if line.contains(&b':') => {}
                        _ => return Err(bad_chunk("a trailer line is malformed")),
                    }
                }
            }
        }
    }

    /// Encodes `r` as the reply to `head` (or to an unparsed request), and
    /// closes the connection after it unless `keep` (and the request asked
    /// to keep it, and the session is not stopping).
    fn respond(&mut self, head: Option<&Head>, r: Response, keep: bool) {
        let keep = keep && !self.stopping && head.is_some_and(|h| h.keep_alive);
        let http10 = head.is_some_and(|h| h.http10);
        let is_head = head.is_some_and(|h| h.method == "HEAD");
        let out = &mut self.output;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(r.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(r.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.date);
        for (name, value) in &r.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            match value {
                HeaderValue::Static(s) => out.extend_from_slice(s.as_bytes()),
                HeaderValue::Number(n) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes())
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        if !keep {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        let body = r.body.bytes();
        // No Content-Length on 204 (RFC 9110, 8.6); none on a HEAD reply
        // either, whose length would have to be GET's.
        if r.status != 204 && !is_head {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !is_head && r.status != 204 {
            out.extend_from_slice(body);
        }
        if !keep {
            self.closing = true;
        }
    }
}

fn bad_chunk(what: &'static str) -> FrameError {
    FrameError(400, format!("bad chunked body: {what}").into())
}

/// Parses a chunk-size line (without its `\n`): hex digits, optional
/// extensions after `;`, then `\r`.
fn chunk_size(line: &[u8]) -> Result<u64, FrameError> {
    let line = line
        .strip_suffix(b"\r")
        .ok_or_else(|| bad_chunk("a chunk-size line must end with CRLF"))?;
    let digits = line
        .iter()
        .position(|&b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let rest = &line[digits..];
    if digits == 0 || digits > 15 {
        return Err(bad_chunk("a chunk size must be 1 to 15 hex digits"));
    }
    let ext_ok = rest.is_empty() || {
        let rest = rest.trim_ascii_start();
        rest.first() == Some(&b';')
            && rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
    };
    if !ext_ok {
        return Err(bad_chunk(
            "a chunk size must be followed by CRLF or ';' extensions",
        ));
    }
    let text = std::str::from_utf8(&line[..digits]).expect("hex digits are ASCII");
    Ok(u64::from_str_radix(text, 16).expect("at most 15 hex digits fit a u64"))
}

/// Reads the headers the session acts on into `head`.
fn framing(headers: &[httparse::Header<'_>], head: &mut Head) -> Result<(), FrameError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    FrameError(
                        400,
                        format!(
                            "Content-Length must be a decimal byte count, got {:?}",
                            String::from_utf8_lossy(h.value)
                        )
                        .into(),
                    )
                })?;
            if length.is_some_and(|l| l != n) {
                return Err(FrameError(400, "conflicting Content-Length headers".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(h.value);
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if chunked || !coding.eq_ignore_ascii_case("chunked") {
                    return Err(FrameError(
                        501,
                        format!(
                            "Transfer-Encoding {value:?} is not supported; send the body with Content-Length or as plain chunked"
                        )
                        .into(),
                    ));
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(h.value).split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && head.http10 {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                head.expect_continue = true;
            } else {
                return Err(FrameError(
                    417,
                    "the only expectation this server meets is Expect: 100-continue".into(),
                ));
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(h.value.to_vec());
        }
    }
    if chunked && length.is_some() {
        // RFC 9112, 6.3: the pair is how requests are smuggled; refuse it.
        return Err(FrameError(
            400,
            "a request may not have both Transfer-Encoding and Content-Length".into(),
        ));
    }
    if chunked && head.http10 {
        return Err(FrameError(400, "chunked framing needs HTTP/1.1".into()));
    }
    head.has_content_length = length.is_some();
    head.body = if chunked {
        BodyFraming::Chunked
    } else {
        BodyFraming::Length(length.unwrap_or(0))
    };
    Ok(())
}

pub use crate::api::{reason, STATUSES};

#[cfg(test)]
mod tests {
    use super::super::replay::{replay, Transcript, LIMITS};
    use super::*;

    /// Replays `input` whole and in several splits; every split must give
    /// the same transcript. Returns it.
    fn run(input: &[u8]) -> Transcript {
        let whole = replay(input, &[0]);
        for sizes in [&[1][..], &[2], &[3, 1, 7], &[13], &[100, 1]] {
            assert_eq!(replay(input, sizes), whole, "split {sizes:?} differs");
        }
        whole
    }

    fn statuses(t: &Transcript) -> Vec<u16> {
        let text = String::from_utf8_lossy(&t.output);
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| text[i + 9..i + 12].parse().ok())
            .collect()
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let t = run(b"GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzDELETE /c HTTP/1.1\r\n\r\n");
        assert_eq!(statuses(&t), [200, 200, 200]);
        let lines: Vec<&str> = t.seen.iter().map(|s| s.line.as_str()).collect();
        assert_eq!(lines, ["GET /a", "PUT /b", "DELETE /c"]);
        assert_eq!(t.seen[1].body, b"xyz");
        assert!(!t.closed);
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let t = run(b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
        assert_eq!(statuses(&t), [200, 200]);
        assert_eq!(t.seen[0].body, b"hello world");
        assert_eq!(t.seen[1].line, "GET /next");
    }

    #[test]
    fn bad_chunk_framing_is_400_and_closes() {
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"1234567890123456\r\n",
            b"0\r\nno colon here\r\n\r\n",
        ] {
            let mut input = b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            input.extend_from_slice(body);
            input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\n\r\n");
            let t = run(&input);
            assert_eq!(statuses(&t), [400], "{:?}", String::from_utf8_lossy(body));
            assert!(t.closed && t.seen.is_empty());
            assert!(String::from_utf8_lossy(&t.output).contains("Connection: close"));
        }
    }

    #[test]
    fn bodies_over_the_limit_are_413_and_close() {
        let big = format!(
            "PUT /small HTTP/1.1\r\nContent-Length: 17\r\n\r\n{}GET /x HTTP/1.1\r\n\r\n",
            "a".repeat(17)
        );
        let t = run(big.as_bytes());
        assert_eq!((statuses(&t), t.closed, t.seen.len()), (vec![413], true, 0));
        let chunked = b"PUT /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n";
        let t = run(chunked);
        assert_eq!((statuses(&t), t.closed, t.seen.len()), (vec![413], true, 0));
        // Exactly the limit is fine.
        let t = run(b"PUT /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
        assert_eq!(statuses(&t), [200]);
    }

    #[test]
    fn expect_continue_gets_100_then_the_answer() {
        let t = run(b"PUT /k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(statuses(&t), [100, 200]);
        assert_eq!(t.seen[0].body, b"hi");
        // Refused or too large: the final answer at once, no 100, and the
        // body that follows anyway is never read as a request.
        for head in [
            "PUT /refuse HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 26\r\n\r\n",
            "PUT /small HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 26\r\n\r\n",
        ] {
            let input = format!("{head}GET /smuggled HTTP/1.1\r\n\r\n");
            let t = run(input.as_bytes());
            assert_eq!(statuses(&t).len(), 1, "{head}");
            assert!(![100, 200].contains(&statuses(&t)[0]));
            assert!(t.closed && t.seen.is_empty());
        }
        // Any other expectation is 417.
        let t = run(b"PUT /k HTTP/1.1\r\nExpect: something\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!((statuses(&t), t.closed), (vec![417], true));
    }

    #[test]
    fn refused_requests_skip_small_bodies_and_close_on_large_ones() {
        let t = run(b"PUT /refuse HTTP/1.1\r\nContent-Length: 24\r\n\r\nGET /hidden HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
        assert_eq!(statuses(&t), [400, 200]);
        assert_eq!(t.seen.len(), 1);
        assert_eq!(t.seen[0].line, "GET /next");
        let large = format!(
            "PUT /refuse HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            LIMITS.max_skipped_body_bytes + 1
        );
        let t = run(large.as_bytes());
        assert_eq!((statuses(&t), t.closed), (vec![400], true));
    }

    #[test]
    fn framing_that_cannot_be_trusted_closes() {
        for (headers, status) in [
            ("Content-Length: abc\r\n", 400),
            ("Content-Length: 1\r\nContent-Length: 2\r\n", 400),
            ("Content-Length: 99999999999999999999999\r\n", 400),
            ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            ("Transfer-Encoding: chunked, chunked\r\n", 501),
        ] {
            let input =
                format!("PUT /k HTTP/1.1\r\n{headers}\r\nabcGET /smuggled HTTP/1.1\r\n\r\n");
            let t = run(input.as_bytes());
            assert_eq!(
                (statuses(&t), t.closed),
                (vec![status], true),
                "{headers:?}"
            );
            assert!(t.seen.is_empty());
        }
        // Equal duplicates are one length.
        let t = run(b"PUT /k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!(statuses(&t), [200]);
    }

    #[test]
    fn oversized_heads_are_431() {
        let long = format!(
            "GET /k HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(LIMITS.max_head_bytes)
        );
        let t = run(long.as_bytes());
        assert_eq!((statuses(&t), t.closed), (vec![431], true));
        // A head that never ends is cut off at the limit too.
        let endless = format!(
            "GET /k HTTP/1.1\r\nX-Big: {}",
            "a".repeat(4 * LIMITS.max_head_bytes)
        );
        let t = run(endless.as_bytes());
        assert_eq!((statuses(&t), t.closed), (vec![431], true));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let mut session = Session::new(
            super::super::replay::Echo::default(),
            SessionLimits::default(),
        );
        session.feed(format!("GET /k HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert_eq!(session.advance(), Step::Close);
        assert!(session.output().starts_with(b"HTTP/1.1 431 "));
    }

    #[test]
    fn malformed_requests_are_400_and_close() {
        for input in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"G\x00T / HTTP/1.1\r\n\r\n",
        ] {
            let t = run(input);
            assert_eq!((statuses(&t), t.closed), (vec![400], true), "{input:?}");
        }
    }

    #[test]
    fn connection_close_and_http10() {
        let t = run(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!((statuses(&t), t.closed, t.seen.len()), (vec![200], true, 1));
        let t = run(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
        assert_eq!((statuses(&t), t.closed), (vec![200], true));
        let t = run(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
        assert_eq!((statuses(&t), t.closed), (vec![200, 200], true));
        assert!(String::from_utf8_lossy(&t.output).contains("Connection: keep-alive"));
        // Chunked framing needs HTTP/1.1.
        let t = run(b"PUT /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!((statuses(&t), t.closed), (vec![400], true));
    }

    #[test]
    fn head_replies_have_no_body_and_204_no_length() {
        let mut session = Session::new(super::super::replay::Echo::default(), LIMITS);
        session.feed(b"HEAD /a HTTP/1.1\r\n\r\n");
        assert_eq!(session.advance(), Step::Read(Phase::Idle));
        let text = String::from_utf8_lossy(session.output()).into_owned();
        assert!(
            text.ends_with("\r\n\r\n") && !text.contains("Content-Length"),
            "{text}"
        );
    }

    #[test]
    fn pipelining_without_reading_is_back_pressured() {
        // 200 pipelined requests whose replies are 40x their size: the
        // session asks for flushes instead of buffering every reply.
        let one = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(40));
        let input = one.repeat(200);
        let mut session = Session::new(super::super::replay::Echo::default(), LIMITS);
        session.feed(input.as_bytes());
        let mut flushes = 0;
        loop {
            match session.advance() {
                Step::Flush => {
                    flushes += 1;
                    assert!(session.output().len() < LIMITS.max_pending_reply_bytes + 512);
                    let n = session.output().len();
                    session.consume_output(n);
                }
                Step::Read(_) => break,
                Step::Close => panic!("closed"),
            }
        }
        assert!(flushes > 20, "{flushes} flushes");
        assert_eq!(session.service().seen.len(), 200);
        // The replay checks the same bounds under every split.
        let t = run(input.as_bytes());
        assert_eq!(t.seen.len(), 200);
    }

    #[test]
    fn timeouts_answer_408() {
        let mut session = Session::new(super::super::replay::Echo::default(), LIMITS);
        session.feed(b"GET /slow HTTP/1.1\r\nHost: ");
        assert_eq!(session.advance(), Step::Read(Phase::Head));
        session.timed_out();
        assert_eq!(session.advance(), Step::Close);
        assert!(session.output().starts_with(b"HTTP/1.1 408 "));
        let mut session = Session::new(super::super::replay::Echo::default(), LIMITS);
        session.feed(b"PUT /slow HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc");
        assert_eq!(session.advance(), Step::Read(Phase::Body));
        session.timed_out();
        assert_eq!(session.advance(), Step::Close);
        assert!(session.output().starts_with(b"HTTP/1.1 408 "));
    }

    #[test]
    fn stopping_answers_the_request_under_way_then_closes() {
        let mut session = Session::new(super::super::replay::Echo::default(), LIMITS);
        session.feed(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        session.stop_after_reply();
        assert_eq!(session.advance(), Step::Close);
        let text = String::from_utf8_lossy(session.output()).into_owned();
        assert_eq!(text.matches("HTTP/1.1 200").count(), 1);
        assert!(text.contains("Connection: close"));
    }

    #[test]
    fn chunk_size_lines() {
        assert_eq!(chunk_size(b"1a\r").ok(), Some(26));
        assert_eq!(chunk_size(b"1A ; name=value\r").ok(), Some(26));
        assert!(chunk_size(b"\r").is_err());
        assert!(chunk_size(b"-1\r").is_err());
        assert!(chunk_size(b"1 2\r").is_err());
        assert!(chunk_size(b"fffffffffffffff\r").is_ok());
        assert!(chunk_size(b"ffffffffffffffff\r").is_err());
    }
}
