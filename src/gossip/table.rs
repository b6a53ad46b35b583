//! The member table: entries in the order they were added (memberlist's `nodes` slice, from
//! which random peers are drawn by index) and a hash index from name to position.
//!
//! At 10,000 nodes a simulation holds 100 million entries, so the layout is what counts: an
//! ordered map keyed by name cost about twice the entry itself in keys and node slack, plus a
//! second list for the random draws, and every lookup compared names down the tree. Here an
//! entry costs itself and a 4-byte slot of the index. Name order, which traces and push-pulls
//! use, is made by sorting when first asked for and kept until an entry comes or goes: a
//! settled table answers every push-pull from the same order.

use std::cell::OnceCell;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// A full table grows by its length over this...
const GROWTH_DIVISOR: usize = 8;
/// ...and by at least this many entries.
const GROWTH_MIN: usize = 8;

/// Makes room in `entries` for `more`, growing a full vector by an eighth rather than doubling:
/// 10,000 simulated tables (or queues) of 10,000 would otherwise leave room for 6,000 more each.
pub(super) fn reserve_slowly<T>(entries: &mut Vec<T>, more: usize) {
    if entries.capacity() - entries.len() < more {
        let growth = (entries.len() / GROWTH_DIVISOR).max(GROWTH_MIN);
        entries.reserve_exact(more.max(growth));
    }
}

/// An entry that knows its own name.
pub trait Named {
    /// The name the entry is found by.
    fn name(&self) -> &str;
}

/// Entries found by name, kept in the order they were added.
#[derive(Clone, Debug)]
pub struct Table<T> {
    entries: Vec<T>,
    /// Positions in `entries`, hashed by the entry's name. Nothing depends on its own order
    /// (a removal walks it only to renumber), so the hash function cannot change behaviour.
    index: HashTable<u32>,
    /// Every position, in name order, once asked for; dropped when an entry comes or goes
    /// (replacing one keeps its name, and so the order).
    by_name: OnceCell<Vec<u32>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), index: HashTable::new(), by_name: OnceCell::new() }
    }
}

/// The hash of the indexes here, in the broadcast queue and in the interner: fixed, so that a
/// run's memory layout is the same every time (its behaviour is, whatever the hash), and
/// fast (foldhash; SipHash took a tenth of a 10,000-node join storm).
pub(super) fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    Fixed::default().hash_one(value)
}

/// The fixed hasher state behind [`hash`].
pub(super) type Fixed = foldhash::fast::FixedState;

