//! The HTTP API of the real `ringcache` binary, row by row of the README's
//! "HTTP API" table, plus the routing headers, binary-safe keys and values,
//! TTLs, relocation seen through the API, the admin token and the command
//! line.
//!
//! Every test starts its own server on a free loopback port (see
//! `tests/common`) and speaks raw HTTP/1.1 to it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{index_of, pct, run_cli, Conn, Response, Server};

/// One MiB: the default `max_value_bytes`.
const MAX_VALUE: usize = 1 << 20;

/// Asserts `r` carries routing headers naming a node that `GET /nodes`
/// lists, with a count equal to the number of serving nodes; returns the
/// index.
fn assert_routed(server: &Server, r: &Response) -> u32 {
    let (index, count) = r.routing();
    let nodes = server.nodes();
    assert!(
        nodes.iter().any(|n| index_of(n) == index),
        "X-CacheServer-Index {index} is not a node of GET /nodes: {nodes:?}"
    );
    assert_eq!(
        count,
        server.serving_indices().len(),
        "X-CacheServer-Count must be the number of serving nodes"
    );
    index
}

/// A Prometheus counter's value in a `/metrics` text (0 if absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------
// /keys/{key}
// ---------------------------------------------------------------------------

/// GET, PUT and DELETE on `/keys/{key}` give the API table's success codes:
/// 201 for a new key, 200 for a replaced one, 200 with the exact bytes on a
/// read, 204 on delete, then 404 (JSON error) for a read or a delete of the
/// absent key.
#[test]
fn key_get_put_delete_status_codes() {
    let server = Server::start();
    server.get("/keys/k").expect_error(404);

    let r = server.put("/keys/k", b"first");
    assert_eq!(r.status, 201, "new key: {}", r.text());
    let r = server.put("/keys/k", b"second");
    assert_eq!(r.status, 200, "replaced key: {}", r.text());

    let r = server.get("/keys/k");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"second");
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));

    let r = server.delete("/keys/k");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty(), "204 has no body");

    server.get("/keys/k").expect_error(404);
    server.delete("/keys/k").expect_error(404);

    // A new key after the delete is new again.
    assert_eq!(server.put("/keys/k", b"third").status, 201);
}

