//! `rollcall-sim report --html`: one self-contained HTML page per run, readable without a
//! server or a script: the verdicts, then an SVG timeline with a row per host (up or down,
//! gossip view, rendered and loaded backends, server health, request outcomes) under the
//! faults as bands. Hovering a segment shows its details (SVG `<title>`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::Run;
use crate::observe::Observations;
use crate::trace::{Entry, Trace};
use crate::world::World;
use rollcall::host::{Event, MemberStatus};

/// Width of the time axis, in SVG units.
const AXIS_WIDTH: f64 = 1000.0;
/// Width of the lane labels on the left.
const LABEL_WIDTH: f64 = 190.0;
/// Height of one lane.
const LANE_HEIGHT: f64 = 16.0;
/// Space between two hosts.
const HOST_GAP: f64 = 10.0;
/// How wide an instant fault (a service crash) is drawn.
const INSTANT_WIDTH: Duration = Duration::from_millis(200);
/// Most segments drawn in one lane (the rest are left out), so a long run stays small.
const SEGMENTS_MAX: usize = 2_000;

const GOOD: &str = "#4caf50";
const PARTIAL: &str = "#ffc107";
const BAD: &str = "#e53935";
const OFF: &str = "#bdbdbd";

/// The page for one run.
pub fn page(world: &World, run: &Run) -> String {
    let report = &run.report;
    let mut out = String::new();
    let title = format!("{} seed {}", escape(&report.scenario), report.seed);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rollcall: {title}</title>\n<style>{STYLE}</style></head><body>\n<h1>rollcall: {title}</h1>\n"
    );
    let outcome = if report.as_expected { "as expected" } else { "NOT as expected" };
    let _ = writeln!(
        out,
        "<p>{} &middot; commit {} &middot; {:.1} s simulated &middot; {} records &middot; trace {}<br>outcome: <b>{outcome}</b></p>",
        escape(&report.file),
        escape(&report.commit),
        report.duration_ms as f64 / 1000.0,
        report.records,
        &report.trace_hash[..16.min(report.trace_hash.len())]
    );
    for mismatch in &report.mismatches {
        let _ = writeln!(out, "<p class=\"bad\">{}</p>", escape(mismatch));
    }
    out.push_str(&verdicts_table(run));
    out.push_str(&faults_table(&run.observations));
    let _ = writeln!(out, "<p>replay: <code>{}</code></p>", escape(&report.replay));
    out.push_str(&timeline_svg(world, &run.observations, &run.trace));
    out.push_str(LEGEND);
    out.push_str("</body></html>\n");
    out
}

fn verdicts_table(run: &Run) -> String {
    let mut out = String::from(
        "<table><tr><th>invariant</th><th>verdict</th><th>checked</th><th>failed</th><th>first violation</th></tr>\n",
    );
    for verdict in &run.report.verdicts {
        let class = if verdict.is_contradicted() {
            "bad"
        } else if verdict.is_unchecked() {
            "off"
        } else {
            "good"
        };
        let first = verdict.violations.first().map(|v| escape(&v.what)).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{first}</td></tr>",
            escape(&verdict.name),
            verdict.verdict,
            verdict.checked,
            verdict.failed
        );
    }
    out.push_str("</table>\n");
    out
}

fn faults_table(obs: &Observations) -> String {
    if obs.faults.is_empty() {
        return "<p>No faults.</p>\n".into();
    }
    let mut out = String::from("<table><tr><th>fault</th><th>what</th><th>from</th><th>to</th></tr>\n");
    for fault in &obs.faults {
        let end = fault.end.map_or("-".into(), |e| format!("{:.3}s", e.as_secs_f64()));
        let _ = writeln!(
            out,
            "<tr><td>#{}</td><td>{}</td><td>{:.3}s</td><td>{end}</td></tr>",
            fault.id,
            escape(&fault.kind.to_string()),
            fault.start.as_secs_f64()
        );
    }
    out.push_str("</table>\n");
    out
}

