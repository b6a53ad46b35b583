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

/// Most values of each kind one interner keeps: past it, values no table uses any more are
/// forgotten, and while it stays full new ones are used unshared (still correct, only not
/// deduplicated), so a peer sending made-up names cannot grow it without bound.
pub const INTERNED_MAX: usize = 1 << 18;

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

    /// The shared copy of `name`.
    pub fn name(&self, name: &str) -> Name {
        let mut tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tables.names.values.get(name) {
            Some(known) => known.clone(),
            None => tables.names.shared(Name::from(name)),
        }
    }
}

/// One kind of shared value. A hash set: it is only looked up, never walked in order (the
/// sweep keeps what is in use, whatever the order), and a fixed hasher keeps it the same
/// from run to run.
struct Table<T: ?Sized> {
    values: HashSet<Arc<T>, super::table::Fixed>,
    /// Values to hand out unshared before trying to forget unused ones again: a table full
    /// of values in use would otherwise be scanned at every new value.
    unshared_until_sweep: usize,
}

impl<T: ?Sized> Default for Table<T> {
    fn default() -> Self {
        Self { values: HashSet::default(), unshared_until_sweep: 0 }
    }
}

impl<T: Hash + Eq + ?Sized> Table<T> {
    /// The copy of `value` the table holds, adding it while there is room.
    fn shared(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(known) = self.values.get(&*value) {
            return known.clone();
        }
        if self.values.len() >= INTERNED_MAX {
            if self.unshared_until_sweep > 0 {
                self.unshared_until_sweep -= 1;
                return value;
            }
            // Only the table holds these: nothing shares them any more.
            self.values.retain(|known| Arc::strong_count(known) > 1);
            if self.values.len() >= INTERNED_MAX - INTERNED_MAX / 4 {
                self.unshared_until_sweep = INTERNED_MAX / 4;
            }
            if self.values.len() >= INTERNED_MAX {
                return value;
            }
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
    fn a_full_table_forgets_unused_values_and_hands_out_the_rest_unshared() {
        let mut table = Table::<str>::default();
        let kept: Vec<Name> = (0..INTERNED_MAX).map(|i| table.shared(Name::from(format!("n{i}")))).collect();
        // Every value is in use: the new one is returned unshared and the table does not grow.
        let late = table.shared(Name::from("late"));
        assert_eq!(&*late, "late");
        assert_eq!(table.values.len(), INTERNED_MAX);
        assert!(!table.values.contains("late"));
        // Once most are no longer used, the next sweep forgets them and sharing resumes.
        drop(kept);
        table.unshared_until_sweep = 0;
        let again = table.shared(Name::from("again"));
        assert!(Arc::ptr_eq(&again, &table.shared(Name::from("again"))));
        assert_eq!(table.values.len(), 1);
    }
}
