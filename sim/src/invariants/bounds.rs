//! The windows within which the stack cannot yet know better, derived from the configuration
//! it runs with, never tuned to make a run pass.
//!
//! - D, the detection window: how long a server that died or became unreachable can still get
//!   requests before the balancer stops sending them.
//! - A, the admission window: how long a webapp that came up (or became reachable) can be
//!   missing from the balancer before requests that find no server are the stack's fault.
//!
//! When the balancer's configuration (the template, rendered for this world's webapps and
//! parsed as the balancer parses it) checks its servers, both come from HAProxy's rules: D is
//! the time checks need to take a fully up server DOWN, A the time to bring a fully down one
//! UP (or for gossip to bring a new one in, if that is slower). Without checks both come
//! from gossip: D is the time the balancer's own agent needs to probe a member, time the
//! probe out, let the suspicion run out and have the renderer and the balancer act on it; A
//! is the time a webapp's agent needs to (re)join the balancer's, plus the same render and
//! reload.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::faults::FaultKind;
use crate::world::{HostKind, LINK_LATENCY_MAX, World};
use rollcall::balancer::health::CheckSettings;
use rollcall::gossip::lifeguard::{self, Suspicion};
use rollcall::gossip::{GossipConfig, JoinMode};
use rollcall::node::{Pipeline, Role};
use rollcall::render::driver::IN_PLACE_RENDER_TIME;
use rollcall::supervisor::core::RESTART_DELAY;

/// Time the stack's own tasks need to pass a change along (view -> renderer -> file ->
/// balancer): a handful of scheduler turns, each within one simulation tick.
pub(crate) const REACTION_TICKS: u32 = 10;

/// One term of a window's sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Term {
    /// What it stands for.
    pub what: String,
    /// Its length in milliseconds.
    pub ms: u64,
}

/// A derived window: its length and the terms it is the sum of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The sum, in milliseconds.
    pub ms: u64,
    /// Where it comes from.
    pub basis: String,
    /// The terms.
    pub terms: Vec<Term>,
}

impl Window {
    fn new(basis: &str, terms: Vec<(String, Duration)>) -> Self {
        // A template may ask for timers of any length: sums saturate rather than wrap.
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let terms: Vec<Term> = terms.into_iter().map(|(what, d)| Term { what, ms: millis(d) }).collect();
        let ms = terms.iter().fold(0u64, |sum, term| sum.saturating_add(term.ms));
        Window { ms, basis: basis.into(), terms }
    }

    /// The window as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.ms)
    }

    /// `7511 ms = 3000 ms (...) + ...`
    pub fn explain(&self) -> String {
        let terms: Vec<String> = self.terms.iter().map(|t| format!("{} ms {}", t.ms, t.what)).collect();
        format!("{} ms = {} ({})", self.ms, terms.join(" + "), self.basis)
    }
}

/// D and A for one world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Windows {
    /// D: detection.
    pub detection: Window,
    /// A: admission.
    pub admission: Window,
    /// With health checks, gossip's own D too: a webapp whose host is down or isolated from
    /// the balancer must be gone by then even if the checks are slower.
    pub gossip_detection: Option<Window>,
}

/// The gossip settings the balancer runs with, as the stack builds them.
pub(crate) fn balancer_gossip(world: &World) -> GossipConfig {
    let addr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let balancer = world.hosts.iter().find(|h| h.is_balancer());
    match balancer.map(|h| &h.kind) {
        Some(HostKind::Node(node)) => node.gossip.config("bounds", addr),
        _ => GossipConfig::lan("bounds", addr),
    }
}

/// The slowest join any webapp is configured for.
fn join_wait(world: &World) -> Duration {
    let joins = world.hosts.iter().filter(|h| h.is_webapp()).filter_map(|h| match &h.kind {
        HostKind::Node(node) => Some(match node.gossip.join {
            JoinMode::Retry { interval, .. } => interval,
            JoinMode::Once { timeout } => timeout,
        }),
        HostKind::Client(_) | HostKind::Attacker(_) => None,
    });
    joins.max().unwrap_or_default()
}

