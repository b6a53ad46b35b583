//! proptest strategies over a world's fault plans, for users' own property tests: proptest
//! draws a plan, [`check`] runs it and fails with the report, the seed, the plan as
//! `[[fault]]` tables to paste into the scenario, and the replay command; on failure
//! proptest shrinks the plan (fewer faults, earlier and shorter ones) before it reports.
//!
//! ```no_run
//! use proptest::prelude::*;
//! use rollcall_sim::{Simulation, strategy};
//!
//! let base = Simulation::from_file("scenarios/lab.toml".as_ref()).unwrap();
//! proptest!(|(faults in strategy::fault_plan(base.world()), seed in 0u64..1_000_000)| {
//!     strategy::check(&base, faults, seed)?;
//! });
//! ```

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::Simulation;
use crate::faults::{FaultKind, FaultSpec};
use crate::world::{HostKind, World};

/// Most faults [`fault_plan`] draws.
pub const PLAN_FAULTS_MAX: usize = 4;
/// Longest window a drawn fault lasts.
const LASTING_MAX_MS: u64 = 20_000;

/// One fault of any kind the turmoil engine runs, on the world's own hosts, starting in the
/// first two thirds of the run (so that the last third shows the recovery).
pub fn fault(world: &World) -> BoxedStrategy<FaultSpec> {
    let all: Vec<String> = world.hosts.iter().map(|h| h.name.clone()).collect();
    let nodes: Vec<(String, Vec<String>)> = world
        .hosts
        .iter()
        .filter_map(|h| match &h.kind {
            HostKind::Node(node) => {
                Some((h.name.clone(), node.role.services().iter().map(|s| s.to_string()).collect()))
            }
            HostKind::Client(_) | HostKind::Attacker(_) => None,
        })
        .collect();
    let latest = (world.duration.as_millis() as u64 * 2 / 3).max(100);
    let at = move || (0..latest / 100).prop_map(|tenths| Duration::from_millis(tenths * 100));
    let lasting = || (10..LASTING_MAX_MS / 100).prop_map(|tenths| Duration::from_millis(tenths * 100));
    let node = {
        let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
        move || prop::sample::select(names.clone())
    };
    let service = prop::sample::select(nodes).prop_flat_map(|(host, services)| {
        prop::sample::select(services).prop_map(move |service| (host.clone(), service))
    });
    let everyone = all.clone();
    let others = move |host: &str| all.iter().filter(|h| *h != host).cloned().collect::<Vec<_>>();
    let windowed = |at, lasting, kind| FaultSpec { at, lasting: Some(lasting), kind };
    prop_oneof![
        (at(), lasting(), node()).prop_map(move |(at, lasting, host)| {
            let b = others(&host);
            windowed(at, lasting, FaultKind::Partition { a: vec![host], b, oneway: false })
        }),
        (at(), lasting(), node(), node()).prop_filter("two hosts", |(_, _, a, b)| a != b).prop_map(
            move |(at, lasting, from, to)| {
                windowed(at, lasting, FaultKind::Partition { a: vec![from], b: vec![to], oneway: true })
            }
        ),
        (at(), lasting(), 1u32..=50).prop_map({
            let hosts = everyone.clone();
            move |(at, lasting, percent)| {
                let rate = f64::from(percent) / 100.0;
                windowed(at, lasting, FaultKind::Loss { hosts: hosts.clone(), rate })
            }
        }),
        (at(), lasting(), 1u64..300).prop_map(move |(at, lasting, ms)| {
            let extra = Duration::from_millis(ms);
            windowed(at, lasting, FaultKind::Latency { hosts: everyone.clone(), extra })
        }),
        (at(), lasting(), node()).prop_map(move |(at, lasting, host)| {
            windowed(at, lasting, FaultKind::HostCrash { host, mid_render: false })
        }),
        (at(), service.clone()).prop_map(|(at, (host, service))| FaultSpec {
            at,
            lasting: None,
            kind: FaultKind::ServiceCrash { host, service },
        }),
        (at(), lasting(), service).prop_map(move |(at, lasting, (host, service))| {
            windowed(at, lasting, FaultKind::Stall { host, service })
        }),
    ]
    .boxed()
}

/// A plan of 1 to [`PLAN_FAULTS_MAX`] faults (see [`fault`]).
pub fn fault_plan(world: &World) -> BoxedStrategy<Vec<FaultSpec>> {
    prop::collection::vec(fault(world), 1..=PLAN_FAULTS_MAX).boxed()
}

/// Runs `base` with `faults` (and its own scenario faults replaced) and `seed`; fails the
/// test case unless the outcome is the one the scenario expects. As for a swarm's seeds, an
/// invariant a drawn plan gives nothing to check is no failure (`allow_unchecked`).
pub fn check(base: &Simulation, faults: Vec<FaultSpec>, seed: u64) -> Result<(), TestCaseError> {
    let mut simulation = base.clone().faults(faults.clone()).seed(seed);
    simulation.world_mut().expect.allow_unchecked = true;
    let run = simulation.run().map_err(|e| TestCaseError::fail(e.to_string()))?;
    if run.report.as_expected {
        return Ok(());
    }
    // The plan that ran: these faults, and a swarm's draw for the seed if the scenario has one.
    let tables: Vec<String> = simulation
        .seeded_world()
        .faults
        .iter()
        .map(|f| {
            let table = crate::shrink::fault_table(f, simulation.world().duration);
            format!("[[fault]]\n{}", toml::to_string(&table).unwrap_or_default())
        })
        .collect();
    Err(TestCaseError::fail(format!(
        "seed {seed}: {}\n{}\nthe plan, as scenario tables:\n{}\nreplay: paste them into {} (instead of its [[fault]]s) and run\n  {}",
        run.report.mismatches.join("; "),
        run.report.to_text(),
        tables.join("\n"),
        simulation.file(),
        run.report.replay
    )))
}