impl<T: Named> Table<T> {
    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the entry called `name` is among those still here.
    pub fn position(&self, name: &str) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(hash(name), |&i| entries[i as usize].name() == name).map(|&i| i as usize)
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.position(name).map(|i| &self.entries[i])
    }

    /// The entry called `name`, to change (not its name).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.position(name).map(|i| &mut self.entries[i])
    }

    /// Whether there is an entry called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// The entry added `i`-th among those still here.
    pub fn at(&self, i: usize) -> &T {
        &self.entries[i]
    }

    /// Makes room for `more` entries (a merge knows how many may come), growing as an
    /// insert does when that is more.
    pub fn reserve(&mut self, more: usize) {
        reserve_slowly(&mut self.entries, more);
    }

    /// Puts `entry` in place of the one with its name, or adds it last; true if it was new.
    pub fn insert(&mut self, entry: T) -> bool {
        if let Some(i) = self.position(entry.name()) {
            self.entries[i] = entry;
            return false;
        }
        assert!(self.entries.len() < u32::MAX as usize, "table positions fit in u32");
        self.reserve(1);
        let position = self.entries.len() as u32;
        let entries = &self.entries;
        self.index.insert_unique(hash(entry.name()), position, |&i| hash(entries[i as usize].name()));
        self.entries.push(entry);
        self.by_name.take();
        true
    }

    /// Takes out the entry called `name`; the later ones move up one place, keeping the
    /// order. Linear in the table, as memberlist's removal from its slice is.
    pub fn remove(&mut self, name: &str) -> Option<T> {
        let entries = &self.entries;
        let found = self.index.find_entry(hash(name), |&i| entries[i as usize].name() == name).ok()?;
        let (position, _) = found.remove();
        let position = position as usize;
        for slot in self.index.iter_mut() {
            if *slot as usize > position {
                *slot -= 1;
            }
        }
        self.by_name.take();
        Some(self.entries.remove(position))
    }

    /// Every entry, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    /// Every entry, in name order.
    pub fn by_name(&self) -> Vec<&T> {
        self.name_order().iter().map(|&i| &self.entries[i as usize]).collect()
    }

    /// Every position in name order, sorted once until the table's entries change.
    fn name_order(&self) -> &[u32] {
        self.by_name.get_or_init(|| {
            // Exactly as long as the table: kept for the table's life, it gets no slack.
            let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
            self.sort_by_name(&mut order);
            order
        })
    }

    /// Puts `positions` in the name order of their entries.
    fn sort_by_name(&self, positions: &mut [u32]) {
        let entries = &self.entries;
        positions.sort_unstable_by(|&a, &b| entries[a as usize].name().cmp(entries[b as usize].name()));
    }

    /// The entries `wanted` accepts, in name order (picked before sorting: a table of
    /// 10,000 members sorts in milliseconds, its few failed ones in no time).
    pub fn by_name_where(&self, wanted: impl Fn(&T) -> bool) -> Vec<&T> {
        self.positions_by_name_where(wanted).into_iter().map(|i| &self.entries[i as usize]).collect()
    }

    /// The positions of the entries `wanted` accepts, in name order: a list of entries to
    /// visit in 4 bytes each, where a name takes 16.
    pub fn positions_by_name_where(&self, wanted: impl Fn(&T) -> bool) -> Vec<u32> {
        let entries = &self.entries;
        let mut sorted: Vec<u32> =
            (0..entries.len() as u32).filter(|&i| wanted(&entries[i as usize])).collect();
        self.sort_by_name(&mut sorted);
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Entry(String, u32);

    impl Named for Entry {
        fn name(&self) -> &str {
            &self.0
        }
    }

    fn entry(name: &str, value: u32) -> Entry {
        Entry(name.into(), value)
    }

    #[test]
    fn entries_are_found_by_name_and_kept_in_the_order_added() {
        let mut table = Table::default();
        assert!(table.insert(entry("c", 1)) && table.insert(entry("a", 2)) && table.insert(entry("b", 3)));
        assert!(!table.insert(entry("a", 20)), "a known name replaces its entry");
        assert_eq!(table.len(), 3);
        assert_eq!(table.get("a"), Some(&entry("a", 20)));
        assert!(table.get("d").is_none() && !table.contains("d") && table.contains("b"));
        table.get_mut("b").unwrap().1 = 30;
        let added: Vec<&str> = table.iter().map(|e| e.name()).collect();
        assert_eq!(added, ["c", "a", "b"]);
        assert_eq!(table.at(2), &entry("b", 30));
        let sorted: Vec<&str> = table.by_name().into_iter().map(|e| e.name()).collect();
        assert_eq!(sorted, ["a", "b", "c"]);
        let picked: Vec<&str> = table.by_name_where(|e| e.1 != 1).into_iter().map(|e| e.name()).collect();
        assert_eq!(picked, ["a", "b"]);
        assert_eq!(table.positions_by_name_where(|e| e.1 != 1), [1, 2]);
        assert_eq!(table.position("b"), Some(2));
    }

    #[test]
    fn a_merge_reserving_one_more_at_a_time_grows_geometrically() {
        let mut table = Table::default();
        for i in 0..1000 {
            table.insert(entry(&format!("n{i}"), i));
        }
        let mut capacities = std::collections::BTreeSet::new();
        for i in 1000..2000 {
            table.reserve(1);
            table.insert(entry(&format!("n{i}"), i));
            capacities.insert(table.entries.capacity());
        }
        // Growing by an eighth from 1,000 to 2,000 entries takes about six steps, not 1,000.
        assert!(capacities.len() <= 8, "{} reallocations", capacities.len());
    }

    #[test]
    fn removal_keeps_the_order_and_every_other_entry_findable() {
        let mut table = Table::default();
        for i in 0..100 {
            table.insert(entry(&format!("n{i}"), i));
        }
        assert_eq!(table.remove("n40"), Some(entry("n40", 40)));
        assert_eq!(table.remove("n40"), None);
        assert_eq!(table.len(), 99);
        for i in (0..100).filter(|&i| i != 40) {
            assert_eq!(table.get(&format!("n{i}")), Some(&entry(&format!("n{i}"), i)));
        }
        assert_eq!(table.at(40), &entry("n41", 41));
        assert!(table.insert(entry("n40", 400)));
        assert_eq!(table.at(99), &entry("n40", 400));
    }

    fn names_by_name(table: &Table<Entry>) -> Vec<String> {
        table.by_name().into_iter().map(|e| e.0.clone()).collect()
    }

    #[test]
    fn name_order_is_kept_until_an_entry_comes_or_goes() {
        let mut table = Table::default();
        for name in ["d", "b", "c"] {
            table.insert(entry(name, 0));
        }
        assert_eq!(names_by_name(&table), ["b", "c", "d"]);
        assert!(!table.insert(entry("c", 7)), "replacing an entry keeps its place in name order");
        assert_eq!(table.by_name()[1], &entry("c", 7));
        assert!(table.insert(entry("a", 0)));
        assert_eq!(names_by_name(&table), ["a", "b", "c", "d"]);
        assert_eq!(table.remove("c"), Some(entry("c", 7)));
        assert_eq!(names_by_name(&table), ["a", "b", "d"]);
        assert!(table.insert(entry("e", 0)));
        assert_eq!(names_by_name(&table), ["a", "b", "d", "e"]);
    }
}
