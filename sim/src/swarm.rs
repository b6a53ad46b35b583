//! Swarm sampling: a scenario's `[swarm]` gives ranges, and each seed draws its own fault
//! plan from them. As in swarm testing (Groce et al., and TigerBeetle's VOPR), a seed first
//! turns each fault kind on or off, then draws how many faults, which, how strong and when;
//! so a thousand seeds cover runs with only crashes, only partitions, and every mix between,
//! instead of one fixed mix diluted by everything else.
//!
//! Every fault starts and ends inside the chaos phase; the rest of the run is the heal
//! phase, in which the liveness invariants (converge, detect, views, rendered-view) must
//! catch up within their bounds. The drawn faults are ordinary [`FaultSpec`]s, appended to
//! the scenario's own: the trace's plan record lists them, and `shrink` writes them out as
//! `[[fault]]` tables.

use std::time::Duration;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::faults::{FaultKind, FaultSpec};
use crate::world::{HostKind, World};
use rollcall::host::{mix, stable_hash};

/// Most faults one seed may draw (a flapping partition counts once).
pub const SWARM_FAULTS_MAX: u32 = 32;
/// Times are drawn in steps of this, so a shrunk scenario reads `at_s = 12.3`.
const TIME_STEP_MS: u64 = 100;
/// A flapping partition is cut for half of each period and whole for the other half.
const FLAP_PERIOD_MS: (u64, u64) = (1_000, 6_000);
/// Most cuts of one flapping partition.
const FLAPS_MAX: u64 = 8;
/// Loss rates are drawn in hundredths.
const RATE_STEPS: f64 = 100.0;
/// Each kind is on in a seed with this probability (swarm testing's coin).
const KIND_ON: f64 = 0.5;
/// A loss or latency fault hits every host with this probability, else one.
const EVERY_HOST: f64 = 0.5;
/// A power loss silences the host first; it dies this long after at most.
const POWER_LOSS_DEATH_MS_MAX: u64 = 2_000;

/// The fault kinds a swarm draws from (scenario names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwarmKind {
    /// A set of hosts against the rest, both ways.
    Partition,
    /// One host's packets to another are lost; the other way works.
    PartitionOneway,
    /// A set against the rest, cut and healed again several times.
    PartitionFlap,
    /// Gossip datagram loss, on every host or one.
    Loss,
    /// Extra gossip latency, on every host or one.
    Latency,
    /// A host dies and reboots with its disk.
    HostCrash,
    /// A host goes silent (peers see a hang, not a close), dies, and reboots with its disk.
    PowerLoss,
    /// One service is killed; its supervisor restarts it.
    ServiceCrash,
    /// One service stops answering for a while (SIGSTOP), keeping its sockets.
    Stall,
    /// A gossip agent leaves gracefully and rejoins later.
    Leave,
}

impl SwarmKind {
    /// Every kind, in scenario order.
    pub const ALL: [SwarmKind; 10] = [
        SwarmKind::Partition,
        SwarmKind::PartitionOneway,
        SwarmKind::PartitionFlap,
        SwarmKind::Loss,
        SwarmKind::Latency,
        SwarmKind::HostCrash,
        SwarmKind::PowerLoss,
        SwarmKind::ServiceCrash,
        SwarmKind::Stall,
        SwarmKind::Leave,
    ];

    /// Whether the kind cuts links (it needs two hosts).
    pub fn cuts_links(self) -> bool {
        matches!(
            self,
            SwarmKind::Partition
                | SwarmKind::PartitionOneway
                | SwarmKind::PartitionFlap
                | SwarmKind::PowerLoss
        )
    }

    /// The scenario name.
    pub fn name(self) -> &'static str {
        match self {
            SwarmKind::Partition => "partition",
            SwarmKind::PartitionOneway => "partition-oneway",
            SwarmKind::PartitionFlap => "partition-flap",
            SwarmKind::Loss => "loss",
            SwarmKind::Latency => "latency",
            SwarmKind::HostCrash => "host-crash",
            SwarmKind::PowerLoss => "power-loss",
            SwarmKind::ServiceCrash => "service-crash",
            SwarmKind::Stall => "stall",
            SwarmKind::Leave => "leave",
        }
    }
}

