//! The shipped scenarios end as they declare, for the seeds the issues name; expectations are
//! exact; every invariant catches a world that breaks it; the CLI reports all of it with its
//! exit code.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rollcall::host::{Event, MemberChange};
use rollcall::node::{Pipeline, PlantedBugs};
use rollcall_sim::faults::{FaultKind, FaultSpec};
use rollcall_sim::trace::{Entry, WorldEvent};
use rollcall_sim::world::{Expectation, HostKind, InvariantSettings};
use rollcall_sim::{Run, Simulation};

#[path = "common/parallel.rs"]
mod parallel;
#[path = "common/shipped.rs"]
mod shipped;
use shipped::{LONG_RUNNING, scenario_files, shipped};

fn scenario_path(name: &str) -> PathBuf {
    shipped::scenarios_dir().join(name)
}

fn simulation(name: &str) -> Simulation {
    Simulation::from_file(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn run(simulation: &Simulation) -> Run {
    let (name, seed) = (&simulation.world().name, simulation.seed_value());
    simulation.run().unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"))
}

fn assert_as_expected(name: &str, seed: u64) {
    let run = run(&simulation(name).seed(seed));
    assert!(run.report.as_expected, "{name} seed {seed}:\n{}", run.report.to_text());
    // A shipped scenario sets no bound its own configuration cannot meet.
    assert!(run.report.figures.cautions.is_empty(), "{name} seed {seed}: {:?}", run.report.figures.cautions);
}

/// Every seed of `seeds` of every scenario of `names`, on every core.
fn assert_all_as_expected(names: &[&str], seeds: impl Fn(&str) -> std::ops::RangeInclusive<u64>) {
    let runs: Vec<(&str, u64)> =
        names.iter().flat_map(|name| seeds(name).map(move |seed| (*name, seed))).collect();
    parallel::check_all(&runs, |(name, seed)| assert_as_expected(name, *seed));
}

fn hosts(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|h| h.to_string()).collect()
}

/// A long-running scenario renamed or removed would drop out of both lists without a word.
#[test]
fn every_long_running_scenario_is_shipped() {
    let files = scenario_files();
    for name in LONG_RUNNING {
        assert!(files.iter().any(|file| file == name), "{name} is not in scenarios/");
    }
}

#[test]
fn every_shipped_scenario_ends_as_expected_for_seeds_1_to_5() {
    let names = shipped();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_all_as_expected(&names, |_| 1..=5);
}

/// The long-running scenarios (see [`LONG_RUNNING`]):
/// `cargo test --release -p rollcall-sim --test scenarios -- --ignored` runs them.
#[test]
#[ignore = "minutes to hours per seed: run with --ignored"]
fn every_long_running_scenario_ends_as_expected() {
    assert_all_as_expected(&LONG_RUNNING, long_running_seeds);
}

/// Seeds 1-5, but only seed 1 of gossip-10k: its expectation (a `converge` violation) was
/// judged on that seed alone, and five seeds would take seven hours.
fn long_running_seeds(name: &str) -> std::ops::RangeInclusive<u64> {
    if name == "gossip-10k.toml" { 1..=1 } else { 1..=5 }
}

#[test]
fn lab_converges_serves_and_agrees() {
    let run = run(&simulation("lab.toml"));
    let names: Vec<&str> = run.report.verdicts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["converge", "available", "views", "no-self-death"]);
    assert!(run.report.verdicts.iter().all(|v| v.holds()), "{}", run.report.to_text());
    assert_eq!(run.report.figures.requests.ok, run.report.figures.requests.sent);
}

#[test]
fn lab_join_no_retry_shows_the_start_order_bug() {
    let run = run(&simulation("lab-join-no-retry.toml"));
    assert!(run.report.as_expected, "{}", run.report.to_text());
    let converge = run.report.verdict("converge").unwrap();
    assert_eq!(converge.failed, 2, "both webapps stay out: {:?}", converge.violations);
    assert_eq!(converge.hosts, hosts(&["s1", "s2"]));
}

#[test]
fn lab_partition_detects_serves_and_heals_for_seeds_1_to_20() {
    assert_all_as_expected(&["lab-partition.toml"], |_| 1..=20);
}

