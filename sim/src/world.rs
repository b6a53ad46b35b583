//! The world a simulation runs: hosts, start order, faults and invariant settings, resolved
//! from a scenario file. Engines build their hosts from it; nothing here is engine-specific.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::node::{NodeSpec, Pipeline, Role};

use crate::faults::FaultSpec;
use crate::invariants::Verdict;

/// Shortest one-way delivery time of a simulated link.
pub const LINK_LATENCY_MIN: Duration = Duration::from_millis(1);
/// Longest one-way delivery time of a simulated link (before any latency fault); the
/// invariants' windows allow for it.
pub const LINK_LATENCY_MAX: Duration = Duration::from_millis(5);

/// The address of the host at `index` in file order, as every engine gives it: turmoil's
/// DNS hands out 192.168.0.1, .2, ... in the order hosts are made; the event and real
/// engines do the same.
pub fn host_address(index: usize) -> std::net::Ipv4Addr {
    const FIRST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 0, 1);
    std::net::Ipv4Addr::from(u32::from(FIRST).wrapping_add(index as u32))
}

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
    /// An outsider sending forged gossip.
    Attacker(crate::attacker::AttackerSpec),
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

    /// The role's name in scenario files and traces.
    pub fn role(&self) -> &'static str {
        match &self.kind {
            HostKind::Node(node) => node.role.tag(),
            HostKind::Client(_) => "client",
            HostKind::Attacker(_) => "attacker",
        }
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
    /// The invariants to check.
    pub invariants: InvariantSettings,
    /// The outcome the scenario expects under the balancer's current pipeline.
    pub expect: Expectation,
    /// Outcomes the scenario expects under one pipeline only (`[expect.lab]`,
    /// `[expect.fixed]`); a pipeline without one expects [`World::expect_default`].
    pub expect_by_pipeline: BTreeMap<Pipeline, Expectation>,
    /// The outcome expected under a pipeline without its own.
    pub expect_default: Expectation,
    /// The engine that runs it unless told otherwise.
    pub engine: crate::engines::EngineKind,
    /// `[swarm]`: each seed draws more faults from these ranges.
    pub swarm: Option<crate::swarm::Swarm>,
    /// Which gossip view entries the trace records (`[trace]`; default: all).
    pub trace_scope: crate::trace::ViewScope,
}

/// Which invariants a world checks, with their bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantSettings {
    /// `converge`: its bound in rounds.
    pub converge_rounds: Option<u32>,
    /// `detect`: its bound in rounds.
    pub detect_rounds: Option<u32>,
    /// `available`.
    pub available: bool,
    /// `views`.
    pub views: bool,
    /// `incarnation`.
    pub incarnation: bool,
    /// `no-self-death`.
    pub no_self_death: bool,
    /// `no-false-failure`.
    pub no_false_failure: bool,
    /// `outsiders-refused`.
    pub outsiders_refused: bool,
    /// `left`.
    pub left: bool,
    /// `restart-spacing`, `one-instance`, `quiet-shutdown`, `finish-once`.
    pub supervision: SupervisionChecks,
    /// `rendered-view`.
    pub rendered_view: bool,
    /// `valid-config`.
    pub valid_config: bool,
    /// `one-balancer`.
    pub one_balancer: bool,
}

/// The supervisor's invariants a world checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupervisionChecks {
    /// `restart-spacing`.
    pub restart_spacing: bool,
    /// `one-instance`.
    pub one_instance: bool,
    /// `quiet-shutdown`.
    pub quiet_shutdown: bool,
    /// `finish-once`.
    pub finish_once: bool,
}

impl InvariantSettings {
    /// Every invariant, with the given round bounds.
    pub fn all(rounds: u32) -> Self {
        InvariantSettings {
            converge_rounds: Some(rounds),
            detect_rounds: Some(rounds),
            available: true,
            views: true,
            incarnation: true,
            no_self_death: true,
            no_false_failure: true,
            outsiders_refused: true,
            left: true,
            supervision: SupervisionChecks {
                restart_spacing: true,
                one_instance: true,
                quiet_shutdown: true,
                finish_once: true,
            },
            rendered_view: true,
            valid_config: true,
            one_balancer: true,
        }
    }

    /// Whether the invariant called `name` is checked.
    pub fn enables(&self, name: &str) -> bool {
        match name {
            "converge" => self.converge_rounds.is_some(),
            "detect" => self.detect_rounds.is_some(),
            "available" => self.available,
            "views" => self.views,
            "incarnation" => self.incarnation,
            "no-self-death" => self.no_self_death,
            "no-false-failure" => self.no_false_failure,
            "outsiders-refused" => self.outsiders_refused,
            "left" => self.left,
            "restart-spacing" => self.supervision.restart_spacing,
            "one-instance" => self.supervision.one_instance,
            "quiet-shutdown" => self.supervision.quiet_shutdown,
            "finish-once" => self.supervision.finish_once,
            "rendered-view" => self.rendered_view,
            "valid-config" => self.valid_config,
            "one-balancer" => self.one_balancer,
            _ => false,
        }
    }
}

