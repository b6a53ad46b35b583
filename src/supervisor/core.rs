//! The sans-io supervisor of one node: s6-supervise for each service and s6-overlay's stages
//! for the node. Exits, finish results, readiness, s6-svc commands and timers go in; actions
//! come out. No processes, tasks or clocks in here (../shared/reference/supervisor.md).
//!
//! s6 rules kept here:
//! - a service that dies runs its `finish` (told the exit code, or 256 and the signal), which
//!   is killed after `timeout-finish`; finish exiting 125 is a permanent failure: want-up is
//!   cleared and only an explicit up starts it again;
//! - a wanted-up service restarts 1 s after its finish ended, or 1 s after it became ready
//!   (readiness notification) if that is later, so two starts are always 1 s apart; s6 has no
//!   backoff (an optional one is ours, off by default);
//! - s6-svc: up, down (down-signal, then SIGCONT, then SIGKILL after `timeout-kill`), once,
//!   once-after, restart, any signal (never changing want-up), exit; a `down` file (not
//!   normally up); a bounded death tally;
//! - s6-overlay: init steps (cont-init.d) one after another, then the longruns, then the main
//!   program (CMD); when the main program ends the node shuts down with its exit code (128 +
//!   the signal number if a signal killed it): TERM to the services in reverse start order,
//!   KILL after the services' grace time, halt after the kill grace time. Nothing starts
//!   during a shutdown.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub use super::signal::{Exit, Signal};

/// s6's minimum time between two starts of one service.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);
/// The finish exit code that means "do not restart".
pub const FINISH_PERMANENT_FAILURE: i32 = 125;
/// s6's default `timeout-finish`.
pub const TIMEOUT_FINISH_DEFAULT: Duration = Duration::from_secs(5);
/// s6's default `max-death-tally`.
pub const DEATH_TALLY_DEFAULT: usize = 100;
/// s6's cap on `max-death-tally`.
pub const DEATH_TALLY_MAX: usize = 4096;
/// s6-overlay's `S6_SERVICES_GRACETIME`.
pub const SERVICES_GRACETIME_DEFAULT: Duration = Duration::from_secs(3);
/// s6-overlay's `S6_KILL_GRACETIME`.
pub const KILL_GRACETIME_DEFAULT: Duration = Duration::from_secs(3);

/// What a service is to s6-overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `cont-init.d` step: run once, in order, before any longrun.
    Init,
    /// A supervised longrun (`services.d`).
    Longrun,
    /// The main program (CMD): never restarted; its end halts the node.
    Main,
}

/// An exponential restart backoff. s6 has none; this is rollcall's, off by default: each
/// death within `window` of the previous deaths doubles the extra delay, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Extra delay after the second death in the window.
    pub base: Duration,
    /// The most extra delay.
    pub max: Duration,
    /// Deaths older than this do not count.
    pub window: Duration,
}

impl Backoff {
    /// The extra delay after `recent` deaths (the last one included).
    pub fn extra(&self, recent: usize) -> Duration {
        if recent < 2 {
            return Duration::ZERO;
        }
        let doublings = (recent - 2).min(31) as u32;
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// One service directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service directory name.
    pub name: String,
    /// Init step, longrun or main program.
    pub kind: Kind,
    /// Whether it has a `finish` script.
    pub has_finish: bool,
    /// `timeout-finish`: finish is killed after this long (zero: never).
    pub timeout_finish: Duration,
    /// `timeout-kill`: after a down, SIGKILL if still running this long later (zero: never).
    pub timeout_kill: Duration,
    /// `down-signal`: what `down` and `restart` send.
    pub down_signal: Signal,
    /// No `down` file: started when the supervisor starts.
    pub normally_up: bool,
    /// `notification-fd`: the service says when it is ready.
    pub notification: bool,
    /// Time between a death (or a readiness) and the next start.
    pub restart_delay: Duration,
    /// Optional exponential backoff (rollcall's, not s6's).
    pub backoff: Option<Backoff>,
    /// `max-death-tally`.
    pub max_death_tally: usize,
}

impl ServiceSpec {
    /// A longrun with s6's defaults.
    pub fn longrun(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: Kind::Longrun,
            has_finish: false,
            timeout_finish: TIMEOUT_FINISH_DEFAULT,
            timeout_kill: Duration::ZERO,
            down_signal: Signal::Term,
            normally_up: true,
            notification: false,
            restart_delay: RESTART_DELAY,
            backoff: None,
            max_death_tally: DEATH_TALLY_DEFAULT,
        }
    }