/// An empty value is a value: stored (201), read back as 0 bytes (200),
/// not confused with an absent key.
#[test]
fn key_empty_value_round_trips() {
    let server = Server::start();
    assert_eq!(server.put("/keys/empty", b"").status, 201);
    let r = server.get("/keys/empty");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

/// The value limit is exactly 1 MiB: a 1 MiB value is stored and read back
/// byte for byte; one byte more is refused with 413 before the body is sent
/// (the server answers from the headers alone), and nothing is stored.
#[test]
fn key_value_size_limit_is_one_mib() {
    let server = Server::start();
    let value: Vec<u8> = (0..MAX_VALUE).map(|i| (i % 251) as u8).collect();
    let r = server.put("/keys/big", &value);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.get("/keys/big");
    assert_eq!(r.status, 200);
    assert!(r.body == value, "the 1 MiB value changed");

    let mut conn = server.conn();
    conn.send(
        format!(
            "PUT /keys/too-big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            MAX_VALUE + 1
        )
        .as_bytes(),
    )
    .unwrap();
    let r = conn.read_response().expect("413 before the body is sent");
    r.expect_error(413);
    assert_routed(&server, &r);
    drop(conn);
    server.get("/keys/too-big").expect_error(404);
}

/// Bad keys and TTLs are 400 with a JSON error: an empty key, a key longer
/// than 250 bytes, invalid percent-encoding, `ttl` of 0, negative, not a
/// number, beyond 30 days, and unknown query parameters; none stores a key.
#[test]
fn key_bad_key_or_ttl_is_400() {
    let server = Server::start();
    let long = format!("/keys/{}", "k".repeat(251));
    for path in [
        "/keys/",
        long.as_str(),
        "/keys/a%zz",
        "/keys/a%",
        "/keys/a%4",
    ] {
        let r = server.put(path, b"v");
        r.expect_error(400);
        assert_routed(&server, &r);
        server.get(path).expect_error(400);
    }
    for query in [
        "ttl=0",
        "ttl=-1",
        "ttl=abc",
        "ttl=",
        "ttl=1.5",
        "ttl=2592001",
        "ttl=99999999999999999999",
        "foo=1",
    ] {
        let r = server.put(&format!("/keys/t?{query}"), b"v");
        let message = r.expect_error(400);
        assert_routed(&server, &r);
        assert!(!message.is_empty(), "{query}");
    }
    server.get("/keys/t").expect_error(404);
    // The largest TTL is accepted.
    assert_eq!(server.put("/keys/t?ttl=2592000", b"v").status, 201);
}

/// A PUT without Content-Length is 411 (with routing headers), and stores
/// nothing.
#[test]
fn key_put_without_content_length_is_411() {
    let server = Server::start();
    let r = server.request("PUT", "/keys/nolen", &[], None);
    r.expect_error(411);
    assert_routed(&server, &r);
    server.get("/keys/nolen").expect_error(404);
}

/// Every response to a `/keys/` request, errors included, carries
/// `X-CacheServer-Index` (a node `GET /nodes` lists) and
/// `X-CacheServer-Count` (the number of serving nodes); one key reports one
/// node across GET, PUT and DELETE; and the count follows membership.
#[test]
fn routing_headers_on_every_key_response() {
    let server = Server::start();
    let responses = vec![
        server.get("/keys/h"),                                                    // 404
        server.put("/keys/h", b"v"),                                              // 201
        server.put("/keys/h", b"w"),                                              // 200
        server.get("/keys/h"),                                                    // 200
        server.delete("/keys/h"),                                                 // 204
        server.delete("/keys/h"),                                                 // 404
        server.request("PUT", "/keys/h", &[], None),                              // 411
        server.put("/keys/h?ttl=0", b"v"),                                        // 400
        server.get("/keys/h?ttl=5"),                                              // 400
        server.request("PATCH", "/keys/h", &[], None),                            // 405
        server.request("POST", "/keys/h", &[], Some(b"v")),                       // 405
        server.get("/keys/h%zz"),                                                 // 400
        server.get("/keys/"),                                                     // 400
        server.get(&format!("/keys/{}", "x".repeat(300))),                        // 400
        server.request("PUT", "/keys/h", &[("Transfer-Encoding", "gzip")], None), // 501
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [404, 201, 200, 200, 204, 404, 411, 400, 400, 405, 405, 400, 400, 400, 501]
    );
    let indices: Vec<u32> = responses
        .iter()
        .map(|r| assert_routed(&server, r))
        .collect();
    assert!(
        indices[..11].iter().all(|&i| i == indices[0]),
        "one key, one node: {indices:?}"
    );
    for r in &responses {
        assert_eq!(r.routing().1, 3);
    }

    // Not on other routes.
    for path in ["/health", "/nodes", "/ring", "/rebalance", "/metrics"] {
        assert_eq!(
            server.get(path).header("X-CacheServer-Index"),
            None,
            "{path}"
        );
    }

    // The count follows membership at once.
    assert_eq!(
        server
            .send_json("POST", "/nodes", r#"{"name":"n3"}"#)
            .status,
        201
    );
    assert_eq!(server.get("/keys/h").routing().1, 4);
    assert_routed(&server, &server.get("/keys/h"));
}

/// Keys are binary-safe: `%2F`, spaces, `%00` and `%FF` decode to those
/// bytes and name distinct keys; a literal `/` in the rest of the path is
/// the same key as `%2F`; `+` is a literal plus; values holding every byte
/// value (NUL and 0xFF included) round-trip exactly.
#[test]
fn binary_safe_keys_and_values() {
    let server = Server::start();
    let every_byte: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let keys: Vec<&[u8]> = vec![
        b"a/b",
        b"a b",
        b"a\0b",
        b"a\xffb",
        b"\0",
        b"\xff",
        b"ab",
        b"a+b",
        b"a%b",
        b"\xff\xfe\0/ %",
        b"a?ttl=1&b#c",
    ];
    for (i, key) in keys.iter().enumerate() {
        let mut value = every_byte.clone();
        value.extend_from_slice(format!("#{i}").as_bytes());
        let r = server.put(&format!("/keys/{}", pct(key)), &value);
        assert_eq!(r.status, 201, "key {key:?} should be new: {}", r.text());
    }
    for (i, key) in keys.iter().enumerate() {
        let r = server.get(&format!("/keys/{}", pct(key)));
        assert_eq!(r.status, 200, "{key:?}");
        assert_eq!(&r.body[..512], &every_byte[..], "{key:?}");
        assert_eq!(&r.body[512..], format!("#{i}").as_bytes(), "{key:?}");
    }
    // Unencoded forms reach the same keys.
    assert!(server.get("/keys/a/b").body.ends_with(b"#0"));
    assert!(server.get("/keys/a+b").body.ends_with(b"#7"));
    assert!(server.get("/keys/%61%62").body.ends_with(b"#6"));
    // Lower-case hex decodes too.
    assert!(server.get("/keys/a%ffb").body.ends_with(b"#3"));
}

/// The key limit is 250 bytes after decoding: 250 bytes (sent as 750
/// characters of `%FF`) work; 251 are 400 and store nothing.
#[test]
fn key_of_250_bytes_works_251_does_not() {
    let server = Server::start();
    let k250 = pct(&[0xff; 250]);
    let k251 = pct(&[0xff; 251]);
    assert_eq!(server.put(&format!("/keys/{k250}"), b"v250").status, 201);
    assert_eq!(server.get(&format!("/keys/{k250}")).body, b"v250");
    server
        .put(&format!("/keys/{k251}"), b"v251")
        .expect_error(400);
    server.get(&format!("/keys/{k251}")).expect_error(400);
    let plain = "k".repeat(250);
    assert_eq!(server.put(&format!("/keys/{plain}"), b"p").status, 201);
    server
        .put(&format!("/keys/{plain}k"), b"p")
        .expect_error(400);
}

/// `PUT ?ttl=1`: readable at once, 404 after 1.5 s; a key without TTL
/// written at the same time stays.
#[test]
fn ttl_expires() {
    let server = Server::start();
    assert_eq!(server.put("/keys/short?ttl=1", b"soon gone").status, 201);
    assert_eq!(server.put("/keys/long?ttl=3600", b"stays").status, 201);
    assert_eq!(server.put("/keys/forever", b"stays").status, 201);
    let r = server.get("/keys/short");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"soon gone"[..]));
    std::thread::sleep(Duration::from_millis(1500));
    let r = server.get("/keys/short");
    r.expect_error(404);
    assert_routed(&server, &r);
    assert_eq!(server.get("/keys/long").body, b"stays");
    assert_eq!(server.get("/keys/forever").body, b"stays");
    // An expired key is new again.
    assert_eq!(server.put("/keys/short", b"again").status, 201);
}