/// The outcome a scenario expects: exactly these invariants violated, and for those pinned
/// to hosts, exactly on those hosts. Anything else (an extra invariant, an extra host, an
/// UNCHECKED invariant) is not as expected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// Invariants expected to be violated.
    pub violated: BTreeSet<String>,
    /// For some of them, the exact hosts their violations are about.
    pub hosts: BTreeMap<String, BTreeSet<String>>,
    /// An invariant that checked nothing is no mismatch (`allow_unchecked`; on by default
    /// with a `[swarm]`, where a seed may draw no fault an invariant needs: `explore` then
    /// counts the seeds that checked each one, and fails one no seed checked).
    pub allow_unchecked: bool,
    /// Violations expected on some seeds only (`seeds = [...]` in a pin).
    pub seeded: Vec<SeededViolation>,
}

/// A known weakness that shows on some seeds' draws only: on those seeds, `invariant` is
/// violated on exactly `hosts`; on every other seed it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededViolation {
    /// The invariant.
    pub invariant: String,
    /// The exact hosts its violations are about.
    pub hosts: BTreeSet<String>,
    /// The seeds that show it.
    pub seeds: BTreeSet<u64>,
}

impl Expectation {
    /// The outcome expected of one seed: the pins for that seed added, no seeded pin left.
    pub fn for_seed(&self, seed: u64) -> Expectation {
        let mut expect = Expectation { seeded: Vec::new(), ..self.clone() };
        for pin in self.seeded.iter().filter(|pin| pin.seeds.contains(&seed)) {
            expect.violated.insert(pin.invariant.clone());
            expect.hosts.insert(pin.invariant.clone(), pin.hosts.clone());
        }
        expect
    }

    /// Why `verdicts` are not the expected outcome (empty: they are).
    pub fn mismatches(&self, verdicts: &[Verdict]) -> Vec<String> {
        let mut wrong = Vec::new();
        for verdict in verdicts {
            let expected = self.violated.contains(&verdict.name);
            if verdict.is_unchecked() && !self.allow_unchecked {
                wrong.push(format!("{} checked nothing (UNCHECKED is never as expected)", verdict.name));
            } else if verdict.is_contradicted() && !expected {
                wrong.push(format!("{} violated on {:?}, not expected", verdict.name, verdict.hosts));
            } else if !verdict.is_contradicted() && expected {
                wrong.push(format!("{} expected to be violated, but holds", verdict.name));
            } else if let Some(hosts) = self.hosts.get(&verdict.name).filter(|_| verdict.is_contradicted()) {
                if *hosts != verdict.hosts {
                    wrong.push(format!(
                        "{} violated on {:?}, expected exactly {hosts:?}",
                        verdict.name, verdict.hosts
                    ));
                }
            }
        }
        for name in &self.violated {
            if !verdicts.iter().any(|v| &v.name == name) {
                wrong.push(format!("{name} expected to be violated, but not checked"));
            }
        }
        wrong
    }
}

impl World {
    /// The world one seed runs: the swarm's draw for `seed` appended to the scenario's own
    /// faults, and no swarm left. Everything downstream (plan, engines, bounds) reads this.
    pub fn for_seed(&self, seed: u64) -> World {
        let mut world = self.clone();
        if let Some(swarm) = world.swarm.take() {
            world.faults.extend(swarm.draw(self, seed));
        }
        world
    }

    /// The balancer's pipeline (`[node] pipeline`).
    pub fn pipeline(&self) -> Pipeline {
        self.hosts
            .iter()
            .find_map(|h| match &h.kind {
                HostKind::Node(node) => match &node.role {
                    Role::Balancer { pipeline, .. } => Some(*pipeline),
                    Role::Backend => None,
                },
                HostKind::Client(_) | HostKind::Attacker(_) => None,
            })
            .unwrap_or_default()
    }

    /// Runs the balancer under `pipeline`, expecting what the scenario expects of it.
    pub fn set_pipeline(&mut self, pipeline: Pipeline) {
        for host in &mut self.hosts {
            if let HostKind::Node(node) = &mut host.kind {
                if let Role::Balancer { pipeline: current, .. } = &mut node.role {
                    *current = pipeline;
                }
            }
        }
        self.expect = self.expect_by_pipeline.get(&pipeline).unwrap_or(&self.expect_default).clone();
    }

    /// The balancer host's name.
    pub fn balancer(&self) -> &str {
        &self.hosts.iter().find(|h| h.is_balancer()).expect("a world has one balancer").name
    }

    /// Names of the hosts running a webapp.
    pub fn webapps(&self) -> Vec<String> {
        self.hosts.iter().filter(|h| h.is_webapp()).map(|h| h.name.clone()).collect()
    }
}
