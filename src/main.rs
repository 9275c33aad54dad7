//! The `ringcache` binary.
//!
//! Until the HTTP server lands (design.md, "Command line"), it prints its
//! version and what it is, and exits; it exists so the crate's binary target
//! builds and the README's run command works.

use std::process::ExitCode;

const HELP: &str = "\
ringcache: a cache cluster behind one HTTP endpoint, placed by a lock-free
consistent hash ring with virtual nodes.

Usage: ringcache [--help | --version]

The HTTP server is not built yet; today the crate is the ring library
(see README.md). This binary prints a placement demo and exits.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--help" | "-h") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("ringcache {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("ringcache: unknown argument {other:?}; try --help");
            return ExitCode::from(2);
        }
    }
    println!("ringcache {}", env!("CARGO_PKG_VERSION"));
    let ring = ringcache::Ring::new();
    for i in 0..3 {
        ring.add_node(&format!("cache-{i}"), 160)
            .expect("three distinct names with 160 vnodes are valid");
    }
    for share in ring.nodes() {
        println!(
            "node {} {:<8} vnodes {:>4}  share {:>5.1}%",
            share.id,
            share.name,
            share.vnodes,
            share.share * 100.0
        );
    }
    for key in ["user:1", "user:2", "session:abc"] {
        let owner = ring.lookup(key.as_bytes()).expect("ring has nodes");
        println!("{key:<12} -> node {owner}");
    }
    ExitCode::SUCCESS
}
