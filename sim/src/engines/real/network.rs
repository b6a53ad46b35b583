//! The real engine's network: one namespace per host, each wired through a veth pair to a
//! bridge that lives in a namespace of its own, so nothing is added to the machine's own
//! namespace (its interfaces, routes and firewall stay as they were). Partitions and loss
//! are nftables rules inside the hosts' namespaces.
//!
//! Everything a run creates carries its run id in its name; dropping the [`Network`] kills
//! every process left in its namespaces and deletes them, which also deletes their links and
//! rules. [`clean`] removes what a killed run left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

/// Prefix of every namespace the real engine creates.
pub const NAMESPACE_PREFIX: &str = "rollcall-";
/// The hosts' subnet, a private range that exists only inside the run's namespaces (the same
/// addresses turmoil gives, in file order).
const SUBNET_BASE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 0);
const SUBNET_PREFIX_LEN: u8 = 16;
/// The nftables table the engine owns in each host's namespace.
const TABLE: &str = "rollcall";
/// Loss is drawn by nftables' `numgen random` out of this many.
const LOSS_SCALE: u32 = 1_000_000;

/// What one host's rules say: destinations its packets never reach, and the share of its
/// datagrams that are dropped.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rules {
    blocked: BTreeSet<IpAddr>,
    loss_rate: f64,
}

/// A run's namespaces, bridge and rules.
pub struct Network {
    run_id: String,
    /// Host name to (namespace, address), in file order.
    hosts: BTreeMap<String, (String, IpAddr)>,
    switch: String,
    rules: BTreeMap<String, Rules>,
    /// Namespaces created so far, all removed on drop.
    created: Vec<String>,
}

impl Network {
    /// Creates a namespace for each of `hosts` (in file order) and wires them to one bridge.
    pub fn create(run_id: &str, hosts: &[String]) -> Result<Self, String> {
        let switch = format!("{NAMESPACE_PREFIX}{run_id}-switch");
        let mut network = Network {
            run_id: run_id.to_string(),
            hosts: BTreeMap::new(),
            switch: switch.clone(),
            rules: BTreeMap::new(),
            created: Vec::new(),
        };
        network.add_namespace(&switch)?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (index, name) in hosts.iter().enumerate() {
            let namespace = format!("{NAMESPACE_PREFIX}{run_id}-h{index}");
            let address = host_address(index)?;
            network.add_namespace(&namespace)?;
            network.wire(&namespace, index, address)?;
            network.hosts.insert(name.clone(), (namespace, address));
        }
        Ok(network)
    }

    fn add_namespace(&mut self, namespace: &str) -> Result<(), String> {
        ip(&["netns", "add", namespace])?;
        self.created.push(namespace.to_string());
        ip(&["-n", namespace, "link", "set", "lo", "up"])
    }

