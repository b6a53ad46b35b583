//! Cut links as groups: "every link from a host of `from` to a host of `to`".
//!
//! A partition of 10,000 hosts into halves cuts 50 million directed links. Listed one by one
//! they would fill the trace and the memory of both the engine and the oracle, so links are
//! kept, recorded and read as groups: the engine ([`ActiveCuts`]) resolves overlapping
//! partitions into the groups of links whose state really changed, the trace records those
//! groups, and the oracle ([`LinkTimeline`]) answers "is this link cut" and "which hosts can
//! gossip together" from the records alone, by classes of hosts that every record treats
//! alike.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every directed link from a host of `from` to a host of `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkGroup {
    pub from: Vec<String>,
    pub to: Vec<String>,
}

impl LinkGroup {
    /// The directed links of the group, one by one (for engines that cut links singly).
    pub fn links(&self) -> impl Iterator<Item = (&str, &str)> {
        self.from.iter().flat_map(|from| self.to.iter().map(move |to| (from.as_str(), to.as_str())))
    }
}

/// One partition direction in force: every link from `from` to `to` is cut.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DirectedCut {
    from: BTreeSet<String>,
    to: BTreeSet<String>,
}

/// The partitions in force in an engine. Overlapping partitions must not undo each other: a
/// link stays cut while any partition covers it.
#[derive(Clone, Debug, Default)]
pub struct ActiveCuts {
    cuts: Vec<DirectedCut>,
}

impl ActiveCuts {
    /// Starts (`cut`) or ends a partition between `a` and `b` (from `a` to `b` only if
    /// `oneway`); returns the groups of links whose state changed.
    pub fn partition(&mut self, a: &[String], b: &[String], oneway: bool, cut: bool) -> Vec<LinkGroup> {
        let forward = DirectedCut { from: a.iter().cloned().collect(), to: b.iter().cloned().collect() };
        let mut directions = vec![forward];
        if !oneway {
            directions
                .push(DirectedCut { from: b.iter().cloned().collect(), to: a.iter().cloned().collect() });
        }
        let mut changed = Vec::new();
        for group in directions {
            if cut {
                changed.extend(self.uncovered(&group));
                self.cuts.push(group);
            } else if let Some(index) = self.cuts.iter().position(|c| *c == group) {
                self.cuts.remove(index);
                changed.extend(self.uncovered(&group));
            }
        }
        changed
    }

    /// Every directed cut in force, as groups (they may overlap).
    pub fn groups(&self) -> impl Iterator<Item = (&BTreeSet<String>, &BTreeSet<String>)> {
        self.cuts.iter().map(|cut| (&cut.from, &cut.to))
    }

    /// The links of `group` that no cut in force covers, grouped by sender, then senders
    /// with the same receivers together.
    fn uncovered(&self, group: &DirectedCut) -> Vec<LinkGroup> {
        let overlapping: Vec<&DirectedCut> = self
            .cuts
            .iter()
            .filter(|c| !c.from.is_disjoint(&group.from) && !c.to.is_disjoint(&group.to))
            .collect();
        if overlapping.is_empty() {
            let (from, to) = (group.from.iter().cloned().collect(), group.to.iter().cloned().collect());
            return vec![LinkGroup { from, to }];
        }
        let mut by_receivers: BTreeMap<Vec<&String>, Vec<String>> = BTreeMap::new();
        for sender in &group.from {
            let covering: Vec<&&DirectedCut> =
                overlapping.iter().filter(|c| c.from.contains(sender)).collect();
            let receivers: Vec<&String> =
                group.to.iter().filter(|to| !covering.iter().any(|c| c.to.contains(*to))).collect();
            if !receivers.is_empty() {
                by_receivers.entry(receivers).or_default().push(sender.clone());
            }
        }
        let groups = by_receivers.into_iter();
        groups.map(|(to, from)| LinkGroup { from, to: to.into_iter().cloned().collect() }).collect()
    }
}

/// One recorded change: the links of a group were cut (`+1`) or repaired (`-1`).
#[derive(Clone, Debug)]
struct LinkChange {
    at: Duration,
    sign: i64,
    from: Vec<bool>,
    to: Vec<bool>,
    /// How many directed links the record changes.
    links: i64,
}

/// Cut links over a run, read from the trace's link records. The engines record only links
/// whose state changed, so a link is cut exactly when the cut records covering it outnumber
/// the repair records.
#[derive(Clone, Debug, Default)]
pub struct LinkTimeline {
    index: BTreeMap<String, usize>,
    changes: Vec<LinkChange>,
}

