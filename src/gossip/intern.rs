//! Shared names, tags, member states and encoded broadcasts: every member table holds one
//! entry per member and every broadcast queue thousands of broadcasts, so a simulation of
//! 10,000 nodes holds 100 million entries. Equal values share one allocation through an
//! interner that the agents of one process may share (the simulator's event engine gives all
//! of its agents one; a real agent has its own). Sharing changes memory only, never
//! behaviour: the values are immutable.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use super::broadcasts::News;
use super::codec::{Name, NodeState};

/// A table first forgets the values nothing else holds any more when it reaches this many...
const SWEEP_FIRST: usize = 1 << 12;
/// ...and afterwards when it holds this many times what its last sweep kept. So it holds at
/// most that many times what was in use at its last sweep, which the agents' own tables and
/// queues bound (a peer sending made-up names grows it only as far as it grows those), and
/// each sweep, over a table shrunk to its next sweep point, costs a constant share of the
/// insertions since the last. A fixed cap would not do: a halves partition of 3,000
/// simulated nodes puts 260,000 distinct suspicions and deaths (one per accuser) in use at
/// once, and every value past a cap would be a copy per agent.
const SWEEP_GROWTH: usize = 2;

/// A table of shared values; clones share the table.
#[derive(Clone, Default)]
pub struct Interner(Arc<Mutex<Tables>>);

#[derive(Default)]
struct Tables {
    names: Table<str>,
    tags: Table<std::collections::BTreeMap<String, String>>,
    states: Table<NodeState>,
    broadcasts: Table<News<Name>>,
}

impl Interner {
    /// `state` with its name and tags replaced by the shared copies.
    pub fn state(&self, mut state: NodeState) -> NodeState {
        let mut tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.name = tables.names.shared(state.name);
        state.tags = tables.tags.shared(state.tags);
        state
    }

    /// The shared copy of `state` (its name and tags shared too).
    pub fn shared_state(&self, state: NodeState) -> Arc<NodeState> {
        let state = Arc::new(self.state(state));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).states.shared(state)
    }

    /// The shared copy of a piece of news: an encoded broadcast about `subject`.
    pub fn news(&self, subject: Name, bytes: Vec<u8>) -> Arc<News<Name>> {
        let news = Arc::new(News { subject, message: bytes.into_boxed_slice() });
        self.0.lock().unwrap_or_else(PoisonError::into_inner).broadcasts.shared(news)
    }

    /// How many values the tables hold, the unused ones not yet swept included (a
    /// simulation's figures).
    pub fn counts(&self) -> InternedCounts {
        let tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        InternedCounts {
            names: tables.names.values.len(),
            tags: tables.tags.values.len(),
            states: tables.states.values.len(),
            news: tables.broadcasts.values.len(),
        }
    }

    /// The shared copy of `name`.
    pub fn name(&self, name: &str) -> Name {
        let mut tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tables.names.values.get(name) {
            Some(known) => known.clone(),
            None => tables.names.shared(Name::from(name)),
        }
    }
}

/// What an [`Interner`] holds ([`Interner::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InternedCounts {
    /// Names shared.
    pub names: usize,
    /// Tag sets shared.
    pub tags: usize,
    /// Member states shared.
    pub states: usize,
    /// Pieces of news shared.
    pub news: usize,
}

/// One kind of shared value. A hash set: it is only looked up, never walked in order (the
/// sweep keeps what is in use, whatever the order), and a fixed hasher keeps it the same
/// from run to run.
struct Table<T: ?Sized> {
    values: HashSet<Arc<T>, super::table::Fixed>,
    /// How many values the table may hold before it sweeps again.
    sweep_at: usize,
}

impl<T: ?Sized> Default for Table<T> {
    fn default() -> Self {
        Self { values: HashSet::default(), sweep_at: SWEEP_FIRST }
    }
}

