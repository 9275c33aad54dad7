//! `GET /rebalance`: relocation's progress.
//!
//! This file owns the JSON of [`crate::cluster::RebalanceStatus`], which the
//! membership changes of [`super::nodes`] answer with too.

use std::time::SystemTime;

use serde::Serialize;

use super::{ApiError, Endpoint, Reply};
use crate::cluster::{Cluster, RebalanceStatus};
use crate::settings::Settings;

/// `GET /rebalance`: describe relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebalance;

impl Endpoint for Rebalance {
    type Command<'a> = Rebalance;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Rebalance, ApiError> {
        Ok(*self)
    }

    fn execute(_: Rebalance, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        Reply::json(200, &RebalanceJson::from(cluster.rebalance_status()))
    }
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// Relocation's progress, as `GET /rebalance` and membership changes
/// answer it.
#[derive(Serialize)]
pub(super) struct RebalanceJson {
    active: bool,
    keys_scanned: u64,
    keys_moved: u64,
    keys_dropped: u64,
    started_at: Option<String>,
    finished_at: Option<String>,
    runs: u64,
    total_moved: u64,
    total_dropped: u64,
    settled_version: u64,
    /// Sweeps cut short by a failing node, and the last failure.
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

impl From<RebalanceStatus> for RebalanceJson {
    fn from(s: RebalanceStatus) -> Self {
        RebalanceJson {
            active: s.active,
            keys_scanned: s.keys_scanned,
            keys_moved: s.keys_moved,
            keys_dropped: s.keys_dropped,
            started_at: rfc3339(s.started_at),
            finished_at: rfc3339(s.finished_at),
            runs: s.runs,
            total_moved: s.total_moved,
            total_dropped: s.total_dropped,
            settled_version: s.settled_version,
            errors: s.errors,
            last_error: s.last_error,
        }
    }
}
