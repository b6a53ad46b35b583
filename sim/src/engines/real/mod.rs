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

use super::{ActiveFaults, EngineError, Order, plan_record};
use crate::faults::{FaultKind, Phase, Plan, Planned};
use crate::trace::{Entry, Record, TRACE_RECORDS_MAX, Trace, WORLD, WorldEvent};
use crate::world::{HostKind, World};
use network::Network;
use rollcall::net::lossy::LinkFaults;
use rollcall::supervisor::driver::{Control, settle_early_orders};

/// Most hosts a real run starts: each is a process and a namespace, and a lab-sized
/// scenario is what the wall clock allows (real gossip timers run as configured).
pub const HOSTS_MAX: usize = 32;
/// How long a killed host process may take to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);
/// Lines of a failed host's log shown in the error.
const LOG_LINES_SHOWN: usize = 5;
/// A step that runs later than this after its planned time is reported (the wall clock is
/// shared with everything else on the machine).
const STEP_LATE_WARN: Duration = Duration::from_millis(100);

/// What the real engine cannot do with `world` (empty: it can run it).
pub fn unsupported(world: &World) -> Vec<String> {
    let mut refused = Vec::new();
    if world.hosts.len() > HOSTS_MAX {
        refused.push(format!(
            "{} hosts (at most {HOSTS_MAX}: one process and namespace each)",
            world.hosts.len()
        ));
    }
    if world.hosts.iter().any(|h| matches!(h.kind, HostKind::Attacker(_))) {
        refused.push("attacker hosts: their capture taps the simulated wire".into());
    }
    let faults = world.faults.iter().map(|fault| &fault.kind);
    if faults.clone().any(|kind| matches!(kind, FaultKind::Latency { .. })) {
        refused.push(
            "latency faults: real latency needs the kernel's netem qdisc, which the kernels rollcall runs on lack (`tc qdisc add ... netem` fails), so the real engine does not make latency"
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
    // Listening from here on: a Ctrl-C while the network is being made, or between two
    // waits, is kept until the run looks, and never kills the engine before its clean-up.
    let interrupt = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|error| EngineError::Real(format!("cannot handle Ctrl-C: {error}")))?
    };
    let run_id =
        format!("{}-{}", std::process::id(), RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let dir = fresh_dir(&std::env::temp_dir().join(format!("rollcall-real-{run_id}")))?;
    let names: Vec<String> = world.hosts.iter().map(|host| host.name.clone()).collect();
    let network = match Network::create(&run_id, &names) {
        Ok(network) => network,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(EngineError::Real(error));
        }
    };
    let mut real = RealRun {
        world,
        plan,
        seed,
        scenario: scenario.to_path_buf(),
        binary: binary.to_path_buf(),
        network,
        dir: dir.clone(),
        start_ns: host::monotonic_ns(),
        interrupt,
        hosts: BTreeMap::new(),
        active: ActiveFaults::default(),
        impaired: BTreeMap::new(),
        records: Vec::new(),
        latest: Duration::ZERO,
    };
    let ran = runtime.block_on(real.go());
    runtime.block_on(real.stop_all());
    let trace = ran.and_then(|()| real.merge());
    if real.latest > STEP_LATE_WARN {
        eprintln!("note: a planned step ran {} ms after its time", real.latest.as_millis());
    }
    drop(real);
    if trace.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("the hosts' logs and records are kept in {}", dir.display());
    }
    trace
}

/// A new, empty run folder. One with the same name can only be left by a dead process that
/// had this pid: it is removed, so no stale record or disk joins the run.
fn fresh_dir(dir: &Path) -> Result<PathBuf, EngineError> {
    let failed = |error: std::io::Error| EngineError::Real(format!("{}: {error}", dir.display()));
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(failed)?;
    }
    std::fs::create_dir(dir).map_err(failed)?;
    Ok(dir.to_path_buf())
}

