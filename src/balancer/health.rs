//! Server health as HAProxy 2.6 keeps it, sans-io: check results in, state changes and the
//! time to the next check out.
//!
//! HAProxy's model: a health counter from 0 to `rise + fall - 1`; a server is UP while the
//! counter is at least `rise`. A passed check raises it by one, a failed check lowers it by
//! one, so a fully up server goes DOWN after `fall` failures and a fully down one comes UP
//! after `rise` passes. After a load a checked server is UP but one failure away from DOWN
//! (counter = `rise`). Checks run every `inter` while fully up, every `downinter` while fully
//! down and every `fastinter` while in between.

use std::time::Duration;

/// HAProxy 2.6's default `inter`.
pub const DEFAULT_INTER: Duration = Duration::from_secs(2);
/// HAProxy 2.6's default `rise`.
pub const DEFAULT_RISE: u32 = 2;
/// HAProxy 2.6's default `fall`.
pub const DEFAULT_FALL: u32 = 3;

/// How one server is checked (`check`, `inter`, `fastinter`, `downinter`, `rise`, `fall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSettings {
    /// Time between checks while fully up.
    pub inter: Duration,
    /// Time between checks while going up or down (default: `inter`).
    pub fastinter: Duration,
    /// Time between checks while fully down (default: `inter`).
    pub downinter: Duration,
    /// Passed checks to go UP.
    pub rise: u32,
    /// Failed checks to go DOWN.
    pub fall: u32,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            inter: DEFAULT_INTER,
            fastinter: DEFAULT_INTER,
            downinter: DEFAULT_INTER,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

/// A server's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    settings: CheckSettings,
    counter: u32,
    /// The last failure's reason.
    last_failure: Option<String>,
}

/// A server crossed between UP and DOWN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Whether it is now UP.
    pub up: bool,
    /// `3 failed checks, last: connect timeout` or `2 passed checks`.
    pub reason: String,
}

impl Health {
    /// A server just loaded: UP, one failure away from DOWN.
    pub fn new(settings: CheckSettings) -> Self {
        assert!(settings.rise >= 1 && settings.fall >= 1, "rise and fall are at least 1");
        Health { settings, counter: settings.rise, last_failure: None }
    }

    /// The same health under new settings (a reload that keeps the server): UP stays UP and
    /// DOWN stays DOWN, the counter clamped into the new range.
    pub fn with_settings(&self, settings: CheckSettings) -> Self {
        let mut kept = Health::new(settings);
        kept.counter = if self.is_up() {
            self.counter.clamp(settings.rise, settings.rise + settings.fall - 1)
        } else {
            self.counter.min(settings.rise - 1)
        };
        kept
    }

    /// Whether the server gets traffic.
    pub fn is_up(&self) -> bool {
        self.counter >= self.settings.rise
    }

    fn top(&self) -> u32 {
        self.settings.rise + self.settings.fall - 1
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, passed: bool, failure: Option<String>) -> Option<Transition> {
        let was_up = self.is_up();
        if passed {
            self.counter = (self.counter + 1).min(self.top());
        } else {
            self.counter = self.counter.saturating_sub(1);
            self.last_failure = failure;
        }
        let now_up = self.is_up();
        (was_up != now_up).then(|| {
            let reason = if now_up {
                format!("{} passed check(s)", self.settings.rise)
            } else {
                let last = self.last_failure.as_deref().unwrap_or("unknown");
                format!("{} failed check(s), last: {last}", self.settings.fall)
            };
            Transition { up: now_up, reason }
        })
    }

    /// Time until the next check.
    pub fn next_interval(&self) -> Duration {
        if self.counter == self.top() {
            self.settings.inter
        } else if self.counter == 0 {
            self.settings.downinter
        } else {
            self.settings.fastinter
        }
    }

    /// HAProxy's stats wording: `UP`, `UP 1/3` (going down), `DOWN`, `DOWN 1/2` (going up).
    pub fn status(&self) -> String {
        let (rise, fall) = (self.settings.rise, self.settings.fall);
        if self.is_up() {
            let failed = self.top() - self.counter;
            if failed == 0 { "UP".into() } else { format!("UP {}/{fall}", fall - failed) }
        } else if self.counter == 0 {
            "DOWN".into()
        } else {
            format!("DOWN {}/{rise}", self.counter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CheckSettings {
        CheckSettings {
            inter: Duration::from_secs(2),
            fastinter: Duration::from_millis(500),
            downinter: Duration::from_secs(5),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn a_loaded_server_is_up_but_one_failure_from_down() {
        let mut health = Health::new(settings());
        assert!(health.is_up());
        assert_eq!(health.status(), "UP 1/3");
        assert_eq!(health.next_interval(), Duration::from_millis(500));
        let down = health.record(false, Some("connect timeout".into())).expect("goes down");
        assert!(!down.up);
        assert_eq!(down.reason, "3 failed check(s), last: connect timeout");
    }

    #[test]
    fn a_fully_up_server_falls_after_fall_failures_and_rises_after_rise_passes() {
        let mut health = Health::new(settings());
        for _ in 0..3 {
            assert_eq!(health.record(true, None), None);
        }
        assert_eq!(health.status(), "UP");
        assert_eq!(health.next_interval(), Duration::from_secs(2));
        assert_eq!(health.record(false, Some("refused".into())), None);
        assert_eq!(health.status(), "UP 2/3");
        assert_eq!(health.record(false, Some("refused".into())), None);
        let down = health.record(false, Some("refused".into())).expect("third failure");
        assert!(!down.up && down.reason.ends_with("last: refused"), "{down:?}");
        for _ in 0..2 {
            health.record(false, Some("refused".into()));
        }
        assert_eq!(health.status(), "DOWN");
        assert_eq!(health.next_interval(), Duration::from_secs(5));
        assert_eq!(health.record(true, None), None);
        assert_eq!(health.status(), "DOWN 1/2");
        let up = health.record(true, None).expect("second pass");
        assert!(up.up && up.reason == "2 passed check(s)", "{up:?}");
    }

    #[test]
    fn a_reload_keeps_up_and_down() {
        let mut health = Health::new(settings());
        for _ in 0..3 {
            health.record(false, Some("refused".into()));
        }
        assert!(!health.is_up());
        let reloaded = health.with_settings(CheckSettings { rise: 5, ..settings() });
        assert!(!reloaded.is_up());
        assert!(Health::new(settings()).with_settings(CheckSettings { fall: 1, ..settings() }).is_up());
    }
}