    /// An init step.
    pub fn init(name: impl Into<String>) -> Self {
        Self { kind: Kind::Init, ..Self::longrun(name) }
    }

    /// The main program.
    pub fn main(name: impl Into<String>) -> Self {
        Self { kind: Kind::Main, ..Self::longrun(name) }
    }
}

/// Node-wide settings (s6-overlay's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// `S6_SERVICES_GRACETIME`: TERM to KILL during a shutdown.
    pub services_gracetime: Duration,
    /// `S6_KILL_GRACETIME`: KILL to halt.
    pub kill_gracetime: Duration,
    /// `S6_BEHAVIOUR_IF_STAGE2_FAILS=2`: a failing init step halts the node (default:
    /// carry on, s6-overlay's 0).
    pub init_failure_halts: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            services_gracetime: SERVICES_GRACETIME_DEFAULT,
            kill_gracetime: KILL_GRACETIME_DEFAULT,
            init_failure_halts: false,
        }
    }
}

/// A service's state, as s6-svstat would tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Not running and not about to.
    Down,
    /// Running, not ready yet (services with readiness notification).
    Starting,
    /// Running (and ready).
    Up,
    /// Its run ended; `finish` runs.
    Finishing,
    /// Waiting for its restart time.
    Waiting,
    /// Finish exited 125: down until an explicit up.
    Failed,
}

impl ServiceState {
    /// Whether a run of the service is alive.
    pub fn is_running(self) -> bool {
        matches!(self, ServiceState::Starting | ServiceState::Up)
    }
}

/// s6-svc commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// `-u`: want up; start if down.
    Up,
    /// `-d`: want down; send the down signal (then SIGCONT).
    Down,
    /// `-o`: start if down, do not restart after it dies.
    Once,
    /// `-O`: do not restart after the next death; do not start.
    OnceAfter,
    /// `-r`: send the down signal; it restarts if wanted up.
    Restart,
    /// `-k`, `-t`, `-h`, `-i`, ...: send a signal; want-up does not change.
    Signal(Signal),
    /// `-x`: the service's supervisor exits once the service is down.
    Exit,
}

/// A timer the supervisor asked for; stale ones are ignored when they fire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Start the service again.
    Restart { service: String, generation: u64 },
    /// Its finish script ran too long.
    FinishTimeout { service: String, generation: u64 },
    /// It did not die after its down signal.
    KillTimeout { service: String, run: u64 },
    /// The services' grace time is over: KILL what is left.
    ShutdownKill,
    /// The kill grace time is over: halt.
    ShutdownHalt,
}

/// What the supervisor asks its driver to do, and what it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start one run of the service.
    Spawn { service: String },
    /// Send a signal to the service's running process.
    Signal { service: String, signal: Signal },
    /// Run the service's finish script with these arguments.
    RunFinish { service: String, code: i32, signal: i32 },
    /// The finish script ran out of time: kill it.
    KillFinish { service: String },
    /// Fire `timer` after `after`.
    SetTimer { timer: Timer, after: Duration },
    /// The service said it is ready.
    Ready { service: String },
    /// The service is down and will not restart (wanted down, or once).
    Down { service: String },
    /// Finish exited 125: the service will not restart until told to.
    Failed { service: String },
    /// The service's supervisor exited (`-x`): no more commands for it.
    Exited { service: String },
    /// The node is shutting down (s6-overlay's stage 3) and will halt with `code`.
    ShutdownStarted { code: i32 },
    /// Every service is stopped: the node halts with `code`.
    Halt { code: i32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Running init step number `next` of the init steps.
    Init {
        next: usize,
    },
    Running,
    ShuttingDown {
        code: i32,
    },
    Halted,
}

#[derive(Clone, Debug)]
struct Slot {
    spec: ServiceSpec,
    state: ServiceState,
    want_up: bool,
    /// `-o`/`-O`: do not restart after the next death.
    once: bool,
    /// Identifies the current restart or finish timer.
    generation: u64,
    /// Counts runs, to tell kill timers of an earlier run.
    runs: u64,
    ready_at: Option<Duration>,
    last_exit: Option<Exit>,
    deaths: VecDeque<(Duration, Exit)>,
    exit_when_down: bool,
    exited: bool,
}

