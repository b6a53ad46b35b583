//! The chaos engine: swarm plans, explore, shrink, diff and the HTML report.
//!
//! The planted-bug proof: each bug that breaks something real (no refutation, one-shot join,
//! renderer ignores removals, balancer ignores health) must be found by `explore` within
//! 1,000 seeds of `scenarios/lab-swarm.toml` and shrunk to at most 3 faults, and the shrunk
//! scenario file must replay the violation.

use std::path::PathBuf;

use rollcall_sim::engines::EngineKind;
use rollcall_sim::explore::{self, Exploration};
use rollcall_sim::faults::FaultKind;
use rollcall_sim::swarm::SwarmKind;
use rollcall_sim::{Simulation, html, shrink};

/// Seeds the planted-bug proof may search (the floor).
const PROOF_SEEDS: u64 = 1_000;
/// Most faults a shrunk reproduction may keep.
const SHRUNK_FAULTS_MAX: usize = 3;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name)
}

fn lab_swarm() -> Simulation {
    Simulation::from_file(&scenario("lab-swarm.toml")).unwrap()
}

fn exploration(simulation: &Simulation, outcomes: Vec<explore::SeedOutcome>) -> Exploration {
    Exploration::new(simulation, simulation.file(), outcomes)
}

#[test]
fn a_swarm_draws_its_own_plan_per_seed_inside_the_chaos_phase() {
    let simulation = lab_swarm();
    let swarm = simulation.world().swarm.clone().expect("lab-swarm has a [swarm]");
    let plans: Vec<_> = (1..=40).map(|seed| simulation.clone().seed(seed).seeded_world().faults).collect();
    assert_eq!(
        plans[0],
        simulation.clone().seed(1).seeded_world().faults,
        "a seed draws the same plan again"
    );
    assert!(plans.iter().any(|p| p != &plans[0]), "seeds draw different plans");
    let mut kinds = std::collections::HashSet::new();
    for fault in plans.iter().flatten() {
        let end = fault.at + fault.lasting.unwrap_or_default();
        assert!(
            fault.at + std::time::Duration::from_millis(100) >= swarm.chaos.0 && end <= swarm.chaos.1,
            "{fault:?}"
        );
        kinds.insert(std::mem::discriminant(&fault.kind));
    }
    assert!(kinds.len() >= 5, "40 seeds reach most kinds, got {}", kinds.len());
    // Swarm testing: some seeds leave whole kinds out, so plan sizes and mixes vary.
    let sizes: std::collections::BTreeSet<usize> = plans.iter().map(Vec::len).collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(swarm.kinds.contains(&SwarmKind::PowerLoss));
}

#[test]
fn a_power_loss_silences_the_host_before_it_dies() {
    let simulation = lab_swarm();
    let mut world = simulation.world().clone();
    let swarm = world.swarm.as_mut().unwrap();
    swarm.kinds = vec![SwarmKind::PowerLoss];
    swarm.faults = (1, 1);
    let faults = world.for_seed(7).faults;
    let [cut, crash] = faults.as_slice() else { panic!("{faults:?}") };
    let FaultKind::Partition { a, oneway: false, .. } = &cut.kind else { panic!("{cut:?}") };
    let FaultKind::HostCrash { host, .. } = &crash.kind else { panic!("{crash:?}") };
    assert_eq!(a, &vec![host.clone()]);
    assert!(cut.at <= crash.at);
    assert_eq!(
        cut.at + cut.lasting.unwrap(),
        crash.at + crash.lasting.unwrap(),
        "links and power come back together"
    );
}

#[test]
fn the_lab_swarm_holds_its_safety_and_liveness_invariants() {
    let simulation = lab_swarm();
    let seeds: Vec<u64> = (1..=4).collect();
    assert_every_seed_as_expected(&simulation, &seeds);
}

/// Explores `seeds` of `simulation` and fails on the first seed not as its file expects.
fn assert_every_seed_as_expected(simulation: &Simulation, seeds: &[u64]) {
    for outcome in explore::explore(simulation, seeds, 2, None, |_| {}) {
        assert!(
            outcome.as_expected,
            "seed {}: {:?}\nreplay: {}",
            outcome.seed, outcome.mismatches, outcome.replay
        );
    }
}

/// A bare `[swarm]` on the event engine draws every kind, as on turmoil, and `explore` runs
/// it there: 30 nodes, 200 seeds, every outcome as the file expects.
#[test]
fn the_gossip_swarm_explores_on_the_event_engine() {
    let simulation = Simulation::from_file(&scenario("gossip-swarm.toml")).unwrap();
    assert_eq!(simulation.world().engine, EngineKind::Event);
    let swarm = simulation.world().swarm.as_ref().expect("a swarm");
    assert_eq!(swarm.kinds, SwarmKind::ALL);
    let seeds: Vec<u64> = (1..=200).collect();
    assert_every_seed_as_expected(&simulation, &seeds);
}

