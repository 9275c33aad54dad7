//! Hostile input against the real `ringcache` binary, sent as raw bytes.
//!
//! The contract (docs/http.md): "No input, however malformed (bad or huge Content-Length,
//! chunked bodies, invalid percent-encoding, non-UTF-8 bytes, unknown
//! methods, slow or half-closed clients), may crash the server, panic a
//! worker, or corrupt stored data."
//!
//! Each test stores canary keys first, sends its input, checks the answer,
//! and then checks that the server still answers `GET /health` on a new
//! connection, that the canaries read back unchanged, that no key the input
//! tried to write exists, and that nothing panicked (see
//! `Server::assert_alive`).
//!
//! Every refusal is ringcache's own (its connection loop parses with
//! httparse): where the input cannot be framed, the answer is an error with
//! `Connection: close`, then the connection closes and nothing after the
//! bad request on it is read. Tests that send the whole input in one write
//! accept a closed connection too where the close may race the reply.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{request_bytes, Conn, Outcome, Response, Server};

/// Keys every test stores before its hostile input, with values that are
/// easy to damage (NUL, 0xFF, CR LF).
const CANARIES: &[(&str, &[u8])] = &[
    ("/keys/canary", b"canary\0value\xff\r\n\r\nend"),
    ("/keys/victim", b"still here"),
    ("/keys/a", b"the original a"),
];

/// A server with the canaries stored.
fn setup_with(args: &[&str]) -> Server {
    let server = Server::start_with(args);
    for (path, value) in CANARIES {
        let r = server.put(path, value);
        assert_eq!(r.status, 201, "storing {path}: {}", r.text());
    }
    server
}

fn setup() -> Server {
    setup_with(&[])
}

/// The server survived and no hostile write took effect: canaries intact
/// and no key beyond them.
fn assert_unharmed(server: &mut Server) {
    server.assert_alive(CANARIES);
    assert_eq!(
        server.total_keys(),
        CANARIES.len() as u64,
        "a refused request stored a key"
    );
}

/// Sends `bytes` on a new connection and reads one outcome.
fn send_raw(server: &Server, bytes: &[u8]) -> Outcome {
    server.conn().send_and_read(bytes)
}

/// A response is expected (the refusal is ringcache's own, not the parser's).
fn response(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Response(r) => r,
        Outcome::Closed => panic!("the connection was closed without a response"),
    }
}

/// A `PUT /keys/{key}` head with `headers` (no body, no Content-Length added).
fn put_head(key: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request_bytes("PUT", format!("/keys/{key}").as_bytes(), headers, None)
}

/// Content-Length values that are not a decimal byte count are 400, with
/// routing headers, and store nothing; the bytes after them are not run.
#[test]
fn non_numeric_content_length_is_400() {
    let mut server = setup();
    for value in ["abc", "-1", "+5", "1e3", "0x10", "5 5", "5,5", "", " ", "٥"] {
        let mut bytes = put_head("cl", &[("Content-Length", value)]);
        bytes.extend_from_slice(b"hello");
        let r = response(send_raw(&server, &bytes));
        r.expect_error(400);
        r.routing();
        assert_eq!(
            r.header("Connection"),
            Some("close"),
            "an unreadable body closes the connection ({value:?})"
        );
    }
    // Non-UTF-8 bytes in the value: parser or ringcache may refuse.
    let bytes = b"PUT /keys/cl HTTP/1.1\r\nHost: t\r\nContent-Length: \xff5\r\n\r\nhello";
    send_raw(&server, bytes).expect_status_or_closed(400);
    server.get("/keys/cl").expect_error(404);
    assert_unharmed(&mut server);
}

