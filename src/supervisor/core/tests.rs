//! Scripted tests of the supervisor, one s6 or s6-overlay rule each; the real-s6 figures
//! they mirror are in ../shared/reference/supervisor.md, part B.

use super::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn spawned(out: &[Action]) -> Vec<&str> {
    out.iter()
        .filter_map(|a| if let Action::Spawn { service } = a { Some(service.as_str()) } else { None })
        .collect()
}

fn timers(out: &[Action]) -> Vec<(Timer, Duration)> {
    out.iter()
        .filter_map(|a| {
            if let Action::SetTimer { timer, after } = a { Some((timer.clone(), *after)) } else { None }
        })
        .collect()
}

fn signals(out: &[Action]) -> Vec<Signal> {
    out.iter()
        .filter_map(|a| if let Action::Signal { signal, .. } = a { Some(*signal) } else { None })
        .collect()
}

fn supervisor(specs: Vec<ServiceSpec>) -> Supervisor {
    let mut sup = Supervisor::new(specs, NodeSettings::default());
    sup.start(Duration::ZERO, &mut Vec::new());
    sup
}

fn with_finish(name: &str) -> ServiceSpec {
    ServiceSpec { has_finish: true, ..ServiceSpec::longrun(name) }
}

/// The restart timer the output asks for, fired at `at`.
fn fire_restart(sup: &mut Supervisor, out: &[Action], at: Duration) -> Vec<Action> {
    let (timer, _) =
        timers(out).into_iter().find(|(t, _)| matches!(t, Timer::Restart { .. })).expect("a restart");
    let mut next = Vec::new();
    sup.handle_timer(timer, at, &mut next);
    next
}

#[test]
fn starts_longruns_in_order_except_those_with_a_down_file() {
    let quiet = ServiceSpec { normally_up: false, ..ServiceSpec::longrun("quiet") };
    let mut sup = Supervisor::new(
        vec![ServiceSpec::longrun("serf"), quiet, ServiceSpec::longrun("node")],
        NodeSettings::default(),
    );
    let mut out = Vec::new();
    sup.start(Duration::ZERO, &mut out);
    assert_eq!(spawned(&out), ["serf", "node"]);
    assert_eq!(sup.state("quiet"), Some(ServiceState::Down));
    let mut out = Vec::new();
    sup.command("quiet", Command::Up, ms(10), &mut out);
    assert_eq!(spawned(&out), ["quiet"], "s6-svc -u starts a service with a down file");
}

/// s6 2.11 as observed: `crash3` exits 3, finish gets `3 0`, the next start is 1 s after
/// finish ended; a signal death gives finish `256 15`.
#[test]
fn finish_gets_the_exit_and_the_restart_is_one_second_after_it_ends() {
    let mut sup = supervisor(vec![with_finish("crash3")]);
    let mut out = Vec::new();
    sup.handle_exit("crash3", Exit::Code(3), ms(200), &mut out);
    assert_eq!(out[0], Action::RunFinish { service: "crash3".into(), code: 3, signal: 0 });
    assert_eq!(sup.state("crash3"), Some(ServiceState::Finishing));
    let mut out = Vec::new();
    sup.handle_finish_exit("crash3", 0, ms(210), &mut out);
    assert_eq!(sup.state("crash3"), Some(ServiceState::Waiting));
    assert_eq!(timers(&out)[0].1, ms(1000), "1 s after finish ended");
    assert_eq!(spawned(&fire_restart(&mut sup, &out, ms(1210))), ["crash3"]);
    let mut out = Vec::new();
    sup.handle_exit("crash3", Exit::Signal(Signal::Term), ms(1500), &mut out);
    assert_eq!(out[0], Action::RunFinish { service: "crash3".into(), code: 256, signal: 15 });
    let tally: Vec<Exit> = sup.deaths("crash3").map(|(_, exit)| *exit).collect();
    assert_eq!(tally, [Exit::Code(3), Exit::Signal(Signal::Term)]);
}

