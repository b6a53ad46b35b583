//! `rollcall-sim`: run scenario files in the simulator.
//!
//! Exit codes: 0 the outcome is the one the scenario expects, 1 it is not (or the simulated
//! software crashed), 2 bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollcall::node::Pipeline;
use rollcall_sim::Simulation;
use rollcall_sim::engines::EngineKind;

mod figures;

#[derive(Parser)]
#[command(name = "rollcall-sim", version, about = "Deterministic simulation of the rollcall stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The seed: the same seed on the same commit replays the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write every trace record to FILE as JSON Lines.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Run the balancer's pipeline this way instead of the file's `[node] pipeline`.
        #[arg(long, value_enum)]
        pipeline: Option<PipelineArg>,
        /// Run on this engine instead of the file's `engine`.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
    },
    /// Report simulated convergence time over a range of seeds.
    Converge {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Number of seeds.
        #[arg(long, default_value_t = 50)]
        seeds: u64,
        /// Run the balancer's pipeline this way instead of the file's `[node] pipeline`.
        #[arg(long, value_enum)]
        pipeline: Option<PipelineArg>,
        /// Run on this engine instead of the file's `engine`.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
    },
    /// Gossip timings over a range of seeds (join to converged, crash to failed everywhere,
    /// leave to left, heal to merged, false failures): min, median, p90 and max.
    Figures {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Number of seeds.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Seeds run at once, each on its own thread (each run stays deterministic).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Run the balancer's pipeline this way instead of the file's `[node] pipeline`.
        #[arg(long, value_enum)]
        pipeline: Option<PipelineArg>,
        /// Run on this engine instead of the file's `engine`.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
    },
}

/// `--engine`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    /// The whole stack, HTTP included, on turmoil (small clusters).
    Turmoil,
    /// The gossip core on a discrete-event queue (hundreds to thousands of nodes).
    Event,
}

impl From<EngineArg> for EngineKind {
    fn from(arg: EngineArg) -> Self {
        match arg {
            EngineArg::Turmoil => EngineKind::Turmoil,
            EngineArg::Event => EngineKind::Event,
        }
    }
}

/// `--pipeline`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PipelineArg {
    /// The lab's: render in place, no validation, legacy reloads.
    Lab,
    /// consul-template's and master-worker HAProxy's.
    Fixed,
}

impl From<PipelineArg> for Pipeline {
    fn from(arg: PipelineArg) -> Self {
        match arg {
            PipelineArg::Lab => Pipeline::Lab,
            PipelineArg::Fixed => Pipeline::Fixed,
        }
    }
}

/// Log lines carry simulated time; turmoil's `node{name=..}` span carries the host.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(at) => write!(w, "{:>9.3}s", at.as_secs_f64()),
            // turmoil logs some events while it holds its world, when the clock cannot be read.
            None => write!(w, "{:>10}", "-"),
        }
    }
}

fn main() -> ExitCode {
    // RUST_LOG=debug (or turmoil=trace for every packet) shows the stack's own logs.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { scenario, seed, json, trace, pipeline, engine } => {
            run(scenario, seed, json, trace, pipeline, engine)
        }
        Command::Converge { scenario, from, seeds, pipeline, engine } => {
            converge(scenario, from, seeds, pipeline, engine)
        }
        Command::Figures { scenario, from, seeds, jobs, json, pipeline, engine } => {
            let simulation = match load(&scenario, pipeline, engine, Use::Figures) {
                Ok(simulation) => simulation,
                Err(code) => return code,
            };
            figures::print(&simulation, &scenario, from..from.saturating_add(seeds), jobs, json)
        }
    }
}

/// What a command reads of its runs.
#[derive(Clone, Copy)]
enum Use {
    /// Verdicts (`run`) or the rendered backends (`converge`).
    Verdicts,
    /// Timings only (`figures`).
    Figures,
}

