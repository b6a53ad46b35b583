//! The turmoil engine: one turmoil host per world host, the real stack on simulated sockets.
//!
//! Every host is registered at time zero (so addresses follow file order) and waits for its
//! planned start time before booting. Faults are applied between steps at exact times.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::{ActiveFaults, EngineError, Order, plan_record};
use crate::attacker::Tap;
use crate::faults::{FaultKind, Phase, Plan, Planned};
use crate::trace::{Entry, Recorder, Trace, WORLD, WorldEvent};
use crate::world::{HostKind, HostSpec, LINK_LATENCY_MAX, LINK_LATENCY_MIN, World};
use rollcall::gossip::driver::AgentControl;
use rollcall::host::{Clock, Event, HostEnv, MemoryDisk, host_seed};
use rollcall::net::lossy::LinkFaults;
use rollcall::net::{Datagram, Listener, Net};
use rollcall::node::{GOSSIP_PORT, NodeHandles};
use rollcall::supervisor::driver::Control;

/// turmoil's UDP socket as a [`Datagram`].
pub struct SimUdp(turmoil::net::UdpSocket);

impl Datagram for SimUdp {
    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(bytes, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// turmoil's TCP listener as a [`Listener`].
pub struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
}

/// The network of one simulated host.
#[derive(Clone)]
pub struct SimNet {
    name: String,
    /// Every host's address, filled in once all hosts are registered.
    addresses: Rc<RefCell<BTreeMap<String, IpAddr>>>,
    /// Where a connection attempt gets no answer at all.
    silence: Rc<RefCell<Silence>>,
}

/// The links a partition cuts and the hosts that are down, as the world's faults leave them.
/// turmoil refuses a connection at once when its SYN meets a cut link or a host with no
/// listener left; a real SYN into a cut link (either way: the SYN or its answer is lost), or
/// to a machine that is down, gets no answer, and is sent again until one gets through or
/// the caller's timeout gives up (HAProxy's "Layer4 timeout", a push-pull's TCP timeout).
/// Only a host that is up and has no listener answers with a reset.
#[derive(Default)]
pub struct Silence {
    /// Directed links (from, to) some partition cuts.
    cut: BTreeSet<(String, String)>,
    /// Hosts crashed and not yet restarted.
    down: BTreeSet<String>,
}

impl SimNet {
    /// Whether a SYN to `addr` from this host goes unanswered: a link cut or a host down.
    fn unanswered(&self, addr: SocketAddr) -> bool {
        let addresses = self.addresses.borrow();
        let to = addresses.iter().find(|(_, ip)| **ip == addr.ip()).map(|(name, _)| name);
        to.is_some_and(|to| self.silence.borrow().swallows(&self.name, to))
    }
}

impl Silence {
    fn swallows(&self, from: &str, to: &str) -> bool {
        let cut = |a: &str, b: &str| self.cut.contains(&(a.to_string(), b.to_string()));
        self.down.contains(to) || cut(from, to) || cut(to, from)
    }
}

impl SimNet {
    /// turmoil binds only the unspecified address and loopback (and panics on an address of
    /// another IP version): the engines' shared rule decides first.
    fn bindable(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        super::local_bind(self.local_ip(), addr)
    }
}

/// turmoil names only the address when a port is taken; the event engine says it as the OS.
fn in_use_as_the_os_says(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::AddrInUse { super::address_in_use() } else { error }
}

impl Net for SimNet {
    type Udp = SimUdp;
    type Listener = SimListener;
    type Stream = turmoil::net::TcpStream;

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SimUdp> {
        turmoil::net::UdpSocket::bind(self.bindable(addr)?).await.map(SimUdp).map_err(in_use_as_the_os_says)
    }
    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(self.bindable(addr)?)
            .await
            .map(SimListener)
            .map_err(in_use_as_the_os_says)
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<turmoil::net::TcpStream> {
        // turmoil answers a SYN it cannot deliver with a refusal at once; a real one is
        // sent again on Linux's schedule, and the connect ends when one gets through, when
        // the peer's host answers with a reset, or when the caller's timeout gives up.
        // turmoil carries the answer to a SYN outside the links, so a link cut only on the
        // way back is checked here, before each SYN (which also spares turmoil a socket per
        // unanswered SYN: it keeps the port of every refused connect).
        for wait in super::SYN_RETRANSMIT_WAITS {
            if !self.unanswered(addr) {
                match turmoil::net::TcpStream::connect(addr).await {
                    Err(error)
                        if error.kind() == io::ErrorKind::ConnectionRefused && self.unanswered(addr) => {}
                    answered => return answered,
                }
            }
            tokio::time::sleep(wait).await;
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect: no answer to any SYN"))
    }
    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        super::resolve_in(&self.addresses.borrow(), host)
    }
    fn local_ip(&self) -> IpAddr {
        self.addresses.borrow()[&self.name]
    }
}

/// Simulated time, global across host restarts.
struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }
}