/// Content-Length far beyond the limit (10^12, u64::MAX) is 413, and one
/// that overflows u64 (2^64+1, 10^30) is 400 or 413: refused from the
/// headers, no crash, nothing stored, on key and admin routes alike.
#[test]
fn huge_content_length_is_refused() {
    let mut server = setup();
    for (value, allowed) in [
        ("1000000000000", &[413][..]),
        ("18446744073709551615", &[413]),
        ("18446744073709551617", &[400, 413]),
        ("1000000000000000000000000000000", &[400, 413]),
        (
            "00000000000000000000000000000000000000001048577",
            &[400, 413],
        ),
    ] {
        for head in [
            put_head("huge", &[("Content-Length", value)]),
            request_bytes("POST", b"/nodes", &[("Content-Length", value)], None),
            request_bytes("GET", b"/health", &[("Content-Length", value)], None),
        ] {
            let r = response(send_raw(&server, &head));
            assert!(
                allowed.contains(&r.status),
                "Content-Length {value}: {} {}",
                r.status,
                r.text()
            );
            r.expect_error(r.status);
        }
    }
    assert_eq!(server.nodes().len(), 3);
    assert_unharmed(&mut server);
}

/// A body larger than the 1 MiB value limit is 413: answered from the
/// headers, whatever the client then sends (junk, binary, an embedded
/// request) is never run or stored. Sent all at once, the client gets 413
/// or a closed connection, never a hang.
#[test]
fn body_over_the_limit_is_413() {
    let mut server = setup();
    let len = (1 << 20) + 1;
    let mut junk: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    let embedded = b"\r\n\r\nDELETE /keys/victim HTTP/1.1\r\nHost: t\r\n\r\n";
    junk[1000..1000 + embedded.len()].copy_from_slice(embedded);

    // Headers first, then the body after the refusal.
    let mut conn = server.conn();
    conn.send(&put_head("big", &[("Content-Length", &len.to_string())]))
        .unwrap();
    let r = conn.read_response().expect("413 from the headers alone");
    r.expect_error(413);
    r.routing();
    let _ = conn.send(&junk);
    drop(conn);

    // Everything in one go, written from another thread while we read.
    let mut conn = server.conn();
    let mut bytes = put_head("big", &[("Content-Length", &len.to_string())]);
    bytes.extend_from_slice(&junk);
    let mut writer = conn.writer();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    conn.read_outcome().expect_status_or_closed(413);
    drop(conn);
    sender.join().unwrap();

    server.get("/keys/big").expect_error(404);
    assert_unharmed(&mut server);
}

/// A chunked body is accepted (decoded, same limits as Content-Length);
/// a coding other than chunked is 501 and `Transfer-Encoding` with
/// `Content-Length` (the classic smuggling pair) is 400, both closing the
/// connection: what follows is never run or stored.
#[test]
fn chunked_bodies_are_decoded_and_bad_codings_refused() {
    let mut server = setup();
    let chunked_body = b"5\r\nhello\r\n0\r\n\r\n";

    // Headers first, then the body: stored.
    let mut conn = server.conn();
    conn.send(&put_head("chunky", &[("Transfer-Encoding", "chunked")]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.send(chunked_body).unwrap();
    let r = conn
        .read_response()
        .expect("201 once the last chunk arrives");
    assert_eq!(r.status, 201, "{}", r.text());
    r.routing();
    assert_eq!(server.get("/keys/chunky").body, b"hello");
    assert_eq!(server.delete("/keys/chunky").status, 204);

    let smuggled = b"DELETE /keys/victim HTTP/1.1\r\nHost: t\r\n\r\n";
    for (headers, status) in [
        (&[("Transfer-Encoding", "gzip, chunked")][..], 501),
        (&[("Transfer-Encoding", "gzip")], 501),
        (
            &[("Content-Length", "15"), ("Transfer-Encoding", "chunked")],
            400,
        ),
        (
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "15")],
            400,
        ),
    ] {
        let mut bytes = put_head("chunky", headers);
        bytes.extend_from_slice(chunked_body);
        bytes.extend_from_slice(smuggled);
        let mut conn = server.conn();
        conn.send(&bytes).unwrap();
        let r = response(conn.read_outcome());
        assert_eq!(r.status, status, "{headers:?}: {}", r.text());
        assert_eq!(r.header("Connection"), Some("close"), "{headers:?}");
        r.routing();
        assert!(
            matches!(conn.read_outcome(), Outcome::Closed),
            "{headers:?}"
        );
    }
    server.get("/keys/chunky").expect_error(404);
    assert_unharmed(&mut server);
}