fn load(
    scenario: &Path,
    pipeline: Option<PipelineArg>,
    engine: Option<EngineArg>,
    use_: Use,
) -> Result<Simulation, ExitCode> {
    let loaded = Simulation::from_file(scenario).map(|s| {
        let s = match pipeline {
            Some(pipeline) => s.pipeline(pipeline.into()),
            None => s,
        };
        match engine {
            Some(engine) => s.engine(engine.into()),
            None => s,
        }
    });
    let simulation = loaded.map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })?;
    // What the engine cannot model is bad input, refused before any run. Figures read no
    // verdict, so only faults matter to them.
    if simulation.world().engine == EngineKind::Event {
        let refused = match use_ {
            Use::Verdicts => rollcall_sim::engines::event::unsupported(simulation.world()),
            Use::Figures => rollcall_sim::engines::event::unsupported_faults(simulation.world()),
        };
        if !refused.is_empty() {
            eprintln!(
                "error: {}: the event engine cannot run this scenario: {}",
                scenario.display(),
                refused.join("; ")
            );
            eprintln!("hint: run it with --engine turmoil, or leave those out of the scenario");
            return Err(ExitCode::from(2));
        }
    }
    Ok(simulation)
}

fn converge(
    scenario: PathBuf,
    from: u64,
    seeds: u64,
    pipeline: Option<PipelineArg>,
    engine: Option<EngineArg>,
) -> ExitCode {
    let simulation = match load(&scenario, pipeline, engine, Use::Verdicts) {
        Ok(simulation) => simulation,
        Err(code) => return code,
    };
    if simulation.world().engine == EngineKind::Event {
        eprintln!(
            "error: converge reads ha's rendered backends, which the event engine does not model; use figures"
        );
        return ExitCode::from(2);
    }
    if seeds == 0 {
        eprintln!("error: --seeds must be at least 1");
        return ExitCode::from(2);
    }
    let mut since_start = Vec::new();
    let mut since_boot = Vec::new();
    let mut never = Vec::new();
    let last = from.saturating_add(seeds - 1);
    for seed in from..=last {
        match simulation.clone().seed(seed).convergence() {
            Ok(Some(c)) => {
                since_start.push(c.since_start);
                since_boot.push(c.since_last_boot);
            }
            Ok(None) => never.push(seed),
            Err(error) => {
                eprintln!("error: seed {seed}: {error}");
                return ExitCode::from(1);
            }
        }
    }
    println!("scenario {} ({}), seeds {from}..{last}", simulation.world().name, scenario.display());
    println!("{:<28} {:>9} {:>9} {:>9} {:>9}", "simulated ms to converge", "min", "median", "p90", "max");
    for (label, values) in
        [("since the run started", &mut since_start), ("since the last node booted", &mut since_boot)]
    {
        values.sort();
        if values.is_empty() {
            continue;
        }
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
        println!("{label:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", at(0.0), at(0.5), at(0.9), at(1.0));
    }
    if !never.is_empty() {
        println!("never converged: seeds {never:?}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn run(
    scenario: PathBuf,
    seed: u64,
    json: bool,
    trace_path: Option<PathBuf>,
    pipeline: Option<PipelineArg>,
    engine: Option<EngineArg>,
) -> ExitCode {
    let simulation = match load(&scenario, pipeline, engine, Use::Verdicts) {
        Ok(simulation) => simulation.seed(seed),
        Err(code) => return code,
    };
    let file = scenario.display().to_string();
    let wall = std::time::Instant::now();
    let run = match simulation.run() {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!("ROLLCALL_SEED={seed} (commit {})", rollcall_sim::report::COMMIT);
            let replay = rollcall_sim::report::replay_command(&file, seed, simulation.world());
            eprintln!("replay: {replay}");
            return ExitCode::from(1);
        }
    };
    let wall = wall.elapsed();
    if let Some(path) = trace_path {
        if let Err(error) = run.trace.write(&path) {
            eprintln!("error: cannot write trace {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&run.report).expect("reports serialize"));
    } else {
        let text = run.report.to_text();
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    eprintln!("wall time: {:.3}s", wall.as_secs_f64());
    if run.report.as_expected { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