/// What a host keeps across reboots, and the world's handles into it.
struct HostState {
    disk: Rc<MemoryDisk>,
    faults: Rc<Cell<LinkFaults>>,
    control: RefCell<Option<mpsc::UnboundedSender<Control>>>,
    /// The gossip agent's command queue; it outlives the agent's runs and the host's boots.
    agent: Rc<AgentControl>,
    boots: Cell<u32>,
    start_at: Duration,
    /// What an attacker host captures on the wire (empty for other hosts).
    tap: Tap,
}

/// Most hosts turmoil runs: it polls every host at every tick, so 50 hosts already take
/// about 45 s of wall time per 150 simulated seconds, and at about 100 a join storm overflows
/// the balancer's socket buffer inside turmoil, which panics. The event engine runs more.
pub const HOSTS_MAX: usize = 64;

/// Why turmoil refuses `world`, if it does.
pub fn unsupported(world: &World) -> Option<String> {
    (world.hosts.len() > HOSTS_MAX).then(|| {
        format!("{} hosts (at most {HOSTS_MAX}); the event engine runs thousands", world.hosts.len())
    })
}

/// Runs `world` under `plan`; `seed` drives turmoil and every host's randomness.
pub fn run(world: &World, plan: &Plan, seed: u64) -> Result<Trace, EngineError> {
    if let Some(what) = unsupported(world) {
        return Err(EngineError::Unsupported { engine: "turmoil", what });
    }
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(world.tick)
        .simulation_duration(world.duration + Duration::from_secs(1))
        .min_message_latency(LINK_LATENCY_MIN)
        .max_message_latency(LINK_LATENCY_MAX)
        .udp_capacity(super::UDP_QUEUE_DATAGRAMS)
        .enable_random_order()
        .build();
    let recorder = Recorder::scoped(world.trace_scope.clone());
    let addresses: Rc<RefCell<BTreeMap<String, IpAddr>>> = Rc::default();
    let silence: Rc<RefCell<Silence>> = Rc::default();
    let mut states: BTreeMap<String, Rc<HostState>> = BTreeMap::new();
    for host in &world.hosts {
        let state = Rc::new(HostState {
            disk: Rc::default(),
            faults: Rc::default(),
            control: RefCell::new(None),
            agent: Rc::default(),
            boots: Cell::new(0),
            start_at: plan.start_at[&host.name],
            tap: Tap::default(),
        });
        states.insert(host.name.clone(), state.clone());
        let wiring = Wiring { addresses: addresses.clone(), silence: silence.clone() };
        let factory = host_factory(host.clone(), state, recorder.clone(), wiring, seed);
        sim.host(host.name.as_str(), factory);
    }
    for host in &world.hosts {
        addresses.borrow_mut().insert(host.name.clone(), sim.lookup(host.name.as_str()));
    }
    recorder.world(Duration::ZERO, WORLD, plan_record(world, plan));
    let taps = attacker_taps(world, &states, &addresses.borrow());
    let mut steps = plan.steps.iter().peekable();
    let mut world_faults = WorldFaults {
        active: ActiveFaults::default(),
        recorder: recorder.clone(),
        armed: Vec::new(),
        restarts: Vec::new(),
        silence,
    };
    while sim.elapsed() < world.duration {
        while let Some(step) = steps.next_if(|step| step.at <= sim.elapsed()) {
            world_faults.apply(&mut sim, &states, plan, step);
        }
        world_faults.trigger(&mut sim, plan, &states);
        if !taps.is_empty() {
            tap_the_wire(&sim, &taps);
        }
        // What a step kills happened at its start, as turmoil stamps the step's own records.
        let step_time = sim.elapsed();
        if let Err(error) = sim.step() {
            return Err(EngineError::Crashed {
                at_ms: sim.elapsed().as_millis() as u64,
                message: error.to_string(),
            });
        }
        record_unserved(&recorder, step_time, &states);
        if recorder.is_full() {
            return Err(EngineError::TraceFull { at_ms: sim.elapsed().as_millis() as u64 });
        }
    }
    Ok(recorder.finish())
}

/// Records as refused the commands a serf killed while stopped never took (the event engine
/// does so when it kills the run).
fn record_unserved(recorder: &Recorder, now: Duration, states: &BTreeMap<String, Rc<HostState>>) {
    for (host, state) in states {
        for command in state.agent.take_unserved() {
            rollcall::host::Observer::record(recorder, now, host, command.unserved());
        }
    }
}

