//! consul-template's `wait = "min:max"`, sans-io: after a change, render once no further
//! change came for `min`, but never later than `max` after the first change of the burst.
//! Without a wait, every change renders at once.

use std::time::Duration;

/// How many times `min` the `max` of a wait given without one is (consul-template's rule).
pub const WAIT_MAX_FACTOR: u32 = 4;

/// A `min:max` wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wait {
    /// Quiet time needed before a render.
    pub min: Duration,
    /// The longest a render waits after the first change.
    pub max: Duration,
}

impl Wait {
    /// `min` with consul-template's default `max` of 4 x `min`.
    pub fn of_min(min: Duration) -> Self {
        Wait { min, max: min * WAIT_MAX_FACTOR }
    }
}

/// When the pending changes are due for a render.
#[derive(Clone, Debug, Default)]
pub struct Quiescence {
    wait: Wait,
    first: Option<Duration>,
    last: Duration,
}

impl Quiescence {
    /// A quiescence timer with `wait` (zero: no wait).
    pub fn new(wait: Wait) -> Self {
        Self { wait, first: None, last: Duration::ZERO }
    }

    /// Something changed at `now`.
    pub fn changed(&mut self, now: Duration) {
        self.first.get_or_insert(now);
        self.last = now;
    }

    /// When to render, if something is pending.
    pub fn due(&self) -> Option<Duration> {
        let first = self.first?;
        Some((self.last + self.wait.min).min(first + self.wait.max.max(self.wait.min)))
    }

    /// Whether a render is due at `now`; if so, the pending changes are taken.
    pub fn take_due(&mut self, now: Duration) -> bool {
        if self.due().is_some_and(|due| due <= now) {
            self.first = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn a_burst_within_min_renders_once_after_it() {
        let mut q = Quiescence::new(Wait::of_min(ms(500)));
        for at in [0, 100, 200, 300, 400] {
            q.changed(ms(at));
        }
        assert!(!q.take_due(ms(899)));
        assert!(q.take_due(ms(900)), "500 ms after the last of 5 joins");
        assert!(!q.take_due(ms(2000)), "rendered once");
    }

    #[test]
    fn steady_churn_renders_at_max() {
        let mut q = Quiescence::new(Wait { min: ms(500), max: ms(2000) });
        let mut renders = Vec::new();
        for at in (0..5000).step_by(300) {
            q.changed(ms(at));
            if q.take_due(ms(at)) {
                renders.push(at);
            }
        }
        assert_eq!(renders, [2100, 4500], "never more than max after a burst's first change");
        assert_eq!(Wait::of_min(ms(500)).max, ms(2000), "max defaults to 4 x min");
    }

    #[test]
    fn without_a_wait_every_change_is_due_at_once() {
        let mut q = Quiescence::new(Wait::default());
        q.changed(ms(7));
        assert_eq!(q.due(), Some(ms(7)));
        assert!(q.take_due(ms(7)));
    }
}
