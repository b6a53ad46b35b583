//! The world a simulation runs: hosts, start order, faults and invariant settings, resolved
//! from a scenario file. Engines build their hosts from it; nothing here is engine-specific.

use std::time::Duration;

use rollcall::node::{NodeSpec, Role};

use crate::faults::FaultSpec;

/// A host that sends requests through the balancer (the lab's browser).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSpec {
    /// Host to send requests to, on port 80.
    pub target: String,
    /// Time between requests.
    pub interval: Duration,
    /// Time after which a request counts as failed.
    pub timeout: Duration,
}

/// What runs on a host.
#[derive(Clone, Debug, PartialEq)]
pub enum HostKind {
    /// A node of the stack (balancer or backend).
    Node(Box<NodeSpec>),
    /// A request workload.
    Client(ClientSpec),
}

/// One simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    /// Host name (also its DNS name and gossip node name).
    pub name: String,
    /// What runs on it.
    pub kind: HostKind,
}

impl HostSpec {
    /// Whether this host runs the lab's webapp.
    pub fn is_webapp(&self) -> bool {
        matches!(&self.kind, HostKind::Node(node) if node.role == Role::Backend)
    }

    /// Whether this host is the balancer.
    pub fn is_balancer(&self) -> bool {
        matches!(&self.kind, HostKind::Node(node) if matches!(node.role, Role::Balancer { .. }))
    }
}

/// A resolved scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    /// Scenario name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Simulated run length.
    pub duration: Duration,
    /// Simulation step.
    pub tick: Duration,
    /// One gossip probe interval: the unit of the invariants' bounds.
    pub round: Duration,
    /// Hosts in file order (which fixes their addresses).
    pub hosts: Vec<HostSpec>,
    /// Start order before any permutation.
    pub start_order: Vec<String>,
    /// Whether the seed permutes the start order.
    pub start_permuted: bool,
    /// Time between two host starts.
    pub start_gap: Duration,
    /// Upper bound of the seeded delay added to each start.
    pub start_jitter: Duration,
    /// Faults in file order.
    pub faults: Vec<FaultSpec>,
    /// Bound of invariant (a), in rounds.
    pub converge_rounds: Option<u32>,
    /// Whether invariant (b) is checked.
    pub serve: bool,
    /// Bound of the failure-detection invariant, in rounds.
    pub detect_rounds: Option<u32>,
    /// Invariants the scenario expects to be violated.
    pub expected_violations: Vec<String>,
}

impl World {
    /// The balancer host's name.
    pub fn balancer(&self) -> &str {
        &self.hosts.iter().find(|h| h.is_balancer()).expect("a world has one balancer").name
    }

    /// Names of the hosts running a webapp.
    pub fn webapps(&self) -> Vec<String> {
        self.hosts.iter().filter(|h| h.is_webapp()).map(|h| h.name.clone()).collect()
    }
}
