//! `available`: every request the client sends gets a 200 from a webapp, unless the stack
//! could not yet know better. A failed request is excused only if, when it was sent:
//!
//! - (a) the server the balancer sent it to failed while serving it, or had been down or
//!   unreachable from the balancer (either direction: TCP needs both) for less than the
//!   detection window D (without health checks, D is gossip's and counts while gossip can
//!   tell the renderer);
//! - (b) the balancer had no server for it, and no webapp had been up and reachable for at
//!   least the admission window A, counted while gossip could tell the renderer (a hold of
//!   the balancer's agent or renderer pauses the count, a restart the world caused starts it
//!   again);
//! - (c) the client could not reach the balancer while the request was under way: cut off,
//!   the balancer's host down, or its balancer service stalled, or killed by a
//!   `service-crash` fault and not yet restarted within s6's restart delay. A balancer
//!   service that stops on its own (a reload that drops the listener, a failed bind)
//!   excuses nothing: the user sees those failures. A request sent while the client could
//!   not reach the balancer that got there once the path was back (TCP sends a SYN again)
//!   is judged by (a) and (b) as if sent then.
//!
//! Every other failed request is a violation naming the request, the server and why that
//! server was a bad choice. What counts is when the request was sent (or reached the
//! balancer after a block), not how long it took to fail.

use std::collections::BTreeMap;
use std::time::Duration;

use rollcall::node::BALANCER_SERVICE;
use serde::Serialize;

use super::bounds::Windows;
use super::{Verdict, secs};
use crate::observe::{Intervals, Observations, RequestObservation, Supervision};

/// Requests by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Requests sent (and ended within the run).
    pub sent: u32,
    /// Answered 200 by a webapp.
    pub ok: u32,
    /// Failed, by cause: `server-lost-within-D`, `no-webapp-admitted-within-A`,
    /// `balancer-unreachable`, `unexcused`.
    pub failed: BTreeMap<String, u32>,
}

/// Why a failed request is excused, or that it is not.
enum Cause {
    ServerLost,
    NoneAdmitted,
    BalancerUnreachable,
    Unexcused { hosts: Vec<String>, why: String },
}

impl Cause {
    fn key(&self) -> &'static str {
        match self {
            Cause::ServerLost => "server-lost-within-D",
            Cause::NoneAdmitted => "no-webapp-admitted-within-A",
            Cause::BalancerUnreachable => "balancer-unreachable",
            Cause::Unexcused { .. } => "unexcused",
        }
    }
}

/// What the judgement of one request needs, computed once per run.
struct Judge<'a> {
    obs: &'a Observations,
    detection: Duration,
    admission: Duration,
    /// Gossip's D, when the balancer also has health checks.
    gossip_detection: Option<Duration>,
    /// Per webapp: when its host is down or it is isolated from the balancer.
    lost: BTreeMap<String, Intervals>,
    /// Per webapp: when it is down or unreachable from the balancer.
    bad: BTreeMap<String, Intervals>,
    /// Per webapp: when it is up and reachable and the world does not hold its agent.
    good: BTreeMap<String, Intervals>,
    /// When the balancer's agent can tell its renderer: A counts only then.
    tells: Intervals,
    /// When runs of the balancer's agent started after the world ended the one before (a
    /// crash fault, a leave, its host down): each learns the cluster afresh. A restart after
    /// a death of its own is the stack's failure and unadmits nothing.
    agent_restarts: Vec<Duration>,
    /// Per client: when it cannot reach a running balancer.
    blocked: BTreeMap<String, Intervals>,
}

