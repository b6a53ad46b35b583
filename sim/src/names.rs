//! Host name patterns: `s{1..9999}` stands for `s1`, `s2`, ..., `s9999`, in a `[[host]]` name
//! (one table per host) and in any list of host names, as a shell's brace expansion does.

use crate::scenario::HOST_NAME_BYTES_MAX;

/// Most hosts a scenario may have (a `[[host]]` pattern expands to at most this many).
pub const HOSTS_MAX: usize = 20_000;

/// The names `pattern` stands for, with the number each got (`None` for a plain name), or
/// why the pattern is malformed.
pub fn expand(pattern: &str) -> Result<Vec<(Option<u64>, String)>, String> {
    let Some(open) = pattern.find('{') else { return Ok(vec![(None, pattern.to_string())]) };
    let close = pattern[open..].find('}').map(|i| open + i).ok_or_else(|| malformed(pattern))?;
    let (prefix, range, suffix) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    if suffix.contains(['{', '}']) || prefix.contains('}') {
        return Err(format!("host pattern '{}' may hold one {{first..last}} range only", shown(pattern)));
    }
    let (first_text, last_text) = range.split_once("..").ok_or_else(|| malformed(pattern))?;
    let number = |text: &str| text.parse::<u64>().map_err(|_| malformed(pattern));
    let (first, last) = (number(first_text)?, number(last_text)?);
    // As bash expands `{01..10}`: a bound written with a leading zero pads every number to
    // the wider bound's width.
    let padded = [first_text, last_text].iter().any(|text| text.len() > 1 && text.starts_with('0'));
    let width = if padded { first_text.len().max(last_text.len()) } else { 0 };
    // Checked before the names are made: a width of thousands of digits would make
    // thousands of names of that width first.
    let longest = prefix.len() + width.max(last.to_string().len()) + suffix.len();
    if longest > HOST_NAME_BYTES_MAX {
        return Err(format!(
            "host pattern '{}' makes names of {longest} bytes; a host name has at most {HOST_NAME_BYTES_MAX}",
            shown(pattern)
        ));
    }
    if first > last || last - first >= HOSTS_MAX as u64 {
        return Err(format!(
            "host pattern '{}': the range must go up, over at most {HOSTS_MAX} numbers",
            shown(pattern)
        ));
    }
    Ok((first..=last).map(|n| (Some(n), format!("{prefix}{n:0width$}{suffix}"))).collect())
}

fn malformed(pattern: &str) -> String {
    let pattern = shown(pattern);
    format!("host pattern '{pattern}' must look like 's{{1..100}}': a name with one {{first..last}} range")
}

/// A pattern as an error message shows it: at most [`SHOWN_BYTES`] of it.
fn shown(pattern: &str) -> String {
    const SHOWN_BYTES: usize = 80;
    match pattern.char_indices().nth(SHOWN_BYTES) {
        Some((cut, _)) => format!("{}...", &pattern[..cut]),
        None => pattern.to_string(),
    }
}

/// Host names for an error message: the first few, and how many more.
pub fn listed(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let shown = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_expands_in_order_and_a_plain_name_stays() {
        let names: Vec<String> = expand("s{8..11}x").unwrap().into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["s8x", "s9x", "s10x", "s11x"]);
        assert_eq!(expand("ha").unwrap(), vec![(None, "ha".to_string())]);
        assert_eq!(expand("s{3..3}").unwrap(), vec![(Some(3), "s3".to_string())]);
    }

    #[test]
    fn a_bound_with_a_leading_zero_pads_as_bash_does() {
        let names = |pattern| expand(pattern).unwrap().into_iter().map(|(_, n)| n).collect::<Vec<_>>();
        assert_eq!(names("x{01..03}"), ["x01", "x02", "x03"]);
        assert_eq!(names("x{08..10}"), ["x08", "x09", "x10"]);
        assert_eq!(names("x{1..003}"), ["x001", "x002", "x003"]);
        assert_eq!(names("x{0..2}"), ["x0", "x1", "x2"]);
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_pattern() {
        let wide = format!("s{{{}1..20000}}", "0".repeat(50_000));
        for bad in ["s{1..}", "s{a..3}", "s{5..1}", "s{1..3", "s{1..2}{1..2}", "s{0..20000}", "s{1-3}", &wide]
        {
            let error = expand(bad).unwrap_err();
            // A long pattern is shown cut, and refused before its names are made.
            assert!(error.contains(bad.get(..80).unwrap_or(bad)) && error.len() < 300, "{bad}: {error}");
        }
        assert!(expand("s{0..19999}").is_ok());
    }

    #[test]
    fn long_lists_are_cut_short() {
        let names: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
        assert!(listed(&names).ends_with("h11 and 8 more"));
    }
}
