//! The balancer node's pipeline, render to running balancer, as a user of HAProxy and
//! consul-template expects it to behave:
//!
//! - `valid-config`: the balancer is never handed a configuration it cannot load. A
//!   rendering that fails validation must stay out of the live file, so that no start or
//!   reload of the balancer ever fails on it (HAProxy's `[ALERT] ... Fatal errors found in
//!   configuration`).
//! - `one-balancer`: at most one balancer process accepts connections at a time, beyond a
//!   reload's hand-over. Two processes on one port serve two configurations, each to its
//!   own share of clients, which is what a lost `-sf` hand-over leaves behind.

use super::bounds::Window;
use super::{Verdict, secs};
use crate::observe::Observations;

/// Checks `valid-config`: every load the balancer tried succeeded.
pub fn valid_config(obs: &Observations) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!("{balancer}'s balancer never fails to load the configuration it is given");
    let mut verdict = Verdict::new("valid-config", rule);
    verdict.checked = obs.loaded.changes().len() as u32 + obs.load_failures.len() as u32;
    for (at, error) in &obs.load_failures {
        verdict.fail(
            *at,
            &[balancer],
            format!("at {} {balancer}'s balancer could not load: {error}", secs(*at)),
        );
    }
    verdict
}

/// Checks `one-balancer`: two or more processes accepting at once for longer than `bound`.
pub fn one_balancer(obs: &Observations, bound: &Window) -> Verdict {
    let balancer = &obs.balancer;
    let bound = bound.duration();
    let rule = format!(
        "at most one balancer process accepts connections on {balancer}, but for a hand-over of {}",
        secs(bound)
    );
    let mut verdict = Verdict::new("one-balancer", rule);
    let changes = &obs.accepting;
    for (index, (at, pids)) in changes.iter().enumerate() {
        verdict.checked += 1;
        if pids.len() < 2 {
            continue;
        }
        let until = changes.get(index + 1).map_or(obs.end, |(next, _)| *next);
        if until.saturating_sub(*at) > bound {
            let what = format!(
                "from {} to {} processes {pids:?} all accepted on {balancer} ({} > {})",
                secs(*at),
                secs(until),
                secs(until.saturating_sub(*at)),
                secs(bound)
            );
            verdict.fail(*at, &[balancer], what);
        }
    }
    verdict
}