/// A resolved `[swarm]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Swarm {
    /// The kinds a seed may turn on.
    pub kinds: Vec<SwarmKind>,
    /// How many faults a seed draws, inclusive.
    pub faults: (u32, u32),
    /// The chaos phase: every drawn fault starts and ends within it.
    pub chaos: (Duration, Duration),
    /// How long a fault with a window lasts, inclusive.
    pub lasting: (Duration, Duration),
    /// Loss rate, inclusive.
    pub loss: (f64, f64),
    /// Extra gossip latency, inclusive.
    pub latency: (Duration, Duration),
    /// The nodes that crash, stall, leave or get cut off (default every node).
    pub targets: Vec<String>,
}

impl Swarm {
    /// The faults `seed` draws in `world`, in time order.
    pub fn draw(&self, world: &World, seed: u64) -> Vec<FaultSpec> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, stable_hash(b"swarm")));
        let mut on: Vec<SwarmKind> =
            self.kinds.iter().copied().filter(|_| rng.random_bool(KIND_ON)).collect();
        if on.is_empty() {
            on.extend(self.kinds.choose(&mut rng));
        }
        let count = rng.random_range(self.faults.0..=self.faults.1);
        let mut drawn = Vec::new();
        let mut draw = Draw { swarm: self, world, rng: &mut rng };
        for _ in 0..count {
            let Some(kind) = on.choose(draw.rng).copied() else { break };
            drawn.extend(draw.fault(kind));
        }
        drawn.sort_by_key(|fault| fault.at);
        drawn
    }
}

/// One seed's drawing.
struct Draw<'a> {
    swarm: &'a Swarm,
    world: &'a World,
    rng: &'a mut ChaCha8Rng,
}

