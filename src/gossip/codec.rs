//! Gossip wire format: one UDP datagram carries a compound of messages; a push-pull (the
//! whole member table) goes over a TCP stream as one length-prefixed frame.
//!
//! The encoding is postcard (serde, compact). Decoding never trusts the peer: sizes and
//! counts are checked and bad input is an error naming the peer, never a panic. A push-pull
//! in a datagram is refused: a small spoofed datagram would otherwise buy a full-state
//! answer to its forged source (amplification); a stream cannot be spoofed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Largest datagram we send or accept (memberlist's UDPBufferSize).
pub const DATAGRAM_BYTES_MAX: usize = 1400;
/// Largest encoded tag map of one member (memberlist's MetaMaxSize).
pub const TAGS_BYTES_MAX: usize = 512;
/// Longest node name.
pub const NAME_BYTES_MAX: usize = 128;
/// Most bytes one member's state takes on the wire (name, tags, address and numbers).
pub const STATE_BYTES_MAX: usize = NAME_BYTES_MAX + TAGS_BYTES_MAX + 64;
/// Bytes of a stream frame's length prefix (big-endian u32).
pub const FRAME_HEADER_BYTES: usize = 4;

/// Largest push-pull frame for a table of at most `members_max` members.
pub fn stream_bytes_max(members_max: usize) -> usize {
    64 + super::keyring::WIRE_OVERHEAD_BYTES + members_max.saturating_mul(STATE_BYTES_MAX)
}

/// Liveness of a member as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left the cluster on purpose (memberlist's "left": it announced its own death).
    Left,
}

impl Status {
    /// Dead or left: not probed, not counted on, gossiped to only for a while.
    pub fn is_gone(self) -> bool {
        matches!(self, Status::Dead | Status::Left)
    }
}

/// A node's name, shared by every table and message that holds it (at 10,000 nodes there are
/// 100 million table entries in one simulation).
pub type Name = std::sync::Arc<str>;

/// Serf tags, such as `role=backend`, shared the same way (most members carry equal tags).
pub type Tags = std::sync::Arc<BTreeMap<String, String>>;

/// What a node knows about one member.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeState {
    /// Unique node name.
    pub name: Name,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Incremented only by the node itself, to refute suspicion.
    pub incarnation: u32,
    /// Liveness at that incarnation.
    pub status: Status,
    /// Serf tags, such as `role=backend`.
    pub tags: Tags,
}

/// The Lamport time of a member's last join or leave intent, as a push-pull carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusTime {
    /// The member.
    pub name: String,
    /// Lamport time of its last intent.
    pub ltime: u64,
}

/// One gossip message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A direct probe of `target`.
    Ping { seq: u32, target: String },
    /// The answer to a ping.
    Ack { seq: u32 },
    /// A node is alive at an incarnation.
    Alive(NodeState),
    /// `from` suspects `name` at an incarnation.
    Suspect { name: String, incarnation: u32, from: String },
    /// `from` declares `name` dead at an incarnation; `from == name` means `name` left.
    Dead { name: String, incarnation: u32, from: String },
    /// Full state exchange; `join` asks the peer to answer with its own state. Besides the
    /// member table it carries Serf's part: the sender's Lamport time and the Lamport time of
    /// each member's last join or leave intent.
    PushPull { join: bool, reply: bool, ltime: u64, states: Vec<NodeState>, intents: Vec<StatusTime> },
    /// Serf's join intent: `name` is a member as of Lamport time `ltime` (cancels an older leave).
    JoinIntent { name: String, ltime: u64 },
    /// Serf's leave intent: `name` leaves as of `ltime` (a force-leave when another node sends
    /// it); with `prune`, members erase it at once.
    LeaveIntent { name: String, ltime: u64, prune: bool },
    /// Ping `target` at `addr` for the sender and forward its ack (with the sender's `seq`);
    /// with `nack`, say so if no ack comes within the probe timeout.
    PingReq { seq: u32, target: String, addr: SocketAddr, nack: bool },
    /// A helper got no ack from the target of an indirect probe.
    Nack { seq: u32 },
}

