//! s6 on each node of the event engine. The supervisor core ([`Supervisor`]) decides, as it
//! does under turmoil and on real sockets, with the specs every engine uses
//! ([`service_spec`]); the engine carries out its actions on what it models of each service:
//! serf is the gossip agent, the renderer is [`super::Rendering`], the balancer loads the
//! rendered file when it starts, when the renderer has written one and on SIGHUP (its
//! `reloaded` and `reload-failed` records, from the same loader), and the webapp is a run.
//! Neither serves anything here (no HTTP), but every service is started, signalled,
//! stopped, finished and restarted as s6 does. The records are the supervisor driver's
//! (`src/supervisor/driver.rs`), so the supervision invariants read them as they read
//! turmoil's.
//!
//! A stopped service (SIGSTOP) runs nothing: what reaches it is held and handed to it when it
//! continues, in the order its driver's loop takes it (agent timers, then commands, then
//! push-pulls, then datagrams; render checks). A stopped serf's datagrams wait in its
//! socket's buffer (4,096); its push-pulls and the answers to its own wait in its driver's
//! queue (16 together, the rest refused as `gossip-pending-push-pulls`, as the stream tasks,
//! which run on, refuse them). A push-pull held past the TCP timeout is merged, but its
//! answer is lost: the connection has closed (the timeout counts from the frame's arrival,
//! one link latency after the initiator's own started).

use std::time::Duration;

use rollcall::gossip::driver::{COMMANDS_MAX, GossipError, limit_event};
use rollcall::gossip::limits::Limit;
use rollcall::gossip::stream::PENDING_MAX;
use rollcall::host::Event;
use rollcall::node::{BALANCER_SERVICE, Role, service_spec};
use rollcall::supervisor::core::{
    Action, Exit, FINISH_PERMANENT_FAILURE, NodeSettings, Signal, Supervisor, Timer,
};

use super::{Engine, Happening};
use crate::engines::UDP_QUEUE_DATAGRAMS;

/// What a node's service is to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    /// The gossip agent.
    Serf,
    /// The renderer.
    Renderer,
    /// The balancer: its loads of the rendered file.
    Balancer,
    /// A run that does nothing here: the webapp.
    Inert,
}

fn program(service: &str) -> Program {
    match service {
        "serf" => Program::Serf,
        "renderer" => Program::Renderer,
        BALANCER_SERVICE => Program::Balancer,
        _ => Program::Inert,
    }
}

/// One service's run, as far as the engine needs to know.
#[derive(Clone, Copy, Debug, Default)]
struct RunState {
    running: bool,
    /// SIGSTOP: it runs nothing until SIGCONT.
    stopped: bool,
    /// Spawned, but it has not run yet: its first step waits for the supervisor's batch of
    /// actions to end (or for SIGCONT), as a spawned task is first polled once the
    /// supervisor's driver yields.
    unstarted: bool,
}

/// A happening for a stopped service, kept until it continues.
struct Held {
    service: usize,
    /// When it arrived.
    since: Duration,
    happening: Happening,
}

/// What a held happening is to the agent's driver loop, in the order its `biased` select
/// takes them when it continues (timers due, commands, streams, datagrams).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Timer,
    Command,
    Stream,
    Datagram,
}

impl Class {
    fn of(happening: &Happening) -> Class {
        match happening {
            Happening::Datagram { .. } => Class::Datagram,
            Happening::PushPull { .. } | Happening::Answer { .. } => Class::Stream,
            Happening::Leave { .. } | Happening::Command { .. } => Class::Command,
            _ => Class::Timer,
        }
    }
}

/// s6 on one host while the host runs.
pub(super) struct Supervision {
    supervisor: Supervisor,
    /// The role's services in start order; runs and held happenings name them by index.
    services: &'static [&'static str],
    runs: Vec<RunState>,
    /// Where serf, the renderer and the balancer are among `services` (every happening asks).
    serf: Option<usize>,
    renderer: Option<usize>,
    balancer: Option<usize>,
    held: Vec<Held>,
    /// A view change the stopped renderer has yet to see.
    renderer_missed_view: bool,
    /// A reload the stopped balancer has yet to see.
    balancer_missed_reload: bool,
    /// Where the balancer's run listens, once it could bind its frontend.
    balancer_bound: Option<std::net::SocketAddr>,
    /// Where its stats page listens, once it could bind it.
    stats_bound: Option<std::net::SocketAddr>,
}

