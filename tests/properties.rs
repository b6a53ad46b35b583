//! Property suite: the lab recovers from any plan of faults.
//!
//! proptest draws fault plans (1 to 4 faults of every kind, at 5 to 40 s, lasting 1 to 20 s)
//! and a world seed; each run must contradict no invariant (a verdict with nothing to check
//! is fine here: not every plan cuts a webapp off). A failure is shrunk to a minimal plan and
//! printed with its seed. The proptest RNG seed is fixed, so CI runs the same plans every
//! time; set PROPTEST_CASES to explore more.
//!
//! Two fault kinds are left out because they break the stack in ways already pinned as
//! expected violations, and would only rediscover them:
//! - crashes of `ha` itself: a rebooted `ha` forgets its backends until the next push-pull
//!   (`scenarios/lab-ha-restart.toml`; fixed by snapshot/rejoin, issue 8);
//! - one-way and partial cuts between nodes: gossip keeps a node the balancer cannot reach
//!   and requests to it fail (`scenarios/lab-partial-cut.toml`, `lab-faults.toml`; fixed by
//!   balancer health checks, issue 7). Put them back when those land.

use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use rollcall_sim::Simulation;
use rollcall_sim::faults::{FaultKind, FaultSpec};

const HOSTS: [&str; 4] = ["ha", "s1", "s2", "client"];

fn base() -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lab-partition.toml");
    Simulation::from_file(&path).unwrap().duration(Duration::from_secs(90))
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
        (at(), lasting(), webapp()).prop_map(|(at, lasting, host)| FaultSpec {
            at,
            lasting: Some(lasting),
            kind: FaultKind::HostCrash { host: host.into() },
        }),
        (at(), webapp(), prop::sample::select(vec!["serf", "webapp"])).prop_map(|(at, host, service)| {
            FaultSpec {
                at,
                lasting: None,
                kind: FaultKind::ServiceCrash { host: host.into(), service: service.into() },
            }
        }),
    ]
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
                !verdict.is_contradicted(),
                "seed {seed}, faults {faults:#?}\n{}",
                run.report.to_text()
            );
        }
    }
}
