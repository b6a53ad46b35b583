//! Calibration: the same scenario and seeds in the simulator and on the real engine, and
//! what a user sees of each, side by side. Every metric is read from the balancer's rendered
//! backends and the client's requests, the things a user of the lab watches:
//!
//! - join to converged: from the first boot of the last node the balancer needs (itself and
//!   every webapp) until its rendered backends list every webapp;
//! - crash to removed: per host crash of a webapp the rendering lists, until it leaves it
//!   out;
//! - heal to back: per partition that ends within the run while a running webapp is missing
//!   from the rendering, until the rendering lists every webapp that runs;
//! - failed requests: per run, requests that did not get a webapp's 200.
//!
//! A metric agrees when it happened as often on both engines, the shares of cases that never
//! completed differ by at most [`TOLERANCE_SHARE`], and the medians differ by at most
//! [`TOLERANCE_SHARE`] of the simulated median or one gossip round, whichever is larger (for
//! failed requests, that share or [`TOLERANCE_REQUESTS`]). Only medians are judged; the other
//! quantiles are printed for the reader.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::faults::FaultKind;
use crate::metrics::Distribution;
use crate::observe::Observations;

/// How far apart two medians may be, as a share of the simulated one.
pub const TOLERANCE_SHARE: f64 = 0.25;
/// How many failed requests apart two medians may be in any case.
pub const TOLERANCE_REQUESTS: f64 = 2.0;

/// One run's measurements.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// At most one: `None` when the run never converged.
    pub join_to_converged: Vec<Option<Duration>>,
    /// One per host crash of a webapp.
    pub crash_to_removed: Vec<Option<Duration>>,
    /// One per partition that ends within the run.
    pub heal_to_back: Vec<Option<Duration>>,
    /// Requests that did not get a webapp's 200.
    pub failed_requests: u64,
}

impl Sample {
    /// Measures one run.
    pub fn of(obs: &Observations) -> Self {
        let needed = obs.webapps.iter().chain([&obs.balancer]);
        let first_boot = |name: &String| obs.host_up.get(name).and_then(|up| up.0.first()).map(|(at, _)| *at);
        let last_boot =
            needed.map(first_boot).collect::<Option<Vec<_>>>().and_then(|boots| boots.into_iter().max());
        let join = last_boot.map(|boot| obs.converged_at().map(|at| at.saturating_sub(boot)));
        let mut sample = Sample {
            join_to_converged: join.into_iter().collect(),
            failed_requests: obs.requests.iter().filter(|request| !request.ok()).count() as u64,
            ..Sample::default()
        };
        for fault in &obs.faults {
            match &fault.kind {
                // A webapp the rendering does not list has nothing to be removed from.
                FaultKind::HostCrash { host, .. }
                    if obs.webapps.contains(host) && obs.rendered.at(fault.start).contains(host) =>
                {
                    let removed = first_at(obs, fault.start, |at| !obs.rendered.at(at).contains(host));
                    sample.crash_to_removed.push(removed);
                }
                FaultKind::Partition { .. } => {
                    // A heal with every running webapp still rendered has nothing to bring back.
                    let ended = fault.end.filter(|end| *end < obs.end);
                    if let Some(end) = ended.filter(|end| !every_running_webapp_rendered(obs, *end)) {
                        sample
                            .heal_to_back
                            .push(first_at(obs, end, |at| every_running_webapp_rendered(obs, at)));
                    }
                }
                _ => {}
            }
        }
        sample
    }
}

/// Time from `from` to the first moment `holds`, looking at `from` and each later change of
/// the rendering.
fn first_at(obs: &Observations, from: Duration, holds: impl Fn(Duration) -> bool) -> Option<Duration> {
    let points = std::iter::once(from).chain(obs.rendered.changes_within(from, obs.end));
    points.into_iter().find(|at| holds(*at)).map(|at| at - from)
}

fn every_running_webapp_rendered(obs: &Observations, at: Duration) -> bool {
    let rendered = obs.rendered.at(at);
    obs.webapps.iter().filter(|webapp| obs.webapp_runs(webapp, at)).all(|webapp| rendered.contains(webapp))
}

