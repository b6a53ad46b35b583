//! Invariants over the observation model. Each one reads [`Observations`] (built from the
//! trace alone) and the bounds the world's configuration implies; docs/invariants.md states
//! every rule and bound.
//!
//! - `converge`: a webapp that is up and reachable from the balancer is never missing from
//!   its rendered backends for more than N rounds in a row.
//! - `detect`: a webapp whose host is down or isolated from the balancer stays in the
//!   rendered backends for at most N rounds in a row.
//! - `available`: every request gets a 200 from a webapp, unless the stack could not yet
//!   know better ([`available`]).
//! - `views`, `incarnation`, `no-self-death`, `left`: gossip's own promises ([`gossip`]).
//! - `restart-spacing`, `one-instance`, `quiet-shutdown`, `finish-once`: the supervisor's
//!   ([`supervision`]).
//! - `rendered-view`: the renderer's ([`render`]).
//! - `valid-config`, `one-balancer`: the pipeline's, render to running balancer
//!   ([`pipeline`]).
//!
//! An enabled invariant that never found anything to check is UNCHECKED, which is never the
//! expected outcome: a check that cannot fail proves nothing.

pub mod available;
pub mod bounds;
pub mod gossip;
pub mod pipeline;
pub mod render;
pub mod supervision;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::observe::{Observations, intervals};
use crate::world::{HostKind, World};

/// How many violations a verdict lists (all are counted, and their hosts collected).
const VIOLATIONS_LISTED_MAX: usize = 10;

/// The names of the invariants a scenario can check.
pub const NAMES: [&str; 16] = [
    "converge",
    "detect",
    "available",
    "views",
    "incarnation",
    "no-self-death",
    "no-false-failure",
    "outsiders-refused",
    "left",
    "restart-spacing",
    "one-instance",
    "quiet-shutdown",
    "finish-once",
    "rendered-view",
    "valid-config",
    "one-balancer",
];

/// One failure of an invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When it happened (a request: when it was sent), in simulated milliseconds.
    pub at_ms: u64,
    /// The hosts it is about (the webapp missing, the server a request went to, ...).
    pub hosts: Vec<String>,
    /// What happened, with times.
    pub what: String,
}

/// The outcome of one invariant over one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Invariant name.
    pub name: String,
    /// `HOLDS`, `VIOLATED` or `UNCHECKED`.
    pub verdict: &'static str,
    /// What it requires, with its bound.
    pub rule: String,
    /// How many instances were checked.
    pub checked: u32,
    /// How many instances failed.
    pub failed: u32,
    /// Every host some failure was about.
    pub hosts: BTreeSet<String>,
    /// The first failures, explained.
    pub violations: Vec<Violation>,
    /// Every failure: when, and which hosts.
    #[serde(skip)]
    all: Vec<(Duration, Vec<String>)>,
}

impl Verdict {
    pub(crate) fn new(name: &str, rule: String) -> Self {
        Self {
            name: name.into(),
            verdict: "UNCHECKED",
            rule,
            checked: 0,
            failed: 0,
            hosts: BTreeSet::new(),
            violations: Vec::new(),
            all: Vec::new(),
        }
    }

    fn fail(&mut self, at: Duration, hosts: &[&str], what: String) {
        self.failed += 1;
        self.hosts.extend(hosts.iter().map(|h| h.to_string()));
        self.all.push((at, hosts.iter().map(|h| h.to_string()).collect()));
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            let hosts = hosts.iter().map(|h| h.to_string()).collect();
            self.violations.push(Violation { at_ms: at.as_millis() as u64, hosts, what });
        }
    }

    /// Every failure's time and hosts, listed or not.
    pub fn failures(&self) -> &[(Duration, Vec<String>)] {
        &self.all
    }

    /// Sets the verdict word once every instance is counted.
    fn settled(mut self) -> Self {
        self.verdict = match (self.failed, self.checked) {
            (0, 0) => "UNCHECKED",
            (0, _) => "HOLDS",
            _ => "VIOLATED",
        };
        self
    }

    /// Whether the invariant held and was checked at least once.
    pub fn holds(&self) -> bool {
        self.failed == 0 && self.checked > 0
    }

    /// Whether some instance failed (a vacuous verdict is not contradicted).
    pub fn is_contradicted(&self) -> bool {
        self.failed > 0
    }

    /// Whether nothing was checked.
    pub fn is_unchecked(&self) -> bool {
        self.checked == 0 && self.failed == 0
    }
}

