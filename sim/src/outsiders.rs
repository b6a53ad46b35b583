//! What attacker hosts sent, and what the agents they reached made of it, read from the
//! trace: each frame from an attacker's address that an agent received, and whether the
//! agent refused it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::trace::{Entry, Trace};
use rollcall::host::Event;

/// One frame from an attacker that reached an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsiderFrame {
    pub at: Duration,
    /// The agent's host.
    pub receiver: String,
    pub attacker: String,
    /// A push-pull, not a datagram.
    pub stream: bool,
    /// The agent refused it (it did not open or decode).
    pub refused: bool,
}

/// Everything attackers did in one run.
#[derive(Clone, Debug, Default)]
pub struct Attacks {
    /// Per attacker, per kind of move: how many it sent.
    pub sent: BTreeMap<String, BTreeMap<String, u64>>,
    /// The frames that reached an agent, in trace order.
    pub frames: Vec<OutsiderFrame>,
}

impl Attacks {
    /// Reads `trace`: attackers are known by the address their records name.
    pub fn new(trace: &Trace) -> Self {
        let mut attacks = Attacks::default();
        let mut attacker_ips: BTreeMap<IpAddr, String> = BTreeMap::new();
        for record in &trace.records {
            if let Entry::Host(Event::AttackSent { what, from, .. }) = &record.event {
                *attacks.sent.entry(record.host.clone()).or_default().entry(what.clone()).or_default() += 1;
                if let Some(ip) = ip_of(from) {
                    attacker_ips.insert(ip, record.host.clone());
                }
            }
        }
        // Without attackers there is nothing to pair: skip parsing every frame's sender.
        if attacker_ips.is_empty() {
            return attacks;
        }
        // A frame is refused when its rejection, from the same sender and of the same kind,
        // is the next such record on the same host (the driver records both at once).
        let mut pending: BTreeMap<(String, bool), (usize, IpAddr)> = BTreeMap::new();
        for record in &trace.records {
            let Entry::Host(event) = &record.event else { continue };
            let (from, stream, arrived) = match event {
                Event::DatagramReceived { from, .. } => (from, false, true),
                Event::StreamReceived { from, .. } => (from, true, true),
                Event::DatagramRejected { from, .. } => (from, false, false),
                Event::StreamRejected { from, .. } => (from, true, false),
                _ => continue,
            };
            let Some(ip) = ip_of(from) else { continue };
            let key = (record.host.clone(), stream);
            let Some(attacker) = attacker_ips.get(&ip) else {
                // Another sender's frame came in between: the attacker's before it was kept.
                if arrived {
                    pending.remove(&key);
                }
                continue;
            };
            if arrived {
                pending.insert(key, (attacks.frames.len(), ip));
                let (receiver, attacker) = (record.host.clone(), attacker.clone());
                attacks.frames.push(OutsiderFrame {
                    at: record.at(),
                    receiver,
                    attacker,
                    stream,
                    refused: false,
                });
            } else if let Some((index, _)) = pending.remove(&key).filter(|(_, sender)| *sender == ip) {
                attacks.frames[index].refused = true;
            }
        }
        attacks
    }

    /// Whether the run had an attacker.
    pub fn any(&self) -> bool {
        !self.sent.is_empty()
    }
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}
