//! Serf's event handlers on real processes: `--event-handler [member-join,...=]SCRIPT` runs
//! `sh -c SCRIPT` for each coalesced batch of member events, with `SERF_EVENT`,
//! `SERF_SELF_NAME`, `SERF_SELF_ROLE` and `SERF_TAG_<KEY>` in its environment and one
//! `name\taddress\trole\ttags` line per member on its stdin; never two handlers at once.
//!
//! Deviation: tags on a stdin line are in key order (Serf's are in Go map order, random).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::coalesce::{Batch, Coalescer};
use super::codec::NodeState;
use super::core::{MemberChange, MemberEvent};

/// Member events waiting for the handlers; more are dropped (and logged).
pub const PENDING_EVENTS_MAX: usize = 4096;

/// One `--event-handler` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerSpec {
    /// The member events it runs for; `None`: every one.
    pub events: Option<Vec<MemberChange>>,
    /// The shell command.
    pub script: String,
}

/// An `--event-handler` value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandlerSpecError {
    /// No script after the `=`.
    #[error("event handler '{0}' has no script")]
    NoScript(String),
    /// An event name Serf does not have, or one rollcall does not produce.
    #[error(
        "unknown event '{name}' in event handler (member-join, member-leave, member-failed, member-update, member-reap; user events and queries are not supported)"
    )]
    UnknownEvent { name: String },
}

impl FromStr for HandlerSpec {
    type Err = HandlerSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Serf reads what comes before the first '=' as the event filter and refuses a
        // filter it does not know (`bogus-event=true` is an error, not a script). A script
        // may still contain '=' (`env A=1 /bin/all.sh`): a filter is a list of words.
        if let Some((filter, script)) = text.split_once('=') {
            let names: Vec<&str> = filter.split(',').map(str::trim).collect();
            let word = |name: &&str| {
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
            };
            if names.iter().all(word) {
                let events = names.iter().map(|name| change_of(name)).collect::<Result<Vec<_>, _>>()?;
                if script.trim().is_empty() {
                    return Err(HandlerSpecError::NoScript(text.to_string()));
                }
                return Ok(HandlerSpec { events: Some(events), script: script.to_string() });
            }
        }
        if text.trim().is_empty() {
            return Err(HandlerSpecError::NoScript(text.to_string()));
        }
        Ok(HandlerSpec { events: None, script: text.to_string() })
    }
}

fn change_of(name: &str) -> Result<MemberChange, HandlerSpecError> {
    match name {
        "member-join" => Ok(MemberChange::Join),
        "member-leave" => Ok(MemberChange::Leave),
        "member-failed" => Ok(MemberChange::Failed),
        "member-update" => Ok(MemberChange::Update),
        "member-reap" => Ok(MemberChange::Reap),
        _ => Err(HandlerSpecError::UnknownEvent { name: name.to_string() }),
    }
}

/// Serf's name of a member event.
pub fn event_name(change: MemberChange) -> &'static str {
    match change {
        MemberChange::Join => "member-join",
        MemberChange::Leave => "member-leave",
        MemberChange::Failed => "member-failed",
        MemberChange::Update => "member-update",
        MemberChange::Reap => "member-reap",
    }
}

impl HandlerSpec {
    fn wants(&self, change: MemberChange) -> bool {
        self.events.as_ref().is_none_or(|events| events.contains(&change))
    }
}

/// The handler's environment: `SERF_EVENT`, `SERF_SELF_NAME`, `SERF_SELF_ROLE` (present
/// even when empty) and `SERF_TAG_<KEY>` per local tag, the key upper-cased with every
/// character outside `[A-Z0-9_]` turned into `_`.
pub fn environment(
    change: MemberChange,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let role = tags.get("role").cloned().unwrap_or_default();
    let mut env = vec![
        ("SERF_EVENT".to_string(), event_name(change).to_string()),
        ("SERF_SELF_NAME".to_string(), name.to_string()),
        ("SERF_SELF_ROLE".to_string(), role),
    ];
    for (key, value) in tags {
        let key: String = key
            .chars()
            .map(|c| c.to_ascii_uppercase())
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .collect();
        env.push((format!("SERF_TAG_{key}"), value.clone()));
    }
    env
}

/// The handler's stdin: one `name\taddress\trole\ttags` line per member (the address
/// without its port; tags as `k=v` joined by `,`); tabs and newlines in fields escaped.
pub fn stdin_lines(members: &[NodeState]) -> String {
    let escape = |text: &str| text.replace('\t', "\\t").replace('\n', "\\n");
    members
        .iter()
        .map(|m| {
            let role = m.tags.get("role").map_or(String::new(), |r| escape(r));
            let tags: Vec<String> =
                m.tags.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect();
            format!("{}\t{}\t{role}\t{}\n", escape(&m.name), m.addr.ip(), tags.join(","))
        })
        .collect()
}

