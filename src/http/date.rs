//! The `Date` header's value, formatted at most once a second per
//! connection.

use std::time::{SystemTime, UNIX_EPOCH};

/// A connection's cached IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
#[derive(Default)]
pub(super) struct Cached {
    /// The second `text` shows (0: not formatted yet).
    secs: u64,
    text: String,
}

impl Cached {
    /// Now, as an HTTP date.
    pub(super) fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text.is_empty() {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}
