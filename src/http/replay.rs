//! Test support: replays a byte stream through a [`Session`] the way the
//! connection loop does, under any split of the stream, with a small echo
//! service, and checks the session's memory bounds at every step.
//!
//! Built only for unit tests and with the `testing` feature (the
//! `http_framing` fuzz target); it is not part of the shipped library.

use super::session::{
    Check, Head, HeaderValue, Response, ResponseBody, Service, Session, SessionLimits, Step,
    MAX_CHUNK_LINE, READ_CHUNK,
};

/// The body limit the echo service gives most routes.
pub const BODY_LIMIT: usize = 1024;

/// The limits replays run under: small, so the fuzzer reaches them.
pub const LIMITS: SessionLimits = SessionLimits {
    max_head_bytes: 512,
    max_skipped_body_bytes: 64,
    max_pending_reply_bytes: 256,
};

/// A request as the service saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Method and target.
    pub line: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Routes: `/refuse...` is refused from its head (400), `/small...` takes
/// at most 16 body bytes, anything else [`BODY_LIMIT`]. Replies echo the
/// request line and body.
#[derive(Default)]
pub struct Echo {
    /// Every request called, in order.
    pub seen: Vec<Seen>,
}

impl Service for Echo {
    fn check(&mut self, head: &Head) -> Check {
        if head.target.starts_with("/refuse") {
            return Check::Refuse(self.error(Some(head), 400, "refused"));
        }
        let body_limit = if head.target.starts_with("/small") {
            16
        } else {
            BODY_LIMIT
        };
        Check::Accept { body_limit }
    }

    fn call(&mut self, head: &Head, body: Vec<u8>) -> Response {
        let line = format!("{} {}", head.method, head.target);
        let mut content = line.clone().into_bytes();
        content.push(b'\n');
        content.extend_from_slice(&body);
        self.seen.push(Seen { line, body });
        Response {
            status: 200,
            headers: vec![("X-Seen", HeaderValue::Number(self.seen.len() as u64))],
            body: ResponseBody::Owned(content),
        }
    }

    fn error(&mut self, head: Option<&Head>, status: u16, message: &str) -> Response {
        Response {
            status,
            headers: vec![("X-Error", HeaderValue::Static("1"))],
            body: ResponseBody::Owned(
                format!("{message} ({})", head.map_or("", |h| h.target.as_str())).into_bytes(),
            ),
        }
    }
}

/// What a replay produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Transcript {
    /// Every byte the session wrote, in order.
    pub output: Vec<u8>,
    /// The requests the service answered.
    pub seen: Vec<Seen>,
    /// Whether the session closed the connection (else the input ran out).
    pub closed: bool,
}

/// Replays `input` in reads whose sizes come from `sizes` (cycled; 0 means
/// as much as the session's spare space takes), as the connection loop
/// does: output is taken whenever the session asks to read or flush, and
/// input is given only when it asks to read.
///
/// # Panics
///
/// If the session ever buffers more than its limits allow.
pub fn replay(input: &[u8], sizes: &[usize]) -> Transcript {
    let mut session = Session::new(Echo::default(), LIMITS);
    let mut output = Vec::new();
    let mut at = 0;
    let mut size = sizes.iter().copied().cycle();
    // The largest reply the echo service makes: request line (within the
    // head limit) plus a body within its limit, plus headers.
    let largest_reply = LIMITS.max_head_bytes + BODY_LIMIT + 256;
    let closed = loop {
        let step = session.advance();
        assert!(
            session.output().len() <= LIMITS.max_pending_reply_bytes + largest_reply,
            "unsent replies grew to {} bytes",
            session.output().len()
        );
        assert!(
            session.input_capacity() <= LIMITS.max_head_bytes.max(MAX_CHUNK_LINE) + READ_CHUNK,
            "the input buffer grew to {} bytes",
            session.input_capacity()
        );
        assert!(
            session.buffered()
                <= LIMITS.max_head_bytes.max(MAX_CHUNK_LINE) + READ_CHUNK + BODY_LIMIT,
            "the session buffers {} bytes",
            session.buffered()
        );
        output.extend_from_slice(session.output());
        let n = session.output().len();
        session.consume_output(n);
        match step {
            Step::Close => break true,
            Step::Flush => {}
            Step::Read(_) => {
                if at == input.len() {
                    break false;
                }
                let spare = session.spare();
                let want = match size.next() {
                    Some(0) | None => spare.len(),
                    Some(s) => s.min(spare.len()),
                };
                let n = want.min(input.len() - at);
                spare[..n].copy_from_slice(&input[at..at + n]);
                session.filled(n);
                at += n;
            }
        }
    };
    Transcript {
        output,
        seen: std::mem::take(&mut session.service().seen),
        closed,
    }
}