fn host_factory(
    host: HostSpec,
    state: Rc<HostState>,
    recorder: Recorder,
    wiring: Wiring,
    seed: u64,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || {
        let (control, control_rx) = mpsc::unbounded_channel();
        *state.control.borrow_mut() = Some(control);
        let (host, state, recorder, wiring) = (host.clone(), state.clone(), recorder.clone(), wiring.clone());
        Box::pin(async move {
            // A host crashed and restarted before its planned start still waits for it, and
            // only then boots: a crash before the first boot is no boot of its own (as the
            // event engine counts them).
            tokio::time::sleep(state.start_at.saturating_sub(SimClock.now())).await;
            let boot = state.boots.get() + 1;
            state.boots.set(boot);
            // A fresh random stream per boot: a restarted host does not replay its first life.
            let host_seed = host_seed(seed, &host.name, boot);
            let net =
                SimNet { name: host.name.clone(), addresses: wiring.addresses, silence: wiring.silence };
            let env = HostEnv::new(
                host.name.clone(),
                net,
                Rc::new(SimClock),
                state.disk.clone(),
                Rc::new(recorder),
                host_seed,
            );
            let handles =
                NodeHandles { faults: state.faults.clone(), control: control_rx, agent: state.agent.clone() };
            super::boot_host(env, host.kind.clone(), handles, state.tap.clone(), boot).await;
            Ok(())
        })
    }
}

/// What a host's network is built from: every address, and where connects go unanswered.
#[derive(Clone)]
struct Wiring {
    addresses: Rc<RefCell<BTreeMap<String, IpAddr>>>,
    silence: Rc<RefCell<Silence>>,
}

/// Each attacker's address and tap.
fn attacker_taps(
    world: &World,
    states: &BTreeMap<String, Rc<HostState>>,
    addresses: &BTreeMap<String, IpAddr>,
) -> Vec<(IpAddr, Tap)> {
    let attackers = world.hosts.iter().filter(|h| matches!(h.kind, HostKind::Attacker(_)));
    attackers.map(|h| (addresses[&h.name], states[&h.name].tap.clone())).collect()
}

/// Copies the gossip datagrams in flight between other hosts into each attacker's tap, as a
/// host on the same segment could sniff them, at every step (a datagram is in flight for a
/// few ticks; the tap keeps one copy). Reading leaves them in flight, untouched.
fn tap_the_wire(sim: &turmoil::Sim<'_>, taps: &[(IpAddr, Tap)]) {
    sim.links(|links| {
        for link in links {
            for sent in link {
                let (from, to) = sent.pair();
                let turmoil::Protocol::Udp(datagram) = sent.protocol() else { continue };
                if to.port() != GOSSIP_PORT {
                    continue;
                }
                let others = taps.iter().filter(|(ip, _)| *ip != from.ip() && *ip != to.ip());
                others.for_each(|(_, tap)| tap.capture(&datagram.0));
            }
        }
    });
}

/// Applies plan steps and records what each one changed.
struct WorldFaults {
    active: ActiveFaults,
    recorder: Recorder,
    /// What the hosts' connects cannot reach, kept in step with the cuts and crashes.
    silence: Rc<RefCell<Silence>>,
    /// Mid-render crashes waiting for their moment: fault id, and the trace length when
    /// armed (only later records can trigger them).
    armed: Vec<(usize, usize)>,
    /// Restarts of triggered crashes: when, and which fault.
    restarts: Vec<(Duration, usize)>,
}

