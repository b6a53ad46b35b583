//! One host of a real run, as its own process inside its namespace (`rollcall-sim host`,
//! started by the engine): the stack's node (or the client workload) built from the same
//! scenario file by the same code as in the simulator, on real sockets and the wall clock.
//!
//! - Time: the machine's monotonic clock, counted from the run's start (the engine passes
//!   it), so every host's records share one time line.
//! - Disk: a folder per host, kept across its crashes; the scenario's absolute paths are
//!   taken inside it.
//! - Trace: each record as one JSON line appended to the host's file at once, unbuffered,
//!   so a SIGKILL loses no record written before it (at most the line being written, which
//!   the engine then skips).
//! - Orders: the fault plan's `s6-svc` and Serf commands arrive as JSON lines on stdin; when
//!   stdin closes, the engine is gone and the host stops.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use crate::engines::Order;
use crate::trace::{Entry, Record, ViewScope};
use crate::world::{HostKind, HostSpec, World};
use rollcall::gossip::driver::AgentControl;
use rollcall::host::{Clock, Disk, Event, HostEnv, Observer, RealDisk, host_seed, stable_hash};
use rollcall::net::Net;
use rollcall::net::tokio_net::TokioNet;
use rollcall::node::NodeHandles;
use rollcall::supervisor::driver::Control;

/// The machine's monotonic clock (shared by every namespace), in nanoseconds.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero would only make times start late.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|spec| spec.tv_sec() as u64 * 1_000_000_000 + spec.tv_nsec() as u64)
        .unwrap_or_default()
}

/// Time since the run started.
struct RunClock {
    start_ns: u64,
}

impl Clock for RunClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(monotonic_ns().saturating_sub(self.start_ns))
    }
}

/// The host's disk: a folder; a path from the scenario (`/usr/local/etc/haproxy/...`) is
/// taken inside it.
struct RootedDisk {
    root: PathBuf,
}

impl RootedDisk {
    /// The path inside the folder; a path with `..` is refused, as it could leave the folder
    /// (the engine runs as root).
    fn place(&self, path: &Path) -> io::Result<PathBuf> {
        if path.components().any(|part| part == std::path::Component::ParentDir) {
            let message = format!("{}: a host's path may not contain ..", path.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        Ok(self.root.join(path.strip_prefix("/").unwrap_or(path)))
    }

    /// The path inside the folder, its directory made.
    fn place_for_writing(&self, path: &Path) -> io::Result<PathBuf> {
        let placed = self.place(path)?;
        if let Some(dir) = placed.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(placed)
    }
}

impl Disk for RootedDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealDisk.read(&self.place(path)?)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        RealDisk.write_atomic(&self.place_for_writing(path)?, bytes)
    }
    fn write_secret(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        RealDisk.write_secret(&self.place_for_writing(path)?, bytes)
    }
    fn write_in_place(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        RealDisk.write_in_place(&self.place_for_writing(path)?, bytes)
    }
}

/// Appends each record to the host's trace file, one write per line.
struct FileObserver {
    file: RefCell<std::fs::File>,
    scope: ViewScope,
}

impl Observer for FileObserver {
    fn record(&self, at: Duration, host: &str, event: Event) {
        if !self.scope.keeps(host, &event) {
            return;
        }
        let record =
            Record { t_us: at.as_micros() as u64, host: host.to_string(), event: Entry::Host(event) };
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        if let Err(error) = self.file.borrow_mut().write_all(line.as_bytes()) {
            // The engine reads the file after the run: a record lost here is a run to redo.
            tracing::error!("cannot write a trace record: {error}");
        }
    }
}

/// Real sockets; the scenario's host names resolve to the run's addresses.
#[derive(Clone)]
struct NamedNet {
    sockets: TokioNet,
    addresses: Rc<BTreeMap<String, IpAddr>>,
}

impl Net for NamedNet {
    type Udp = tokio::net::UdpSocket;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<Self::Udp> {
        self.sockets.bind_udp(addr).await
    }
    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        self.sockets.bind_tcp(addr).await
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        self.sockets.connect(addr).await
    }
    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        crate::engines::resolve_in(&self.addresses, host)
    }
    fn local_ip(&self) -> IpAddr {
        self.sockets.advertise
    }
}