impl<T: Hash + Eq + ?Sized> Table<T> {
    /// The copy of `value` the table holds, adding it if there is none.
    fn shared(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(known) = self.values.get(&*value) {
            return known.clone();
        }
        if self.values.len() >= self.sweep_at {
            // Only the table holds these: nothing shares them any more.
            self.values.retain(|known| Arc::strong_count(known) > 1);
            self.sweep_at = (self.values.len() * SWEEP_GROWTH).max(SWEEP_FIRST);
            // A storm's peak would otherwise stay allocated, and be scanned at every sweep.
            self.values.shrink_to(self.sweep_at);
        }
        self.values.insert(value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str) -> NodeState {
        let tags: std::collections::BTreeMap<String, String> = [("role".into(), "backend".into())].into();
        NodeState {
            name: name.into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            incarnation: 0,
            status: super::super::codec::Status::Alive,
            tags: Arc::new(tags),
        }
    }

    #[test]
    fn equal_values_share_one_allocation_across_clones_of_the_interner() {
        let interner = Interner::default();
        let (a, b) = (interner.state(state("s1")), interner.clone().state(state("s1")));
        assert!(Arc::ptr_eq(&a.name, &b.name) && Arc::ptr_eq(&a.tags, &b.tags));
        let other = interner.state(state("s2"));
        assert!(!Arc::ptr_eq(&a.name, &other.name) && Arc::ptr_eq(&a.tags, &other.tags));
        assert!(Arc::ptr_eq(&interner.name("s1"), &a.name));
        let (x, y) = (interner.shared_state(state("s1")), interner.clone().shared_state(state("s1")));
        assert!(Arc::ptr_eq(&x, &y) && Arc::ptr_eq(&x.name, &a.name));
        assert!(Arc::ptr_eq(
            &interner.news("s1".into(), vec![1, 2]),
            &interner.news("s1".into(), vec![1, 2])
        ));
        // The same bytes about another subject are other news: a queue replaces by subject.
        let other = interner.news("s2".into(), vec![1, 2]);
        assert!(!Arc::ptr_eq(&interner.news("s1".into(), vec![1, 2]), &other) && &*other.subject == "s2");
    }

    #[test]
    fn a_table_forgets_unused_values_when_it_has_doubled_and_shares_every_value() {
        let mut table = Table::<str>::default();
        let kept: Vec<Name> = (0..SWEEP_FIRST).map(|i| table.shared(Name::from(format!("n{i}")))).collect();
        // Every value is in use: the sweep keeps them all and lets the table double.
        let late = table.shared(Name::from("late"));
        assert!(Arc::ptr_eq(&late, &table.shared(Name::from("late"))));
        assert_eq!(table.values.len(), SWEEP_FIRST + 1);
        assert_eq!(table.sweep_at, SWEEP_FIRST * SWEEP_GROWTH);
        // Past the doubling, the values no longer in use are forgotten; sharing goes on.
        drop(kept);
        let more: Vec<Name> = (0..SWEEP_FIRST).map(|i| table.shared(Name::from(format!("m{i}")))).collect();
        assert_eq!(table.values.len(), SWEEP_FIRST + 1);
        assert!(more.iter().all(|name| Arc::ptr_eq(name, &table.shared(name.clone()))));
        assert!(table.values.contains("late") && !table.values.contains("n0"));
    }

    #[test]
    fn a_sweep_gives_back_the_room_a_storm_took() {
        let mut table = Table::<str>::default();
        let storm: Vec<Name> =
            (0..4 * SWEEP_FIRST).map(|i| table.shared(Name::from(format!("s{i}")))).collect();
        let peak = table.values.capacity();
        drop(storm);
        // The next insertion past the last sweep's doubling forgets the storm.
        let room = table.sweep_at + 1 - table.values.len();
        let calm: Vec<Name> = (0..room).map(|i| table.shared(Name::from(format!("c{i}")))).collect();
        assert_eq!(table.values.len(), calm.len());
        assert_eq!(table.sweep_at, SWEEP_FIRST);
        assert!(table.values.capacity() < peak / 2, "{} of {peak}", table.values.capacity());
    }
}
