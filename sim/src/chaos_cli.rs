//! The chaos commands: `explore`, `merge`, `shrink` and `diff`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rollcall::host::Disk;
use rollcall_sim::Simulation;
use rollcall_sim::explore::{self, Exploration, Summary};
use rollcall_sim::shrink::Shrunk;
use serde::{Deserialize, Serialize};

/// Most seeds one exploration may run (a range is checked before anything runs).
pub const SEEDS_MAX: u64 = 10_000_000;

/// What `--json` prints: the summary, the wall time and every seed's outcome (which `merge`
/// reads back).
#[derive(Serialize, Deserialize)]
struct ExploreJson {
    summary: Summary,
    /// Wall time, seconds (the only field that differs between two runs of one range).
    wall_s: f64,
    #[serde(flatten)]
    exploration: Exploration,
}

/// `A..B` (both ends included) or `N` (seeds 1 to N).
pub fn parse_seeds(text: &str) -> Result<(u64, u64), String> {
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("'{s}' is not a seed number"));
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (number(a)?, number(b.trim_start_matches('='))?),
        None => (1, number(text)?),
    };
    if first > last || last - first >= SEEDS_MAX {
        return Err(format!("seed range {text}: expected A..B with A <= B and at most {SEEDS_MAX} seeds"));
    }
    Ok((first, last))
}

