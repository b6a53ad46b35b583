//! The real engine: each host of the world is a real process (`rollcall-sim host`, running
//! the same node or client code as the simulator) in its own network namespace, on real
//! sockets and the wall clock. The fault plan is carried out at its planned times:
//! partitions and loss as nftables rules, a host crash as SIGKILL of the host's process
//! group and a restart with its disk kept, the rest as orders to the host's supervisor or
//! gossip agent. Every host writes its records to a file; the engine merges them with its
//! own world records into one trace, judged by the same invariants.
//!
//! A real run is not replayable byte for byte: the seed fixes the plan and the hosts' random
//! streams, not the kernel's scheduling.

pub mod host;
pub mod network;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use super::{ActiveFaults, EngineError, Order, order, plan_record};
use crate::faults::{FaultKind, Phase, Plan, Planned};
use crate::trace::{Entry, Record, TRACE_RECORDS_MAX, Trace, WORLD, WorldEvent};
use crate::world::World;
use network::Network;
use rollcall::net::lossy::LinkFaults;

/// Most hosts a real run starts: each is a process and a namespace, and a lab-sized
/// scenario is what the wall clock allows (real gossip timers run as configured).
pub const HOSTS_MAX: usize = 32;
/// How long a killed host process may take to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// What the real engine cannot do with `world` (empty: it can run it).
pub fn unsupported(world: &World) -> Vec<String> {
    let mut refused = Vec::new();
    if world.hosts.len() > HOSTS_MAX {
        refused.push(format!(
            "{} hosts (at most {HOSTS_MAX}: one process and namespace each)",
            world.hosts.len()
        ));
    }
    let faults = world.faults.iter().map(|fault| &fault.kind);
    if faults.clone().any(|kind| matches!(kind, FaultKind::Latency { .. })) {
        refused.push(
            "latency faults: this kernel has no netem qdisc (`tc qdisc add ... netem` fails), so added latency cannot be made real"
                .into(),
        );
    }
    if faults.clone().any(|kind| matches!(kind, FaultKind::HostCrash { mid_render: true, .. })) {
        refused.push("mid-render crashes: they wait for a rendering seen in the live trace, which real hosts write to files".into());
    }
    refused
}

/// The `rollcall-sim` executable the hosts run as: `ROLLCALL_SIM_BIN`, else this program.
pub fn host_binary() -> Result<PathBuf, EngineError> {
    match std::env::var_os("ROLLCALL_SIM_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => std::env::current_exe()
            .map_err(|error| EngineError::Real(format!("cannot find rollcall-sim: {error}"))),
    }
}

/// Runs `world` under `plan` on real processes. `scenario` is the file the hosts load their
/// description from; `binary` is the `rollcall-sim` executable they run as.
pub fn run(
    world: &World,
    plan: &Plan,
    seed: u64,
    scenario: &Path,
    binary: &Path,
) -> Result<Trace, EngineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| EngineError::Real(format!("runtime: {error}")))?;
    let names: Vec<String> = world.hosts.iter().map(|host| host.name.clone()).collect();
    let run_id =
        format!("{}-{}", std::process::id(), RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let dir = std::env::temp_dir().join(format!("rollcall-real-{run_id}"));
    std::fs::create_dir_all(&dir)
        .map_err(|error| EngineError::Real(format!("{}: {error}", dir.display())))?;
    let network = Network::create(&run_id, &names).map_err(EngineError::Real)?;
    let mut real = RealRun {
        world,
        plan,
        seed,
        scenario: scenario.to_path_buf(),
        binary: binary.to_path_buf(),
        network,
        dir: dir.clone(),
        start_ns: host::monotonic_ns(),
        hosts: BTreeMap::new(),
        active: ActiveFaults::default(),
        impaired: BTreeMap::new(),
        records: Vec::new(),
    };
    let ran = runtime.block_on(real.go());
    runtime.block_on(real.stop_all());
    let trace = ran.and_then(|()| real.merge());
    drop(real);
    if trace.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("the hosts' logs and records are kept in {}", dir.display());
    }
    trace
}

/// Runs started by this process (each gets its own names).
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One host's process, if it runs, and its boots so far.
#[derive(Default)]
struct HostProcess {
    index: usize,
    boots: u32,
    /// Its planned start has passed (a restart before it waits for it, as in turmoil).
    started: bool,
    child: Option<tokio::process::Child>,
    orders: Option<tokio::process::ChildStdin>,
}

/// What happens at a planned time.
enum Due {
    Boot(String),
    Step(usize),
}

