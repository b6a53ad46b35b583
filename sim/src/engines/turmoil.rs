//! The turmoil engine: one turmoil host per world host, the real stack on simulated sockets.
//!
//! Every host is registered at time zero (so addresses follow file order) and waits for its
//! planned start time before booting. Faults are applied between steps at exact times.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::EngineError;
use crate::faults::{FaultAction, Plan};
use crate::trace::{Recorder, Trace, WORLD};
use crate::workload;
use crate::world::{HostKind, HostSpec, World};
use rollcall::host::{Clock, Event, HostEnv, MemoryDisk, Observer, mix, stable_hash};
use rollcall::net::lossy::LinkFaults;
use rollcall::net::{Datagram, Listener, Net};
use rollcall::node;
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
}

impl SimNet {
    /// turmoil binds only the unspecified address; a host's own address means the same.
    fn bindable(&self, addr: SocketAddr) -> SocketAddr {
        if addr.ip() == self.local_ip() {
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), addr.port())
        } else {
            addr
        }
    }
}

impl Net for SimNet {
    type Udp = SimUdp;
    type Listener = SimListener;
    type Stream = turmoil::net::TcpStream;

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SimUdp> {
        turmoil::net::UdpSocket::bind(self.bindable(addr)).await.map(SimUdp)
    }
    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(self.bindable(addr)).await.map(SimListener)
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect(addr).await
    }
    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = host.parse() {
            return Ok(ip);
        }
        self.addresses
            .borrow()
            .get(host)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("lookup {host}: no such host")))
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
    boots: Cell<u32>,
    start_at: Duration,
}

/// Runs `world` under `plan`; `seed` drives turmoil and every host's randomness.
pub fn run(world: &World, plan: &Plan, seed: u64) -> Result<Trace, EngineError> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(world.tick)
        .simulation_duration(world.duration + Duration::from_secs(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .udp_capacity(4096)
        .enable_random_order()
        .build();
    let recorder = Recorder::default();
    let addresses: Rc<RefCell<BTreeMap<String, IpAddr>>> = Rc::default();
    let mut states: BTreeMap<String, Rc<HostState>> = BTreeMap::new();
    for host in &world.hosts {
        let state = Rc::new(HostState {
            disk: Rc::default(),
            faults: Rc::default(),
            control: RefCell::new(None),
            boots: Cell::new(0),
            start_at: plan.start_at[&host.name],
        });
        states.insert(host.name.clone(), state.clone());
        let factory = host_factory(host.clone(), state, recorder.clone(), addresses.clone(), seed);
        sim.host(host.name.as_str(), factory);
    }
    for host in &world.hosts {
        addresses.borrow_mut().insert(host.name.clone(), sim.lookup(host.name.as_str()));
    }
    let mut steps = plan.steps.iter().peekable();
    let mut active = ActiveFaults::default();
    while sim.elapsed() < world.duration {
        while let Some(step) = steps.next_if(|step| step.at <= sim.elapsed()) {
            recorder.record(sim.elapsed(), WORLD, Event::Fault { fault: step.action.to_string() });
            apply(&mut sim, &states, &mut active, &step.action);
        }
        if let Err(error) = sim.step() {
            return Err(EngineError::Crashed {
                at_ms: sim.elapsed().as_millis() as u64,
                message: error.to_string(),
            });
        }
    }
    Ok(recorder.finish())
}

fn host_factory(
    host: HostSpec,
    state: Rc<HostState>,
    recorder: Recorder,
    addresses: Rc<RefCell<BTreeMap<String, IpAddr>>>,
    seed: u64,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || {
        let boot = state.boots.get() + 1;
        state.boots.set(boot);
        let (control, control_rx) = mpsc::unbounded_channel();
        *state.control.borrow_mut() = Some(control);
        // A fresh random stream per boot: a restarted host does not replay its first life.
        let host_seed = mix(mix(seed, stable_hash(host.name.as_bytes())), u64::from(boot));
        let net = SimNet { name: host.name.clone(), addresses: addresses.clone() };
        let env = HostEnv::new(
            host.name.clone(),
            net,
            Rc::new(SimClock),
            state.disk.clone(),
            Rc::new(recorder.clone()),
            host_seed,
        );
        let (kind, faults, start_at) = (host.kind.clone(), state.faults.clone(), state.start_at);
        Box::pin(async move {
            if boot == 1 {
                tokio::time::sleep(start_at.saturating_sub(env.now())).await;
            }
            env.observe(Event::HostBooted { boot });
            match kind {
                HostKind::Node(spec) => node::boot(env, *spec, faults, control_rx).await,
                HostKind::Client(spec) => workload::run(env, spec).await,
            }
            Ok(())
        })
    }
}

/// How many active faults hold each directed host pair cut, and each host down: overlapping
/// faults must not undo each other (turmoil keeps one state per link and per host, so the
/// first repair or restart would).
#[derive(Default)]
struct ActiveFaults {
    cuts: BTreeMap<(String, String), u32>,
    crashes: BTreeMap<String, u32>,
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    states: &BTreeMap<String, Rc<HostState>>,
    active: &mut ActiveFaults,
    action: &FaultAction,
) {
    let ActiveFaults { cuts, crashes } = active;
    match action {
        FaultAction::Partition { a, b, oneway } | FaultAction::Repair { a, b, oneway } => {
            let cut = matches!(action, FaultAction::Partition { .. });
            let mut directions = Vec::new();
            for x in a {
                for y in b {
                    directions.push((x.clone(), y.clone()));
                    if !oneway {
                        directions.push((y.clone(), x.clone()));
                    }
                }
            }
            for (from, to) in directions {
                let count = cuts.entry((from.clone(), to.clone())).or_default();
                match (cut, *count) {
                    (true, 0) => sim.partition_oneway(from.as_str(), to.as_str()),
                    (false, 1) => sim.repair_oneway(from.as_str(), to.as_str()),
                    _ => {}
                }
                *count = if cut { *count + 1 } else { count.saturating_sub(1) };
            }
        }
        FaultAction::SetLoss { hosts, rate } => {
            for host in hosts {
                let cell = &states[host].faults;
                cell.set(LinkFaults { loss_rate: *rate, ..cell.get() });
            }
        }
        FaultAction::SetLatency { hosts, extra_ms } => {
            for host in hosts {
                let cell = &states[host].faults;
                cell.set(LinkFaults { extra_latency: Duration::from_millis(*extra_ms), ..cell.get() });
            }
        }
        FaultAction::Crash { host } => {
            let count = crashes.entry(host.clone()).or_default();
            if *count == 0 {
                sim.crash(host.as_str());
            }
            *count += 1;
        }
        FaultAction::Restart { host } => {
            let count = crashes.entry(host.clone()).or_default();
            if *count == 1 {
                sim.bounce(host.as_str());
            }
            *count = count.saturating_sub(1);
        }
        FaultAction::KillService { host, service } => {
            if let Some(control) = states[host].control.borrow().as_ref() {
                // A host that is down has no services to kill; the fault is then a no-op.
                let _ = control.send(Control::Kill { service: service.clone() });
            }
        }
    }
}