/// `long` ran 1.5 s without readiness and still waits 1 s (s6 measured it); a service that
/// said it was ready more than 1 s before dying restarts at once.
#[test]
fn readiness_decides_whether_a_long_run_restarts_at_once() {
    let mut sup = supervisor(vec![ServiceSpec::longrun("long")]);
    let mut out = Vec::new();
    sup.handle_exit("long", Exit::Code(0), ms(1500), &mut out);
    assert_eq!(timers(&out)[0].1, ms(1000));

    let ready = ServiceSpec { notification: true, ..ServiceSpec::longrun("ready") };
    let mut sup = supervisor(vec![ready]);
    assert_eq!(sup.state("ready"), Some(ServiceState::Starting), "not up until it says so");
    let mut out = Vec::new();
    sup.handle_ready("ready", ms(100), &mut out);
    assert_eq!(out, [Action::Ready { service: "ready".into() }]);
    assert_eq!(sup.state("ready"), Some(ServiceState::Up));
    let mut out = Vec::new();
    sup.handle_exit("ready", Exit::Code(1), ms(5000), &mut out);
    assert_eq!(timers(&out)[0].1, Duration::ZERO, "ready 4.9 s before: no wait");
    let mut out = fire_restart(&mut sup, &out, ms(5000));
    sup.handle_ready("ready", ms(5100), &mut out);
    let mut out = Vec::new();
    sup.handle_exit("ready", Exit::Code(1), ms(5300), &mut out);
    assert_eq!(timers(&out)[0].1, ms(800), "1 s after readiness, not before");
}

/// `perm`: finish exits 125, it is never restarted, want-up is cleared, the recorded exit is
/// run's own; an explicit up starts it again at once.
#[test]
fn finish_exit_125_is_a_permanent_failure_until_an_explicit_up() {
    let mut sup = supervisor(vec![with_finish("perm")]);
    let mut out = Vec::new();
    sup.handle_exit("perm", Exit::Code(7), ms(500), &mut out);
    let mut out = Vec::new();
    sup.handle_finish_exit("perm", FINISH_PERMANENT_FAILURE, ms(510), &mut out);
    assert_eq!(out, [Action::Failed { service: "perm".into() }]);
    assert_eq!((sup.state("perm"), sup.wants_up("perm")), (Some(ServiceState::Failed), false));
    assert_eq!(sup.deaths("perm").last().map(|(_, e)| *e), Some(Exit::Code(7)));
    let mut out = Vec::new();
    sup.command("perm", Command::Up, ms(9000), &mut out);
    assert_eq!(spawned(&out), ["perm"]);
}

/// `slowfin`: a finish that outlives timeout-finish is killed, and the service restarts 1 s
/// after the kill.
#[test]
fn a_finish_that_runs_too_long_is_killed_and_the_service_restarts() {
    let spec = ServiceSpec { timeout_finish: ms(300), ..with_finish("slowfin") };
    let mut sup = supervisor(vec![spec]);
    let mut out = Vec::new();
    sup.handle_exit("slowfin", Exit::Code(1), ms(200), &mut out);
    let (timer, after) = timers(&out)[0].clone();
    assert_eq!(after, ms(300));
    let mut out = Vec::new();
    sup.handle_timer(timer, ms(500), &mut out);
    assert_eq!(out[0], Action::KillFinish { service: "slowfin".into() });
    assert_eq!(timers(&out)[0].1, ms(1000));
    let mut late = Vec::new();
    sup.handle_finish_exit("slowfin", FINISH_PERMANENT_FAILURE, ms(600), &mut late);
    assert!(late.is_empty(), "a killed finish has no say");
}

#[test]
fn down_signals_and_never_restarts_and_kills_after_timeout_kill() {
    let spec =
        ServiceSpec { down_signal: Signal::Int, timeout_kill: ms(2000), ..ServiceSpec::longrun("serf") };
    let mut sup = supervisor(vec![spec]);
    let mut out = Vec::new();
    sup.command("serf", Command::Down, ms(100), &mut out);
    assert_eq!(signals(&out), [Signal::Int, Signal::Cont], "the down signal, then SIGCONT");
    let (kill, after) = timers(&out)[0].clone();
    assert_eq!(after, ms(2000));
    let mut out = Vec::new();
    sup.handle_timer(kill, ms(2100), &mut out);
    assert_eq!(signals(&out), [Signal::Kill], "still alive after timeout-kill");
    let mut out = Vec::new();
    sup.handle_exit("serf", Exit::Signal(Signal::Kill), ms(2100), &mut out);
    assert_eq!(out, [Action::Down { service: "serf".into() }]);
    assert_eq!(sup.state("serf"), Some(ServiceState::Down));
}

