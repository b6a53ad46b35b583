//! The real engine's network: one namespace per host, each wired through a veth pair to a
//! bridge that lives in a namespace of its own, so nothing is added to the machine's own
//! namespace (its interfaces, routes and firewall stay as they were). Partitions and loss
//! are nftables rules on that bridge: packets vanish in transit, as on a real network, so a
//! sender's `send` succeeds and its TCP waits for its own timeouts (a rule on the sender's
//! own output would fail the send at once with EPERM, which no real partition does).
//!
//! Everything a run creates carries its run id in its name; dropping the [`Network`] kills
//! every process left in its namespaces and deletes them, which also deletes their links and
//! rules. [`clean`] removes what a killed run left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Prefix of every namespace the real engine creates.
pub const NAMESPACE_PREFIX: &str = "rollcall-";
/// The length of the hosts' subnet, 192.168.0.0/16, a private range that exists only inside
/// the run's namespaces (the same addresses turmoil gives, in file order:
/// [`crate::world::host_address`]).
const SUBNET_PREFIX_LEN: u8 = 16;
/// The nftables table (bridge family) the engine owns in the switch's namespace.
const TABLE: &str = "rollcall";
/// Loss is drawn by nftables' `numgen random` out of this many.
const LOSS_SCALE: u32 = 1_000_000;

/// What the switch drops: packets on cut links (from, to), and a share of each lossy
/// host's datagrams.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rules {
    cut: BTreeSet<(IpAddr, IpAddr)>,
    loss: BTreeMap<IpAddr, f64>,
}

/// A run's namespaces, bridge and rules.
pub struct Network {
    run_id: String,
    /// Host name to its namespace and address.
    hosts: BTreeMap<String, (String, IpAddr)>,
    switch: String,
    rules: Rules,
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
            rules: Rules::default(),
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

    /// Cuts (`cut`) or repairs the links from `from` to `to`, pair by pair: the switch drops
    /// those packets (TCP and UDP alike, as a simulated partition). One nftables
    /// transaction for them all.
    pub fn set_links<'a>(
        &mut self,
        links: impl IntoIterator<Item = (&'a str, &'a str)>,
        cut: bool,
    ) -> Result<(), String> {
        for (from, to) in links {
            let link = (self.hosts[from].1, self.hosts[to].1);
            if cut {
                self.rules.cut.insert(link);
            } else {
                self.rules.cut.remove(&link);
            }
        }
        self.apply()
    }

    /// Drops `loss_rate` of `host`'s datagrams on their way (gossip is the only UDP a host
    /// sends).
    pub fn set_loss(&mut self, host: &str, loss_rate: f64) -> Result<(), String> {
        let address = self.hosts[host].1;
        if loss_rate > 0.0 {
            self.rules.loss.insert(address, loss_rate);
        } else {
            self.rules.loss.remove(&address);
        }
        self.apply()
    }

    /// Replaces the switch's table in one nftables transaction.
    fn apply(&self) -> Result<(), String> {
        nft(&self.switch, &ruleset(&self.rules))
    }

    /// The engine's table on the switch, as nftables lists it.
    pub fn listed_rules(&self) -> Result<String, String> {
        run("ip", &["netns", "exec", &self.switch, "nft", "list", "table", "bridge", TABLE])
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
    offset.ok_or_else(|| format!("host {index}: the subnet has no address left"))?;
    Ok(IpAddr::V4(crate::world::host_address(index)))
}

/// The nftables script for the switch. Declaring the table before deleting it makes the
/// delete succeed on the first load too; the script is one transaction, so no packet ever
/// sees the table missing.
fn ruleset(rules: &Rules) -> String {
    let mut script = format!("table bridge {TABLE}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n");
    script.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    for (from, to) in &rules.cut {
        let _ = writeln!(script, "    ip saddr {from} ip daddr {to} drop");
    }
    for (from, rate) in &rules.loss {
        let threshold = (rate.clamp(0.0, 1.0) * f64::from(LOSS_SCALE)).round() as u32;
        if threshold >= LOSS_SCALE {
            // numgen's values stop one short of the modulus.
            let _ = writeln!(script, "    ip saddr {from} meta l4proto udp drop");
        } else if threshold > 0 {
            let _ = writeln!(
                script,
                "    ip saddr {from} meta l4proto udp numgen random mod {LOSS_SCALE} < {threshold} drop"
            );
        }
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

/// What [`clean`] did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Namespaces removed, with their processes, links and rules.
    pub removed: Vec<String>,
    /// Namespaces kept because the process that made them still runs (another run).
    pub alive: Vec<(String, u32)>,
}

/// Removes every namespace (and so every link and rule) real runs left, except those of
/// processes that still run.
pub fn clean() -> Result<Cleaned, String> {
    let mut cleaned = Cleaned::default();
    for namespace in leftovers()? {
        match owner(&namespace).filter(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            Some(pid) => cleaned.alive.push((namespace, pid)),
            None => {
                remove_namespace(&namespace);
                cleaned.removed.push(namespace);
            }
        }
    }
    Ok(cleaned)
}

/// The pid of the process that named `namespace`: `rollcall-<pid>-...`, and the tests'
/// `rollcall-test<pid>-...` and `rollcall-probe-<pid>-...`.
fn owner(namespace: &str) -> Option<u32> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let rest = rest.strip_prefix("test").or_else(|| rest.strip_prefix("probe-")).unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
    let nft_works = run("ip", &["netns", "exec", &probe, "nft", "list", "ruleset"]);
    remove_namespace(&probe);
    nft_works.err().map(|error| format!("nftables does not work inside a namespace here: {error}"))
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args).map(drop)
}

/// Loads `script` into the nftables of `namespace`.
fn nft(namespace: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        // Its own process group: Ctrl-C at the terminal is the engine's to handle.
        .process_group(0)
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
        .process_group(0)
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
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_namespace_names_the_process_that_made_it() {
        assert_eq!(owner("rollcall-4242-0-h3"), Some(4242));
        assert_eq!(owner("rollcall-test77-switch"), Some(77));
        assert_eq!(owner("rollcall-probe-9-1"), Some(9));
        assert_eq!(owner("rollcall-switch"), None);
        assert_eq!(owner("other-1"), None);
    }

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
        let (a, b) = (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)), IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2)));
        let rules = Rules { cut: [(a, b)].into_iter().collect(), loss: [(b, 0.1)].into_iter().collect() };
        let script = ruleset(&rules);
        assert!(script.contains("ip saddr 192.168.0.1 ip daddr 192.168.0.2 drop"), "{script}");
        assert!(!script.contains("ip saddr 192.168.0.2 ip daddr"), "a cut is one way: {script}");
        assert!(
            script.contains("ip saddr 192.168.0.2 meta l4proto udp numgen random mod 1000000 < 100000 drop"),
            "{script}"
        );
        let all = ruleset(&Rules { loss: [(a, 1.0)].into_iter().collect(), ..Rules::default() });
        assert!(
            all.contains("ip saddr 192.168.0.1 meta l4proto udp drop") && !all.contains("numgen"),
            "{all}"
        );
    }
}