/// The most extra gossip latency the plan puts on one host's datagrams at any one time
/// (overlapping windows add up, as the engine applies them).
fn planned_extra_latency(world: &World) -> Duration {
    let windows: Vec<(&[String], Duration, Duration, Duration)> = world
        .faults
        .iter()
        .filter_map(|f| match &f.kind {
            FaultKind::Latency { hosts, extra } => {
                Some((hosts.as_slice(), f.at, f.lasting.map_or(Duration::MAX, |l| f.at + l), *extra))
            }
            _ => None,
        })
        .collect();
    // The sum is largest at the start of some window.
    let mut most = Duration::ZERO;
    for (hosts, at, _, _) in &windows {
        for host in *hosts {
            let covering =
                windows.iter().filter(|(h, start, end, _)| h.contains(host) && start <= at && at < end);
            most = most.max(covering.map(|(_, _, _, extra)| *extra).sum());
        }
    }
    most
}

/// The tags the balancer's agent saw each member carry during a run (see
/// [`crate::observe::Observations::balancer_tags`]).
pub type SeenTags = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// Derives D and A from the world's configuration, with the tags the webapps carried as the
/// balancer's agent saw them (`seen`).
pub fn windows(world: &World, seen: &SeenTags) -> Windows {
    let gossip = gossip_windows(world);
    let checked = loaded_checks(world, seen);
    if checked.is_empty() {
        return gossip;
    }
    // Each from the server that takes longest to go DOWN, and to come UP.
    let windows = checked.iter().map(|(settings, timeout)| check_windows(world, settings, *timeout));
    let (detection, admission) = windows.fold((None::<Window>, None::<Window>), |(d, a), (nd, na)| {
        (Some(longer(d, nd)), Some(longer(a, na)))
    });
    let (Some(detection), Some(admission)) = (detection, admission) else { return gossip };
    let admission = longer(Some(admission), gossip.admission);
    Windows { detection, admission, gossip_detection: Some(gossip.detection) }
}

/// The longer of two windows (the first, if `known` is none).
fn longer(known: Option<Window>, other: Window) -> Window {
    match known {
        Some(known) if known.ms >= other.ms => known,
        _ => other,
    }
}

/// How long gossip may take to bring a webapp into the balancer's rendered backends: A as
/// gossip alone gives it (health checks gate serving, not rendering), the floor of a
/// `converge` bound.
pub fn rendered_admission(world: &World) -> Window {
    gossip_windows(world).admission
}

/// The distinct check settings (with their check timeouts) of every server the balancer
/// would load in this world, as the run went: the template rendered for the world's
/// webapps at the addresses the engines give them (192.168.0.1 on, in file order), with
/// their configured tags, and with each other set of tags the balancer's agent saw one of
/// them carry (a `tags` change that reached it; one its agent refused never did). Empty if
/// no server is checked.
fn loaded_checks(world: &World, seen: &SeenTags) -> Vec<(CheckSettings, Duration)> {
    let Some(balancer) = world.hosts.iter().find(|h| h.is_balancer()) else { return Vec::new() };
    let HostKind::Node(node) = &balancer.kind else { return Vec::new() };
    let Role::Balancer { template_file, template_text, .. } = &node.role else { return Vec::new() };
    let Ok(renderer) = rollcall::render::Renderer::new(template_file, template_text) else {
        return Vec::new();
    };
    let mut found: Vec<(CheckSettings, Duration)> = Vec::new();
    for view in tag_states(world, seen) {
        let Ok(text) = renderer.render(&rollcall::render::Renderer::addresses(&view)) else { continue };
        let Ok(config) = rollcall::balancer::config::parse(template_file, &text) else { continue };
        for check in config.backend().servers.iter().filter_map(|server| server.check) {
            let checked = (check, config.check_timeout(&check));
            if !found.contains(&checked) {
                found.push(checked);
            }
        }
    }
    found
}

/// The webapps as the balancer's renderer may see them: with their configured tags, then
/// after each `tags` fault on one of them, in time order, where the balancer's agent saw the
/// member carry the result (a change its agent refused never reached it; tags only the world
/// set count, so neither a gossip bug nor a forger widens the windows).
fn tag_states(world: &World, seen: &SeenTags) -> Vec<Vec<rollcall::render::core::Member>> {
    let webapps = world.webapps();
    let mut view: Vec<rollcall::render::core::Member> = world
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, host)| webapps.contains(&host.name))
        .map(|(index, host)| {
            let mut tags = BTreeMap::new();
            if let HostKind::Node(node) = &host.kind {
                tags.extend(node.tags.clone());
                tags.insert("role".to_string(), node.role.tag().to_string());
            }
            rollcall::render::core::Member {
                name: host.name.clone(),
                addr: crate::world::host_address(index).into(),
                tags,
                live: true,
            }
        })
        .collect();
    let mut changes: Vec<_> =
        world.faults.iter().filter(|f| matches!(f.kind, FaultKind::Tags { .. })).collect();
    changes.sort_by_key(|fault| fault.at);
    let mut states = vec![view.clone()];
    for fault in changes {
        let FaultKind::Tags { host, set, delete } = &fault.kind else { continue };
        let Some(member) = view.iter_mut().find(|member| member.name == *host) else { continue };
        let mut tags = member.tags.clone();
        delete.iter().for_each(|key| {
            tags.remove(key);
        });
        tags.extend(set.clone());
        if seen.get(host).is_some_and(|sets| sets.contains(&tags)) {
            member.tags = tags;
            states.push(view.clone());
        }
    }
    states
}