/// Runs started by this process (each gets its own names).
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One host's process, if it runs, and its boots so far.
#[derive(Default)]
struct HostProcess {
    index: usize,
    /// Boots so far: a host crashed before its first boot has had none, as the simulators
    /// count them, so its seed stream and `host-booted` numbers match theirs.
    boots: u32,
    /// Its planned start has passed (a restart before it waits for it, as in turmoil).
    started: bool,
    child: Option<tokio::process::Child>,
    orders: Option<tokio::process::ChildStdin>,
    /// Supervisor orders given before the first boot: turmoil's supervisor queue exists
    /// from time zero and takes them at boot, so they wait here.
    early: Vec<Control>,
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
    interrupt: tokio::signal::unix::Signal,
    hosts: BTreeMap<String, HostProcess>,
    active: ActiveFaults,
    impaired: BTreeMap<String, LinkFaults>,
    /// The world's records; the hosts write theirs to files.
    records: Vec<Record>,
    /// The latest any planned step ran after its time.
    latest: Duration,
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
        // At equal times steps come first, then boots, as turmoil applies steps before it
        // polls the hosts (the sort is stable).
        let mut due: Vec<(Duration, Due)> =
            self.plan.steps.iter().enumerate().map(|(index, step)| (step.at, Due::Step(index))).collect();
        due.extend(self.plan.start_at.iter().map(|(name, at)| (*at, Due::Boot(name.clone()))));
        due.sort_by_key(|(at, _)| *at);
        let plan = self.plan;
        for (at, what) in due.into_iter().filter(|(at, _)| *at < self.world.duration) {
            self.wait_until(at).await?;
            self.latest = self.latest.max(self.elapsed().saturating_sub(at));
            match what {
                Due::Boot(name) => self.boot(&name).await?,
                Due::Step(index) => self.step(&plan.steps[index]).await?,
            }
            self.check_exits()?;
        }
        self.wait_until(self.world.duration).await?;
        self.check_exits()
    }

    /// Fails the run when a host process ended by itself with an error: it could not start
    /// (bad arguments, a port taken) or it panicked; as a panic in the simulator fails a
    /// simulated run. A node that halts (a `stop` fault) ends with 0 and is down, as in
    /// turmoil.
    fn check_exits(&mut self) -> Result<(), EngineError> {
        let at_ms = self.elapsed().as_millis() as u64;
        for (name, process) in &mut self.hosts {
            let Some(child) = process.child.as_mut() else { continue };
            let Ok(Some(status)) = child.try_wait() else { continue };
            process.child = None;
            process.orders = None;
            if !status.success() {
                let log = self.dir.join(format!("h{}.log", process.index));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(LOG_LINES_SHOWN).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let message = format!("host {name} exited with {status}: {}", tail.join(" | "));
                return Err(EngineError::Crashed { at_ms, message });
            }
        }
        Ok(())
    }

    /// Sleeps until `at` since the start; Ctrl-C, now or since the last wait, ends the run.
    async fn wait_until(&mut self, at: Duration) -> Result<(), EngineError> {
        let wait = at.saturating_sub(self.elapsed());
        tokio::select! {
            biased;
            _ = self.interrupt.recv() => Err(EngineError::Interrupted),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    async fn boot(&mut self, name: &str) -> Result<(), EngineError> {
        self.hosts.get_mut(name).expect("every planned host is listed").started = true;
        if self.active.is_crashed(name) {
            return Ok(());
        }
        self.spawn(name)?;
        let early = std::mem::take(&mut self.hosts.get_mut(name).expect("listed").early);
        for control in settle_early_orders(early) {
            self.send(name, &Order::Supervisor(control)).await;
        }
        Ok(())
    }

    async fn step(&mut self, step: &Planned) -> Result<(), EngineError> {
        let plan = self.plan;
        let fault = &plan.faults[step.fault].kind;
        let start = step.phase == Phase::Start;
        if let Some(record) = WorldEvent::phase(step.fault, fault, step.phase) {
            self.record(WORLD, record);
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
                for (host, order) in self.active.orders(step.fault, fault, step.phase) {
                    self.send(host, &order).await;
                }
                Ok(())
            }
        }
    }

    fn partition(&mut self, a: &[String], b: &[String], oneway: bool, cut: bool) -> Result<(), EngineError> {
        for group in self.active.partition(a, b, oneway, cut) {
            self.network.set_links(group.links(), cut).map_err(EngineError::Real)?;
            self.record(WORLD, WorldEvent::links(group, cut));
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
                // Dead first, then recorded: no record of the host's can come after its crash.
                self.kill(host).await;
                let process = self.hosts.get_mut(host).expect("listed");
                process.early.clear();
                self.record(host, WorldEvent::HostCrashed);
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
        // Its next boot appends to the same file: a line the kill cut short must not end up
        // in the middle of it.
        let trace = self.dir.join(format!("h{}.jsonl", process.index));
        if let Err(error) = trim_torn_line(&trace) {
            tracing::warn!(%error, file = %trace.display(), "cannot trim a host's trace");
        }
    }

    /// Writes an order to the host's stdin. With no process to take it: an order to the
    /// supervisor of a host yet to boot waits for the boot (turmoil's supervisor queue exists
    /// from time zero), one to a host that is down is lost, and a command to serf fails
    /// (`command-refused`), as it does on a host whose serf is not running.
    async fn send(&mut self, name: &str, order: &Order) {
        let crashed = self.active.is_crashed(name);
        let process = self.hosts.get_mut(name).expect("every planned host is listed");
        let Some(stdin) = process.orders.as_mut() else {
            match order {
                Order::Supervisor(control) if !process.started && !crashed => {
                    process.early.push(control.clone())
                }
                Order::Agent(command) => self.refuse(name, command),
                Order::Supervisor(_) => {}
            }
            return;
        };
        let mut line = serde_json::to_string(order).expect("orders serialize");
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() {
            // The process ended (a halted node): like a host that is down.
            self.hosts.get_mut(name).expect("listed").orders = None;
            if let Order::Agent(command) = order {
                self.refuse(name, command);
            }
        }
    }

    /// Records a serf command that found no process to take it.
    fn refuse(&mut self, name: &str, command: &rollcall::gossip::driver::Command) {
        let t_us = self.elapsed().as_micros() as u64;
        self.records.push(Record { t_us, host: name.to_string(), event: Entry::Host(command.refused()) });
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
                // A host that never booted (crashed before its start until the end).
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(EngineError::Real(format!("{}: {error}", path.display()))),
            };
            let lines: Vec<&str> = text.lines().collect();
            for (number, line) in lines.iter().enumerate() {
                let record: Record = match serde_json::from_str(line) {
                    Ok(record) => record,
                    // The last line of a host killed in the middle of writing it.
                    Err(_) if number + 1 == lines.len() && !text.ends_with('\n') => break,
                    Err(error) => {
                        return Err(EngineError::Real(format!("{}:{}: {error}", path.display(), number + 1)));
                    }
                };
                if records.len() >= TRACE_RECORDS_MAX {
                    return Err(EngineError::TraceFull { at_ms: record.t_us / 1000 });
                }
                if record.t_us <= end_us {
                    records.push(record);
                }
            }
        }
        // Stable: the plan stays first, and each host's records keep their order.
        records.sort_by_key(|record| record.t_us);
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

/// Cuts `path` back to its last complete line.
fn trim_torn_line(path: &Path) -> std::io::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let whole = bytes.iter().rposition(|byte| *byte == b'\n').map_or(0, |at| at + 1);
    if whole < bytes.len() {
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(whole as u64)?;
    }
    Ok(())
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}
