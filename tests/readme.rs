//! The README's example session, replayed against the real binary: every
//! `$ curl ...` line of the console block under "## Using it" is sent as the
//! request it describes, and what the server answers must be what the
//! README shows, line for line, except dates and times. A changed reply
//! shape or status makes the README wrong, and this test says so.
//!
//! Before each step the test waits for relocation to settle, as it would
//! have between the commands of a person typing them: otherwise whether
//! the relocation of `POST /nodes` is still running when `PUT /nodes/3`
//! arrives is a race, and the final `GET /rebalance` counts runs and keys
//! differently. The reply to `PUT /nodes/3` (relocation under way) is
//! compared by its field names only, since how far the mover got by then
//! is a race too.

mod common;

use std::time::{Duration, Instant};

use common::{Conn, Server};
use serde_json::Value;

/// One `$ curl` line of the README and the output shown under it.
struct Step {
    method: String,
    path: String,
    body: Option<Vec<u8>>,
    headers_shown: bool,
    expected: Vec<String>,
}

/// The console block under "## Using it".
fn steps() -> Vec<Step> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("reading README.md");
    let usage = &readme[readme.find("## Using it").expect("a '## Using it' section")..];
    let start = usage.find("```console\n").expect("a console block") + "```console\n".len();
    let block = &usage[start..start + usage[start..].find("```").expect("the block ends")];
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ curl ") {
            steps.push(parse_curl(cmd));
        } else {
            steps
                .last_mut()
                .expect("output follows a command")
                .expected
                .push(line.to_owned());
        }
    }
    steps
}

/// Reads the few curl options the README uses: `-s`, `-i` (show headers),
/// `-X METHOD`, `-d` / `--data-binary 'BODY'`, and the URL.
fn parse_curl(cmd: &str) -> Step {
    let mut words = Vec::new();
    let mut rest = cmd.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').expect("a closing quote");
            words.push(quoted[..end].to_owned());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    let mut step = Step {
        method: "GET".into(),
        path: String::new(),
        body: None,
        headers_shown: false,
        expected: Vec::new(),
    };
    let mut i = 0;
    while i < words.len() {
        match words[i].as_str() {
            "-s" => {}
            "-si" | "-is" => step.headers_shown = true,
            "-X" => {
                i += 1;
                step.method = words[i].clone();
            }
            "-d" | "--data-binary" => {
                i += 1;
                step.body = Some(words[i].clone().into_bytes());
                if step.method == "GET" {
                    step.method = "POST".into();
                }
            }
            url => {
                let path = url
                    .strip_prefix("http://127.0.0.1:8000")
                    .unwrap_or_else(|| panic!("unexpected curl word {url:?}"));
                step.path = path.to_owned();
            }
        }
        i += 1;
    }
    step
}

/// Masks what differs from run to run: the Date header and RFC 3339 times.
fn mask(line: &str) -> String {
    if line.starts_with("Date: ") {
        return "Date: <date>".into();
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(mut map)) => {
            for key in ["started_at", "finished_at"] {
                if let Some(v) = map.get_mut(key) {
                    if !v.is_null() {
                        *v = Value::String("<time>".into());
                    }
                }
            }
            Value::Object(map).to_string()
        }
        _ => line.to_owned(),
    }
}

#[test]
fn the_readme_session_replays() {
    let steps = steps();
    assert!(
        steps.len() >= 5,
        "the README's session has {} steps",
        steps.len()
    );
    let server = Server::start();
    for step in &steps {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get("/rebalance").json()["active"] == true {
            assert!(Instant::now() < deadline, "relocation never settled");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut conn = Conn::open(server.addr);
        let r = conn.request(&step.method, &step.path, &[], step.body.as_deref());
        let mut got = Vec::new();
        if step.headers_shown {
            got.push(format!("HTTP/1.1 {} {}", r.status, reason(r.status)));
            for (name, value) in &r.headers {
                got.push(format!("{name}: {value}"));
            }
            got.push(String::new());
        }
        got.extend(String::from_utf8_lossy(&r.body).lines().map(str::to_owned));
        let expected: Vec<String> = step.expected.iter().map(|l| mask(l)).collect();
        let got: Vec<String> = got.iter().map(|l| mask(l)).collect();
        let what = format!("{} {}", step.method, step.path);
        if step.method == "PUT" && step.path.starts_with("/nodes/") {
            let fields = |line: &str| -> Vec<String> {
                let v: Value = serde_json::from_str(line).expect("JSON");
                v.as_object().unwrap().keys().cloned().collect()
            };
            assert_eq!(fields(&got[0]), fields(&expected[0]), "{what}");
            continue;
        }
        assert_eq!(got, expected, "{what}: the README shows a different reply");
    }
}

fn reason(status: u16) -> &'static str {
    ringcache::api::reason(status)
}