fn check_windows(world: &World, checks: &CheckSettings, timeout: Duration) -> (Window, Window) {
    let reaction = world.tick * REACTION_TICKS;
    let basis = format!(
        "health checks: inter {} ms, fastinter {} ms, downinter {} ms, rise {}, fall {}, check timeout {} ms",
        checks.inter.as_millis(),
        checks.fastinter.as_millis(),
        checks.downinter.as_millis(),
        checks.rise,
        checks.fall,
        timeout.as_millis()
    );
    let (fall, rise) = (checks.fall, checks.rise);
    let detection = Window::new(
        &basis,
        vec![
            ("phase (one inter)".into(), checks.inter),
            (format!("{fall} failed checks, each up to the check timeout"), timeout.saturating_mul(fall)),
            (format!("{} fastinter between them", fall - 1), checks.fastinter.saturating_mul(fall - 1)),
            (format!("reload ({REACTION_TICKS} ticks)"), reaction),
        ]
        .into_iter()
        // Health checks take a server out without the renderer: only the lab's reloads,
        // which restart the balancer and its checks, add the pipeline's terms.
        .chain(pipeline_terms(world, true).into_iter().filter(|_| world.pipeline() == Pipeline::Lab))
        .collect(),
    );
    let admission = Window::new(
        &basis,
        vec![
            ("phase (one downinter)".into(), checks.downinter),
            (format!("{rise} passed checks, each up to the check timeout"), timeout.saturating_mul(rise)),
            (format!("{} fastinter between them", rise - 1), checks.fastinter.saturating_mul(rise - 1)),
            (format!("reload ({REACTION_TICKS} ticks)"), reaction),
        ]
        .into_iter()
        .chain(pipeline_terms(world, true))
        .collect(),
    );
    (detection, admission)
}

/// What the balancer's pipeline adds between a view change and the file (and, with
/// `reload`, the running balancer): the render wait at its longest (consul-template's `wait`
/// max), and under the lab's pipeline its in-place write and the run script's restart.
fn pipeline_terms(world: &World, reload: bool) -> Vec<(String, Duration)> {
    let Some(balancer) = world.hosts.iter().find(|h| h.is_balancer()) else { return Vec::new() };
    let HostKind::Node(node) = &balancer.kind else { return Vec::new() };
    let Role::Balancer { options, pipeline, .. } = &node.role else { return Vec::new() };
    let mut terms = Vec::new();
    let max = options.wait.max.max(options.wait.min);
    if !max.is_zero() {
        terms.push(("render wait (its max)".to_string(), max));
    }
    if *pipeline == Pipeline::Lab {
        // A change that comes while a write is under way waits for it, then has its own.
        let writes = "lab: handlebars-cmd writes in place (one under way, then this one)";
        terms.push((writes.to_string(), IN_PLACE_RENDER_TIME * 2));
        if reload {
            terms.push(("lab: s6 restarts the killed run script".to_string(), RESTART_DELAY));
        }
    }
    terms
}

/// The bound of `rendered-view`: the pipeline's terms and the reaction time.
pub fn render_settle(world: &World) -> Window {
    let reaction = world.tick * REACTION_TICKS;
    let mut terms = pipeline_terms(world, false);
    terms.push((format!("render ({REACTION_TICKS} ticks)"), reaction));
    Window::new("the renderer: its quiescence wait, then one render", terms)
}

/// The bound of `one-balancer`: a reload's hand-over, one reaction time.
pub fn handover(world: &World) -> Window {
    let reaction = world.tick * REACTION_TICKS;
    Window::new("a reload's hand-over", vec![(format!("hand-over ({REACTION_TICKS} ticks)"), reaction)])
}