#[test]
fn explore_gives_one_summary_whatever_the_jobs_or_shards() {
    let simulation = lab_swarm();
    let seeds: Vec<u64> = (11..=13).collect();
    let one = exploration(&simulation, explore::explore(&simulation, &seeds, 1, None, |_| {}));
    let two = exploration(&simulation, explore::explore(&simulation, &seeds, 2, None, |_| {}));
    assert_eq!(one.summary(), two.summary());
    assert_eq!(one.outcomes, two.outcomes);
    let odd: Vec<u64> = seeds.iter().copied().filter(|s| s % 2 == 1).collect();
    let even: Vec<u64> = seeds.iter().copied().filter(|s| s % 2 == 0).collect();
    let shards = vec![
        exploration(&simulation, explore::explore(&simulation, &even, 1, None, |_| {}))
            .sharded((11, 13), (2, 2)),
        exploration(&simulation, explore::explore(&simulation, &odd, 1, None, |_| {}))
            .sharded((11, 13), (1, 2)),
    ];
    // Half the shards, the same shard twice, or a shard of another version of the file, do
    // not sum to the exploration.
    assert!(Exploration::merge(vec![shards[0].clone()]).unwrap_err().contains("shard 1/2 missing"));
    assert!(Exploration::merge(vec![shards[0].clone(), shards[0].clone()]).unwrap_err().contains("twice"));
    let other = Simulation::from_file(&scenario("lab-swarm.toml")).unwrap().expect(Default::default());
    let other = exploration(&other, shards[1].outcomes.clone()).sharded((11, 13), (1, 2));
    assert!(Exploration::merge(vec![shards[0].clone(), other]).unwrap_err().contains("different scenarios"));
    // The same file named another way (another directory, another machine) is the same.
    let respelled = Simulation::from_file(&scenario("../scenarios/./lab-swarm.toml")).unwrap();
    let respelled = exploration(&respelled, shards[1].outcomes.clone()).sharded((11, 13), (1, 2));
    assert!(Exploration::merge(vec![shards[0].clone(), respelled]).is_ok());
    // Through JSON, as `explore --json` and `merge` pass them.
    let shards = shards
        .into_iter()
        .map(|s| serde_json::from_str::<Exploration>(&serde_json::to_string(&s).unwrap()).unwrap())
        .collect();
    let merged = Exploration::merge(shards).unwrap();
    assert_eq!(merged.summary(), one.summary());
    let summary = one.summary();
    assert_eq!(summary.seeds, 3);
    assert!(summary.coverage.iter().any(|row| row.area == "gossip" && row.seeds > 0));
    assert!(summary.coverage.iter().any(|row| row.seeds == 0), "the table lists what was not reached");
}

/// lab-swarm with one planted bug each (`scenarios/planted/`): no refutation, one-shot
/// join, a renderer that ignores removals (it keeps dead members), a balancer that ignores
/// its health checks.
const PLANTED: [&str; 4] = ["never-refutes", "joins-once", "renderer-keeps-dead", "ignores-health"];

#[test]
fn explore_finds_each_planted_bug_and_shrink_keeps_at_most_three_faults() {
    for bug in PLANTED {
        let path = scenario(&format!("planted/{bug}.toml"));
        let simulation = Simulation::from_file(&path).unwrap();
        let seeds: Vec<u64> = (1..=PROOF_SEEDS).collect();
        let outcomes = explore::explore(&simulation, &seeds, 2, Some(1), |_| {});
        let found = outcomes
            .iter()
            .find(|o| !o.as_expected)
            .unwrap_or_else(|| panic!("{bug}: not found in {PROOF_SEEDS} seeds"));
        let shrunk = shrink::shrink(&simulation.clone().seed(found.seed), None).unwrap();
        assert!(
            shrunk.faults.len() <= SHRUNK_FAULTS_MAX,
            "{bug}: seed {} shrunk to {} faults: {:#?}",
            found.seed,
            shrunk.faults.len(),
            shrunk.faults
        );
        // The written file replays it (written elsewhere, its template path is absolute).
        let file = std::env::temp_dir().join(format!("rollcall-{bug}-{}.toml", std::process::id()));
        shrink::write_scenario(&path, &shrunk, "replay", &file).unwrap();
        let replayed = Simulation::from_file(&file).map(|s| s.seed(shrunk.seed).run().unwrap());
        std::fs::remove_file(&file).unwrap();
        let replayed = replayed.unwrap();
        assert!(replayed.report.as_expected, "{bug}: {:?}", replayed.report.mismatches);
        assert!(replayed.report.verdict(&shrunk.invariant).unwrap().is_contradicted());
        println!(
            "{bug}: seed {} -> {} faults ({} runs), {}",
            found.seed,
            shrunk.faults.len(),
            shrunk.runs,
            shrunk.invariant
        );
    }
}