/// Each change of `server`'s state as the balancer's checks record it, with its reason.
fn server_changes(run: &Run, server: &str) -> Vec<(Duration, bool, String)> {
    run.trace
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Entry::Host(rollcall::host::Event::ServerState { server: s, up, reason }) if s == server => {
                Some((r.at(), *up, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// s1 is cut off from ha only (gossip still says alive): its health checks take it DOWN
/// and back UP, and `available` holds (before health checks it failed on s1 for the whole
/// cut). A cut link answers no SYN, so each check across it runs out its timeout (`inter`,
/// there being no `timeout check`): DOWN comes after `fall` timeouts with `fastinter` between
/// them, not within milliseconds of each check as a refused connect would make it.
#[test]
fn lab_partial_cut_health_checks_take_s1_out_and_back_for_seeds_1_to_20() {
    let (cut, heal) = (Duration::from_secs(20), Duration::from_secs(40));
    let (inter, rise, fall) = (Duration::from_secs(2), 2, 3);
    let seeds: Vec<u64> = (1..=20).collect();
    parallel::check_all(&seeds, |&seed| {
        let run = run(&simulation("lab-partial-cut.toml").seed(seed));
        assert!(run.report.as_expected, "seed {seed}:\n{}", run.report.to_text());
        assert!(run.report.verdict("available").unwrap().holds(), "seed {seed}");
        let states = server_changes(&run, "s1");
        assert_eq!(
            states.iter().map(|(_, up, _)| *up).collect::<Vec<_>>(),
            [false, true],
            "seed {seed}: {states:?}"
        );
        // fall timeouts and the fastinters between them; the last success came before the
        // cut, at most one inter before the first timed-out check started.
        let timeouts = inter * fall + inter * (fall - 1);
        let (down, _, reason) = &states[0];
        assert!(*down >= cut + timeouts && *down <= cut + inter + timeouts, "seed {seed}: down at {down:?}");
        assert!(reason.ends_with("last: timeout"), "seed {seed}: down because {reason}");
        // The check under way at the heal runs out its timeout; then rise checks pass,
        // downinter and fastinter apart, each within a round trip (well under 100 ms).
        let up = states[1].0;
        assert!(
            up > heal && up <= heal + inter + inter * rise + Duration::from_millis(100),
            "seed {seed}: up at {up:?}"
        );
    });
}

#[test]
fn lab_faults_and_ha_restart_end_as_expected_for_seeds_6_to_20() {
    assert_all_as_expected(&["lab-faults.toml", "lab-ha-restart.toml"], |_| 6..=20);
}

#[test]
fn an_extra_host_an_extra_invariant_or_an_unchecked_one_is_not_as_expected() {
    // lab-ha-restart violates converge and available on s1 and s2.
    let base = simulation("lab-ha-restart.toml");
    let pinned = |on: &[&str]| Expectation {
        violated: hosts(&["converge", "available"]),
        hosts: [("converge".to_string(), hosts(&["s1", "s2"])), ("available".to_string(), hosts(on))].into(),
        allow_unchecked: false,
        seeded: Vec::new(),
    };
    assert!(run(&base.clone().expect(pinned(&["s1", "s2"]))).report.as_expected);
    // Pinned to s1 only: the violations on s2 are unexpected.
    let report = run(&base.clone().expect(pinned(&["s1"]))).report;
    assert!(
        !report.as_expected && report.mismatches[0].contains("expected exactly"),
        "{:?}",
        report.mismatches
    );
    // Pinned to s1, s2 and ha: ha never failed.
    assert!(!run(&base.clone().expect(pinned(&["s1", "s2", "ha"]))).report.as_expected);
    // An invariant expected to fail that holds.
    let mut extra = pinned(&["s1", "s2"]);
    extra.violated.insert("no-self-death".into());
    let report = run(&base.clone().expect(extra)).report;
    assert!(
        report.mismatches.iter().any(|m| m.contains("no-self-death expected")),
        "{:?}",
        report.mismatches
    );
    // `detect` has nothing to check when only ha restarts: UNCHECKED is never as expected.
    let mut unchecked = base.clone().expect(pinned(&["s1", "s2"]));
    unchecked.world_mut().invariants.detect_rounds = Some(10);
    let report = run(&unchecked).report;
    assert_eq!(report.verdict("detect").unwrap().verdict, "UNCHECKED");
    assert!(
        report.mismatches.iter().any(|m| m.contains("detect checked nothing")),
        "{:?}",
        report.mismatches
    );
}

#[test]
fn a_run_that_breaks_its_expectation_fails_with_the_replay_command() {
    let run = run(&simulation("lab-join-no-retry.toml").expect(Expectation::default()).seed(9));
    assert!(!run.report.as_expected);
    let text = run.report.to_text();
    assert!(text.contains("ROLLCALL_SEED=9"), "{text}");
    assert!(text.contains("-- run ") && text.contains("lab-join-no-retry.toml --seed 9"), "{text}");
}

#[test]
fn the_cli_exit_code_says_whether_the_outcome_was_expected() {
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let status = |args: &[&str]| Command::new(cli).args(args).output().unwrap();
    let restart = scenario_path("lab-ha-restart.toml");
    let lab = status(&["run", restart.to_str().unwrap(), "--seed", "1", "--json"]);
    assert_eq!(lab.status.code(), Some(0), "{}", String::from_utf8_lossy(&lab.stderr));
    let report: serde_json::Value = serde_json::from_slice(&lab.stdout).unwrap();
    assert_eq!(report["as_expected"], true);
    let available = report["verdicts"].as_array().unwrap().iter().find(|v| v["name"] == "available").unwrap();
    assert_eq!(available["verdict"], "VIOLATED");
    assert_eq!(available["hosts"], serde_json::json!(["s1", "s2"]));
    assert!(available["violations"][0]["what"].as_str().unwrap().contains("request #"));
    assert!(report["windows"]["detection"]["ms"].as_u64().unwrap() > 0);
    assert!(report["requests"]["failed"]["unexcused"].as_u64().unwrap() > 0);
    assert!(report["false_failures"].is_u64());

    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/unexpected.toml");
    let failed = status(&["run", fixture.to_str().unwrap(), "--seed", "3"]);
    assert_eq!(failed.status.code(), Some(1), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("--seed 3"));

    let dir = std::env::temp_dir().join(format!("rollcall-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.jsonl");
    let traced =
        status(&["run", scenario_path("lab.toml").to_str().unwrap(), "--trace", trace.to_str().unwrap()]);
    assert_eq!(traced.status.code(), Some(0));
    let lines = std::fs::read_to_string(&trace).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"]["kind"], "plan", "the plan is the first record");
    assert!(first["t_us"].is_u64() && first["event"]["roles"]["ha"] == "balancer");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Observations come from the trace alone: a trace written as JSON Lines and read back gives
/// the same verdicts.
#[test]
fn the_trace_alone_gives_the_verdicts() {
    let simulation = simulation("lab-partial-cut.toml");
    let run = run(&simulation);
    let text = run.trace.to_json_lines();
    let records = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let reread = rollcall_sim::trace::Trace { records };
    assert_eq!(reread.hash(), run.trace.hash());
    let observations = rollcall_sim::observe::Observations::new(&reread);
    let (verdicts, figures) = rollcall_sim::invariants::check(simulation.world(), &observations);
    assert_eq!(verdicts, run.report.verdicts);
    assert_eq!(figures, run.report.figures);
}

fn verdict_with(simulation: Simulation, name: &str) -> rollcall_sim::invariants::Verdict {
    run(&simulation).report.verdict(name).unwrap_or_else(|| panic!("{name} not checked")).clone()
}

/// The world with its balancer's template text edited by `edit`.
fn with_template(mut simulation: Simulation, edit: impl Fn(&str) -> String) -> Simulation {
    for host in &mut simulation.world_mut().hosts {
        if let HostKind::Node(node) = &mut host.kind {
            if let rollcall::node::Role::Balancer { template_text, .. } = &mut node.role {
                *template_text = edit(template_text);
            }
        }
    }
    simulation
}

/// The lab's template without `check`: the balancer relies on gossip alone.
fn without_health_checks(simulation: Simulation) -> Simulation {
    with_template(simulation, |t| t.replace(":3000 check", ":3000"))
}

/// Without health checks, a balancer that ignores removals keeps sending requests to s1
/// after gossip dropped it.
#[test]
fn available_catches_a_balancer_that_ignores_removals() {
    let correct = verdict_with(without_health_checks(simulation("lab-partition.toml")), "available");
    assert!(correct.holds(), "{correct:?}");
    let bugs = PlantedBugs { balancer_ignores_removals: true, ..PlantedBugs::default() };
    let broken = without_health_checks(simulation("lab-partition.toml").planted_bugs("ha", bugs));
    let broken = verdict_with(broken, "available");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
    assert!(broken.violations[0].what.contains("sent to s1, unreachable"), "{broken:?}");
}

/// A balancer that sends requests to servers its checks marked DOWN: in a partial cut, gossip
/// keeps s1 and only the checks could have saved the requests.
#[test]
fn available_catches_a_balancer_that_ignores_its_health_checks() {
    let bugs = PlantedBugs { balancer_ignores_health: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-partial-cut.toml").planted_bugs("ha", bugs), "available");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// A reload every 730 ms under a request every 50 ms loses nothing; a balancer that closes
/// its port for 100 ms on each reload is caught, and so would be one that dies on a reload
/// (a balancer service that stops on its own excuses nothing).
#[test]
fn available_catches_a_balancer_that_refuses_connections_during_reloads() {
    let correct = run(&simulation("lab-reload-storm.toml"));
    let requests = &correct.report.figures.requests;
    assert!(requests.sent > 1000 && requests.ok == requests.sent, "{requests:?}");
    let bugs = PlantedBugs { balancer_reopens_listener: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-reload-storm.toml").planted_bugs("ha", bugs), "available");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert!(broken.violations[0].what.contains("the balancer never answered it"), "{broken:?}");
}

/// A renderer that leaves a live backend out of every rendering.
#[test]
fn converge_catches_a_renderer_that_drops_a_live_backend() {
    assert!(verdict_with(simulation("lab.toml"), "converge").holds());
    let bugs = PlantedBugs { renderer_drops_a_backend: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab.toml").planted_bugs("ha", bugs), "converge");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// After the heal, s1 never refutes its death: ha and s2 list it dead while it runs.
#[test]
fn views_catch_a_gossip_agent_that_never_refutes() {
    assert!(verdict_with(simulation("lab-partition.toml"), "views").holds());
    let bugs = PlantedBugs { gossip_never_refutes: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-partition.toml").planted_bugs("s1", bugs), "views");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert!(broken.hosts.contains("ha"), "{broken:?}");
    assert!(broken.violations[0].what.contains("s1 Dead"), "{broken:?}");
}

/// Detection takes a probe gap, a timeout and a 4-round suspicion: 2 rounds is too tight.
#[test]
fn detect_catches_a_bound_the_stack_cannot_meet() {
    let mut tight = simulation("lab-partition.toml");
    tight.world_mut().invariants.detect_rounds = Some(2);
    let detect = verdict_with(tight, "detect");
    assert!(detect.is_contradicted(), "{detect:?}");
    assert!(detect.violations[0].what.contains("s1 is down or isolated from ha"), "{detect:?}");
}

/// A client that gives up after 1 ms fails every request while every server is fine.
#[test]
fn available_catches_failures_while_everything_is_up() {
    let mut impatient = simulation("lab.toml");
    for host in &mut impatient.world_mut().hosts {
        if let HostKind::Client(client) = &mut host.kind {
            client.timeout = Duration::from_millis(1);
        }
    }
    let available = verdict_with(impatient, "available");
    assert!(available.is_contradicted(), "{available:?}");
    assert!(available.violations.iter().any(|v| v.what.contains("up and reachable")), "{available:?}");
}

/// With retry-join every 2 s, the lab converges within one retry interval (plus a few
/// milliseconds of network) of the last node it needs booting.
#[test]
fn the_lab_converges_within_one_retry_interval_of_the_last_boot() {
    for seed in 1..=10 {
        let convergence = simulation("lab.toml").seed(seed).convergence().unwrap().expect("converges");
        assert!(convergence.since_last_boot <= Duration::from_millis(2_050), "seed {seed}: {convergence:?}");
    }
}

fn partition(at: u64, lasting: u64, host: &str) -> FaultSpec {
    let others = ["ha", "s1", "s2", "client"].iter().filter(|h| **h != host).map(|h| h.to_string());
    FaultSpec {
        at: Duration::from_secs(at),
        lasting: Some(Duration::from_secs(lasting)),
        kind: FaultKind::Partition { a: vec![host.into()], b: others.collect(), oneway: false },
    }
}

/// Two partitions overlap: s1 is isolated from 10 s to 30 s, and s2 from 15 s to 20 s. The
/// heal of s2 at 20 s must not reconnect s1 and s2, so s1 stays out of ha's backends until 30 s.
#[test]
fn overlapping_partitions_do_not_heal_each_other() {
    let base = simulation("lab-partition.toml").faults(vec![partition(10, 20, "s1"), partition(15, 5, "s2")]);
    for seed in 1..=5 {
        let run = run(&base.clone().seed(seed));
        assert!(run.report.as_expected, "seed {seed}:\n{}", run.report.to_text());
        let back = run.report.timeline.iter().find(|e| {
            e.host == "ha" && e.t_ms > 20_000 && e.what.starts_with("rendered") && e.what.contains("s1")
        });
        assert!(back.is_some_and(|e| e.t_ms >= 30_000), "seed {seed}: s1 back too early: {back:?}");
    }
}

fn loss(at: u64, lasting: u64, rate: f64) -> FaultSpec {
    let all = ["ha", "s1", "s2", "client"].iter().map(|h| h.to_string()).collect();
    FaultSpec {
        at: Duration::from_secs(at),
        lasting: Some(Duration::from_secs(lasting)),
        kind: FaultKind::Loss { hosts: all, rate },
    }
}

/// Two loss windows overlap: 50 % from 10 s to 30 s and 50 % from 15 s to 20 s. When the
/// short one ends, the long one still drops datagrams (before the fix, the rate went to 0).
#[test]
fn overlapping_loss_windows_do_not_undo_each_other() {
    let run = run(&simulation("lab-partition.toml").faults(vec![loss(10, 20, 0.5), loss(15, 5, 0.5)]));
    let at = |s: u64| Duration::from_secs(s);
    let rates: Vec<(Duration, f64)> = run
        .trace
        .records
        .iter()
        .filter(|r| r.host == "ha")
        .filter_map(|r| match &r.event {
            Entry::World(WorldEvent::GossipImpaired { loss_rate, .. }) => Some((r.at(), *loss_rate)),
            _ => None,
        })
        .collect();
    assert_eq!(rates, vec![(at(10), 0.5), (at(15), 0.75), (at(20), 0.5), (at(30), 0.0)]);
    let dropped_after_short_window = run.trace.records.iter().any(|r| {
        r.at() > at(20)
            && r.at() < at(30)
            && matches!(r.event, Entry::Host(rollcall::host::Event::DatagramDropped { .. }))
    });
    assert!(dropped_after_short_window, "loss must go on until 30 s");
}

fn latency(at: u64, lasting: u64, ms: u64) -> FaultSpec {
    let all = ["ha", "s1", "s2", "client"].iter().map(|h| h.to_string()).collect();
    FaultSpec {
        at: Duration::from_secs(at),
        lasting: Some(Duration::from_secs(lasting)),
        kind: FaultKind::Latency { hosts: all, extra: Duration::from_millis(ms) },
    }
}

/// Two latency windows overlap: +50 ms from 10 s to 30 s and +30 ms from 15 s to 20 s. They
/// add up while both hold, and the end of the short one leaves the long one in force.
#[test]
fn overlapping_latency_windows_do_not_undo_each_other() {
    let run = run(&simulation("lab-partition.toml").faults(vec![latency(10, 20, 50), latency(15, 5, 30)]));
    let at = |s: u64| Duration::from_secs(s);
    let latencies: Vec<(Duration, u64)> = run
        .trace
        .records
        .iter()
        .filter(|r| r.host == "s1")
        .filter_map(|r| match &r.event {
            Entry::World(WorldEvent::GossipImpaired { extra_latency_ms, .. }) => {
                Some((r.at(), *extra_latency_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(latencies, vec![(at(10), 50), (at(15), 80), (at(20), 50), (at(30), 0)]);
}

/// A renderer that keeps rendering dead members: s1, isolated, is never dropped.
#[test]
fn detect_catches_a_renderer_that_keeps_dead_members() {
    let bugs = PlantedBugs { renderer_keeps_dead: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-partition.toml").planted_bugs("ha", bugs), "detect");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// lab-partition with s1 mute instead of isolated: nothing it sends arrives, but it hears
/// everything, so it hears its own suspicion and death while it runs.
fn s1_mute() -> Simulation {
    let mut simulation = simulation("lab-partition.toml");
    let world = simulation.world_mut();
    let everyone_else = vec!["ha".to_string(), "s2".to_string()];
    let fault = FaultKind::Partition { a: vec!["s1".into()], b: everyone_else, oneway: true };
    world.faults =
        vec![FaultSpec { at: Duration::from_secs(20), lasting: Some(Duration::from_secs(20)), kind: fault }];
    simulation
}

/// An agent that believes accusations of itself: mute, s1 is suspected and declared dead,
/// hears both, and records itself dead while it runs. (Cut from ha alone, s1 is never
/// accused at all: the ping-reqs through s2 carry its acks.)
#[test]
fn no_self_death_catches_an_agent_that_believes_its_own_death() {
    assert!(verdict_with(s1_mute(), "no-self-death").holds());
    let bugs = PlantedBugs { gossip_believes_accusations: true, ..PlantedBugs::default() };
    let broken = verdict_with(s1_mute().planted_bugs("s1", bugs), "no-self-death");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// An agent whose graceful leave tells no one: its peers find it dead, and `left` names it
/// with each of them (the leave that rejoins later is not judged).
#[test]
fn left_catches_a_leave_that_tells_no_one() {
    let bugs = PlantedBugs { gossip_leaves_silently: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("gossip-leave.toml").planted_bugs("s3", bugs), "left");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert!(broken.violations.iter().all(|v| v.hosts.contains(&"s3".to_string())), "{broken:?}");
    assert!(broken.violations[0].what.contains("Dead"), "{broken:?}");
}

/// Tags set at run time reach every agent (s1's own included) as a member-update carrying them.
#[test]
fn tags_set_at_run_time_reach_every_agent() {
    let run = run(&simulation("gossip-leave.toml"));
    let updated: BTreeSet<String> = run
        .trace
        .records
        .iter()
        .filter(|r| match &r.event {
            Entry::Host(Event::Member { change: MemberChange::Update, member, tags, .. }) => {
                member == "s1" && tags.get("weight").map(String::as_str) == Some("5")
            }
            _ => false,
        })
        .map(|r| r.host.clone())
        .collect();
    let every = ["ha", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    assert_eq!(updated, hosts(&every));
}

/// A supervisor that restarts at once: s2's webapp comes back in the same instant it was
/// killed, and `restart-spacing` names s2.
#[test]
fn restart_spacing_catches_a_supervisor_without_a_restart_delay() {
    let bugs = PlantedBugs { supervisor_restarts_at_once: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-supervision.toml").planted_bugs("s2", bugs), "restart-spacing");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s2"]));
}

/// `rendered-view` catches both renderer bugs: a backend left out, dead members kept.
#[test]
fn rendered_view_catches_a_renderer_that_drops_or_keeps_members() {
    let drops = PlantedBugs { renderer_drops_a_backend: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-partition.toml").planted_bugs("ha", drops), "rendered-view");
    assert!(broken.is_contradicted(), "{broken:?}");
    // The first live backend by name is dropped: s1, then s2 while s1 is cut off and failed.
    assert_eq!(broken.hosts, hosts(&["s1", "s2"]));
    let keeps = PlantedBugs { renderer_keeps_dead: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab-partition.toml").planted_bugs("ha", keeps), "rendered-view");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]), "s1, cut off and failed, is kept");
}

/// `views` is left out of lab-ha-restart.toml: its bound waits for a push-pull interval,
/// which the file stretches past the run. With the LAN profile's 30 s, whether a webapp's
/// push-pull reaches the rebooted ha within the bound depends on the seed. Enabled, it must
/// see the forgotten members exactly on ha whenever it fails, and fail for some seed.
#[test]
fn views_see_the_members_a_rebooted_balancer_forgot() {
    let mut violated = 0;
    for seed in 1..=16 {
        let mut restart = simulation("lab-ha-restart.toml").seed(seed);
        let lan = rollcall::gossip::GossipConfig::lan("any", "127.0.0.1:7946".parse().unwrap());
        for host in &mut restart.world_mut().hosts {
            if let HostKind::Node(node) = &mut host.kind {
                node.gossip.push_pull_interval = lan.push_pull_interval;
            }
        }
        restart.world_mut().invariants.views = true;
        let views = verdict_with(restart, "views");
        assert!(views.checked > 0, "seed {seed}: {views:?}");
        if views.is_contradicted() {
            violated += 1;
            assert_eq!(views.hosts, hosts(&["ha"]), "seed {seed}: {views:?}");
            assert!(views.violations[0].what.contains("missing but running"), "{views:?}");
        }
    }
    assert!(violated > 0, "no seed of 16 showed ha's forgotten members");
}

/// With slow health checks (inter 5 s) the checks' D is 30 s, but gossip must still drop an
/// isolated webapp within its own D: a renderer that keeps dead members leaves s1 in
/// rotation until its checks fail, and `available` names the requests sent after gossip's D.
#[test]
fn available_holds_gossip_to_its_own_d_when_checks_are_slow() {
    let slow_checks = |simulation: Simulation| {
        with_template(simulation, |t| t.replace(":3000 check", ":3000 check inter 5s"))
    };
    let correct = run(&slow_checks(simulation("lab-partition.toml")));
    assert!(correct.report.verdict("available").unwrap().holds(), "{}", correct.report.to_text());
    assert_eq!(correct.report.figures.windows.detection.ms, 5_000 + 15_000 + 10_000 + 10);
    let bugs = PlantedBugs { renderer_keeps_dead: true, ..PlantedBugs::default() };
    let broken = run(&slow_checks(simulation("lab-partition.toml").planted_bugs("ha", bugs)));
    let available = broken.report.verdict("available").unwrap();
    assert!(available.is_contradicted(), "{}", broken.report.to_text());
    assert!(available.violations[0].what.contains("gossip's D"), "{available:?}");
}

/// `option redispatch`: a request whose connect to s1 is refused (its webapp was killed and
/// s6 does not restart it; its host answers with a reset) is sent to s2 on its last retry,
/// so no request fails even before the checks take s1 out; without it the retries stay on
/// s1 (HAProxy's default `retries 3`) and the early requests fail.
#[test]
fn redispatch_sends_a_refused_connect_to_another_server() {
    let kill = "[[fault]]\nkind = \"service-crash\"\nat_s = 20\nhost = \"s1\"\nservice = \"webapp\"\n";
    let dies = "permanent_failure = [\"webapp\"]";
    let lab = || three_node_lab(40, "", dies, &format!("{kill}[invariants]\navailable = true\n"));
    let redispatch =
        with_template(lab(), |t| t.replace("option forwardfor", "option forwardfor\n    option redispatch"));
    let with = run(&redispatch);
    assert!(with.report.figures.requests.failed.is_empty(), "{:?}", with.report.figures.requests);
    let without = run(&lab());
    assert!(!without.report.figures.requests.failed.is_empty(), "{:?}", without.report.figures.requests);
}

/// The ha events of `kind` in a run, with their times.
fn ha_events<'a>(run: &'a Run, kind: &str) -> Vec<(Duration, &'a Event)> {
    let records = run.trace.records.iter().filter(|r| r.host == "ha");
    let events = records.filter_map(|r| match &r.event {
        Entry::Host(event) if event.kind() == kind => Some((r.at(), event)),
        _ => None,
    });
    events.collect()
}

/// The pipeline scenarios end as they expect under both pipelines, seeds 1-5.
#[test]
fn the_pipeline_scenarios_end_as_expected_under_both_pipelines_for_seeds_1_to_5() {
    for name in ["lab-invalid-render.toml", "lab-render-crash.toml", "lab-stall.toml"] {
        for pipeline in [Pipeline::Lab, Pipeline::Fixed] {
            for seed in 1..=5 {
                let run = run(&simulation(name).pipeline(pipeline).seed(seed));
                assert!(run.report.as_expected, "{name} {pipeline:?} seed {seed}:\n{}", run.report.to_text());
            }
        }
    }
}

/// Under the fixed pipeline the invalid rendering is rejected and never loaded; under the
/// lab's, the process from before the bad rendering is still accepting at the end, beside
/// the one started after it was corrected.
#[test]
fn an_invalid_rendering_is_rejected_by_the_fixed_pipeline_and_orphans_a_balancer_in_the_lab() {
    let fixed = run(&simulation("lab-invalid-render.toml").pipeline(Pipeline::Fixed));
    assert_eq!(ha_events(&fixed, "render-rejected").len(), 1);
    assert!(ha_events(&fixed, "reload-failed").is_empty());
    let lab = run(&simulation("lab-invalid-render.toml").pipeline(Pipeline::Lab));
    assert!(ha_events(&lab, "render-rejected").is_empty(), "the lab validates nothing");
    let failed = ha_events(&lab, "reload-failed");
    assert!(failed.len() >= 10, "a failed start every second from 21 s to 35 s: {failed:?}");
    let before = ha_events(&lab, "accepting").into_iter().filter(|(at, _)| *at < Duration::from_secs(20));
    let mut before = before;
    let Some((_, Event::Accepting { pids: first, .. })) = before.next_back() else {
        panic!("nothing accepted")
    };
    let Some((_, Event::Accepting { pids: last, .. })) = ha_events(&lab, "accepting").pop() else { panic!() };
    assert_eq!(last.len(), 2, "two processes at the end: {last:?}");
    assert_eq!(last[0], first[0], "the orphan is the process from before the bad rendering");
}

/// `during = "render"` crashes ha while it writes: under the lab pipeline the file is left
/// empty and the next start fails on it; under the fixed one the file is whole.
#[test]
fn a_crash_in_the_middle_of_a_render_empties_the_file_only_in_the_lab_pipeline() {
    for pipeline in [Pipeline::Lab, Pipeline::Fixed] {
        let run = run(&simulation("lab-render-crash.toml").pipeline(pipeline));
        let crashed = run.trace.records.iter().find_map(|r| match &r.event {
            Entry::World(WorldEvent::HostCrashed) if r.host == "ha" => Some(r.at()),
            _ => None,
        });
        let crashed = crashed.expect("ha crashed");
        let writing = ha_events(&run, "render-started").into_iter().rfind(|(at, _)| *at < crashed);
        let (began, _) = writing.expect("a render began before the crash");
        assert!(crashed >= Duration::from_secs(20) && crashed - began < Duration::from_millis(50));
        let failed = ha_events(&run, "reload-failed");
        match pipeline {
            Pipeline::Lab => {
                assert!(
                    matches!(failed.first(), Some((at, Event::ReloadFailed { error }))
                    if *at > crashed && error.contains("no frontend")),
                    "{failed:?}"
                );
            }
            Pipeline::Fixed => assert!(failed.is_empty(), "{failed:?}"),
        }
    }
}

/// `during` takes only "render".
#[test]
fn a_crash_during_anything_but_a_render_is_bad_input() {
    let text = std::fs::read_to_string(scenario_path("lab-render-crash.toml")).unwrap();
    let broken = text.replace("during = \"render\"", "during = \"reload\"");
    let error =
        rollcall_sim::scenario::parse("lab-render-crash.toml", &broken, &scenario_path("")).unwrap_err();
    assert!(error.to_string().contains("during = \"reload\""), "{error}");
}

/// SIGKILL to the balancer's service (a `service-crash` of `haproxy`): its listener dies
/// with it, so the restarted service binds the port again and serves the file it reloads.
/// Before this was fixed the old listener outlived its service, every restart failed to
/// bind (`valid-config`), and the frozen listener served the old configuration.
#[test]
fn a_killed_balancer_service_leaves_no_listener_behind() {
    let kill = FaultSpec {
        at: Duration::from_secs(20),
        lasting: None,
        kind: FaultKind::ServiceCrash { host: "ha".into(), service: "haproxy".into() },
    };
    let mut invariants = simulation("lab.toml").world().invariants.clone();
    invariants.valid_config = true;
    invariants.one_balancer = true;
    let run = run(&simulation("lab.toml").faults(vec![kill]).invariants(invariants));
    assert!(run.report.as_expected, "{}", run.report.to_text());
    let after = ha_events(&run, "accepting").into_iter().filter(|(at, _)| *at > Duration::from_secs(20));
    assert_eq!(after.count(), 1, "the restarted balancer accepts again");
}

/// A stalled webapp is a failure a user sees: with health checks it leaves rotation within
/// D (lab-stall.toml holds); without them gossip still finds its host alive, so requests keep
/// going to it, and `available` must say so, on s1 only.
#[test]
fn available_catches_requests_sent_to_a_stalled_webapp_without_health_checks() {
    let broken = verdict_with(without_health_checks(simulation("lab-stall.toml")), "available");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// A converge bound shorter than gossip's admission window (gossip-crash: a 5 s reconnect, a
/// push-pull round trip, a render) is named as a caution. The lab's health checks make its A
/// longer (they gate serving, not rendering), and its converge bound is no caution.
#[test]
fn a_converge_bound_shorter_than_gossip_admission_is_a_caution() {
    let as_written = run(&simulation("gossip-crash.toml"));
    assert!(as_written.report.figures.cautions.is_empty(), "{:?}", as_written.report.figures.cautions);
    let short = InvariantSettings { converge_rounds: Some(5), ..InvariantSettings::default() };
    let cautioned = run(&simulation("gossip-crash.toml").invariants(short));
    let cautions = &cautioned.report.figures.cautions;
    assert_eq!(cautions.len(), 1, "{cautions:?}");
    assert!(
        cautions[0]
            .starts_with("converge_rounds = 5 (5000 ms) is shorter than gossip's admission window, 5020 ms"),
        "{cautions:?}"
    );
    assert!(cautioned.report.to_text().contains("caution: converge_rounds = 5"));
    let swarm = run(&simulation("lab-swarm.toml"));
    assert!(
        swarm.report.figures.windows.admission.ms > 10_000,
        "{:?}",
        swarm.report.figures.windows.admission
    );
    assert!(swarm.report.figures.cautions.is_empty(), "{:?}", swarm.report.figures.cautions);
}

/// s1's serf is stalled from 10 s to 60 s, but s1 crashes at 20 s and reboots at 25 s with
/// serf running afresh; cut off from ha (24-44 s), its one-shot join gives up and serf stays
/// down for good (finish 125): the stack's failure, the lab's join bug. The stall no longer
/// holds s1 after the crash, so `converge` sees s1's live webapp missing from ha's backends
/// once the cut heals (it excused it until the stall's planned end at 60 s, and 60 s plus
/// the 10-round bound is past the run's 65 s).
#[test]
fn a_stall_cut_short_by_a_crash_excuses_nothing_after_it() {
    let text = r#"
name = "stall-then-crash"
duration_s = 65

[gossip]
seeds = ["ha"]
join_timeout_ms = 1000

[[host]]
name = "ha"
role = "balancer"
template = "templates/haproxy.cfg.hb"
output = "/usr/local/etc/haproxy/haproxy.cfg"

[[host]]
name = "s1"
role = "backend"
tag = "s1"
join = "once"
permanent_failure = ["serf"]

[[host]]
name = "s2"
role = "backend"
tag = "s2"

[[fault]]
kind = "stall"
at_s = 10
for_s = 50
host = "s1"
service = "serf"

[[fault]]
kind = "host-crash"
at_s = 20
restart_after_s = 5
host = "s1"

[[fault]]
kind = "partition"
at_s = 24
for_s = 20
a = ["s1"]
b = ["ha"]

[invariants]
converge_rounds = 10
"#;
    let world = rollcall_sim::scenario::parse("stall-then-crash.toml", text, &scenario_path(""))
        .unwrap_or_else(|e| panic!("{e}"));
    let converge = verdict_with(Simulation::new(world, "stall-then-crash.toml"), "converge");
    assert!(converge.is_contradicted(), "{converge:?}");
    assert_eq!(converge.hosts, hosts(&["s1"]), "{converge:?}");
}

/// ha (with the lab's template), s1, s2 and a client started a second apart, with `more`
/// (faults and invariants) appended; `ha_keys` and `s1_keys` are more of those hosts' keys,
/// as `key = value` pairs separated by commas (the hosts are inline tables).
fn three_node_lab(duration_s: u32, ha_keys: &str, s1_keys: &str, more: &str) -> Simulation {
    let extra = |keys: &str| if keys.is_empty() { String::new() } else { format!(", {keys}") };
    let (ha_keys, s1_keys) = (extra(ha_keys), extra(s1_keys));
    let text = format!(
        r#"name = "three-node-lab"
duration_s = {duration_s}
gossip = {{ seeds = ["ha"], join = "retry", retry_interval_ms = 2000 }}
start = {{ order = ["ha", "s1", "s2", "client"], gap_ms = 1000 }}
host = [
  {{ name = "ha", role = "balancer", template = "templates/haproxy.cfg.hb", output = "/etc/haproxy/haproxy.cfg"{ha_keys} }},
  {{ name = "s1", role = "backend", tag = "s1"{s1_keys} }},
  {{ name = "s2", role = "backend", tag = "s2" }},
  {{ name = "client", role = "client", target = "ha", interval_ms = 250 }},
]

{more}
"#
    );
    let world = rollcall_sim::scenario::parse("three-node-lab.toml", &text, &scenario_path(""))
        .unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(world, "three-node-lab.toml")
}

const S1_WEBAPP_STALLS_20_TO_50: &str =
    "[[fault]]\nkind = \"stall\"\nat_s = 20\nfor_s = 30\nhost = \"s1\"\nservice = \"webapp\"\n";

/// A balancer that ignores its health checks keeps sending to s1's stalled webapp. A stall of
/// ha's serf meanwhile (15-60 s) does not excuse those requests: s2 was admitted before it,
/// and a held agent keeps its view, the renderer its file, the balancer its servers. The
/// hold had excused every failed request as "no webapp admitted" for the hold and A after.
#[test]
fn available_counts_failures_to_a_dead_server_while_the_balancers_agent_is_held() {
    let ha_serf = "[[fault]]\nkind = \"stall\"\nat_s = 15\nfor_s = 45\nhost = \"ha\"\nservice = \"serf\"\n";
    for held in ["", ha_serf] {
        let more = format!("{S1_WEBAPP_STALLS_20_TO_50}{held}[invariants]\navailable = true\n");
        let bugs = "planted_bugs = [\"balancer-ignores-health\"]";
        let run = run(&three_node_lab(70, bugs, "", &more));
        let verdict = run.report.verdict("available").expect("checked");
        assert!(verdict.is_contradicted(), "held: {held:?}: {verdict:?}");
        assert_eq!(verdict.hosts, hosts(&["s1"]), "{verdict:?}");
        let failed = &run.report.figures.requests.failed;
        assert!(failed.get("unexcused").is_some_and(|n| *n >= 5), "held: {held:?}: {failed:?}");
    }
}

/// ha's haproxy is killed at 20 s and its finish script exits 125, so s6 never restarts it:
/// every request after s6's restart delay fails, and those failures are the stack's. The
/// crash had excused them for the rest of the run.
#[test]
fn available_counts_an_outage_of_a_balancer_s6_never_restarts() {
    let crash = "[[fault]]\nkind = \"service-crash\"\nat_s = 20\nhost = \"ha\"\nservice = \"haproxy\"\n";
    let simulation = three_node_lab(
        60,
        "permanent_failure = [\"haproxy\"]",
        "",
        &format!("{crash}[invariants]\navailable = true\n"),
    );
    let run = run(&simulation);
    let verdict = run.report.verdict("available").expect("checked");
    assert!(verdict.is_contradicted(), "{verdict:?}");
    let first = verdict.violations.iter().map(|v| v.at_ms).min().expect("a violation");
    assert!(first >= 21_010, "excused for s6's restart delay: {first:?}");
    let failed = &run.report.figures.requests.failed;
    assert!(failed.get("unexcused").is_some_and(|n| *n > 100), "{failed:?}");
}

/// s1's serf is killed at 20 s and never restarted; its host runs and its webapp serves. It
/// is not lost, so `detect` asks nothing of it; `converge` expects it in the backends (a
/// healthy server that gets no traffic), so the stack, which drops it as Serf does, breaks
/// `converge`, and a renderer that keeps it breaks nothing. `detect` had demanded its removal
/// ("down or isolated") while `converge` demanded it stay: no stack could pass both.
#[test]
fn a_webapp_whose_agent_died_is_not_lost_while_its_host_runs_and_is_linked() {
    let crash = "[[fault]]\nkind = \"service-crash\"\nat_s = 20\nhost = \"s1\"\nservice = \"serf\"\n";
    let more = format!("{crash}[invariants]\nconverge_rounds = 10\ndetect_rounds = 10\n");
    let dies = "permanent_failure = [\"serf\"]";
    for keeps in [false, true] {
        let ha = if keeps { "planted_bugs = [\"renderer-keeps-dead\"]" } else { "" };
        let run = run(&three_node_lab(60, ha, dies, &more));
        let (converge, detect) =
            (run.report.verdict("converge").unwrap(), run.report.verdict("detect").unwrap());
        assert!(!detect.is_contradicted(), "keeps {keeps}: {detect:?}");
        assert_eq!(converge.is_contradicted(), !keeps, "keeps {keeps}: {converge:?}");
    }
}

/// ha's renderer is stalled 15-60 s and s1's host crashes at 20 s: the renderer can drop s1
/// only when it continues, so `detect`'s clock stops meanwhile, as it does while the world
/// holds ha's agent, and the stack drops s1 at once at 60 s. A renderer that keeps dead
/// backends is still caught after the continue.
#[test]
fn detect_waits_for_a_stalled_renderer_and_still_catches_one_that_keeps_the_dead() {
    let more = "[[fault]]\nkind = \"stall\"\nat_s = 15\nfor_s = 45\nhost = \"ha\"\nservice = \"renderer\"\n\n\
                [[fault]]\nkind = \"host-crash\"\nat_s = 20\nhost = \"s1\"\n\n[invariants]\ndetect_rounds = 10\n";
    let detect = verdict_with(three_node_lab(90, "", "", more), "detect");
    assert!(detect.holds() && detect.checked >= 1, "{detect:?}");
    let keeps = three_node_lab(90, "planted_bugs = [\"renderer-keeps-dead\"]", "", more);
    let detect = verdict_with(keeps, "detect");
    assert!(detect.is_contradicted(), "{detect:?}");
    assert!(detect.violations.iter().all(|v| v.at_ms >= 60_000), "{detect:?}");
}

/// A template that reads a member's tags (as consul-template users do) gets its check
/// settings from them: a `tags` fault gives s1 `inter 10000`, so HAProxy needs about 60 s to
/// take s1's stalled webapp DOWN, and D says so. D had come from a rendering with made-up
/// addresses and the `role` tag alone (12 s), and the requests HAProxy sent s1 within its
/// real D were reported as unexcused.
#[test]
fn d_and_a_come_from_the_tags_the_webapps_carry_during_the_run() {
    let tagged = |simulation: Simulation| {
        with_template(simulation, |t| {
            t.replace(":3000 check", ":3000 check{{#if tags.inter}} inter {{ tags.inter }}{{/if}}")
        })
    };
    let stall = "[[fault]]\nkind = \"stall\"\nat_s = 20\nfor_s = 60\nhost = \"s1\"\nservice = \"webapp\"\n";
    let inter = "[[fault]]\nkind = \"tags\"\nat_s = 3\nhost = \"s1\"\nset = { inter = \"10000\" }\n";
    let plain = run(&tagged(three_node_lab(90, "", "", &format!("{stall}[invariants]\navailable = true\n"))));
    assert_eq!(plain.report.figures.windows.detection.ms, 12_010);
    let slow =
        run(&tagged(three_node_lab(90, "", "", &format!("{inter}{stall}[invariants]\navailable = true\n"))));
    // inter 10 s (fastinter and the check timeout follow it), fall 3: 10 + 3 x 10 + 2 x 10 s.
    assert_eq!(slow.report.figures.windows.detection.ms, 60_010, "{:?}", slow.report.figures.windows);
    let available = slow.report.verdict("available").expect("checked");
    assert!(available.holds(), "{available:?}");
    // A change s1's agent refuses (it is dead) never reaches the balancer, nor D.
    let kill = "[[fault]]\nkind = \"service-crash\"\nat_s = 2\nhost = \"s1\"\nservice = \"serf\"\n";
    let more = format!("{kill}{inter}{stall}[invariants]\navailable = true\n");
    let refused = run(&tagged(three_node_lab(90, "", "permanent_failure = [\"serf\"]", &more)));
    assert_eq!(refused.report.figures.windows.detection.ms, 12_010);
}

/// ha's agent never counts itself synced, so its renderer, which waits for its data, never
/// renders a backend. The oracle ends the wait one TCP timeout after the agent's start on
/// its own (the agent's records would have stopped `converge`'s clock for good, and the
/// run passed); `converge` sees both webapps missing.
#[test]
fn converge_catches_an_agent_that_never_syncs() {
    let bugs = PlantedBugs { gossip_never_syncs: true, ..PlantedBugs::default() };
    let broken = verdict_with(simulation("lab.toml").planted_bugs("ha", bugs), "converge");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1", "s2"]));
}

/// Without health checks D is gossip's, and gossip cannot drop a crashed server while the
/// world holds the balancer's agent or renderer: s1's host crashes at 20 s while ha's serf
/// (or renderer) is stalled 15-70 s, and requests to s1 until gossip's D after the continue
/// are excused. They had been counted on wall time (false alarms from 50 s on).
#[test]
fn available_counts_gossips_d_only_while_gossip_can_tell() {
    for service in ["serf", "renderer"] {
        let more = format!(
            "[[fault]]\nkind = \"stall\"\nat_s = 15\nfor_s = 55\nhost = \"ha\"\nservice = \"{service}\"\n\n\
             [[fault]]\nkind = \"host-crash\"\nat_s = 20\nhost = \"s1\"\n\n[invariants]\navailable = true\n"
        );
        let run = run(&without_health_checks(three_node_lab(110, "", "", &more)));
        let available = run.report.verdict("available").expect("checked");
        assert!(available.holds(), "{service}: {available:?}");
        let failed = &run.report.figures.requests.failed;
        assert!(failed.get("server-lost-within-D").is_some_and(|n| *n > 0), "{service}: {failed:?}");
    }
}

/// ha's serf joins once through s1; s1 dies at 35 s and ha's serf is killed at 40 s: every
/// restart then fails its join and exits, and s6 restarts it again, while s2 and s3 serve.
/// Those restarts are the stack's own failure: they do not unadmit s2 and s3, and the
/// requests that find no server are violations (each restart had reset A's count, and
/// every one of them was excused).
#[test]
fn available_is_not_reset_by_restarts_the_stack_causes_itself() {
    let text = r#"name = "join-once-loop"
duration_s = 90
gossip = { seeds = ["ha"], join = "retry", retry_interval_ms = 2000 }
start = { order = ["s1", "s2", "s3", "ha", "client"], gap_ms = 3000 }
host = [
  { name = "ha", role = "balancer", template = "templates/haproxy.cfg.hb", join = "once", seeds = ["s1"] },
  { name = "s{1..3}", role = "backend", tag = "s{n}" },
  { name = "client", role = "client", target = "ha", interval_ms = 250 },
]
fault = [
  { kind = "host-crash", at_s = 35, host = "s1" },
  { kind = "service-crash", at_s = 40, host = "ha", service = "serf" },
]
invariants = { available = true }
"#;
    let world = rollcall_sim::scenario::parse("join-once-loop.toml", text, &scenario_path(""))
        .unwrap_or_else(|e| panic!("{e}"));
    // The lab's pipeline renders whatever the restarted agent knows (the fixed one keeps its
    // file until the agent syncs, and no request fails).
    let run = run(&Simulation::new(world, "join-once-loop.toml").pipeline(Pipeline::Lab));
    let available = run.report.verdict("available").expect("checked");
    assert!(available.is_contradicted(), "{available:?}");
    assert!(available.hosts.contains("s2") && available.hosts.contains("s3"), "{available:?}");
}

/// s1's serf and webapp are both killed at 20 s and s6 restarts neither; its host runs. It
/// is lost (nothing of it answers, and gossip marks it failed), so a renderer that keeps
/// dead members breaks `detect`; it had been neither lost nor reachable, and no invariant
/// looked at it.
#[test]
fn detect_catches_a_kept_webapp_whose_agent_and_webapp_both_died() {
    let kill = |service| {
        format!("[[fault]]\nkind = \"service-crash\"\nat_s = 20\nhost = \"s1\"\nservice = \"{service}\"\n")
    };
    let more = format!("{}{}[invariants]\ndetect_rounds = 12\n", kill("webapp"), kill("serf"));
    let dies = "permanent_failure = [\"serf\", \"webapp\"]";
    let correct = verdict_with(three_node_lab(90, "", dies, &more), "detect");
    assert!(correct.holds() && correct.checked >= 1, "{correct:?}");
    let keeps = three_node_lab(90, "planted_bugs = [\"renderer-keeps-dead\"]", dies, &more);
    let broken = verdict_with(keeps, "detect");
    assert!(broken.is_contradicted(), "{broken:?}");
    assert_eq!(broken.hosts, hosts(&["s1"]));
}

/// ha's renderer is stalled from its boot until 10 s: the balancer starts with no file,
/// which the world, not the stack, kept from being written; `valid-config` holds, and
/// still counts the failed load it excused among the loads it checked.
#[test]
fn valid_config_excuses_a_missing_file_while_the_world_holds_the_renderer_at_boot() {
    let stall = "[[fault]]\nkind = \"stall\"\nat_s = 0\nfor_s = 10\nhost = \"ha\"\nservice = \"renderer\"\n";
    let run = run(&three_node_lab(30, "", "", &format!("{stall}[invariants]\nvalid_config = true\n")));
    assert!(!ha_events(&run, "reload-failed").is_empty(), "the balancer found no file");
    let verdict = run.report.verdict("valid-config").expect("checked");
    assert!(verdict.holds(), "{verdict:?}");
}

/// s1 dies for good at 10 s and ha ignores both gossip and its checks; the client is cut off
/// from ha over 30.5-40.5 s. A request sent late in the cut is sent again by TCP and reaches ha
/// after the heal, which sends it to dead s1: that failure is the stack's, not the cut's, and
/// is a violation (it had been excused as "the client could not reach ha").
#[test]
fn a_request_that_reaches_the_balancer_after_its_cut_is_judged() {
    let cut = "[[fault]]\nkind = \"host-crash\"\nat_s = 10\nhost = \"s1\"\n\n\
               [[fault]]\nkind = \"partition\"\nat_s = 30.5\nfor_s = 10\na = [\"client\"]\nb = [\"ha\"]\n\n\
               [invariants]\nconverge_rounds = 10\navailable = true\n";
    let bugs = "planted_bugs = [\"balancer-ignores-removals\", \"balancer-ignores-health\"]";
    let mut judged = 0;
    for seed in 1..=5 {
        let run = run(&three_node_lab(80, bugs, "", cut).seed(seed));
        let available = run.report.verdict("available").expect("checked");
        let in_the_cut =
            |sent: Duration| sent >= Duration::from_millis(30_500) && sent < Duration::from_millis(40_500);
        let failed_after = |r: &&rollcall_sim::observe::RequestObservation| {
            !r.ok() && in_the_cut(r.sent) && r.routed_to.is_some()
        };
        for request in run.observations.requests.iter().filter(failed_after) {
            let named = format!("request #{} from client sent", request.id);
            let violation = available.violations.iter().find(|v| v.what.contains(&named));
            assert!(violation.is_some_and(|v| v.hosts == ["s1"]), "seed {seed}: {named} excused");
            judged += 1;
        }
    }
    assert!(judged > 0, "no failed request reached ha after the heal on seeds 1-5");
}

/// A cut only on the way back (s1 -> ha) loses every answer to ha's SYNs: plain TCP checks of
/// s1 time out and take it DOWN, and `available` holds. turmoil hands a SYN's answer over
/// outside its links, so the connect had succeeded, s1 stayed UP, and requests to it failed.
#[test]
fn a_cut_on_the_way_back_fails_tcp_checks_on_their_timeout() {
    let cut = "[[fault]]\nkind = \"partition-oneway\"\nat_s = 20\nfor_s = 20\nfrom = [\"s1\"]\nto = [\"ha\"]\n\n\
               [invariants]\nconverge_rounds = 10\navailable = true\n";
    let tcp_checks =
        with_template(three_node_lab(80, "", "", cut), |t| t.replace("option httpchk HEAD /", ""));
    let run = run(&tcp_checks);
    let states = server_changes(&run, "s1");
    assert!(
        states.first().is_some_and(|(_, up, reason)| !up && reason.ends_with("last: connect timeout")),
        "{states:?}"
    );
    assert!(run.report.verdict("available").expect("checked").holds(), "{}", run.report.to_text());
}