/// One metric over both engines' runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Its name.
    pub metric: &'static str,
    /// Its unit: `ms` or `requests`.
    pub unit: &'static str,
    /// In the simulator.
    pub simulated: Option<Distribution>,
    /// On the real engine.
    pub real: Option<Distribution>,
    /// `None`: nothing to compare (no sample on one side).
    pub agrees: Option<bool>,
    /// The likely reason for a gap, when they do not agree.
    pub reason: Option<String>,
}

/// Compares the two engines' samples; `round` is the scenario's gossip round.
pub fn compare(simulated: &[Sample], real: &[Sample], round: Duration) -> Vec<Row> {
    let times = |pick: fn(&Sample) -> &Vec<Option<Duration>>, samples: &[Sample]| -> Vec<Option<Duration>> {
        samples.iter().flat_map(|sample| pick(sample).iter().copied()).collect()
    };
    let counts = |samples: &[Sample]| -> Vec<Option<Duration>> {
        // Counts ride in the distribution as milliseconds: one request is one "ms".
        samples.iter().map(|sample| Some(Duration::from_millis(sample.failed_requests))).collect()
    };
    let round_ms = round.as_secs_f64() * 1000.0;
    let mut rows = Vec::new();
    for (metric, pick) in [
        ("join to converged", (|s: &Sample| &s.join_to_converged) as fn(&Sample) -> &Vec<Option<Duration>>),
        ("crash to removed", |s: &Sample| &s.crash_to_removed),
        ("heal to back", |s: &Sample| &s.heal_to_back),
    ] {
        rows.push(row(metric, "ms", &times(pick, simulated), &times(pick, real), round_ms));
    }
    rows.push(row("failed requests", "requests", &counts(simulated), &counts(real), TOLERANCE_REQUESTS));
    rows
}

/// One metric's row. They agree when it happened as often on both engines, completed as
/// often (the shares of cases that never completed differ by at most [`TOLERANCE_SHARE`]),
/// and the medians of what completed are within the tolerance.
fn row(
    metric: &'static str,
    unit: &'static str,
    simulated: &[Option<Duration>],
    real: &[Option<Duration>],
    floor: f64,
) -> Row {
    let (sim, real_d) = (Distribution::of(simulated), Distribution::of(real));
    let gap = if simulated.is_empty() && real.is_empty() {
        None
    } else if simulated.len() != real.len() {
        Some(format!(
            "it happened {} times simulated and {} times real: the runs took different paths; compare their reports",
            simulated.len(),
            real.len()
        ))
    } else if (missing_share(simulated) - missing_share(real)).abs() > TOLERANCE_SHARE {
        Some(format!(
            "it never completed within the run in {} of {} cases simulated and {} real: read the reports of the runs where it did not",
            missing(simulated),
            simulated.len(),
            missing(real)
        ))
    } else {
        match (&sim, &real_d) {
            (Some(sim), Some(real))
                if (real.median_ms - sim.median_ms).abs() > (sim.median_ms * TOLERANCE_SHARE).max(floor) =>
            {
                Some(reason(metric, real.median_ms > sim.median_ms).to_string())
            }
            _ => Some(String::new()),
        }
    };
    let agrees = gap.as_ref().map(String::is_empty);
    let reason = gap.filter(|reason| !reason.is_empty());
    Row { metric, unit, simulated: sim, real: real_d, agrees, reason }
}

fn missing(values: &[Option<Duration>]) -> usize {
    values.iter().filter(|value| value.is_none()).count()
}

fn missing_share(values: &[Option<Duration>]) -> f64 {
    if values.is_empty() { 0.0 } else { missing(values) as f64 / values.len() as f64 }
}

