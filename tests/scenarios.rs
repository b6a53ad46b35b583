//! The shipped scenarios end as they declare, for the seeds the issue names, and the CLI
//! reports that with its exit code.

use std::path::PathBuf;
use std::process::Command;

use rollcall_sim::scenario;

fn scenario_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name)
}

fn run(name: &str, seed: u64) -> rollcall_sim::Run {
    let path = scenario_path(name);
    let world = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    rollcall_sim::run(&world, &path.display().to_string(), seed)
        .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"))
}

fn assert_as_expected(name: &str, seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let run = run(name, seed);
        assert!(run.report.as_expected, "{name} seed {seed}:\n{}", run.report.to_text());
        for verdict in &run.report.verdicts {
            assert!(verdict.checked > 0, "{name} seed {seed}: {} checked nothing", verdict.name);
        }
    }
}

#[test]
fn lab_converges_and_serves() {
    let run = run("lab.toml", 1);
    assert!(run.report.as_expected, "{}", run.report.to_text());
    let names: Vec<&str> = run.report.verdicts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["converge", "serve"]);
    assert!(run.report.verdicts.iter().all(|v| v.holds()), "{}", run.report.to_text());
}

#[test]
fn lab_join_no_retry_shows_the_start_order_bug() {
    let run = run("lab-join-no-retry.toml", 1);
    assert!(run.report.as_expected, "{}", run.report.to_text());
    let converge = &run.report.verdicts[0];
    assert_eq!(converge.name, "converge");
    assert!(!converge.holds());
    assert_eq!(converge.failed, 2, "both webapps stay out: {:?}", converge.violations);
}

#[test]
fn lab_partition_detects_and_heals_for_seeds_1_to_20() {
    assert_as_expected("lab-partition.toml", 1..=20);
}

#[test]
fn lab_permuted_converges_whatever_the_start_order_for_seeds_1_to_20() {
    assert_as_expected("lab-permuted.toml", 1..=20);
}

#[test]
fn the_permuted_scenario_really_permutes() {
    let world = scenario::load(&scenario_path("lab-permuted.toml")).unwrap();
    let orders: std::collections::BTreeSet<Vec<String>> = (1..=20)
        .map(|seed| {
            let plan = rollcall_sim::faults::Plan::build(&world, seed);
            let mut order: Vec<(std::time::Duration, String)> =
                plan.start_at.into_iter().map(|(name, at)| (at, name)).collect();
            order.sort();
            order.into_iter().map(|(_, name)| name).collect()
        })
        .collect();
    assert!(orders.len() >= 10, "20 seeds gave only {} start orders", orders.len());
}

#[test]
fn a_run_that_breaks_its_expectation_fails_with_the_replay_command() {
    // The no-retry world, told to expect no violation: the bug now makes the run fail.
    let path = scenario_path("lab-join-no-retry.toml");
    let mut world = scenario::load(&path).unwrap();
    world.expected_violations.clear();
    let run = rollcall_sim::run(&world, "lab-join-no-retry.toml", 9).unwrap();
    assert!(!run.report.as_expected);
    let text = run.report.to_text();
    assert!(text.contains("ROLLCALL_SEED=9"), "{text}");
    assert!(
        text.contains("cargo run --release -p rollcall-sim -- run lab-join-no-retry.toml --seed 9"),
        "{text}"
    );
}

