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

mod chaos_cli;
mod figures;
mod real_cli;

// The event engine allocates and frees small entries (names, messages, queue nodes) by the
// hundred million at thousands of nodes; mimalloc does that faster than glibc (the first
// 1,000-node minute: 19.5 s with glibc, 14.8 s with mimalloc 3, 13.1 s with mimalloc 2) and,
// in its version 2, in less memory than its version 3 (sim/Cargo.toml says how much).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Also print this run's gossip timings, as `figures` prints them for one seed.
        #[arg(long, conflicts_with = "json")]
        figures: bool,
        #[command(flatten)]
        choice: Choice,
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
        #[command(flatten)]
        choice: Choice,
    },
    /// Gossip timings over a range of seeds (join to converged, crash to failed everywhere,
    /// leave to left, heal to merged, a join known by 50 %, 99 % and all, false failures):
    /// min, median, p90 and max.
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
        #[arg(long, default_value_t = 1, value_parser = jobs_parser())]
        jobs: usize,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        choice: Choice,
    },
    /// Run many seeds (in parallel, each deterministic) and sum up violations, the slowest
    /// convergence, the seeds to replay and the coverage of protocol states.
    Explore {
        /// Scenario file (TOML); a `[swarm]` section draws each seed's own faults.
        scenario: PathBuf,
        /// Seeds `A..B` (both included), or `N` for 1..N.
        #[arg(long, default_value = "1..100", value_parser = chaos_cli::parse_seeds)]
        seeds: (u64, u64),
        /// Seeds run at once, each on its own thread (default: one per core).
        #[arg(long, value_parser = jobs_parser())]
        jobs: Option<usize>,
        /// Run only the I-th of N shares of the range (every N-th seed); `merge` sums shards.
        #[arg(long, value_name = "I/N", value_parser = chaos_cli::parse_shard, default_value = "1/1")]
        shard: (u64, u64),
        /// Print the summary and every seed's outcome as JSON (what `merge` reads).
        #[arg(long)]
        json: bool,
        /// Stop handing out seeds after this many unexpected outcomes (at least 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        stop_after: Option<u64>,
        #[command(flatten)]
        choice: Choice,
    },
    /// Shrink a seed's fault plan to the smallest that still contradicts the same invariant,
    /// and write it as a scenario file (its path is printed).
    Shrink {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The seed whose violation to shrink.
        #[arg(long)]
        seed: u64,
        /// The invariant to keep contradicted (default: the first unexpected one).
        #[arg(long)]
        invariant: Option<String>,
        /// Where to write the scenario (default: beside SCENARIO, named after it and the seed).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the file, the shrunk plan and the replay command as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        choice: Choice,
    },
    /// Show where two traces (`run --trace`) part: the first differing record, the records
    /// before it, and the host whose record differs.
    Diff {
        /// First trace (JSON Lines).
        a: PathBuf,
        /// Second trace.
        b: PathBuf,
        /// Shared records shown before the difference.
        #[arg(long, default_value_t = 5)]
        context: usize,
        /// Print the difference as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one seed and write a self-contained HTML page: verdicts and an SVG timeline per
    /// host (views, rendered backends, health, requests) under the faults.
    Report {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the page.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Print the page's path and the run's outcome as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        choice: Choice,
    },
    /// Run a scenario N times in the simulator (seeds 1..N) and N times on the real engine,
    /// and print side by side what a user sees of each: join to converged, crash to
    /// removed, heal to back, failed requests (min, median, p90, max), with a verdict per
    /// metric. Linux and root; real gossip timers run as configured, so keep scenarios short.
    Calibrate {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Runs on each engine.
        #[arg(long, default_value_t = real_cli::CALIBRATE_RUNS_DEFAULT)]
        runs: u64,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
        /// Run the balancer's pipeline this way instead of the file's `[node] pipeline`.
        #[arg(long, value_enum)]
        pipeline: Option<PipelineArg>,
    },
    /// Remove every network namespace (with its links, rules and processes) that real runs
    /// left behind, e.g. after the engine itself was killed.
    Clean,
    /// One host of a real run, inside its namespace (started by the real engine).
    #[command(hide = true)]
    Host(real_cli::HostCommand),
    /// Sum the `explore --json` outputs of several shards into one summary.
    Merge {
        /// Files written by `explore --json`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the merged summary and outcomes as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--pipeline` and `--engine`: what to run instead of the scenario file's own choice.
#[derive(clap::Args, Clone, Copy)]
struct Choice {
    /// Run the balancer's pipeline this way instead of the file's `[node] pipeline`.
    #[arg(long, value_enum)]
    pipeline: Option<PipelineArg>,
    /// Run on this engine instead of the file's `engine`.
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
}

/// `--engine`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    /// The whole stack, HTTP included, on turmoil (small clusters).
    Turmoil,
    /// The gossip, supervisor and render cores on a discrete-event queue (hundreds to ten thousand nodes).
    Event,
    /// Real processes in network namespaces on the wall clock (Linux, root; not replayable).
    Real,
}

impl From<EngineArg> for EngineKind {
    fn from(arg: EngineArg) -> Self {
        match arg {
            EngineArg::Turmoil => EngineKind::Turmoil,
            EngineArg::Event => EngineKind::Event,
            EngineArg::Real => EngineKind::Real,
        }
    }
}

/// `--pipeline`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum PipelineArg {
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { scenario, seed, json, trace, figures, choice } => {
            run(scenario, seed, RunOutput { json, trace, figures }, choice)
        }
        Command::Converge { scenario, from, seeds, choice } => converge(scenario, from, seeds, choice),
        Command::Figures { scenario, from, seeds, jobs, json, choice } => {
            let simulation = match load(&scenario, choice, Use::Figures) {
                Ok(simulation) => simulation,
                Err(code) => return code,
            };
            match seed_range(from, seeds) {
                Ok(range) => figures::print(&simulation, &scenario, range, jobs, json),
                Err(code) => code,
            }
        }
        Command::Explore { scenario, seeds, jobs, shard, json, stop_after, choice } => {
            let simulation = match load(&scenario, choice, Use::Seeds) {
                Ok(simulation) => simulation,
                Err(code) => return code,
            };
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let args = chaos_cli::ExploreArgs { seeds, jobs, shard, json, stop_after };
            chaos_cli::run(&simulation, &scenario, args)
        }
        Command::Merge { files, json } => chaos_cli::merge(&files, json),
        Command::Calibrate { scenario, runs, json, pipeline } => {
            let choice = Choice { pipeline, engine: Some(EngineArg::Real) };
            match load(&scenario, choice, Use::Verdicts) {
                Ok(simulation) => real_cli::calibrate(&simulation, runs, json),
                Err(code) => code,
            }
        }
        Command::Clean => real_cli::clean(),
        Command::Host(command) => real_cli::host(command),
        Command::Shrink { scenario, seed, invariant, out, json, choice } => {
            if let Some(Err(code)) = out.as_deref().map(|out| check_output(out, &scenario)) {
                return code;
            }
            let simulation = match load(&scenario, choice, Use::Seeds) {
                Ok(simulation) => simulation.seed(seed),
                Err(code) => return code,
            };
            chaos_cli::shrink(&simulation, &scenario, invariant.as_deref(), out, json)
        }
        Command::Diff { a, b, context, json } => chaos_cli::diff(&a, &b, context, json),
        Command::Report { scenario, seed, html, json, choice } => {
            report(&scenario, seed, &html, json, choice)
        }
    }
}

