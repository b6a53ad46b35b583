//! The event engine: the sans-io gossip, supervisor and render cores driven directly, without
//! tokio or turmoil.
//!
//! One queue of `(time, sequence)` events (host boots, supervisor and agent timers, datagram
//! and push-pull deliveries, fault steps) and one seeded RNG. Time jumps from one event to the
//! next, so a run costs what its messages cost, not hosts x steps as under turmoil, which
//! polls every host at every tick.
//!
//! What it models: hosts (boot, crash, restart with the disk kept, halt), each node's s6
//! ([`supervision`]: the supervisor core's restarts, finish scripts, s6-svc commands,
//! SIGSTOP and SIGCONT, s6-overlay's shutdown), the gossip agent with its snapshot, and the
//! network: latency drawn as turmoil draws it (the minimum plus an Exp(5) share of the range,
//! in whole milliseconds), each host's loss and extra latency on its gossip datagrams, one-way
//! and two-way cuts for datagrams and push-pull streams alike. A push-pull is one frame each
//! way. A push-pull that meets a cut either way (its SYN or the SYN's answer lost), or a host
//! that is down, is sent again on Linux's SYN schedule while the initiator's run lasts and
//! its TCP timeout allows, so that one started shortly before a heal completes after it (as
//! on turmoil and a real network); an agent that is not running on a host that is up loses
//! it (a refusal), and so does a cut its answer meets (TCP would send that again too; not
//! modelled), and the initiator's own timers deal with it; a stopped (SIGSTOP) agent holds it ([`supervision`]).
//!
//! The balancer node's renderer runs too ([`super::rendering`]: quiescence, the render core,
//! validation, an atomic write), so `converge`, `detect` and `rendered-view` are checked, and
//! its balancer loads what the renderer writes (`valid-config`); backends' webapps are
//! supervised runs, and the balancer serves nothing.
//!
//! Not modelled: the balancer's serving, HTTP, the lab pipeline's in-place writes and legacy
//! reloads, client hosts beyond their boot. The faults that act on them and the bugs planted
//! in the balancer are refused before the run, and the invariants that read them before the
//! check ([`unsupported`]), never passed silently. Datagrams and timers are not recorded (at
//! thousands of nodes they would dwarf the rest); every record the invariants read is.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{EngineError, Order};
use crate::faults::{FaultKind, Phase, Plan};
use crate::trace::{Recorder, Trace, WORLD, WorldEvent};
use crate::world::{HostKind, InvariantSettings, LINK_LATENCY_MAX, LINK_LATENCY_MIN, World};
use rollcall::gossip::codec::{CodecError, NodeState, Status};
use rollcall::gossip::core::{Action, Agent, Footprint, Timer};
use rollcall::gossip::driver::{
    Command, GossipError, View, change_tags, forget_if_erased, keyring_change, state_changes,
};
use rollcall::gossip::intern::{InternedCounts, Interner};
use rollcall::gossip::keyring::{KeyOp, Keyring};
use rollcall::gossip::limits::LimitCounts;
use rollcall::gossip::snapshot;
use rollcall::host::{Event, Observer, host_seed, mix, stable_hash};
use rollcall::net::lossy::LinkFaults;
use rollcall::net::resolve_endpoint_with;
use rollcall::node::{GOSSIP_PORT, NodeSpec, Pipeline, Role, agent_config, render_settings};
use rollcall::supervisor::core::Exit;
use rollcall::supervisor::driver::{Control, settle_early_orders};

use super::rendering::Rendering;
use supervision::Supervision;

mod supervision;

/// Turmoil's latency distribution: Exp(5) of the range between the link latency bounds.
const LATENCY_RATE: f64 = 5.0;

/// The invariants the engine cannot check: they read the balancer's serving (its listeners
/// and HTTP), which it does not model, or attackers' sockets.
pub fn unchecked_invariants(settings: &InvariantSettings) -> Vec<&'static str> {
    let checks = [
        ("available", settings.available),
        // Which balancer processes accept connections is not modelled, only its loads.
        ("one-balancer", settings.one_balancer),
        // Attackers need sockets: the engine refuses them, so nothing would be checked.
        ("outsiders-refused", settings.outsiders_refused),
    ];
    checks.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

/// `settings` without the invariants the engine cannot check (for figures, which read no
/// verdict): the complement of [`unchecked_invariants`].
pub fn checkable(settings: &InvariantSettings) -> InvariantSettings {
    InvariantSettings { available: false, one_balancer: false, outsiders_refused: false, ..settings.clone() }
}

/// Whether the engine can apply a fault of this kind: every kind acts on the network, a
/// whole host, the supervisor or the gossip agent, but a crash in the middle of a render,
/// which needs the renderer's writes to take time (they are atomic here).
pub fn applies(kind: &FaultKind) -> bool {
    !matches!(kind, FaultKind::HostCrash { mid_render: true, .. })
}

/// The faults of `world` the engine cannot apply, described for the user.
pub fn unsupported_faults(world: &World) -> Vec<String> {
    // Every kind a swarm draws applies: none is a crash in the middle of a render.
    let refused = world.faults.iter().filter(|fault| !applies(&fault.kind));
    refused.map(|fault| format!("fault `{}`", fault.kind)).collect()
}

/// Everything in `world` the engine refuses, described for the user; empty if it runs.
pub fn unsupported(world: &World) -> Vec<String> {
    let invariants =
        unchecked_invariants(&world.invariants).into_iter().map(|name| format!("invariant `{name}`"));
    let mut refused: Vec<String> = invariants.collect();
    refused.extend(unsupported_model(world));
    refused
}