/// A member's state as a datagram or a push-pull carries it, borrowing its strings from the
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct NodeStateRef<'a> {
    pub name: &'a str,
    pub addr: SocketAddr,
    pub incarnation: u32,
    pub status: Status,
    /// The tag map's pairs in the order they came (our encoder sorts them by key; a peer's
    /// may repeat a key, and the last one wins, as in a decoded map).
    pub tags: Vec<(&'a str, &'a str)>,
}

impl NodeStateRef<'_> {
    /// The state, owned.
    pub fn to_state(&self) -> NodeState {
        let tags = self.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NodeState {
            name: self.name.into(),
            addr: self.addr,
            incarnation: self.incarnation,
            status: self.status,
            tags: Tags::new(tags),
        }
    }

    /// The size [`tags_bytes`] gives the map these pairs decode to: a repeated key counts
    /// once, with its last value (as an owned decode's map counts it).
    fn tags_bytes(&self) -> usize {
        // A stream frame may carry thousands of pairs for one member: comparing each with
        // every later one would be quadratic in what a peer sends.
        if self.tags.len() > TAG_PAIRS_COMPARED_MAX {
            // Inserted one by one (a later value replaces an earlier one), so the map holds
            // the distinct keys only, however many times a peer repeats one.
            let mut kept = BTreeMap::new();
            for &(key, value) in &self.tags {
                kept.insert(key, value);
            }
            return kept.iter().map(|(k, v): (&&str, &&str)| k.len() + v.len() + 2).sum();
        }
        let pairs = self.tags.iter().enumerate();
        let kept = pairs.filter(|(i, (key, _))| !self.tags[i + 1..].iter().any(|(later, _)| later == key));
        kept.map(|(_, (k, v))| k.len() + v.len() + 2).sum()
    }

    /// Checks the state against the wire limits, as [`check_state`] does an owned one.
    fn check(&self) -> Result<(), CodecError> {
        check_name(self.name)?;
        check_tags_bytes(self.name, self.tags_bytes())
    }
}

/// Up to this many tag pairs, repeated keys are found by comparing pairs; beyond, by a map.
const TAG_PAIRS_COMPARED_MAX: usize = 16;

/// A push-pull's intent time, borrowed: decoded from a stream frame, or encoded from the table
/// without copying names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusTimeRef<'a> {
    pub name: &'a str,
    pub ltime: u64,
}

/// One gossip message as decoded from a datagram or a stream frame, borrowing its strings
/// from the bytes: most
/// of what gossip delivers repeats what a node knows, and is dropped without allocating. Its
/// variants are [`Message`]'s, in the same order, so that the same bytes decode as either.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub enum MessageRef<'a> {
    Ping {
        seq: u32,
        target: &'a str,
    },
    Ack {
        seq: u32,
    },
    Alive(#[serde(borrow)] NodeStateRef<'a>),
    Suspect {
        name: &'a str,
        incarnation: u32,
        from: &'a str,
    },
    Dead {
        name: &'a str,
        incarnation: u32,
        from: &'a str,
    },
    PushPull {
        join: bool,
        reply: bool,
        ltime: u64,
        #[serde(borrow)]
        states: Vec<NodeStateRef<'a>>,
        #[serde(borrow)]
        intents: Vec<StatusTimeRef<'a>>,
    },
    JoinIntent {
        name: &'a str,
        ltime: u64,
    },
    LeaveIntent {
        name: &'a str,
        ltime: u64,
        prune: bool,
    },
    PingReq {
        seq: u32,
        target: &'a str,
        addr: SocketAddr,
        nack: bool,
    },
    Nack {
        seq: u32,
    },
}

