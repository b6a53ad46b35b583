//! Engines run a [`World`](crate::world::World) under a [`Plan`](crate::faults::Plan) and
//! return its [`Trace`](crate::trace::Trace). All engines share the fault plan, the trace
//! format and the invariants.
//!
//! - [`turmoil`]: the full stack, HTTP included, on turmoil's simulated network (3 to about
//!   50 hosts).
//! - [`event`]: the gossip, supervisor and render cores, driven by a queue of timed events
//!   (hundreds to ten thousand nodes); it refuses the invariants, faults and planted bugs it
//!   does not model (the balancer's serving and HTTP).
//! - [`real`]: the full stack as real processes in network namespaces, on the wall clock
//!   (Linux, root); not replayable, but judged the same way.

pub mod event;
pub mod real;
mod rendering;
pub mod turmoil;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::faults::{FaultKind, Phase, Plan};
use crate::trace::WorldEvent;
use crate::world::World;
use rollcall::gossip::driver::Command;
use rollcall::net::lossy::LinkFaults;
use rollcall::node::BALANCER_SERVICE;
use rollcall::supervisor::core::Command as Svc;
use rollcall::supervisor::driver::Control;
use rollcall::supervisor::signal::Signal;

/// Datagrams a host's gossip socket buffers before it drops more: turmoil's `udp_capacity`
/// in this world, and what a stopped agent holds in the event engine.
pub(crate) const UDP_QUEUE_DATAGRAMS: usize = 4096;

/// Linux's waits before each SYN retransmission (`tcp_syn_retries` 6, an initial RTO of 1 s
/// doubling), the last being the wait for an answer to the last SYN: 127 s in all. A SYN
/// into a cut link, or to a host that is down, is answered by nothing and sent again so, on
/// both simulated engines, until one gets through or the caller's timeout gives up.
pub(crate) const SYN_RETRANSMIT_WAITS: [std::time::Duration; 7] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(16),
    std::time::Duration::from_secs(32),
    std::time::Duration::from_secs(64),
];

/// Where a simulated host whose address is `own` can bind `addr`, the same on both engines:
/// its own address or any (`0.0.0.0`, or `::`, which a dual-stack socket takes for IPv4 too)
/// binds every interface, loopback binds loopback; any other address is not the host's.
pub(crate) fn local_bind(own: IpAddr, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let ip = addr.ip();
    if ip == own || ip.is_unspecified() {
        Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()))
    } else if ip.is_ipv4() && ip.is_loopback() {
        Ok(addr)
    } else {
        let message = format!("{ip} is not an address of this host");
        Err(std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, message))
    }
}

/// A port already bound on the host, in the same words on both engines.
pub(crate) fn address_in_use() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::AddrInUse)
}

/// Which engine runs a world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// The whole stack on turmoil.
    #[default]
    Turmoil,
    /// The gossip, supervisor and render cores on a discrete-event queue.
    Event,
    /// Real processes in network namespaces, on the wall clock.
    Real,
}

impl EngineKind {
    /// Its name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Turmoil => "turmoil",
            EngineKind::Event => "event",
            EngineKind::Real => "real",
        }
    }
}

/// What a fault asks of a host's own software: `s6-svc` to its supervisor, or a command to
/// its gossip agent. The engines that run the real stack deliver it, each its own way.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Order {
    /// To the supervisor.
    Supervisor(Control),
    /// To the gossip agent (Serf's RPC).
    Agent(Command),
}

/// The hosts `fault` gives an order to at `phase`, and the orders; none for what the world
/// itself does (links, loss, crashes).
pub(crate) fn orders(fault: &FaultKind, phase: Phase) -> Vec<(&str, Order)> {
    if let FaultKind::Keys { hosts, op, key } = fault {
        let command = || Order::Agent(Command::Keys { op: *op, key: key.clone() });
        return hosts.iter().map(|host| (host.as_str(), command())).collect();
    }
    order(fault, phase).into_iter().collect()
}

/// The one host `fault` gives an order to at `phase`, and the order.
fn order(fault: &FaultKind, phase: Phase) -> Option<(&str, Order)> {
    let start = phase == Phase::Start;
    match fault {
        FaultKind::ServiceCrash { host, service } => supervisor(host, Control::signal(service, Signal::Kill)),
        FaultKind::Reload { host, .. } if phase != Phase::End => {
            supervisor(host, Control::signal(BALANCER_SERVICE, Signal::Hup))
        }
        FaultKind::Stall { host, service } => {
            supervisor(host, Control::signal(service, if start { Signal::Stop } else { Signal::Cont }))
        }
        FaultKind::Leave { host } => {
            let command = if start { Svc::Down } else { Svc::Up };
            supervisor(host, Control::Svc { service: "serf".to_string(), command })
        }
        FaultKind::Stop { host } => supervisor(host, Control::Shutdown { code: 0 }),
        FaultKind::Tags { host, set, delete } => {
            Some((host, Order::Agent(Command::Tags { set: set.clone(), delete: delete.clone() })))
        }
        FaultKind::ForceLeave { host, target, prune } => {
            Some((host, Order::Agent(Command::ForceLeave { name: target.clone(), prune: *prune })))
        }
        _ => None,
    }
}

