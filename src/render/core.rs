//! The sans-io renderer.
//!
//! The data model is the lab's: `{"addresses": [{"host": ..., "ip": ...}]}`, one entry per
//! live member tagged `role=backend` (alive or suspect: like Serf, a suspect member is still
//! a member until it is declared failed), sorted by host name (the lab lists its `/nodes`
//! directory, which is sorted by file name). Handlebars runs in strict mode (a missing field
//! is an error, not an empty string) without HTML escaping (this is a config file).

use handlebars::Handlebars;
use serde::Serialize;

use crate::gossip::NodeState;

/// The tag and value that make a member a backend.
pub const BACKEND_ROLE: (&str, &str) = ("role", "backend");

/// A cluster member as the renderer sees it (consul-template's view of a service
/// instance), whatever told it: the gossip agent, or a members file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Its address (without a port).
    pub addr: std::net::IpAddr,
    /// Serf tags; `role=backend` makes it a backend.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Alive or suspect (a member until declared failed or left).
    #[serde(default = "live_by_default")]
    pub live: bool,
}

fn live_by_default() -> bool {
    true
}

impl From<&NodeState> for Member {
    fn from(state: &NodeState) -> Self {
        Member {
            name: state.name.to_string(),
            addr: state.addr.ip(),
            tags: (*state.tags).clone(),
            live: !state.status.is_gone(),
        }
    }
}

/// One backend in the template's data model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Address {
    /// Node name.
    pub host: String,
    /// Node IP address.
    pub ip: String,
    /// The member's Serf tags (`{{ tags.weight }}`), beyond the lab's `host` and `ip`.
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Model<'a> {
    addresses: &'a [Address],
}

/// A template could not be loaded or rendered; the message names the template file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// Template syntax error.
    #[error("{file}:{line}:{column}: template syntax error: {reason}")]
    Syntax { file: String, line: usize, column: usize, reason: String },
    /// Rendering failed (missing variable in strict mode, unknown helper, ...).
    #[error("{file}:{line}:{column}: cannot render: {reason}")]
    Render { file: String, line: usize, column: usize, reason: String },
}

/// What the renderer asks its driver to do when the output changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The new file content.
    pub bytes: Vec<u8>,
    /// The backends it lists.
    pub addresses: Vec<Address>,
}

/// Renders one template for the current membership.
pub struct Renderer {
    registry: Handlebars<'static>,
    template_file: String,
    /// Bytes of the file as last written (or found on disk), to render only on change.
    last_written: Option<Vec<u8>>,
}

const TEMPLATE: &str = "config";

