//! Helper and decorator calls a template makes, checked when it loads. Handlebars finds an
//! unknown helper only when a render reaches the call, so a template that calls one would load
//! and then fail every render; consul-template's Go templates refuse an undefined function
//! when they are parsed, and so does rollcall's renderer.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

/// The helpers a `Handlebars` registry has built in (handlebars 6 without its optional
/// features); the renderer registers none of its own.
pub const HELPERS: [&str; 17] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and",
    "or", "not", "len",
];

/// The decorators it has built in.
pub const DECORATORS: [&str; 1] = ["inline"];

/// A call to a helper or decorator the registry does not have, and where it is.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownCall {
    /// 1-based line and column of the element that makes the call (of its enclosing
    /// element for a call inside a subexpression).
    pub line: usize,
    /// See `line`.
    pub column: usize,
    /// What is called.
    pub name: String,
    /// "helper" or "decorator".
    pub kind: &'static str,
}

/// The first unknown call in `template`, in reading order.
pub fn first_unknown(template: &Template) -> Option<UnknownCall> {
    for (index, element) in template.elements.iter().enumerate() {
        let (line, column) = template.mapping.get(index).map_or((0, 0), |m| (m.0, m.1));
        let at = |name: String, kind| Some(UnknownCall { line, column, name, kind });
        match element {
            TemplateElement::HelperBlock(call) => {
                if let Some(name) = unknown_helper(call, true) {
                    return at(name, "helper");
                }
                if let Some(found) = within_helper(call, line, column) {
                    return Some(found);
                }
            }
            TemplateElement::Expression(call) | TemplateElement::HtmlExpression(call) => {
                if let Some(name) = unknown_helper(call, false) {
                    return at(name, "helper");
                }
                if let Some(name) =
                    params_unknown(std::iter::once(&call.name).chain(&call.params).chain(call.hash.values()))
                {
                    return at(name, "helper");
                }
            }
            TemplateElement::DecoratorExpression(call) | TemplateElement::DecoratorBlock(call) => {
                let name = parameter_name(&call.name);
                if !DECORATORS.contains(&name.as_str()) {
                    return at(name, "decorator");
                }
                if let Some(found) = call.template.as_ref().and_then(first_unknown) {
                    return Some(found);
                }
            }
            TemplateElement::PartialExpression(call) | TemplateElement::PartialBlock(call) => {
                if let Some(found) = call.template.as_ref().and_then(first_unknown) {
                    return Some(found);
                }
            }
            // Text, comments, and whatever a later handlebars adds: no call we know of.
            _ => {}
        }
    }
    None
}

/// Unknown calls inside a block: its parameters, its body and its `else`.
fn within_helper(call: &HelperTemplate, line: usize, column: usize) -> Option<UnknownCall> {
    if let Some(name) =
        params_unknown(std::iter::once(&call.name).chain(&call.params).chain(call.hash.values()))
    {
        return Some(UnknownCall { line, column, name, kind: "helper" });
    }
    [&call.template, &call.inverse].into_iter().flatten().find_map(first_unknown)
}

/// The name `call` asks for if it is a helper call (a block, or an expression with
/// parameters) to a helper that does not exist. An expression that is a name alone is a
/// value, unless a helper has that name.
fn unknown_helper(call: &HelperTemplate, block: bool) -> Option<String> {
    let is_call = block || !call.params.is_empty() || !call.hash.is_empty();
    let name = parameter_name(&call.name);
    (is_call && !HELPERS.contains(&name.as_str())).then_some(name)
}

/// The first unknown helper called by a subexpression among `params`, nested ones included.
fn params_unknown<'a>(params: impl Iterator<Item = &'a Parameter>) -> Option<String> {
    for param in params {
        let Parameter::Subexpression(sub) = param else { continue };
        if let TemplateElement::Expression(call) = sub.element.as_ref() {
            // A subexpression always calls: `(name)` is a helper call without parameters.
            let name = parameter_name(&call.name);
            if !HELPERS.contains(&name.as_str()) {
                return Some(name);
            }
            if let Some(name) =
                params_unknown(std::iter::once(&call.name).chain(&call.params).chain(call.hash.values()))
            {
                return Some(name);
            }
        }
    }
    None
}

fn parameter_name(name: &Parameter) -> String {
    match name {
        Parameter::Name(name) => name.clone(),
        Parameter::Path(handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw))) => {
            raw.clone()
        }
        Parameter::Literal(value) => value.to_string(),
        _ => "(a computed name)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(text: &str) -> Option<UnknownCall> {
        first_unknown(&Template::compile(text).expect("the test's template compiles"))
    }

    #[test]
    fn values_and_built_in_calls_are_known() {
        let text = "{{#each addresses}}server {{host}} {{ip}}:80{{#if (eq host \"a\")}} backup{{/if}}\
                    {{lookup tags \"weight\"}}{{/each}}{{len addresses}}{{{raw_value}}}\n\
                    {{#*inline \"p\"}}x{{/inline}}{{> p}}{{#unless (not (gt 1 2))}}y{{else}}z{{/unless}}";
        assert_eq!(unknown(text), None);
    }

    #[test]
    fn an_unknown_helper_is_found_where_it_is_called() {
        let found = unknown("global\n  maxconn 10\n# {{nohelper 1}}\n").expect("found");
        assert_eq!((found.line, found.name.as_str(), found.kind), (3, "nohelper", "helper"));
        let nested = unknown("{{#each addresses}}\n{{#if ok}}{{upper host}}{{/if}}{{/each}}").expect("found");
        assert_eq!(nested.name, "upper");
        assert_eq!(unknown("{{#if (shout host)}}x{{/if}}").expect("found").name, "shout");
        assert_eq!(unknown("{{eq (shout host) 1}}").expect("found").name, "shout");
        assert_eq!(unknown("{{#each addresses}}{{else}}{{pad 3}}{{/each}}").expect("found").name, "pad");
        assert_eq!(unknown("{{#loop addresses}}{{/loop}}").expect("found").name, "loop");
        assert_eq!(unknown("{{(shout 1)}}").expect("found").name, "shout", "a subexpression as the name");
        let decorator = unknown("{{*repeat 3}}").expect("found");
        assert_eq!((decorator.name.as_str(), decorator.kind), ("repeat", "decorator"));
    }

    #[test]
    fn every_listed_helper_exists_in_the_registry() {
        // A call to each renders without "helper not found": the list matches handlebars'.
        let mut registry = handlebars::Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        for helper in HELPERS {
            let text = format!("{{{{#{helper} 1}}}}{{{{/{helper}}}}}");
            let rendered = registry.render_template(&text, &serde_json::json!({}));
            let missing = matches!(&rendered, Err(e) if matches!(e.reason(), handlebars::RenderErrorReason::HelperNotFound(_)));
            assert!(!missing, "{helper}: {rendered:?}");
        }
        let rendered = registry.render_template("{{#nohelper 1}}{{/nohelper}}", &serde_json::json!({}));
        let error = rendered.unwrap_err();
        assert!(matches!(error.reason(), handlebars::RenderErrorReason::HelperNotFound(_)), "{error:?}");
    }
}