/// What the checks found besides verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// D and A, with their derivations.
    pub windows: bounds::Windows,
    /// Requests by outcome.
    pub requests: available::RequestCounts,
    /// Members declared failed while they ran and a gossip path to them existed.
    pub false_failures: u32,
    /// Each limit some host reached: on how many hosts, and the largest count recorded.
    pub limits: Vec<LimitFigure>,
    /// Each attacker host: what it sent, and what agents made of it.
    pub attacks: Vec<AttackFigure>,
    /// Bounds the scenario sets below what its own configuration allows (see
    /// [`bound_cautions`]).
    pub cautions: Vec<String>,
}

/// What one attacker host sent and achieved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AttackFigure {
    pub attacker: String,
    /// Moves by kind (`forged-dead`, `replay`, `push-pull-flood`...), in name order.
    pub sent: Vec<(String, u64)>,
    /// Its frames that reached an agent.
    pub reached: u64,
    /// Of those, how many agents refused.
    pub refused: u64,
}

fn attack_figures(obs: &Observations) -> Vec<AttackFigure> {
    let attacks = &obs.attacks;
    let figure = |(attacker, sent): (&String, &BTreeMap<String, u64>)| {
        let frames = attacks.frames.iter().filter(|f| &f.attacker == attacker);
        let (reached, refused) = frames.fold((0, 0), |(n, r), f| (n + 1, r + u64::from(f.refused)));
        let sent = sent.iter().map(|(what, n)| (what.clone(), *n)).collect();
        AttackFigure { attacker: attacker.clone(), sent, reached, refused }
    };
    attacks.sent.iter().map(figure).collect()
}

/// One limit that refused something during the run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitFigure {
    /// Its name (`gossip-intents`...).
    pub limit: String,
    /// Its bound.
    pub max: u64,
    /// Hosts on which it refused something.
    pub hosts: usize,
    /// The largest count recorded on one host.
    pub largest: u64,
}

fn limit_figures(obs: &Observations) -> Vec<LimitFigure> {
    let figure = |(limit, hosts): (&String, &BTreeMap<String, (u64, u64)>)| LimitFigure {
        limit: limit.clone(),
        max: hosts.values().map(|(max, _)| *max).max().unwrap_or_default(),
        hosts: hosts.len(),
        largest: hosts.values().map(|(_, count)| *count).max().unwrap_or_default(),
    };
    obs.limits.iter().map(figure).collect()
}

/// Checks every invariant the world enables.
pub fn check(world: &World, obs: &Observations) -> (Vec<Verdict>, Figures) {
    let enabled = &world.invariants;
    let windows = bounds::windows(world, &obs.balancer_tags);
    let sync_wait = sync_wait(world);
    let mut verdicts = Vec::new();
    if let Some(rounds) = enabled.converge_rounds {
        verdicts.push(converge(obs, world.round * rounds, rounds, sync_wait));
    }
    if let Some(rounds) = enabled.detect_rounds {
        verdicts.push(detect(obs, world.round * rounds, rounds, sync_wait));
    }
    let (available, requests) = available::check(obs, &windows, sync_wait);
    if enabled.available {
        verdicts.push(available);
    }
    if enabled.views {
        verdicts.push(gossip::views(obs, &bounds::views_settle(world)));
    }
    if enabled.incarnation {
        verdicts.push(gossip::incarnation(obs));
    }
    if enabled.no_self_death {
        verdicts.push(gossip::no_self_death(obs));
    }
    if enabled.no_false_failure {
        verdicts.push(gossip::no_false_failure(obs));
    }
    if enabled.outsiders_refused {
        verdicts.push(gossip::outsiders_refused(obs));
    }
    if enabled.left {
        verdicts.push(gossip::left(obs, &bounds::views_settle(world)));
    }
    if enabled.rendered_view {
        verdicts.push(render::rendered_view(obs, &bounds::render_settle(world), waits_for_sync(world)));
    }
    if enabled.valid_config {
        verdicts.push(pipeline::valid_config(obs));
    }
    if enabled.one_balancer {
        verdicts.push(pipeline::one_balancer(obs, &bounds::handover(world)));
    }
    let supervision = supervision::check(obs);
    verdicts.extend(supervision.into_iter().filter(|v| enabled.enables(&v.name)));
    let cautions = bound_cautions(world);
    let figures = Figures {
        windows,
        requests,
        false_failures: gossip::false_failures(obs),
        limits: limit_figures(obs),
        attacks: attack_figures(obs),
        cautions,
    };
    (verdicts.into_iter().map(Verdict::settled).collect(), figures)
}

/// Bounds shorter than a window the configuration allows. A `converge` bound below gossip's
/// admission window reports a webapp the stack renders as late as its own settings let it (a
/// reconnect interval as long as the bound leaves no time for the news to spread): such a
/// bound is unmeetable by construction, which the report says rather than raising it.
fn bound_cautions(world: &World) -> Vec<String> {
    let mut cautions = Vec::new();
    if let Some(rounds) = world.invariants.converge_rounds {
        let bound = world.round * rounds;
        let admission = bounds::rendered_admission(world);
        if bound < admission.duration() {
            cautions.push(format!(
                "converge_rounds = {rounds} ({} ms) is shorter than gossip's admission window, {}: a webapp rendered as late as the configuration allows is reported missing",
                bound.as_millis(),
                admission.explain()
            ));
        }
    }
    cautions
}

