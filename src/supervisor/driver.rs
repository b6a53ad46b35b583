//! Runs a node's services as local tasks under the [`Supervisor`] core: a run is a task, a
//! signal the service handles is a call into it, any other terminating signal aborts the
//! task (reported as that signal), a finish script is a task of its own, readiness is a
//! message. Every decision is the core's.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, Id, JoinSet};

use super::core::{Action, Command, NodeSettings, ServiceSpec, Supervisor, Timer};
use super::pause::{Pausable, PauseGate};
use super::signal::{Exit, Signal};
use crate::host::{Event, HostEnv};
use crate::net::Net;

/// The future of one run of a service: `Ok` is exit 0.
pub type ServiceFuture = Pin<Box<dyn Future<Output = Result<(), Stopped>>>>;

/// How a run ended other than with exit 0, and why (for the trace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Its exit: a code, or the signal that killed it.
    pub exit: Exit,
    /// What happened, in words.
    pub reason: String,
}

impl From<String> for Stopped {
    /// An in-process service's error: exit 1.
    fn from(reason: String) -> Self {
        Stopped { exit: Exit::Code(1), reason }
    }
}
/// The future of one run of a finish script: its exit code.
pub type FinishFuture = Pin<Box<dyn Future<Output = i32>>>;

/// Lets a run tell the supervisor it is ready (s6's notification-fd).
#[derive(Clone, Debug)]
pub struct Readiness {
    service: String,
    to_supervisor: mpsc::UnboundedSender<String>,
}

impl Readiness {
    /// The service is ready.
    pub fn ready(&self) {
        let _ = self.to_supervisor.send(self.service.clone());
    }
}

/// A service: its spec, how to start one run (s6's `run`), its `finish`, and the signals
/// it handles itself.
pub struct Service {
    /// Supervision settings.
    pub spec: ServiceSpec,
    /// Starts one run.
    pub start: Box<dyn Fn(Readiness) -> ServiceFuture>,
    /// The finish script, given the exit code (or 256) and the signal number.
    pub finish: Option<Box<dyn Fn(i32, i32) -> FinishFuture>>,
    /// Signals the running service handles (HAProxy's SIGHUP reloads, Serf's SIGINT
    /// leaves); any other terminating signal ends the run.
    pub handlers: Handlers,
    /// Where every other signal goes, for a service that is a real process (it dies of it,
    /// or not, on its own); `None`: the task is aborted.
    pub deliver: Option<Box<dyn Fn(Signal)>>,
}

impl Service {
    /// A service without finish or signal handlers.
    pub fn new(spec: ServiceSpec, start: impl Fn(Readiness) -> ServiceFuture + 'static) -> Self {
        Self { spec, start: Box::new(start), finish: None, handlers: BTreeMap::new(), deliver: None }
    }

    /// With a finish script.
    pub fn finish(mut self, finish: impl Fn(i32, i32) -> FinishFuture + 'static) -> Self {
        self.spec.has_finish = true;
        self.finish = Some(Box::new(finish));
        self
    }

    /// Handling `signal` with `handler` instead of dying of it.
    pub fn on(mut self, signal: Signal, handler: impl Fn() + 'static) -> Self {
        self.handlers.insert(signal, Box::new(handler));
        self
    }
}

/// Commands from outside the node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// `s6-svc` on one service.
    Svc { service: String, command: Command },
    /// Stop the node (`docker stop`): s6-overlay's shutdown, halting with `code`.
    Shutdown { code: i32 },
}

impl Control {
    /// `s6-svc` with a signal.
    pub fn signal(service: &str, signal: Signal) -> Self {
        Control::Svc { service: service.to_string(), command: Command::Signal(signal) }
    }
}

