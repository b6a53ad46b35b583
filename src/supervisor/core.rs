//! The sans-io supervisor: service exits and timers in, spawn/halt actions out.
//!
//! s6 rules kept here: a service that dies is restarted after the restart delay (1 s after its
//! finish script ends; s6 has no backoff); a finish script exiting 125 marks a permanent
//! failure, which is never restarted; when the main service (s6-overlay's CMD) exits, the
//! whole node halts.

use std::collections::BTreeMap;
use std::time::Duration;

/// s6's minimum time between two starts of one service.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The finish script exit code that means "do not restart".
pub const FINISH_PERMANENT_FAILURE: i32 = 125;

/// One supervised service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service directory name.
    pub name: String,
    /// When this service exits the node halts (s6-overlay's CMD).
    pub main: bool,
    /// Exit code of the service's finish script, if it has one.
    pub finish_exit: Option<i32>,
    /// Delay before a restart.
    pub restart_delay: Duration,
}

impl ServiceSpec {
    /// A plain long-running service with s6's defaults.
    pub fn longrun(name: impl Into<String>) -> Self {
        Self { name: name.into(), main: false, finish_exit: None, restart_delay: RESTART_DELAY }
    }
}

/// How a service ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It returned successfully.
    Success,
    /// It returned an error.
    Failed(String),
    /// It was killed from outside (a service crash fault, or SIGKILL).
    Killed,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Success => write!(f, "exit 0"),
            ExitStatus::Failed(reason) => write!(f, "exit 1: {reason}"),
            ExitStatus::Killed => write!(f, "signal SIGKILL"),
        }
    }
}

/// A service's state as s6-svstat would report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Running.
    Up,
    /// Dead, restart scheduled.
    Restarting,
    /// Dead, not wanted up.
    Down,
}

/// What the supervisor asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the service.
    Spawn { service: String },
    /// Call [`Supervisor::handle_restart_due`] after `after`.
    ScheduleRestart { service: String, generation: u64, after: Duration },
    /// The service will not be restarted.
    Down { service: String },
    /// Stop every service and halt the node.
    Halt { service: String },
    /// Send the service its down signal (s6's `down-signal` file, SIGTERM by default).
    Stop { service: String },
}

struct Slot {
    spec: ServiceSpec,
    state: ServiceState,
    /// Identifies the current restart timer; a timer of an older generation is stale.
    generation: u64,
    /// s6's "wanted up": `s6-svc -d` clears it (the service is not restarted when it ends),
    /// `s6-svc -u` sets it again.
    wanted_up: bool,
}

/// The supervision tree of one node.
pub struct Supervisor {
    services: BTreeMap<String, Slot>,
    order: Vec<String>,
    halted: bool,
}

impl Supervisor {
    /// A supervisor for these services, started in the given order.
    pub fn new(specs: Vec<ServiceSpec>) -> Self {
        assert!(specs.iter().filter(|s| s.main).count() <= 1, "at most one main service");
        let order: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let services: BTreeMap<String, Slot> = specs
            .into_iter()
            .map(|spec| (spec.name.clone(), Slot { spec, state: ServiceState::Down, generation: 0, wanted_up: true }))
            .collect();
        assert_eq!(services.len(), order.len(), "service names are unique");
        Self { services, order, halted: false }
    }

    /// Starts every service.
    pub fn start(&mut self, out: &mut Vec<Action>) {
        for name in &self.order {
            let slot = self.services.get_mut(name).expect("ordered names are services");
            slot.state = ServiceState::Up;
            out.push(Action::Spawn { service: name.clone() });
        }
    }

    /// A service ended with `status`.
    pub fn handle_exit(&mut self, service: &str, _status: &ExitStatus, out: &mut Vec<Action>) {
        if self.halted {
            return;
        }
        let slot = self.services.get_mut(service).expect("only supervised services exit");
        assert_eq!(slot.state, ServiceState::Up, "only a running service can exit");
        if slot.spec.main {
            self.halted = true;
            for slot in self.services.values_mut() {
                slot.state = ServiceState::Down;
            }
            out.push(Action::Halt { service: service.to_string() });
            return;
        }
        if slot.spec.finish_exit == Some(FINISH_PERMANENT_FAILURE) || !slot.wanted_up {
            slot.state = ServiceState::Down;
            out.push(Action::Down { service: service.to_string() });
            return;
        }
        slot.state = ServiceState::Restarting;
        slot.generation += 1;
        out.push(Action::ScheduleRestart {
            service: service.to_string(),
            generation: slot.generation,
            after: slot.spec.restart_delay,
        });
    }

    /// A restart timer fired.
    pub fn handle_restart_due(&mut self, service: &str, generation: u64, out: &mut Vec<Action>) {
        let Some(slot) = self.services.get_mut(service) else { return };
        if self.halted || slot.generation != generation || slot.state != ServiceState::Restarting {
            return;
        }
        slot.state = ServiceState::Up;
        out.push(Action::Spawn { service: service.to_string() });
    }