/// `--jobs`: 1 to [`rollcall_sim::explore::JOBS_MAX`] threads.
fn jobs_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=rollcall_sim::explore::JOBS_MAX as u64)
}

/// Refuses, before any run, an `output` the run could not write or should not: the
/// scenario file `input` itself (however named; the trace, page or shrunk file would replace
/// it), something there that is no regular file (a directory, device or named pipe), or a
/// path whose folder does not exist.
pub(crate) fn check_output(output: &Path, input: &Path) -> Result<(), ExitCode> {
    let refuse = |why: String| {
        eprintln!("error: {}: {why}", output.display());
        Err(ExitCode::from(2))
    };
    if let Err(error) = rollcall::files::replaceable_target(output) {
        return refuse(error.to_string());
    }
    // Known before the run, which may take hours, rather than after it.
    let folder = output.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return refuse(format!("its folder {} does not exist", folder.display()));
    }
    if rollcall::files::same_file(output, input) {
        return refuse(format!(
            "this is the scenario file {}: writing there would replace it",
            input.display()
        ));
    }
    Ok(())
}

/// `report`: one seed's HTML page.
fn report(scenario: &Path, seed: u64, html: &Path, json: bool, choice: Choice) -> ExitCode {
    if let Err(code) = check_output(html, scenario) {
        return code;
    }
    let simulation = match load(scenario, choice, Use::Verdicts) {
        Ok(simulation) => simulation.seed(seed),
        Err(code) => return code,
    };
    chaos_cli::html_report(&simulation, html, json)
}

