//! libmemcached's ketama placement vectors (`ketama-libmemcached.tsv`
//! beside this file, from libmemcached's test fixtures, BSD-3-Clause), read
//! for the tests that check ringcache against them (`ketama_vectors`,
//! `http_ketama`). The file's header names the servers in order with their
//! weights and the expected ring size; each row gives a key (as hex bytes),
//! its hash, the continuum point chosen and the server that owns it. The
//! tests read all of it from the file rather than restating it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// The vectors file.
pub const TEXT: &str = include_str!("ketama-libmemcached.tsv");

/// The servers and weights from the header line after `Servers in order`,
/// in server order.
pub fn servers() -> Vec<(String, u32)> {
    let mut lines = TEXT.lines();
    lines
        .by_ref()
        .find(|l| l.contains("Servers in order"))
        .expect("the header names the servers");
    let list = lines.next().expect("a server line follows");
    list.trim_start_matches('#')
        .split(',')
        .map(|s| {
            let (name, weight) = s.trim().split_once(' ').expect("name weight");
            (name.to_owned(), weight.parse().expect("numeric weight"))
        })
        .collect()
}

/// The header's expected ring size.
pub fn expected_points() -> usize {
    let line = TEXT
        .lines()
        .find(|l| l.contains("Expected ring size:"))
        .expect("the header gives the ring size");
    let after = line.split("Expected ring size:").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// One placement vector.
pub struct Vector {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// Its ketama hash.
    pub hash: u32,
    /// The continuum point chosen for it.
    pub point: u32,
    /// The server owning that point.
    pub server: String,
}

/// Every row of the file.
pub fn rows() -> Vec<Vector> {
    TEXT.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("key_hex"))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "row {l:?}");
            let key = (0..f[0].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[0][i..i + 2], 16).expect("hex key"))
                .collect();
            Vector {
                key,
                hash: f[1].parse().unwrap(),
                point: f[2].parse().unwrap(),
                server: f[3].to_owned(),
            }
        })
        .collect()
}