impl<'a> MessageRef<'a> {
    /// The member the message is about, if it is news about one (alive, suspect, dead, a join
    /// or leave intent): not an accuser, nor a ping's target.
    pub fn about(&self) -> Option<&'a str> {
        match *self {
            MessageRef::Alive(ref state) => Some(state.name),
            MessageRef::Suspect { name, .. } | MessageRef::Dead { name, .. } => Some(name),
            MessageRef::JoinIntent { name, .. } | MessageRef::LeaveIntent { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The message, owned.
    pub fn to_message(&self) -> Message {
        match *self {
            MessageRef::Ping { seq, target } => Message::Ping { seq, target: target.into() },
            MessageRef::Ack { seq } => Message::Ack { seq },
            MessageRef::Alive(ref state) => Message::Alive(state.to_state()),
            MessageRef::Suspect { name, incarnation, from } => {
                Message::Suspect { name: name.into(), incarnation, from: from.into() }
            }
            MessageRef::Dead { name, incarnation, from } => {
                Message::Dead { name: name.into(), incarnation, from: from.into() }
            }
            MessageRef::PushPull { join, reply, ltime, ref states, ref intents } => Message::PushPull {
                join,
                reply,
                ltime,
                states: states.iter().map(NodeStateRef::to_state).collect(),
                intents: intents.iter().map(|i| StatusTime { name: i.name.into(), ltime: i.ltime }).collect(),
            },
            MessageRef::JoinIntent { name, ltime } => Message::JoinIntent { name: name.into(), ltime },
            MessageRef::LeaveIntent { name, ltime, prune } => {
                Message::LeaveIntent { name: name.into(), ltime, prune }
            }
            MessageRef::PingReq { seq, target, addr, nack } => {
                Message::PingReq { seq, target: target.into(), addr, nack }
            }
            MessageRef::Nack { seq } => Message::Nack { seq },
        }
    }
}

/// A datagram could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// Over [`DATAGRAM_BYTES_MAX`].
    #[error("datagram of {bytes} bytes is over the {DATAGRAM_BYTES_MAX}-byte limit")]
    TooLarge { bytes: usize },
    /// A stream frame over what `members_max` members can take.
    #[error("stream frame of {bytes} bytes is over the {max}-byte limit")]
    StreamTooLarge { bytes: usize, max: usize },
    /// Not a packet in our format.
    #[error("malformed datagram: {0}")]
    Malformed(String),
    /// A field is over its limit.
    #[error("{0}")]
    OverLimit(String),
    /// Another version of the wire format (or no version byte at all).
    #[error("wire format version {got:?}, this agent speaks {PROTOCOL_VERSION}")]
    Version { got: Option<u8> },
    /// The label or the keyring refused the frame (an outsider, or another cluster).
    #[error("refused: {0}")]
    Refused(#[from] super::keyring::KeyringError),
}

/// Version of the wire format: the first byte of every datagram and stream frame. A peer
/// speaking another is refused with an error naming both, rather than misread.
pub const PROTOCOL_VERSION: u8 = 2;

/// The payload after a version byte this agent speaks.
fn versioned(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match bytes.split_first() {
        Some((&PROTOCOL_VERSION, payload)) => Ok(payload),
        Some((&got, _)) => Err(CodecError::Version { got: Some(got) }),
        None => Err(CodecError::Version { got: None }),
    }
}

/// `payload` after the version byte.
fn with_version(payload: impl serde::Serialize) -> Result<Vec<u8>, CodecError> {
    let mut bytes = vec![PROTOCOL_VERSION];
    postcard::to_io(&payload, &mut bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    Ok(bytes)
}

/// Encodes a compound packet.
pub fn encode(messages: &[Message]) -> Result<Vec<u8>, CodecError> {
    encode_compound(messages, std::iter::empty())
}

/// One message encoded on its own, as a broadcast queue keeps it: [`encode_compound`] puts it
/// in a packet as it is.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(message).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Encodes a compound packet of `messages` followed by messages already encoded with
/// [`encode_message`]: the same bytes as [`encode`] of them all (a compound is a count and the
/// messages one after another).
pub fn encode_compound<'a>(
    messages: &[Message],
    encoded: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = vec![PROTOCOL_VERSION];
    let count = messages.len() + encoded.len();
    postcard::to_io(&count, &mut bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    for message in messages {
        postcard::to_io(message, &mut bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    }
    for message in encoded {
        bytes.extend_from_slice(message);
    }
    if bytes.len() > DATAGRAM_BYTES_MAX {
        return Err(CodecError::TooLarge { bytes: bytes.len() });
    }
    Ok(bytes)
}

/// Size of one message once encoded, for packing compounds.
pub fn encoded_len(message: &Message) -> usize {
    postcard::experimental::serialized_size(message).unwrap_or(DATAGRAM_BYTES_MAX)
}

/// Decodes and validates a compound packet.
pub fn decode(bytes: &[u8]) -> Result<Vec<Message>, CodecError> {
    Ok(decode_borrowed(bytes)?.iter().map(MessageRef::to_message).collect())
}

/// Decodes and validates a compound packet without copying its strings.
pub fn decode_borrowed(bytes: &[u8]) -> Result<Vec<MessageRef<'_>>, CodecError> {
    if bytes.len() > DATAGRAM_BYTES_MAX {
        return Err(CodecError::TooLarge { bytes: bytes.len() });
    }
    let messages: Vec<MessageRef<'_>> =
        postcard::from_bytes(versioned(bytes)?).map_err(|e| CodecError::Malformed(e.to_string()))?;
    for message in &messages {
        validate(message)?;
    }
    Ok(messages)
}

/// Encodes a push-pull for a stream (without the length prefix).
pub fn encode_stream(message: &Message) -> Result<Vec<u8>, CodecError> {
    with_version(message)
}

/// A push-pull made of references into a member table: encodes to the same bytes as the
/// owned [`Message::PushPull`], without copying 10,000 members to say so.
pub struct PushPullRef<'a> {
    pub join: bool,
    pub reply: bool,
    pub ltime: u64,
    pub states: Vec<&'a NodeState>,
    pub intents: Vec<StatusTimeRef<'a>>,
}

/// [`Message::PushPull`]'s place among [`Message`]'s variants (a test keeps it in step).
const PUSH_PULL_VARIANT: u32 = 5;

impl Serialize for PushPullRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut variant = serializer.serialize_struct_variant("Message", PUSH_PULL_VARIANT, "PushPull", 5)?;
        variant.serialize_field("join", &self.join)?;
        variant.serialize_field("reply", &self.reply)?;
        variant.serialize_field("ltime", &self.ltime)?;
        variant.serialize_field("states", &self.states)?;
        variant.serialize_field("intents", &self.intents)?;
        variant.end()
    }
}