fn supervisor(host: &str, control: Control) -> Option<(&str, Order)> {
    Some((host, Order::Supervisor(control)))
}

/// A scenario host name (or an address) to its address in `addresses`, as a host's DNS would
/// answer inside the world.
pub(crate) fn resolve_in(
    addresses: &BTreeMap<String, std::net::IpAddr>,
    host: &str,
) -> std::io::Result<std::net::IpAddr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    addresses.get(host).copied().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("lookup {host}: no such host"))
    })
}

/// Boots one host of the world on `env`: records the boot, then runs its node (with
/// `handles`), its client workload or its attack (with what `tap` captures) until it ends.
/// Every engine that runs the real stack boots hosts this way.
pub(crate) async fn boot_host<N: rollcall::net::Net>(
    env: rollcall::host::HostEnv<N>,
    kind: crate::world::HostKind,
    handles: rollcall::node::NodeHandles,
    tap: crate::attacker::Tap,
    boot: u32,
) {
    env.observe(rollcall::host::Event::HostBooted { boot });
    match kind {
        crate::world::HostKind::Node(spec) => rollcall::node::boot(env, *spec, handles).await,
        crate::world::HostKind::Client(spec) => crate::workload::run(env, spec).await,
        crate::world::HostKind::Attacker(spec) => crate::attacker::run(env, spec, tap).await,
    }
}

/// The plan as the first record of every trace.
pub(crate) fn plan_record(world: &World, plan: &Plan) -> WorldEvent {
    let start_at_ms = plan.start_at.iter().map(|(name, at)| (name.clone(), at.as_millis() as u64)).collect();
    let roles = world.hosts.iter().map(|h| (h.name.clone(), h.role().to_string())).collect();
    let duration_ms = world.duration.as_millis() as u64;
    let scope = &world.trace_scope;
    let views = scope.observers.as_ref().map(|hosts| hosts.iter().cloned().collect());
    let follow = scope.followed.iter().cloned().collect();
    WorldEvent::Plan { duration_ms, roles, start_at_ms, faults: plan.faults.clone(), views, follow }
}

/// Which faults are active, per directed host pair, per host, and per service for stalls and
/// leaves: overlapping faults must not undo each other (an engine keeps one state per link
/// and per host, and the loss model one rate per host, so the first end would).
#[derive(Default)]
pub(crate) struct ActiveFaults {
    cuts: crate::links::ActiveCuts,
    crashes: BTreeMap<String, u32>,
    loss: BTreeMap<String, BTreeMap<usize, f64>>,
    latency: BTreeMap<String, BTreeMap<usize, Duration>>,
    /// The stall and leave windows in force (fault ids), by kind, host and service (serf
    /// for a leave).
    holds: BTreeMap<(&'static str, String, String), std::collections::BTreeSet<usize>>,
}

impl ActiveFaults {
    /// Starts or ends a partition; returns the groups of links whose state changed.
    pub(crate) fn partition(
        &mut self,
        a: &[String],
        b: &[String],
        oneway: bool,
        cut: bool,
    ) -> Vec<crate::links::LinkGroup> {
        self.cuts.partition(a, b, oneway, cut)
    }

    /// The partitions in force.
    pub(crate) fn cuts(&self) -> &crate::links::ActiveCuts {
        &self.cuts
    }

    /// Starts or ends loss or latency window `id` on `host`.
    pub(crate) fn window(&mut self, fault: &FaultKind, host: &str, id: usize, start: bool) {
        match fault {
            FaultKind::Loss { rate, .. } => set_window(&mut self.loss, host, id, start.then_some(*rate)),
            FaultKind::Latency { extra, .. } => {
                set_window(&mut self.latency, host, id, start.then_some(*extra))
            }
            _ => {}
        }
    }

    /// A host's loss and latency from every window active on it: overlapping losses compose
    /// as independent drops, latencies add up.
    pub(crate) fn link_faults(&self, host: &str) -> LinkFaults {
        let losses = self.loss.get(host).into_iter().flat_map(|m| m.values());
        let kept: f64 = losses.map(|rate| 1.0 - rate).product();
        let latencies = self.latency.get(host).into_iter().flat_map(|m| m.values());
        LinkFaults { loss_rate: (1.0 - kept).clamp(0.0, 1.0), extra_latency: latencies.sum() }
    }

