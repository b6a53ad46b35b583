//! Serf's `-encrypt`: a keyring of AES-GCM keys and memberlist's packet label, applied to
//! every datagram and stream frame.
//!
//! On the wire, outside in, as memberlist frames them: an optional label header (`244`, a
//! length byte, the label), then, with a keyring, a version byte (`1`: no padding), a
//! 12-byte nonce and the AES-GCM ciphertext with its 16-byte tag, the label as associated
//! data. The primary key seals; every installed key is tried to open, so a key can be
//! installed everywhere, then used, then the old one removed, without dropping a packet.
//!
//! Beyond memberlist, which accepts a sealed frame replayed by anyone who sniffed it: a frame
//! sent to an agent is bound to that agent's address (the address goes into the associated
//! data), so it opens nowhere else, and each agent refuses a nonce it has opened before
//! ([`ReplayWindow`], the last [`NONCES_REMEMBERED`]).
//!
//! Sans-io: the nonce comes from the caller's seeded RNG.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;
use rand::RngCore;

/// Keys a keyring holds at once; installing more is refused (Serf has no limit; a rotation
/// needs two).
pub const KEYS_MAX: usize = 16;
/// memberlist's encryption version without padding.
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// What sealing adds to a frame: version, nonce and tag.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + TAG_BYTES;
/// memberlist's label header type, the outermost byte of a labelled packet.
const LABEL_HEADER: u8 = 244;
/// Longest label (memberlist's `LabelMaxSize`).
pub const LABEL_BYTES_MAX: usize = 255;
/// The label header's type and length bytes.
const LABEL_HEADER_BYTES: usize = 2;
/// Most bytes sealing and a label add to a frame.
pub const WIRE_OVERHEAD_BYTES: usize = SEAL_OVERHEAD_BYTES + LABEL_HEADER_BYTES + LABEL_BYTES_MAX;
/// Nonces an agent remembers to refuse replays: at tens of frames a second, minutes of them.
pub const NONCES_REMEMBERED: usize = 4096;

/// A frame's nonce.
pub type Nonce12 = [u8; NONCE_BYTES];

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// Why a key, a keyring change or a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("key is not valid base64: {0}")]
    NotBase64(String),
    #[error("key of {0} bytes: AES keys are 16, 24 or 32 bytes (serf keygen makes 32)")]
    KeyLength(usize),
    #[error("gossip is not encrypted: there is no keyring to change")]
    Disabled,
    #[error("a keyring needs at least one key")]
    Empty,
    #[error("the keyring already holds {KEYS_MAX} keys")]
    Full,
    #[error("key {0} is not installed")]
    NotInstalled(String),
    #[error("key {0} is the primary key: use another key before removing it")]
    RemovePrimary(String),
    #[error("label of {0} bytes (at most {LABEL_BYTES_MAX})")]
    LabelTooLong(usize),
    #[error("frame without the label '{expected}'")]
    LabelMismatch { expected: String },
    #[error("frame of {0} bytes is too short to be sealed")]
    TooShort(usize),
    #[error("sealed with unknown version {0}")]
    Version(u8),
    #[error("no installed key opens the frame (another key, or a frame meant for another address)")]
    NoKeyOpens,
    #[error("a replay: this frame's nonce was opened before")]
    Replayed,
}

/// One AES-GCM key, by its size.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// A key and its cipher, ready to use.
#[derive(Clone)]
pub struct Key {
    bytes: Vec<u8>,
    cipher: Cipher,
}

impl Key {
    /// A key from its base64 form, as `serf keygen` prints it and `-encrypt` takes it.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| KeyringError::NotBase64(error.to_string()))?;
        Self::from_bytes(bytes)
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyringError> {
        let cipher = match bytes.len() {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(&bytes).expect("16 bytes"))),
            24 => Cipher::Aes192(Box::new(Aes192Gcm::new_from_slice(&bytes).expect("24 bytes"))),
            32 => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(&bytes).expect("32 bytes"))),
            other => return Err(KeyringError::KeyLength(other)),
        };
        Ok(Self { bytes, cipher })
    }

    /// The key in base64, as Serf lists keys.
    pub fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    fn seal(&self, nonce: &[u8; NONCE_BYTES], payload: Payload<'_, '_>) -> Vec<u8> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        let sealed = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(nonce, payload),
            Cipher::Aes192(c) => c.encrypt(nonce, payload),
            Cipher::Aes256(c) => c.encrypt(nonce, payload),
        };
        // AES-GCM fails only past 64 GiB of plaintext; a frame is bounded far below.
        sealed.expect("a frame within AES-GCM's plaintext limit")
    }

    fn open(&self, nonce: &[u8], payload: Payload<'_, '_>) -> Option<Vec<u8>> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(nonce, payload),
            Cipher::Aes192(c) => c.decrypt(nonce, payload),
            Cipher::Aes256(c) => c.decrypt(nonce, payload),
        }
        .ok()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl fmt::Debug for Key {
    /// Never the key itself: logs and traces show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(AES-{})", self.bytes.len() * 8)
    }
}

