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
use std::time::Duration;

use crate::observe::Observations;

/// Checks `valid-config`: every load the balancer tried succeeded, but one that found no
/// file while the world held the renderer before its first rendering (a stall at the
/// balancer's boot): the world, not the stack, kept the file from being written.
pub fn valid_config(obs: &Observations) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!("{balancer}'s balancer never fails to load the configuration it is given");
    let mut verdict = Verdict::new("valid-config", rule);
    verdict.checked = obs.loaded.changes().len() as u32 + obs.load_failures.len() as u32;
    let first_rendering = obs.rendered.changes().first().map(|(at, _)| *at);
    let held_before_any =
        |at: Duration| obs.renderer_held(at) && first_rendering.is_none_or(|first| at < first);
    for (at, error) in obs.load_failures.iter().filter(|(at, _)| !held_before_any(*at)) {
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
    // Stretches with two or more processes, however many records split them.
    let mut stretch: Option<(std::time::Duration, Vec<u32>)> = None;
    let ends = obs.accepting.iter().map(|(at, pids)| (*at, pids.as_slice())).chain([(obs.end, &[][..])]);
    for (at, pids) in ends {
        verdict.checked += u32::from(at < obs.end);
        match (&mut stretch, pids.len() >= 2) {
            (Some((_, seen)), true) => {
                seen.extend(pids.iter().filter(|p| !seen.contains(p)).collect::<Vec<_>>())
            }
            (None, true) => stretch = Some((at, pids.to_vec())),
            (Some((from, seen)), false) => {
                if at.saturating_sub(*from) > bound {
                    let lasted = secs(at.saturating_sub(*from));
                    let what = format!(
                        "from {} to {} processes {seen:?} accepted on {balancer} together ({lasted} > {})",
                        secs(*from),
                        secs(at),
                        secs(bound)
                    );
                    verdict.fail(*from, &[balancer], what);
                }
                stretch = None;
            }
            (None, false) => {}
        }
    }
    verdict
}