/// The orders given to a node's supervisor before the node booted, as they act at its boot:
/// what still holds then, not their history. Each service's `-u`/`-d` and SIGSTOP/SIGCONT
/// are played in order on what the service would be (wanted up or down, stopped or not: a
/// `-d` also continues it, a SIGSTOP to a down service does nothing), and the result is
/// applied: `-d` for a service wanted down, SIGSTOP for one stopped. A window that opened
/// and closed before the boot (a leave and its rejoin, a stall and its continue) leaves
/// nothing. Any other signal (a kill, a SIGHUP) reached a service that was not running and
/// is dropped; a shutdown, and every other command, keeps its place after them.
pub fn settle_early_orders(orders: Vec<Control>) -> Vec<Control> {
    // (service, wanted up, stopped), in the order services were first named.
    let mut states: Vec<(String, bool, bool)> = Vec::new();
    let mut rest = Vec::new();
    for order in orders {
        let Control::Svc { service, command } = &order else {
            rest.push(order);
            continue;
        };
        let index = match states.iter().position(|(name, ..)| name == service) {
            Some(index) => index,
            None => {
                states.push((service.clone(), true, false));
                states.len() - 1
            }
        };
        let (_, wanted_up, stopped) = &mut states[index];
        match command {
            Command::Up => *wanted_up = true,
            Command::Down => (*wanted_up, *stopped) = (false, false),
            Command::Signal(Signal::Stop) => *stopped = *wanted_up,
            Command::Signal(Signal::Cont) => *stopped = false,
            Command::Signal(_) => {}
            _ => rest.push(order),
        }
    }
    let svc = |service: &str, command| Control::Svc { service: service.to_string(), command };
    let mut settled: Vec<Control> = states
        .iter()
        .filter_map(|(service, wanted_up, stopped)| match (wanted_up, stopped) {
            (false, _) => Some(svc(service, Command::Down)),
            (true, true) => Some(svc(service, Command::Signal(Signal::Stop))),
            (true, false) => None,
        })
        .collect();
    settled.extend(rest);
    settled
}

/// The signals one service handles itself, and how.
type Handlers = BTreeMap<Signal, Box<dyn Fn()>>;

/// The services' tasks and what the driver knows about them.
struct Runs {
    starters: BTreeMap<String, Box<dyn Fn(Readiness) -> ServiceFuture>>,
    finishers: BTreeMap<String, Box<dyn Fn(i32, i32) -> FinishFuture>>,
    handlers: BTreeMap<String, Handlers>,
    deliver: BTreeMap<String, Box<dyn Fn(Signal)>>,
    tasks: JoinSet<Result<(), Stopped>>,
    running: BTreeMap<String, (Id, AbortHandle)>,
    /// SIGSTOP and SIGCONT of each running task.
    gates: BTreeMap<String, Rc<PauseGate>>,
    /// Why a run was aborted: the signal it died of.
    aborted_by: BTreeMap<String, Signal>,
    finishes: JoinSet<i32>,
    finishing: BTreeMap<String, (Id, AbortHandle)>,
    timers: BTreeMap<(Duration, u64), Timer>,
    timer_order: u64,
    ready: mpsc::UnboundedSender<String>,
}