/// What the engine tells a host process on its command line.
#[derive(Clone, Debug)]
pub struct HostArgs {
    /// The host's name in the world.
    pub name: String,
    /// The run's seed.
    pub seed: u64,
    /// This boot's number, from 1.
    pub boot: u32,
    /// The run's start on the monotonic clock.
    pub run_start_ns: u64,
    /// The host's trace file (appended to).
    pub trace: PathBuf,
    /// The host's disk folder.
    pub disk: PathBuf,
    /// Every host's address.
    pub addresses: BTreeMap<String, IpAddr>,
    /// [`spec_hash`] of the host as the engine resolved it.
    pub spec_hash: u64,
}

/// A fingerprint of a host's full description: the host process checks that the scenario it
/// loaded describes the host the engine meant (a file edited since, or a world built in
/// code, would run something else).
pub fn spec_hash(spec: &HostSpec) -> u64 {
    stable_hash(format!("{spec:?}").as_bytes())
}

/// Runs one host of `world` until stdin closes or the node halts.
pub fn run(world: &World, args: HostArgs) -> Result<(), String> {
    let spec = world.hosts.iter().find(|host| host.name == args.name).cloned();
    let spec = spec.ok_or_else(|| format!("no host {} in the scenario", args.name))?;
    if spec_hash(&spec) != args.spec_hash {
        return Err(format!(
            "host {}: the scenario file no longer describes the host the engine started",
            spec.name
        ));
    }
    let own = *args.addresses.get(&spec.name).ok_or_else(|| format!("no address for {}", spec.name))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.trace)
        .map_err(|error| format!("{}: {error}", args.trace.display()))?;
    let observer = FileObserver { file: RefCell::new(file), scope: world.trace_scope.clone() };
    let host_seed = host_seed(args.seed, &spec.name, args.boot);
    let net = NamedNet { sockets: TokioNet::new(own), addresses: Rc::new(args.addresses.clone()) };
    let env = HostEnv::new(
        spec.name.clone(),
        net,
        Rc::new(RunClock { start_ns: args.run_start_ns }),
        Rc::new(RootedDisk { root: args.disk.clone() }),
        Rc::new(observer),
        host_seed,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    tokio::task::LocalSet::new().block_on(&runtime, boot(env, spec.kind, args.boot));
    Ok(())
}

async fn boot(env: HostEnv<NamedNet>, kind: HostKind, boot: u32) {
    let (control, control_rx) = mpsc::unbounded_channel();
    let agent = Rc::new(AgentControl::default());
    let orders = follow_orders(env.clone(), control, agent.clone());
    let unserved = record_unserved(env.clone(), agent.clone());
    let last_look = (env.clone(), agent.clone());
    // Loss is the network's (nftables), not the host's own model.
    let handles = NodeHandles { faults: Rc::default(), control: control_rx, agent };
    // Refused before a real run starts: no attacker gets here, and there is no wire to tap.
    let host = crate::engines::boot_host(env, kind, handles, Default::default(), boot);
    tokio::select! {
        biased;
        () = orders => {}
        () = host => {}
        () = unserved => {}
    }
    // A node that halted (a `stop` of a stalled serf) may leave some the poll did not see.
    let (env, agent) = last_look;
    record_unserved_now(&env, &agent);
}

/// How often a real host looks for commands a killed serf never took.
const UNSERVED_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Records as refused the commands a serf killed while stopped never took, as the simulators
/// do (a crash of the host's process takes them with it unrecorded).
async fn record_unserved(env: HostEnv<NamedNet>, agent: Rc<AgentControl>) {
    let mut poll = tokio::time::interval(UNSERVED_POLL);
    loop {
        poll.tick().await;
        record_unserved_now(&env, &agent);
    }
}

fn record_unserved_now(env: &HostEnv<NamedNet>, agent: &AgentControl) {
    for command in agent.take_unserved() {
        env.observe(command.unserved());
    }
}

/// Delivers the engine's orders until stdin closes.
async fn follow_orders(
    env: HostEnv<NamedNet>,
    control: mpsc::UnboundedSender<Control>,
    agent: Rc<AgentControl>,
) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Order>(&line) {
            Ok(Order::Supervisor(order)) => {
                let _ = control.send(order);
            }
            // A command that finds no agent running fails, as `serf` does.
            Ok(Order::Agent(command)) if !agent.is_running() => env.observe(command.refused()),
            Ok(Order::Agent(command)) => {
                let refusal = command.queue_full();
                if !agent.send(command) {
                    env.observe(refusal);
                }
            }
            Err(error) => tracing::error!("an order the engine sent cannot be read: {error}: {line}"),
        }
    }
}