/// A response to HEAD (405 everywhere) carries no content, so the next
/// response on the same connection is read in step; on `/keys/` it still
/// carries the routing headers.
#[test]
fn head_responses_have_no_body() {
    let server = Server::start();
    server.put("/keys/k", b"value");
    let mut conn = server.conn();
    let mut bytes = common::request_bytes("HEAD", b"/health", &[], None);
    bytes.extend_from_slice(&common::request_bytes("HEAD", b"/keys/k", &[], None));
    bytes.extend_from_slice(&common::request_bytes("GET", b"/keys/k", &[], None));
    conn.send(&bytes).unwrap();
    conn.reply_to_head = true;
    for _ in 0..2 {
        let r = conn.read_response().unwrap();
        assert_eq!(r.status, 405);
        // No content, and no Content-Length (it would have to be GET's).
        assert_eq!(r.header("Content-Length"), None);
    }
    conn.reply_to_head = false;
    let r = conn.read_response().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"value"[..]));
    let r = server.request("HEAD", "/keys/k", &[], None);
    assert_routed(&server, &r);
}

// ---------------------------------------------------------------------------
// /nodes, /ring, /rebalance, /metrics, /health
// ---------------------------------------------------------------------------

/// `GET /nodes` lists the starting nodes with index, name, vnodes, keys,
/// bytes and ownership; keys and bytes follow writes; ownership sums to 1.
#[test]
fn nodes_list() {
    let server = Server::start();
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 3);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(index_of(n), u32::try_from(i).unwrap());
        assert_eq!(n["name"], format!("cache-{i}"));
        assert_eq!(n["vnodes"], 160);
        assert_eq!(n["keys"], 0);
        assert_eq!(n["bytes"], 0);
        let share = n["ownership"].as_f64().expect("ownership is a number");
        assert!((0.2..0.5).contains(&share), "{n}");
    }
    let total: f64 = nodes.iter().map(|n| n["ownership"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "ownership sums to {total}");

    let r = server.put("/keys/counted", &[7; 1000]);
    let (owner, _) = r.routing();
    let nodes = server.nodes();
    for n in &nodes {
        let (keys, bytes) = (n["keys"].as_u64().unwrap(), n["bytes"].as_u64().unwrap());
        if index_of(n) == owner {
            assert_eq!(keys, 1, "{n}");
            assert!(bytes >= 1000 + 7, "bytes count the key and value: {n}");
        } else {
            assert_eq!((keys, bytes), (0, 0), "{n}");
        }
    }
}