/// D and A from gossip, for a balancer without health checks.
fn gossip_windows(world: &World) -> Windows {
    let gossip = balancer_gossip(world);
    let Detection { nodes, peers, probe_gap, suspicion } = Detection::of(world, &gossip);
    let round_trip = (LINK_LATENCY_MAX + planned_extra_latency(world)) * 2;
    let reaction = world.tick * REACTION_TICKS;
    let wait = pipeline_terms(world, true);
    let mut detection_terms = vec![
        (format!("probe gap ((2 x {peers} - 1) probe intervals)"), probe_gap),
        ("probe round (direct ping, then ping-reqs to the interval's end)".into(), gossip.probe_interval),
        (suspicion_term(&gossip, nodes), suspicion),
        ("datagram round trip".into(), round_trip),
    ];
    detection_terms.extend(wait.clone());
    detection_terms.push((format!("render and reload ({REACTION_TICKS} ticks)"), reaction));
    let detection =
        Window::new("no health checks: gossip detection by the balancer's agent", detection_terms);
    let rejoin = join_wait(world).max(gossip.reconnect_interval);
    let mut admission_terms = vec![
        ("max(join retry or timeout, reconnect interval)".into(), rejoin),
        ("push-pull round trip".into(), round_trip),
    ];
    admission_terms.extend(wait);
    admission_terms.push((format!("render and reload ({REACTION_TICKS} ticks)"), reaction));
    let admission =
        Window::new("no health checks: gossip join, or reconnect after a failure", admission_terms);
    Windows { detection, admission, gossip_detection: None }
}

/// The bound of the `views` invariant: a push-pull interval (every agent has exchanged full
/// state at least once), or in a cluster so large that it is longer, the probe gap and
/// timeout (every dead member has been probed), plus a suspicion timeout (every suspicion
/// has run out).
pub fn views_settle(world: &World) -> Window {
    let gossip = balancer_gossip(world);
    let detection = Detection::of(world, &gossip);
    let push_pull = gossip.push_pull_every(detection.nodes);
    let first = if detection.probe_gap + gossip.probe_interval > push_pull {
        (
            "probe gap and round (longer than the push-pull interval)".to_string(),
            detection.probe_gap + gossip.probe_interval,
        )
    } else {
        ("push-pull interval (scaled with the cluster above 32 nodes)".to_string(), push_pull)
    };
    Window::new(
        "gossip: every agent has pushed and pulled full state and stale suspicions ran out",
        vec![first, ("suspicion timeout".into(), detection.suspicion)],
    )
}

/// The parts of gossip failure detection that depend on the cluster's size.
struct Detection {
    nodes: usize,
    peers: u32,
    probe_gap: Duration,
    suspicion: Duration,
}

impl Detection {
    fn of(world: &World, gossip: &GossipConfig) -> Self {
        let nodes = world.hosts.iter().filter(|h| h.is_webapp() || h.is_balancer()).count().max(1);
        let peers = (nodes - 1).max(1) as u32;
        // Shuffled round robin, reshuffled every pass: a member probed first in one pass and
        // last in the next waits 2 x peers - 1 intervals.
        let probe_gap = gossip.probe_interval * (2 * peers - 1);
        // The worst case is a suspicion nobody confirms (Lifeguard's longest).
        let suspicion = lone_suspicion(gossip, nodes).timeout();
        Detection { nodes, peers, probe_gap, suspicion }
    }
}

/// A suspicion with one accuser in a cluster of `nodes`, as the agent would start it.
fn lone_suspicion(gossip: &GossipConfig, nodes: usize) -> Suspicion {
    let (mult, max_mult) = (gossip.suspicion_mult, gossip.suspicion_max_timeout_mult);
    let min = lifeguard::suspicion_min(nodes, mult, gossip.probe_interval);
    Suspicion::new(Duration::ZERO, "accuser", nodes, mult, min, max_mult)
}

