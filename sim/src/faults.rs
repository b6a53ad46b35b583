//! Fault plans: what the world does to the hosts, and when.
//!
//! A plan is data, built up front from the scenario and the seed (so a property test can
//! shrink it), and applied by an engine between simulation steps at exact simulated times.
//! The engine records the plan, and every fault's start and end, as typed trace records.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::world::World;
use rollcall::gossip::keyring::KeyOp;
use rollcall::host::{mix, stable_hash};

/// Characters of a key a fault's description shows.
const KEY_SHOWN_CHARS: usize = 6;

/// A fault as the scenario states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// When it starts.
    #[serde(rename = "at_ms", with = "millis")]
    pub at: Duration,
    /// How long it lasts (`None`: until the end, or instantaneous).
    #[serde(rename = "for_ms", with = "millis_option")]
    pub lasting: Option<Duration>,
    /// What it is.
    pub kind: FaultKind,
}

/// Kinds of fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FaultKind {
    /// Traffic between the groups is lost (only from `a` to `b` when `oneway`).
    Partition { a: Vec<String>, b: Vec<String>, oneway: bool },
    /// The hosts' gossip datagrams are dropped with this probability. Overlapping loss
    /// windows on one host compose as independent drops: 1 - (1 - p1)(1 - p2).
    Loss { hosts: Vec<String>, rate: f64 },
    /// The hosts' gossip datagrams are delayed. Overlapping latency windows add up.
    Latency {
        hosts: Vec<String>,
        #[serde(rename = "extra_ms", with = "millis")]
        extra: Duration,
    },
    /// The host dies (every process at once), and boots again when the fault ends; its disk
    /// survives. `mid_render`: not at the fault's start but at the first moment from then
    /// on that the host is writing a rendering (and the restart comes as long after that).
    HostCrash {
        host: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mid_render: bool,
    },
    /// One service is killed; the supervisor decides what happens next.
    ServiceCrash { host: String, service: String },
    /// One service is stopped (SIGSTOP) for the fault's window, then continued (unless
    /// another stall of it still holds it, or a crash of the host ended the window first):
    /// it stops answering, as a process in a long pause does.
    Stall { host: String, service: String },
    /// The host's gossip agent leaves the cluster gracefully (`s6-svc -d serf`, whose down
    /// signal is SIGINT) and stays down; it is started again when the fault ends, unless
    /// another leave of the node still holds it or a crash of the host ended this one first.
    Leave { host: String },
    /// The node is stopped as `docker stop` stops a container: s6-overlay's shutdown (TERM
    /// in reverse start order, KILL after the grace time), then the host halts for good.
    Stop { host: String },
    /// `serf force-leave [-prune] TARGET` run on `host`.
    ForceLeave { host: String, target: String, prune: bool },
    /// `serf tags -set K=V... -delete K...` run on `host`: its agent's tags change (until
    /// the agent restarts, which starts from the configured tags again).
    Tags { host: String, set: BTreeMap<String, String>, delete: Vec<String> },
    /// `serf keys -install|-use|-remove KEY` reaching every listed host's agent at once.
    Keys { hosts: Vec<String>, op: KeyOp, key: String },
    /// The balancer service gets SIGHUP (a reload of its file) at the start and every
    /// `every` until the end.
    Reload {
        host: String,
        #[serde(rename = "every_ms", with = "millis")]
        every: Duration,
    },
}

impl FaultKind {
    /// Whether the fault is one instant (it has no end).
    pub fn is_instant(&self) -> bool {
        matches!(
            self,
            FaultKind::ServiceCrash { .. }
                | FaultKind::ForceLeave { .. }
                | FaultKind::Tags { .. }
                | FaultKind::Keys { .. }
                | FaultKind::Stop { .. }
        )
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultKind::Partition { a, b, oneway } => {
                write!(f, "partition {} {} {}", a.join(","), if *oneway { "->" } else { "<->" }, b.join(","))
            }
            FaultKind::Loss { hosts, rate } => write!(f, "gossip loss {rate} on {}", hosts.join(",")),
            FaultKind::Latency { hosts, extra } => {
                write!(f, "gossip latency +{}ms on {}", extra.as_millis(), hosts.join(","))
            }
            FaultKind::HostCrash { host, mid_render: false } => write!(f, "host crash {host}"),
            FaultKind::HostCrash { host, mid_render: true } => {
                write!(f, "host crash {host} in the middle of a render")
            }
            FaultKind::ServiceCrash { host, service } => write!(f, "service crash {service} on {host}"),
            FaultKind::Stall { host, service } => write!(f, "stall of {service} on {host}"),
            FaultKind::Leave { host } => write!(f, "graceful leave of {host}"),
            FaultKind::Stop { host } => write!(f, "stop of {host} (docker stop)"),
            FaultKind::Tags { host, set, delete } => {
                let set: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "tags on {host}: set [{}] delete [{}]", set.join(","), delete.join(","))
            }
            FaultKind::ForceLeave { host, target, prune } => {
                write!(f, "force-leave{} {target} from {host}", if *prune { " -prune" } else { "" })
            }
            FaultKind::Reload { host, every } => write!(f, "reload on {host} every {}ms", every.as_millis()),
            FaultKind::Keys { hosts, op, key } => {
                // A key's first characters tell keys apart without printing the secret.
                let shown: String = key.chars().take(KEY_SHOWN_CHARS).collect();
                write!(f, "keys -{} {shown}... on {}", op.name(), hosts.join(","))
            }
        }
    }
}

/// Whether a step starts or ends its fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The fault begins.
    Start,
    /// The fault is undone.
    End,
    /// A periodic fault acts again (a `reload` fault's later reloads).
    Repeat,
}

/// A step at a time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    /// When the engine applies it.
    #[serde(rename = "at_ms", with = "millis")]
    pub at: Duration,
    /// Index of the fault in [`Plan::faults`].
    pub fault: usize,
    /// Start or end.
    pub phase: Phase,
}

/// Everything the world will do during one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// When each host first boots.
    #[serde(rename = "start_at_ms", with = "millis_map")]
    pub start_at: BTreeMap<String, Duration>,
    /// The faults, in scenario order; a fault's id is its index.
    pub faults: Vec<FaultSpec>,
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
        for (index, fault) in world.faults.iter().enumerate() {
            steps.push(Planned { at: fault.at, fault: index, phase: Phase::Start });
            let end = fault.lasting.map(|lasting| fault.at + lasting).filter(|end| *end < world.duration);
            if let FaultKind::Reload { every, .. } = &fault.kind {
                let until = end.unwrap_or(world.duration);
                let repeats = std::iter::successors(Some(fault.at + *every), |at| Some(*at + *every));
                for at in repeats.take_while(|at| *at < until) {
                    steps.push(Planned { at, fault: index, phase: Phase::Repeat });
                }
            }
            if let Some(end) = end.filter(|_| !fault.kind.is_instant()) {
                steps.push(Planned { at: end, fault: index, phase: Phase::End });
            }
        }
        steps.sort_by_key(|step| step.at);
        Plan { start_at, faults: world.faults.clone(), steps }
    }
}

pub(crate) mod millis {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

mod millis_option {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&(value.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|ms| ms.map(Duration::from_millis))
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
