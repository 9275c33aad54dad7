//! `GET`, `PUT` and `DELETE /keys/{key}`: the cache itself, and the hot
//! path.
//!
//! This file owns the keys' request line (the percent-decoded key and its
//! length limit, `?ttl=SECONDS` on `PUT`), their commands, which borrow the
//! key from the route so it is never copied, and how they run on the
//! cluster: 200 or 201 for a write, 204 for a deletion, 404 for a missing
//! key, and the node that answered, for the routing headers.

use std::time::Duration;

use super::{
    cluster_error, method_not_allowed, percent_decode, ApiError, Body, Endpoint, Reply, Route,
};
use crate::cluster::Cluster;
use crate::node::SetOutcome;
use crate::ring::NodeId;
use crate::settings::{Limits, Settings};

/// `GET /keys/{key}`: the key, percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetKey(pub Vec<u8>);

/// `PUT /keys/{key}[?ttl=SECONDS]`: the key, percent-decoded, and its
/// time to live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutKey(pub Vec<u8>, pub Option<Duration>);

/// `DELETE /keys/{key}`: the key, percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteKey(pub Vec<u8>);

/// Read a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Get<'a>(pub &'a [u8]);

/// Write a key: the key, the value (the request's body) and its time to
/// live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put<'a>(pub &'a [u8], pub Vec<u8>, pub Option<Duration>);

/// Delete a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete<'a>(pub &'a [u8]);

/// The route for `/keys/{raw}` with `method` and `query`.
///
/// Every error carries the raw key, so its reply can still name the node
/// the key maps to.
pub(super) fn route(
    method: &str,
    raw: &str,
    query: &str,
    limits: &Limits,
) -> Result<Route, ApiError> {
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
    match method {
        "GET" | "DELETE" if !query.is_empty() => Err(ApiError::new(
            400,
            "query parameters are only accepted on PUT (ttl=SECONDS)",
        )
        .for_key(raw)),
        "GET" => Ok(Route::GetKey(GetKey(key))),
        "DELETE" => Ok(Route::DeleteKey(DeleteKey(key))),
        "PUT" => {
            let ttl = parse_ttl(query, limits).map_err(|e| e.for_key(raw))?;
            Ok(Route::PutKey(PutKey(key, ttl)))
        }
        _ => Err(method_not_allowed(method, "GET, PUT or DELETE").for_key(raw)),
    }
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

/// A reply for a key served by node `served.0` of `served.1`.
fn keyed(status: u16, served: (NodeId, usize), body: Body) -> Reply {
    Reply {
        status,
        routing: Some(served),
        body,
    }
}

/// The 404 for a key that node `served.0` of `served.1` does not hold.
fn missing(served: (NodeId, usize)) -> Reply {
    Reply {
        routing: Some(served),
        ..Reply::error(404, "no such key")
    }
}

impl Endpoint for GetKey {
    type Command<'a> = Get<'a>;

    fn key(&self) -> Option<&[u8]> {
        Some(&self.0)
    }

    #[inline]
    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Get<'_>, ApiError> {
        Ok(Get(&self.0))
    }

    fn execute(cmd: Get<'_>, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        match cluster.get(cmd.0) {
            Ok(s) => match s.value {
                Some(v) => keyed(200, (s.node, s.node_count), Body::Value(v)),
                None => missing((s.node, s.node_count)),
            },
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

impl Endpoint for PutKey {
    type Command<'a> = Put<'a>;

    fn body_limit(limits: &Limits) -> Option<usize> {
        Some(limits.max_value_bytes)
    }

    fn key(&self) -> Option<&[u8]> {
        Some(&self.0)
    }

    #[inline]
    fn command(&self, body: Vec<u8>, _settings: &Settings) -> Result<Put<'_>, ApiError> {
        Ok(Put(&self.0, body, self.1))
    }

    fn execute(cmd: Put<'_>, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let Put(key, value, ttl) = cmd;
        match cluster.set(key, value, ttl) {
            Ok(s) => {
                let status = if s.value == SetOutcome::Created {
                    201
                } else {
                    200
                };
                keyed(status, (s.node, s.node_count), Body::Empty)
            }
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

impl Endpoint for DeleteKey {
    type Command<'a> = Delete<'a>;

    fn key(&self) -> Option<&[u8]> {
        Some(&self.0)
    }

    #[inline]
    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Delete<'_>, ApiError> {
        Ok(Delete(&self.0))
    }

    fn execute(cmd: Delete<'_>, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        match cluster.delete(cmd.0) {
            Ok(s) if s.value => keyed(204, (s.node, s.node_count), Body::Empty),
            Ok(s) => missing((s.node, s.node_count)),
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{GetKey, PutKey};
    use crate::api::tests::r;
    use crate::api::Route;

    #[test]
    fn keys_are_percent_decoded_to_any_bytes() {
        assert_eq!(
            r("GET", "/keys/a%2Fb%20c%00%FF"),
            Ok(Route::GetKey(GetKey(b"a/b c\0\xff".to_vec())))
        );
        assert_eq!(
            r("GET", "/keys/a+b"),
            Ok(Route::GetKey(GetKey(b"a+b".to_vec())))
        );
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
            Ok(Route::PutKey(PutKey(
                b"k".to_vec(),
                Some(Duration::from_secs(60))
            )))
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
}
