//! Property suite: the lab recovers from any plan of faults.
//!
//! proptest draws fault plans (1 to 4 faults of every kind, at 5 to 40 s, lasting 1 to 20 s)
//! and a world seed; each run must contradict no invariant (a verdict with nothing to check
//! is fine here: not every plan cuts a webapp off), except for known bugs, each allowed
//! exactly where it occurs. A failure is shrunk to a minimal plan and printed with its seed.
//! The proptest RNG seed is fixed, so CI runs the same plans every time; set PROPTEST_CASES
//! to explore more. (One-way cuts, which gossip cannot see, were a known bug until the
//! balancer's health checks; they are now held to every invariant.)
//!
//! A known bug that is no longer allowed: `available` violated on a webapp within A of the
//! balancer's agent falsely declaring it failed (it ran and was reachable). Found by this
//! suite before Lifeguard: a node isolated for a few seconds declared its peers dead just
//! after the heal, and its stale death notices reached the balancer (world seed 589913:
//! +53 ms gossip latency from 26.2 s, s2 isolated from 28.7 s to 34.6 s). Since indirect
//! probes and Lifeguard, 600 cases ran without it, so the pin is gone: it would show again as
//! a violation.
//!
//! A known bug, found the same way: `available` violated on a webapp that the balancer's agent
//! lists dead while it lists another member dead too. After a heal, Serf's reconnect loop
//! tries one random failed member per interval, so with two of them (one still down) the
//! live one can wait several intervals while it could serve (world seed 84474 at
//! `PROPTEST_CASES=300`: s1 crashed, ha isolated, then healed; 503 for 5.1 s after the heal).
//! Fixed when reconnect reaches every failed member in bounded time (the gossip issue, 8).
//!
//! Another, found at `PROPTEST_CASES=150` (world seed 14837): gossip re-admits a webapp that
//! the balancer still cannot reach over TCP (a one-way cut outlasting an isolation: gossip
//! reaches it through a relay), and a server new to a configuration starts UP, as in HAProxy
//! 2.6, so requests fail until its checks take it out: allowed within D of the load that
//! re-added it. Fixed when a re-added server keeps the health it had when removed (a
//! deliberate deviation from HAProxy to make; issue 7).
//!
//! And a known behaviour, with Lifeguard (found by this suite, world seed 8692 at the default case count:
//! s1 crashed from 35 s, s2 crashed at 37.3 s then isolated to 47.4 s): `detect` (and so
//! `available`) violated while the balancer's agent had a raised health score. With both
//! webapps down it hears from no one, so Lifeguard takes it for the slow node and stretches
//! its probe interval up to 8x; a webapp lost meanwhile stays listed longer than the
//! scenario's 10 rounds. memberlist and Serf do the same (A.4 of gossip.md), so no fix is
//! planned in the stack; allowed only while the balancer's score was above 0 within D of the
//! failure (its `health-score` records in the trace).
//!
//! `ha` crashes too: every node runs with Serf's snapshot and rejoin, so a rebooted `ha`
//! push-pulls with the members it knew (without them it forgets its backends until the next
//! push-pull picks it: `scenarios/lab-ha-restart.toml` pins that, the lab's own behaviour).

use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use rollcall::host::MemberStatus;
use rollcall_sim::faults::{FaultKind, FaultSpec};
use rollcall_sim::invariants::Verdict;
use rollcall_sim::world::HostKind;
use rollcall_sim::{Run, Simulation};

const HOSTS: [&str; 4] = ["ha", "s1", "s2", "client"];

/// lab-partition, with Serf's snapshot and rejoin on every node so that `ha` may crash too.
fn base() -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lab-partition.toml");
    let mut simulation = Simulation::from_file(&path).unwrap().duration(Duration::from_secs(90));
    for host in &mut simulation.world_mut().hosts {
        if let HostKind::Node(node) = &mut host.kind {
            node.gossip.snapshot = Some(PathBuf::from(rollcall_sim::scenario::SNAPSHOT_PATH));
        }
    }
    simulation
}

fn others(host: &str) -> Vec<String> {
    HOSTS.iter().filter(|h| **h != host).map(|h| h.to_string()).collect()
}

fn all_hosts() -> Vec<String> {
    HOSTS.iter().map(|h| h.to_string()).collect()
}