    /// A veth pair: `eth0` in the host's namespace, its peer on the bridge.
    fn wire(&self, namespace: &str, index: usize, address: IpAddr) -> Result<(), String> {
        let port = format!("h{index}");
        ip(&[
            "-n",
            namespace,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ])?;
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0", "up"])?;
        let cidr = format!("{address}/{SUBNET_PREFIX_LEN}");
        ip(&["-n", namespace, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", namespace, "link", "set", "eth0", "up"])
    }

    /// The run id every name carries.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Every host's address.
    pub fn addresses(&self) -> BTreeMap<String, IpAddr> {
        self.hosts.iter().map(|(name, (_, address))| (name.clone(), *address)).collect()
    }

    /// The namespace `host` runs in.
    pub fn namespace(&self, host: &str) -> &str {
        &self.hosts[host].0
    }

    /// Cuts (`cut`) or repairs the link from `from` to `to`: `from`'s packets to `to`'s
    /// address are dropped as they leave (TCP and UDP alike, as a simulated partition).
    pub fn set_link(&mut self, from: &str, to: &str, cut: bool) -> Result<(), String> {
        let address = self.hosts[to].1;
        let rules = self.rules.entry(from.to_string()).or_default();
        if cut {
            rules.blocked.insert(address);
        } else {
            rules.blocked.remove(&address);
        }
        self.apply(from)
    }

    /// Drops `loss_rate` of `host`'s outgoing datagrams (gossip is the only UDP it sends).
    pub fn set_loss(&mut self, host: &str, loss_rate: f64) -> Result<(), String> {
        self.rules.entry(host.to_string()).or_default().loss_rate = loss_rate;
        self.apply(host)
    }

    /// Replaces `host`'s table in one nftables transaction.
    fn apply(&self, host: &str) -> Result<(), String> {
        let rules = self.rules.get(host).cloned().unwrap_or_default();
        nft(self.namespace(host), &ruleset(&rules))
    }

    /// The engine's table in `host`'s namespace, as nftables lists it.
    pub fn listed_rules(&self, host: &str) -> Result<String, String> {
        run("ip", &["netns", "exec", self.namespace(host), "nft", "list", "table", "inet", TABLE])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in self.created.iter().rev() {
            remove_namespace(namespace);
        }
    }
}

/// The address of the host at `index` in file order: 192.168.0.1, .2, ...
fn host_address(index: usize) -> Result<IpAddr, String> {
    let offset = u32::try_from(index + 1).ok().filter(|offset| *offset < (1 << (32 - SUBNET_PREFIX_LEN)) - 1);
    let offset = offset.ok_or_else(|| format!("host {index}: the subnet has no address left"))?;
    Ok(IpAddr::V4(Ipv4Addr::from(u32::from(SUBNET_BASE) + offset)))
}

/// The nftables script for one host: its table, deleted and made again atomically.
fn ruleset(rules: &Rules) -> String {
    let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    script.push_str("  chain output {\n    type filter hook output priority 0; policy accept;\n");
    if !rules.blocked.is_empty() {
        let list: Vec<String> = rules.blocked.iter().map(IpAddr::to_string).collect();
        let _ = writeln!(script, "    ip daddr {{ {} }} drop", list.join(", "));
    }
    let threshold = (rules.loss_rate.clamp(0.0, 1.0) * f64::from(LOSS_SCALE)).round() as u32;
    if threshold >= LOSS_SCALE {
        script.push_str("    meta l4proto udp drop\n");
    } else if threshold > 0 {
        let _ = writeln!(script, "    meta l4proto udp numgen random mod {LOSS_SCALE} < {threshold} drop");
    }
    script.push_str("  }\n}\n");
    script
}

/// Kills every process in `namespace`, then deletes it (with its links and rules).
fn remove_namespace(namespace: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", namespace]) {
        for pid in pids.split_whitespace().filter_map(|pid| pid.parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    // A killed process leaves its namespace a moment later; the mount goes at once.
    let _ = run("ip", &["netns", "delete", namespace]);
}

/// The namespaces of real runs on this machine, killed runs' included.
pub fn leftovers() -> Result<Vec<String>, String> {
    let listed = run("ip", &["netns", "list"])?;
    Ok(listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(NAMESPACE_PREFIX))
        .map(str::to_string)
        .collect())
}

/// Removes every namespace (and so every link and rule) real runs left; returns their names.
pub fn clean() -> Result<Vec<String>, String> {
    let found = leftovers()?;
    for namespace in &found {
        remove_namespace(namespace);
    }
    Ok(found)
}

/// Why this machine cannot run the real engine, if it cannot: it needs root, iproute2 and
/// nftables, and a namespace it can create.
pub fn preflight() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("it needs root (it creates network namespaces); run it with sudo".into());
    }
    if run("ip", &["-V"]).is_err() {
        return Some("`ip` was not found (apt-get install iproute2)".into());
    }
    if run("nft", &["--version"]).is_err() {
        return Some("`nft` was not found (apt-get install nftables)".into());
    }
    // Unique per call: two checks at once (parallel tests) must not meet on one name.
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let count = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("{NAMESPACE_PREFIX}probe-{}-{count}", std::process::id());
    if let Err(error) = ip(&["netns", "add", &probe]) {
        return Some(format!("network namespaces cannot be created here: {error}"));
    }
    remove_namespace(&probe);
    None
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args).map(drop)
}

/// Loads `script` into the nftables of `namespace`.
fn nft(namespace: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("nft: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|error| format!("nft: {error}"))?;
    }
    let output = child.wait_with_output().map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("nft in {namespace}: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Runs a command to its end; its stdout, or its stderr as the error.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_file_order_from_one() {
        assert_eq!(host_address(0).unwrap(), IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)));
        assert_eq!(host_address(255).unwrap(), IpAddr::V4(Ipv4Addr::new(192, 168, 1, 0)));
        assert!(host_address(70_000).is_err());
    }

    #[test]
    fn a_ruleset_drops_what_is_cut_and_samples_loss() {
        let empty = ruleset(&Rules::default());
        assert!(!empty.contains("drop"), "{empty}");
        let rules = Rules {
            blocked: [IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2))].into_iter().collect(),
            loss_rate: 0.1,
        };
        let script = ruleset(&rules);
        assert!(script.contains("ip daddr { 192.168.0.2 } drop"), "{script}");
        assert!(script.contains("numgen random mod 1000000 < 100000 drop"), "{script}");
        // numgen's values stop one short of the modulus: all of it is a plain drop.
        let all = ruleset(&Rules { loss_rate: 1.0, ..Rules::default() });
        assert!(all.contains("meta l4proto udp drop") && !all.contains("numgen"), "{all}");
    }
}