    /// `s6-svc -d`: the service is wanted down; a running one gets its down signal, a
    /// restart that was due is cancelled.
    pub fn command_down(&mut self, service: &str, out: &mut Vec<Action>) {
        let Some(slot) = self.services.get_mut(service).filter(|_| !self.halted) else { return };
        slot.wanted_up = false;
        match slot.state {
            ServiceState::Up => out.push(Action::Stop { service: service.to_string() }),
            ServiceState::Restarting => {
                slot.state = ServiceState::Down;
                slot.generation += 1;
                out.push(Action::Down { service: service.to_string() });
            }
            ServiceState::Down => {}
        }
    }

    /// `s6-svc -u`: the service is wanted up; a stopped one starts (a permanent failure too,
    /// as s6 does when told explicitly).
    pub fn command_up(&mut self, service: &str, out: &mut Vec<Action>) {
        let Some(slot) = self.services.get_mut(service).filter(|_| !self.halted) else { return };
        slot.wanted_up = true;
        if slot.state == ServiceState::Down {
            slot.state = ServiceState::Up;
            out.push(Action::Spawn { service: service.to_string() });
        }
    }

    /// The state of one service.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.services.get(service).map(|slot| slot.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawned(out: &[Action]) -> Vec<&str> {
        out.iter()
            .filter_map(|a| if let Action::Spawn { service } = a { Some(service.as_str()) } else { None })
            .collect()
    }

    #[test]
    fn starts_services_in_order() {
        let mut sup = Supervisor::new(vec![ServiceSpec::longrun("serf"), ServiceSpec::longrun("node")]);
        let mut out = Vec::new();
        sup.start(&mut out);
        assert_eq!(spawned(&out), vec!["serf", "node"]);
        assert_eq!(sup.state("node"), Some(ServiceState::Up));
    }

    #[test]
    fn a_crashed_service_restarts_after_one_second_and_stale_timers_are_ignored() {
        let mut sup = Supervisor::new(vec![ServiceSpec::longrun("serf")]);
        sup.start(&mut Vec::new());
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Killed, &mut out);
        assert_eq!(
            out,
            vec![Action::ScheduleRestart {
                service: "serf".into(),
                generation: 1,
                after: Duration::from_secs(1)
            }]
        );
        assert_eq!(sup.state("serf"), Some(ServiceState::Restarting));
        let mut out = Vec::new();
        sup.handle_restart_due("serf", 0, &mut out);
        assert!(out.is_empty(), "stale generation");
        sup.handle_restart_due("serf", 1, &mut out);
        assert_eq!(spawned(&out), vec!["serf"]);
        let mut out = Vec::new();
        sup.handle_restart_due("serf", 1, &mut out);
        assert!(out.is_empty(), "a timer fires once");
    }

    #[test]
    fn finish_exit_125_means_permanent_failure() {
        let mut spec = ServiceSpec::longrun("serf");
        spec.finish_exit = Some(FINISH_PERMANENT_FAILURE);
        let mut sup = Supervisor::new(vec![spec]);
        sup.start(&mut Vec::new());
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Failed("join".into()), &mut out);
        assert_eq!(out, vec![Action::Down { service: "serf".into() }]);
        assert_eq!(sup.state("serf"), Some(ServiceState::Down));
    }

    #[test]
    fn any_other_finish_exit_still_restarts() {
        let mut spec = ServiceSpec::longrun("serf");
        spec.finish_exit = Some(1);
        let mut sup = Supervisor::new(vec![spec]);
        sup.start(&mut Vec::new());
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Success, &mut out);
        assert!(matches!(out[0], Action::ScheduleRestart { .. }));
    }

    #[test]
    fn down_stops_without_restart_and_up_starts_again() {
        let mut sup = Supervisor::new(vec![ServiceSpec::longrun("serf")]);
        sup.start(&mut Vec::new());
        let mut out = Vec::new();
        sup.command_down("serf", &mut out);
        assert_eq!(out, vec![Action::Stop { service: "serf".into() }]);
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Success, &mut out);
        assert_eq!(out, vec![Action::Down { service: "serf".into() }], "not restarted");
        let mut out = Vec::new();
        sup.command_up("serf", &mut out);
        assert_eq!(spawned(&out), vec!["serf"]);
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Killed, &mut out);
        assert!(matches!(out[0], Action::ScheduleRestart { .. }), "wanted up again: restarted");
        let mut out = Vec::new();
        sup.command_down("serf", &mut out);
        assert_eq!(out, vec![Action::Down { service: "serf".into() }], "the pending restart is cancelled");
        sup.handle_restart_due("serf", 2, &mut out);
        assert_eq!(sup.state("serf"), Some(ServiceState::Down));
    }

    #[test]
    fn the_main_service_exiting_halts_the_node() {
        let mut main = ServiceSpec::longrun("app");
        main.main = true;
        let mut sup = Supervisor::new(vec![ServiceSpec::longrun("serf"), main]);
        sup.start(&mut Vec::new());
        let mut out = Vec::new();
        sup.handle_exit("app", &ExitStatus::Success, &mut out);
        assert_eq!(out, vec![Action::Halt { service: "app".into() }]);
        assert_eq!(sup.state("serf"), Some(ServiceState::Down));
        let mut out = Vec::new();
        sup.handle_exit("serf", &ExitStatus::Killed, &mut out);
        assert!(out.is_empty(), "nothing restarts after a halt");
    }
}