/// What in `world` the engine cannot model, its invariants aside (figures read no verdict,
/// but a run of a world it does not model measures nothing true).
pub fn unsupported_model(world: &World) -> Vec<String> {
    let mut refused = Vec::new();
    let attackers = world.hosts.iter().filter(|h| matches!(h.kind, HostKind::Attacker(_)));
    refused
        .extend(attackers.map(|h| format!("attacker host {} (it needs sockets: run it on turmoil)", h.name)));
    if world.pipeline() == Pipeline::Lab {
        refused.push("the lab pipeline (in-place writes and legacy reloads)".into());
    }
    // The balancer's serving (its servers, health checks and listener) is not modelled, only
    // its loads: a bug planted there would show in few records or none, and a run would hold
    // where it should not.
    let balancer_bugs = world.hosts.iter().flat_map(|h| match &h.kind {
        HostKind::Node(node) => node.bugs.planted().into_iter().map(move |bug| (&h.name, bug)).collect(),
        _ => Vec::new(),
    });
    refused.extend(balancer_bugs.filter(|(_, bug)| bug.starts_with("balancer-")).map(|(host, bug)| {
        format!("planted bug `{bug}` on {host} (the balancer's serving is not modelled)")
    }));
    refused.extend(unsupported_faults(world));
    refused
}

/// Simulated time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs `world` under `plan`; `seed` drives every random choice.
pub fn run(world: &World, plan: &Plan, seed: u64) -> Result<Trace, EngineError> {
    let refused = unsupported_model(world);
    if !refused.is_empty() {
        return Err(EngineError::Unsupported { engine: "event", what: refused.join("; ") });
    }
    let mut engine = Engine::new(world, plan, seed);
    engine.recorder.world(Duration::ZERO, WORLD, super::plan_record(world, plan));
    let mut reported = Duration::ZERO;
    while let Some(Reverse(Queued { at, happening: event, .. })) = engine.queue.pop() {
        let at = Duration::from_nanos(at);
        // turmoil's last step runs at the tick before the end (a duration of whole ticks):
        // nothing happens at the end.
        if at >= world.duration {
            break;
        }
        // Runs of thousands of nodes take minutes: say how far they are (RUST_LOG=info).
        if at >= reported + PROGRESS_EVERY {
            reported = at;
            engine.delivered.log(at, world.duration, "event engine progress");
            engine.log_holdings();
        }
        engine.now = at;
        engine.handle(event);
        if engine.recorder.is_full() {
            return Err(EngineError::TraceFull { at_ms: at.as_millis() as u64 });
        }
    }
    engine.delivered.log(engine.now, world.duration, "event engine done");
    Ok(engine.recorder.finish())
}

/// One queued happening.
enum Happening {
    /// The host powers on.
    Boot { host: u32 },
    /// A timer of the supervisor of boot `boot` (boxed: rare, and the queue holds millions).
    Supervise { host: u32, boot: u32, timer: Box<rollcall::supervisor::core::Timer> },
    /// The finish script of service number `service` of boot `boot` exited.
    Finished { host: u32, boot: u32, service: u8, code: i32 },
    /// SIGINT reached serf while it was stopped: it leaves when it continues.
    Leave { host: u32, generation: u32 },
    /// The agent command of fault `fault` (tags, force-leave, keys) reached serf while it
    /// was stopped: it obeys when it continues.
    Command { host: u32, generation: u32, fault: u32 },
    /// An agent timer of one agent run.
    Timer { host: u32, generation: u32, timer: Timer },
    /// A datagram arrives at whatever agent runs on `to`.
    Datagram { from: u32, to: u32, bytes: Vec<u8> },
    /// A datagram the extra latency held back leaves, if the agent run `generation` of
    /// `from` that sent it still runs (its socket is gone with it; a stopped one still
    /// sends, as the driver's delayed sends are tasks of their own).
    Delayed { from: u32, generation: u32, to: u32, bytes: Vec<u8> },
    /// A push-pull arrives at `to`; its answer goes back to the initiator's run if `reply`
    /// (the initiator still waits for it).
    /// `syns` counts the SYNs sent before this one (a cut lost them).
    PushPull { from: u32, from_generation: u32, to: u32, bytes: Vec<u8>, reply: bool, syns: u8 },
    /// The answer to a push-pull of the run `generation` of `to`.
    Answer { from: u32, to: u32, generation: u32, bytes: Vec<u8> },
    /// Step `index` of the plan.
    Fault { index: usize },
    /// The renderer of boot `boot` checks whether a render is due.
    Render { host: u32, boot: u32 },
}

impl Happening {
    /// The hosts a delivery travels between, `(from, to)`.
    fn link(&self) -> Option<(u32, u32)> {
        match *self {
            Happening::Datagram { from, to, .. }
            | Happening::PushPull { from, to, .. }
            | Happening::Answer { from, to, .. } => Some((from, to)),
            _ => None,
        }
    }
}

/// A happening at its time, with its place among those at the same time.
struct Queued {
    /// Nanoseconds of simulated time (one word; a `Duration` takes two).
    at: u64,
    sequence: u64,
    happening: Happening,
}

impl Queued {
    fn key(&self) -> (u64, u64) {
        (self.at, self.sequence)
    }
}

