//! Invariants over the observation model.
//!
//! - `converge` (a): a webapp that is up and reachable from the balancer is never missing
//!   from the balancer's rendered backends for more than N rounds in a row: it appears
//!   within N rounds of its start, of the balancer's start, or of the heal that made it
//!   reachable again, and no false failure keeps it out longer than that.
//! - `serve` (b): while converged (the balancer's loaded servers are exactly the reachable
//!   webapps, and the client reaches the balancer), every request gets 200 from one of them.
//! - `detect`: a webapp whose host is down or fully cut off from the balancer stays in the
//!   rendered backends for at most N rounds in a row.
//!
//! An enabled invariant that never found anything to check is reported as UNCHECKED, which
//! a scenario counts as not holding: a check that cannot fail proves nothing.

use std::time::Duration;

use serde::Serialize;

use std::collections::BTreeSet;

use crate::observe::{Observations, intervals};
use crate::world::World;

/// How many violations a verdict lists.
const VIOLATIONS_LISTED_MAX: usize = 10;

/// The outcome of one invariant over one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Invariant name.
    pub name: String,
    /// What it requires, with its bound.
    pub rule: String,
    /// How many instances were checked.
    pub checked: u32,
    /// How many instances failed.
    pub failed: u32,
    /// The first failures, explained.
    pub violations: Vec<String>,
}

impl Verdict {
    fn new(name: &str, rule: String) -> Self {
        Self { name: name.into(), rule, checked: 0, failed: 0, violations: Vec::new() }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(why);
        }
    }

    /// Whether the invariant held and was checked at least once: a scenario that enables an
    /// invariant must give it something to check.
    pub fn holds(&self) -> bool {
        self.failed == 0 && self.checked > 0
    }

    /// Whether some instance failed (a vacuous verdict is not contradicted).
    pub fn is_contradicted(&self) -> bool {
        self.failed > 0
    }

    /// A word for the verdict.
    pub fn state(&self) -> &'static str {
        match (self.failed, self.checked) {
            (0, 0) => "UNCHECKED",
            (0, _) => "HOLDS",
            _ => "VIOLATED",
        }
    }
}

/// Checks every invariant the world enables.
pub fn check(world: &World, observations: &Observations) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if let Some(rounds) = world.converge_rounds {
        verdicts.push(converge(observations, world.round * rounds, rounds));
    }
    if world.serve {
        verdicts.push(serve(observations));
    }
    if let Some(rounds) = world.detect_rounds {
        verdicts.push(detect(observations, world.round * rounds, rounds));
    }
    verdicts
}

fn secs(at: Duration) -> String {
    format!("{:.3}s", at.as_secs_f64())
}

fn converge(obs: &Observations, bound: Duration, rounds: u32) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!(
        "a live webapp is never missing from {balancer}'s rendered backends for more than {rounds} rounds"
    );
    bounded_absence(
        obs,
        Verdict::new("converge", rule),
        bound,
        &BoundedRule {
            during: |webapp: &str, t| obs.is_reachable(webapp, t),
            wrong: |webapp: &str, backends: &BTreeSet<String>| !backends.contains(webapp),
            what: format!("is up and reachable from {balancer} but missing from its rendered backends"),
        },
    )
}

fn detect(obs: &Observations, bound: Duration, rounds: u32) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!(
        "a webapp down or cut off from {balancer} stays in its rendered backends for at most {rounds} rounds"
    );
    bounded_absence(
        obs,
        Verdict::new("detect", rule),
        bound,
        &BoundedRule {
            during: |webapp: &str, t| obs.is_lost(webapp, t),
            wrong: |webapp: &str, backends: &BTreeSet<String>| backends.contains(webapp),
            what: format!("is unreachable from {balancer} but still in its rendered backends"),
        },
    )
}

/// "While `during` holds for a webapp, the rendered backends are not `wrong` for more than
/// the bound in a row."
struct BoundedRule<D, W> {
    during: D,
    wrong: W,
    what: String,
}

fn bounded_absence<D, W>(
    obs: &Observations,
    mut verdict: Verdict,
    bound: Duration,
    rule: &BoundedRule<D, W>,
) -> Verdict
where
    D: Fn(&str, Duration) -> bool,
    W: Fn(&str, &BTreeSet<String>) -> bool,
{
    for webapp in &obs.webapps {
        for (start, end) in obs.spans(|t| (rule.during)(webapp, t)).0 {
            if end - start <= bound {
                continue;
            }
            verdict.checked += 1;
            let points = std::iter::once(start).chain(obs.rendered.changes_within(start, end));
            let samples = points.map(|t| (t, (rule.wrong)(webapp, &obs.rendered.at(t))));
            for (from, to) in intervals(samples, end).0 {
                if to - from > bound {
                    verdict.fail(format!("{webapp} {} from {} to {}", rule.what, secs(from), secs(to)));
                }
            }
        }
    }
    verdict
}

fn serve(obs: &Observations) -> Verdict {
    let balancer = &obs.balancer;
    let rule =
        format!("while {balancer} has loaded exactly the reachable webapps, every request gets 200 from one");
    let mut verdict = Verdict::new("serve", rule);
    let points = obs.change_points();
    let converged = |t: Duration| {
        let loaded = obs.loaded.at(t);
        !loaded.is_empty()
            && loaded == obs.reachable_webapps(t)
            && obs.clients.iter().all(|client| !obs.is_cut(client, balancer, t))
    };
    for request in &obs.requests {
        let within = points.iter().copied().filter(|t| *t > request.sent && *t <= request.done);
        if !converged(request.sent) || !within.clone().all(converged) {
            continue;
        }
        verdict.checked += 1;
        let servers = obs.loaded.at(request.sent);
        let served_by_a_server = request.served_by.as_ref().is_some_and(|s| servers.contains(s));
        if request.status != Some(200) || !served_by_a_server {
            let outcome = match (&request.status, &request.error) {
                (Some(status), _) => {
                    format!("status {status} from {}", request.served_by.as_deref().unwrap_or("no webapp"))
                }
                (None, Some(error)) => error.clone(),
                (None, None) => "no answer".into(),
            };
            verdict.fail(format!(
                "request #{} sent at {} while converged on {:?}: {outcome}",
                request.id,
                secs(request.sent),
                servers
            ));
        }
    }
    verdict
}
