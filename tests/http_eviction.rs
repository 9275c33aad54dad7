//! Eviction and node removal seen through the real `ringcache` binary: an
//! acknowledged write is readable right after it, and a node that left the
//! cluster leaves `/metrics` once it has drained.

mod common;

use common::Server;

/// One node with a 16 MiB cap and 64 KiB values: every `PUT` answered 201
/// is followed by a `GET` of the same key, which must find it (the issue
/// saw 13 misses in 3,000 before the writer stopped evicting itself).
#[test]
fn a_write_is_readable_right_after_it_at_the_cap() {
    let server = Server::start_with(&["--nodes", "1", "--node-max-bytes", "16777216"]);
    let value = vec![b'x'; 64 << 10];
    let mut conn = server.conn();
    let mut misses = Vec::new();
    for i in 0..3_000 {
        let path = format!("/keys/k{i}");
        let r = conn.request("PUT", &path, &[], Some(&value));
        assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
        let r = conn.request("GET", &path, &[], None);
        match r.status {
            200 => assert_eq!(r.body.len(), value.len()),
            404 => misses.push(i),
            other => panic!("GET {path}: {other}"),
        }
    }
    assert!(
        misses.is_empty(),
        "{} GETs missed: {misses:?}",
        misses.len()
    );
    // The node did run at its cap: most of the 3,000 values were evicted.
    let nodes = server.nodes();
    assert!(nodes[0]["evictions"].as_u64().unwrap() > 2_500, "{nodes:?}");
}

/// The metric series of a removed node leave `/metrics` once the node has
/// drained and been dropped; the remaining nodes' ownership sums to 1.
#[test]
fn a_removed_node_leaves_metrics_once_dropped() {
    let server = Server::start_with(&["--nodes", "3"]);
    for i in 0..200 {
        assert_eq!(server.put(&format!("/keys/m{i}"), b"v").status, 201);
    }
    let series = r#"{node="2",name="cache-2"}"#;
    let before = server.get("/metrics").text();
    assert!(
        before.contains(&format!("ringcache_node_keys{series}")),
        "{before}"
    );
    let r = server.delete("/nodes/2");
    assert!(r.status < 300, "DELETE /nodes/2: {} {}", r.status, r.text());
    server.wait_rebalanced();
    let after = server.get("/metrics").text();
    assert!(
        !after.contains(r#"node="2""#),
        "series of the removed node remain:\n{after}"
    );
    let ownership: f64 = after
        .lines()
        .filter(|l| l.starts_with("ringcache_node_ownership{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((ownership - 1.0).abs() < 1e-9, "{after}");
    for i in 0..2 {
        let keys = format!(r#"ringcache_node_keys{{node="{i}",name="cache-{i}"}} "#);
        assert!(after.contains(&keys), "{after}");
    }
}
