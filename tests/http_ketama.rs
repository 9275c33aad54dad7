//! Ketama placement through the real binary: a cluster started from a
//! config file with `hash: ketama` and libmemcached's vector servers serves
//! every vector key from the server libmemcached names (the product path:
//! config, cluster, routing, `X-CacheServer-Index`), keeps agreeing with a
//! library ring through live admin changes, and refuses admin bodies that
//! give vnodes to a ketama cluster.

mod common;
mod vectors;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{pct, Server};
use ringcache::hash::Placement;
use ringcache::Ring;

/// The config file of a ketama cluster listening on `listen`.
fn ketama_file(listen: &str, servers: &[(String, u32)]) -> String {
    let nodes: String = servers
        .iter()
        .map(|(n, w)| format!("  - {{ name: \"{n}\", weight: {w} }}\n"))
        .collect();
    format!("listen: {listen}\nhash: ketama\nreload_interval: 1h\nnodes:\n{nodes}")
}

/// Where test `test` keeps its config file.
fn file_path(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ringcache-ketama-{}-{test}.yaml",
        std::process::id()
    ))
}

/// Starts ringcache from a ketama config file listing `servers`.
fn start_ketama(test: &str, servers: &[(String, u32)]) -> Server {
    let path = file_path(test);
    let shown = path.display().to_string();
    Server::start_args(|addr| {
        std::fs::write(&path, ketama_file(&addr.to_string(), servers)).unwrap();
        vec!["--config".to_string(), shown.clone()]
    })
}

/// A library ketama ring of `servers`, in order.
fn model(servers: &[(String, u32)]) -> Ring {
    let ring = Ring::with_placement(Placement::Ketama, 10_000);
    for (n, w) in servers {
        ring.add_node(n, *w).unwrap();
    }
    ring
}

/// Every key reads back its value from the node `model` names.
fn assert_served_as(server: &Server, model: &Ring, keys: &[String]) {
    let names = names(server);
    let snap = model.pin();
    for k in keys {
        let r = server.get(&format!("/keys/{k}"));
        assert_eq!((r.status, r.text()), (200, k.clone()), "key {k}");
        let want = snap.node(snap.lookup(k.as_bytes()).unwrap()).unwrap();
        assert_eq!(names[&r.routing().0], &*want.name, "key {k}");
    }
}