/// The supervision tree of one node.
pub struct Supervisor {
    services: BTreeMap<String, Slot>,
    order: Vec<String>,
    settings: NodeSettings,
    stage: Stage,
}

impl Supervisor {
    /// A supervisor for these services (init steps, longruns and main run in this order).
    pub fn new(specs: Vec<ServiceSpec>, settings: NodeSettings) -> Self {
        assert!(specs.iter().filter(|s| s.kind == Kind::Main).count() <= 1, "at most one main program");
        let order: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let services: BTreeMap<String, Slot> = specs
            .into_iter()
            .map(|spec| {
                let mut spec = spec;
                spec.max_death_tally = spec.max_death_tally.clamp(1, DEATH_TALLY_MAX);
                let slot = Slot {
                    want_up: spec.normally_up,
                    spec,
                    state: ServiceState::Down,
                    once: false,
                    generation: 0,
                    runs: 0,
                    ready_at: None,
                    last_exit: None,
                    deaths: VecDeque::new(),
                    exit_when_down: false,
                    exited: false,
                };
                (slot.spec.name.clone(), slot)
            })
            .collect();
        assert_eq!(services.len(), order.len(), "service names are unique");
        Self { services, order, settings, stage: Stage::Init { next: 0 } }
    }

    /// Starts the node: the first init step, or the services if there is none.
    pub fn start(&mut self, now: Duration, out: &mut Vec<Action>) {
        assert_eq!(self.stage, Stage::Init { next: 0 }, "start is called once");
        self.next_init(0, now, out);
    }

    /// Runs init step `index` onwards, then the longruns and the main program.
    fn next_init(&mut self, index: usize, now: Duration, out: &mut Vec<Action>) {
        let init = self
            .order
            .iter()
            .enumerate()
            .skip(index)
            .find(|(_, name)| self.services[*name].spec.kind == Kind::Init);
        if let Some((at, name)) = init {
            let name = name.clone();
            self.stage = Stage::Init { next: at + 1 };
            self.spawn(&name, now, out);
            return;
        }
        self.stage = Stage::Running;
        for name in self.order.clone() {
            let slot = &self.services[&name];
            if slot.spec.kind != Kind::Init && slot.want_up {
                self.spawn(&name, now, out);
            }
        }
    }

    fn spawn(&mut self, name: &str, _now: Duration, out: &mut Vec<Action>) {
        let slot = self.services.get_mut(name).expect("spawned services exist");
        slot.state = if slot.spec.notification { ServiceState::Starting } else { ServiceState::Up };
        slot.runs += 1;
        slot.ready_at = None;
        out.push(Action::Spawn { service: name.to_string() });
    }

    /// One run of `service` ended with `exit`.
    pub fn handle_exit(&mut self, service: &str, exit: Exit, now: Duration, out: &mut Vec<Action>) {
        let Some(slot) = self.services.get_mut(service).filter(|s| s.state.is_running()) else { return };
        slot.last_exit = Some(exit);
        slot.deaths.push_back((now, exit));
        while slot.deaths.len() > slot.spec.max_death_tally {
            slot.deaths.pop_front();
        }
        slot.generation += 1;
        if slot.spec.kind == Kind::Longrun {
            // Finish runs after every death of a longrun, during a shutdown too.
            self.run_finish(service, exit, now, out);
            return;
        }
        slot.state = ServiceState::Down;
        match (slot.spec.kind, self.stage) {
            (_, Stage::ShuttingDown { .. }) => self.halt_if_stopped(out),
            (Kind::Main, _) => self.shutdown(exit.node_code(), out),
            (Kind::Init, Stage::Init { next }) => {
                if exit != Exit::Code(0) && self.settings.init_failure_halts {
                    self.shutdown(exit.node_code(), out);
                } else {
                    self.next_init(next, now, out);
                }
            }
            _ => {}
        }
    }

    fn run_finish(&mut self, service: &str, exit: Exit, now: Duration, out: &mut Vec<Action>) {
        let slot = self.services.get_mut(service).expect("finishing services exist");
        if !slot.spec.has_finish {
            self.after_finish(service, None, now, out);
            return;
        }
        slot.state = ServiceState::Finishing;
        let (code, signal) = exit.finish_args();
        out.push(Action::RunFinish { service: service.to_string(), code, signal });
        if !slot.spec.timeout_finish.is_zero() {
            let timer = Timer::FinishTimeout { service: service.to_string(), generation: slot.generation };
            out.push(Action::SetTimer { timer, after: slot.spec.timeout_finish });
        }
    }