/// Supervises `services` until the node halts; returns the code it halted with.
pub async fn run<N: Net>(
    env: HostEnv<N>,
    services: Vec<Service>,
    settings: NodeSettings,
    mut control: mpsc::UnboundedReceiver<Control>,
) -> i32 {
    let mut supervisor = Supervisor::new(services.iter().map(|s| s.spec.clone()).collect(), settings);
    let (ready, mut ready_rx) = mpsc::unbounded_channel();
    let mut runs = Runs::new(services, ready);
    let mut out = Vec::new();
    supervisor.start(env.now(), &mut out);
    // What waited for the boot acts now, as it stands at the boot.
    let mut early = Vec::new();
    while let Ok(order) = control.try_recv() {
        early.push(order);
    }
    for order in settle_early_orders(early) {
        match order {
            Control::Svc { service, command } => supervisor.command(&service, command, env.now(), &mut out),
            Control::Shutdown { code } => supervisor.shutdown(code, &mut out),
        }
    }
    loop {
        for action in std::mem::take(&mut out) {
            if let Some(code) = runs.perform(&env, action) {
                return code;
            }
        }
        let next_timer = runs.timers.keys().next().map(|(due, _)| *due);
        let wait = next_timer.map_or(Duration::from_secs(3600), |due| due.saturating_sub(env.now()));
        let now = || env.now();
        tokio::select! {
            biased;
            Some(command) = control.recv() => match command {
                Control::Svc { service, command } => supervisor.command(&service, command, now(), &mut out),
                Control::Shutdown { code } => supervisor.shutdown(code, &mut out),
            },
            Some(service) = ready_rx.recv() => supervisor.handle_ready(&service, now(), &mut out),
            Some(joined) = runs.tasks.join_next_with_id(), if !runs.tasks.is_empty() => {
                let (service, exit, status) = runs.ended(joined);
                env.observe(Event::ServiceExited { service: service.clone(), status });
                supervisor.handle_exit(&service, exit, now(), &mut out);
            }
            Some(joined) = runs.finishes.join_next_with_id(), if !runs.finishes.is_empty() => {
                if let Some((service, code)) = runs.finished(joined) {
                    env.observe(Event::ServiceFinished { service: service.clone(), code: Some(code) });
                    supervisor.handle_finish_exit(&service, code, now(), &mut out);
                }
            }
            () = tokio::time::sleep(wait), if next_timer.is_some() => {
                for timer in runs.pop_due(now()) {
                    supervisor.handle_timer(timer, now(), &mut out);
                }
            }
        }
    }
}

impl Runs {
    fn new(services: Vec<Service>, ready: mpsc::UnboundedSender<String>) -> Self {
        let mut runs = Runs {
            starters: BTreeMap::new(),
            finishers: BTreeMap::new(),
            handlers: BTreeMap::new(),
            deliver: BTreeMap::new(),
            tasks: JoinSet::new(),
            running: BTreeMap::new(),
            gates: BTreeMap::new(),
            aborted_by: BTreeMap::new(),
            finishes: JoinSet::new(),
            finishing: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_order: 0,
            ready,
        };
        for service in services {
            let name = service.spec.name.clone();
            if let Some(finish) = service.finish {
                runs.finishers.insert(name.clone(), finish);
            }
            runs.handlers.insert(name.clone(), service.handlers);
            if let Some(deliver) = service.deliver {
                runs.deliver.insert(name.clone(), deliver);
            }
            runs.starters.insert(name, service.start);
        }
        runs
    }

    /// Carries out one action; `Some(code)` when the node halts.
    fn perform<N: Net>(&mut self, env: &HostEnv<N>, action: Action) -> Option<i32> {
        match action {
            Action::Spawn { service } => {
                let readiness = Readiness { service: service.clone(), to_supervisor: self.ready.clone() };
                let gate = Rc::new(PauseGate::default());
                let run = Pausable::new(gate.clone(), self.starters[&service](readiness));
                let handle = self.tasks.spawn_local(run);
                self.running.insert(service.clone(), (handle.id(), handle));
                self.gates.insert(service.clone(), gate);
                env.observe(Event::ServiceStarted { service });
            }
            Action::Signal { service, signal } => self.signal(env, &service, signal),
            Action::RunFinish { service, code, signal } => {
                if let Some(finish) = self.finishers.get(&service) {
                    let handle = self.finishes.spawn_local(finish(code, signal));
                    self.finishing.insert(service, (handle.id(), handle));
                }
            }
            Action::KillFinish { service } => {
                if let Some((_, handle)) = self.finishing.remove(&service) {
                    handle.abort();
                }
                env.observe(Event::ServiceFinished { service, code: None });
            }
            Action::SetTimer { timer, after } => {
                self.timer_order += 1;
                self.timers.insert((env.now() + after, self.timer_order), timer);
            }
            Action::Ready { service } => env.observe(Event::ServiceReady { service }),
            Action::Down { service } | Action::Failed { service } => {
                env.observe(Event::ServiceDown { service })
            }
            Action::Exited { .. } => {}
            Action::ShutdownStarted { code } => env.observe(Event::NodeShutdown { code }),
            Action::Halt { code } => {
                self.tasks.abort_all();
                self.finishes.abort_all();
                env.observe(Event::HostHalted { code });
                return Some(code);
            }
        }
        None
    }