    /// The orders fault `id` (`fault`) gives at `phase` (see [`orders`]), but for the end
    /// of a stall or a leave. Such a window holds from a start while its host was not
    /// crashed (whether or not the service ran) until its end or the host's next crash (a
    /// rebooted host runs its services afresh); its end acts only if the window still holds
    /// and no other window of its kind holds the same service, which then decides when the
    /// service continues or serf starts again. A start always goes: stopping a stopped
    /// service does nothing.
    pub(crate) fn orders<'f>(
        &mut self,
        id: usize,
        fault: &'f FaultKind,
        phase: Phase,
    ) -> Vec<(&'f str, Order)> {
        let held = match fault {
            FaultKind::Stall { host, service } => Some(("stall", host, service.as_str())),
            FaultKind::Leave { host } => Some(("leave", host, "serf")),
            _ => None,
        };
        if let Some((kind, host, service)) = held {
            let down = self.is_crashed(host);
            let windows = self.holds.entry((kind, host.clone(), service.to_string())).or_default();
            match phase {
                Phase::Start if !down => {
                    windows.insert(id);
                }
                Phase::End if !windows.remove(&id) || !windows.is_empty() => return Vec::new(),
                _ => {}
            }
        }
        orders(fault, phase)
    }

    /// Whether a crash holds `host` down now.
    pub(crate) fn is_crashed(&self, host: &str) -> bool {
        self.crashes.get(host).is_some_and(|count| *count > 0)
    }

    /// Starts or ends a crash of `host`: `Some(true)` when the host goes down now,
    /// `Some(false)` when it comes back now, `None` when an overlapping crash decides.
    pub(crate) fn crash(&mut self, host: &str, start: bool) -> Option<bool> {
        let count = self.crashes.entry(host.to_string()).or_default();
        let changed = match (start, *count) {
            (true, 0) => Some(true),
            (false, 1) => Some(false),
            _ => None,
        };
        *count = if start { *count + 1 } else { count.saturating_sub(1) };
        if changed == Some(true) {
            self.holds.retain(|(_, held, _), _| held != host);
        }
        changed
    }
}

/// Starts (`Some`) or ends (`None`) window `id` on `host`.
fn set_window<T>(
    windows: &mut BTreeMap<String, BTreeMap<usize, T>>,
    host: &str,
    id: usize,
    value: Option<T>,
) {
    let active = windows.entry(host.to_string()).or_default();
    match value {
        Some(value) => active.insert(id, value),
        None => active.remove(&id),
    };
}

/// A run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The simulated software failed (a panic or an assertion in the stack).
    #[error("simulation failed at {at_ms} ms: {message}")]
    Crashed { at_ms: u64, message: String },
    /// The engine does not model what the world asks for.
    #[error("the {engine} engine cannot run this scenario: {what}")]
    Unsupported { engine: &'static str, what: String },
    /// The real engine could not set up or run its hosts (namespaces, processes, files).
    #[error("the real engine failed: {0}")]
    Real(String),
    /// The run was stopped by Ctrl-C; what it had set up is removed.
    #[error("interrupted; every namespace and process of the run is removed")]
    Interrupted,
    /// An invariant reads records the world's trace leaves out: its verdict would read
    /// nothing and hold (a scenario file cannot ask for it; a program building a world can).
    #[error("{invariant} reads records this world's trace leaves out ({scope})")]
    UnrecordedForInvariant { invariant: &'static str, scope: &'static str },
    /// The trace reached [`crate::trace::TRACE_RECORDS_MAX`]: a verdict on the rest would be
    /// a verdict on a cut trace.
    #[error(
        "the trace reached its limit of {} records at {at_ms} ms simulated: record fewer views with a [trace] section, or run for less time",
        crate::trace::TRACE_RECORDS_MAX
    )]
    TraceFull { at_ms: u64 },
}

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: u8 = 130;

impl EngineError {
    /// The process exit code for a run that ended in this error: 2 when the scenario
    /// asked for more than rollcall runs (a run past a limit, or a fault its seed's swarm
    /// drew that the engine cannot make: the file's fault), 130 when interrupted, 1 when
    /// the run itself failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::TraceFull { .. }
            | EngineError::UnrecordedForInvariant { .. }
            | EngineError::Unsupported { .. } => 2,
            EngineError::Interrupted => EXIT_INTERRUPTED,
            EngineError::Crashed { .. } | EngineError::Real(_) => 1,
        }
    }
}