/// Checks `available` and counts requests by cause.
pub fn check(obs: &Observations, windows: &Windows, sync_wait: Option<Duration>) -> (Verdict, RequestCounts) {
    let (d, a) = (windows.detection.duration(), windows.admission.duration());
    let rule = format!(
        "every request gets 200 from a webapp, unless its server was lost less than D = {} ago, \
         no webapp was admitted A = {} before, or the client could not reach {}",
        secs(d),
        secs(a),
        obs.balancer
    );
    let mut verdict = Verdict::new("available", rule);
    let mut counts = RequestCounts::default();
    if obs.requests.is_empty() {
        // Nothing to judge (and the spans below cost webapps x change points to build).
        return (verdict, counts);
    }
    let mut judge = Judge::new(obs, d, a, sync_wait);
    judge.gossip_detection = windows.gossip_detection.as_ref().map(|w| w.duration());
    for request in &obs.requests {
        verdict.checked += 1;
        counts.sent += 1;
        if request.ok() {
            counts.ok += 1;
            continue;
        }
        let cause = judge.cause(request);
        *counts.failed.entry(cause.key().to_string()).or_default() += 1;
        if let Cause::Unexcused { hosts, why } = cause {
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            verdict.fail(
                request.sent,
                &hosts,
                format!(
                    "request #{} from {} sent at {}: {}: {why}",
                    request.id,
                    request.client,
                    secs(request.sent),
                    outcome(request)
                ),
            );
        }
    }
    (verdict, counts)
}

