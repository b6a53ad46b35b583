//! The app's sessions: a view count per session id, at most [`SESSIONS_MAX`] of them, the
//! least recently used forgotten first (PHP's session garbage collection drops those idle
//! longest).

use std::collections::BTreeMap;

/// Sessions kept at most; the least recently used is forgotten past this.
pub const SESSIONS_MAX: usize = 10_000;

/// One session: its views, and when it was last used (a use counter, not a clock).
struct Session {
    views: u64,
    used: u64,
}

/// Session ids with their views, in order of last use.
#[derive(Default)]
pub struct Sessions {
    by_id: BTreeMap<String, Session>,
    /// Ids by their last use: the first is the one to forget.
    by_use: BTreeMap<u64, String>,
    uses: u64,
}

impl Sessions {
    /// Whether `id` is a session kept here.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many sessions are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Counts a view of `id` (a new session if it is not kept) and returns its views; a new
    /// session past the limit forgets the least recently used one.
    pub fn view(&mut self, id: &str) -> u64 {
        self.uses += 1;
        let used = self.uses;
        if let Some(session) = self.by_id.get_mut(id) {
            self.by_use.remove(&session.used);
            session.views += 1;
            session.used = used;
            self.by_use.insert(used, id.to_string());
            return session.views;
        }
        if self.by_id.len() >= SESSIONS_MAX {
            if let Some((_, idle)) = self.by_use.pop_first() {
                self.by_id.remove(&idle);
            }
        }
        self.by_id.insert(id.to_string(), Session { views: 1, used });
        self.by_use.insert(used, id.to_string());
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_count_per_session() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.view("a"), 1);
        assert_eq!(sessions.view("a"), 2);
        assert_eq!(sessions.view("b"), 1);
        assert_eq!(sessions.len(), 2);
    }

    /// Past the limit the session idle longest goes, whatever its id: "a" sorts first but
    /// was just used, so "b" (the next in use order) is the one forgotten.
    #[test]
    fn past_the_limit_the_least_recently_used_session_is_forgotten() {
        let mut sessions = Sessions::default();
        sessions.view("a");
        sessions.view("b");
        for i in 0..SESSIONS_MAX - 2 {
            sessions.view(&format!("s{i:05}"));
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert_eq!(sessions.view("a"), 2);
        assert_eq!(sessions.view("new"), 1);
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(sessions.contains("a") && sessions.contains("new"));
        assert!(!sessions.contains("b"));
        assert_eq!(sessions.view("b"), 1, "a forgotten session starts again");
    }
}