#[test]
fn signals_never_change_want_up() {
    // s6-svc -k, -t, -h, -p and -c send their signal and nothing else; a run that dies of
    // it is restarted, as it was wanted up.
    for signal in [Signal::Kill, Signal::Term, Signal::Hup, Signal::Stop, Signal::Cont] {
        let mut sup = supervisor(vec![ServiceSpec::longrun("app")]);
        let mut out = Vec::new();
        sup.command("app", Command::Signal(signal), ms(100), &mut out);
        assert_eq!(signals(&out), [signal]);
        let mut out = Vec::new();
        sup.handle_exit("app", Exit::Signal(signal), ms(100), &mut out);
        assert!(
            matches!(out[0], Action::SetTimer { timer: Timer::Restart { .. }, .. }),
            "died of {signal:?}, wanted up: restarted"
        );
    }
}

#[test]
fn once_runs_without_restart_and_once_after_stops_the_next_restart() {
    let quiet = ServiceSpec { normally_up: false, ..ServiceSpec::longrun("job") };
    let mut sup = supervisor(vec![quiet, ServiceSpec::longrun("app")]);
    let mut out = Vec::new();
    sup.command("job", Command::Once, ms(0), &mut out);
    assert_eq!(spawned(&out), ["job"]);
    let mut out = Vec::new();
    sup.handle_exit("job", Exit::Code(0), ms(50), &mut out);
    assert_eq!(out, [Action::Down { service: "job".into() }]);
    let mut out = Vec::new();
    sup.command("app", Command::OnceAfter, ms(60), &mut out);
    assert!(out.is_empty());
    sup.handle_exit("app", Exit::Code(2), ms(70), &mut out);
    assert_eq!(out, [Action::Down { service: "app".into() }]);
}

#[test]
fn down_cancels_a_pending_restart_and_exit_reports_when_down() {
    let mut sup = supervisor(vec![ServiceSpec::longrun("app")]);
    let mut out = Vec::new();
    sup.handle_exit("app", Exit::Code(1), ms(100), &mut out);
    let mut later = Vec::new();
    sup.command("app", Command::Down, ms(200), &mut later);
    assert_eq!(later, [Action::Down { service: "app".into() }]);
    assert!(spawned(&fire_restart(&mut sup, &out, ms(1100))).is_empty(), "the cancelled restart is stale");
    let mut out = Vec::new();
    sup.command("app", Command::Exit, ms(300), &mut out);
    assert_eq!(out, [Action::Exited { service: "app".into() }]);
    sup.command("app", Command::Up, ms(400), &mut out);
    assert_eq!(out.len(), 1, "no commands after -x");
}

#[test]
fn the_death_tally_is_bounded() {
    let spec = ServiceSpec { max_death_tally: 3, ..ServiceSpec::longrun("app") };
    let mut sup = supervisor(vec![spec]);
    for i in 0..5u64 {
        let mut out = Vec::new();
        sup.handle_exit("app", Exit::Code(i as i32), ms(i * 2000), &mut out);
        fire_restart(&mut sup, &out, ms(i * 2000 + 1000));
    }
    let tally: Vec<Exit> = sup.deaths("app").map(|(_, e)| *e).collect();
    assert_eq!(tally, [Exit::Code(2), Exit::Code(3), Exit::Code(4)]);
}

#[test]
fn the_optional_backoff_doubles_within_its_window_and_is_capped() {
    let backoff = Backoff { base: ms(1000), max: ms(5000), window: Duration::from_secs(60) };
    assert_eq!(
        [1, 2, 3, 4, 5, 9].map(|n| backoff.extra(n)),
        [ms(0), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]
    );
    let spec = ServiceSpec { backoff: Some(backoff), ..ServiceSpec::longrun("app") };
    let mut sup = supervisor(vec![spec]);
    let mut waits = Vec::new();
    let mut now = ms(100);
    for _ in 0..4 {
        let mut out = Vec::new();
        sup.handle_exit("app", Exit::Code(1), now, &mut out);
        let wait = timers(&out)[0].1;
        waits.push(wait);
        now += wait;
        fire_restart(&mut sup, &out, now);
        now += ms(100);
    }
    assert_eq!(waits, [ms(1000), ms(2000), ms(3000), ms(5000)], "1 s, then 1 s + 1, 2, 4 s");
}