/// Encodes a push-pull of references for a stream (without the length prefix).
pub fn encode_push_pull(push_pull: &PushPullRef<'_>) -> Result<Vec<u8>, CodecError> {
    with_version(push_pull)
}

/// Decodes and validates a stream frame: one push-pull of at most `members_max` members, or
/// a TCP ping or its ack.
pub fn decode_stream(bytes: &[u8], members_max: usize) -> Result<Message, CodecError> {
    decode_stream_borrowed(bytes, members_max).map(|message| message.to_message())
}

/// [`decode_stream`] borrowing the frame's strings: a push-pull mostly lists members the
/// receiver knows, and those are compared, not copied.
pub fn decode_stream_borrowed(bytes: &[u8], members_max: usize) -> Result<MessageRef<'_>, CodecError> {
    let max = stream_bytes_max(members_max);
    if bytes.len() > max {
        return Err(CodecError::StreamTooLarge { bytes: bytes.len(), max });
    }
    let message: MessageRef<'_> =
        postcard::from_bytes(versioned(bytes)?).map_err(|e| CodecError::Malformed(e.to_string()))?;
    match &message {
        MessageRef::PushPull { states, intents, .. } if states.len().max(intents.len()) > members_max => {
            return Err(CodecError::OverLimit(format!(
                "push-pull of {} members and {} intents (at most {members_max} each)",
                states.len(),
                intents.len()
            )));
        }
        MessageRef::PushPull { states, intents, .. } => {
            states.iter().try_for_each(NodeStateRef::check)?;
            intents.iter().try_for_each(|intent| check_name(intent.name))?;
        }
        // The TCP ping fallback and its answer.
        MessageRef::Ping { target, .. } => check_name(target)?,
        MessageRef::Ack { .. } => {}
        _ => {
            return Err(CodecError::Malformed(
                "only a push-pull, a ping or an ack goes over a stream".into(),
            ));
        }
    }
    Ok(message)
}

