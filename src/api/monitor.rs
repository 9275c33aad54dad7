//! `GET /metrics` and `GET /health`: what monitoring reads.
//!
//! This file owns their replies: the Prometheus text that
//! [`crate::telemetry`] renders (handed in as the `metrics` argument of
//! [`super::execute`]), and the liveness answer.

use super::{ApiError, Body, Endpoint, Reply};
use crate::cluster::Cluster;
use crate::settings::Settings;

/// `GET /metrics`: Prometheus metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metrics;

/// `GET /health`: liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health;

impl Endpoint for Metrics {
    type Command<'a> = Metrics;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Metrics, ApiError> {
        Ok(*self)
    }

    fn execute(_: Metrics, _cluster: &Cluster, metrics: impl FnOnce() -> String) -> Reply {
        Reply {
            status: 200,
            routing: None,
            body: Body::Metrics(metrics()),
        }
    }
}

impl Endpoint for Health {
    type Command<'a> = Health;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Health, ApiError> {
        Ok(*self)
    }

    fn execute(_: Health, _cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        Reply {
            status: 200,
            routing: None,
            body: Body::Text("ok\n".into()),
        }
    }
}