    /// The finish script of `service` exited with `code`.
    pub fn handle_finish_exit(&mut self, service: &str, code: i32, now: Duration, out: &mut Vec<Action>) {
        if self.services.get(service).is_some_and(|s| s.state == ServiceState::Finishing) {
            self.after_finish(service, Some(code), now, out);
        }
    }

    /// Finish is done (`None`: there was none, or it was killed): down, failed, or a restart.
    fn after_finish(&mut self, service: &str, code: Option<i32>, now: Duration, out: &mut Vec<Action>) {
        let stage = self.stage;
        let slot = self.services.get_mut(service).expect("finished services exist");
        let name = service.to_string();
        if code == Some(FINISH_PERMANENT_FAILURE) {
            slot.want_up = false;
            slot.state = ServiceState::Failed;
            out.push(Action::Failed { service: name });
        } else if !matches!(stage, Stage::Running) {
            slot.state = ServiceState::Down;
        } else if !slot.want_up || slot.once {
            slot.want_up = false;
            slot.once = false;
            slot.state = ServiceState::Down;
            out.push(Action::Down { service: name });
        } else {
            slot.state = ServiceState::Waiting;
            slot.generation += 1;
            let timer = Timer::Restart { service: name, generation: slot.generation };
            out.push(Action::SetTimer { timer, after: restart_wait(slot, now) });
        }
        self.exit_if_down(service, out);
        if matches!(stage, Stage::ShuttingDown { .. }) {
            self.halt_if_stopped(out);
        }
    }

    fn exit_if_down(&mut self, service: &str, out: &mut Vec<Action>) {
        let slot = self.services.get_mut(service).expect("known service");
        let down = matches!(slot.state, ServiceState::Down | ServiceState::Failed);
        if slot.exit_when_down && down && !slot.exited {
            slot.exited = true;
            out.push(Action::Exited { service: service.to_string() });
        }
    }

    /// `service` said it is ready (s6's notification-fd).
    pub fn handle_ready(&mut self, service: &str, now: Duration, out: &mut Vec<Action>) {
        let Some(slot) = self.services.get_mut(service).filter(|s| s.state == ServiceState::Starting) else {
            return;
        };
        slot.state = ServiceState::Up;
        slot.ready_at = Some(now);
        out.push(Action::Ready { service: service.to_string() });
    }

    /// A timer fired.
    pub fn handle_timer(&mut self, timer: Timer, now: Duration, out: &mut Vec<Action>) {
        match timer {
            Timer::Restart { service, generation } => {
                let due = self.services.get(&service).is_some_and(|s| {
                    s.generation == generation && s.state == ServiceState::Waiting && s.want_up
                });
                if due && self.stage == Stage::Running {
                    self.spawn(&service, now, out);
                }
            }
            Timer::FinishTimeout { service, generation } => {
                let due = self
                    .services
                    .get(&service)
                    .is_some_and(|s| s.generation == generation && s.state == ServiceState::Finishing);
                if due {
                    out.push(Action::KillFinish { service: service.clone() });
                    self.after_finish(&service, None, now, out);
                }
            }
            Timer::KillTimeout { service, run } => {
                if self.services.get(&service).is_some_and(|s| s.runs == run && s.state.is_running()) {
                    out.push(Action::Signal { service, signal: Signal::Kill });
                }
            }
            Timer::ShutdownKill => self.kill_all(out),
            Timer::ShutdownHalt => self.halt(out),
        }
    }

    /// An s6-svc command for `service`. Nothing starts while the node shuts down.
    pub fn command(&mut self, service: &str, command: Command, now: Duration, out: &mut Vec<Action>) {
        let running = self.stage == Stage::Running;
        let Some(slot) = self.services.get_mut(service).filter(|s| !s.exited && s.spec.kind == Kind::Longrun)
        else {
            return;
        };
        let state = slot.state;
        let startable = matches!(state, ServiceState::Down | ServiceState::Failed) && running;
        match command {
            Command::Up | Command::Once => {
                slot.want_up = true;
                slot.once = command == Command::Once;
                if startable {
                    self.spawn(service, now, out);
                }
            }
            Command::OnceAfter => slot.once = true,
            Command::Down => {
                slot.want_up = false;
                slot.once = false;
                if state == ServiceState::Waiting {
                    slot.generation += 1;
                    slot.state = ServiceState::Down;
                    out.push(Action::Down { service: service.to_string() });
                    self.exit_if_down(service, out);
                } else if state.is_running() {
                    self.stop(service, out);
                }
            }
            Command::Restart if state.is_running() => self.stop(service, out),
            Command::Signal(signal) if state.is_running() => {
                out.push(Action::Signal { service: service.to_string(), signal })
            }
            Command::Restart | Command::Signal(_) => {}
            Command::Exit => {
                slot.exit_when_down = true;
                self.exit_if_down(service, out);
            }
        }
    }