/// What a command reads of its runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Verdicts of one seed at a time (`run`, `report`, `calibrate`).
    Verdicts,
    /// Timings or the rendered backends over many seeds, no verdict (`figures`,
    /// `converge`): not on the real engine either.
    Figures,
    /// Verdicts over many seeds (`explore`, `shrink`): not on the real engine, whose runs
    /// take their full length in wall time and are not replayable.
    Seeds,
}

fn load(scenario: &Path, choice: Choice, use_: Use) -> Result<Simulation, ExitCode> {
    let loaded = Simulation::from_file(scenario).map(|s| {
        let s = match choice.pipeline {
            Some(pipeline) => s.pipeline(pipeline.into()),
            None => s,
        };
        match choice.engine {
            Some(engine) => s.engine(engine.into()),
            None => s,
        }
    });
    let simulation = loaded.map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })?;
    // What the engine cannot model is bad input, refused before any run. Figures and
    // `converge` read no verdict, so the invariants an engine cannot check do not matter to
    // them; the rest of what it does not model does.
    if simulation.world().engine == EngineKind::Turmoil {
        if let Some(what) = rollcall_sim::engines::turmoil::unsupported(simulation.world()) {
            eprintln!("error: {}: the turmoil engine cannot run this scenario: {what}", scenario.display());
            eprintln!("hint: run it with --engine event");
            return Err(ExitCode::from(2));
        }
    }
    if simulation.world().engine == EngineKind::Real {
        real_cli::check(&simulation, scenario, use_)?;
    }
    if simulation.world().engine == EngineKind::Event {
        let refused = match use_ {
            Use::Verdicts | Use::Seeds => rollcall_sim::engines::event::unsupported(simulation.world()),
            Use::Figures => rollcall_sim::engines::event::unsupported_model(simulation.world()),
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

/// `--from` and `--seeds` as a range: at least one seed, at most `explore`'s limit, and no
/// seed past the largest (a silent wrap or cut would run other seeds than asked).
fn seed_range(from: u64, seeds: u64) -> Result<std::ops::Range<u64>, ExitCode> {
    let end = from.checked_add(seeds).filter(|_| (1..=chaos_cli::SEEDS_MAX).contains(&seeds));
    end.map(|end| from..end).ok_or_else(|| {
        eprintln!(
            "error: --from {from} --seeds {seeds}: expected 1 to {} seeds, the last at most {}",
            chaos_cli::SEEDS_MAX,
            u64::MAX - 1
        );
        ExitCode::from(2)
    })
}

fn converge(scenario: PathBuf, from: u64, seeds: u64, choice: Choice) -> ExitCode {
    let simulation = match load(&scenario, choice, Use::Figures) {
        Ok(simulation) => simulation,
        Err(code) => return code,
    };
    let range = match seed_range(from, seeds) {
        Ok(range) => range,
        Err(code) => return code,
    };
    let mut since_start = Vec::new();
    let mut since_boot = Vec::new();
    let mut never = Vec::new();
    let last = range.end - 1;
    for seed in range {
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

/// What `run` prints and writes besides its verdicts.
struct RunOutput {
    json: bool,
    trace: Option<PathBuf>,
    figures: bool,
}

fn run(scenario: PathBuf, seed: u64, output: RunOutput, choice: Choice) -> ExitCode {
    if let Some(Err(code)) = output.trace.as_deref().map(|trace| check_output(trace, &scenario)) {
        return code;
    }
    let simulation = match load(&scenario, choice, Use::Verdicts) {
        Ok(simulation) => simulation.seed(seed),
        Err(code) => return code,
    };
    let file = scenario.display().to_string();
    let wall = std::time::Instant::now();
    let run = match simulation.run() {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: {file}: {error}");
            eprintln!("ROLLCALL_SEED={seed} (commit {})", rollcall_sim::report::COMMIT);
            let replay = rollcall_sim::report::replay_command(&file, seed, simulation.world());
            eprintln!("replay: {replay}");
            return ExitCode::from(error.exit_code());
        }
    };
    let wall = wall.elapsed();
    if let Some(path) = output.trace {
        if let Err(error) = run.trace.write(&path) {
            eprintln!("error: cannot write trace {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if output.json {
        println!("{}", serde_json::to_string_pretty(&run.report).expect("reports serialize"));
    } else {
        let text = run.report.to_text();
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    if output.figures {
        figures::print_run(&run, &scenario, seed);
    }
    eprintln!("wall time: {:.3}s", wall.as_secs_f64());
    if run.report.as_expected { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
