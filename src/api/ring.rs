//! `GET /ring` and `GET /ring/points`: the ring as the API shows it.
//!
//! This file owns their JSON: each node's share of the ring and how even
//! the shares are (`/ring`), and the ring's points, sampled for drawing
//! (`/ring/points`). Both read one pinned snapshot, so a reply never mixes
//! two versions of the ring.

use serde::Serialize;

use super::{ketama_weight, ApiError, Endpoint, Reply};
use crate::cluster::Cluster;
use crate::settings::Settings;

/// `GET /ring`: describe the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring;

/// `GET /ring/points`: the ring's points, sampled, for drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPoints;

#[derive(Serialize)]
struct RingNodeJson<'a> {
    index: u32,
    name: &'a str,
    /// Absent under xxh3, as in `GET /nodes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    vnodes: u32,
    ownership: f64,
}

/// The most points `GET /ring/points` returns; larger rings are sampled.
const MAX_DRAWN_POINTS: usize = 2000;

#[derive(Serialize)]
struct PointsJson {
    version: u64,
    /// Points on the ring.
    total: usize,
    /// Every `step`-th point is listed.
    step: usize,
    /// (position as a fraction of the hash space, owner index).
    points: Vec<(f64, u32)>,
}

#[derive(Serialize)]
struct BalanceJson {
    /// Mean share (1 / nodes).
    mean: f64,
    /// Population standard deviation of the shares.
    stddev: f64,
    /// stddev / mean: about 1/sqrt(vnodes) for equal counts.
    stddev_over_mean: f64,
    /// Smallest and largest share relative to the mean.
    min_over_mean: f64,
    max_over_mean: f64,
}

#[derive(Serialize)]
struct RingJson<'a> {
    version: u64,
    /// The placement: "xxh3" or "ketama".
    hash: &'static str,
    points: usize,
    nodes: Vec<RingNodeJson<'a>>,
    balance: Option<BalanceJson>,
}

impl Endpoint for Ring {
    type Command<'a> = Ring;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<Ring, ApiError> {
        Ok(*self)
    }

    fn execute(_: Ring, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let snap = cluster.ring().pin();
        let shares = snap.shares();
        let nodes: Vec<RingNodeJson> = shares
            .iter()
            .map(|s| RingNodeJson {
                index: s.id.0,
                name: &s.name,
                weight: ketama_weight(snap.placement(), s.weight),
                vnodes: s.points,
                ownership: s.share,
            })
            .collect();
        let balance = (!shares.is_empty()).then(|| {
            let n = shares.len() as f64;
            let mean = 1.0 / n;
            let var = shares.iter().map(|s| (s.share - mean).powi(2)).sum::<f64>() / n;
            let fold = |f: fn(f64, f64) -> f64, init| shares.iter().map(|s| s.share).fold(init, f);
            BalanceJson {
                mean,
                stddev: var.sqrt(),
                stddev_over_mean: var.sqrt() / mean,
                min_over_mean: fold(f64::min, f64::INFINITY) / mean,
                max_over_mean: fold(f64::max, 0.0) / mean,
            }
        });
        let reply = Reply::json(
            200,
            &RingJson {
                version: snap.version(),
                hash: snap.placement().as_str(),
                points: snap.point_count(),
                nodes,
                balance,
            },
        );
        drop(snap);
        reply
    }
}

impl Endpoint for RingPoints {
    type Command<'a> = RingPoints;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<RingPoints, ApiError> {
        Ok(*self)
    }

    fn execute(_: RingPoints, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let snap = cluster.ring().pin();
        let total = snap.point_count();
        // Every k-th point, so a 1000-node ring stays a light poll.
        let step = total.div_ceil(MAX_DRAWN_POINTS).max(1);
        let points: Vec<(f64, u32)> = snap
            .points()
            .step_by(step)
            .map(|(p, owner)| (snap.fraction(p), owner.0))
            .collect();
        let reply = Reply::json(
            200,
            &PointsJson {
                version: snap.version(),
                total,
                step,
                points,
            },
        );
        drop(snap);
        reply
    }
}
