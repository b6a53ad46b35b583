//! The trace: every observable event of a run, with simulated time and host, in order.
//!
//! The trace is what invariants read and what replays are compared by: its hash (BLAKE3 over
//! the JSON Lines form, a fixed algorithm) is printed by every run.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rollcall::host::{Disk, Event, Observer, RealDisk};

/// The host name world-level records (faults) are filed under.
pub const WORLD: &str = "world";

/// One record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Simulated time in microseconds.
    pub t_us: u64,
    /// The host (or [`WORLD`]).
    pub host: String,
    /// What happened.
    pub event: Event,
}

impl Record {
    /// Simulated time of the record.
    pub fn at(&self) -> Duration {
        Duration::from_micros(self.t_us)
    }
}

/// A whole run's records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Records in the order they happened.
    pub records: Vec<Record>,
}

impl Trace {
    /// The trace as JSON Lines.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for record in &self.records {
            out.push_str(&serde_json::to_string(record).expect("records serialize"));
            out.push('\n');
        }
        out
    }

    /// BLAKE3 of the JSON Lines form, hex.
    pub fn hash(&self) -> String {
        blake3::hash(self.to_json_lines().as_bytes()).to_hex().to_string()
    }

    /// Writes the JSON Lines form atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        RealDisk.write_atomic(path, self.to_json_lines().as_bytes())
    }
}

/// Collects records from every host of a run.
#[derive(Clone, Default)]
pub struct Recorder {
    records: Rc<RefCell<Vec<Record>>>,
}

impl Recorder {
    /// Takes the records collected so far.
    pub fn finish(&self) -> Trace {
        Trace { records: std::mem::take(&mut *self.records.borrow_mut()) }
    }
}

impl Observer for Recorder {
    fn record(&self, at: Duration, host: &str, event: Event) {
        let t_us = at.as_micros() as u64;
        let mut records = self.records.borrow_mut();
        debug_assert!(records.last().is_none_or(|last| last.t_us <= t_us), "time never goes back");
        records.push(Record { t_us, host: host.to_string(), event });
    }
}
