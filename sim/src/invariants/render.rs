//! The renderer's promise, as consul-template makes it: once the balancer's gossip view has
//! been still for the render wait (its max) and the reaction time, the rendered backends are
//! exactly the live webapps of that view (`rendered-view`). It sees a renderer that drops
//! or keeps members, and a rendering that was rejected and left a stale file behind.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::host::MemberStatus;

use super::bounds::Window;
use super::{Verdict, secs};
use crate::observe::{Intervals, Observations};

/// Checks `rendered-view`.
pub fn rendered_view(obs: &Observations, bound: &Window, waits_for_sync: bool) -> Verdict {
    let balancer = &obs.balancer;
    let bound = bound.duration();
    let synced_clause = if waits_for_sync { " and synced" } else { "" };
    let rule = format!(
        "once {balancer}'s gossip view has been still{synced_clause} for {}, its rendered backends are the view's live webapps",
        secs(bound)
    );
    let mut verdict = Verdict::new("rendered-view", rule);
    let changes = obs.views.get(balancer).map_or(&[][..], Vec::as_slice);
    // A renderer that waits for its data keeps its file while the agent is not synced: its
    // input changes at a view change or a sync.
    let syncs = if waits_for_sync { obs.synced.get(balancer).map_or(&[][..], Vec::as_slice) } else { &[] };
    let renderer = obs.service(balancer, rollcall::node::RENDERER_SERVICE);
    // Looked up once per member per check: a list would make a 10,000-node run's checks
    // cost nodes squared each.
    let webapps: BTreeSet<&str> = obs.webapps.iter().map(String::as_str).collect();
    let mut view = BTreeMap::new();
    let (mut applied, mut synced_applied, mut synced) = (0, 0, false);
    while applied < changes.len() || synced_applied < syncs.len() {
        let at = match (changes.get(applied), syncs.get(synced_applied)) {
            (Some((v, _)), Some((s, _))) => (*v).min(*s),
            (Some((v, _)), None) => *v,
            (None, Some((s, _))) => *s,
            (None, None) => break,
        };
        // Every change at this instant, then the view as it stands.
        while changes.get(applied).is_some_and(|(t, _)| *t == at) {
            changes[applied].1.apply(&mut view);
            applied += 1;
        }
        while let Some((_, now_synced)) = syncs.get(synced_applied).filter(|(t, _)| *t == at) {
            synced = *now_synced;
            synced_applied += 1;
        }
        let next_view = changes.get(applied).map_or(obs.end, |(t, _)| *t);
        let next = syncs.get(synced_applied).map_or(next_view, |(t, _)| next_view.min(*t));
        if waits_for_sync && !synced {
            continue;
        }
        let due = at + bound;
        if due >= next || !runs_throughout(&renderer, at, due) {
            continue;
        }
        verdict.checked += 1;
        let expected = live_webapps(&view, &webapps);
        let rendered = obs.rendered.at(due);
        if *rendered != expected {
            report_mismatch(&mut verdict, balancer, (at, due), rendered, &expected);
        }
    }
    verdict
}

/// Whether the renderer runs at `from` and at `to` without a restart between: a restarted
/// renderer starts its wait again.
fn runs_throughout(renderer: &Intervals, from: Duration, to: Duration) -> bool {
    renderer.contains(from) && renderer.contains(to) && renderer.since(to) == renderer.since(from)
}

/// The webapps `view` lists as alive or suspect: what the renderer should have rendered.
fn live_webapps(view: &BTreeMap<String, (MemberStatus, u32)>, webapps: &BTreeSet<&str>) -> BTreeSet<String> {
    view.iter()
        .filter(|(name, (status, _))| {
            webapps.contains(name.as_str()) && matches!(status, MemberStatus::Alive | MemberStatus::Suspect)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Fails `verdict` at `due` for rendered backends that differ from the view still since `at`,
/// naming the webapps missing or extra.
fn report_mismatch(
    verdict: &mut Verdict,
    balancer: &str,
    (at, due): (Duration, Duration),
    rendered: &BTreeSet<String>,
    expected: &BTreeSet<String>,
) {
    let missing: Vec<&String> = expected.difference(rendered).collect();
    let extra: Vec<&String> = rendered.difference(expected).collect();
    let hosts: Vec<&str> = missing.iter().chain(&extra).map(|s| s.as_str()).collect();
    let what = format!(
        "at {} (view still since {}) {balancer} rendered {:?}: missing {missing:?}, extra {extra:?}",
        secs(due),
        secs(at),
        rendered
    );
    verdict.fail(due, &hosts, what);
}