/// `POST /nodes` adds a node: 201 with the node as JSON (next index, the
/// name, the vnodes asked for or the default 160), listed by `GET /nodes`
/// and in the ring; 10000 vnodes is the largest accepted count.
#[test]
fn add_node() {
    let server = Server::start();
    let r = server.send_json("POST", "/nodes", r#"{"name": "extra", "vnodes": 100}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let node = r.json();
    assert_eq!(index_of(&node), 3);
    assert_eq!(node["name"], "extra");
    assert_eq!(node["vnodes"], 100);
    for field in ["keys", "bytes", "ownership"] {
        assert!(node[field].is_number(), "{field} in {node}");
    }

    let r = server.send_json("POST", "/nodes", r#"{"name": "defaulted"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["vnodes"], 160);
    assert_eq!(index_of(&r.json()), 4);

    let r = server.send_json("POST", "/nodes", r#"{"name": "widest", "vnodes": 10000}"#);
    assert_eq!(r.status, 201, "{}", r.text());

    let names: Vec<String> = server
        .nodes()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "cache-0",
            "cache-1",
            "cache-2",
            "extra",
            "defaulted",
            "widest"
        ]
    );
    let ring = server.get("/ring").json();
    assert_eq!(ring["points"], 3 * 160 + 100 + 160 + 10000);
}

/// `POST /nodes` errors: 400 (JSON error) for a malformed body, a missing
/// name, unknown fields, and vnodes 0, 10001, "abc" or -1; 409 for a name
/// already taken. None of them changes membership.
#[test]
fn add_node_errors() {
    let server = Server::start();
    for body in [
        "",
        "{",
        "null",
        "[]",
        r#"{"vnodes": 10}"#,
        r#"{"name": 5}"#,
        r#"{"name": "x", "vnodes": 0}"#,
        r#"{"name": "x", "vnodes": 10001}"#,
        r#"{"name": "x", "vnodes": "abc"}"#,
        r#"{"name": "x", "vnodes": -1}"#,
        r#"{"name": "x", "vnodes": 1.5}"#,
        r#"{"name": "x", "vnodes": 4294967296}"#,
        r#"{"name": "x", "extra": 1}"#,
    ] {
        let r = server.send_json("POST", "/nodes", body);
        let message = r.expect_error(400);
        assert!(!message.is_empty(), "{body}");
    }
    let r = server.request("POST", "/nodes", &[], None);
    assert_eq!(r.status, 411, "POST without Content-Length: {}", r.text());

    server
        .send_json("POST", "/nodes", r#"{"name": "cache-1"}"#)
        .expect_error(409);
    assert_eq!(server.nodes().len(), 3, "no error changed membership");
    assert_eq!(server.get("/ring").json()["points"], 480);
}

/// `PUT /nodes/{index}` changes a node's vnodes: 202 with the relocation
/// status; the new count shows in `GET /nodes` and `GET /ring`. Errors: 404
/// for an unknown index, 400 for a bad index, body or count.
#[test]
fn set_weight() {
    let server = Server::start();
    let r = server.send_json("PUT", "/nodes/1", r#"{"vnodes": 320}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.json()["active"].is_boolean(), "{}", r.text());
    let nodes = server.nodes();
    assert_eq!(nodes[1]["vnodes"], 320);
    assert_eq!(server.get("/ring").json()["points"], 640);

    server
        .send_json("PUT", "/nodes/99", r#"{"vnodes": 10}"#)
        .expect_error(404);
    for path in ["/nodes/x", "/nodes/-1", "/nodes/4294967296", "/nodes/"] {
        server
            .send_json("PUT", path, r#"{"vnodes": 10}"#)
            .expect_error(400);
    }
    for body in [
        "",
        "{",
        r#"{"vnodes": 0}"#,
        r#"{"vnodes": 10001}"#,
        r#"{"vnodes": "abc"}"#,
        r#"{"vnodes": -1}"#,
        r#"{"name": "x"}"#,
    ] {
        server.send_json("PUT", "/nodes/1", body).expect_error(400);
    }
    assert_eq!(server.nodes()[1]["vnodes"], 320, "errors changed nothing");
}

/// `DELETE /nodes/{index}`: 202, the node leaves the ring at once and is
/// gone from `GET /nodes` once drained; 404 for an unknown or already
/// removed index; 409 for the last node.
#[test]
fn remove_node() {
    let server = Server::start();
    server.delete("/nodes/99").expect_error(404);
    server.delete("/nodes/x").expect_error(400);

    let r = server.delete("/nodes/2");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        server.get("/ring").json()["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    server.delete("/nodes/2").expect_error(404);
    server.wait_rebalanced();
    let left: Vec<u32> = server.nodes().iter().map(index_of).collect();
    assert_eq!(left, [0, 1]);

    assert_eq!(server.delete("/nodes/0").status, 202);
    let message = server.delete("/nodes/1").expect_error(409);
    assert!(!message.is_empty());
    assert_eq!(server.serving_indices(), [1]);
}

/// With `--nodes 1`, removing the only node is 409 and it keeps serving.
#[test]
fn remove_last_node_is_409() {
    let server = Server::start_with(&["--nodes", "1"]);
    assert_eq!(server.put("/keys/k", b"v").status, 201);
    server.delete("/nodes/0").expect_error(409);
    assert_eq!(server.get("/keys/k").body, b"v");
    assert_eq!(server.get("/keys/k").routing(), (0, 1));
}

/// `GET /ring`: version, total points, per-node ownership and balance
/// figures; the version grows with each membership change.
#[test]
fn ring_json() {
    let server = Server::start_with(&["--nodes", "4", "--vnodes", "100"]);
    let ring = server.get("/ring").json();
    assert_eq!(ring["points"], 400);
    let nodes = ring["nodes"].as_array().expect("nodes list");
    assert_eq!(nodes.len(), 4);
    for n in nodes {
        assert_eq!(n["vnodes"], 100);
        assert!(n["ownership"].as_f64().unwrap() > 0.0);
        assert!(n["name"].is_string());
    }
    let balance = &ring["balance"];
    assert!((balance["mean"].as_f64().unwrap() - 0.25).abs() < 1e-12);
    for field in [
        "stddev",
        "stddev_over_mean",
        "min_over_mean",
        "max_over_mean",
    ] {
        assert!(balance[field].is_number(), "{field} in {balance}");
    }
    assert!(balance["min_over_mean"].as_f64() <= Some(1.0));
    assert!(balance["max_over_mean"].as_f64() >= Some(1.0));

    let before = ring["version"].as_u64().expect("numeric version");
    assert_eq!(
        server
            .send_json("PUT", "/nodes/0", r#"{"vnodes": 50}"#)
            .status,
        202
    );
    let after = server.get("/ring").json();
    assert!(after["version"].as_u64().unwrap() > before);
    assert_eq!(after["points"], 350);
}

/// `GET /rebalance`: active, keys_scanned, keys_moved, started_at,
/// finished_at; after a change settles, the times are set and keys moved.
#[test]
fn rebalance_json() {
    let server = Server::start();
    let status = server.get("/rebalance").json();
    for field in [
        "active",
        "keys_scanned",
        "keys_moved",
        "started_at",
        "finished_at",
    ] {
        assert!(status.get(field).is_some(), "{field} missing: {status}");
    }
    assert!(status["active"].is_boolean());
    assert!(status["keys_scanned"].is_u64());
    assert!(status["keys_moved"].is_u64());

    let mut conn = server.conn();
    for i in 0..200 {
        conn.request("PUT", &format!("/keys/r{i}"), &[], Some(b"v"));
    }
    assert_eq!(
        server.send_json("POST", "/nodes", r#"{"name":"n"}"#).status,
        201
    );
    let status = server.wait_rebalanced();
    // Every key is scanned at least once (keys moved onto a node not yet
    // swept may be scanned again there).
    assert!(status["keys_scanned"].as_u64().unwrap() >= 200, "{status}");
    assert!(status["keys_moved"].as_u64().unwrap() > 0, "{status}");
    assert!(status["started_at"].is_string(), "{status}");
    assert!(status["finished_at"].is_string(), "{status}");
}

/// `GET /metrics` is Prometheus text, and
/// `ringcache_http_requests_total{route="get_key",status="200"}` grows by
/// exactly the GETs served (404s counted apart).
#[test]
fn metrics_count_requests() {
    let server = Server::start();
    let hits = r#"ringcache_http_requests_total{route="get_key",status="200"}"#;
    let misses = r#"ringcache_http_requests_total{route="get_key",status="404"}"#;
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    assert!(r.text().contains("# TYPE "), "Prometheus text format");
    let (h0, m0) = (counter(&r.text(), hits), counter(&r.text(), misses));

    server.put("/keys/m", b"v");
    let mut conn = server.conn();
    for _ in 0..5 {
        assert_eq!(conn.request("GET", "/keys/m", &[], None).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(conn.request("GET", "/keys/absent", &[], None).status, 404);
    }
    let text = server.get("/metrics").text();
    assert_eq!(counter(&text, hits), h0 + 5.0, "{text}");
    assert_eq!(counter(&text, misses), m0 + 2.0, "{text}");
}

/// The cluster series move with the cluster: ring version and membership
/// changes on an add, the new node's keys after relocation, keys moved,
/// per-node hits, and the latency histogram's count.
#[test]
fn metrics_follow_the_cluster() {
    let server = Server::start();
    for i in 0..300 {
        server.put(&format!("/keys/m{i}"), b"v");
    }
    let before = server.get("/metrics").text();
    let r = server.send_json("POST", "/nodes", r#"{"name": "cache-3"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    server.wait_rebalanced();
    let mut conn = server.conn();
    for i in 0..300 {
        assert_eq!(
            conn.request("GET", &format!("/keys/m{i}"), &[], None)
                .status,
            200
        );
    }
    let after = server.get("/metrics").text();
    let delta = |series: &str| counter(&after, series) - counter(&before, series);
    assert_eq!(delta("ringcache_ring_version"), 1.0, "{after}");
    assert_eq!(delta("ringcache_membership_changes_total"), 1.0);
    assert_eq!(counter(&after, "ringcache_ring_nodes"), 4.0);
    let moved = delta("ringcache_rebalance_moved_keys_total");
    assert!(moved > 0.0, "no keys moved:\n{after}");
    assert_eq!(
        counter(&after, r#"ringcache_node_keys{node="3",name="cache-3"}"#),
        moved,
        "the new node holds exactly the moved keys"
    );
    let hits: f64 = (0..4)
        .map(|i| {
            counter(
                &after,
                &format!(r#"ringcache_node_hits_total{{node="{i}",name="cache-{i}"}}"#),
            )
        })
        .sum();
    assert_eq!(hits, 300.0);
    assert_eq!(
        delta(r#"ringcache_http_request_duration_seconds_count{route="get_key"}"#),
        300.0
    );
}

/// `GET /health` is 200; other methods on it are 405, unknown paths 404.
#[test]
fn health_and_unknown_routes() {
    let server = Server::start();
    assert_eq!(server.get("/health").status, 200);
    server
        .request("POST", "/health", &[], Some(b""))
        .expect_error(405);
    server.get("/nope").expect_error(404);
    server.get("/ring/nope").expect_error(404);
    // `/` is the dashboard: an HTML page, embedded, that polls the JSON routes.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.text().contains("/ring/points"));
    let points = server.get("/ring/points").json();
    assert_eq!(points["total"], 480);
    assert_eq!(points["points"].as_array().map(Vec::len), Some(480));
    server
        .request("DELETE", "/ring", &[], None)
        .expect_error(405);
}

// ---------------------------------------------------------------------------
// Relocation through the API
// ---------------------------------------------------------------------------

const RELOCATION_KEYS: usize = 1000;

fn relocation_value(i: usize) -> Vec<u8> {
    format!("value-{i}-\0\u{ff}-{}", "x".repeat(i % 50)).into_bytes()
}

/// Reads every relocation key back (value unchanged) and returns each key's
/// `X-CacheServer-Index`, checking the count header on the way.
fn read_all(server: &Server, want_count: usize) -> Vec<u32> {
    let mut conn = server.conn();
    (0..RELOCATION_KEYS)
        .map(|i| {
            let r = conn.request("GET", &format!("/keys/reloc-{i}"), &[], None);
            assert_eq!(r.status, 200, "reloc-{i} lost: {}", r.text());
            assert!(r.body == relocation_value(i), "reloc-{i} changed");
            let (index, count) = r.routing();
            assert_eq!(count, want_count, "reloc-{i}");
            index
        })
        .collect()
}

/// `GET /nodes`' key counts match where the keys report to be: every key is
/// on exactly the node that serves it, with no copies left elsewhere.
fn assert_nodes_hold(server: &Server, indices: &[u32]) {
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for &i in indices {
        *expected.entry(i).or_default() += 1;
    }
    for n in server.nodes() {
        let held = n["keys"].as_u64().unwrap();
        assert_eq!(
            held,
            expected.get(&index_of(&n)).copied().unwrap_or(0),
            "node {n} holds keys it does not serve (or lacks some)"
        );
    }
}

/// Relocation seen through the API, on 1000 keys:
/// * adding a node moves keys only TO the new node (and some do move), and
///   the mover reports exactly that many moved;
/// * raising a node's vnodes to 640 moves keys only TO that node;
/// * removing a node drops the count header to N-1 at once; after
///   relocation every key is still readable, none reports the removed
///   node, and keys that were elsewhere stay where they were.
///
/// After each step every value reads back unchanged and `GET /nodes` key
/// counts match the serving indices (no stray copies).
#[test]
fn relocation_through_the_api() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut before = Vec::with_capacity(RELOCATION_KEYS);
    for i in 0..RELOCATION_KEYS {
        let r = conn.request(
            "PUT",
            &format!("/keys/reloc-{i}"),
            &[],
            Some(&relocation_value(i)),
        );
        assert_eq!(r.status, 201);
        before.push(r.routing().0);
    }
    assert_eq!(read_all(&server, 3), before);

    // 1. Add a node.
    let r = server.send_json("POST", "/nodes", r#"{"name": "cache-3", "vnodes": 160}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let added = index_of(&r.json());
    let status = server.wait_rebalanced();
    let after = read_all(&server, 4);
    let moved: Vec<usize> = (0..RELOCATION_KEYS)
        .filter(|&i| after[i] != before[i])
        .collect();
    assert!(
        moved.len() > RELOCATION_KEYS / 10,
        "a node with a quarter of the ring got {} keys",
        moved.len()
    );
    for &i in &moved {
        assert_eq!(
            after[i], added,
            "reloc-{i} moved to {} instead of the new node",
            after[i]
        );
    }
    assert_eq!(
        status["keys_moved"].as_u64(),
        Some(moved.len() as u64),
        "the mover moved exactly the keys whose owner changed: {status}"
    );
    assert_nodes_hold(&server, &after);

    // 2. Raise node 0's vnodes.
    let before = after;
    let r = server.send_json("PUT", "/nodes/0", r#"{"vnodes": 640}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    server.wait_rebalanced();
    let after = read_all(&server, 4);
    let moved: Vec<usize> = (0..RELOCATION_KEYS)
        .filter(|&i| after[i] != before[i])
        .collect();
    assert!(
        moved.len() > RELOCATION_KEYS / 10,
        "only {} keys moved",
        moved.len()
    );
    for &i in &moved {
        assert_eq!(
            after[i], 0,
            "reloc-{i} moved to {} instead of node 0",
            after[i]
        );
    }
    assert_nodes_hold(&server, &after);

    // 3. Remove node 1.
    let before = after;
    assert!(before.contains(&1), "node 1 holds keys before its removal");
    let r = server.delete("/nodes/1");
    assert_eq!(r.status, 202, "{}", r.text());
    let (_, count) = server.get("/keys/reloc-0").routing();
    assert_eq!(count, 3, "a removed node leaves the count at once");
    server.wait_rebalanced();
    let after = read_all(&server, 3);
    for i in 0..RELOCATION_KEYS {
        assert_ne!(after[i], 1, "reloc-{i} still served by the removed node");
        if before[i] != 1 {
            assert_eq!(
                after[i], before[i],
                "reloc-{i} moved though its node stayed"
            );
        }
    }
    assert!(
        server.nodes().iter().all(|n| index_of(n) != 1),
        "the drained node is dropped from GET /nodes"
    );
    assert_nodes_hold(&server, &after);
}

// ---------------------------------------------------------------------------
// --admin-token
// ---------------------------------------------------------------------------

/// With `--admin-token`, POST /nodes, PUT /nodes/{i} and DELETE /nodes/{i}
/// answer 401 without `Authorization`, with a wrong token, or with another
/// scheme, and change nothing; with `Bearer <token>` they work. Cache and
/// read-only routes need no token.
#[test]
fn admin_token_guards_membership_routes() {
    let server = Server::start_with(&["--admin-token", "s3cret-token"]);
    let wrong: [&[(&str, &str)]; 5] = [
        &[],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "Bearer s3cret-toke")],
        &[("Authorization", "Bearer s3cret-token-and-more")],
        &[("Authorization", "Basic czNjcmV0LXRva2Vu")],
    ];
    for headers in wrong {
        let admin: [(&str, &str, &[u8]); 3] = [
            ("POST", "/nodes", br#"{"name": "intruder"}"#),
            ("PUT", "/nodes/0", br#"{"vnodes": 1}"#),
            ("DELETE", "/nodes/0", b""),
        ];
        for (method, path, body) in admin {
            let r = server.request(method, path, headers, Some(body));
            r.expect_error(401);
        }
    }
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["vnodes"], 160);

    // Cache and read-only routes need no token.
    assert_eq!(server.put("/keys/k", b"v").status, 201);
    assert_eq!(server.get("/keys/k").status, 200);
    assert_eq!(server.delete("/keys/k").status, 204);
    for path in ["/nodes", "/ring", "/rebalance", "/metrics", "/health"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }

    let auth = [("Authorization", "Bearer s3cret-token")];
    let r = server.request("POST", "/nodes", &auth, Some(br#"{"name": "ok"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.request("PUT", "/nodes/0", &auth, Some(br#"{"vnodes": 80}"#));
    assert_eq!(r.status, 202, "{}", r.text());
    let r = server.request("DELETE", "/nodes/1", &auth, None);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(server.serving_indices(), [0, 2, 3]);
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// `--help` exits 0 and documents every flag the binary has.
#[test]
fn cli_help_mentions_every_flag() {
    let (code, stdout, _) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--listen",
        "--nodes",
        "--vnodes",
        "--admin-token",
        "--node-max-bytes",
        "--max-key-bytes",
        "--max-value-bytes",
        "--workers",
        "--help",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not mention {flag}:\n{stdout}"
        );
    }
}

/// A bad flag or value exits non-zero with exactly one line on stderr that
/// names the problem.
#[test]
fn cli_bad_arguments_fail_with_one_line() {
    for (args, needle) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--vnodes", "0"], "0"),
        (&["--vnodes", "10001"], "10001"),
        (&["--nodes", "0"], "0"),
        (&["--nodes", "many"], "many"),
        (&["--listen"], "--listen"),
    ] {
        let (code, stdout, stderr) = run_cli(args);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{args:?} exited with {code:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "{args:?}: stdout {stdout:?}");
    }
}

/// Checks a failed start on a busy `addr`: non-zero exit, and exactly one
/// error line (among the startup log lines, which start with `[`) that names
/// the address.
fn assert_bind_failure(addr: &str) {
    let (code, _, stderr) = run_cli(&["--listen", addr]);
    assert!(
        matches!(code, Some(c) if c != 0),
        "exited with {code:?}: {stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('[')).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr:?}");
    assert!(errors[0].contains(addr), "{stderr:?}");
}

/// A second server on a port already in use (by a plain listener, or by a
/// running ringcache, which binds with SO_REUSEPORT) exits non-zero with a
/// one-line error naming the address, instead of sharing the port.
#[test]
fn cli_port_in_use_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_bind_failure(&addr);
    drop(listener);

    let server = Server::start();
    assert_bind_failure(&server.addr.to_string());
    assert_eq!(
        server.get("/health").status,
        200,
        "the first server still serves"
    );
}

/// Keep-alive works: many requests on one connection, each answered in
/// order (the other tests rely on it, and a regression would look like
/// hostile-input failures).
#[test]
fn keep_alive_serves_many_requests() {
    let server = Server::start();
    let mut conn: Conn = server.conn();
    for i in 0..100 {
        let r = conn.request(
            "PUT",
            &format!("/keys/ka{i}"),
            &[],
            Some(format!("{i}").as_bytes()),
        );
        assert_eq!(r.status, 201);
    }
    for i in 0..100 {
        let r = conn.request("GET", &format!("/keys/ka{i}"), &[], None);
        assert_eq!(r.body, format!("{i}").as_bytes());
    }
}