/// Node index -> name, from `GET /nodes`.
fn names(server: &Server) -> HashMap<u32, String> {
    server
        .nodes()
        .iter()
        .map(|n| (common::index_of(n), n["name"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn a_ketama_cluster_serves_every_vector_key_from_libmemcacheds_server() {
    let server = start_ketama("vectors", &vectors::servers());
    let ring = server.get("/ring").json();
    assert_eq!(ring["hash"], "ketama");
    assert_eq!(ring["points"], 1264);
    let names = names(&server);
    for vectors::Vector {
        key, server: want, ..
    } in vectors::rows()
    {
        let path = format!("/keys/{}", pct(&key));
        let put = server.put(&path, &key);
        assert_eq!(put.status, 201, "PUT {path}: {}", put.text());
        let (index, count) = put.routing();
        assert_eq!(count, 8);
        assert_eq!(
            names[&index],
            want,
            "key {:?}",
            String::from_utf8_lossy(&key)
        );
        let get = server.get(&path);
        assert_eq!((get.status, get.routing().0), (200, index));
    }
}

#[test]
fn live_admin_changes_keep_agreeing_with_a_ketama_ring() {
    let initial: Vec<(String, u32)> = (1..=3).map(|i| (format!("10.0.0.{i}"), i)).collect();
    let server = start_ketama("admin", &initial);
    // The same history, applied to a library ring.
    let model = model(&initial);
    let keys: Vec<String> = (0..400).map(|i| format!("session:{i}")).collect();
    for k in &keys {
        assert_eq!(server.put(&format!("/keys/{k}"), k.as_bytes()).status, 201);
    }
    let check = |server: &Server, model: &Ring| assert_served_as(server, model, &keys);
    check(&server, &model);

    // Add a node with a weight; vnodes are refused.
    let refused = server.send_json("POST", "/nodes", r#"{"name":"10.0.0.9","vnodes":160}"#);
    assert!(refused.expect_error(400).contains("weight"));
    let added = server.send_json("POST", "/nodes", r#"{"name":"10.0.0.9","weight":4}"#);
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["weight"], 4);
    let new = common::index_of(&added.json());
    model.add_node("10.0.0.9", 4).unwrap();
    server.wait_rebalanced();
    check(&server, &model);

    // Re-weight it, then remove the first node.
    let put = server.send_json("PUT", &format!("/nodes/{new}"), r#"{"weight":1}"#);
    assert_eq!(put.status, 202, "{}", put.text());
    let id = model.pin().node_by_name("10.0.0.9").unwrap().id;
    model.set_weight(id, 1).unwrap();
    server.wait_rebalanced();
    check(&server, &model);
    let first = names(&server)
        .into_iter()
        .find(|(_, n)| n == "10.0.0.1")
        .unwrap()
        .0;
    assert_eq!(server.delete(&format!("/nodes/{first}")).status, 202);
    let id = model.pin().node_by_name("10.0.0.1").unwrap().id;
    model.remove_node(id).unwrap();
    server.wait_rebalanced();
    check(&server, &model);
    assert_eq!(server.total_keys(), keys.len() as u64, "stray copies");
}

#[test]
fn the_cli_starts_a_ketama_cluster_and_refuses_vnodes_for_it() {
    let server = Server::start_with(&["--hash", "ketama", "--nodes", "3"]);
    let ring = server.get("/ring").json();
    assert_eq!(
        (ring["hash"].as_str(), ring["points"].as_u64()),
        (Some("ketama"), Some(480))
    );
    for n in server.nodes() {
        assert_eq!(
            (n["weight"].as_u64(), n["vnodes"].as_u64()),
            (Some(1), Some(160))
        );
    }
    let metrics = server.get("/metrics").text();
    for series in ["ringcache_node_weight{", "ringcache_node_vnodes{"] {
        assert_eq!(metrics.matches(series).count(), 3, "{series} in {metrics}");
    }
    let out = std::process::Command::new(common::BIN)
        .args(["--hash", "ketama", "--vnodes", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--weight"), "{err}");
}

/// A reload of a ketama file re-weights, adds and removes nodes by name, in
/// file (server) order, and the cluster then agrees with a ring built from
/// the new file; a reload that changes `hash` is refused whole.
#[test]
fn reloading_a_ketama_file_applies_weights_and_keys_follow() {
    let before: Vec<(String, u32)> = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
    let server = start_ketama("reload", &before);
    let keys: Vec<String> = (0..300).map(|i| format!("k:{i}")).collect();
    for k in &keys {
        assert_eq!(server.put(&format!("/keys/{k}"), k.as_bytes()).status, 201);
    }
    assert_served_as(&server, &model(&before), &keys);
    let after: Vec<(String, u32)> = vec![("a".into(), 5), ("c".into(), 3), ("d".into(), 2)];
    let listen = server.addr.to_string();
    std::fs::write(file_path("reload"), ketama_file(&listen, &after)).unwrap();
    server.signal("HUP");
    let want: Vec<(String, u64)> = after
        .iter()
        .map(|(n, w)| (n.clone(), u64::from(*w)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut got: Vec<(String, u64)> = server
            .nodes()
            .iter()
            .filter(|n| n["state"] == "serving")
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_owned(),
                    n["weight"].as_u64().unwrap(),
                )
            })
            .collect();
        got.sort();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "reload not applied: {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_rebalanced();
    // "d" joined last, as the file lists it: the server order of the model.
    assert_served_as(&server, &model(&after), &keys);
    assert_eq!(server.total_keys(), keys.len() as u64, "stray copies");

    // Switching placement needs a restart: the reload is refused whole.
    let xxh3 = format!(
        "listen: {listen}\nreload_interval: 1h\nnodes:\n  - name: a\n  - name: c\n  - name: d\n"
    );
    std::fs::write(file_path("reload"), xxh3).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("cannot change while running") {
        assert!(
            Instant::now() < deadline,
            "the refused reload was not logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get("/ring").json()["hash"], "ketama");
    assert_served_as(&server, &model(&after), &keys);
}