    /// A handled signal is a call into the service; SIGSTOP and SIGCONT stop and continue a
    /// task ([`Pausable`]); anything else ends the run, reported as that signal.
    fn signal<N: Net>(&mut self, env: &HostEnv<N>, service: &str, signal: Signal) {
        let Some((_, handle)) = self.running.get(service) else { return };
        if let Some(handler) = self.handlers.get(service).and_then(|h| h.get(&signal)) {
            handler();
        } else if let Some(deliver) = self.deliver.get(service) {
            deliver(signal);
        } else if let (Signal::Stop | Signal::Cont, Some(gate)) = (signal, self.gates.get(service)) {
            let stop = signal == Signal::Stop;
            if stop != gate.is_stopped() {
                if stop {
                    gate.stop()
                } else {
                    gate.resume()
                }
                env.observe(Event::ServiceStopped { service: service.to_string(), stopped: stop });
            }
        } else if signal.terminates_by_default() {
            self.aborted_by.entry(service.to_string()).or_insert(signal);
            handle.abort();
        }
    }

    /// The service whose run ended, how, and the status text for the trace.
    fn ended(
        &mut self,
        joined: Result<(Id, Result<(), Stopped>), tokio::task::JoinError>,
    ) -> (String, Exit, String) {
        let (id, outcome) = match joined {
            Ok((id, Ok(()))) => (id, Ok(())),
            Ok((id, Err(stopped))) => (id, Err(Some(stopped))),
            Err(error) => (error.id(), Err(None)),
        };
        let service = self
            .running
            .iter()
            .find(|(_, (task, _))| *task == id)
            .map(|(name, _)| name.clone())
            .expect("every task is a running service");
        self.running.remove(&service);
        self.gates.remove(&service);
        let signal = self.aborted_by.remove(&service);
        let (exit, status) = match outcome {
            Ok(()) => (Exit::Code(0), Exit::Code(0).to_string()),
            Err(Some(Stopped { exit, reason })) => (exit, format!("{exit}: {reason}")),
            // Aborted without a signal recorded: a crash fault, as SIGKILL.
            Err(None) => {
                let exit = Exit::Signal(signal.unwrap_or(Signal::Kill));
                (exit, exit.to_string())
            }
        };
        (service, exit, status)
    }

    /// The service whose finish ended and its code; `None` for one killed at its timeout.
    fn finished(&mut self, joined: Result<(Id, i32), tokio::task::JoinError>) -> Option<(String, i32)> {
        let (id, code) = joined.ok()?;
        let service =
            self.finishing.iter().find(|(_, (task, _))| *task == id).map(|(name, _)| name.clone())?;
        self.finishing.remove(&service);
        Some((service, code))
    }

    fn pop_due(&mut self, now: Duration) -> Vec<Timer> {
        let later = self.timers.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.timers, later).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::host::testing::{host, run_paused};
    use crate::supervisor::core::FINISH_PERMANENT_FAILURE;

    /// Of the orders that waited for the boot, what holds at the boot acts: a closed
    /// window's pair cancels out, an open one's opening stays, a stop ended by a later `-d`
    /// is gone, a kill that found the service down or not yet running does nothing, and a
    /// shutdown comes after the rest.
    #[test]
    fn early_orders_settle_to_what_still_holds_at_the_boot() {
        let svc = |service: &str, command| Control::Svc { service: service.into(), command };
        let early = vec![
            svc("serf", Command::Down),
            svc("webapp", Command::Signal(Signal::Stop)),
            svc("serf", Command::Signal(Signal::Kill)),
            svc("serf", Command::Up),
            svc("webapp", Command::Signal(Signal::Cont)),
            Control::Shutdown { code: 0 },
            svc("renderer", Command::Signal(Signal::Stop)),
            svc("balancer", Command::Signal(Signal::Stop)),
            svc("balancer", Command::Down),
            svc("balancer", Command::Up),
            svc("webapp", Command::Down),
            svc("webapp", Command::Signal(Signal::Stop)),
        ];
        assert_eq!(
            settle_early_orders(early),
            vec![
                svc("webapp", Command::Down),
                svc("renderer", Command::Signal(Signal::Stop)),
                Control::Shutdown { code: 0 },
            ]
        );
    }