/// A lane: a label and coloured segments `(from, to, colour, tooltip)`.
struct Lane {
    label: String,
    segments: Vec<(Duration, Duration, &'static str, String)>,
}

struct Chart {
    end: Duration,
    body: String,
    y: f64,
}

impl Chart {
    fn x(&self, at: Duration) -> f64 {
        LABEL_WIDTH + at.as_secs_f64() / self.end.as_secs_f64().max(1e-9) * AXIS_WIDTH
    }

    fn lane(&mut self, lane: &Lane) {
        let y = self.y;
        let _ = writeln!(
            self.body,
            "<text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
            LABEL_WIDTH - 6.0,
            y + 12.0,
            escape(&lane.label)
        );
        for (from, to, colour, tip) in lane.segments.iter().take(SEGMENTS_MAX) {
            let (x0, x1) = (self.x(*from), self.x(*to));
            let _ = writeln!(
                self.body,
                "<rect x=\"{x0:.2}\" y=\"{y}\" width=\"{:.2}\" height=\"{}\" fill=\"{colour}\"><title>{}</title></rect>",
                (x1 - x0).max(0.5),
                LANE_HEIGHT - 3.0,
                escape(tip)
            );
        }
        self.y += LANE_HEIGHT;
    }
}

fn timeline_svg(world: &World, obs: &Observations, trace: &Trace) -> String {
    let end = world.duration;
    let mut chart = Chart { end, body: String::new(), y: 30.0 };
    fault_bands(&mut chart, obs);
    for host in &world.hosts {
        let _ = writeln!(
            chart.body,
            "<text x=\"4\" y=\"{}\" class=\"host\">{} ({})</text>",
            chart.y + 12.0,
            escape(&host.name),
            host.role()
        );
        chart.y += LANE_HEIGHT;
        for lane in host_lanes(&host.name, host.is_balancer(), obs, trace, end) {
            chart.lane(&lane);
        }
        chart.y += HOST_GAP;
    }
    let height = chart.y + 20.0;
    let mut axis = String::new();
    let step = axis_step(end);
    let mut at = Duration::ZERO;
    while at <= end {
        let x = chart.x(at);
        let _ = writeln!(
            axis,
            "<line x1=\"{x:.1}\" y1=\"20\" x2=\"{x:.1}\" y2=\"{height}\" class=\"grid\"/><text x=\"{x:.1}\" y=\"14\" class=\"tick\">{}s</text>",
            at.as_secs()
        );
        at += step;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">\n{axis}{}</svg>\n",
        LABEL_WIDTH + AXIS_WIDTH + 20.0,
        LABEL_WIDTH + AXIS_WIDTH + 20.0,
        chart.body
    )
}

fn axis_step(end: Duration) -> Duration {
    let secs = end.as_secs().max(1);
    Duration::from_secs(
        [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600]
            .into_iter()
            .find(|s| secs / s <= 20)
            .unwrap_or(3600),
    )
}

/// Every fault as a translucent band over the whole chart, and a labelled bar on top.
fn fault_bands(chart: &mut Chart, obs: &Observations) {
    let top = chart.y;
    let rows = obs.faults.len() as f64;
    let bottom_guess = top + rows * LANE_HEIGHT;
    for (row, fault) in obs.faults.iter().enumerate() {
        // An instant gets a mark; a fault never undone lasts to the end.
        let open_end = if fault.kind.is_instant() { fault.start + INSTANT_WIDTH } else { chart.end };
        let end = fault.end.unwrap_or(open_end).min(chart.end);
        let (x0, x1) = (chart.x(fault.start), chart.x(end));
        let y = top + row as f64 * LANE_HEIGHT;
        let label = format!("#{} {}", fault.id, fault.kind);
        let _ = writeln!(
            chart.body,
            "<rect x=\"{x0:.2}\" y=\"{y}\" width=\"{:.2}\" height=\"{}\" class=\"fault\"><title>{} from {:.3}s to {}</title></rect><text x=\"{:.2}\" y=\"{}\" class=\"faultlabel\">{}</text>",
            (x1 - x0).max(1.0),
            LANE_HEIGHT - 3.0,
            escape(&label),
            fault.start.as_secs_f64(),
            fault.end.map_or("the end (or an instant)".into(), |e| format!("{:.3}s", e.as_secs_f64())),
            x0 + 2.0,
            y + 11.0,
            escape(&label)
        );
        let _ = writeln!(
            chart.body,
            "<rect x=\"{x0:.2}\" y=\"{bottom_guess}\" width=\"{:.2}\" height=\"100%\" class=\"band\"/>",
            (x1 - x0).max(1.0)
        );
    }
    chart.y = bottom_guess + 6.0;
}

fn host_lanes(name: &str, balancer: bool, obs: &Observations, trace: &Trace, end: Duration) -> Vec<Lane> {
    let mut lanes = vec![up_lane(name, obs, end)];
    if obs.views.contains_key(name) {
        lanes.push(view_lane(name, obs, end));
    }
    if balancer {
        lanes.push(set_lane("rendered backends", obs.rendered.changes(), end));
        lanes.push(set_lane("loaded servers", obs.loaded.changes(), end));
        lanes.extend(health_lanes(name, trace, end));
    }
    if let Some(lane) = request_lane(name, obs) {
        lanes.push(lane);
    }
    lanes
}

fn up_lane(name: &str, obs: &Observations, end: Duration) -> Lane {
    let mut segments = Vec::new();
    let mut last = Duration::ZERO;
    for (from, to) in obs.host_up.get(name).map_or(&[][..], |i| i.0.as_slice()) {
        if *from > last {
            segments.push((last, *from, OFF, "down".to_string()));
        }
        segments.push((
            *from,
            (*to).min(end),
            GOOD,
            format!("up from {:.3}s to {:.3}s", from.as_secs_f64(), to.min(&end).as_secs_f64()),
        ));
        last = *to;
    }
    if last < end {
        segments.push((last, end, OFF, "down".to_string()));
    }
    Lane { label: "host".into(), segments }
}

/// The gossip view: green when every member it lists is alive, amber with a suspect, red
/// with a dead or left member; the tooltip lists it.
fn view_lane(name: &str, obs: &Observations, end: Duration) -> Lane {
    let changes = obs.views.get(name).map_or(&[][..], Vec::as_slice);
    let mut view: BTreeMap<String, (MemberStatus, u32)> = BTreeMap::new();
    let mut points: Vec<(Duration, &'static str, String)> = Vec::new();
    let mut i = 0;
    while i < changes.len() {
        let at = changes[i].0;
        while changes.get(i).is_some_and(|(t, _)| *t == at) {
            changes[i].1.apply(&mut view);
            i += 1;
        }
        let worst = view.values().map(|(s, _)| *s).max_by_key(|s| match s {
            MemberStatus::Alive => 0,
            MemberStatus::Suspect => 1,
            MemberStatus::Dead | MemberStatus::Left => 2,
        });
        let colour = match worst {
            None => OFF,
            Some(MemberStatus::Alive) => GOOD,
            Some(MemberStatus::Suspect) => PARTIAL,
            Some(_) => BAD,
        };
        let listed: Vec<String> = view.iter().map(|(m, (s, inc))| format!("{m} {s:?} #{inc}")).collect();
        points.push((at, colour, format!("view at {:.3}s: {}", at.as_secs_f64(), listed.join(", "))));
    }
    // While the agent does not run (stopped, left, stalled, its host down) its last view
    // means nothing: grey.
    let runs = obs.service(name, "serf");
    let segments = steps(points, end)
        .into_iter()
        .flat_map(|(from, to, colour, tip)| {
            let mut pieces = Vec::new();
            let mut at = from;
            for (run_from, run_to) in runs.0.iter().filter(|(a, b)| *a < to && *b > from) {
                if *run_from > at {
                    pieces.push((at, *run_from, OFF, "agent not running".to_string()));
                }
                pieces.push(((*run_from).max(at), (*run_to).min(to), colour, tip.clone()));
                at = (*run_to).min(to);
            }
            if at < to {
                pieces.push((at, to, OFF, "agent not running".to_string()));
            }
            pieces
        })
        .collect();
    Lane { label: "gossip view".into(), segments }
}

fn set_lane(label: &str, changes: &[(Duration, std::collections::BTreeSet<String>)], end: Duration) -> Lane {
    let points = changes
        .iter()
        .map(|(at, set)| {
            let colour = if set.is_empty() { BAD } else { GOOD };
            let names: Vec<&str> = set.iter().map(String::as_str).collect();
            (*at, colour, format!("{label} at {:.3}s: [{}]", at.as_secs_f64(), names.join(", ")))
        })
        .collect();
    Lane { label: label.into(), segments: steps(points, end) }
}

/// One lane per server the balancer's health checks judged.
fn health_lanes(balancer: &str, trace: &Trace, end: Duration) -> Vec<Lane> {
    let mut points: BTreeMap<String, Vec<(Duration, &'static str, String)>> = BTreeMap::new();
    for record in trace.records.iter().filter(|r| r.host == balancer) {
        if let Entry::Host(Event::ServerState { server, up, reason }) = &record.event {
            let state = if *up { "UP" } else { "DOWN" };
            points.entry(server.clone()).or_default().push((
                record.at(),
                if *up { GOOD } else { BAD },
                format!("{server} {state} at {:.3}s: {reason}", record.at().as_secs_f64()),
            ));
        }
    }
    points
        .into_iter()
        .map(|(server, points)| Lane { label: format!("health {server}"), segments: steps(points, end) })
        .collect()
}

/// A tick per request, by the time it was sent: green 200, amber another status, red failed.
fn request_lane(client: &str, obs: &Observations) -> Option<Lane> {
    let requests: Vec<_> = obs.requests.iter().filter(|r| r.client == client).collect();
    if requests.is_empty() {
        return None;
    }
    let segments = requests
        .iter()
        .map(|r| {
            let colour = match r.status {
                Some(200) => GOOD,
                Some(_) => PARTIAL,
                None => BAD,
            };
            let outcome = match (&r.status, &r.error) {
                (Some(status), _) => format!("{status} from {}", r.served_by.as_deref().unwrap_or("-")),
                (None, error) => format!("failed: {}", error.as_deref().unwrap_or("-")),
            };
            (
                r.sent,
                r.done.max(r.sent + Duration::from_millis(20)),
                colour,
                format!("#{} at {:.3}s: {outcome}", r.id, r.sent.as_secs_f64()),
            )
        })
        .collect();
    Some(Lane { label: "requests".into(), segments })
}

/// Step segments from change points: each holds until the next.
fn steps(
    points: Vec<(Duration, &'static str, String)>,
    end: Duration,
) -> Vec<(Duration, Duration, &'static str, String)> {
    let mut segments = Vec::new();
    for (i, (at, colour, tip)) in points.iter().enumerate() {
        let next = points.get(i + 1).map_or(end, |(t, _, _)| *t);
        if next > *at {
            segments.push((*at, next, *colour, tip.clone()));
        }
    }
    segments
}

/// Text safe inside HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left}tr.bad td{background:#fdecea}tr.off td{color:#888}p.bad{color:#b71c1c}code{background:#f4f4f4;padding:2px}.label{font-size:11px;text-anchor:end}.host{font-size:13px;font-weight:bold}.tick{font-size:10px;text-anchor:middle;fill:#666}.grid{stroke:#eee}.fault{fill:#7e57c2;opacity:.8}.faultlabel{font-size:10px;fill:#fff}.band{fill:#7e57c2;opacity:.07}";

const LEGEND: &str = "<p>Legend: <span style=\"color:#4caf50\">&#9632;</span> up / all alive / 200 &nbsp; <span style=\"color:#ffc107\">&#9632;</span> a suspect / another status &nbsp; <span style=\"color:#e53935\">&#9632;</span> dead or left member / no backend / DOWN / failed request &nbsp; <span style=\"color:#bdbdbd\">&#9632;</span> down or empty &nbsp; <span style=\"color:#7e57c2\">&#9632;</span> fault. Hover for details.</p>\n";