    /// The down signal, SIGCONT, and SIGKILL after `timeout-kill` if it is still alive.
    fn stop(&mut self, service: &str, out: &mut Vec<Action>) {
        let slot = &self.services[service];
        let name = service.to_string();
        out.push(Action::Signal { service: name.clone(), signal: slot.spec.down_signal });
        out.push(Action::Signal { service: name.clone(), signal: Signal::Cont });
        if !slot.spec.timeout_kill.is_zero() {
            let timer = Timer::KillTimeout { service: name, run: slot.runs };
            out.push(Action::SetTimer { timer, after: slot.spec.timeout_kill });
        }
    }

    /// s6-overlay's stage 3: nothing restarts, TERM to every running service in reverse start
    /// order, KILL after the services' grace time, halt after the kill grace time (or as soon
    /// as everything has stopped).
    pub fn shutdown(&mut self, code: i32, out: &mut Vec<Action>) {
        if matches!(self.stage, Stage::ShuttingDown { .. } | Stage::Halted) {
            return;
        }
        self.stage = Stage::ShuttingDown { code };
        out.push(Action::ShutdownStarted { code });
        for name in self.order.iter().rev() {
            let slot = self.services.get_mut(name).expect("ordered names are services");
            slot.want_up = false;
            if slot.state == ServiceState::Waiting {
                slot.generation += 1;
                slot.state = ServiceState::Down;
            }
            if slot.state.is_running() {
                out.push(Action::Signal { service: name.clone(), signal: Signal::Term });
            }
        }
        out.push(Action::SetTimer { timer: Timer::ShutdownKill, after: self.settings.services_gracetime });
        self.halt_if_stopped(out);
    }

    fn kill_all(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.stage, Stage::ShuttingDown { .. }) {
            return;
        }
        for name in self.order.iter().rev() {
            if self.services[name].state.is_running() {
                out.push(Action::Signal { service: name.clone(), signal: Signal::Kill });
            }
        }
        out.push(Action::SetTimer { timer: Timer::ShutdownHalt, after: self.settings.kill_gracetime });
    }

    fn halt_if_stopped(&mut self, out: &mut Vec<Action>) {
        let busy = self.services.values().any(|s| s.state.is_running() || s.state == ServiceState::Finishing);
        if !busy {
            self.halt(out);
        }
    }

    fn halt(&mut self, out: &mut Vec<Action>) {
        if let Stage::ShuttingDown { code } = self.stage {
            self.stage = Stage::Halted;
            out.push(Action::Halt { code });
        }
    }

    /// The state of one service.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.services.get(service).map(|slot| slot.state)
    }

    /// Whether the service is wanted up.
    pub fn wants_up(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|slot| slot.want_up)
    }

    /// The service's recent deaths, oldest first (s6-svdt).
    pub fn deaths(&self, service: &str) -> impl Iterator<Item = &(Duration, Exit)> {
        self.services.get(service).into_iter().flat_map(|slot| slot.deaths.iter())
    }

    /// Whether the node has halted.
    pub fn is_halted(&self) -> bool {
        self.stage == Stage::Halted
    }
}

/// How long a service whose finish ended at `now` waits before its next start: 1 s after
/// the finish, or 1 s after it became ready if that is later (s6 >= 2.11.2: a service ready
/// for over a second restarts at once), plus the optional backoff.
fn restart_wait(slot: &Slot, now: Duration) -> Duration {
    let delay = slot.spec.restart_delay;
    let base = match slot.ready_at {
        Some(ready) => (ready + delay).saturating_sub(now),
        None => delay,
    };
    let extra = match (slot.spec.backoff, slot.deaths.back()) {
        (Some(backoff), Some(&(died, _))) => {
            let since = died.saturating_sub(backoff.window);
            backoff.extra(slot.deaths.iter().filter(|(at, _)| *at >= since).count())
        }
        _ => Duration::ZERO,
    };
    base + extra
}

#[cfg(test)]
mod tests;