#[test]
fn the_cli_exit_code_says_whether_the_outcome_was_expected() {
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let status = |args: &[&str]| Command::new(cli).args(args).output().unwrap();
    let lab =
        status(&["run", scenario_path("lab-join-no-retry.toml").to_str().unwrap(), "--seed", "1", "--json"]);
    assert_eq!(lab.status.code(), Some(0), "{}", String::from_utf8_lossy(&lab.stderr));
    let report: serde_json::Value = serde_json::from_slice(&lab.stdout).unwrap();
    assert_eq!(report["as_expected"], true);
    assert_eq!(report["verdicts"][0]["name"], "converge");

    let dir = std::env::temp_dir().join(format!("rollcall-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unexpected = dir.join("unexpected.toml");
    let text = std::fs::read_to_string(scenario_path("lab-join-no-retry.toml")).unwrap();
    let text = text.replace("violated = [\"converge\"]", "violated = []");
    let text = text.replace("templates/", &format!("{}/", scenario_path("templates").display()));
    std::fs::write(&unexpected, text).unwrap();
    let failed = status(&["run", unexpected.to_str().unwrap(), "--seed", "3"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("--seed 3"));

    let trace = dir.join("trace.jsonl");
    let traced =
        status(&["run", scenario_path("lab.toml").to_str().unwrap(), "--trace", trace.to_str().unwrap()]);
    assert_eq!(traced.status.code(), Some(0));
    let lines = std::fs::read_to_string(&trace).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["t_us"].is_u64() && first["host"].is_string() && first["event"]["kind"].is_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lab_faults_recovers_from_every_fault_kind_for_seeds_1_to_20() {
    assert_as_expected("lab-faults.toml", 1..=20);
}

/// Each invariant can fail: tightened bounds or a broken workload make it report violations.
#[test]
fn every_invariant_reports_violations_when_the_world_breaks_it() {
    let path = scenario_path("lab-partition.toml");
    let file = path.display().to_string();
    let verdict = |world: &rollcall_sim::world::World, name: &str| {
        let run = rollcall_sim::run(world, &file, 1).unwrap();
        run.report.verdicts.into_iter().find(|v| v.name == name).unwrap()
    };

    // Detection takes a probe, a timeout and a 4-round suspicion: 2 rounds is too tight.
    let mut world = scenario::load(&path).unwrap();
    world.detect_rounds = Some(2);
    let detect = verdict(&world, "detect");
    assert!(!detect.holds(), "{detect:?}");
    assert!(detect.violations[0].contains("s1 is unreachable from ha"), "{detect:?}");

    // After the heal, s1 needs a reconnect round trip: less than 1 round is too tight.
    let mut world = scenario::load(&path).unwrap();
    world.converge_rounds = Some(0);
    assert!(!verdict(&world, "converge").holds());

    // A client that gives up after 1 ms never sees an answer, converged or not.
    let mut world = scenario::load(&path).unwrap();
    for host in &mut world.hosts {
        if let rollcall_sim::world::HostKind::Client(client) = &mut host.kind {
            client.timeout = std::time::Duration::from_millis(1);
        }
    }
    let serve = verdict(&world, "serve");
    assert!(!serve.holds(), "{serve:?}");
    assert!(serve.violations[0].contains("no response"), "{serve:?}");
}

/// With retry-join every 2 s, the lab converges within one retry interval (plus a few
/// milliseconds of network) of the last node it needs booting.
#[test]
fn the_lab_converges_within_one_retry_interval_of_the_last_boot() {
    let world = scenario::load(&scenario_path("lab.toml")).unwrap();
    for seed in 1..=10 {
        let convergence = rollcall_sim::convergence(&world, seed).unwrap().expect("converges");
        assert!(
            convergence.since_last_boot <= std::time::Duration::from_millis(2_050),
            "seed {seed}: {convergence:?}"
        );
    }
}

#[test]
fn lab_ha_restart_shows_the_forgotten_backends_for_seeds_1_to_20() {
    assert_as_expected("lab-ha-restart.toml", 1..=20);
}

/// Two partitions overlap: s1 is isolated from 10 s to 30 s, and s2 from 15 s to 20 s. The
/// heal of s2 at 20 s must not reconnect s1 and s2 (turmoil keeps one state per link; the
/// engine counts active cuts), so s1 stays isolated and out of ha's backends until 30 s.
#[test]
fn overlapping_partitions_do_not_heal_each_other() {
    let text = std::fs::read_to_string(scenario_path("lab-partition.toml")).unwrap();
    let head = &text[..text.find("[[fault]]").unwrap()];
    let text = format!(
        "{head}[[fault]]\nkind = \"partition\"\nat_s = 10\nfor_s = 20\na = [\"s1\"]\n\n\
         [[fault]]\nkind = \"partition\"\nat_s = 15\nfor_s = 5\na = [\"s2\"]\n\n\
         [invariants]\nconverge_rounds = 10\nserve = true\ndetect_rounds = 10\n"
    );
    let world = scenario::parse("overlap.toml", &text, &scenario_path("")).unwrap();
    for seed in 1..=5 {
        let run = rollcall_sim::run(&world, "overlap.toml", seed).unwrap();
        assert!(run.report.as_expected, "seed {seed}:\n{}", run.report.to_text());
        let back = run.report.timeline.iter().find(|e| {
            e.host == "ha" && e.t_ms > 20_000 && e.what.starts_with("rendered") && e.what.contains("s1")
        });
        assert!(back.is_some_and(|e| e.t_ms >= 30_000), "seed {seed}: s1 back too early: {back:?}");
    }
}
