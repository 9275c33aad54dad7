//! The load test's ceiling: a bare may_minihttp server answering every
//! request with a fixed 64-byte body and the same number of response headers
//! as a ringcache hit, on the same worker and stack settings. ringcache's GET
//! throughput is reported as a fraction of this server's, measured in the
//! same run (scripts/load.sh).
//!
//! Usage: `cargo run --release --example bare_minihttp -- 127.0.0.1:8001`

use std::io;

use may_minihttp::{HttpServer, HttpService, Request, Response};

/// Same size as the values scripts/load.sh stores.
const BODY: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

#[derive(Clone)]
struct Fixed;

impl HttpService for Fixed {
    fn call(&mut self, _req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("X-CacheServer-Index: 0");
        rsp.header("X-CacheServer-Count: 3");
        rsp.header("Content-Type: application/octet-stream");
        rsp.body(BODY);
        Ok(())
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8001".into());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    may::config()
        .set_workers(workers)
        .set_stack_size((256 << 10) / std::mem::size_of::<usize>());
    match HttpServer(Fixed).start(&addr) {
        Ok(server) => {
            eprintln!("bare may_minihttp listening on {addr}");
            let _ = server.join();
        }
        Err(e) => {
            eprintln!("bare_minihttp: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    }
}