struct RealRun<'a> {
    world: &'a World,
    plan: &'a Plan,
    seed: u64,
    scenario: PathBuf,
    binary: PathBuf,
    network: Network,
    dir: PathBuf,
    start_ns: u64,
    hosts: BTreeMap<String, HostProcess>,
    active: ActiveFaults,
    impaired: BTreeMap<String, LinkFaults>,
    /// The world's records; the hosts write theirs to files.
    records: Vec<Record>,
}

impl RealRun<'_> {
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(host::monotonic_ns().saturating_sub(self.start_ns))
    }

    fn record(&mut self, host: &str, event: WorldEvent) {
        let t_us = self.elapsed().as_micros() as u64;
        self.records.push(Record { t_us, host: host.to_string(), event: Entry::World(event) });
    }

    async fn go(&mut self) -> Result<(), EngineError> {
        for (index, host) in self.world.hosts.iter().enumerate() {
            self.hosts.insert(host.name.clone(), HostProcess { index, ..HostProcess::default() });
        }
        self.records.push(Record {
            t_us: 0,
            host: WORLD.to_string(),
            event: Entry::World(plan_record(self.world, self.plan)),
        });
        let mut due: Vec<(Duration, Due)> =
            self.plan.start_at.iter().map(|(name, at)| (*at, Due::Boot(name.clone()))).collect();
        due.extend(self.plan.steps.iter().enumerate().map(|(index, step)| (step.at, Due::Step(index))));
        // Stable: at equal times boots come first, then steps in plan order.
        due.sort_by_key(|(at, _)| *at);
        let plan = self.plan;
        for (at, what) in due.into_iter().filter(|(at, _)| *at < self.world.duration) {
            self.wait_until(at).await?;
            match what {
                Due::Boot(name) => self.boot(&name)?,
                Due::Step(index) => self.step(&plan.steps[index]).await?,
            }
        }
        self.wait_until(self.world.duration).await
    }

    /// Sleeps until `at` since the start; Ctrl-C ends the run.
    async fn wait_until(&self, at: Duration) -> Result<(), EngineError> {
        let wait = at.saturating_sub(self.elapsed());
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => Err(EngineError::Interrupted),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    fn boot(&mut self, name: &str) -> Result<(), EngineError> {
        self.hosts.get_mut(name).expect("every planned host is listed").started = true;
        if self.active.is_crashed(name) {
            return Ok(());
        }
        self.spawn(name)
    }

    async fn step(&mut self, step: &Planned) -> Result<(), EngineError> {
        let plan = self.plan;
        let fault = &plan.faults[step.fault].kind;
        let start = step.phase == Phase::Start;
        match step.phase {
            Phase::Start => {
                self.record(WORLD, WorldEvent::FaultStarted { id: step.fault, fault: fault.clone() })
            }
            Phase::End => self.record(WORLD, WorldEvent::FaultEnded { id: step.fault, fault: fault.clone() }),
            Phase::Repeat => {}
        }
        match fault {
            FaultKind::Partition { a, b, oneway } => self.partition(a, b, *oneway, start),
            FaultKind::Loss { hosts, .. } | FaultKind::Latency { hosts, .. } => {
                for host in hosts {
                    self.active.window(fault, host, step.fault, start);
                    self.impair(host)?;
                }
                Ok(())
            }
            FaultKind::HostCrash { host, .. } => self.crash(host, start).await,
            _ => {
                if let Some((host, order)) = order(fault, step.phase) {
                    self.send(host, &order).await;
                }
                Ok(())
            }
        }
    }

    fn partition(&mut self, a: &[String], b: &[String], oneway: bool, cut: bool) -> Result<(), EngineError> {
        for group in self.active.partition(a, b, oneway, cut) {
            for (from, to) in group.links() {
                self.network.set_link(from, to, cut).map_err(EngineError::Real)?;
            }
            let (from, to) = (group.from, group.to);
            let event =
                if cut { WorldEvent::LinkCut { from, to } } else { WorldEvent::LinkRepaired { from, to } };
            self.record(WORLD, event);
        }
        Ok(())
    }

    /// Sets a host's loss from every window active on it, and records the result.
    fn impair(&mut self, host: &str) -> Result<(), EngineError> {
        let faults = self.active.link_faults(host);
        if self.impaired.get(host).copied().unwrap_or_default() == faults {
            return Ok(());
        }
        self.impaired.insert(host.to_string(), faults);
        self.network.set_loss(host, faults.loss_rate).map_err(EngineError::Real)?;
        let record = WorldEvent::GossipImpaired { loss_rate: faults.loss_rate, extra_latency_ms: 0 };
        self.record(host, record);
        Ok(())
    }

    async fn crash(&mut self, host: &str, start: bool) -> Result<(), EngineError> {
        match self.active.crash(host, start) {
            Some(true) => {
                self.record(host, WorldEvent::HostCrashed);
                self.kill(host).await;
            }
            Some(false) => {
                self.record(host, WorldEvent::HostRestarted);
                if self.hosts[host].started {
                    self.spawn(host)?;
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Starts the host's next boot in its namespace.
    fn spawn(&mut self, name: &str) -> Result<(), EngineError> {
        let world = self.world;
        let spec = world.hosts.iter().find(|host| host.name == name).expect("a host of the world");
        let process = self.hosts.get_mut(name).expect("every host is listed");
        process.boots += 1;
        let (index, boot) = (process.index, process.boots);
        let file = |suffix: &str| self.dir.join(format!("h{index}{suffix}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file(".log"))
            .map_err(|error| EngineError::Real(format!("{}: {error}", file(".log").display())))?;
        let mut command = std::process::Command::new("ip");
        command.args(["netns", "exec", self.network.namespace(name)]).arg(&self.binary).arg("host");
        command.arg(&self.scenario).args(["--name", name]);
        command.args(["--seed", &self.seed.to_string(), "--boot", &boot.to_string()]);
        command.args(["--pipeline", world.pipeline().name()]);
        command.args(["--run-start-ns", &self.start_ns.to_string()]);
        command.arg("--trace").arg(file(".jsonl")).arg("--disk").arg(file("-disk"));
        command.args(["--spec-hash", &host::spec_hash(spec).to_string()]);
        for (host, address) in self.network.addresses() {
            command.args(["--address", &format!("{host}={address}")]);
        }
        // Its own process group: a crash kills everything it started, and Ctrl-C at the
        // terminal reaches the engine alone, which then cleans up.
        command.process_group(0).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(log);
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| EngineError::Real(format!("cannot start host {name}: {error}")))?;
        let process = self.hosts.get_mut(name).expect("every host is listed");
        process.orders = child.stdin.take();
        process.child = Some(child);
        Ok(())
    }

    /// SIGKILL to the host's process group, then reaps it.
    async fn kill(&mut self, name: &str) {
        let process = self.hosts.get_mut(name).expect("every host is listed");
        process.orders = None;
        let Some(mut child) = process.child.take() else { return };
        kill_group(&child);
        let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
    }

    /// Writes an order to the host's stdin; a host that is down has nobody to take it.
    async fn send(&mut self, name: &str, order: &Order) {
        let Some(stdin) = self.hosts.get_mut(name).and_then(|process| process.orders.as_mut()) else {
            return;
        };
        let mut line = serde_json::to_string(order).expect("orders serialize");
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() {
            // The process ended (a halted node): like a host that is down.
            self.hosts.get_mut(name).expect("listed").orders = None;
        }
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in names {
            self.kill(&name).await;
        }
    }

    /// The world's records and every host's, in time order, up to the run's end.
    fn merge(&mut self) -> Result<Trace, EngineError> {
        let end_us = self.world.duration.as_micros() as u64;
        let mut records = std::mem::take(&mut self.records);
        for process in self.hosts.values() {
            let path = self.dir.join(format!("h{}.jsonl", process.index));
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Never booted (a crash before its start that outlasted the run).
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(EngineError::Real(format!("{}: {error}", path.display()))),
            };
            for (number, line) in text.lines().enumerate() {
                let record: Record = serde_json::from_str(line).map_err(|error| {
                    EngineError::Real(format!("{}:{}: {error}", path.display(), number + 1))
                })?;
                if record.t_us <= end_us {
                    records.push(record);
                }
            }
        }
        // Stable: the plan stays first, and each host's records keep their order.
        records.sort_by_key(|record| record.t_us);
        if records.len() > TRACE_RECORDS_MAX {
            return Err(EngineError::TraceFull { at_ms: records[TRACE_RECORDS_MAX].t_us / 1000 });
        }
        Ok(Trace { records })
    }
}

impl Drop for RealRun<'_> {
    fn drop(&mut self) {
        // An error or a panic mid-run: no host outlives the run (the network's own drop then
        // removes the namespaces).
        for process in self.hosts.values() {
            if let Some(child) = &process.child {
                kill_group(child);
            }
        }
        let _ = std::io::stderr().flush();
    }
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}