/// Over-long keys (251 bytes, 251 decoded bytes, 10 KB, 100 KB) are 400
/// with routing headers and store nothing.
#[test]
fn overlong_keys_are_400() {
    let mut server = setup();
    for key in ["k".repeat(251), "%00".repeat(251), "k".repeat(10_000)] {
        let r = server.put(&format!("/keys/{key}"), b"v");
        r.expect_error(400);
        r.routing();
        server.get(&format!("/keys/{key}")).expect_error(400);
        server.delete(&format!("/keys/{key}")).expect_error(400);
    }
    // A key longer than the request-head limit (16 KiB) is refused with
    // 431 before it is routed, and the connection closes.
    let key = "%FF".repeat(35_000);
    for method in ["PUT", "GET", "DELETE"] {
        let r = server.request(method, &format!("/keys/{key}"), &[], Some(b"v"));
        r.expect_error(431);
        assert_eq!(r.header("Connection"), Some("close"));
    }
    assert_unharmed(&mut server);
}

/// Invalid percent-encoding (`%zz`, a trailing `%`, a single hex digit,
/// `%%`, a non-ASCII digit after `%`) is 400 with routing headers, on PUT,
/// GET and DELETE, and stores or deletes nothing (`/keys/a%` must not touch
/// key `a`).
#[test]
fn invalid_percent_encoding_is_400() {
    let mut server = setup();
    for key in [
        "a%zz",
        "a%",
        "a%4",
        "a%%",
        "a%g0",
        "%",
        "%%41",
        "a%\u{e9}0",
        "victim%",
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let body: Option<&[u8]> = (method == "PUT").then_some(b"v");
            let r = server.request(method, &format!("/keys/{key}"), &[], body);
            r.expect_error(400);
            r.routing();
        }
    }
    assert_unharmed(&mut server);
}

/// Unknown routes are 404 and known routes with the wrong (or an invented)
/// method are 405, all as JSON errors; none touches data.
#[test]
fn unknown_routes_and_methods() {
    let mut server = setup();
    for (method, path, status) in [
        ("GET", "/nope", 404),
        ("GET", "/ui/x", 404),
        ("POST", "/", 405),
        ("GET", "/keysx/a", 404),
        ("GET", "/KEYS/a", 404),
        ("DELETE", "/key/victim", 404),
        ("GET", "/health/", 404),
        ("PATCH", "/keys/victim", 405),
        ("POST", "/keys/victim", 405),
        ("BREW", "/keys/victim", 405),
        ("PUT", "/health", 405),
        ("POST", "/ring", 405),
        ("DELETE", "/rebalance", 405),
        ("PUT", "/metrics", 405),
        ("DELETE", "/nodes", 405),
        ("GET", "/nodes/0", 405),
        ("OPTIONS", "/nodes", 405),
    ] {
        let r = server.request(method, path, &[], Some(b""));
        r.expect_error(status);
    }
    // HEAD: the status without content.
    let r = server.request("HEAD", "/keys/victim", &[], None);
    assert_eq!((r.status, r.body.len()), (405, 0));
    // A method token the parser accepts but nobody defines.
    let r = response(send_raw(
        &server,
        b"DELETE!~ /keys/victim HTTP/1.1\r\nHost: t\r\n\r\n",
    ));
    r.expect_error(405);
    assert_unharmed(&mut server);
}