/// Seconds with milliseconds, for messages.
pub fn secs(at: Duration) -> String {
    format!("{:.3}s", at.as_secs_f64())
}

/// Whether the balancer's renderer keeps its file while the gossip view is not synced.
fn waits_for_sync(world: &World) -> bool {
    world.hosts.iter().find(|h| h.is_balancer()).is_some_and(|host| match &host.kind {
        HostKind::Node(node) => {
            rollcall::node::render_settings(node).is_some_and(|s| s.options.wait_for_sync)
        }
        HostKind::Client(_) | HostKind::Attacker(_) => false,
    })
}

/// How long the balancer's renderer may wait for its agent's sync, if it waits: the agent
/// counts itself synced one TCP timeout (of its own running time) after it starts at the
/// latest, whatever its push-pulls did. The oracle takes that from the configuration, not
/// from the agent's records: an agent that never said it synced would otherwise stop every
/// clock for good.
pub(crate) fn sync_wait(world: &World) -> Option<Duration> {
    waits_for_sync(world).then(|| bounds::balancer_gossip(world).tcp_timeout)
}

fn converge(obs: &Observations, bound: Duration, rounds: u32, sync_wait: Option<Duration>) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!(
        "a live webapp is never missing from {balancer}'s rendered backends for more than {rounds} rounds"
    );
    bounded_absence(
        obs,
        Verdict::new("converge", rule),
        bound,
        &BoundedRule {
            // Only the balancer's own agent can tell its renderer: while the world holds it
            // (stalled, crashed, left), the rendering stays as it was (consul-template keeps
            // its last data); nor can anyone learn of a webapp whose agent the world holds.
            // A restarted agent's renderer keeps its file until the agent is synced.
            during: |webapp: &str, t| {
                obs.is_reachable(webapp, t)
                    && gossip_can_tell(obs, sync_wait, t)
                    && !obs.agent_held(webapp, t)
            },
            wrong: |webapp: &str, backends: &BTreeSet<String>| !backends.contains(webapp),
            what: format!("is up and reachable from {balancer} but missing from its rendered backends"),
            lifeguard: false,
        },
    )
}

/// Whether the balancer's agent can tell its renderer anything at `t`, and the renderer
/// act on it: the world holds neither (a stalled renderer renders nothing, as a stalled
/// agent tells nothing), and (when the renderer waits for its data, at most `sync_wait`)
/// the agent is synced.
pub(crate) fn gossip_can_tell(obs: &Observations, sync_wait: Option<Duration>, t: Duration) -> bool {
    let balancer = &obs.balancer;
    let unsynced = sync_wait.is_some_and(|wait| obs.agent_unsynced(balancer, t, wait));
    !(obs.agent_held(balancer, t) || obs.renderer_held(t) || unsynced)
}

fn detect(obs: &Observations, bound: Duration, rounds: u32, sync_wait: Option<Duration>) -> Verdict {
    let balancer = &obs.balancer;
    let rule = format!(
        "a webapp down or isolated from {balancer} stays in its rendered backends for at most {rounds} rounds of its agent"
    );
    bounded_absence(
        obs,
        Verdict::new("detect", rule),
        bound,
        &BoundedRule {
            during: |webapp: &str, t| obs.is_lost(webapp, t) && gossip_can_tell(obs, sync_wait, t),
            wrong: |webapp: &str, backends: &BTreeSet<String>| backends.contains(webapp),
            what: format!("is down or isolated from {balancer} but still in its rendered backends"),
            lifeguard: true,
        },
    )
}

/// "While `during` holds for a webapp, the rendered backends are not `wrong` for more than
/// the bound in a row."
struct BoundedRule<D, W> {
    during: D,
    wrong: W,
    what: String,
    /// Count the bound in rounds as the balancer's agent runs them: Lifeguard stretches its
    /// probe interval (so its detection) while its health score is raised, as memberlist's.
    lifeguard: bool,
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
            let samples = points.map(|t| (t, (rule.wrong)(webapp, obs.rendered.at(t))));
            for (from, to) in intervals(samples, end).0 {
                let counted =
                    if rule.lifeguard { obs.agent_time(&obs.balancer, from, to) } else { to - from };
                if counted > bound {
                    verdict.fail(
                        from,
                        &[webapp],
                        format!("{webapp} {} from {} to {}", rule.what, secs(from), secs(to)),
                    );
                }
            }
        }
    }
    verdict
}