fn fault() -> impl Strategy<Value = FaultSpec> {
    let at = || (50u64..400).prop_map(|tenths| Duration::from_millis(tenths * 100));
    let lasting = || (10u64..200).prop_map(|tenths| Duration::from_millis(tenths * 100));
    let node = || prop::sample::select(vec!["ha", "s1", "s2"]);
    let webapp = || prop::sample::select(vec!["s1", "s2"]);
    prop_oneof![
        (at(), lasting(), node()).prop_map(|(at, lasting, host)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::Partition { a: vec![host.into()], b: others(host), oneway: false },
        }),
        (at(), lasting(), node(), node()).prop_filter("two hosts", |(_, _, a, b)| a != b).prop_map(
            |(at, lasting, from, to)| FaultSpec {
                at,
                lasting: Some(lasting),
                kind: FaultKind::Partition { a: vec![from.into()], b: vec![to.into()], oneway: true },
            }
        ),
        (at(), lasting(), 0u32..=50).prop_map(|(at, lasting, percent)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::Loss { hosts: all_hosts(), rate: f64::from(percent) / 100.0 },
        }),
        (at(), lasting(), 1u64..300).prop_map(|(at, lasting, ms)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::Latency { hosts: all_hosts(), extra: Duration::from_millis(ms) },
        }),
        (at(), lasting(), node()).prop_map(|(at, lasting, host)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::HostCrash { host: host.into(), mid_render: false },
        }),
        (at(), webapp(), prop::sample::select(vec!["serf", "webapp"])).prop_map(|(at, host, service)| {
            FaultSpec {
                at,
                lasting: None,
                kind: FaultKind::ServiceCrash { host: host.into(), service: service.into() },
            }
        }),
        // A webapp that stops answering for a while (SIGSTOP): health checks must take it out.
        (at(), lasting(), webapp()).prop_map(|(at, lasting, host)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::Stall { host: host.into(), service: "webapp".into() },
        }),
        // The balancer's own services, killed: they must come back serving.
        (at(), prop::sample::select(vec!["renderer", "haproxy"])).prop_map(|(at, service)| FaultSpec {
            at,
            lasting: None,
            kind: FaultKind::ServiceCrash { host: "ha".into(), service: service.into() },
        }),
    ]
}

/// Whether every failure of a contradicted verdict is one of the known bugs (see the module
/// comment).
fn is_known_bug(verdict: &Verdict, run: &Run) -> bool {
    let obs = &run.observations;
    let awaiting_random_reconnect = |host: &String, at: Duration| {
        let view = obs.view_at(&obs.balancer, at);
        let dead = view.values().filter(|(status, _)| *status == MemberStatus::Dead).count();
        dead >= 2 && view.get(host).is_some_and(|(status, _)| *status == MemberStatus::Dead)
    };
    let detection = run.report.figures.windows.detection.duration();
    let readmitted = |host: &String, at: Duration| {
        // The last time the balancer loaded a configuration that newly listed `host`.
        let changes = obs.loaded.changes();
        let entered = changes
            .iter()
            .enumerate()
            .filter(|(i, (t, set))| {
                *t <= at && set.contains(host) && (*i == 0 || !changes[i - 1].1.contains(host))
            })
            .map(|(_, (t, _))| *t)
            .next_back();
        entered.is_some_and(|t| at - t < detection)
    };
    let lifeguard_slowed =
        |at: Duration| obs.worst_health(&obs.balancer, at.saturating_sub(detection), at + detection) > 0;
    let known = |h: &String, at: Duration| {
        awaiting_random_reconnect(h, at) || readmitted(h, at) || lifeguard_slowed(at)
    };
    let all_failures = |known: &dyn Fn(&String, Duration) -> bool| {
        verdict.failures().iter().all(|(at, hosts)| hosts.iter().all(|h| known(h, *at)))
    };
    match verdict.name.as_str() {
        "available" => all_failures(&known),
        "detect" => all_failures(&|_, at| lifeguard_slowed(at)),
        _ => false,
    }
}

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(16),
        rng_seed: RngSeed::Fixed(0x0005_eed0_f0a1),
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_lab_recovers_from_any_fault_plan(faults in prop::collection::vec(fault(), 1..=4), seed in 0u64..1_000_000) {
        let run = base().faults(faults.clone()).seed(seed).run().unwrap();
        for verdict in &run.report.verdicts {
            prop_assert!(
                !verdict.is_contradicted() || is_known_bug(verdict, &run),
                "seed {seed}, faults {faults:#?}\n{}",
                run.report.to_text()
            );
        }
    }
}
