//! Shared names and tags: every member table holds one entry per member, so a simulation of
//! 10,000 nodes holds 100 million entries. Entries that name the same node share one
//! allocation of the name, and equal tag sets one allocation of the tags, through an
//! interner that the agents of one process may share (the simulator's event engine gives all
//! of its agents one; a real agent has its own).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::codec::{Name, NodeState, Tags};

/// Most names, and most tag sets, one interner keeps: past it, new ones are used unshared
/// (still correct, only not deduplicated), so a peer sending made-up names cannot grow it
/// without bound.
pub const INTERNED_MAX: usize = 65_536;

/// A table of shared names and tag sets; clones share the table.
#[derive(Clone, Default)]
pub struct Interner(Arc<Mutex<Tables>>);

#[derive(Default)]
struct Tables {
    names: BTreeSet<Name>,
    tags: BTreeSet<Tags>,
}

impl Interner {
    /// `state` with its name and tags replaced by the shared copies.
    pub fn state(&self, mut state: NodeState) -> NodeState {
        let mut tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.name = shared(&mut tables.names, state.name);
        state.tags = shared(&mut tables.tags, state.tags);
        state
    }

    /// The shared copy of `name`.
    pub fn name(&self, name: &str) -> Name {
        let mut tables = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tables.names.get(name) {
            Some(known) => known.clone(),
            None => shared(&mut tables.names, Name::from(name)),
        }
    }
}

/// The copy of `value` that `table` holds, adding it while there is room.
fn shared<T: Ord + ?Sized>(table: &mut BTreeSet<Arc<T>>, value: Arc<T>) -> Arc<T> {
    if let Some(known) = table.get(&*value) {
        return known.clone();
    }
    if table.len() < INTERNED_MAX {
        table.insert(value.clone());
    }
    value
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
    fn equal_names_and_tags_share_one_allocation_across_clones_of_the_interner() {
        let interner = Interner::default();
        let (a, b) = (interner.state(state("s1")), interner.clone().state(state("s1")));
        assert!(Arc::ptr_eq(&a.name, &b.name) && Arc::ptr_eq(&a.tags, &b.tags));
        let other = interner.state(state("s2"));
        assert!(!Arc::ptr_eq(&a.name, &other.name) && Arc::ptr_eq(&a.tags, &other.tags));
        assert!(Arc::ptr_eq(&interner.name("s1"), &a.name));
    }

    #[test]
    fn a_full_table_still_returns_the_value_unshared() {
        let mut table: BTreeSet<Name> = (0..INTERNED_MAX).map(|i| Name::from(format!("n{i}"))).collect();
        let late = shared(&mut table, Name::from("late"));
        assert_eq!(&*late, "late");
        assert_eq!(table.len(), INTERNED_MAX);
    }
}