fn outcome(request: &RequestObservation) -> String {
    match (&request.status, &request.error) {
        (Some(200), _) => "200 from no webapp".into(),
        (Some(status), _) => format!("status {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".into(),
    }
}

impl<'a> Judge<'a> {
    fn new(
        obs: &'a Observations,
        detection: Duration,
        admission: Duration,
        sync_wait: Option<Duration>,
    ) -> Self {
        let balancer = obs.balancer.as_str();
        // One set of change points for every span below: computing it sorts every interval.
        let points = obs.change_points();
        let spans = |holds: &dyn Fn(Duration) -> bool| obs.spans_over(points, holds);
        let bad = obs.webapps.iter().map(|w| (w.clone(), spans(&|t| !obs.is_reachable(w, t)))).collect();
        let tells = |t| super::gossip_can_tell(obs, sync_wait, t);
        let admissible = |w: &str, t| obs.is_reachable(w, t) && !obs.agent_held(w, t);
        let good = obs.webapps.iter().map(|w| (w.clone(), spans(&|t| admissible(w, t)))).collect();
        let world_ended = |at: Duration| {
            let before = at.saturating_sub(Duration::from_micros(1));
            !obs.is_up(balancer, before) || obs.agent_held(balancer, before)
        };
        let agent_restarts = obs.supervision.get(balancer).into_iter().flatten().filter_map(|(at, entry)| {
            let started = matches!(entry, Supervision::Started(service) if service == "serf");
            (started && world_ended(*at)).then_some(*at)
        });
        let agent_restarts = agent_restarts.collect();
        let down = |t| !obs.is_up(balancer, t) || obs.stopped_by_fault(balancer, BALANCER_SERVICE, t);
        let blocked = obs
            .clients
            .iter()
            .map(|c| (c.clone(), spans(&|t| down(t) || obs.is_cut(c, balancer, t))))
            .collect();
        // Gossip's D counts while the balancer's agent can tell its renderer (as `detect`'s
        // clock): `lost_to_gossip` measures these spans on `tells`.
        let lost = obs.webapps.iter().map(|w| (w.clone(), spans(&|t| obs.is_lost(w, t)))).collect();
        let tells_spans = spans(&tells);
        Judge {
            obs,
            detection,
            admission,
            gossip_detection: None,
            lost,
            bad,
            good,
            tells: tells_spans,
            agent_restarts,
            blocked,
        }
    }

    /// Judges a failed request by the state of the world when it was sent; a later break of
    /// the client's path or of a server that was fine when it was sent also excuses it.
    fn cause(&self, request: &RequestObservation) -> Cause {
        let blocked = self.blocked.get(&request.client);
        // Sent while the client could not reach the balancer: excused, unless its SYN, sent
        // again on TCP's schedule, got through once the path was back and the balancer
        // handled it before the client gave up. That one is judged from when the path came
        // back, the soonest it can have arrived; the block still excuses a failure the
        // server's state does not explain (the client's time ran out in the block).
        let sent = match blocked.and_then(|b| b.until(request.sent)) {
            Some(back) if !request.reached_balancer || request.done < back => {
                return Cause::BalancerUnreachable;
            }
            Some(back) => back,
            None => request.sent,
        };
        let done = request.done;
        // Handled after a block: only its server's state, or the lack of one, can excuse it.
        let after_block = sent != request.sent;
        let admitted = self.admitted(sent);
        if admitted.is_empty() {
            return Cause::NoneAdmitted;
        }
        let broke_later = blocked.is_some_and(|b| b.meets(request.sent, done));
        match &request.routed_to {
            Some(server) => self.server_cause(server, sent, done, broke_later),
            None if broke_later && !after_block => Cause::BalancerUnreachable,
            None => {
                let what = if request.reached_balancer {
                    "the balancer had no server for it"
                } else {
                    "the balancer never answered it"
                };
                let list: Vec<String> =
                    admitted.iter().map(|(w, since)| format!("{w} since {}", secs(*since))).collect();
                Cause::Unexcused {
                    hosts: admitted.into_iter().map(|(w, _)| w).collect(),
                    why: format!(
                        "{what}, while up and reachable: {} (A = {})",
                        list.join(", "),
                        secs(self.admission)
                    ),
                }
            }
        }
    }

    /// The webapps that had been up and reachable for at least A at `at`, counted while the
    /// balancer's agent could tell its renderer, since its current run started; and since
    /// when. A hold of the agent or the renderer pauses the count: they keep what they knew,
    /// and so does the balancer's configuration.
    fn admitted(&self, at: Duration) -> Vec<(String, Duration)> {
        let run_start = self.agent_restarts.iter().rev().find(|start| **start <= at).copied();
        self.good
            .iter()
            .filter_map(|(webapp, good)| {
                let since = good.since(at)?.max(run_start.unwrap_or_default());
                (self.tells.within(since, at) >= self.admission).then(|| (webapp.clone(), since))
            })
            .collect()
    }

    fn server_cause(&self, server: &str, sent: Duration, done: Duration, broke_later: bool) -> Cause {
        let Some(bad) = self.bad.get(server) else {
            let why = format!("sent to {server}, which is no webapp of this world");
            return Cause::Unexcused { hosts: vec![server.into()], why };
        };
        if let Some(cause) = self.lost_to_gossip(server, sent) {
            return cause;
        }
        // Without health checks D is gossip's (and no separate gossip D is kept): it runs on
        // gossip's clock, since a held agent or renderer cannot drop the server.
        let gossip_d = self.gossip_detection.is_none();
        let waited = |since: Duration| if gossip_d { self.tells.within(since, sent) } else { sent - since };
        match bad.since(sent) {
            Some(since) if waited(since) < self.detection => Cause::ServerLost,
            Some(since) => Cause::Unexcused {
                hosts: vec![server.into()],
                why: format!(
                    "sent to {server}, {} from {} since {} ({} before, D = {})",
                    self.why_bad(server, sent),
                    self.obs.balancer,
                    secs(since),
                    secs(sent - since),
                    secs(self.detection)
                ),
            },
            None if bad.meets(sent, done) => Cause::ServerLost,
            None if broke_later => Cause::BalancerUnreachable,
            None => Cause::Unexcused {
                hosts: vec![server.into()],
                why: format!(
                    "sent to {server}, which was up and reachable from {} throughout",
                    self.obs.balancer
                ),
            },
        }
    }

    /// A server gossip must have dropped: down or isolated for at least gossip's D, however
    /// slow the health checks are.
    fn lost_to_gossip(&self, server: &str, sent: Duration) -> Option<Cause> {
        let gossip_detection = self.gossip_detection?;
        let since = self.lost.get(server)?.since(sent)?;
        (self.tells.within(since, sent) >= gossip_detection).then(|| Cause::Unexcused {
            hosts: vec![server.into()],
            why: format!(
                "sent to {server}, down or isolated from {} since {} ({} before, gossip's D = {})",
                self.obs.balancer,
                secs(since),
                secs(sent - since),
                secs(gossip_detection)
            ),
        })
    }

    fn why_bad(&self, server: &str, at: Duration) -> &'static str {
        let obs = self.obs;
        if !obs.is_up(server, at) {
            "host down"
        } else if !obs.webapp_runs(server, at) {
            "webapp down"
        } else if !obs.is_up(&obs.balancer, at) {
            "balancer down"
        } else {
            "unreachable"
        }
    }
}