/// What the simulator leaves out that most likely makes the difference of the medians.
fn reason(metric: &str, real_is_slower: bool) -> &'static str {
    match (metric, real_is_slower) {
        ("join to converged", true) => {
            "a real join can meet a seed whose agent has not bound its port yet (real processes take milliseconds to start, simulated ones none), and then waits a whole retry interval"
        }
        ("crash to removed" | "heal to back", true) => {
            "real TCP backs off after losses (SYN retries at 1, 2, 4 s) where a simulated stream fails or connects at once, so push-pulls and reconnects over TCP wait longer"
        }
        ("failed requests", true) => {
            "a real connect to a host that is cut waits for SYN retries up to the client's timeout, and the kernel's queues and timers add to what the simulator models"
        }
        ("heal to back", false) => {
            "a push-pull started during the cut completes just after the heal on a real network, as TCP retransmits its SYN (after 1, 3, 7 s) within the connect timeout; turmoil loses a SYN sent into a partition for good, so a simulated node waits for its next reconnect round"
        }
        (_, false) => {
            "the simulator's links take 1 to 5 ms each way while a veth hop takes tens of microseconds, and the simulator steps time in ticks"
        }
        _ => "the two engines differ in what the scenario exercises; compare the traces (`run --trace`)",
    }
}

/// The table `calibrate` prints.
pub fn to_text(rows: &[Row], runs: u64) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{runs} runs each; min / median / p90 / max (missing: never happened within the run)");
    let _ =
        writeln!(out, "{:<18} {:<9} {:>38} {:>38}  verdict", "metric", "unit", "simulator (turmoil)", "real");
    for row in rows {
        let cell = |d: &Option<Distribution>| match d {
            Some(d) => format!(
                "{:.0} / {:.0} / {:.0} / {:.0}{}",
                d.min_ms,
                d.median_ms,
                d.p90_ms,
                d.max_ms,
                if d.missing > 0 { format!(" ({} missing)", d.missing) } else { String::new() }
            ),
            None => "no sample".to_string(),
        };
        let verdict = match row.agrees {
            Some(true) => "within tolerance",
            Some(false) => "OUTSIDE tolerance",
            None => "nothing to compare",
        };
        let _ = writeln!(
            out,
            "{:<18} {:<9} {:>38} {:>38}  {verdict}",
            row.metric,
            row.unit,
            cell(&row.simulated),
            cell(&row.real)
        );
        if let Some(reason) = &row.reason {
            let _ = writeln!(out, "    likely reason: {reason}");
        }
    }
    let _ = writeln!(
        out,
        "tolerance: medians within {:.0} % of the simulated one or one gossip round (failed requests: {TOLERANCE_REQUESTS})",
        TOLERANCE_SHARE * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(ms: &[Option<u64>]) -> Vec<Sample> {
        let join = |ms: &Option<u64>| Sample {
            join_to_converged: vec![ms.map(Duration::from_millis)],
            ..Sample::default()
        };
        ms.iter().map(join).collect()
    }

    fn verdict(simulated: &[Sample], real: &[Sample], metric: &str) -> Option<bool> {
        let rows = compare(simulated, real, Duration::from_secs(1));
        rows.into_iter().find(|row| row.metric == metric).and_then(|row| row.agrees)
    }

    #[test]
    fn close_medians_agree_and_far_ones_do_not() {
        let simulated = joined(&[Some(1600), Some(1700), Some(1800)]);
        assert_eq!(
            verdict(&simulated, &joined(&[Some(1650), Some(1750), Some(1900)]), "join to converged"),
            Some(true)
        );
        // 4 s more than a 1.7 s median: past 25 % and past one round.
        let rows =
            compare(&simulated, &joined(&[Some(5600), Some(5700), Some(5800)]), Duration::from_secs(1));
        assert_eq!(rows[0].agrees, Some(false));
        assert!(rows[0].reason.as_deref().is_some_and(|reason| reason.contains("retry interval")));
    }

    #[test]
    fn a_timing_that_never_completes_on_one_engine_is_a_gap() {
        let simulated = joined(&[Some(1600), Some(1700)]);
        let rows = compare(&simulated, &joined(&[None, None]), Duration::from_secs(1));
        assert_eq!(rows[0].agrees, Some(false), "{:?}", rows[0]);
        assert!(rows[0].real.is_none());
        assert!(rows[0].reason.as_deref().is_some_and(|reason| reason.contains("never completed")));
    }

    #[test]
    fn what_happened_on_neither_engine_is_not_compared() {
        let simulated = joined(&[Some(1600)]);
        assert_eq!(verdict(&simulated, &joined(&[Some(1600)]), "crash to removed"), None);
        assert_eq!(verdict(&simulated, &joined(&[Some(1600)]), "failed requests"), Some(true));
    }
}