/// Malformed admin bodies to POST /nodes (bad JSON, non-UTF-8, deep
/// nesting, wrong types, vnodes 0 / 10001 / "abc" / -1) are 400; an admin
/// body over 64 KiB is 413. Membership is unchanged.
#[test]
fn malformed_admin_json_is_400() {
    let mut server = setup();
    let deep = format!(
        r#"{{"name": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        br#"{"name":"#.to_vec(),
        b"\xff\xfe\x00{".to_vec(),
        br#"{"name": "\ud800"}"#.to_vec(),
        deep.into_bytes(),
        br#"{"name": "x", "vnodes": 0}"#.to_vec(),
        br#"{"name": "x", "vnodes": 10001}"#.to_vec(),
        br#"{"name": "x", "vnodes": "abc"}"#.to_vec(),
        br#"{"name": "x", "vnodes": -1}"#.to_vec(),
        br#"{"name": "x", "vnodes": 1e400}"#.to_vec(),
        br#"{"name": "x", "name": "y"}"#.to_vec(),
        b"{\"name\": \"x\"} trailing".to_vec(),
    ];
    for body in &bodies {
        let r = server.request("POST", "/nodes", &[], Some(body));
        r.expect_error(400);
    }
    for body in [
        &br#"{"vnodes": 0}"#[..],
        br#"{"vnodes": -1}"#,
        br#"{"vnodes": "x"}"#,
    ] {
        server
            .request("PUT", "/nodes/0", &[], Some(body))
            .expect_error(400);
    }
    // Refused from the headers; the body is sent after the answer.
    let big = format!(r#"{{"name": "{}"}}"#, "n".repeat(64 << 10));
    let mut conn = server.conn();
    let head = request_bytes(
        "POST",
        b"/nodes",
        &[("Content-Length", &big.len().to_string())],
        None,
    );
    conn.send(&head).unwrap();
    conn.read_response()
        .expect("413 from the headers")
        .expect_error(413);
    let _ = conn.send(big.as_bytes());
    drop(conn);
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["vnodes"] == 160));
    assert_unharmed(&mut server);
}