fn check_name(name: &str) -> Result<(), CodecError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(CodecError::OverLimit(format!(
            "node name of {} bytes (1 to {NAME_BYTES_MAX} allowed)",
            name.len()
        )));
    }
    Ok(())
}

/// The size a tag map counts against [`TAGS_BYTES_MAX`].
pub fn tags_bytes(tags: &BTreeMap<String, String>) -> usize {
    tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// Checks a member's state against the wire limits (name and tag sizes).
pub fn check_state(state: &NodeState) -> Result<(), CodecError> {
    check_name(&state.name)?;
    check_tags_bytes(&state.name, tags_bytes(&state.tags))
}

/// Refuses `name`'s tags when they take more than [`TAGS_BYTES_MAX`].
fn check_tags_bytes(name: &str, bytes: usize) -> Result<(), CodecError> {
    if bytes > TAGS_BYTES_MAX {
        return Err(CodecError::OverLimit(format!(
            "tags of {name} are {bytes} bytes (at most {TAGS_BYTES_MAX})"
        )));
    }
    Ok(())
}

fn validate(message: &MessageRef<'_>) -> Result<(), CodecError> {
    match message {
        MessageRef::Ping { target, .. } => check_name(target),
        MessageRef::Ack { .. } | MessageRef::Nack { .. } => Ok(()),
        MessageRef::PingReq { target, .. } => check_name(target),
        // An alive message is about an alive node; another status is a peer's error.
        MessageRef::Alive(state) if state.status != Status::Alive => Err(CodecError::Malformed(format!(
            "alive message about {} carries status {:?}",
            state.name, state.status
        ))),
        MessageRef::Alive(state) => state.check(),
        MessageRef::Suspect { name, from, .. } | MessageRef::Dead { name, from, .. } => {
            check_name(name)?;
            check_name(from)
        }
        MessageRef::JoinIntent { name, .. } | MessageRef::LeaveIntent { name, .. } => check_name(name),
        MessageRef::PushPull { .. } => {
            Err(CodecError::Malformed("a push-pull arrives over a stream, never in a datagram".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str) -> NodeState {
        NodeState {
            name: name.into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            incarnation: 3,
            status: Status::Alive,
            tags: Tags::new(BTreeMap::from([("role".into(), "backend".into())])),
        }
    }

    fn push_pull(states: Vec<NodeState>) -> Message {
        Message::PushPull { join: false, reply: false, ltime: 0, states, intents: vec![] }
    }

    /// A member's state as another encoder may write it: tags as a list of pairs.
    type WireState = (String, SocketAddr, u32, Status, Vec<(String, String)>);

    /// [`Message`]'s first variants as another encoder may write them (the same places).
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum Wire {
        Ping(u32, String),
        Ack(u32),
        Alive(WireState),
        Suspect(u32),
        Dead(u32),
        PushPull(bool, bool, u64, Vec<WireState>, Vec<(String, u64)>),
    }

    /// A peer's encoder may repeat a tag key: the datagram counts the tags as the decoded
    /// map holds them (the last value per key), as a push-pull does.
    #[test]
    fn repeated_tag_keys_count_once_with_their_last_value() {
        let value = |c: char| c.to_string().repeat(100);
        // The first value alone is over the limit: only the last one may count.
        let first = ("k".to_string(), "x".repeat(TAGS_BYTES_MAX));
        let later = "abcde".chars().map(|c| ("k".to_string(), value(c)));
        let tags: Vec<(String, String)> = std::iter::once(first).chain(later).collect();
        let alive = Wire::Alive(("s1".into(), "10.0.0.1:7946".parse().unwrap(), 1, Status::Alive, tags));
        let bytes = with_version(vec![alive]).unwrap();
        assert!(bytes.len() <= DATAGRAM_BYTES_MAX);
        let messages = decode(&bytes).expect("103 bytes of tags once repeats are merged");
        let Message::Alive(state) = &messages[0] else { panic!("{messages:?}") };
        assert_eq!(*state.tags, BTreeMap::from([("k".to_string(), value('e'))]));
    }

    /// In a stream frame one member may carry thousands of tag pairs: repeats still count
    /// once (found through a map, not pair by pair), and distinct keys still count in full.
    #[test]
    fn a_push_pull_counts_many_repeated_tag_keys_once() {
        let frame = |tags: Vec<(String, String)>| {
            let state = ("s1".to_string(), "10.0.0.1:7946".parse().unwrap(), 1, Status::Alive, tags);
            with_version(Wire::PushPull(false, false, 0, vec![state], vec![])).unwrap()
        };
        // The first value alone is over the limit: only the last one may count.
        let first = ("k".to_string(), "x".repeat(TAGS_BYTES_MAX));
        let repeated: Vec<(String, String)> =
            std::iter::once(first).chain((0..5_000).map(|i| ("k".into(), i.to_string()))).collect();
        // A frame may take about STATE_BYTES_MAX per member the receiver allows.
        let message = decode_stream(&frame(repeated), 100).expect("one key, counted once");
        let Message::PushPull { states, .. } = &message else { panic!("{message:?}") };
        assert_eq!(*states[0].tags, BTreeMap::from([("k".to_string(), "4999".to_string())]));
        let distinct: Vec<(String, String)> = (0..100).map(|i| (format!("k{i}"), "v".into())).collect();
        let refused = decode_stream(&frame(distinct), 100).unwrap_err();
        assert!(matches!(refused, CodecError::OverLimit(_)), "{refused:?}");
    }

    /// The answer to a push-pull is encoded from references into the table: the same bytes
    /// as the owned message (and so [`PUSH_PULL_VARIANT`] is `Message::PushPull`'s place).
    #[test]
    fn a_push_pull_of_references_encodes_as_the_owned_one() {
        let states = vec![state("s1"), state("s2")];
        let owned = Message::PushPull {
            join: true,
            reply: false,
            ltime: 9,
            states: states.clone(),
            intents: vec![StatusTime { name: "s2".into(), ltime: 4 }],
        };
        let borrowed = PushPullRef {
            join: true,
            reply: false,
            ltime: 9,
            states: states.iter().collect(),
            intents: vec![StatusTimeRef { name: "s2", ltime: 4 }],
        };
        let bytes = encode_push_pull(&borrowed).unwrap();
        assert_eq!(bytes, encode_stream(&owned).unwrap());
        assert_eq!(decode_stream(&bytes, 2).unwrap(), owned);
    }

    #[test]
    fn round_trips_every_message() {
        let messages = vec![
            Message::Ping { seq: 7, target: "s1".into() },
            Message::Ack { seq: 7 },
            Message::Alive(state("s1")),
            Message::Suspect { name: "s1".into(), incarnation: 2, from: "ha".into() },
            Message::Dead { name: "s2".into(), incarnation: 0, from: "ha".into() },
            Message::PingReq {
                seq: 8,
                target: "s1".into(),
                addr: "10.0.0.2:7946".parse().unwrap(),
                nack: true,
            },
            Message::Nack { seq: 8 },
            Message::JoinIntent { name: "s1".into(), ltime: 12 },
            Message::LeaveIntent { name: "s2".into(), ltime: 13, prune: true },
        ];
        let bytes = encode(&messages).unwrap();
        assert_eq!(decode(&bytes).unwrap(), messages);
        let push_pull = Message::PushPull {
            join: true,
            reply: false,
            ltime: 9,
            states: vec![state("s1"), state("s2")],
            intents: vec![StatusTime { name: "s1".into(), ltime: 4 }],
        };
        assert_eq!(decode_stream(&encode_stream(&push_pull).unwrap(), 2).unwrap(), push_pull);
        let sum: usize = messages.iter().map(encoded_len).sum();
        assert!(sum < bytes.len() + 1, "per-message sizes bound the compound");
    }

    #[test]
    fn a_compound_of_messages_encoded_apart_is_the_compound_of_the_messages() {
        let messages = vec![
            Message::Ack { seq: 7 },
            Message::Alive(state("s1")),
            Message::JoinIntent { name: "s1".into(), ltime: 12 },
        ];
        let apart: Vec<Vec<u8>> = messages[1..].iter().map(|m| encode_message(m).unwrap()).collect();
        let compound = encode_compound(&messages[..1], apart.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(compound, encode(&messages).unwrap());
        assert!(messages.iter().all(|m| encode_message(m).unwrap().len() == encoded_len(m)));
        // More than 127 messages take a two-byte count.
        let many = vec![Message::Ack { seq: 1 }; 130];
        let encoded: Vec<Vec<u8>> = many.iter().map(|m| encode_message(m).unwrap()).collect();
        assert_eq!(encode_compound(&[], encoded.iter().map(Vec::as_slice)).unwrap(), encode(&many).unwrap());
    }

    #[test]
    fn rejects_garbage_truncation_and_oversize() {
        assert!(matches!(decode(&[PROTOCOL_VERSION, 0xff, 0xff, 0xff]), Err(CodecError::Malformed(_))));
        assert_eq!(decode(&[]), Err(CodecError::Version { got: None }));
        let next = PROTOCOL_VERSION + 1;
        assert_eq!(decode(&[next, 0]), Err(CodecError::Version { got: Some(next) }));
        let stream = encode_stream(&push_pull(vec![])).unwrap();
        let mut newer = stream.clone();
        newer[0] = PROTOCOL_VERSION + 1;
        assert!(matches!(decode_stream(&newer, 4), Err(CodecError::Version { .. })));
        let bytes = encode(&[Message::Alive(state("s1"))]).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(decode(&[0; 1401]), Err(CodecError::TooLarge { bytes: 1401 }));
    }

    #[test]
    fn rejects_over_limit_fields() {
        let mut big = state("s1");
        std::sync::Arc::make_mut(&mut big.tags).insert("k".into(), "v".repeat(600));
        let bytes = with_version(vec![Message::Alive(big)]).unwrap();
        assert!(matches!(decode(&bytes), Err(CodecError::TooLarge { .. } | CodecError::OverLimit(_))));
        let bytes = with_version(vec![Message::Ping { seq: 1, target: String::new() }]).unwrap();
        assert!(matches!(decode(&bytes), Err(CodecError::OverLimit(_))));
    }

    #[test]
    fn push_pull_only_over_a_stream_and_within_the_member_limit() {
        let datagram = with_version(vec![push_pull(vec![state("s1")])]).unwrap();
        assert!(matches!(decode(&datagram), Err(CodecError::Malformed(_))), "amplification vector");
        let nack = encode_stream(&Message::Nack { seq: 1 }).unwrap();
        assert!(matches!(decode_stream(&nack, 10), Err(CodecError::Malformed(_))));
        let ping = Message::Ping { seq: 1, target: "s1".into() };
        assert_eq!(decode_stream(&encode_stream(&ping).unwrap(), 10).unwrap(), ping, "the TCP ping fallback");
        let many = push_pull((0..100).map(|i| state(&format!("node-{i}"))).collect());
        let bytes = encode_stream(&many).unwrap();
        assert!(bytes.len() > DATAGRAM_BYTES_MAX, "no datagram cap on a stream");
        assert_eq!(decode_stream(&bytes, 100).unwrap(), many);
        assert!(matches!(decode_stream(&bytes, 99), Err(CodecError::OverLimit(_))));
        assert!(matches!(decode_stream(&bytes, 1), Err(CodecError::StreamTooLarge { .. })));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_an_error_or_a_message_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let _ = decode(&bytes);
            let _ = decode_stream(&bytes, 64);
            let versioned: Vec<u8> = std::iter::once(PROTOCOL_VERSION).chain(bytes.iter().copied()).collect();
            let _ = decode(&versioned);
            let _ = decode_stream(&versioned, 64);
        }

        #[test]
        fn every_valid_message_round_trips(message in arbitrary::message()) {
            match &message {
                Message::PushPull { .. } => {
                    let bytes = encode_stream(&message).unwrap();
                    proptest::prop_assert_eq!(decode_stream(&bytes, 64).unwrap(), message);
                }
                _ => {
                    let bytes = encode(std::slice::from_ref(&message)).unwrap();
                    proptest::prop_assert_eq!(decode(&bytes).unwrap(), vec![message]);
                }
            }
        }
    }
}

/// Strategies for property tests: valid but hostile messages (huge incarnations, every
/// status, names a peer may or may not know).
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["ha", "s1", "s2", "s3", "ghost"]).prop_map(String::from),
            "[a-z]{1,20}",
        ]
    }

    fn incarnation() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..4, Just(u32::MAX), Just(u32::MAX - 1), any::<u32>()]
    }

    fn ltime() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..8, Just(u64::MAX), any::<u64>()]
    }

    fn intents() -> impl Strategy<Value = Vec<StatusTime>> {
        prop::collection::vec((name(), ltime()).prop_map(|(name, ltime)| StatusTime { name, ltime }), 0..6)
    }

    fn state(alive: bool) -> impl Strategy<Value = NodeState> {
        let status = if alive {
            Just(Status::Alive).boxed()
        } else {
            prop::sample::select(vec![Status::Alive, Status::Suspect, Status::Dead, Status::Left]).boxed()
        };
        (name(), 1u8..8, incarnation(), status).prop_map(|(name, host, incarnation, status)| NodeState {
            name: name.into(),
            addr: SocketAddr::from(([10, 0, 0, host], 7946)),
            incarnation,
            status,
            tags: Tags::new(BTreeMap::from([("role".into(), "backend".into())])),
        })
    }

    /// Any message the codec accepts.
    pub fn message() -> impl Strategy<Value = Message> {
        let addr = (1u8..8).prop_map(|host| SocketAddr::from(([10, 0, 0, host], 7946)));
        prop_oneof![
            (any::<u32>(), name()).prop_map(|(seq, target)| Message::Ping { seq, target }),
            any::<u32>().prop_map(|seq| Message::Ack { seq }),
            any::<u32>().prop_map(|seq| Message::Nack { seq }),
            state(true).prop_map(Message::Alive),
            (name(), incarnation(), name()).prop_map(|(name, incarnation, from)| Message::Suspect {
                name,
                incarnation,
                from
            }),
            (name(), incarnation(), name()).prop_map(|(name, incarnation, from)| Message::Dead {
                name,
                incarnation,
                from
            }),
            (any::<u32>(), name(), addr, any::<bool>())
                .prop_map(|(seq, target, addr, nack)| Message::PingReq { seq, target, addr, nack }),
            (name(), ltime()).prop_map(|(name, ltime)| Message::JoinIntent { name, ltime }),
            (name(), ltime(), any::<bool>()).prop_map(|(name, ltime, prune)| Message::LeaveIntent {
                name,
                ltime,
                prune
            }),
            (any::<bool>(), any::<bool>(), ltime(), prop::collection::vec(state(false), 0..6), intents())
                .prop_map(|(join, reply, ltime, states, intents)| Message::PushPull {
                    join,
                    reply,
                    ltime,
                    states,
                    intents
                }),
        ]
    }
}