/// A change to a running agent's keyring (`serf keys -install|-use|-remove KEY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOp {
    /// Add a key to those tried to open frames.
    Install,
    /// Make an installed key the primary, which seals.
    Use,
    /// Remove a key that is not the primary.
    Remove,
}

impl KeyOp {
    /// The op's name, as `serf keys` spells its flag.
    pub fn name(self) -> &'static str {
        match self {
            KeyOp::Install => "install",
            KeyOp::Use => "use",
            KeyOp::Remove => "remove",
        }
    }
}

/// The keys of one agent: the first seals, all open.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyring {
    /// The primary key first.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of `keys`, the first one primary.
    pub fn new(keys: Vec<Key>) -> Result<Self, KeyringError> {
        let mut ring = Self { keys: Vec::new() };
        for key in keys {
            ring.install(key)?;
        }
        if ring.keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(ring)
    }

    /// A keyring from base64 keys, the first one primary (Serf's keyring file).
    pub fn parse(keys: &[String]) -> Result<Self, KeyringError> {
        Self::new(keys.iter().map(|key| Key::parse(key)).collect::<Result<_, _>>()?)
    }

    /// The keyring a `-keyring-file` holds: a JSON list of base64 keys, primary first.
    pub fn from_file_text(bytes: &[u8]) -> Result<Self, String> {
        let keys: Vec<String> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Self::parse(&keys).map_err(|e| e.to_string())
    }

    /// Applies `op` to `key`.
    pub fn apply(&mut self, op: KeyOp, key: Key) -> Result<(), KeyringError> {
        match op {
            KeyOp::Install => self.install(key),
            KeyOp::Use => self.use_key(&key),
            KeyOp::Remove => self.remove(&key),
        }
    }

    fn install(&mut self, key: Key) -> Result<(), KeyringError> {
        if self.keys.contains(&key) {
            return Ok(());
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(KeyringError::Full);
        }
        self.keys.push(key);
        Ok(())
    }

    fn use_key(&mut self, key: &Key) -> Result<(), KeyringError> {
        let at = self.position(key)?;
        let key = self.keys.remove(at);
        self.keys.insert(0, key);
        Ok(())
    }

    fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        match self.position(key)? {
            0 => Err(KeyringError::RemovePrimary(key.encoded())),
            at => {
                self.keys.remove(at);
                Ok(())
            }
        }
    }

    fn position(&self, key: &Key) -> Result<usize, KeyringError> {
        self.keys.iter().position(|k| k == key).ok_or_else(|| KeyringError::NotInstalled(key.encoded()))
    }

    /// The keys in base64, the primary first (what a keyring file holds).
    pub fn encoded(&self) -> Vec<String> {
        self.keys.iter().map(Key::encoded).collect()
    }
}

/// How one agent's frames look on the wire: an optional label and an optional keyring.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wire {
    /// memberlist's `Label`: frames without it are refused, and it is sealed in.
    pub label: Option<String>,
    pub keyring: Option<Keyring>,
}

impl Wire {
    /// A wire with `label` (empty means none) and `keyring`.
    pub fn new(label: Option<String>, keyring: Option<Keyring>) -> Result<Self, KeyringError> {
        let label = label.filter(|label| !label.is_empty());
        if let Some(label) = &label
            && label.len() > LABEL_BYTES_MAX
        {
            return Err(KeyringError::LabelTooLong(label.len()));
        }
        Ok(Self { label, keyring })
    }

    /// Whether frames go out as they are.
    pub fn is_plain(&self) -> bool {
        self.label.is_none() && self.keyring.is_none()
    }

