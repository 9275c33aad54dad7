//! The ring's error type.

use std::fmt;

use super::{NodeId, Placement};

/// Why a membership edit of the ring was refused.
///
/// Every variant leaves the ring exactly as it was: an edit is validated in
/// full before a new snapshot is built. Checks run in a fixed order, so the
/// same bad edit always gets the same error: for `add_node` the name, then
/// the weight, then name uniqueness, then capacity; for `set_weight` the
/// node, then the weight, then capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingError {
    /// A node with this name is already in the ring.
    DuplicateName(String),
    /// No node with this id is in the ring (never was, or was removed).
    UnknownNode(NodeId),
    /// The node weight is outside `1..=max`. The message names it as the
    /// operator sets it: "vnodes" under xxh3 (where a node's weight is its
    /// vnode count), "weight" under ketama.
    WeightOutOfRange {
        /// The weight that was asked for.
        weight: u32,
        /// The ring's maximum (`Ring::max_weight`).
        max: u32,
        /// The ring's placement, which names the weight.
        placement: Placement,
    },
    /// The name is empty or longer than the placement allows
    /// ([`crate::hash::Placement::max_name_bytes`]).
    InvalidName {
        /// The length of the refused name, in bytes.
        len: usize,
        /// The longest name the ring's placement accepts.
        max: usize,
    },
    /// A ketama ring's weights would sum past `u32::MAX`, which ketama's
    /// 32-bit arithmetic cannot represent.
    TotalWeightTooLarge {
        /// The sum the edit would reach.
        total: u64,
    },
    /// The edit would put more points on the ring than it holds at most.
    TooManyPoints {
        /// The total the edit would reach.
        requested: usize,
        /// The ring's limit ([`super::MAX_TOTAL_POINTS`]).
        max: usize,
    },
    /// Every `NodeId` has been handed out once; ids are never reused while
    /// the process lives, so no further node can be added.
    IdsExhausted,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::DuplicateName(name) => write!(
                f,
                "a node named {name:?} is already in the ring; pick another name or remove that node first"
            ),
            RingError::UnknownNode(id) => write!(
                f,
                "no node with index {id} is in the ring; list the nodes to see the current indexes"
            ),
            RingError::WeightOutOfRange {
                weight,
                max,
                placement,
            } => write!(
                f,
                "{} must be between 1 and {max}, got {weight}",
                match placement {
                    Placement::Xxh3 => "vnodes",
                    Placement::Ketama => "weight",
                }
            ),
            RingError::InvalidName { len, max } => write!(
                f,
                "a node name must be 1 to {max} bytes long, got {len} bytes"
            ),
            RingError::TotalWeightTooLarge { total } => write!(
                f,
                "the nodes' weights would sum to {total}, more than ketama's 32-bit total allows; use smaller weights"
            ),
            RingError::TooManyPoints { requested, max } => write!(
                f,
                "the ring would hold {requested} points, more than its limit of {max}; use fewer vnodes per node"
            ),
            RingError::IdsExhausted => {
                write!(f, "all node indexes have been used; restart the process to add more nodes")
            }
        }
    }
}

impl std::error::Error for RingError {}
