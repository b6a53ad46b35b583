//! Gossip agent settings, with memberlist's LAN defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How the agent joins the cluster at start.
#[derive(Clone, Debug, PartialEq)]
pub enum JoinMode {
    /// Serf's `-join`: one attempt; if no seed answers within the timeout the agent gives up.
    Once { timeout: Duration },
    /// Serf's `-retry-join`: an attempt every `interval`, at most `max` attempts (0 = forever).
    Retry { interval: Duration, max: u32 },
}

/// Settings of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// This node's unique name.
    pub name: String,
    /// The address peers reach this node at.
    pub addr: SocketAddr,
    /// Serf tags.
    pub tags: BTreeMap<String, String>,
    /// Addresses to join through; empty means start a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// Join behaviour.
    pub join: JoinMode,
    /// One failure-detector probe per interval (a "round").
    pub probe_interval: Duration,
    /// Wait for a direct ack before asking helpers to ping the target.
    pub probe_timeout: Duration,
    /// Helpers asked to ping a target that missed a direct ping (memberlist's `IndirectChecks`).
    pub indirect_checks: usize,
    /// Shortest suspicion timeout = mult x max(1, log10(n)) x probe interval.
    pub suspicion_mult: u32,
    /// A suspicion nobody confirms lasts this many times the shortest (Lifeguard).
    pub suspicion_max_timeout_mult: u32,
    /// Local health stretches the probe interval and timeout up to this many times (Lifeguard).
    pub awareness_max_multiplier: u32,
    /// Dedicated gossip tick.
    pub gossip_interval: Duration,
    /// Fan-out per gossip tick.
    pub gossip_nodes: usize,
    /// Each broadcast is sent mult x ceil(log10(n + 1)) times.
    pub retransmit_mult: u32,
    /// Dead members still receive gossip this long, so they can refute.
    pub gossip_to_the_dead: Duration,
    /// Full state exchange with one random member.
    pub push_pull_interval: Duration,
    /// Serf's reconnect loop: a push-pull with one random failed member.
    pub reconnect_interval: Duration,
    /// A bug planted for the simulator's mutation tests (`node::PlantedBugs`): the agent
    /// never refutes an accusation of itself.
    pub never_refutes: bool,
    /// A bug planted for the same tests: the agent records accusations of itself (suspect,
    /// dead) in its own entry instead of refuting them.
    pub believes_accusations: bool,
}

impl GossipConfig {
    /// memberlist `DefaultLANConfig` values; reconnect is faster than Serf's 30 s so small
    /// simulated runs heal within a minute.
    pub fn lan(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            tags: BTreeMap::new(),
            seeds: Vec::new(),
            join: JoinMode::Once { timeout: Duration::from_secs(1) },
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            retransmit_mult: 4,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(5),
            never_refutes: false,
            believes_accusations: false,
        }
    }
}
