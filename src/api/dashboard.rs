//! `GET /` (and `/ui`): the dashboard.
//!
//! This file owns the page, `dashboard.html` beside it: one self-contained
//! page that polls the JSON routes ([`super::nodes`], [`super::ring`],
//! [`super::rebalance`]) and draws the ring.

use super::{ApiError, Body, Endpoint, Reply};
use crate::cluster::Cluster;
use crate::settings::Settings;

/// The dashboard: one self-contained page (no external fetch) that polls
/// the JSON routes and draws the ring.
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dashboard;

impl Endpoint for Dashboard {
    type Command<'a> = Dashboard;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Dashboard, ApiError> {
        Ok(*self)
    }

    fn execute(_: Dashboard, _cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        Reply {
            status: 200,
            routing: None,
            body: Body::Html(DASHBOARD),
        }
    }
}