impl Draw<'_> {
    fn fault(&mut self, kind: SwarmKind) -> Vec<FaultSpec> {
        let windowed =
            |(at, lasting): (Duration, Duration), kind| FaultSpec { at, lasting: Some(lasting), kind };
        match kind {
            SwarmKind::Partition => {
                let (a, b) = self.groups();
                vec![windowed(self.window(), FaultKind::Partition { a, b, oneway: false })]
            }
            SwarmKind::PartitionOneway => {
                let all = self.all_hosts();
                let mut pair: Vec<&String> = all.choose_multiple(self.rng, 2).collect();
                pair.shuffle(self.rng);
                let (a, b) = (vec![pair[0].clone()], vec![pair[1].clone()]);
                vec![windowed(self.window(), FaultKind::Partition { a, b, oneway: true })]
            }
            SwarmKind::PartitionFlap => self.flapping(),
            SwarmKind::Loss => {
                let (low, high) = self.swarm.loss;
                let rate = self.rng.random_range(low..=high);
                let rate = ((rate * RATE_STEPS).round() / RATE_STEPS).clamp(low, high);
                vec![windowed(self.window(), FaultKind::Loss { hosts: self.every_or_one(), rate })]
            }
            SwarmKind::Latency => {
                let (low, high) = self.swarm.latency;
                let extra = Duration::from_millis(
                    self.rng.random_range(low.as_millis() as u64..=high.as_millis() as u64),
                );
                vec![windowed(self.window(), FaultKind::Latency { hosts: self.every_or_one(), extra })]
            }
            SwarmKind::HostCrash => {
                let host = self.target();
                vec![windowed(self.window(), FaultKind::HostCrash { host, mid_render: false })]
            }
            SwarmKind::PowerLoss => self.power_loss(),
            SwarmKind::ServiceCrash => {
                let (host, service) = self.service();
                vec![FaultSpec {
                    at: self.instant(),
                    lasting: None,
                    kind: FaultKind::ServiceCrash { host, service },
                }]
            }
            SwarmKind::Stall => {
                let (host, service) = self.service();
                vec![windowed(self.window(), FaultKind::Stall { host, service })]
            }
            SwarmKind::Leave => vec![windowed(self.window(), FaultKind::Leave { host: self.target() })],
        }
    }

    /// Several short cuts of one set against the rest.
    fn flapping(&mut self) -> Vec<FaultSpec> {
        let (a, b) = self.groups();
        let (at, lasting) = self.window();
        let period = steps(self.rng.random_range(FLAP_PERIOD_MS.0..=FLAP_PERIOD_MS.1));
        // Each cut stays inside the window, so the flap ends inside the chaos phase.
        let cut = (period / 2).max(Duration::from_millis(TIME_STEP_MS)).min(lasting);
        let flaps = (lasting.as_millis() as u64 / (period.as_millis() as u64).max(1)).clamp(1, FLAPS_MAX);
        (0..flaps as u32)
            .map(|i| FaultSpec {
                at: at + period * i,
                lasting: Some(cut),
                kind: FaultKind::Partition { a: a.clone(), b: b.clone(), oneway: false },
            })
            .collect()
    }

    /// The host is cut off from everyone, dies a moment later, and comes back (links and
    /// power) at the end of the window.
    fn power_loss(&mut self) -> Vec<FaultSpec> {
        let host = self.target();
        let (at, lasting) = self.window();
        let most = POWER_LOSS_DEATH_MS_MAX.min(lasting.as_millis() as u64 / 2);
        let death = steps(self.rng.random_range(0..=most));
        let rest = self.all_hosts().into_iter().filter(|h| *h != host).collect();
        vec![
            FaultSpec {
                at,
                lasting: Some(lasting),
                kind: FaultKind::Partition { a: vec![host.clone()], b: rest, oneway: false },
            },
            FaultSpec {
                at: at + death,
                lasting: Some(lasting - death),
                kind: FaultKind::HostCrash { host, mid_render: false },
            },
        ]
    }

    /// A start and a length inside the chaos phase.
    fn window(&mut self) -> (Duration, Duration) {
        let (from, to) = self.swarm.chaos;
        let span = to.saturating_sub(from);
        let longest = self.swarm.lasting.1.min(span).max(self.swarm.lasting.0);
        let lasting = steps(self.rng.random_range(ms(self.swarm.lasting.0)..=ms(longest)))
            .max(Duration::from_millis(TIME_STEP_MS));
        let latest = to.saturating_sub(lasting).max(from);
        // The start rounds up into the phase, the end down: the window stays inside it.
        let at = steps_up(self.rng.random_range(ms(from)..=ms(latest)));
        (at, lasting.min(to.saturating_sub(at)).max(Duration::from_millis(TIME_STEP_MS)))
    }

    fn instant(&mut self) -> Duration {
        let (from, to) = self.swarm.chaos;
        steps_up(self.rng.random_range(ms(from)..=ms(to))).min(to)
    }

    fn all_hosts(&self) -> Vec<String> {
        self.world.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// A non-empty set of at most half the hosts, and the rest.
    fn groups(&mut self) -> (Vec<String>, Vec<String>) {
        let mut all = self.all_hosts();
        all.shuffle(self.rng);
        let size = self.rng.random_range(1..=(all.len() / 2).max(1));
        let b = all.split_off(size);
        let order = |mut names: Vec<String>| {
            names.sort_by_key(|n| self.world.hosts.iter().position(|h| h.name == *n));
            names
        };
        (order(all), order(b))
    }

    fn every_or_one(&mut self) -> Vec<String> {
        if self.rng.random_bool(EVERY_HOST) { self.all_hosts() } else { vec![self.target()] }
    }

    fn target(&mut self) -> String {
        self.swarm.targets.choose(self.rng).cloned().unwrap_or_default()
    }

    fn service(&mut self) -> (String, String) {
        let host = self.target();
        let services = match self.world.hosts.iter().find(|h| h.name == host).map(|h| &h.kind) {
            Some(HostKind::Node(node)) => node.role.services(),
            _ => &[],
        };
        let service = services.choose(self.rng).map(|s| s.to_string()).unwrap_or_default();
        (host, service)
    }
}

fn ms(at: Duration) -> u64 {
    at.as_millis() as u64
}

/// Rounds down to [`TIME_STEP_MS`].
fn steps(ms: u64) -> Duration {
    Duration::from_millis(ms / TIME_STEP_MS * TIME_STEP_MS)
}

/// Rounds up to [`TIME_STEP_MS`].
fn steps_up(ms: u64) -> Duration {
    Duration::from_millis(ms.div_ceil(TIME_STEP_MS) * TIME_STEP_MS)
}