/// Most bytes a queue entry takes: the queue holds one per pending timer and datagram (about
/// 100,000 in a 10,000-node join storm; tens of millions before suspicions kept their
/// deadlines in their agent).
const QUEUED_BYTES_MAX: usize = 56;
const _: () = assert!(std::mem::size_of::<Queued>() <= QUEUED_BYTES_MAX);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// One host of the world.
struct Host {
    name: String,
    /// `None` for a client host (not modelled beyond its boot).
    node: Option<NodeSpec>,
    addr: SocketAddr,
    boots: u32,
    up: bool,
    /// s6 while the host runs.
    supervision: Option<Supervision>,
    agent: Option<AgentRun>,
    /// Bumped when a run or a life ends: timers and answers for it are then stale.
    generation: u32,
    /// The snapshot file on the host's disk, which survives crashes.
    snapshot: Option<String>,
    /// The keyring file on the host's disk, once a `keys` fault changed it.
    keyring: Option<Keyring>,
    /// The balancer node's renderer while its host runs.
    rendering: Option<Rendering>,
    /// On the balancer node, the view the last agent run of this boot published, which a
    /// renderer started while no agent runs reads (the node's watch keeps it, as a boot
    /// long). Other nodes render nothing: a view per host would be nodes squared.
    ended_view: Option<View>,
    /// The rendered file on the host's disk, which survives crashes.
    rendered: Option<Vec<u8>>,
    faults: LinkFaults,
    /// Orders to its supervisor that came before the host booted (at most the plan's steps):
    /// its supervisor finds them when it starts, as the one turmoil runs finds them
    /// in its channel, made when the host is registered or restarted.
    held_controls: Vec<Control>,
}

/// One run of the gossip agent and what its driver has published.
struct AgentRun {
    agent: Agent,
    /// The seeds it joins through, as its driver records them.
    seeds: Vec<String>,
    published: BTreeMap<rollcall::gossip::codec::Name, (Status, u32)>,
    health: u32,
    version: Option<u64>,
    /// Whether its `gossip-synced` record was made.
    synced: bool,
    /// Push-pulls and answers refused while a stopped agent held as many as its driver's
    /// queue takes ([`rollcall::gossip::stream::PENDING_MAX`]).
    stream_limits: LimitCounts,
}

struct Engine<'a> {
    plan: &'a Plan,
    seed: u64,
    /// The world's tick: the soonest s6 restarts a service when told to restart it at once.
    tick: Duration,
    rng: ChaCha8Rng,
    /// Earliest first, then in the order scheduled (a heap: a tree would hold its entries at
    /// twice the memory).
    queue: BinaryHeap<Reverse<Queued>>,
    sequence: u64,
    now: Duration,
    hosts: Vec<Host>,
    by_ip: BTreeMap<IpAddr, usize>,
    by_name: BTreeMap<String, usize>,
    recorder: Recorder,
    /// Names and tags shared by every agent's member table.
    interner: Interner,
    active: super::ActiveFaults,
    /// The partitions in force, by host index: `(from, to)` masks; a link is cut if any
    /// partition covers it.
    cut_links: Vec<(Vec<bool>, Vec<bool>)>,
    /// What reached an agent, for the progress log: the work a run's size costs.
    delivered: Delivered,
    /// Runs spawned and not yet run ([`Engine::batch`]): (host, boot, service index).
    first_steps: std::collections::VecDeque<(usize, u32, usize)>,
    /// How deep supervisor batches nest now.
    batch_depth: u32,
    /// Bytes of the push-pulls waiting for a SYN retransmission ([`RETRANSMIT_BYTES_MAX`]).
    resending: usize,
}

/// The most push-pull bytes waiting for a SYN retransmission at once. A push-pull carries its
/// initiator's whole member table (about 60 KB at 1,000 nodes, 600 KB at 10,000), and while
/// half a cluster is cut off every agent's reconnects cross the cut: past this, a push-pull
/// that meets a cut is lost at once, as before SYNs were sent again. 1,000 nodes cut in
/// halves hold under a tenth of it.
const RETRANSMIT_BYTES_MAX: usize = 1 << 30;

/// Frames handed to agents (those they refuse included), counted for the progress log
/// (RUST_LOG=info): how the work grows with the cluster (a datagram filled to its 1,400 bytes
/// is gossip's ceiling). Streams are push-pull frames, requests and answers apart.
#[derive(Clone, Copy, Debug, Default)]
struct Delivered {
    datagrams: u64,
    datagram_bytes: u64,
    streams: u64,
    stream_bytes: u64,
}

impl Delivered {
    fn datagram(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.datagram_bytes += bytes as u64;
    }

    fn stream(&mut self, bytes: usize) {
        self.streams += 1;
        self.stream_bytes += bytes as u64;
    }

    /// The progress line: simulated time reached, and what was delivered to get there.
    fn log(&self, at: Duration, of: Duration, what: &str) {
        let Delivered { datagrams, datagram_bytes, streams, stream_bytes } = *self;
        let (sim_s, of_s) = (at.as_secs(), of.as_secs());
        tracing::info!(sim_s, of_s, datagrams, datagram_bytes, streams, stream_bytes, "{what}: delivered");
    }
}

