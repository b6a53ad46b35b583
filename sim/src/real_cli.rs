//! The command line of the real engine: its checks before a run, `calibrate`, `clean`, and
//! the hidden `host` command each real host runs as.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rollcall::node::Pipeline;
use rollcall_sim::Simulation;
use rollcall_sim::calibrate::{self, Sample};
use rollcall_sim::engines::EngineKind;
use rollcall_sim::engines::real::{self, host::HostArgs, network};

use crate::Use;

/// Most runs `calibrate` makes on each engine: each real run takes the scenario's length.
const CALIBRATE_RUNS_MAX: u64 = 1000;
/// Runs `calibrate` makes on each engine unless told: enough for a median and a p90.
pub const CALIBRATE_RUNS_DEFAULT: u64 = 10;

/// `rollcall-sim host`: what the engine tells one host process.
#[derive(clap::Args)]
pub struct HostCommand {
    /// Scenario file (TOML).
    scenario: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    boot: u32,
    #[arg(long, value_enum)]
    pipeline: crate::PipelineArg,
    #[arg(long)]
    run_start_ns: u64,
    #[arg(long)]
    trace: PathBuf,
    #[arg(long)]
    disk: PathBuf,
    #[arg(long = "address", value_parser = parse_address)]
    addresses: Vec<(String, std::net::IpAddr)>,
    #[arg(long)]
    spec_hash: u64,
}

/// `NAME=ADDRESS`.
fn parse_address(text: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, address) = text.split_once('=').ok_or_else(|| format!("'{text}' is not NAME=ADDRESS"))?;
    let address = address.parse().map_err(|error| format!("'{address}': {error}"))?;
    Ok((name.to_string(), address))
}

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
                    return ExitCode::from(error.exit_code());
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
        Ok(cleaned) => {
            for namespace in &cleaned.removed {
                println!("removed namespace {namespace} (its processes, links and rules)");
            }
            for (namespace, pid) in &cleaned.alive {
                println!("kept namespace {namespace}: process {pid}, which made it, still runs");
            }
            if cleaned.removed.is_empty() && cleaned.alive.is_empty() {
                println!("nothing to clean");
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
pub fn host(command: HostCommand) -> ExitCode {
    let HostCommand { scenario, name, seed, boot, pipeline, run_start_ns, trace, disk, addresses, spec_hash } =
        command;
    let addresses = addresses.into_iter().collect();
    let args = HostArgs { name, seed, boot, run_start_ns, trace, disk, addresses, spec_hash };
    let simulation = match Simulation::from_file(&scenario) {
        Ok(simulation) => simulation.pipeline(Pipeline::from(pipeline)).seed(args.seed),
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
