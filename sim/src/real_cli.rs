//! The command line of the real engine: its checks before a run, `calibrate`, `clean`, and
//! the hidden `host` command each real host runs as.

use std::path::Path;
use std::process::ExitCode;

use rollcall::node::Pipeline;
use rollcall_sim::Simulation;
use rollcall_sim::calibrate::{self, Sample};
use rollcall_sim::engines::real::{self, host::HostArgs, network};
use rollcall_sim::engines::{EngineError, EngineKind};

use crate::Use;

/// Most runs `calibrate` makes on each engine: each real run takes the scenario's length.
const CALIBRATE_RUNS_MAX: u64 = 1000;

/// Refuses, with exit code 2, what the real engine cannot do here or with this scenario.
pub fn check(simulation: &Simulation, scenario: &Path, use_: Use) -> Result<(), ExitCode> {
    let file = scenario.display();
    if use_ == Use::Seeds || use_ == Use::Figures {
        eprintln!("error: {file}: the real engine runs one seed at a time in wall time and cannot replay it");
        eprintln!(
            "hint: use `run --engine real` for one run, or `calibrate` to compare many with the simulator"
        );
        return Err(ExitCode::from(2));
    }
    let refused = real::unsupported(simulation.world());
    if !refused.is_empty() {
        eprintln!("error: {file}: the real engine cannot run this scenario: {}", refused.join("; "));
        eprintln!("hint: run it with --engine turmoil, or leave those out of the scenario");
        return Err(ExitCode::from(2));
    }
    if let Some(why) = network::preflight() {
        eprintln!("error: the real engine cannot run on this machine: {why}");
        return Err(ExitCode::from(2));
    }
    Ok(())
}

/// `calibrate`: seeds 1..=runs on turmoil and on the real engine, compared.
pub fn calibrate(simulation: &Simulation, runs: u64, json: bool) -> ExitCode {
    if !(1..=CALIBRATE_RUNS_MAX).contains(&runs) {
        eprintln!("error: --runs {runs}: expected 1 to {CALIBRATE_RUNS_MAX}");
        return ExitCode::from(2);
    }
    let (mut simulated, mut real) = (Vec::new(), Vec::new());
    for seed in 1..=runs {
        for (engine, samples) in [(EngineKind::Turmoil, &mut simulated), (EngineKind::Real, &mut real)] {
            let run = match simulation.clone().engine(engine).seed(seed).run() {
                Ok(run) => run,
                Err(error) => {
                    eprintln!("error: seed {seed} on {}: {error}", engine.name());
                    return ExitCode::from(if matches!(error, EngineError::Interrupted) { 130 } else { 1 });
                }
            };
            let outcome = if run.report.as_expected { "as expected" } else { "NOT as expected" };
            eprintln!("seed {seed:>3} {:<8} {outcome}", engine.name());
            samples.push(Sample::of(&run.observations));
        }
    }
    let rows = calibrate::compare(&simulated, &real, simulation.world().round);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize"));
    } else {
        println!("scenario {} ({})", simulation.world().name, simulation.file());
        print!("{}", calibrate::to_text(&rows, runs));
    }
    if rows.iter().any(|row| row.agrees == Some(false)) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// `clean`: removes what real runs left.
pub fn clean() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("error: clean needs root (it deletes network namespaces)");
        return ExitCode::from(2);
    }
    match network::clean() {
        Ok(removed) if removed.is_empty() => {
            println!("nothing to clean");
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            for namespace in removed {
                println!("removed namespace {namespace} (its processes, links and rules)");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// `host`: one host of a real run.
pub fn host(scenario: &Path, pipeline: Pipeline, args: HostArgs) -> ExitCode {
    let simulation = match Simulation::from_file(scenario) {
        Ok(simulation) => simulation.pipeline(pipeline).seed(args.seed),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match real::host::run(&simulation.seeded_world(), args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
