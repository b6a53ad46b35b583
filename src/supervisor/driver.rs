//! Runs a node's services as local tasks under the [`Supervisor`] core.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, Id, JoinSet};

use super::core::{Action, ExitStatus, ServiceSpec, Supervisor};
use crate::host::{Event, HostEnv};
use crate::net::Net;

/// The future of one run of a service.
pub type ServiceFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// A service: its spec and how to start one run of it (s6's `run` script).
pub struct Service {
    /// Supervision settings.
    pub spec: ServiceSpec,
    /// Starts one run.
    pub start: Box<dyn Fn() -> ServiceFuture>,
    /// What SIGHUP does to a running service (HAProxy and `rollcall balancer`: reload);
    /// `None`: the default disposition, the process dies.
    pub on_hangup: Option<Box<dyn Fn()>>,
    /// What `s6-svc -d` does to a running service, as its `down-signal` file would (Serf:
    /// SIGINT, a graceful leave after which it exits); `None`: it is killed.
    pub on_down: Option<Box<dyn Fn()>>,
}

/// Commands from outside the node (s6-svc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Kill the service, as `s6-svc -k`: it is restarted if wanted up.
    Kill { service: String },
    /// Send it SIGHUP, as `s6-svc -h`.
    Hangup { service: String },
    /// Want it down, as `s6-svc -d`: its down signal, and no restart.
    Down { service: String },
    /// Want it up again, as `s6-svc -u`.
    Up { service: String },
}

/// Supervises `services` until the main service exits (then every service is stopped).
pub async fn run<N: Net>(
    env: HostEnv<N>,
    services: Vec<Service>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut supervisor = Supervisor::new(services.iter().map(|s| s.spec.clone()).collect());
    let mut hangups: BTreeMap<String, Box<dyn Fn()>> = BTreeMap::new();
    let mut downs: BTreeMap<String, Box<dyn Fn()>> = BTreeMap::new();
    let mut starters: BTreeMap<String, Box<dyn Fn() -> ServiceFuture>> = BTreeMap::new();
    for service in services {
        if let Some(on_hangup) = service.on_hangup {
            hangups.insert(service.spec.name.clone(), on_hangup);
        }
        if let Some(on_down) = service.on_down {
            downs.insert(service.spec.name.clone(), on_down);
        }
        starters.insert(service.spec.name, service.start);
    }
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    let mut running: BTreeMap<String, (Id, AbortHandle)> = BTreeMap::new();
    let mut restarts: BTreeMap<(Duration, String), u64> = BTreeMap::new();
    let mut out = Vec::new();
    supervisor.start(&mut out);
    loop {
        for action in out.drain(..) {
            match action {
                Action::Spawn { service } => {
                    let handle = tasks.spawn_local(starters[&service]());
                    running.insert(service.clone(), (handle.id(), handle));
                    env.observe(Event::ServiceStarted { service });
                }
                Action::ScheduleRestart { service, generation, after } => {
                    restarts.insert((env.now() + after, service), generation);
                }
                Action::Down { service } => env.observe(Event::ServiceDown { service }),
                Action::Halt { service } => {
                    tasks.abort_all();
                    env.observe(Event::HostHalted { service });
                    return;
                }
                Action::Stop { service } => match (running.get(&service), downs.get(&service)) {
                    (Some(_), Some(on_down)) => on_down(),
                    (Some((_, handle)), None) => handle.abort(),
                    (None, _) => {}
                },
            }
        }
        let next_restart = restarts.keys().next().map(|(due, _)| *due);
        let wait = next_restart.map_or(Duration::from_secs(3600), |due| due.saturating_sub(env.now()));
        tokio::select! {
            biased;
            Some(command) = control.recv() => match command {
                Control::Kill { service } => {
                    if let Some((_, handle)) = running.get(&service) {
                        handle.abort();
                    }
                }
                Control::Hangup { service } => match (running.get(&service), hangups.get(&service)) {
                    (Some(_), Some(on_hangup)) => on_hangup(),
                    (Some((_, handle)), None) => handle.abort(),
                    (None, _) => {}
                },
                Control::Down { service } => supervisor.command_down(&service, &mut out),
                Control::Up { service } => supervisor.command_up(&service, &mut out),
            },
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, status) = match joined {
                    Ok((id, Ok(()))) => (id, ExitStatus::Success),
                    Ok((id, Err(reason))) => (id, ExitStatus::Failed(reason)),
                    Err(error) => (error.id(), ExitStatus::Killed),
                };
                let service = running
                    .iter()
                    .find(|(_, (task, _))| *task == id)
                    .map(|(name, _)| name.clone())
                    .expect("every task is a running service");
                running.remove(&service);
                env.observe(Event::ServiceExited { service: service.clone(), status: status.to_string() });
                supervisor.handle_exit(&service, &status, &mut out);
            }
            () = tokio::time::sleep(wait), if next_restart.is_some() => {
                let now = env.now();
                let later = restarts.split_off(&(now + Duration::from_nanos(1), String::new()));
                for ((_, service), generation) in std::mem::replace(&mut restarts, later) {
                    supervisor.handle_restart_due(&service, generation, &mut out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::host::testing::{host, run_paused};

    fn starts(events: &[(Duration, Event)], name: &str) -> Vec<Duration> {
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::ServiceStarted { service } if service == name))
            .map(|(at, _)| *at)
            .collect()
    }

    fn service(name: &str, main: bool, run: impl Fn() -> ServiceFuture + 'static) -> Service {
        let mut spec = ServiceSpec::longrun(name);
        spec.main = main;
        Service { spec, start: Box::new(run), on_hangup: None, on_down: None }
    }

    #[test]
    fn a_failing_service_is_restarted_every_second_and_a_killed_one_too() {
        run_paused(async {
            let (env, recorded) = host(Rc::new(crate::host::MemoryDisk::default()));
            let (control, control_rx) = mpsc::unbounded_channel();
            let services = vec![
                service("flaky", false, || Box::pin(async { Err("boom".to_string()) })),
                service("steady", false, || Box::pin(std::future::pending())),
                service("main", true, || {
                    Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(3500)).await;
                        Ok(())
                    })
                }),
            ];
            let supervisor = tokio::task::spawn_local(run(env, services, control_rx));
            tokio::time::sleep(Duration::from_millis(1500)).await;
            control.send(Control::Kill { service: "steady".into() }).unwrap();
            supervisor.await.unwrap();
            let events = recorded.0.borrow();
            let secs = |v: &[u64]| v.iter().map(|ms| Duration::from_millis(*ms)).collect::<Vec<_>>();
            assert_eq!(starts(&events, "flaky"), secs(&[0, 1000, 2000, 3000]));
            assert_eq!(starts(&events, "steady"), secs(&[0, 2500]), "killed at 1.5 s, back 1 s later");
            let killed = events.iter().any(|(at, e)| {
                *at == Duration::from_millis(1500)
                    && matches!(e, Event::ServiceExited { service, status } if service == "steady" && status == "signal SIGKILL")
            });
            assert!(killed, "{events:?}");
            let (at, last) = events.last().unwrap();
            assert_eq!(*last, Event::HostHalted { service: "main".into() });
            assert_eq!(*at, Duration::from_millis(3500));
        });
    }
}
