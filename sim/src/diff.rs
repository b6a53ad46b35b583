//! Where two traces part: the first record that differs, the records before it, and the
//! host whose record differs (the host that made a different choice, or saw a different
//! world).

use serde::Serialize;

use crate::trace::Record;

/// Most context records shown before the divergence.
pub const CONTEXT_MAX: usize = 1_000;

/// A trace line that is not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: not a trace record: {message}")]
pub struct TraceLineError {
    /// The trace file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What the parser said.
    pub message: String,
}

/// The first difference between two traces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// 1-based line (record number) of the first difference.
    pub line: usize,
    /// Records both traces share just before it.
    pub context: Vec<Record>,
    /// A's record there (`None`: A ends first).
    pub a: Option<Record>,
    /// B's record there (`None`: B ends first).
    pub b: Option<Record>,
}

impl Divergence {
    /// The host whose record differs, if both name the same one.
    pub fn host(&self) -> Option<&str> {
        match (&self.a, &self.b) {
            (Some(a), Some(b)) if a.host == b.host => Some(&a.host),
            (Some(only), None) | (None, Some(only)) => Some(&only.host),
            _ => None,
        }
    }

    /// A few lines for a person.
    pub fn to_text(&self, a_name: &str, b_name: &str) -> String {
        let mut out = format!("the traces part at record {}\n", self.line);
        for record in &self.context {
            out.push_str(&format!("  = {}\n", one_line(record)));
        }
        let side = |record: &Option<Record>, name: &str| match record {
            Some(record) => format!("  {name}: {}\n", one_line(record)),
            None => format!("  {name}: (ends here)\n"),
        };
        out.push_str(&side(&self.a, a_name));
        out.push_str(&side(&self.b, b_name));
        match (self.host(), &self.a, &self.b) {
            (Some(host), Some(a), Some(b)) if a.t_us == b.t_us => {
                out.push_str(&format!("{host} recorded something different at the same time\n"))
            }
            (Some(host), _, _) => out.push_str(&format!("the first difference is on {host}\n")),
            (None, Some(a), Some(b)) => out.push_str(&format!(
                "{a_name} has {} next where {b_name} has {}: their order differs\n",
                a.host, b.host
            )),
            _ => {}
        }
        out
    }
}

fn one_line(record: &Record) -> String {
    let event = serde_json::to_string(&record.event).unwrap_or_default();
    format!("{:>12.6}s {:<8} {event}", record.t_us as f64 / 1e6, record.host)
}

fn parse(file: &str, line: usize, text: &str) -> Result<Record, TraceLineError> {
    serde_json::from_str(text).map_err(|e| TraceLineError { file: file.into(), line, message: e.to_string() })
}

/// The first difference between traces `a` and `b` (JSON Lines), with up to `context`
/// shared records before it; `None` if they are the same.
pub fn diff(
    (a_name, a): (&str, &str),
    (b_name, b): (&str, &str),
    context: usize,
) -> Result<Option<Divergence>, TraceLineError> {
    // Every trace `run --trace` writes starts with the run's plan: an empty file is none.
    for (name, text) in [(a_name, a), (b_name, b)] {
        if text.trim().is_empty() {
            let message = "empty: a trace starts with its run's plan record".to_string();
            return Err(TraceLineError { file: name.into(), line: 1, message });
        }
    }
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    let mut shared: std::collections::VecDeque<Record> = Default::default();
    let context = context.min(CONTEXT_MAX);
    let mut line = 0;
    loop {
        line += 1;
        match (a_lines.next(), b_lines.next()) {
            (None, None) => return Ok(None),
            (Some(x), Some(y)) if x == y => {
                shared.push_back(parse(a_name, line, x)?);
                if shared.len() > context {
                    shared.pop_front();
                }
            }
            (x, y) => {
                let a = x.map(|x| parse(a_name, line, x)).transpose()?;
                let b = y.map(|y| parse(b_name, line, y)).transpose()?;
                return Ok(Some(Divergence { line, context: shared.into(), a, b }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_no_trace() {
        let error = diff(("a", ""), ("b", ""), 3).expect_err("refused");
        assert_eq!((error.file.as_str(), error.line), ("a", 1));
        assert!(diff(("a", "\n"), ("b", ""), 3).is_err());
    }

    const A: &str = r#"{"t_us":1000,"host":"s1","event":{"kind":"host-booted","boot":1}}
{"t_us":2000,"host":"s1","event":{"kind":"joined","via":"ha"}}
{"t_us":3000,"host":"ha","event":{"kind":"left"}}
"#;

    #[test]
    fn the_same_trace_has_no_divergence() {
        assert_eq!(diff(("a", A), ("b", A), 3), Ok(None));
    }

    #[test]
    fn a_planted_change_is_found_at_its_record_with_the_host() {
        let b = A.replace(r#""via":"ha""#, r#""via":"s2""#);
        let found = diff(("a", A), ("b", &b), 3).unwrap().unwrap();
        assert_eq!(found.line, 2);
        assert_eq!(found.context.len(), 1);
        assert_eq!(found.host(), Some("s1"));
        assert!(found.to_text("a", "b").contains("s1 recorded something different"));
    }

    #[test]
    fn a_shorter_trace_ends_first() {
        let b: String = A.lines().take(2).map(|l| format!("{l}\n")).collect();
        let found = diff(("a", A), ("b", &b), 1).unwrap().unwrap();
        assert_eq!((found.line, found.b.is_none()), (3, true));
        assert_eq!(found.host(), Some("ha"));
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let b = A.replace(r#""via":"ha"}}"#, "oops");
        let error = diff(("a", A), ("b.jsonl", &b), 1).unwrap_err();
        assert_eq!((error.file.as_str(), error.line), ("b.jsonl", 2));
    }
}