impl Supervision {
    fn index(&self, service: &str) -> Option<usize> {
        self.services.iter().position(|name| *name == service)
    }

    /// The run of `wanted`, if it is stopped.
    fn stopped(&self, wanted: Program) -> Option<usize> {
        let found = match wanted {
            Program::Serf => self.serf?,
            Program::Renderer => self.renderer?,
            Program::Balancer => self.balancer?,
            Program::Inert => return None,
        };
        self.runs[found].stopped.then_some(found)
    }

    /// The faults whose commands a stopped serf held when its host crashed.
    pub(super) fn unserved(self) -> Vec<usize> {
        unserved_commands(self.held)
    }

    /// Whether the renderer is stopped.
    pub(super) fn renderer_stopped(&self) -> bool {
        self.stopped(Program::Renderer).is_some()
    }

    /// The stopped renderer missed a view change: it sees one when it continues.
    pub(super) fn miss_view(&mut self) {
        self.renderer_missed_view = true;
    }

    /// Keeps `happening` for the stopped run `service`; false if its buffer is full
    /// (datagrams beyond the socket's, push-pulls and answers beyond the driver's queue,
    /// commands and leaves beyond its command queue, which drops them: the caller records a
    /// dropped command as refused).
    fn hold(&mut self, service: usize, since: Duration, happening: Happening) -> bool {
        let class = Class::of(&happening);
        let limit = match class {
            Class::Datagram => Some(UDP_QUEUE_DATAGRAMS),
            Class::Stream => Some(PENDING_MAX),
            Class::Command => Some(COMMANDS_MAX),
            Class::Timer => None,
        };
        if let Some(limit) = limit {
            let alike = self.held.iter().filter(|h| h.service == service && Class::of(&h.happening) == class);
            if alike.count() >= limit {
                return false;
            }
        }
        self.held.push(Held { service, since, happening });
        true
    }

    /// Takes out what `service` holds, in the order its loop takes it: each class in the
    /// order it arrived.
    fn release(&mut self, service: usize) -> Vec<Held> {
        let (mut released, kept): (Vec<Held>, _) =
            std::mem::take(&mut self.held).into_iter().partition(|h| h.service == service);
        self.held = kept;
        released.sort_by_key(|held| Class::of(&held.happening));
        released
    }
}

/// The faults whose commands are among `held`.
fn unserved_commands(held: Vec<Held>) -> Vec<usize> {
    held.into_iter()
        .filter_map(|held| match held.happening {
            Happening::Command { fault, .. } => Some(fault as usize),
            _ => None,
        })
        .collect()
}