/// Unknown node indices are 404 (u32::MAX included); indices that are not
/// a u32 (negative, overflowing, encoded, empty) are 400; nothing changes.
#[test]
fn unknown_node_index() {
    let mut server = setup();
    for index in ["3", "99", "4294967295"] {
        server
            .request(
                "PUT",
                &format!("/nodes/{index}"),
                &[],
                Some(br#"{"vnodes": 5}"#),
            )
            .expect_error(404);
        server.delete(&format!("/nodes/{index}")).expect_error(404);
    }
    for index in ["-1", "4294967296", "%31", "", "1.0", "0x1", " 1"] {
        let path = format!("/nodes/{}", index.replace(' ', "%20"));
        server
            .request("PUT", &path, &[], Some(br#"{"vnodes": 5}"#))
            .expect_error(400);
        server.delete(&path).expect_error(400);
    }
    assert_eq!(server.serving_indices(), [0, 1, 2]);
    assert_unharmed(&mut server);
}

/// With one node, DELETE /nodes/0 is 409 however often it is asked, and the
/// node keeps serving its keys.
#[test]
fn removing_the_last_node_is_409() {
    let mut server = setup_with(&["--nodes", "1"]);
    for _ in 0..5 {
        server.delete("/nodes/0").expect_error(409);
    }
    assert_eq!(server.serving_indices(), [0]);
    assert_eq!(server.get("/keys/victim").routing(), (0, 1));
    assert_unharmed(&mut server);
}

/// A client that sends the headers and half of the declared body, then
/// half-closes or closes, stores nothing: not a new key, and not a
/// truncated value over an existing one. Each is tried with the close right
/// behind the bytes and after a pause (so the server is already waiting in
/// the body when the close arrives).
#[test]
fn half_body_then_close_stores_nothing() {
    let mut server = setup();
    for pause in [Duration::ZERO, Duration::from_millis(150)] {
        for key in ["half", "victim"] {
            let mut bytes = put_head(key, &[("Content-Length", "100")]);
            bytes.extend_from_slice(&[b'h'; 50]);

            // Half-close and read what comes back.
            let mut conn = server.conn();
            conn.send(&bytes).unwrap();
            std::thread::sleep(pause);
            conn.shutdown_write();
            conn.read_outcome().expect_status_or_closed(400);
            drop(conn);

            // Close outright.
            let mut conn = server.conn();
            conn.send(&bytes).unwrap();
            std::thread::sleep(pause);
            drop(conn);
        }
    }
    // Give the server time to see the last close, then look.
    std::thread::sleep(Duration::from_millis(200));
    server.get("/keys/half").expect_error(404);
    assert_unharmed(&mut server);
}

/// A client that stalls mid-body (connection left open) blocks nobody:
/// other connections are served meanwhile, and the stalled write never
/// lands.
#[test]
fn stalled_clients_do_not_block_others() {
    let mut server = setup();
    let stalled: Vec<Conn> = (0..8)
        .map(|i| {
            let mut conn = server.conn();
            let mut bytes = put_head(&format!("stalled{i}"), &[("Content-Length", "100")]);
            bytes.extend_from_slice(&[b's'; 10]);
            conn.send(&bytes).unwrap();
            conn
        })
        .collect();
    let mut conn = server.conn();
    for i in 0..50 {
        let r = conn.request("GET", &format!("/keys/missing{i}"), &[], None);
        assert_eq!(r.status, 404);
    }
    server.assert_alive(CANARIES);
    drop(stalled);
    std::thread::sleep(Duration::from_millis(200));
    assert_unharmed(&mut server);
}

/// Partial requests followed by a close (a cut request line, cut headers,
/// a cut body on an existing key) harm nothing.
#[test]
fn partial_requests_then_close() {
    let mut server = setup();
    for bytes in [
        &b"G"[..],
        b"GET /hea",
        b"GET /health HTTP/1.",
        b"PUT /keys/canary HTTP/1.1\r\nContent-Le",
        b"PUT /keys/canary HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        b"DELETE /keys/victim HTTP/1.1\r\nHost: t\r\n",
    ] {
        let mut conn = server.conn();
        conn.send(bytes).unwrap();
        drop(conn);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_unharmed(&mut server);
}

/// More than 64 request header lines: 431 with `Connection: close`, and
/// nothing stored or deleted. Exactly 64 still works, so the limit is where
/// the server documents it.
#[test]
fn too_many_headers() {
    let mut server = setup();
    let pad = |n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("X-Pad-{i}"), "p".into())).collect()
    };
    // Host + 62 pads + Content-Length = 64 headers.
    let most = pad(62);
    let refs: Vec<(&str, &str)> = most.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = response(send_raw(
        &server,
        &request_bytes("PUT", b"/keys/most", &refs, Some(b"ok")),
    ));
    assert_eq!(r.status, 201, "64 headers are allowed: {}", r.text());
    assert_eq!(server.delete("/keys/most").status, 204);

    // (pads for the PUT, pads for the DELETE): 65 headers each, then 102.
    for (put_pads, delete_pads) in [(63, 64), (100, 101)] {
        let many = pad(put_pads);
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let r = response(send_raw(
            &server,
            &request_bytes("PUT", b"/keys/many", &refs, Some(b"no")),
        ));
        r.expect_error(431);
        assert_eq!(r.header("Connection"), Some("close"));
        // A DELETE of a canary with too many headers must not run either.
        let many = pad(delete_pads);
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        response(send_raw(
            &server,
            &request_bytes("DELETE", b"/keys/victim", &refs, None),
        ))
        .expect_error(431);
    }
    server.get("/keys/many").expect_error(404);
    assert_unharmed(&mut server);
}

/// Non-UTF-8 or control bytes in the request line are refused (4xx or a
/// dropped connection) and harm nothing; raw UTF-8 in the path is a key
/// like its percent-encoded form.
#[test]
fn non_utf8_and_control_bytes_in_the_path() {
    let mut server = setup();
    for bytes in [
        &b"GET /keys/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"PUT /keys/\xc3\x28 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
        b"DELETE /keys/victim\xff HTTP/1.1\r\nHost: t\r\n\r\n",
        b"DELETE /keys/vic\0tim HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PUT /keys/a\x7f HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
        b"GET /keys/\xed\xa0\x80 HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        send_raw(&server, bytes).expect_4xx_or_closed();
    }
    assert_unharmed(&mut server);

    let r = response(send_raw(
        &server,
        "PUT /keys/é HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok".as_bytes(),
    ));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(server.get("/keys/%C3%A9").body, b"ok");
}

/// Malformed requests the parser cannot read (garbage, bad version, header
/// without a colon, 1 MiB of junk with no line end) get a 4xx or a closed
/// connection, and the server carries on.
#[test]
fn garbage_requests() {
    let mut server = setup();
    let junk = vec![b'A'; 1 << 20];
    for bytes in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\0\0\0\0\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health\r\n\r\n",
        b"GET  /health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        &junk,
    ] {
        let mut conn = server.conn();
        let outcome = match conn.send(bytes) {
            Ok(()) => {
                conn.shutdown_write();
                conn.read_outcome()
            }
            Err(_) => Outcome::Closed,
        };
        if let Outcome::Response(r) = &outcome {
            // The one request above that is valid HTTP/1.1 is answered.
            assert!(r.status == 200 || (400..500).contains(&r.status), "{r:?}");
        }
    }
    assert_unharmed(&mut server);
}

