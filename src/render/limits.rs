//! How large a template may be, in the ways handlebars' cost grows. Rendering recurses once
//! per nested block, `else` link and subexpression: a few thousand nested `{{#with}}`
//! overflowed the stack (an abort, not an error). Compiling finds each tag's line by reading
//! the text from its start, so its time grows with the tags times the bytes: a 580 KB
//! template of 40,000 tags took minutes to load. A config template is a few KB with tens of
//! tags and nests a few levels. Counting bytes and tags needs no tokenizer (nothing in the
//! text can hide one), and the depth is read off the compiled template.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

/// Largest template, in bytes (the lab's is 2 KB).
pub const TEMPLATE_BYTES_MAX: usize = 64 << 10;
/// Most tags (`{{` openings, escaped ones included).
pub const TAGS_MAX: usize = 1024;
/// Deepest nesting of blocks, `else` links, subexpressions and the expressions within them.
pub const DEPTH_MAX: usize = 128;
/// Most `(` in the text: handlebars parses a subexpression by recursion before any depth can
/// be read off the result (4,000 nested in one tag overflowed a debug build's stack). A count,
/// not a nesting, so that nothing in the text can hide one.
pub const PARENTHESES_MAX: usize = 1024;
/// Deepest nesting of `each` blocks: a render's iterations grow as the members to that
/// power (30 nested over 3 members did not end).
pub const EACH_NESTING_MAX: usize = 2;

/// What is past a limit, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct Excess {
    /// 1-based line, 0 when the compiled template holds no place for it.
    pub line: usize,
    /// 1-based column, as the line.
    pub column: usize,
    /// Which limit.
    pub reason: String,
}

/// Whether `text` is past the size limits, checked before it is compiled.
pub fn oversized(text: &str) -> Option<Excess> {
    if text.len() > TEMPLATE_BYTES_MAX {
        let reason = format!("{} bytes, over the {TEMPLATE_BYTES_MAX}-byte limit", text.len());
        return Some(Excess { line: 1, column: 1, reason });
    }
    if let Some((at, _)) = text.match_indices("{{").nth(TAGS_MAX) {
        return Some(place(text, at, format!("more than {TAGS_MAX} tags")));
    }
    let (at, _) = text.match_indices('(').nth(PARENTHESES_MAX)?;
    Some(place(text, at, format!("more than {PARENTHESES_MAX} '('")))
}

fn place(text: &str, at: usize, reason: String) -> Excess {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Excess { line, column, reason }
}

/// A place where the compiled `template` nests past [`DEPTH_MAX`] or
/// [`EACH_NESTING_MAX`], or holds a partial; walked without recursion (the depth is what is
/// in question).
pub fn too_deep(template: &Template) -> Option<Excess> {
    let mut pending: Vec<(&Template, usize, usize, (usize, usize))> = vec![(template, 0, 0, (0, 0))];
    while let Some((template, depth, eaches, outer)) = pending.pop() {
        for (index, element) in template.elements.iter().enumerate() {
            let place = template.mapping.get(index).map_or(outer, |m| (m.0, m.1));
            if let TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) = element {
                // No depth bound holds a partial: an inline one can include itself.
                let reason =
                    "partials are not supported: an inline partial can include itself without end".into();
                return Some(Excess { line: place.0, column: place.1, reason });
            }
            for (inner, nested) in nested_templates(element) {
                let depth = depth + inner;
                if depth > DEPTH_MAX {
                    let reason =
                        format!("blocks, else links and subexpressions nest more than {DEPTH_MAX} deep");
                    return Some(Excess { line: place.0, column: place.1, reason });
                }
                if let Some(nested) = nested {
                    let each = matches!(element, TemplateElement::HelperBlock(call)
                        if matches!(&call.name, Parameter::Name(name) if name == "each"));
                    let eaches = eaches + usize::from(each);
                    if eaches > EACH_NESTING_MAX {
                        let reason = format!(
                            "each blocks nest more than {EACH_NESTING_MAX} deep (a render's iterations grow as the members to that power)"
                        );
                        return Some(Excess { line: place.0, column: place.1, reason });
                    }
                    pending.push((nested, depth, eaches, place));
                }
            }
        }
    }
    None
}

/// The templates an element holds, each with how many levels below the element it is, and
/// its subexpressions' depths (with no template of their own).
fn nested_templates(element: &TemplateElement) -> Vec<(usize, Option<&Template>)> {
    let mut found = Vec::new();
    match element {
        TemplateElement::HelperBlock(call)
        | TemplateElement::Expression(call)
        | TemplateElement::HtmlExpression(call) => {
            found.push((1 + subexpression_depth(call), None));
            // An else chain hangs each link inside the one before: one level each.
            found.extend(call.template.iter().map(|t| (1, Some(t))));
            found.extend(call.inverse.iter().map(|t| (1, Some(t))));
        }
        TemplateElement::DecoratorExpression(call) | TemplateElement::DecoratorBlock(call) => {
            let params = call.params.iter().chain(call.hash.values());
            found.push((1 + params.map(parameter_depth).max().unwrap_or(0), None));
            found.extend(call.template.iter().map(|t| (1, Some(t))));
        }
        _ => {}
    }
    found
}

