//! `GET` and `POST /nodes`, `PUT` and `DELETE /nodes/{index}`: membership.
//!
//! This file owns the node index in the path, the admin JSON bodies and the
//! node-size rule they follow, the membership commands (owned, so the HTTP
//! layer can run them on its admin thread), and the JSON of a node in the
//! listing. A change answers 202 with relocation's progress
//! ([`super::rebalance`]).

use serde::{Deserialize, Serialize};

use super::rebalance::RebalanceJson;
use super::{cluster_error, ketama_weight, parse_json, ApiError, Endpoint, Reply};
use crate::cluster::{Cluster, NodeKind, NodeStatus};
use crate::hash::Placement;
use crate::ring::NodeId;
use crate::settings::{Limits, Settings};

/// `GET /nodes`: list the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListNodes;

/// `POST /nodes`: add the node its body describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddNode;

/// `PUT /nodes/{index}`: change the weight of this node to what its body
/// gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetVnodes(pub NodeId);

/// `DELETE /nodes/{index}`: remove this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoveNode(pub NodeId);

/// Add a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Its name.
    pub name: String,
    /// Its weight: vnodes under xxh3, ketama weight under ketama.
    pub vnodes: u32,
    /// What it is: embedded, or a Redis server.
    pub kind: NodeKind,
}

/// Change a node's weight: the node, and its new weight (vnodes under
/// xxh3, ketama weight under ketama).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reweight(pub NodeId, pub u32);

/// The node a `/nodes/{index}` segment names.
pub(super) fn parse_index(segment: &str) -> Result<NodeId, ApiError> {
    segment.parse().map(NodeId).map_err(|_| {
        ApiError::new(
            400,
            format!("node index must be a number, got {segment:?}; GET /nodes lists them"),
        )
    })
}

/// Body of `POST /nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeBody {
    /// Optional for a Redis node (defaults to its address).
    name: Option<String>,
    /// `HOST:PORT` of a Redis server; absent for an embedded node.
    redis: Option<String>,
    vnodes: Option<u32>,
    weight: Option<u32>,
}

/// Body of `PUT /nodes/{index}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetVnodesBody {
    vnodes: Option<u32>,
    weight: Option<u32>,
}

/// The node size an admin body gives under `settings`' placement (see
/// [`crate::settings::node_size`]), or `default` when it gives neither.
fn node_size(
    settings: &Settings,
    vnodes: Option<u32>,
    weight: Option<u32>,
    default: Option<u32>,
) -> Result<u32, ApiError> {
    let field = crate::settings::size_field(settings.hash);
    crate::settings::node_size(settings.hash, vnodes, weight)
        .map_err(|why| ApiError::new(400, why))?
        .or(default)
        .ok_or_else(|| {
            ApiError::new(
                400,
                format!("the body must give \"{field}\", like {{\"{field}\": 2}}"),
            )
        })
}

/// A node in `GET /nodes` and `POST /nodes` replies.
#[derive(Serialize)]
struct NodeJson<'a> {
    index: u32,
    name: &'a str,
    /// The ketama weight; absent under xxh3, where the operator sets
    /// `vnodes` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    vnodes: u32,
    state: &'static str,
    /// The Redis server's `HOST:PORT`; absent for an embedded node.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'a str>,
    keys: usize,
    bytes: usize,
    max_bytes: usize,
    ownership: f64,
    hits: u64,
    misses: u64,
    evictions: u64,
    expirations: u64,
    /// Calls to the node's server that failed (0 for embedded nodes).
    errors: u64,
}

impl<'a> NodeJson<'a> {
    fn new(n: &'a NodeStatus, placement: Placement) -> Self {
        NodeJson {
            index: n.id.0,
            name: &n.name,
            weight: ketama_weight(placement, n.weight),
            vnodes: n.points,
            state: n.state.as_str(),
            redis: n.redis.as_deref(),
            keys: n.stats.keys,
            bytes: n.stats.bytes,
            max_bytes: n.stats.max_bytes,
            ownership: n.share,
            hits: n.stats.hits,
            misses: n.stats.misses,
            evictions: n.stats.evictions,
            expirations: n.stats.expirations,
            errors: n.stats.errors,
        }
    }
}

/// The 202 for a membership change the cluster took: relocation's
/// progress.
fn changed(cluster: &Cluster) -> Reply {
    Reply::json(202, &RebalanceJson::from(cluster.rebalance_status()))
}

impl Endpoint for ListNodes {
    type Command<'a> = ListNodes;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<ListNodes, ApiError> {
        Ok(*self)
    }

    fn execute(_: ListNodes, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let nodes = cluster.nodes();
        let json: Vec<NodeJson> = nodes
            .iter()
            .map(|n| NodeJson::new(n, cluster.placement()))
            .collect();
        Reply::json(200, &json)
    }
}

impl Endpoint for AddNode {
    type Command<'a> = NewNode;

    const ADMIN: bool = true;

    fn body_limit(limits: &Limits) -> Option<usize> {
        Some(limits.max_admin_body_bytes)
    }