/// The bytes after a request whose body cannot be read are never run as a
/// request: `PUT /keys/a` with a bad, huge, overflowing, conflicting or
/// chunked framing, followed on the same connection (same write) by a
/// valid `DELETE /keys/victim` and `PUT /keys/smuggled`. The first answer
/// is the framing error with `Connection: close`, the smuggled requests are
/// answered 400 without running, victim stays, smuggled never exists, and
/// A request with bad framing (non-numeric, huge or conflicting
/// Content-Length; chunked with Content-Length), followed on the same
/// connection (same write) by a valid `DELETE /keys/victim` and
/// `PUT /keys/smuggled`: the first answer is the framing error with
/// `Connection: close`, then the connection closes; the smuggled requests
/// never run, victim stays and smuggled never exists.
#[test]
fn pipelined_request_after_bad_framing_is_not_run() {
    let mut server = setup();
    let smuggled = b"DELETE /keys/victim HTTP/1.1\r\nHost: t\r\n\r\n\
                     PUT /keys/smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nbad";
    let cases: [(&[(&str, &str)], u16); 8] = [
        (&[("Content-Length", "abc")], 400),
        (&[("Content-Length", "1000000000000")], 413),
        (&[("Content-Length", "18446744073709551617")], 400),
        (&[("Content-Length", "1048577")], 413),
        (&[("Content-Length", "0"), ("Content-Length", "5")], 400),
        (&[("Content-Length", "5"), ("Content-Length", "0")], 400),
        (
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
            400,
        ),
        (
            &[("Content-Length", "0"), ("Transfer-Encoding", "chunked")],
            400,
        ),
    ];
    for (headers, status) in cases {
        let mut bytes = put_head("a", headers);
        bytes.extend_from_slice(smuggled);
        let mut conn = server.conn();
        conn.send(&bytes).unwrap();
        let first = response(conn.read_outcome());
        assert_eq!(first.status, status, "{headers:?}: {}", first.text());
        assert_eq!(first.header("Connection"), Some("close"), "{headers:?}");
        first.routing();
        assert!(
            matches!(conn.read_outcome(), Outcome::Closed),
            "{headers:?}: a smuggled request was answered"
        );
        drop(conn);
        let r = server.get("/keys/victim");
        assert_eq!(r.status, 200, "{headers:?} let a pipelined DELETE through");
        assert_eq!(server.get("/keys/a").body, b"the original a", "{headers:?}");
        server.get("/keys/smuggled").expect_error(404);
    }
    assert_unharmed(&mut server);
}