/// s6-overlay: init steps one after another, then longruns, then the main program; the
/// main program's end shuts the node down with its code (128 + signal when signalled):
/// TERM in reverse start order, KILL after the grace time, halt.
#[test]
fn init_steps_run_in_order_and_the_main_exit_halts_the_node_with_its_code() {
    let specs = vec![
        ServiceSpec::init("10-setup"),
        ServiceSpec::init("20-more"),
        ServiceSpec::longrun("serf"),
        with_finish("webapp"),
        ServiceSpec::main("app"),
    ];
    let mut sup = Supervisor::new(specs, NodeSettings::default());
    let mut out = Vec::new();
    sup.start(Duration::ZERO, &mut out);
    assert_eq!(spawned(&out), ["10-setup"]);
    let mut out = Vec::new();
    sup.handle_exit("10-setup", Exit::Code(1), ms(10), &mut out);
    assert_eq!(spawned(&out), ["20-more"], "a failed step does not stop the boot by default");
    let mut out = Vec::new();
    sup.handle_exit("20-more", Exit::Code(0), ms(20), &mut out);
    assert_eq!(spawned(&out), ["serf", "webapp", "app"]);
    let mut out = Vec::new();
    sup.handle_exit("app", Exit::Signal(Signal::Kill), ms(1000), &mut out);
    assert_eq!(out[0], Action::ShutdownStarted { code: 137 });
    let order: Vec<&str> = out
        .iter()
        .filter_map(|a| {
            if let Action::Signal { service, signal: Signal::Term } = a {
                Some(service.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(order, ["webapp", "serf"], "reverse start order");
    let mut out = Vec::new();
    sup.command("serf", Command::Up, ms(1100), &mut out);
    sup.handle_exit("webapp", Exit::Signal(Signal::Term), ms(1200), &mut out);
    assert_eq!(
        out[0],
        Action::RunFinish { service: "webapp".into(), code: 256, signal: 15 },
        "finish still runs"
    );
    assert!(spawned(&out).is_empty(), "nothing starts during a shutdown");
    let mut out = Vec::new();
    sup.handle_finish_exit("webapp", 0, ms(1300), &mut out);
    assert!(out.is_empty(), "serf still runs");
    sup.handle_timer(Timer::ShutdownKill, ms(4000), &mut out);
    assert_eq!(signals(&out), [Signal::Kill]);
    let mut out = Vec::new();
    sup.handle_exit("serf", Exit::Signal(Signal::Kill), ms(4000), &mut out);
    assert_eq!(out, [Action::Halt { code: 137 }]);
    assert!(sup.is_halted());
}

#[test]
fn a_failing_init_step_halts_the_node_when_told_to() {
    let settings = NodeSettings { init_failure_halts: true, ..NodeSettings::default() };
    let mut sup =
        Supervisor::new(vec![ServiceSpec::init("10-setup"), ServiceSpec::longrun("serf")], settings);
    sup.start(Duration::ZERO, &mut Vec::new());
    let mut out = Vec::new();
    sup.handle_exit("10-setup", Exit::Code(3), ms(10), &mut out);
    assert_eq!(
        out,
        [
            Action::ShutdownStarted { code: 3 },
            Action::SetTimer { timer: Timer::ShutdownKill, after: SERVICES_GRACETIME_DEFAULT },
            Action::Halt { code: 3 }
        ]
    );
}

#[test]
fn a_shutdown_halts_after_the_kill_grace_time_even_if_something_hangs() {
    let mut sup = supervisor(vec![ServiceSpec::longrun("stuck")]);
    let mut out = Vec::new();
    sup.shutdown(0, &mut out);
    assert_eq!(signals(&out), [Signal::Term]);
    let mut out = Vec::new();
    sup.handle_timer(Timer::ShutdownKill, ms(3000), &mut out);
    assert_eq!(signals(&out), [Signal::Kill]);
    assert_eq!(timers(&out)[0], (Timer::ShutdownHalt, KILL_GRACETIME_DEFAULT));
    let mut out = Vec::new();
    sup.handle_timer(Timer::ShutdownHalt, ms(6000), &mut out);
    assert_eq!(out, [Action::Halt { code: 0 }]);
}