/// `I/N`: the I-th of N shards (from 1).
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let parsed =
        text.split_once('/').and_then(|(i, n)| Some((i.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
    match parsed {
        Some((i, n)) if 1 <= i && i <= n => Ok((i, n)),
        _ => Err(format!("shard '{text}': expected I/N with 1 <= I <= N")),
    }
}

/// The seeds of a range that fall to one shard: every N-th, so shards take equal work.
pub fn shard_seeds((first, last): (u64, u64), (index, count): (u64, u64)) -> Vec<u64> {
    (first..=last).filter(|seed| (seed - first) % count == index - 1).collect()
}

/// Options of `explore` beyond the scenario.
pub struct ExploreArgs {
    pub seeds: (u64, u64),
    pub jobs: usize,
    pub shard: (u64, u64),
    pub json: bool,
    pub stop_after: Option<u64>,
}

/// Runs the seeds and prints the summary. Exit 0 if every seed was as expected, 1 if not.
pub fn run(simulation: &Simulation, file: &Path, args: ExploreArgs) -> ExitCode {
    if args.jobs == 0 {
        eprintln!("error: --jobs must be at least 1");
        return ExitCode::from(2);
    }
    let seeds = shard_seeds(args.seeds, args.shard);
    if seeds.is_empty() {
        let ((first, last), (index, count)) = (args.seeds, args.shard);
        eprintln!("error: shard {index}/{count} of seeds {first}..{last} holds no seed: use fewer shards");
        return ExitCode::from(2);
    }
    let bar = ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .expect("the template is valid"),
    );
    let started = Instant::now();
    let mut unexpected = 0u64;
    let outcomes = explore::explore(simulation, &seeds, args.jobs, args.stop_after, |outcome| {
        unexpected += u64::from(!outcome.as_expected);
        bar.set_message(format!("{unexpected} unexpected"));
        bar.inc(1);
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let exploration =
        Exploration::new(simulation, &file.display().to_string(), outcomes).sharded(args.seeds, args.shard);
    let summary = exploration.summary();
    // A shard sees part of the range: whether every invariant was checked is for `merge`.
    let ok = if args.shard.1 > 1 { summary.unexpected_seeds.is_empty() } else { summary.passed() };
    if args.json {
        let json = ExploreJson { summary, wall_s: wall, exploration };
        println!("{}", serde_json::to_string(&json).expect("outcomes serialize"));
    } else {
        print!("{}", summary.to_text());
        let rate = summary.seeds as f64 / wall.max(1e-9) * 60.0;
        println!("wall time {wall:.1} s, {rate:.0} seeds a minute with {} jobs", args.jobs);
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `merge`: sums the `--json` outputs of several shards.
pub fn merge(files: &[PathBuf], json: bool) -> ExitCode {
    let mut parts = Vec::new();
    for file in files {
        let read = rollcall::files::read_bounded(file, TRACE_FILE_BYTES_MAX).and_then(|text| {
            serde_json::from_str::<Exploration>(&text).map_err(|e| format!("line {}: {e}", e.line()))
        });
        match read {
            Ok(part) => parts.push(part),
            Err(error) => {
                eprintln!("error: {}: {error}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let merged = match Exploration::merge(parts) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let summary = merged.summary();
    let ok = summary.passed();
    if json {
        let json = ExploreJson { summary, wall_s: 0.0, exploration: merged };
        println!("{}", serde_json::to_string(&json).expect("outcomes serialize"));
    } else {
        print!("{}", summary.to_text());
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `shrink`: the smallest plan that keeps the violation, written as a scenario file; its
/// path is printed. Exit 0 once written and replayed, 1 if the written file does not replay
/// the violation, 2 for bad input (including a seed with nothing to shrink).
pub fn shrink(
    simulation: &Simulation,
    file: &Path,
    invariant: Option<&str>,
    out: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let shrunk = match rollcall_sim::shrink::shrink(simulation, invariant) {
        Ok(shrunk) => shrunk,
        Err(rollcall_sim::shrink::ShrinkError::Engine(error)) => {
            eprintln!("error: {error}");
            return ExitCode::from(error.exit_code());
        }
        Err(error) => {
            eprintln!("error: {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let out =
        out.unwrap_or_else(|| rollcall_sim::shrink::default_output(file, shrunk.seed, &shrunk.invariant));
    if let Err(code) = crate::check_output(&out, file) {
        return code;
    }
    let replay = rollcall_sim::report::replay_command(&out.display().to_string(), shrunk.seed, &shrunk.world);
    if let Err(error) = rollcall_sim::shrink::write_scenario(file, &shrunk, &replay, &out) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    print_shrunk_plan(&shrunk);
    // The file is the product: check that it replays what it claims.
    confirm_replay(&out, &shrunk, &replay, json)
}

/// The plan before and after shrinking, on stderr.
fn print_shrunk_plan(shrunk: &Shrunk) {
    eprintln!(
        "{} faults -> {} in {} runs; {} stays contradicted",
        shrunk.original.len(),
        shrunk.faults.len(),
        shrunk.runs,
        shrunk.invariant
    );
    for fault in &shrunk.faults {
        let until = fault.lasting.map(|l| format!(" for {:.1} s", l.as_secs_f64())).unwrap_or_default();
        eprintln!("  at {:.1} s{until}: {}", fault.at.as_secs_f64(), fault.kind);
    }
}

/// Runs the written scenario `out` again: exit 0 (and the file's path, or the `--json`
/// summary, printed) if it contradicts the shrunk invariant as it claims, else 1.
fn confirm_replay(out: &Path, shrunk: &Shrunk, replay: &str, json: bool) -> ExitCode {
    let replayed = Simulation::from_file(out)
        .map_err(|e| e.to_string())
        .and_then(|s| s.seed(shrunk.seed).run().map_err(|e| e.to_string()));
    match replayed {
        Ok(run)
            if run.report.as_expected
                && run.report.verdict(&shrunk.invariant).is_some_and(|v| v.is_contradicted()) =>
        {
            eprintln!("replay: {replay}");
            if json {
                let summary = serde_json::json!({
                    "file": out.display().to_string(),
                    "seed": shrunk.seed,
                    "invariant": shrunk.invariant,
                    "violated": shrunk.violated,
                    "faults": shrunk.faults,
                    "original_faults": shrunk.original.len(),
                    "runs": shrunk.runs,
                    "replay": replay,
                });
                println!("{summary}");
            } else {
                println!("{}", out.display());
            }
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("error: {} does not replay the violation of {}", out.display(), shrunk.invariant);
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {}: {error}", out.display());
            ExitCode::from(1)
        }
    }
}

/// `diff`: exit 0 if the traces are the same, 1 where they part, 2 for bad input.
/// Largest trace file `diff` reads: [`rollcall_sim::trace::TRACE_RECORDS_MAX`] records of a
/// few hundred bytes each, with room to spare.
const TRACE_FILE_BYTES_MAX: u64 = 8 << 30;

pub fn diff(a: &Path, b: &Path, context: usize, json: bool) -> ExitCode {
    // A regular file of bounded size: a pipe would block the read, a device fill memory.
    let read = |path: &Path| {
        rollcall::files::read_bounded(path, TRACE_FILE_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let (a_text, b_text) = match (read(a), read(b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let (a_name, b_name) = (a.display().to_string(), b.display().to_string());
    match rollcall_sim::diff::diff((&a_name, &a_text), (&b_name, &b_text), context) {
        Ok(None) => {
            if json {
                println!("null");
            } else {
                println!("the traces are the same");
            }
            ExitCode::SUCCESS
        }
        Ok(Some(divergence)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&divergence).expect("records serialize"));
            } else {
                print!("{}", divergence.to_text(&a_name, &b_name));
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `report --html`: writes the page (atomically); exit 0 if the run is as expected, 1 if
/// not, 2 if the page cannot be written.
pub fn html_report(simulation: &Simulation, out: &Path, json: bool) -> ExitCode {
    let run = match simulation.run() {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let page = rollcall_sim::html::page(&simulation.seeded_world(), &run);
    if let Err(error) = rollcall::host::RealDisk.write_atomic(out, page.as_bytes()) {
        eprintln!("error: cannot write {}: {error}", out.display());
        return ExitCode::from(2);
    }
    if json {
        let summary = serde_json::json!({
            "html": out.display().to_string(),
            "as_expected": run.report.as_expected,
            "mismatches": run.report.mismatches,
            "replay": run.report.replay,
        });
        println!("{summary}");
    } else {
        println!("{}", out.display());
    }
    let outcome = if run.report.as_expected { "as expected" } else { "NOT as expected" };
    eprintln!("outcome: {outcome}; replay: {}", run.report.replay);
    if run.report.as_expected { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_include_both_ends() {
        assert_eq!(parse_seeds("1..1000"), Ok((1, 1000)));
        assert_eq!(parse_seeds("5..=5"), Ok((5, 5)));
        assert_eq!(parse_seeds("20"), Ok((1, 20)));
        assert!(parse_seeds("9..1").is_err());
        assert!(parse_seeds("x..1").is_err());
        assert!(parse_seeds("1..99999999999").is_err());
    }

    #[test]
    fn shards_split_a_range_without_overlap() {
        let all: Vec<u64> = (1..=3).flat_map(|i| shard_seeds((1, 10), (i, 3))).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (1..=10).collect::<Vec<_>>());
        assert_eq!(shard_seeds((1, 10), (2, 3)), vec![2, 5, 8]);
        assert!(parse_shard("0/3").is_err() && parse_shard("4/3").is_err() && parse_shard("3").is_err());
    }
}