/// How deeply `call`'s name (a subexpression may be one) and parameters nest subexpressions.
fn subexpression_depth(call: &HelperTemplate) -> usize {
    let parts = std::iter::once(&call.name).chain(&call.params).chain(call.hash.values());
    parts.map(parameter_depth).max().unwrap_or(0)
}

/// How deeply a parameter nests subexpressions, walked without recursion.
fn parameter_depth(parameter: &Parameter) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(parameter, 1usize)];
    while let Some((parameter, depth)) = pending.pop() {
        let Parameter::Subexpression(sub) = parameter else { continue };
        deepest = deepest.max(depth);
        if depth > DEPTH_MAX {
            break;
        }
        if let TemplateElement::Expression(call) = sub.element.as_ref() {
            let parts = std::iter::once(&call.name).chain(&call.params).chain(call.hash.values());
            pending.extend(parts.map(|p| (p, depth + 1)));
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(text: &str) -> Template {
        Template::compile(text).expect("the test's template compiles")
    }

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("global\n{}x{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn a_config_templates_size_and_depth_pass() {
        let lab = "{{#each addresses}}\n{{#if (eq host \"a\")}}{{^}}{{/if}}\n{{else}}{{/each}}{{~#with x~}}{{/with}}";
        assert_eq!(oversized(lab), None);
        assert_eq!(too_deep(&compiled(lab)), None);
        assert_eq!(too_deep(&compiled(&nested("{{#with this}}", "{{/with}}", DEPTH_MAX - 1))), None);
    }

    #[test]
    fn nesting_past_the_limit_is_found_however_it_is_written() {
        let blocks = too_deep(&compiled(&nested("{{ #with this}}", "{{ /with}}", 200))).expect("too deep");
        assert_eq!(blocks.line, 2, "{blocks:?}");
        let chain = format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{else if a}}x".repeat(DEPTH_MAX + 1));
        assert!(too_deep(&compiled(&chain)).is_some());
        let parentheses =
            format!("{{{{eq {}1{} 1}}}}", "(not ".repeat(DEPTH_MAX + 1), ")".repeat(DEPTH_MAX + 1));
        assert!(too_deep(&compiled(&parentheses)).is_some());
        let hidden = nested("{{#with this}}{{!-- }} {{/with}} --}}\\{{/with}}", "{{/with}}", DEPTH_MAX + 1);
        assert!(too_deep(&compiled(&hidden)).is_some());
    }

    #[test]
    fn names_parentheses_and_eaches_count() {
        let name = format!("{{{{{}1{}}}}}", "(not ".repeat(DEPTH_MAX + 1), ")".repeat(DEPTH_MAX + 1));
        assert!(too_deep(&compiled(&name)).is_some(), "a subexpression as the name");
        let many = "acl x hdr(host)\n".repeat(PARENTHESES_MAX + 1);
        assert!(oversized(&many).expect("too many").reason.contains("'('"));
        let two = "{{#each addresses}}{{#each tags}}x{{/each}}{{/each}}";
        assert_eq!(too_deep(&compiled(two)), None);
        let three = "{{#each a}}{{#if x}}{{#each b}}{{#each c}}x{{/each}}{{/each}}{{/if}}{{/each}}";
        assert!(too_deep(&compiled(three)).expect("too many eaches").reason.contains("each"));
    }

    #[test]
    fn a_partial_is_refused_as_it_could_include_itself() {
        let recursive = "global\n{{#*inline \"p\"}}x{{> p}}{{/inline}}{{> p}}";
        let excess = too_deep(&compiled(recursive)).expect("refused");
        assert!(excess.reason.contains("partials") && excess.line == 2, "{excess:?}");
        assert!(too_deep(&compiled("{{#> layout}}x{{/layout}}")).is_some());
    }

    #[test]
    fn bytes_and_tags_past_their_limits_are_refused_before_compiling() {
        assert!(oversized(&"x".repeat(TEMPLATE_BYTES_MAX + 1)).expect("too big").reason.contains("bytes"));
        assert_eq!(oversized(&"{{a}}".repeat(TAGS_MAX)), None);
        let many = format!("a\n{}", "{{a}}".repeat(TAGS_MAX + 1));
        let excess = oversized(&many).expect("too many tags");
        assert_eq!((excess.line, excess.column), (2, 5 * TAGS_MAX + 1));
    }
}