impl WorldFaults {
    fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        states: &BTreeMap<String, Rc<HostState>>,
        plan: &Plan,
        step: &Planned,
    ) {
        let now = sim.elapsed();
        let fault = &plan.faults[step.fault].kind;
        let start = step.phase == Phase::Start;
        if let FaultKind::HostCrash { mid_render: true, .. } = fault {
            // It starts when its host is seen writing a rendering, and ends as long after.
            if start {
                self.armed.push((step.fault, self.recorder.len()));
            }
            return;
        }
        if let Some(record) = WorldEvent::phase(step.fault, fault, step.phase) {
            self.recorder.world(now, WORLD, record);
        }
        match fault {
            FaultKind::Partition { a, b, oneway } => self.partition(sim, a, b, *oneway, start),
            FaultKind::Loss { hosts, .. } | FaultKind::Latency { hosts, .. } => {
                for host in hosts {
                    self.active.window(fault, host, step.fault, start);
                    self.impair(now, host, &states[host].faults);
                }
            }
            FaultKind::HostCrash { host, .. } => self.crash(sim, host, start, &states[host].agent),
            _ => {
                for (host, order) in self.active.orders(step.fault, fault, step.phase) {
                    match order {
                        Order::Supervisor(control) => {
                            // A host that is down has no supervisor to tell; the order is then a no-op.
                            if let Some(supervisor) = states[host].control.borrow().as_ref() {
                                let _ = supervisor.send(control);
                            }
                        }
                        // A command that finds no agent running fails, as `serf` does.
                        Order::Agent(command) if !states[host].agent.is_running() => {
                            rollcall::host::Observer::record(&self.recorder, now, host, command.refused());
                        }
                        Order::Agent(command) => {
                            let refusal = command.queue_full();
                            if !states[host].agent.send(command) {
                                rollcall::host::Observer::record(&self.recorder, now, host, refusal);
                            }
                        }
                    }
                }
            }
        }
    }

    fn partition(&mut self, sim: &mut turmoil::Sim<'_>, a: &[String], b: &[String], oneway: bool, cut: bool) {
        for group in self.active.partition(a, b, oneway, cut) {
            for (from, to) in group.links() {
                let link = (from.to_string(), to.to_string());
                if cut {
                    sim.partition_oneway(from, to);
                    self.silence.borrow_mut().cut.insert(link);
                } else {
                    sim.repair_oneway(from, to);
                    self.silence.borrow_mut().cut.remove(&link);
                }
            }
            self.recorder.world(sim.elapsed(), WORLD, WorldEvent::links(group, cut));
        }
    }

    /// Sets a host's loss and latency from every window active on it, and records the result.
    fn impair(&self, now: Duration, host: &str, cell: &Cell<LinkFaults>) {
        let faults = self.active.link_faults(host);
        if faults != cell.get() {
            cell.set(faults);
            let extra_latency_ms = faults.extra_latency.as_millis() as u64;
            let record = WorldEvent::GossipImpaired { loss_rate: faults.loss_rate, extra_latency_ms };
            self.recorder.world(now, host, record);
        }
    }

    /// Starts each armed mid-render crash whose host has begun writing a rendering since it
    /// was armed (the write is then still under way: it spans simulated time), and restarts
    /// triggered crashes that are due.
    fn trigger(&mut self, sim: &mut turmoil::Sim<'_>, plan: &Plan, states: &BTreeMap<String, Rc<HostState>>) {
        let now = sim.elapsed();
        let mut index = 0;
        while index < self.armed.len() {
            let (id, from) = self.armed[index];
            let fault = &plan.faults[id];
            let FaultKind::HostCrash { host, .. } = &fault.kind else {
                // Only crashes are armed.
                self.armed.swap_remove(index);
                continue;
            };
            let rendering = |r: &crate::trace::Record| {
                r.host == *host && matches!(r.event, Entry::Host(Event::RenderStarted { .. }))
            };
            if !self.recorder.any_since(from, rendering) {
                // Only later records can trigger it: each record is looked at once.
                self.armed[index].1 = self.recorder.len();
                index += 1;
                continue;
            }
            self.armed.swap_remove(index);
            self.recorder.world(now, WORLD, WorldEvent::FaultStarted { id, fault: fault.kind.clone() });
            self.crash(sim, host, true, &states[host].agent);
            if let Some(lasting) = fault.lasting {
                self.restarts.push((now + lasting, id));
            }
        }
        while let Some(position) = self.restarts.iter().position(|(at, _)| *at <= now) {
            let (_, id) = self.restarts.swap_remove(position);
            let fault = &plan.faults[id];
            self.recorder.world(now, WORLD, WorldEvent::FaultEnded { id, fault: fault.kind.clone() });
            if let FaultKind::HostCrash { host, .. } = &fault.kind {
                self.crash(sim, host, false, &states[host].agent);
            }
        }
    }

    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, host: &str, start: bool, agent: &AgentControl) {
        match self.active.crash(host, start) {
            Some(true) => {
                sim.crash(host);
                // What a stopped serf held dies with it, before the host's crash is recorded:
                // no record of the host's comes after its crash.
                for command in agent.take_unserved() {
                    rollcall::host::Observer::record(&self.recorder, sim.elapsed(), host, command.unserved());
                }
                self.recorder.world(sim.elapsed(), host, WorldEvent::HostCrashed);
                self.silence.borrow_mut().down.insert(host.to_string());
            }
            Some(false) => {
                self.recorder.world(sim.elapsed(), host, WorldEvent::HostRestarted);
                self.silence.borrow_mut().down.remove(host);
                sim.bounce(host);
            }
            None => {}
        }
    }
}