impl LinkTimeline {
    /// A timeline over `hosts` (every host of the run).
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a String>) -> Self {
        let index = hosts.into_iter().enumerate().map(|(i, name)| (name.clone(), i)).collect();
        Self { index, changes: Vec::new() }
    }

    /// Reads a link record; names of no host are ignored (the engine never records them).
    pub fn record(&mut self, at: Duration, cut: bool, from: &[String], to: &[String]) {
        let mask = |names: &[String]| {
            let mut mask = vec![false; self.index.len()];
            names.iter().filter_map(|n| self.index.get(n)).for_each(|i| mask[*i] = true);
            mask
        };
        let (from, to) = (mask(from), mask(to));
        let links = (from.iter().filter(|x| **x).count() * to.iter().filter(|x| **x).count()) as i64;
        self.changes.push(LinkChange { at, sign: if cut { 1 } else { -1 }, from, to, links });
    }

    /// The times at which some link changes.
    pub fn change_times(&self) -> impl Iterator<Item = Duration> + '_ {
        self.changes.iter().map(|change| change.at)
    }

    fn in_force(&self, at: Duration) -> &[LinkChange] {
        &self.changes[..self.changes.partition_point(|change| change.at <= at)]
    }

    /// Whether packets from `from` to `to` are lost at `at`.
    pub fn is_cut(&self, from: &str, to: &str, at: Duration) -> bool {
        let (Some(&f), Some(&t)) = (self.index.get(from), self.index.get(to)) else { return false };
        self.in_force(at).iter().filter(|c| c.from[f] && c.to[t]).map(|c| c.sign).sum::<i64>() > 0
    }

    /// The spans during which at least one link is cut, as `(time, any cut after it)` steps.
    pub fn any_cut_steps(&self) -> Vec<(Duration, bool)> {
        let mut links = 0;
        let mut steps: Vec<(Duration, bool)> = Vec::new();
        for change in &self.changes {
            links += change.sign * change.links;
            match steps.last_mut() {
                Some(last) if last.0 == change.at => last.1 = links > 0,
                _ => steps.push((change.at, links > 0)),
            }
        }
        steps
    }

    /// Classes of hosts that every record in force at `at` treats alike (each host's class,
    /// by host index in the order given to [`LinkTimeline::new`]), and per pair of classes
    /// whether links from the first to the second are cut.
    pub fn classes_at(&self, at: Duration) -> HostClasses {
        let changes = self.in_force(at);
        let mut by_signature: BTreeMap<Vec<bool>, usize> = BTreeMap::new();
        let mut class_of = Vec::with_capacity(self.index.len());
        let mut members: Vec<usize> = Vec::new();
        for host in 0..self.index.len() {
            let signature: Vec<bool> = changes.iter().flat_map(|c| [c.from[host], c.to[host]]).collect();
            let next = by_signature.len();
            let class = *by_signature.entry(signature).or_insert(next);
            if class == members.len() {
                members.push(host);
            }
            class_of.push(class);
        }
        let count = members.len();
        let mut cut = vec![false; count * count];
        for (a, &x) in members.iter().enumerate() {
            for (b, &y) in members.iter().enumerate() {
                let net: i64 = changes.iter().filter(|c| c.from[x] && c.to[y]).map(|c| c.sign).sum();
                cut[a * count + b] = net > 0;
            }
        }
        HostClasses { class_of, count, cut }
    }

    /// The host index of `name`.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Hosts in classes of identical link state at one moment.
#[derive(Clone, Debug)]
pub struct HostClasses {
    /// Each host's class, by host index.
    pub class_of: Vec<usize>,
    count: usize,
    cut: Vec<bool>,
}

impl HostClasses {
    /// How many classes there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether links from class `a` to class `b` are cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut[a * self.count + b]
    }

    /// Whether links between classes `a` and `b` work both ways.
    pub fn linked(&self, a: usize, b: usize) -> bool {
        !self.is_cut(a, b) && !self.is_cut(b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_partition_is_one_group_each_way_and_an_overlap_is_not_undone() {
        let mut active = ActiveCuts::default();
        let changed = active.partition(&names(&["a", "b"]), &names(&["c"]), false, true);
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0], LinkGroup { from: names(&["a", "b"]), to: names(&["c"]) });
        // A second partition cutting a from c again changes only the new links.
        let changed = active.partition(&names(&["a"]), &names(&["c", "d"]), true, true);
        assert_eq!(changed, vec![LinkGroup { from: names(&["a"]), to: names(&["d"]) }]);
        // Ending the first keeps a -> c cut by the second.
        let changed = active.partition(&names(&["a", "b"]), &names(&["c"]), false, false);
        let links: BTreeSet<(String, String)> =
            changed.iter().flat_map(|g| g.links().map(|(f, t)| (f.to_string(), t.to_string()))).collect();
        let expected = [("b", "c"), ("c", "a"), ("c", "b")];
        assert_eq!(links, expected.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect());
    }

    #[test]
    fn the_timeline_answers_from_records_and_classes_join_equal_hosts() {
        let hosts = names(&["a", "b", "c", "d"]);
        let mut timeline = LinkTimeline::new(&hosts);
        let second = Duration::from_secs(1);
        timeline.record(second, true, &names(&["a", "b"]), &names(&["c", "d"]));
        timeline.record(second * 2, false, &names(&["b"]), &names(&["c"]));
        assert!(!timeline.is_cut("a", "c", Duration::ZERO));
        assert!(timeline.is_cut("a", "c", second));
        assert!(timeline.is_cut("b", "c", second) && !timeline.is_cut("b", "c", second * 2));
        assert!(!timeline.is_cut("c", "a", second));
        let classes = timeline.classes_at(second);
        assert_eq!(classes.count(), 2);
        assert_eq!(classes.class_of, vec![0, 0, 1, 1]);
        assert!(classes.is_cut(0, 1) && !classes.is_cut(1, 0) && !classes.linked(0, 1));
        assert_eq!(timeline.classes_at(second * 2).count(), 4);
        let steps = timeline.any_cut_steps();
        assert_eq!(steps, vec![(second, true), (second * 2, true)]);
    }
}
