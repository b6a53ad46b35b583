//! Fault plans: what the world does to the hosts, and when.
//!
//! A plan is data, built up front from the scenario and the seed (so a property test can
//! shrink it), and applied by an engine between simulation steps at exact simulated times.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::world::World;
use rollcall::host::{mix, stable_hash};

/// A fault as the scenario states it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// When it starts.
    pub at: Duration,
    /// How long it lasts (`None`: until the end, or instantaneous).
    pub lasting: Option<Duration>,
    /// What it is.
    pub kind: FaultKind,
}

/// Kinds of fault.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Traffic between the groups is lost (only from `a` to `b` when `oneway`).
    Partition { a: Vec<String>, b: Vec<String>, oneway: bool },
    /// The hosts' gossip datagrams are dropped with this probability.
    Loss { hosts: Vec<String>, rate: f64 },
    /// The hosts' gossip datagrams are delayed.
    Latency { hosts: Vec<String>, extra: Duration },
    /// The host dies, and boots again when the fault ends.
    HostCrash { host: String },
    /// One service is killed.
    ServiceCrash { host: String, service: String },
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum FaultAction {
    /// Cut traffic.
    Partition { a: Vec<String>, b: Vec<String>, oneway: bool },
    /// Restore traffic.
    Repair { a: Vec<String>, b: Vec<String>, oneway: bool },
    /// Set the gossip loss rate.
    SetLoss { hosts: Vec<String>, rate: f64 },
    /// Set the extra gossip latency.
    SetLatency { hosts: Vec<String>, extra_ms: u64 },
    /// Kill the host.
    Crash { host: String },
    /// Boot the host again.
    Restart { host: String },
    /// Kill one service.
    KillService { host: String, service: String },
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultAction::Partition { a, b, oneway } => {
                write!(f, "partition {} {} {}", a.join(","), if *oneway { "->" } else { "<->" }, b.join(","))
            }
            FaultAction::Repair { a, b, oneway } => {
                write!(f, "heal {} {} {}", a.join(","), if *oneway { "->" } else { "<->" }, b.join(","))
            }
            FaultAction::SetLoss { hosts, rate } => write!(f, "gossip loss {rate} on {}", hosts.join(",")),
            FaultAction::SetLatency { hosts, extra_ms } => {
                write!(f, "gossip latency +{extra_ms}ms on {}", hosts.join(","))
            }
            FaultAction::Crash { host } => write!(f, "crash host {host}"),
            FaultAction::Restart { host } => write!(f, "restart host {host}"),
            FaultAction::KillService { host, service } => write!(f, "kill service {service} on {host}"),
        }
    }
}

/// A step at a time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    /// When the engine applies it.
    #[serde(with = "millis")]
    pub at: Duration,
    /// What it does.
    pub action: FaultAction,
}

/// Everything the world will do during one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// When each host first boots.
    #[serde(with = "millis_map")]
    pub start_at: BTreeMap<String, Duration>,
    /// Fault steps in time order (ties keep scenario order).
    pub steps: Vec<Planned>,
}

impl Plan {
    /// Builds the plan of `world` for `seed`.
    pub fn build(world: &World, seed: u64) -> Plan {
        let mut order = world.start_order.clone();
        if world.start_permuted {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, stable_hash(b"start-order"))));
        }
        let gap = world.start_gap;
        let jitter_ms = world.start_jitter.as_millis() as u64;
        let mut jitter = ChaCha8Rng::seed_from_u64(mix(seed, stable_hash(b"start-jitter")));
        let start_at = order
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let delay = if jitter_ms == 0 { 0 } else { jitter.random_range(0..jitter_ms) };
                (name.clone(), gap * i as u32 + Duration::from_millis(delay))
            })
            .collect();
        let mut steps = Vec::new();
        for fault in &world.faults {
            let end = fault.lasting.map(|lasting| fault.at + lasting).filter(|end| *end < world.duration);
            let (begin, undo) = match &fault.kind {
                FaultKind::Partition { a, b, oneway } => (
                    FaultAction::Partition { a: a.clone(), b: b.clone(), oneway: *oneway },
                    Some(FaultAction::Repair { a: a.clone(), b: b.clone(), oneway: *oneway }),
                ),
                FaultKind::Loss { hosts, rate } => (
                    FaultAction::SetLoss { hosts: hosts.clone(), rate: *rate },
                    Some(FaultAction::SetLoss { hosts: hosts.clone(), rate: 0.0 }),
                ),
                FaultKind::Latency { hosts, extra } => (
                    FaultAction::SetLatency { hosts: hosts.clone(), extra_ms: extra.as_millis() as u64 },
                    Some(FaultAction::SetLatency { hosts: hosts.clone(), extra_ms: 0 }),
                ),
                FaultKind::HostCrash { host } => (
                    FaultAction::Crash { host: host.clone() },
                    Some(FaultAction::Restart { host: host.clone() }),
                ),
                FaultKind::ServiceCrash { host, service } => {
                    (FaultAction::KillService { host: host.clone(), service: service.clone() }, None)
                }
            };
            steps.push(Planned { at: fault.at, action: begin });
            if let (Some(end), Some(undo)) = (end, undo) {
                steps.push(Planned { at: end, action: undo });
            }
        }
        steps.sort_by_key(|step| step.at);
        Plan { start_at, steps }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }
}

mod millis_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::ser::SerializeMap;

    pub fn serialize<S: serde::Serializer>(
        value: &BTreeMap<String, Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(value.len()))?;
        for (name, at) in value {
            map.serialize_entry(name, &(at.as_millis() as u64))?;
        }
        map.end()
    }
}