    fn starts(events: &[(Duration, Event)], name: &str) -> Vec<Duration> {
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::ServiceStarted { service } if service == name))
            .map(|(at, _)| *at)
            .collect()
    }

    fn ms(millis: &[u64]) -> Vec<Duration> {
        millis.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }

    /// On a paused clock: a failing service restarts every second, a killed one 1 s after
    /// the kill, a signal it handles is a call, a finish exiting 125 stops the restarts, and
    /// the main program's end halts the node with its code.
    #[test]
    fn services_restart_handle_signals_fail_for_good_and_the_main_halts() {
        run_paused(async {
            let (env, recorded) = host(Rc::new(crate::host::MemoryDisk::default()));
            let (control, control_rx) = mpsc::unbounded_channel();
            let hups = Rc::new(std::cell::Cell::new(0));
            let counted = hups.clone();
            let services = vec![
                Service::new(ServiceSpec::longrun("flaky"), |_| {
                    Box::pin(async { Err("boom".to_string().into()) })
                }),
                Service::new(ServiceSpec::longrun("steady"), |_| Box::pin(std::future::pending()))
                    .on(Signal::Hup, move || counted.set(counted.get() + 1)),
                Service::new(ServiceSpec::longrun("perm"), |_| {
                    Box::pin(async { Err("no".to_string().into()) })
                })
                .finish(|_, _| Box::pin(async { FINISH_PERMANENT_FAILURE })),
                Service::new(ServiceSpec::main("main"), |_| {
                    Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(3500)).await;
                        Err("done".to_string().into())
                    })
                }),
            ];
            let supervisor =
                tokio::task::spawn_local(run(env, services, NodeSettings::default(), control_rx));
            tokio::time::sleep(Duration::from_millis(1500)).await;
            control.send(Control::signal("steady", Signal::Hup)).unwrap();
            control.send(Control::signal("steady", Signal::Kill)).unwrap();
            assert_eq!(supervisor.await.unwrap(), 1, "the main program's exit code");
            assert_eq!(hups.get(), 1);
            let events = recorded.0.borrow();
            assert_eq!(starts(&events, "flaky"), ms(&[0, 1000, 2000, 3000]));
            assert_eq!(starts(&events, "steady"), ms(&[0, 2500]), "killed at 1.5 s, back 1 s later");
            assert_eq!(starts(&events, "perm"), ms(&[0]), "finish 125: never restarted");
            let killed = events.iter().any(|(at, e)| {
                *at == Duration::from_millis(1500)
                    && matches!(e, Event::ServiceExited { service, status } if service == "steady" && status == "signal SIGKILL")
            });
            assert!(killed, "{events:?}");
            assert!(events.iter().any(|(_, e)| *e == Event::NodeShutdown { code: 1 }));
            let (at, last) = events.last().unwrap();
            assert_eq!(*last, Event::HostHalted { code: 1 });
            assert_eq!(*at, Duration::from_millis(3500), "everything stopped at the first TERM");
        });
    }

    /// Readiness comes from the run itself; the supervisor reports it.
    #[test]
    fn a_service_is_ready_when_it_says_so() {
        run_paused(async {
            let (env, recorded) = host(Rc::new(crate::host::MemoryDisk::default()));
            let (_control, control_rx) = mpsc::unbounded_channel();
            let spec = ServiceSpec { notification: true, ..ServiceSpec::longrun("app") };
            let app = Service::new(spec, |ready| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    ready.ready();
                    std::future::pending().await
                })
            });
            let main = Service::new(ServiceSpec::main("main"), |_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    Ok(())
                })
            });
            run(env, vec![app, main], NodeSettings::default(), control_rx).await;
            let events = recorded.0.borrow();
            let ready =
                events.iter().find(|(_, e)| matches!(e, Event::ServiceReady { .. })).map(|(at, _)| *at);
            assert_eq!(ready, Some(Duration::from_millis(300)));
        });
    }
}