fn suspicion_term(gossip: &GossipConfig, nodes: usize) -> String {
    let min = format!("{} x max(1, log10 {nodes}) probe intervals", gossip.suspicion_mult);
    if lone_suspicion(gossip, nodes).timeout()
        > lifeguard::suspicion_min(nodes, gossip.suspicion_mult, gossip.probe_interval)
    {
        format!("suspicion, unconfirmed ({} x {min})", gossip.suspicion_max_timeout_mult)
    } else {
        format!("suspicion ({min}; too few nodes to confirm it)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> World {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lab.toml");
        crate::scenario::load(&path).expect("lab loads")
    }

    /// A template may ask for any timer the parser takes (up to 2^64 - 1 ms) and a `fall`
    /// of 1,000: the windows saturate instead of overflowing (a panic in `Duration`'s
    /// multiplication, or a wrapped sum).
    #[test]
    fn windows_of_huge_check_timers_saturate() {
        let huge = Duration::from_millis(u64::MAX);
        let checks = CheckSettings { inter: huge, fastinter: huge, downinter: huge, rise: 1000, fall: 1000 };
        let (detection, admission) = check_windows(&lab(), &checks, huge);
        assert_eq!((detection.ms, admission.ms), (u64::MAX, u64::MAX));
    }

    /// The lab without `check` on its servers: gossip bounds.
    fn lab_without_checks() -> World {
        let mut world = lab();
        for host in &mut world.hosts {
            if let HostKind::Node(node) = &mut host.kind {
                if let Role::Balancer { template_text, .. } = &mut node.role {
                    *template_text = template_text.replace(":3000 check", ":3000");
                }
            }
        }
        world
    }

    #[test]
    fn with_checks_d_and_a_follow_haproxys_rules() {
        let windows = windows(&lab(), &SeenTags::new());
        // inter 2 s, fall 3, rise 2, no `timeout check` (a check may take inter): D = one inter
        // of phase + 3 checks of up to 2 s + 2 x fastinter (= inter) + 10 ticks.
        assert_eq!(windows.detection.ms, 2_000 + 6_000 + 4_000 + 10, "{}", windows.detection.explain());
        assert!(windows.detection.basis.starts_with("health checks"), "{}", windows.detection.basis);
        // A = one downinter + 2 checks + 1 fastinter + 10 ticks (above gossip's 5020 ms).
        assert_eq!(windows.admission.ms, 2_000 + 4_000 + 2_000 + 10, "{}", windows.admission.explain());
    }

    #[test]
    fn detection_is_probe_gap_timeout_suspicion_round_trip_and_reaction() {
        let windows = windows(&lab_without_checks(), &SeenTags::new());
        // 3 nodes: 2 peers -> 3 probe intervals; a 1 s probe round; 4 x 1 s suspicion (too few
        // nodes to confirm it); 2 x 5 ms; 10 ticks of 1 ms.
        assert_eq!(windows.detection.ms, 3_000 + 1_000 + 4_000 + 10 + 10, "{}", windows.detection.explain());
        assert_eq!(windows.detection.terms.len(), 5);
    }

    #[test]
    fn admission_is_the_slower_of_join_and_reconnect() {
        let mut world = lab_without_checks();
        // retry-join every 2 s, reconnect every 5 s: reconnect bounds a rejoin after a failure.
        assert_eq!(windows(&world, &SeenTags::new()).admission.ms, 5_000 + 10 + 10);
        for host in &mut world.hosts {
            if let HostKind::Node(node) = &mut host.kind {
                node.gossip.join = JoinMode::Retry { interval: Duration::from_secs(9), max: 0 };
            }
        }
        assert_eq!(windows(&world, &SeenTags::new()).admission.ms, 9_000 + 10 + 10);
    }

    #[test]
    fn windows_grow_with_the_cluster_and_with_planned_latency() {
        let mut world = lab_without_checks();
        let before = windows(&world, &SeenTags::new()).detection.ms;
        let webapp = world.hosts.iter().find(|h| h.is_webapp()).unwrap().clone();
        for i in 0..20 {
            let mut extra = webapp.clone();
            extra.name = format!("x{i}");
            world.hosts.push(extra);
        }
        // 23 nodes: 43 probe intervals, a 1 s round, an unconfirmed suspicion of
        // 6 x 4 x log10(23) = 32.68 s.
        assert_eq!(windows(&world, &SeenTags::new()).detection.ms, 43_000 + 1_000 + 32_681 + 10 + 10);
        assert!(windows(&world, &SeenTags::new()).detection.ms > before);
        let latency = |at: u64, ms: u64, host: &str| crate::faults::FaultSpec {
            at: Duration::from_secs(at),
            lasting: Some(Duration::from_secs(10)),
            kind: FaultKind::Latency { hosts: vec![host.into()], extra: Duration::from_millis(ms) },
        };
        // Two windows on ha that overlap add up; one later, or on another host, does not.
        world.faults.extend([
            latency(0, 100, "ha"),
            latency(5, 40, "ha"),
            latency(20, 120, "ha"),
            latency(5, 130, "s1"),
        ]);
        assert_eq!(
            windows(&world, &SeenTags::new()).detection.ms,
            43_000 + 1_000 + 32_681 + 2 * (5 + 140) + 10
        );
    }
}