impl Renderer {
    /// Compiles `text`; `template_file` names it in errors.
    pub fn new(template_file: &str, text: &str) -> Result<Self, RenderError> {
        let refused = |excess: super::limits::Excess| RenderError::Syntax {
            file: template_file.to_string(),
            line: excess.line,
            column: excess.column,
            reason: excess.reason,
        };
        if let Some(excess) = super::limits::oversized(text) {
            return Err(refused(excess));
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_template_string(TEMPLATE, text).map_err(|error| {
            let (line, column) = error.pos().unwrap_or((0, 0));
            RenderError::Syntax {
                file: template_file.to_string(),
                line,
                column,
                reason: error.reason().to_string(),
            }
        })?;
        let compiled = registry.get_template(TEMPLATE).expect("the template was just registered");
        // Before the calls' walk, which recurses as deep as the template nests.
        if let Some(excess) = super::limits::too_deep(compiled) {
            return Err(refused(excess));
        }
        if let Some(call) = super::calls::first_unknown(compiled) {
            return Err(RenderError::Syntax {
                file: template_file.to_string(),
                line: call.line,
                column: call.column,
                reason: format!("unknown {} '{}'", call.kind, call.name),
            });
        }
        Ok(Self { registry, template_file: template_file.to_string(), last_written: None })
    }

    /// Tells the renderer what the output file holds now (read at start, or just written).
    pub fn record_written(&mut self, bytes: Vec<u8>) {
        self.last_written = Some(bytes);
    }

    /// The backends a member view yields: live members with the backend role, by name.
    pub fn addresses(view: &[Member]) -> Vec<Address> {
        let mut addresses: Vec<Address> = view
            .iter()
            .filter(|m| m.live)
            .filter(|m| m.tags.get(BACKEND_ROLE.0).map(String::as_str) == Some(BACKEND_ROLE.1))
            .map(|m| Address { host: m.name.clone(), ip: m.addr.to_string(), tags: m.tags.clone() })
            .collect();
        addresses.sort();
        addresses
    }

    /// Renders the template for `addresses`.
    pub fn render(&self, addresses: &[Address]) -> Result<String, RenderError> {
        self.registry.render(TEMPLATE, &Model { addresses }).map_err(|error| RenderError::Render {
            file: self.template_file.clone(),
            line: error.line_no.unwrap_or(0),
            column: error.column_no.unwrap_or(0),
            reason: error.reason().to_string(),
        })
    }

    /// Renders for a member view; `Some` only when the bytes differ from the file's. The
    /// caller records a successful write with [`Renderer::record_written`].
    pub fn update(&self, view: &[Member]) -> Result<Option<Output>, RenderError> {
        let addresses = Self::addresses(view);
        let bytes = self.render(&addresses)?.into_bytes();
        if self.last_written.as_ref() == Some(&bytes) {
            return Ok(None);
        }
        Ok(Some(Output { bytes, addresses }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gossip::Status;

    const TEMPLATE_TEXT: &str =
        "backend nodes\n    {{#each addresses}}\n    server {{ host }} {{ ip }}:3000 check\n    {{/each}}\n";

    fn member(name: &str, ip: [u8; 4], role: &str, status: Status) -> Member {
        let state = NodeState {
            name: name.into(),
            addr: (ip, 7946).into(),
            incarnation: 0,
            status,
            tags: BTreeMap::from([("role".to_string(), role.to_string())]).into(),
        };
        Member::from(&state)
    }

    #[test]
    fn lists_live_backends_sorted_and_skips_others() {
        let view = vec![
            member("s2", [10, 0, 0, 3], "backend", Status::Alive),
            member("ha", [10, 0, 0, 1], "balancer", Status::Alive),
            member("s1", [10, 0, 0, 2], "backend", Status::Alive),
            member("s3", [10, 0, 0, 4], "backend", Status::Dead),
            member("s4", [10, 0, 0, 5], "backend", Status::Suspect),
            member("s5", [10, 0, 0, 6], "backend", Status::Left),
        ];
        let renderer = Renderer::new("t.hb", TEMPLATE_TEXT).unwrap();
        let output = renderer.update(&view).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(output.bytes).unwrap(),
            "backend nodes\n    server s1 10.0.0.2:3000 check\n    server s2 10.0.0.3:3000 check\n    \
             server s4 10.0.0.5:3000 check\n"
        );
        assert_eq!(
            output.addresses.len(),
            3,
            "a suspect member is still a member; a dead or left one is not"
        );
    }

    #[test]
    fn renders_only_when_the_bytes_change() {
        let mut renderer = Renderer::new("t.hb", TEMPLATE_TEXT).unwrap();
        let view = vec![member("s1", [10, 0, 0, 2], "backend", Status::Alive)];
        let first = renderer.update(&view).unwrap().unwrap();
        assert!(renderer.update(&view).unwrap().is_some(), "not written yet");
        renderer.record_written(first.bytes);
        assert!(renderer.update(&view).unwrap().is_none());
        let mut with_balancer = view.clone();
        with_balancer.push(member("ha", [10, 0, 0, 1], "balancer", Status::Alive));
        assert!(renderer.update(&with_balancer).unwrap().is_none(), "same backends, same bytes");
        assert!(renderer.update(&[]).unwrap().is_some());
    }

    #[test]
    fn does_not_escape_html() {
        let renderer = Renderer::new("t.hb", "{{#each addresses}}{{host}}{{/each}}").unwrap();
        let out = renderer
            .render(&[Address { host: "a&b<c>".into(), ip: "::1".into(), tags: Default::default() }])
            .unwrap();
        assert_eq!(out, "a&b<c>");
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let error = Renderer::new("lab.hb", "line one\n{{#each addresses}}\n{{/eahc}}\n").err().unwrap();
        let RenderError::Syntax { file, line, .. } = &error else { panic!("{error}") };
        assert_eq!((file.as_str(), *line), ("lab.hb", 3));
        assert!(error.to_string().starts_with("lab.hb:3:"), "{error}");
    }

    #[test]
    fn a_missing_field_fails_in_strict_mode() {
        let renderer = Renderer::new("t.hb", "{{#each addresses}}{{port}}{{/each}}").unwrap();
        let error = renderer
            .render(&[Address { host: "s1".into(), ip: "10.0.0.2".into(), tags: Default::default() }])
            .unwrap_err();
        assert!(matches!(error, RenderError::Render { .. }), "{error}");
        assert!(error.to_string().starts_with("t.hb:1:"), "{error}");
    }
}
