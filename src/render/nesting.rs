//! How deeply a template nests, checked before handlebars compiles it. Handlebars compiles
//! and renders blocks and subexpressions by recursion: a few thousand nested `{{#with}}`
//! overflowed the stack (an abort, not an error), and the time grew with the square of the
//! depth. A template for a config file nests a few levels; a file nesting past the limit is
//! refused with the place where it does.

/// Most blocks open at once (`{{#each}}` inside `{{#if}}`...).
pub const BLOCKS_MAX: usize = 64;
/// Most parentheses open at once inside one expression (subexpressions).
pub const PARENTHESES_MAX: usize = 64;

/// Where a template nests too deeply, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep {
    /// 1-based line of the opening that goes past the limit.
    pub line: usize,
    /// 1-based column of it.
    pub column: usize,
    /// What went past which limit.
    pub reason: String,
}

/// The first place `text` nests past [`BLOCKS_MAX`] or [`PARENTHESES_MAX`]. The scan is
/// lexical: a block opens at `{{#` or `{{^` (after an optional `~` or a third brace) and
/// closes at `{{/`; comments and raw blocks (`{{{{raw}}}} ... {{{{/raw}}}}`) are skipped
/// whole, as their content is text (a `{{/x}}` in one would otherwise hide a level).
pub fn too_deep(text: &str) -> Option<TooDeep> {
    let mut depth = 0usize;
    let mut at = 0usize;
    while let Some(found) = text[at..].find("{{") {
        let open = at + found;
        let after = &text[open + 2..];
        if let Some(skip) = skipped_whole(after) {
            at = open + 2 + skip;
            continue;
        }
        let end = after.find("}}").unwrap_or(after.len());
        let expression = &after[..end];
        let head = expression.trim_start_matches(['{', '~']);
        match head.as_bytes().first() {
            Some(b'#' | b'^') if !head[1..].trim_start().is_empty() => depth += 1,
            Some(b'/') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > BLOCKS_MAX {
            return Some(place(text, open, format!("blocks nest more than {BLOCKS_MAX} deep")));
        }
        if let Some(offset) = parentheses_past_limit(expression) {
            let reason = format!("parentheses nest more than {PARENTHESES_MAX} deep");
            return Some(place(text, open + 2 + offset, reason));
        }
        at = open + 2 + end;
    }
    None
}

/// How far past an opening `{{` a comment or a raw block ends (to the end of the text if it
/// never does), or none for any other expression.
fn skipped_whole(after: &str) -> Option<usize> {
    let through = |closing: &str| after.find(closing).map_or(after.len(), |i| i + closing.len());
    if after.starts_with("!--") {
        return Some(through("--}}"));
    }
    if after.starts_with('!') {
        return Some(through("}}"));
    }
    // `{{{{raw}}}}`: the content up to the first `{{{{/` is text.
    if after.starts_with("{{") && !after[2..].starts_with('/') {
        let content = through("}}}}");
        let close = after[content..].find("{{{{/").map_or(after.len(), |i| content + i);
        return Some(close + after[close..].find("}}}}").map_or(after.len() - close, |i| i + 4));
    }
    None
}

/// The offset in `expression` of the parenthesis that opens past the limit, if any.
fn parentheses_past_limit(expression: &str) -> Option<usize> {
    let mut open = 0usize;
    for (offset, byte) in expression.bytes().enumerate() {
        match byte {
            b'(' => {
                open += 1;
                if open > PARENTHESES_MAX {
                    return Some(offset);
                }
            }
            b')' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn place(text: &str, at: usize, reason: String) -> TooDeep {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    TooDeep { line, column, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("global\n{}x{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn a_config_templates_nesting_passes() {
        let lab = "{{#each addresses}}\n{{#if (eq host \"a\")}}{{^}}{{/if}}\n{{else}}{{/each}}{{~#with x~}}{{/with}}";
        assert_eq!(too_deep(lab), None);
        assert_eq!(too_deep(&nested("{{#with this}}", "{{/with}}", BLOCKS_MAX)), None);
        assert_eq!(
            too_deep(&format!(
                "{{{{eq {}1{} 1}}}}",
                "(not ".repeat(PARENTHESES_MAX),
                ")".repeat(PARENTHESES_MAX)
            )),
            None
        );
    }

    #[test]
    fn nesting_past_a_limit_is_found_where_it_goes_past() {
        let deep = too_deep(&nested("{{#with this}}", "{{/with}}", 4000)).expect("too deep");
        let column = BLOCKS_MAX * "{{#with this}}".len() + 1;
        assert_eq!((deep.line, deep.column), (2, column));
        assert!(deep.reason.contains("blocks"), "{deep:?}");
        let inverse = too_deep(&nested("{{~^x}}", "{{/x}}", BLOCKS_MAX + 1)).expect("too deep");
        assert!(inverse.reason.contains("blocks"));
        let parentheses = format!("a\n\n{{{{eq {}1{} 1}}}}", "(not ".repeat(5000), ")".repeat(5000));
        let deep = too_deep(&parentheses).expect("too deep");
        assert_eq!((deep.line, deep.reason.contains("parentheses")), (3, true), "{deep:?}");
    }

    #[test]
    fn comments_and_raw_blocks_hide_no_level() {
        let deep = "{{#with this}}".repeat(BLOCKS_MAX + 1);
        for hiding in ["{{!-- }} {{/with}} --}}", "{{! {{/with}}", "{{{{raw}}}}{{/with}}{{{{/raw}}}}"] {
            let text = format!("{}{deep}", hiding.repeat(BLOCKS_MAX + 1))
                .replace("{{#with this}}", &format!("{{{{#with this}}}}{hiding}"));
            assert!(too_deep(&text).is_some(), "{hiding}");
        }
        assert_eq!(too_deep("{{!-- {{#a}}{{#b}} --}}{{{{raw}}}}{{#c}}{{{{/raw}}}}"), None);
        assert_eq!(too_deep("{{!-- never closed {{#a}}"), None);
        assert_eq!(too_deep("{{{{raw}}}} never closed {{#a}}"), None);
    }

    #[test]
    fn closed_blocks_free_their_depth() {
        let siblings = "{{#if a}}{{/if}}".repeat(10 * BLOCKS_MAX);
        assert_eq!(too_deep(&siblings), None);
    }
}