#[test]
fn diff_finds_a_planted_divergence_at_its_record() {
    let run = Simulation::from_file(&scenario("lab.toml")).unwrap().seed(3).run().unwrap();
    let a = run.trace.to_json_lines();
    let lines: Vec<&str> = a.lines().collect();
    let target = lines.iter().position(|l| l.contains("\"joined\"")).expect("a join");
    // The same record with another seed answering the join: well-formed, different.
    let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let via = changed[target].find("\"via\":\"").unwrap() + "\"via\":\"".len();
    let end = via + changed[target][via..].find('"').unwrap();
    changed[target].replace_range(via..end, "10.9.9.9:7946");
    let host = serde_json::from_str::<serde_json::Value>(lines[target]).unwrap()["host"]
        .as_str()
        .unwrap()
        .to_string();
    let b = changed.join("\n") + "\n";
    let divergence = match rollcall_sim::diff::diff(("a", &a), ("b", &b), 3) {
        Ok(Some(divergence)) => divergence,
        other => panic!("expected a divergence: {:?}", other.map(|d| d.map(|d| d.line))),
    };
    assert_eq!(divergence.line, target + 1);
    assert_eq!(divergence.context.len(), 3.min(target));
    assert_eq!(divergence.host(), Some(host.as_str()));
    assert_eq!(rollcall_sim::diff::diff(("a", &a), ("a", &a), 3), Ok(None));
}

#[test]
fn the_html_report_names_every_host_and_fault() {
    let simulation = Simulation::from_file(&scenario("lab-faults.toml")).unwrap().seed(5);
    let run = simulation.run().unwrap();
    let page = html::page(&simulation.seeded_world(), &run);
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for host in &simulation.world().hosts {
        assert!(page.contains(&format!(">{} (", host.name)), "host {}", host.name);
    }
    for (id, fault) in simulation.world().faults.iter().enumerate() {
        assert!(page.contains(&html::escape(&format!("#{id} {}", fault.kind))), "fault {id}");
    }
    assert_balanced(&page, &["html", "body", "table", "svg", "title", "text", "rect", "p", "tr", "td"]);
}

/// Every listed element opens as often as it closes (self-closing ones count as both).
fn assert_balanced(page: &str, tags: &[&str]) {
    for tag in tags {
        let opens = page.matches(&format!("<{tag} ")).count() + page.matches(&format!("<{tag}>")).count();
        let self_closing = page
            .match_indices(&format!("<{tag} "))
            .filter(|(i, _)| page[*i..].find('>').is_some_and(|end| page[*i..*i + end].ends_with('/')))
            .count();
        let closes = page.matches(&format!("</{tag}>")).count();
        assert_eq!(opens, closes + self_closing, "<{tag}>");
    }
}

#[test]
fn shrink_refuses_a_seed_with_nothing_to_shrink() {
    let simulation = Simulation::from_file(&scenario("lab.toml")).unwrap().seed(1);
    assert!(matches!(shrink::shrink(&simulation, None), Err(shrink::ShrinkError::NothingToShrink(1))));
    let wanted = shrink::shrink(&simulation, Some("converge"));
    assert!(matches!(wanted, Err(shrink::ShrinkError::NotViolated { .. })));
}

#[test]
fn a_bad_swarm_section_is_a_clear_error_naming_the_line() {
    let text = std::fs::read_to_string(scenario("lab-swarm.toml")).unwrap();
    let base = scenario("");
    let cases = [
        ("chaos_s = [8, 50]", "chaos_s = [50, 8]", "chaos_s"),
        ("chaos_s = [8, 50]", "chaos_s = [8, 500]", "duration_s"),
        ("faults = [0, 4]", "faults = [0, 400]", "faults"),
        ("faults = [0, 4]", "faults = [0, 4]\nkinds = [\"earthquake\"]", "earthquake"),
        ("faults = [0, 4]", "faults = [0, 4]\nhosts = [\"client\"]", "not a node"),
        ("for_s = [1, 20]", "for_s = [0, 20]", "for_s"),
    ];
    for (from, to, says) in cases {
        let bad = text.replace(from, to);
        let error = rollcall_sim::scenario::parse("swarm.toml", &bad, &base).unwrap_err();
        assert!(error.message.contains(says), "{to}: {error}");
        assert!(error.line > 1, "{to}: {error}");
    }
}

#[test]
fn stopping_early_gives_the_same_outcomes_whatever_the_jobs() {
    let simulation = Simulation::from_file(&scenario("planted/never-refutes.toml")).unwrap();
    let seeds: Vec<u64> = (1..=8).collect();
    let one = explore::explore(&simulation, &seeds, 1, Some(1), |_| {});
    let two = explore::explore(&simulation, &seeds, 2, Some(1), |_| {});
    assert_eq!(one, two);
    assert!(!one.last().unwrap().as_expected, "it stops at the first unexpected seed");
}