    fn command(&self, body: Vec<u8>, settings: &Settings) -> Result<NewNode, ApiError> {
        let b: AddNodeBody = parse_json(&body, r#"{"name": "cache-3", "vnodes": 160}"#)?;
        let vnodes = node_size(settings, b.vnodes, b.weight, Some(settings.default_size()))?;
        match (b.name, b.redis) {
            (Some(name), None) => Ok(NewNode {
                name,
                vnodes,
                kind: NodeKind::Embedded,
            }),
            (name, Some(addr)) => {
                crate::settings::check_redis_addr(&addr).map_err(|e| ApiError::new(400, e))?;
                Ok(NewNode {
                    name: name.unwrap_or_else(|| addr.clone()),
                    vnodes,
                    kind: NodeKind::Redis(addr),
                })
            }
            (None, None) => Err(ApiError::new(
                400,
                r#"give "name" for an embedded node, or "redis": "HOST:PORT" for a Redis server, e.g. {"redis": "10.0.0.5:6379", "vnodes": 160}"#,
            )),
        }
    }

    fn execute(cmd: NewNode, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let NewNode { name, vnodes, kind } = cmd;
        match cluster.add_node_of(&name, vnodes, &kind) {
            Ok(id) => match cluster.nodes().iter().find(|n| n.id == id) {
                Some(n) => Reply::json(201, &NodeJson::new(n, cluster.placement())),
                None => Reply::error(409, "the node was removed again before it could be listed"),
            },
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

impl Endpoint for SetVnodes {
    type Command<'a> = Reweight;

    const ADMIN: bool = true;

    fn body_limit(limits: &Limits) -> Option<usize> {
        Some(limits.max_admin_body_bytes)
    }

    fn command(&self, body: Vec<u8>, settings: &Settings) -> Result<Reweight, ApiError> {
        let b: SetVnodesBody = parse_json(&body, r#"{"vnodes": 320}"#)?;
        Ok(Reweight(
            self.0,
            node_size(settings, b.vnodes, b.weight, None)?,
        ))
    }

    fn execute(cmd: Reweight, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        let Reweight(id, vnodes) = cmd;
        match cluster.set_weight(id, vnodes) {
            Ok(()) => changed(cluster),
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

impl Endpoint for RemoveNode {
    type Command<'a> = RemoveNode;

    const ADMIN: bool = true;

    fn command(&self, _body: Vec<u8>, _settings: &Settings) -> Result<RemoveNode, ApiError> {
        Ok(*self)
    }

    fn execute(cmd: RemoveNode, cluster: &Cluster, _metrics: impl FnOnce() -> String) -> Reply {
        match cluster.remove_node(cmd.0) {
            Ok(()) => changed(cluster),
            Err(e) => cluster_error(cluster, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AddNode, NewNode, SetVnodes};
    use crate::api::{command, Command, Route};
    use crate::cluster::NodeKind;
    use crate::ring::NodeId;
    use crate::settings::Settings;

    #[test]
    fn admin_bodies_are_typed() {
        let l = Settings::default();
        let add = Route::AddNode(AddNode);
        let set = Route::SetVnodes(SetVnodes(NodeId(0)));
        assert_eq!(
            command(&add, br#"{"name":"n"}"#.to_vec(), &l),
            Ok(Command::AddNode(NewNode {
                name: "n".into(),
                vnodes: 160,
                kind: NodeKind::Embedded,
            }))
        );
        assert_eq!(
            command(
                &add,
                br#"{"redis":"10.0.0.5:6379","vnodes":40}"#.to_vec(),
                &l
            ),
            Ok(Command::AddNode(NewNode {
                name: "10.0.0.5:6379".into(),
                vnodes: 40,
                kind: NodeKind::Redis("10.0.0.5:6379".into()),
            }))
        );
        for bad in [&br#"{"vnodes":40}"#[..], br#"{"redis":"no-port"}"#] {
            let e = command(&add, bad.to_vec(), &l).unwrap_err();
            assert_eq!(e.status, 400, "{e:?}");
        }
        let ketama = Settings {
            hash: crate::hash::Placement::Ketama,
            ..l.clone()
        };
        assert_eq!(
            command(&add, br#"{"name":"n","weight":3}"#.to_vec(), &ketama),
            Ok(Command::AddNode(NewNode {
                name: "n".into(),
                vnodes: 3,
                kind: NodeKind::Embedded,
            }))
        );
        assert_eq!(
            command(&add, br#"{"name":"n"}"#.to_vec(), &ketama),
            Ok(Command::AddNode(NewNode {
                name: "n".into(),
                vnodes: crate::ring::DEFAULT_KETAMA_WEIGHT,
                kind: NodeKind::Embedded,
            }))
        );
        let wrong = [
            (
                &add,
                &br#"{"name":"n","vnodes":3}"#[..],
                &ketama,
                "give weight",
            ),
            (&set, br#"{"vnodes":3}"#, &ketama, "give weight"),
            (&set, br#"{"weight":3}"#, &l, "give vnodes"),
            (&set, br#"{}"#, &l, "must give \"vnodes\""),
            (&set, br#"{}"#, &ketama, "must give \"weight\""),
        ];
        for (route, body, limits, says) in wrong {
            let err = command(route, body.to_vec(), limits).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(says), "{}", err.message);
        }
        for bad in [
            &br#"{"name":1}"#[..],
            b"{",
            br#"{"vnodes":-1}"#,
            br#"{"vnodes":"2"}"#,
            br#"{"vnodes":5000000000}"#,
        ] {
            let err = command(&set, bad.to_vec(), &l).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains("JSON like"), "{}", err.message);
        }
        assert_eq!(
            command(&add, br#"{"name":"n","extra":1}"#.to_vec(), &l)
                .unwrap_err()
                .status,
            400
        );
    }
}
