//! Serf's `-snapshot` with `-rejoin`: the agent keeps the members it knows alive in a file on
//! the host's disk, and a restarted agent push-pulls with them at start, so a rebooted node
//! does not wait for a peer to find it. Serf's snapshot is an append log with compaction;
//! ours is the whole list, rewritten atomically when it changes (tens of lines, not a log).

use std::net::SocketAddr;
use std::path::Path;

use super::codec::{NodeState, Status};

/// Addresses a restarted agent push-pulls with at most (Serf tries every one; with
/// thousands of members a few random ones bring the whole table just as well).
pub const REJOIN_MAX: usize = 16;

/// The snapshot's text: one `name address` line per alive member other than `me`.
pub fn render(members: &[NodeState], me: &str) -> String {
    let alive = members.iter().filter(|m| &*m.name != me && m.status == Status::Alive);
    alive.map(|m| format!("{} {}\n", m.name, m.addr)).collect()
}

/// The addresses in a snapshot, in file order; a line that does not parse is skipped and
/// named (a torn or edited file must not stop the agent).
pub fn parse(path: &Path, text: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        // The address is the last field: a name with spaces (peers choose names) cannot
        // shift it.
        match line
            .split_whitespace()
            .nth(1)
            .and(line.split_whitespace().last())
            .and_then(|addr| addr.parse().ok())
        {
            Some(addr) => addrs.push(addr),
            None if line.trim().is_empty() => {}
            None => tracing::warn!("{}:{}: not `name address`, skipped", path.display(), number + 1),
        }
    }
    addrs
}

#[cfg(test)]
mod tests {

    use super::*;

    fn member(name: &str, host: u8, status: Status) -> NodeState {
        let addr = SocketAddr::from(([10, 0, 0, host], 7946));
        NodeState { name: name.into(), addr, incarnation: 0, status, tags: Default::default() }
    }

    #[test]
    fn alive_peers_round_trip_and_bad_lines_are_skipped() {
        let members =
            [member("ha", 1, Status::Alive), member("s1", 2, Status::Alive), member("s2", 3, Status::Dead)];
        let text = render(&members, "ha");
        assert_eq!(text, "s1 10.0.0.2:7946\n");
        let torn = format!("{text}s3 10.0.0.\n\ns4 10.0.0.5:7946\n");
        let path = Path::new("/serf/snapshot");
        assert_eq!(parse(path, &torn), ["10.0.0.2:7946".parse().unwrap(), "10.0.0.5:7946".parse().unwrap()]);
    }
}