/// The control for the test above: after a request with a correctly framed
/// body (or a body on a route that takes none), a pipelined DELETE does run
/// and every request is answered in order.
#[test]
fn pipelined_requests_after_good_framing_run() {
    let mut server = setup();
    let mut bytes = put_head("fresh", &[("Content-Length", "5")]);
    bytes.extend_from_slice(b"hello");
    bytes.extend_from_slice(&request_bytes(
        "GET",
        b"/health",
        &[],
        Some(b"ignored body"),
    ));
    bytes.extend_from_slice(&request_bytes("DELETE", b"/keys/fresh", &[], None));
    bytes.extend_from_slice(&request_bytes("GET", b"/keys/victim", &[], None));
    let mut conn = server.conn();
    conn.send(&bytes).unwrap();
    let statuses: Vec<u16> = (0..4)
        .map(|_| conn.read_response().expect("pipelined response").status)
        .collect();
    assert_eq!(statuses, [201, 200, 204, 200]);
    server.get("/keys/fresh").expect_error(404);
    assert_unharmed(&mut server);
}

/// A refused request with a well-framed body (bad key 400, wrong method
/// 405, unknown route 404, missing admin token 401) still consumes that
/// body: a request hidden in it never runs, and the next real request on
/// the connection is answered in step.
#[test]
fn refused_requests_still_consume_their_body() {
    let mut server = setup_with(&["--admin-token", "t0ken"]);
    let hidden = b"DELETE /keys/victim HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut bytes = Vec::new();
    for (method, path) in [
        ("PUT", &b"/keys/a%zz"[..]),
        ("POST", b"/keys/victim"),
        ("PUT", b"/nowhere"),
        ("POST", b"/nodes"),
        ("PUT", b"/nodes/0"),
    ] {
        bytes.extend_from_slice(&request_bytes(method, path, &[], Some(hidden)));
    }
    bytes.extend_from_slice(&request_bytes("GET", b"/keys/victim", &[], None));
    let mut conn = server.conn();
    conn.send(&bytes).unwrap();
    let answers: Vec<(u16, Vec<u8>)> = (0..6)
        .map(|_| {
            let r = conn.read_response().expect("an answer per request");
            (r.status, r.body)
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [400, 405, 404, 401, 401, 200]);
    assert_eq!(answers[5].1, b"still here");
    assert_unharmed(&mut server);
}

/// A burst of 200 connections opened and closed abruptly (silent, cut
/// mid-line, mid-headers, mid-body, or after a full request without reading
/// the answer), from several threads at once: the server stays up, the
/// canaries are intact, and keep-alive still works afterwards.
#[test]
fn burst_of_abrupt_connections() {
    let mut server = setup();
    let addr = server.addr;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                    let bytes: Vec<u8> = match (t * 50 + i) % 6 {
                        0 => Vec::new(),
                        1 => b"GET /heal".to_vec(),
                        2 => b"PUT /keys/canary HTTP/1.1\r\nContent-Length: 10".to_vec(),
                        3 => b"PUT /keys/canary HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
                        4 => b"GET /keys/canary HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                        _ => b"GET /metrics HTTP/1.1\r\n\r\nGET /nodes HTTP/1.1\r\n\r\n".to_vec(),
                    };
                    let _ = stream.write_all(&bytes);
                    drop(stream);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_unharmed(&mut server);
    let mut conn = server.conn();
    for _ in 0..50 {
        assert_eq!(
            conn.request("GET", "/keys/victim", &[], None).body,
            b"still here"
        );
    }
}