    /// Bytes [`Wire::seal`] adds to a frame.
    pub fn overhead(&self) -> usize {
        let label = self.label.as_ref().map_or(0, |label| LABEL_HEADER_BYTES + label.len());
        let seal = if self.keyring.is_some() { SEAL_OVERHEAD_BYTES } else { 0 };
        label + seal
    }

    /// `frame` as it goes on the wire: sealed with the primary key, a fresh nonce from `rng`,
    /// and bound to the receiver's address `to` if given (a stream's answer rides the
    /// connection its request opened, and is not).
    pub fn seal(&self, frame: Vec<u8>, to: Option<SocketAddr>, rng: &mut impl RngCore) -> Vec<u8> {
        if self.is_plain() {
            return frame;
        }
        let aad = self.associated_data(to);
        let aad = aad.as_slice();
        let mut wire = Vec::with_capacity(frame.len() + self.overhead());
        if let Some(label) = &self.label {
            wire.extend_from_slice(&[LABEL_HEADER, label.len() as u8]);
            wire.extend_from_slice(label.as_bytes());
        }
        match &self.keyring {
            Some(ring) => {
                let mut nonce = [0u8; NONCE_BYTES];
                rng.fill_bytes(&mut nonce);
                wire.push(VERSION);
                wire.extend_from_slice(&nonce);
                wire.extend(ring.keys[0].seal(&nonce, Payload { msg: &frame, aad }));
            }
            None => wire.extend_from_slice(&frame),
        }
        wire
    }

    /// The frame inside `wire`, sent to `me` (or unbound), and its nonce if it was sealed;
    /// or why it is refused: no label or another one, or no installed key opens it.
    pub fn open<'a>(
        &self,
        wire: &'a [u8],
        me: Option<SocketAddr>,
    ) -> Result<(Cow<'a, [u8]>, Option<Nonce12>), KeyringError> {
        let body = self.strip_label(wire)?;
        let Some(ring) = &self.keyring else { return Ok((Cow::Borrowed(body), None)) };
        if body.len() < SEAL_OVERHEAD_BYTES {
            return Err(KeyringError::TooShort(body.len()));
        }
        if body[0] != VERSION {
            return Err(KeyringError::Version(body[0]));
        }
        let (nonce, sealed) = body[1..].split_at(NONCE_BYTES);
        let aad = self.associated_data(me);
        let frame = ring.keys.iter().find_map(|key| key.open(nonce, Payload { msg: sealed, aad: &aad }));
        let nonce: Nonce12 = nonce.try_into().expect("split at the nonce's length");
        frame.map(|frame| (Cow::Owned(frame), Some(nonce))).ok_or(KeyringError::NoKeyOpens)
    }

    /// The label, then the receiver's address if the frame is bound to one.
    fn associated_data(&self, to: Option<SocketAddr>) -> Vec<u8> {
        let mut aad = self.label.as_deref().unwrap_or("").as_bytes().to_vec();
        if let Some(to) = to {
            match to.ip() {
                std::net::IpAddr::V4(ip) => aad.extend_from_slice(&ip.octets()),
                std::net::IpAddr::V6(ip) => aad.extend_from_slice(&ip.octets()),
            }
            aad.extend_from_slice(&to.port().to_be_bytes());
        }
        aad
    }

    fn strip_label<'a>(&self, wire: &'a [u8]) -> Result<&'a [u8], KeyringError> {
        let Some(label) = &self.label else { return Ok(wire) };
        let mismatch = || KeyringError::LabelMismatch { expected: label.clone() };
        match wire {
            [LABEL_HEADER, len, rest @ ..] if rest.len() >= *len as usize => {
                let (theirs, body) = rest.split_at(*len as usize);
                if theirs == label.as_bytes() { Ok(body) } else { Err(mismatch()) }
            }
            _ => Err(mismatch()),
        }
    }
}

/// The nonces an agent opened last: a frame whose nonce is among them is a replay.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    order: VecDeque<Nonce12>,
    seen: BTreeSet<Nonce12>,
}

impl ReplayWindow {
    /// Remembers `nonce`; false if it was remembered already (the frame is a replay).
    pub fn first_sight(&mut self, nonce: Nonce12) -> bool {
        if !self.seen.insert(nonce) {
            return false;
        }
        if self.order.len() == NONCES_REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(nonce);
        true
    }
}

#[cfg(test)]
mod tests;