impl<'a> Engine<'a> {
    /// What the run holds, for the progress log (RUST_LOG=debug): where a large run's memory
    /// goes (queued happenings, what the agents hold and buffer summed over all of them, and
    /// how many values the shared interner holds).
    fn log_holdings(&self) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let mut held = Footprint::default();
        for agent in self.hosts.iter().filter_map(|host| host.agent.as_ref()) {
            held += agent.agent.footprint();
        }
        let (queued, queue_capacity) = (self.queue.len(), self.queue.capacity());
        let Footprint { members, suspicions, broadcasts, recent_intents, changed } = held;
        tracing::debug!(queued, queue_capacity, members, suspicions, broadcasts, "event engine holds");
        tracing::debug!(recent_intents, changed, "event engine buffers");
        let InternedCounts { names, tags, states, news } = self.interner.counts();
        tracing::debug!(names, tags, states, news, "event engine shares");
    }

    fn new(world: &'a World, plan: &'a Plan, seed: u64) -> Self {
        let mut engine = Engine {
            plan,
            seed,
            tick: world.tick,
            rng: ChaCha8Rng::seed_from_u64(mix(seed, stable_hash(b"event-engine"))),
            queue: BinaryHeap::new(),
            sequence: 0,
            now: Duration::ZERO,
            hosts: Vec::new(),
            by_ip: BTreeMap::new(),
            by_name: BTreeMap::new(),
            recorder: Recorder::scoped(world.trace_scope.clone()),
            delivered: Delivered::default(),
            interner: Interner::default(),
            active: super::ActiveFaults::default(),
            cut_links: Vec::new(),
            resending: 0,
            first_steps: std::collections::VecDeque::new(),
            batch_depth: 0,
        };
        for (index, spec) in world.hosts.iter().enumerate() {
            let ip = IpAddr::V4(crate::world::host_address(index));
            let node = match &spec.kind {
                HostKind::Node(node) => Some((**node).clone()),
                HostKind::Client(_) | HostKind::Attacker(_) => None,
            };
            let port = node.as_ref().map_or(GOSSIP_PORT, |n| n.gossip_port);
            engine.by_ip.insert(ip, index);
            engine.by_name.insert(spec.name.clone(), index);
            engine.hosts.push(Host {
                name: spec.name.clone(),
                node,
                addr: SocketAddr::new(ip, port),
                boots: 0,
                up: false,
                supervision: None,
                agent: None,
                generation: 0,
                snapshot: None,
                keyring: None,
                rendering: None,
                rendered: None,
                ended_view: None,
                faults: LinkFaults::default(),
                held_controls: Vec::new(),
            });
        }
        // Fault steps first: at equal times the world changes before the hosts act.
        for index in 0..plan.steps.len() {
            engine.schedule(plan.steps[index].at, Happening::Fault { index });
        }
        for (index, host) in world.hosts.iter().enumerate() {
            engine.schedule(plan.start_at[&host.name], Happening::Boot { host: index as u32 });
        }
        engine
    }

    fn schedule(&mut self, at: Duration, happening: Happening) {
        self.sequence += 1;
        let at = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        self.queue.push(Reverse(Queued { at, sequence: self.sequence, happening }));
    }

    fn observe(&self, host: usize, event: Event) {
        self.recorder.record(self.now, &self.hosts[host].name, event);
    }

    fn handle(&mut self, happening: Happening) {
        if let Happening::PushPull { from, from_generation, bytes, syns: 1.., .. } = &happening {
            self.resending -= bytes.len();
            // A SYN sent again dies with its initiator's run, as its connect does.
            if self.hosts[*from as usize].generation != *from_generation {
                return;
            }
        }
        // A push-pull's SYN goes unanswered if the link is cut either way (the SYN or its
        // answer is lost), or if its host is down: it is sent again.
        if let Happening::PushPull { from, to, .. } = happening {
            let (f, t) = (from as usize, to as usize);
            if self.cut(f, t) || self.cut(t, f) || self.active.is_crashed(&self.hosts[t].name) {
                return self.resend_syn(happening);
            }
            return self.hold_and_happen(happening);
        }
        // A cut loses what else is on its way; what reached a stopped service waits for it.
        if happening.link().is_some_and(|(from, to)| self.cut(from as usize, to as usize)) {
            return;
        }
        self.hold_and_happen(happening);
    }

    fn hold_and_happen(&mut self, happening: Happening) {
        if let Some(happening) = self.hold_if_stopped(happening) {
            self.happen(happening);
        }
    }

    /// Carries out `happening`, which has arrived.
    fn happen(&mut self, happening: Happening) {
        // Hosts are numbered in 32 bits in the queue, which holds tens of millions of entries.
        let index = |host: u32| host as usize;
        match happening {
            Happening::Boot { host } => self.boot(index(host)),
            Happening::Supervise { host, boot, timer } => self.supervisor_timer(index(host), boot, *timer),
            Happening::Finished { host, boot, service, code } => {
                self.finish_ended(index(host), boot, usize::from(service), code)
            }
            Happening::Leave { host, generation } => {
                if self.hosts[index(host)].generation == generation {
                    self.agent_leave(index(host));
                }
            }
            Happening::Command { host, generation, fault } => {
                if self.hosts[index(host)].generation == generation {
                    self.obey(index(host), fault as usize);
                }
            }
            Happening::Timer { host, generation, timer } => {
                self.with_agent(index(host), Some(generation), |agent, now, out| {
                    agent.handle_timer(timer, now, out)
                });
            }
            Happening::Datagram { from, to, bytes } => {
                let (from, to) = (index(from), index(to));
                if self.hosts[to].agent.is_none() {
                    return;
                }
                let sender = self.hosts[from].addr;
                self.delivered.datagram(bytes.len());
                let mut rejected = None;
                self.with_agent(to, None, |agent, now, out| {
                    rejected = agent.handle_datagram(sender, &bytes, now, out).err();
                });
                // Dropped and recorded with its sender, as the driver does.
                if let Some(error) = rejected {
                    let event =
                        Event::DatagramRejected { from: sender.to_string(), error: error.to_string() };
                    self.observe(to, event);
                }
            }
            Happening::PushPull { from, from_generation, to, bytes, reply, .. } => {
                self.push_pull(index(from), from_generation, index(to), bytes, reply)
            }
            Happening::Answer { from, to, generation, bytes } => {
                let (from, to) = (index(from), index(to));
                let sender = self.hosts[from].addr;
                let (mut reached, mut rejected) = (false, None);
                self.with_agent(to, Some(generation), |agent, now, out| {
                    reached = true;
                    rejected = agent.handle_stream(sender, &bytes, true, now, out).err();
                });
                // An answer to an agent run that ended reached no one.
                if reached {
                    self.delivered.stream(bytes.len());
                }
                self.stream_rejected(to, sender, rejected);
            }
            Happening::Delayed { from, generation, to, bytes } => {
                // A run's end bumps the generation: its datagrams die with it.
                if self.hosts[index(from)].generation == generation {
                    self.transmit(index(from), index(to), bytes);
                }
            }
            Happening::Fault { index } => self.fault(index),
            Happening::Render { host, boot } => self.render_check(index(host), boot),
        }
    }

    /// Sends a push-pull's SYN again after Linux's next retransmission wait, if the
    /// initiator's run still waits for its connect then (its TCP timeout bounds the connect).
    fn resend_syn(&mut self, push_pull: Happening) {
        let Happening::PushPull { from, from_generation, to, bytes, reply, syns } = push_pull else { return };
        let initiator = &self.hosts[from as usize];
        let Some(run) = initiator.agent.as_ref().filter(|_| initiator.generation == from_generation) else {
            return;
        };
        let sent = usize::from(syns);
        // The last wait is for an answer to the last SYN: no SYN follows it.
        let resends = &super::SYN_RETRANSMIT_WAITS[..super::SYN_RETRANSMIT_WAITS.len() - 1];
        let Some(&wait) = resends.get(sent) else { return };
        let waited: Duration = super::SYN_RETRANSMIT_WAITS[..sent].iter().sum();
        if waited + wait < run.agent.tcp_timeout() && self.resending + bytes.len() <= RETRANSMIT_BYTES_MAX {
            self.resending += bytes.len();
            let happening = Happening::PushPull { from, from_generation, to, bytes, reply, syns: syns + 1 };
            self.schedule(self.now + wait, happening);
        }
    }

    /// Hands a push-pull to the agent on `to` and sends its answer back, if both ends still
    /// reach each other and the initiator waits for it (`reply`).
    fn push_pull(&mut self, from: usize, from_generation: u32, to: usize, bytes: Vec<u8>, reply: bool) {
        if self.hosts[to].agent.is_none() {
            return;
        }
        let sender = self.hosts[from].addr;
        self.delivered.stream(bytes.len());
        let mut answer = Ok(None);
        self.with_agent(to, None, |agent, now, out| {
            answer = agent.handle_stream(sender, &bytes, false, now, out);
        });
        let answer = answer.unwrap_or_else(|error| {
            self.stream_rejected(to, sender, Some(error));
            None
        });
        if let Some(bytes) = answer.filter(|_| reply) {
            let at = self.now + self.latency();
            let (from, to) = (to as u32, from as u32);
            self.schedule(at, Happening::Answer { from, to, generation: from_generation, bytes });
        }
    }

    /// Records a stream frame `host`'s agent rejected, with its sender, as the driver does.
    fn stream_rejected(&self, host: usize, sender: SocketAddr, error: Option<CodecError>) {
        if let Some(error) = error {
            self.observe(host, Event::StreamRejected { from: sender.to_string(), error: error.to_string() });
        }
    }

    /// Whether traffic from `from` to `to` is cut now.
    fn cut(&self, from: usize, to: usize) -> bool {
        self.cut_links.iter().any(|(senders, receivers)| senders[from] && receivers[to])
    }

    /// The partitions in force as host masks.
    fn cut_masks(&self) -> Vec<(Vec<bool>, Vec<bool>)> {
        let mask = |names: &std::collections::BTreeSet<String>| {
            let mut mask = vec![false; self.hosts.len()];
            names.iter().for_each(|name| mask[self.by_name[name]] = true);
            mask
        };
        self.active.cuts().groups().map(|(from, to)| (mask(from), mask(to))).collect()
    }

    /// One link's latency, drawn as turmoil draws it.
    fn latency(&mut self) -> Duration {
        let share = -(1.0 - self.rng.random::<f64>()).ln() / LATENCY_RATE;
        let range_ms = (LINK_LATENCY_MAX - LINK_LATENCY_MIN).as_millis() as f64;
        let delay = LINK_LATENCY_MIN + Duration::from_millis((range_ms * share) as u64);
        delay.min(LINK_LATENCY_MAX)
    }

    fn boot(&mut self, host: usize) {
        // A host crashed before its planned start boots only when the crash ends.
        if self.hosts[host].up || self.active.is_crashed(&self.hosts[host].name) {
            return;
        }
        let state = &mut self.hosts[host];
        state.boots += 1;
        state.up = true;
        let boot = state.boots;
        self.observe(host, Event::HostBooted { boot });
        let early = settle_early_orders(std::mem::take(&mut self.hosts[host].held_controls));
        // s6 acts on what waited for the boot before any service runs: a service stopped or
        // shut down then never takes a step (its first is the continue's).
        self.batch(|engine| {
            engine.start_supervision(host);
            for control in early {
                engine.control(host, control);
            }
        });
    }

    /// A run of the renderer: it renders the view as it stands at once.
    fn start_renderer(&mut self, host: usize) {
        let Some(settings) = self.hosts[host].node.as_ref().and_then(render_settings) else { return };
        let state = &mut self.hosts[host];
        let mut rendering = match Rendering::start(settings, state.rendered.as_deref()) {
            Ok(rendering) => rendering,
            Err(error) => return self.run_ended(host, "renderer", Exit::Code(1), Some(&error)),
        };
        rendering.set_view(current_view(state.agent.as_ref(), state.ended_view.as_ref()).unwrap_or_default());
        state.rendering = Some(rendering);
        let (events, written) = state.rendering.as_mut().map(Rendering::render).unwrap_or_default();
        self.rendered(host, events, written, None);
    }

    fn render_check(&mut self, host: usize, boot: u32) {
        let now = self.now;
        let state = &mut self.hosts[host];
        if state.boots != boot {
            return;
        }
        let Some(rendering) = state.rendering.as_mut() else { return };
        let (agent, ended) = (state.agent.as_ref(), state.ended_view.as_ref());
        let (events, written, due) = rendering.check(now, || current_view(agent, ended));
        self.rendered(host, events, written, due);
    }

    /// Records a render's events, keeps what it wrote, and queues the next check.
    fn rendered(&mut self, host: usize, events: Vec<Event>, written: Option<Vec<u8>>, due: Option<Duration>) {
        for event in events {
            self.observe(host, event);
        }
        if written.is_some() {
            self.hosts[host].rendered = written;
            // The fixed pipeline's renderer tells the balancer to reload what it wrote.
            self.balancer_reload(host);
        }
        if let Some(due) = due {
            let boot = self.hosts[host].boots;
            self.schedule(due, Happening::Render { host: host as u32, boot });
        }
    }

    /// A run of `serf`: a new agent with the snapshot the disk holds.
    fn start_agent(&mut self, host: usize) {
        let (name, ip) = (self.hosts[host].name.clone(), self.hosts[host].addr.ip());
        let Some(node) = self.hosts[host].node.as_ref() else { return };
        if !self.hosts[host].up || self.hosts[host].agent.is_some() {
            return;
        }
        let by_name = &self.by_name;
        let hosts = &self.hosts;
        let resolve = |seed: &str| {
            resolve_endpoint_with(seed, GOSSIP_PORT, |name| {
                let found = by_name.get(name).map(|index| hosts[*index].addr.ip());
                found.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, format!("lookup {name}"))
                })
            })
        };
        let config = agent_config(&name, ip, node, resolve);
        let snapshot_path = node.gossip.snapshot.clone();
        let mut config = match config {
            Ok(config) => config,
            Err(error) => return self.run_ended(host, "serf", Exit::Code(1), Some(&error.to_string())),
        };
        if self.balancer_holds(host, config.addr.port()) {
            let error = GossipError::Bind { addr: config.addr, source: super::address_in_use() };
            return self.run_ended(host, "serf", Exit::Code(1), Some(&error.to_string()));
        }
        if let (Some(path), Some(text)) = (&snapshot_path, &self.hosts[host].snapshot) {
            config.rejoin = snapshot::parse(path, text);
        }
        if let Some(ring) = &self.hosts[host].keyring {
            config.wire.keyring = Some(ring.clone());
        }
        let seeds = config.seeds.iter().map(ToString::to_string).collect();
        let state = &mut self.hosts[host];
        let run_seed = mix(host_seed(self.seed, &name, state.boots), u64::from(state.generation));
        let mut agent =
            Agent::new(config, ChaCha8Rng::seed_from_u64(mix(run_seed, stable_hash(b"gossip-agent"))));
        agent.share_interner(self.interner.clone());
        state.agent = Some(AgentRun {
            agent,
            seeds,
            published: BTreeMap::new(),
            health: 0,
            version: None,
            synced: false,
            stream_limits: LimitCounts::default(),
        });
        self.with_agent(host, None, |agent, now, out| agent.start(now, out));
    }

    /// The agent run on `host`, if any, is over (its service ended, or the node halted):
    /// its timers and answers are stale from now on.
    fn stop_agent(&mut self, host: usize) {
        let state = &mut self.hosts[host];
        let Some(ended) = state.agent.take() else { return };
        // The renderer, and a later one, read the last view the run published.
        if state.node.as_ref().is_some_and(|node| matches!(node.role, Role::Balancer { .. })) {
            state.ended_view = Some(published_view(&ended));
        }
        state.generation += 1;
    }

    /// serf got SIGINT: a graceful leave, unless one is under way.
    fn agent_leave(&mut self, host: usize) {
        if self.hosts[host].agent.as_ref().is_some_and(|run| !run.agent.is_leaving()) {
            self.observe(host, Event::Leaving);
            self.with_agent(host, None, |agent, now, out| agent.leave(now, out));
        }
    }

    /// Runs `step` on the agent of `host` (of run `generation`, if given), then carries out
    /// what it asked for and publishes its view's changes, in the driver's order: a step
    /// that ends the run (it left, or gave up joining) publishes nothing, so a join that
    /// gives up leaves the renderer the view as last published, never synced by the give-up.
    fn with_agent(
        &mut self,
        host: usize,
        generation: Option<u32>,
        step: impl FnOnce(&mut Agent, Duration, &mut Vec<Action>),
    ) {
        let now = self.now;
        let current = self.hosts[host].generation;
        let Some(run) = self.hosts[host].agent.as_mut() else { return };
        if generation.is_some_and(|g| g != current) {
            return;
        }
        let mut out = Vec::new();
        step(&mut run.agent, now, &mut out);
        for action in out {
            if !self.perform(host, action) {
                break;
            }
        }
        self.publish(host);
    }

    /// Records the agent's view changes and health, and rewrites its snapshot, as its driver
    /// does.
    fn publish(&mut self, host: usize) {
        let state = &mut self.hosts[host];
        let Some(run) = state.agent.as_mut() else { return };
        let version = run.agent.version();
        let mut events = Vec::new();
        let version_changed = run.version != Some(version);
        if version_changed {
            run.version = Some(version);
            let changed = run.agent.take_changed();
            // Entries the trace does not record are not published either: the table of what
            // was published would be nodes squared.
            let recorded = changed.iter().filter(|member| self.recorder.records_view(&state.name, member));
            let agent = &run.agent;
            events = state_changes(&mut run.published, recorded.map(|name| (name, agent.member(name))));
            if run.agent.is_synced() && !run.synced {
                run.synced = true;
                events.push(Event::GossipSynced);
            }
            if state.node.as_ref().is_some_and(|n| n.gossip.snapshot.is_some()) {
                let members: Vec<NodeState> = run.agent.members().cloned().collect();
                let text = snapshot::render(&members, &state.name);
                // As the driver: never wipe the members a previous life knew.
                if !text.is_empty() {
                    state.snapshot = Some(text);
                }
            }
        }
        if run.agent.health_score() != run.health {
            run.health = run.agent.health_score();
            events.push(Event::HealthScore { score: run.health });
        }
        let mut due = None;
        if let (Some(rendering), true) = (state.rendering.as_mut(), version_changed) {
            match state.supervision.as_mut().filter(|s| s.renderer_stopped()) {
                Some(supervision) => supervision.miss_view(),
                None => due = rendering.view_changed(self.now),
            }
        }
        for event in events {
            self.observe(host, event);
        }
        if let Some(due) = due {
            let boot = self.hosts[host].boots;
            self.schedule(due, Happening::Render { host: host as u32, boot });
        }
    }

    /// Carries out one action of the agent on `host`; `false` when the agent stopped.
    fn perform(&mut self, host: usize, action: Action) -> bool {
        if let Some(run) = self.hosts[host].agent.as_mut() {
            forget_if_erased(&mut run.published, &action);
        }
        let generation = self.hosts[host].generation;
        match action {
            Action::Send { to, bytes } => self.send(host, to, bytes),
            Action::Stream { to, bytes } => {
                if let Some(&target) = self.by_ip.get(&to.ip()) {
                    let at = self.now + self.latency();
                    let happening = Happening::PushPull {
                        from: host as u32,
                        from_generation: generation,
                        to: target as u32,
                        bytes,
                        reply: true,
                        syns: 0,
                    };
                    self.schedule(at, happening);
                }
            }
            Action::SetTimer { timer, after } => {
                self.schedule(self.now + after, Happening::Timer { host: host as u32, generation, timer })
            }
            // An entry the trace does not record is not built either (nodes squared of them).
            Action::Event(event)
                if !self.recorder.records_view(&self.hosts[host].name, &event.member.name) => {}
            Action::Event(event) => self.observe(
                host,
                Event::Member {
                    change: event.change,
                    member: event.member.name.to_string(),
                    addr: event.member.addr.to_string(),
                    tags: (*event.member.tags).clone(),
                },
            ),
            Action::JoinAttempt { attempt } => {
                let seeds = self.hosts[host].agent.as_ref().map(|run| run.seeds.clone()).unwrap_or_default();
                self.observe(host, Event::JoinAttempt { attempt, seeds });
            }
            Action::Joined { via } => self.observe(host, Event::Joined { via: via.to_string() }),
            Action::LimitReached { limit, max, count } => {
                self.observe(host, rollcall::gossip::driver::limit_event(limit, max, count))
            }
            Action::GaveUp { attempts } => {
                self.observe(host, Event::JoinGaveUp { attempts });
                self.agent_gave_up(host, attempts);
                return false;
            }
            Action::Left => {
                self.observe(host, Event::Left);
                self.run_ended(host, "serf", Exit::Code(0), None);
                return false;
            }
        }
        true
    }

    /// The agent on `host` sends a datagram: lost with the host's loss rate, held back for
    /// the host's extra latency (as the driver's loss wrapper holds it, in the sending run),
    /// then on its way.
    fn send(&mut self, host: usize, to: SocketAddr, bytes: Vec<u8>) {
        let Some(&target) = self.by_ip.get(&to.ip()) else { return };
        let faults = self.hosts[host].faults;
        if faults.loss_rate > 0.0 && self.rng.random_bool(faults.loss_rate.clamp(0.0, 1.0)) {
            return;
        }
        if faults.extra_latency.is_zero() {
            return self.transmit(host, target, bytes);
        }
        let (from, to, generation) = (host as u32, target as u32, self.hosts[host].generation);
        self.schedule(self.now + faults.extra_latency, Happening::Delayed { from, generation, to, bytes });
    }

    /// A datagram goes onto the wire from `host` to `target`, unless a cut is in the way.
    fn transmit(&mut self, host: usize, target: usize, bytes: Vec<u8>) {
        if self.cut(host, target) {
            return;
        }
        let at = self.now + self.latency();
        self.schedule(at, Happening::Datagram { from: host as u32, to: target as u32, bytes });
    }

    fn fault(&mut self, index: usize) {
        let step = &self.plan.steps[index];
        let (id, phase) = (step.fault, step.phase);
        let fault = self.plan.faults[id].kind.clone();
        let start = phase == Phase::Start;
        // A repeat (a reload's later ones) acts without a record of its own.
        if let Some(record) = WorldEvent::phase(id, &fault, phase) {
            self.recorder.world(self.now, WORLD, record);
        }
        match &fault {
            FaultKind::Partition { a, b, oneway } => {
                for group in self.active.partition(a, b, *oneway, start) {
                    self.recorder.world(self.now, WORLD, WorldEvent::links(group, start));
                }
                self.cut_links = self.cut_masks();
            }
            FaultKind::Loss { hosts, .. } | FaultKind::Latency { hosts, .. } => {
                for name in hosts {
                    self.active.window(&fault, name, id, start);
                    let host = self.by_name[name];
                    let faults = self.active.link_faults(name);
                    if faults != self.hosts[host].faults {
                        self.hosts[host].faults = faults;
                        let extra_latency_ms = faults.extra_latency.as_millis() as u64;
                        let event =
                            WorldEvent::GossipImpaired { loss_rate: faults.loss_rate, extra_latency_ms };
                        self.recorder.world(self.now, name, event);
                    }
                }
            }
            FaultKind::HostCrash { host, .. } => self.crash(host, start),
            // What the host's own software is told: the same orders turmoil's and the real
            // engine's hosts get.
            _ => {
                for (name, order) in self.active.orders(id, &fault, phase) {
                    let host = self.by_name[name];
                    match order {
                        Order::Supervisor(control) => self.control(host, control),
                        Order::Agent(_) => self.order_agent(host, id),
                    }
                }
            }
        }
    }

    /// `s6-svc` or s6-overlay's shutdown on `host`'s supervisor; a host that is down has
    /// none to tell, and the order is then a no-op, as on turmoil. One that has yet to boot
    /// gets it when it boots.
    fn control(&mut self, host: usize, control: Control) {
        let state = &mut self.hosts[host];
        if !state.up {
            if !self.active.is_crashed(&state.name) {
                state.held_controls.push(control);
            }
            return;
        }
        match control {
            Control::Svc { service, command } => self.svc(host, &service, command),
            Control::Shutdown { code } => {
                self.supervise(host, |supervisor, _, out| supervisor.shutdown(code, out))
            }
        }
    }

    /// The agent command of fault `fault` reaches `host`'s serf: obeyed now, or when a
    /// stopped serf continues (as the driver's command queue waits for its loop).
    fn order_agent(&mut self, host: usize, fault: usize) {
        // A command that finds no agent running fails, as `serf` does.
        if self.hosts[host].agent.is_none() {
            if let Some(command) = self.command_of(host, fault) {
                self.observe(host, command.refused());
            }
            return;
        }
        let generation = self.hosts[host].generation;
        let command = Happening::Command { host: host as u32, generation, fault: fault as u32 };
        if let Some(Happening::Command { .. }) = self.hold_if_stopped(command) {
            self.obey(host, fault);
        }
    }

    /// The command fault `fault` gives `host`'s agent, if any.
    fn command_of(&self, host: usize, fault: usize) -> Option<Command> {
        let name = self.hosts[host].name.as_str();
        let orders = super::orders(&self.plan.faults[fault].kind, Phase::Start);
        orders.into_iter().find_map(|order| match order {
            (to, Order::Agent(command)) if to == name => Some(command),
            _ => None,
        })
    }

    /// `host`'s agent obeys its command of fault `fault`, as the driver's agent obeys one.
    fn obey(&mut self, host: usize, fault: usize) {
        match self.command_of(host, fault) {
            Some(Command::Tags { set, delete }) => {
                let mut refused = None;
                self.with_agent(host, None, |agent, now, out| {
                    refused = change_tags(agent, set, &delete, now, out).err();
                });
                if let Some(refused) = refused {
                    self.observe(host, refused);
                }
            }
            Some(Command::ForceLeave { name, prune }) => {
                self.with_agent(host, None, |agent, now, out| agent.force_leave(&name, prune, now, out));
            }
            Some(Command::Keys { op, key }) => self.change_keyring(host, op, &key),
            // A leave reaches serf as its down signal (SIGINT), never as a command here.
            Some(Command::Leave) | None => {}
        }
    }

    /// `serf keys` on `host`'s agent, recorded and kept on its disk as the driver does.
    fn change_keyring(&mut self, host: usize, op: KeyOp, key: &str) {
        let Some(run) = self.hosts[host].agent.as_mut() else { return };
        let event = keyring_change(&mut run.agent, op, key);
        if matches!(event, Event::KeyringChanged { .. }) {
            self.hosts[host].keyring = run.agent.keyring().cloned();
        }
        self.observe(host, event);
    }

    fn crash(&mut self, name: &str, start: bool) {
        let host = self.by_name[name];
        match self.active.crash(name, start) {
            Some(true) => {
                // What a stopped serf held dies with it, recorded before the crash: no record
                // of the host's comes after it.
                let unserved =
                    self.hosts[host].supervision.take().map(Supervision::unserved).unwrap_or_default();
                self.record_unserved(host, &unserved);
                self.recorder.world(self.now, name, WorldEvent::HostCrashed);
                let state = &mut self.hosts[host];
                state.up = false;
                state.agent = None;
                state.rendering = None;
                state.ended_view = None;
                state.held_controls.clear();
                state.generation += 1;
            }
            Some(false) => {
                self.recorder.world(self.now, name, WorldEvent::HostRestarted);
                // A host restarted before its planned start still waits for it.
                let at = self.plan.start_at[name].max(self.now);
                self.schedule(at, Happening::Boot { host: host as u32 });
            }
            None => {}
        }
    }
}

/// The view the node's watch holds for its renderer: the running agent's, or the one the
/// boot's last run left.
fn current_view(agent: Option<&AgentRun>, ended: Option<&View>) -> Option<View> {
    agent.map(published_view).or_else(|| ended.cloned())
}

/// The view the run last published, as the driver's watch holds it: its members now (every
/// step publishes but the one that ends the run, a timer that changes no member) with the
/// synced flag as of its last publish.
fn published_view(run: &AgentRun) -> View {
    View { members: run.agent.members().cloned().collect(), synced: run.synced }
}