/// Who runs the handlers: this node's name and tags, and the coalescing periods.
#[derive(Clone, Debug)]
pub struct HandlerContext {
    /// This node's name.
    pub name: String,
    /// This node's tags.
    pub tags: BTreeMap<String, String>,
    /// Serf's coalesce period (zero: no coalescing).
    pub coalesce: Duration,
    /// Serf's quiescent period.
    pub quiescent: Duration,
}

/// Runs `handlers` for the member events that arrive, coalesced, one handler at a time,
/// until the sender is dropped. `now` is the host's clock.
pub async fn run(
    handlers: Vec<HandlerSpec>,
    context: HandlerContext,
    mut events: mpsc::Receiver<MemberEvent>,
    now: impl Fn() -> Duration,
) {
    let mut coalescer = Coalescer::new(context.coalesce, context.quiescent);
    loop {
        let wait = coalescer.due().map(|due| due.saturating_sub(now()));
        tokio::select! {
            biased;
            received = events.recv() => match received {
                Some(event) => coalescer.push(event, now()),
                None => return,
            },
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                for batch in coalescer.flush(now()) {
                    for handler in handlers.iter().filter(|h| h.wants(batch.change)) {
                        invoke(handler, &context, &batch).await;
                    }
                }
            }
        }
    }
}

/// Runs one handler for one batch and waits for it; a failure is logged, as Serf does.
async fn invoke(handler: &HandlerSpec, context: &HandlerContext, batch: &Batch) {
    let mut command = tokio::process::Command::new("/bin/sh");
    command.arg("-c").arg(&handler.script).stdin(Stdio::piped()).kill_on_drop(true);
    command.envs(environment(batch.change, &context.name, &context.tags));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::error!(script = %handler.script, %error, "event handler did not start");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its stdin is not an error.
        let _ = stdin.write_all(stdin_lines(&batch.members).as_bytes()).await;
    }
    match child.wait().await {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(script = %handler.script, %status, "event handler failed"),
        Err(error) => tracing::error!(script = %handler.script, %error, "event handler lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Status;

    #[test]
    fn specs_parse_as_serf_reads_them() {
        let spec: HandlerSpec = "member-leave,member-failed=/bin/leave.sh".parse().unwrap();
        assert_eq!(spec.events, Some(vec![MemberChange::Leave, MemberChange::Failed]));
        assert_eq!(spec.script, "/bin/leave.sh");
        let all: HandlerSpec = "env A=1 /bin/all.sh".parse().unwrap();
        assert_eq!((all.events, all.script.as_str()), (None, "env A=1 /bin/all.sh"), "'=' inside a script");
        assert_eq!(
            "member-joined=x".parse::<HandlerSpec>(),
            Err(HandlerSpecError::UnknownEvent { name: "member-joined".into() })
        );
        assert!(matches!("user=x".parse::<HandlerSpec>(), Err(HandlerSpecError::UnknownEvent { .. })));
        assert!(matches!("member-join=".parse::<HandlerSpec>(), Err(HandlerSpecError::NoScript(_))));
        assert_eq!(
            "bogus-event=true".parse::<HandlerSpec>(),
            Err(HandlerSpecError::UnknownEvent { name: "bogus-event".into() }),
            "a filter Serf does not know is an error, not a script"
        );
        let spaced: HandlerSpec = "member-join, member-leave=/bin/h".parse().unwrap();
        assert_eq!(spaced.events, Some(vec![MemberChange::Join, MemberChange::Leave]), "names are trimmed");
    }

    #[test]
    fn environment_and_stdin_follow_serfs_contract() {
        let tags = BTreeMap::from([("role".to_string(), "lb".to_string()), ("dc-zone.a".into(), "x".into())]);
        let env = environment(MemberChange::Join, "ha", &tags);
        assert!(env.contains(&("SERF_EVENT".into(), "member-join".into())));
        assert!(env.contains(&("SERF_SELF_ROLE".into(), "lb".into())));
        assert!(env.contains(&("SERF_TAG_DC_ZONE_A".into(), "x".into())));
        let bare = environment(MemberChange::Failed, "n5", &BTreeMap::new());
        assert!(bare.contains(&("SERF_SELF_ROLE".into(), String::new())), "present even when empty");
        let member = |name: &str, tags: BTreeMap<String, String>| NodeState {
            name: name.into(),
            addr: ([127, 0, 0, 5], 7946).into(),
            incarnation: 0,
            status: Status::Alive,
            tags: tags.into(),
        };
        let lines = stdin_lines(&[member("n5", BTreeMap::new()), member("s\t1", tags)]);
        assert_eq!(lines, "n5\t127.0.0.5\t\t\ns\\t1\t127.0.0.5\tlb\tdc-zone.a=x,role=lb\n");
    }
}