impl Engine<'_> {
    /// s6-overlay starts on a booted node: its services, in start order.
    pub(super) fn start_supervision(&mut self, host: usize) {
        let Some(node) = self.hosts[host].node.as_ref() else { return };
        let services = node.role.services();
        let specs = services.iter().map(|name| service_spec(node, name)).collect();
        let supervision = Supervision {
            supervisor: Supervisor::new(specs, NodeSettings::default()),
            services,
            runs: vec![RunState::default(); services.len()],
            serf: services.iter().position(|name| program(name) == Program::Serf),
            renderer: services.iter().position(|name| program(name) == Program::Renderer),
            balancer: services.iter().position(|name| program(name) == Program::Balancer),
            held: Vec::new(),
            renderer_missed_view: false,
            balancer_missed_reload: false,
            balancer_bound: None,
            stats_bound: None,
        };
        self.hosts[host].supervision = Some(supervision);
        self.supervise(host, |supervisor, now, out| supervisor.start(now, out));
    }

    /// Runs `step` on `host`'s supervisor, if it runs, and carries out what it asks for.
    pub(super) fn supervise(
        &mut self,
        host: usize,
        step: impl FnOnce(&mut Supervisor, Duration, &mut Vec<Action>),
    ) {
        let now = self.now;
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let mut out = Vec::new();
        step(&mut supervision.supervisor, now, &mut out);
        self.batch(|engine| {
            for action in out {
                // After a halt nothing is left to act on.
                if engine.hosts[host].supervision.is_none() {
                    break;
                }
                engine.perform_supervised(host, action);
            }
        });
    }

    /// Carries out `actions` as one batch of the supervisor's: the runs it spawns take their
    /// first steps when the outermost batch has ended, in the order they were spawned, if
    /// they still run and are not stopped then.
    pub(super) fn batch(&mut self, actions: impl FnOnce(&mut Self)) {
        self.batch_depth += 1;
        actions(self);
        if self.batch_depth > 1 {
            self.batch_depth -= 1;
            return;
        }
        // Spawns during these first steps (a run that fails as it starts) join the queue.
        while let Some((host, boot, service)) = self.first_steps.pop_front() {
            if self.hosts[host].boots == boot {
                self.first_step(host, service);
            }
        }
        self.batch_depth -= 1;
    }

    /// Run number `service` takes its first step, if it still runs, has not yet, and is not
    /// stopped.
    fn first_step(&mut self, host: usize, service: usize) {
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let run = &mut supervision.runs[service];
        if !run.running || !run.unstarted || run.stopped {
            return;
        }
        run.unstarted = false;
        match program(supervision.services[service]) {
            Program::Serf => self.start_agent(host),
            Program::Renderer => self.start_renderer(host),
            Program::Balancer => self.balancer_load(host),
            Program::Inert => {}
        }
    }

    fn perform_supervised(&mut self, host: usize, action: Action) {
        let boot = self.hosts[host].boots;
        match action {
            Action::Spawn { service } => self.spawn(host, &service),
            Action::Signal { service, signal } => self.signal(host, &service, signal),
            Action::RunFinish { service, .. } => {
                // The only finish scripts are `permanent_failure`'s, which exit 125 at once.
                let Some(index) = self.supervision(host).and_then(|s| s.index(&service)) else { return };
                let code = FINISH_PERMANENT_FAILURE;
                let finished = Happening::Finished { host: host as u32, boot, service: index as u8, code };
                self.schedule(self.now, finished);
            }
            Action::KillFinish { service } => {
                self.observe(host, Event::ServiceFinished { service, code: None })
            }
            Action::SetTimer { timer, after } => {
                // Zero (the planted `supervisor-restarts-at-once`) is the next tick: a service
                // that fails as it starts would otherwise start again and again at one instant.
                let after = if after.is_zero() { self.tick } else { after };
                let happening = Happening::Supervise { host: host as u32, boot, timer: Box::new(timer) };
                self.schedule(self.now + after, happening);
            }
            Action::Ready { service } => self.observe(host, Event::ServiceReady { service }),
            Action::Down { service } | Action::Failed { service } => {
                self.observe(host, Event::ServiceDown { service })
            }
            Action::Exited { .. } => {}
            Action::ShutdownStarted { code } => self.observe(host, Event::NodeShutdown { code }),
            Action::Halt { code } => self.halt(host, code),
        }
    }

    fn supervision(&self, host: usize) -> Option<&Supervision> {
        self.hosts[host].supervision.as_ref()
    }

    /// Whether the host's balancer listens on `port`: serf cannot bind it then.
    pub(super) fn balancer_holds(&self, host: usize, port: u16) -> bool {
        self.supervision(host).is_some_and(|s| {
            [s.balancer_bound, s.stats_bound].into_iter().flatten().any(|b| b.port() == port)
        })
    }

    /// A supervisor timer of boot `boot` fired.
    pub(super) fn supervisor_timer(&mut self, host: usize, boot: u32, timer: Timer) {
        if self.hosts[host].boots == boot {
            self.supervise(host, |supervisor, now, out| supervisor.handle_timer(timer, now, out));
        }
    }

    /// The finish script of service number `service` (of boot `boot`) exited with `code`.
    pub(super) fn finish_ended(&mut self, host: usize, boot: u32, service: usize, code: i32) {
        let Some(name) = self.supervision(host).map(|s| s.services[service]) else { return };
        if self.hosts[host].boots != boot {
            return;
        }
        self.observe(host, Event::ServiceFinished { service: name.to_string(), code: Some(code) });
        self.supervise(host, |supervisor, now, out| supervisor.handle_finish_exit(name, code, now, out));
    }

    /// s6-svc on `host`, if its supervisor runs (a down host hears nothing).
    pub(super) fn svc(&mut self, host: usize, service: &str, command: rollcall::supervisor::core::Command) {
        self.supervise(host, |supervisor, now, out| supervisor.command(service, command, now, out));
    }

    /// One run of `service` starts.
    fn spawn(&mut self, host: usize, service: &str) {
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let Some(index) = supervision.index(service) else { return };
        supervision.runs[index] = RunState { running: true, stopped: false, unstarted: true };
        self.observe(host, Event::ServiceStarted { service: service.to_string() });
        let boot = self.hosts[host].boots;
        self.first_steps.push_back((host, boot, index));
    }

    /// A signal to the run of `service`, as the supervisor's driver delivers it: the ones
    /// the service handles (serf's SIGINT leaves; the balancer's SIGHUP reloads), SIGSTOP and
    /// SIGCONT, and any other ends the run.
    fn signal(&mut self, host: usize, service: &str, signal: Signal) {
        let Some(supervision) = self.hosts[host].supervision.as_ref() else { return };
        let Some(index) = supervision.index(service).filter(|&i| supervision.runs[i].running) else { return };
        let RunState { stopped, unstarted, .. } = supervision.runs[index];
        // A signal the run handles reaches it when it runs: a leave asked of a serf spawned
        // in this batch comes after its first step (the driver takes it from its queue).
        if unstarted && !stopped && signal == Signal::Int && program(service) == Program::Serf {
            self.first_step(host, index);
        }
        match (program(service), signal) {
            (Program::Serf, Signal::Int) if stopped => {
                let generation = self.hosts[host].generation;
                let leave = Happening::Leave { host: host as u32, generation };
                let now = self.now;
                if let Some(supervision) = self.hosts[host].supervision.as_mut() {
                    // Beyond the command queue's room it is dropped, as the driver's send drops it.
                    let _ = supervision.hold(index, now, leave);
                }
            }
            (Program::Serf, Signal::Int) => self.agent_leave(host),
            (Program::Balancer, Signal::Hup) => self.balancer_reload(host),
            (_, Signal::Stop | Signal::Cont) => self.pause(host, index, signal == Signal::Stop),
            (_, signal) => self.run_ended(host, service, Exit::Signal(signal), None),
        }
    }

    /// Stops or continues run number `service`; one that continues gets what it held.
    fn pause(&mut self, host: usize, service: usize, stop: bool) {
        let now = self.now;
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let name = supervision.services[service];
        if supervision.runs[service].stopped == stop {
            return;
        }
        supervision.runs[service].stopped = stop;
        let released = if stop { Vec::new() } else { supervision.release(service) };
        // A renderer that has not run yet renders the view as it finds it.
        let fresh = supervision.runs[service].unstarted;
        let missed = !stop && program(name) == Program::Renderer && supervision.renderer_missed_view;
        if missed || fresh {
            supervision.renderer_missed_view = false;
        }
        let missed = missed && !fresh;
        let reload = !stop && program(name) == Program::Balancer && supervision.balancer_missed_reload;
        if reload {
            supervision.balancer_missed_reload = false;
        }
        self.observe(host, Event::ServiceStopped { service: name.to_string(), stopped: stop });
        // A run stopped before it ever ran runs now, before what waited for it.
        if !stop {
            self.first_step(host, service);
        }
        for Held { since, happening, .. } in released {
            let happening = match happening {
                Happening::PushPull { from, from_generation, to, bytes, syns, .. } => {
                    let timeout = self.hosts[to as usize].agent.as_ref().map(|run| run.agent.tcp_timeout());
                    let reply = timeout.is_some_and(|timeout| now <= since + timeout);
                    Happening::PushPull { from, from_generation, to, bytes, reply, syns }
                }
                other => other,
            };
            // It arrived while the service was stopped: a cut since then does not undo that.
            self.happen(happening);
        }
        self.record_stream_limits(host);
        if reload {
            self.balancer_load(host);
        }
        if missed {
            let due = self.hosts[host].rendering.as_mut().and_then(|rendering| rendering.view_changed(now));
            if let Some(due) = due {
                let boot = self.hosts[host].boots;
                self.schedule(due, Happening::Render { host: host as u32, boot });
            }
        }
    }

    /// Records the stream limit's count when it reaches a new power of two, as the driver
    /// does when its loop runs again.
    fn record_stream_limits(&mut self, host: usize) {
        let Some(run) = self.hosts[host].agent.as_mut() else { return };
        for (limit, count) in run.stream_limits.due() {
            self.observe(host, limit_event(limit, PENDING_MAX, count));
        }
    }

    /// Holds `happening` if it is for a stopped service; otherwise gives it back.
    pub(super) fn hold_if_stopped(&mut self, happening: Happening) -> Option<Happening> {
        let (host, wanted) = match &happening {
            Happening::Timer { host, .. }
            | Happening::Leave { host, .. }
            | Happening::Command { host, .. } => (*host, Program::Serf),
            Happening::Datagram { to, .. }
            | Happening::PushPull { to, .. }
            | Happening::Answer { to, .. } => (*to, Program::Serf),
            Happening::Render { host, .. } => (*host, Program::Renderer),
            _ => return Some(happening),
        };
        let now = self.now;
        let Some(supervision) = self.hosts[host as usize].supervision.as_mut() else {
            return Some(happening);
        };
        let Some(service) = supervision.stopped(wanted) else { return Some(happening) };
        // A serf stopped before it ran has bound no socket: what is sent to it is lost.
        let network = matches!(Class::of(&happening), Class::Datagram | Class::Stream);
        if network && self.hosts[host as usize].agent.is_none() {
            return Some(happening);
        }
        let Some(supervision) = self.hosts[host as usize].supervision.as_mut() else {
            return Some(happening);
        };
        let class = Class::of(&happening);
        let command = match happening {
            Happening::Command { fault, .. } => Some(fault as usize),
            _ => None,
        };
        if !supervision.hold(service, now, happening) {
            if class == Class::Stream {
                if let Some(run) = self.hosts[host as usize].agent.as_mut() {
                    run.stream_limits.hit(Limit::PendingStreams, 1);
                }
            }
            if let Some(command) = command.and_then(|fault| self.command_of(host as usize, fault)) {
                self.observe(host as usize, command.queue_full());
            }
        }
        None
    }

    /// A run of `service` ended with `exit` (`reason`: why, for the status): what it ran
    /// stops, the record is made, and s6 decides what comes next.
    pub(super) fn run_ended(&mut self, host: usize, service: &str, exit: Exit, reason: Option<&str>) {
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let Some(index) = supervision.index(service).filter(|&i| supervision.runs[i].running) else { return };
        supervision.runs[index] = RunState::default();
        // What a stopped run held dies with it; its commands were never taken.
        let unserved = unserved_commands(supervision.release(index));
        match program(service) {
            Program::Serf => self.stop_agent(host),
            Program::Renderer => {
                supervision.renderer_missed_view = false;
                self.hosts[host].rendering = None;
            }
            Program::Balancer => {
                supervision.balancer_missed_reload = false;
                supervision.balancer_bound = None;
                supervision.stats_bound = None;
            }
            Program::Inert => {}
        }
        let status = match reason {
            Some(reason) => format!("{exit}: {reason}"),
            None => exit.to_string(),
        };
        self.observe(host, Event::ServiceExited { service: service.to_string(), status });
        self.record_unserved(host, &unserved);
        self.supervise(host, |supervisor, now, out| supervisor.handle_exit(service, exit, now, out));
    }

    /// Records as refused the commands (faults' indices) a killed serf never took.
    pub(super) fn record_unserved(&mut self, host: usize, faults: &[usize]) {
        for &fault in faults {
            if let Some(command) = self.command_of(host, fault) {
                self.observe(host, command.unserved());
            }
        }
    }

    /// The renderer wrote a file, or SIGHUP came: a running balancer reloads it, a stopped
    /// one when it continues.
    pub(super) fn balancer_reload(&mut self, host: usize) {
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        let Some(index) = supervision.balancer.filter(|&i| supervision.runs[i].running) else { return };
        // One that has not run yet loads the file as it stands when it does.
        if supervision.runs[index].unstarted {
            return;
        }
        if supervision.runs[index].stopped {
            supervision.balancer_missed_reload = true;
        } else {
            self.balancer_load(host);
        }
    }

    /// The balancer loads the rendered file from the host's disk, as its driver does: a file
    /// that does not load is refused and the old one kept; a frontend it cannot bind (an
    /// address not the host's, or serf's port) ends the run, which s6 restarts.
    fn balancer_load(&mut self, host: usize) {
        let Some(Role::Balancer { output, .. }) = self.hosts[host].node.as_ref().map(|node| &node.role)
        else {
            return;
        };
        let read = self.hosts[host]
            .rendered
            .clone()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, output.display().to_string()));
        let config = match rollcall::balancer::config::load(output, read) {
            Ok(config) => config,
            Err(error) => return self.observe(host, Event::ReloadFailed { error }),
        };
        // The loads' records may be left out of a large run's trace (each lists every server).
        if self.recorder.records_balancer_loads() {
            let servers = config.backend().servers.iter().map(|server| server.name.clone()).collect();
            self.observe(host, Event::Reloaded { bind: config.bind.to_string(), servers });
        }
        let (own, serf_bound) = (self.hosts[host].addr, self.hosts[host].agent.is_some());
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        // A reload closes the old frontend before it binds the new one (the driver waits),
        // and a stats page on the new frontend's port too.
        supervision.balancer_bound = None;
        supervision.stats_bound = supervision.stats_bound.filter(|stats| stats.port() != config.bind.port());
        // serf listens on its port (TCP too, for push-pulls) while its run lives.
        let bound = crate::engines::local_bind(own.ip(), config.bind).and_then(|_| {
            let taken = serf_bound && config.bind.port() == own.port();
            if taken { Err(crate::engines::address_in_use()) } else { Ok(config.bind) }
        });
        let refused = match bound {
            Ok(bind) => {
                supervision.balancer_bound = Some(bind);
                let stats = config.stats.as_ref().map(|(bind, _)| *bind);
                return self.bind_stats(host, stats);
            }
            Err(refused) => refused,
        };
        let error = format!("cannot bind frontend {}: {refused}", config.bind);
        self.observe(host, Event::ReloadFailed { error: error.clone() });
        self.run_ended(host, BALANCER_SERVICE, Exit::Code(1), Some(&error));
    }

    /// The stats page moves to `wanted` as the loaded file asks, as the proxy's does: closed
    /// first, then bound if the address is the host's and its port free (serf's while serf
    /// runs, the frontend's); one that cannot be bound is left out (the driver logs it) and
    /// the frontend serves on.
    fn bind_stats(&mut self, host: usize, wanted: Option<std::net::SocketAddr>) {
        let (own, serf_bound) = (self.hosts[host].addr, self.hosts[host].agent.is_some());
        let Some(supervision) = self.hosts[host].supervision.as_mut() else { return };
        if supervision.stats_bound == wanted {
            return;
        }
        supervision.stats_bound = None;
        let Some(bind) = wanted else { return };
        let frontend = supervision.balancer_bound.is_some_and(|frontend| frontend.port() == bind.port());
        let taken = frontend || (serf_bound && bind.port() == own.port());
        if !taken && crate::engines::local_bind(own.ip(), bind).is_ok() {
            supervision.stats_bound = Some(bind);
        }
    }

    /// The agent gave up joining: serf exits 1, as the driver does.
    pub(super) fn agent_gave_up(&mut self, host: usize, attempts: u32) {
        let reason = GossipError::JoinFailed { attempts }.to_string();
        self.run_ended(host, "serf", Exit::Code(1), Some(&reason));
    }

    /// s6-overlay halted the node: every run ends where it stands, without records (the
    /// driver aborts them), and the host is down.
    fn halt(&mut self, host: usize, code: i32) {
        self.stop_agent(host);
        let state = &mut self.hosts[host];
        state.rendering = None;
        state.ended_view = None;
        state.supervision = None;
        state.up = false;
        self.observe(host, Event::HostHalted { code });
    }
}
