//! The real engine on this machine: its namespace plumbing, and real runs of the lab judged
//! like simulated ones. Both need root, iproute2 and nftables. Without them each test says
//! why and passes, unless `ROLLCALL_REAL_ENGINE=required` (what `.ci/run` sets when it can
//! create namespaces), which turns the reason into a failure.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rollcall_sim::engines::real::network::{self, Network};

/// Whether the real engine can run here; a reason is printed (or fails the test) if not.
fn available(test: &str) -> bool {
    let Some(why) = network::preflight() else { return true };
    let required = std::env::var("ROLLCALL_REAL_ENGINE").is_ok_and(|value| value == "required");
    assert!(!required, "{test}: ROLLCALL_REAL_ENGINE=required, but {why}");
    eprintln!("SKIPPED {test}: the real engine cannot run here: {why}");
    false
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name)
}

/// The links of the machine's own namespace.
fn root_links() -> String {
    let output = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('@').next().unwrap_or(line).to_string() + "\n")
        .collect()
}

/// A UDP socket bound to `addr` inside `namespace` (a socket stays in the namespace it was
/// made in, whatever thread uses it later).
fn socket_in(namespace: &str, addr: SocketAddr) -> UdpSocket {
    let path = format!("/run/netns/{namespace}");
    std::thread::spawn(move || {
        let handle = std::fs::File::open(&path).expect("the namespace exists");
        nix::sched::setns(handle, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = UdpSocket::bind(addr).expect("bind inside the namespace");
        socket.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        socket
    })
    .join()
    .expect("the thread ran")
}

/// Whether any of a few datagrams from `from` reaches `to`.
fn delivers(from: &UdpSocket, to: &UdpSocket, tag: &str) -> bool {
    let target = to.local_addr().expect("bound");
    for _ in 0..3 {
        // A send may fail (a rule on the sender's own output would say EPERM): not delivered.
        let _ = from.send_to(tag.as_bytes(), target);
    }
    let mut buf = [0u8; 64];
    while let Ok((n, _)) = to.recv_from(&mut buf) {
        if &buf[..n] == tag.as_bytes() {
            return true;
        }
    }
    false
}

#[test]
fn namespaces_are_wired_cut_lossy_and_removed_without_a_trace() {
    if !available("namespaces_are_wired_cut_lossy_and_removed_without_a_trace") {
        return;
    }
    let links_before = root_links();
    let run_id = format!("test{}", std::process::id());
    let names = ["a".to_string(), "b".to_string()];
    let mut network = Network::create(&run_id, &names).expect("namespaces");
    let listed = network::leftovers().expect("ip netns list");
    for suffix in ["switch", "h0", "h1"] {
        let namespace = format!("rollcall-{run_id}-{suffix}");
        assert!(listed.contains(&namespace), "{namespace} in {listed:?}");
    }
    let addresses = network.addresses();
    let a = socket_in(network.namespace("a"), SocketAddr::new(addresses["a"], 9000));
    let b = socket_in(network.namespace("b"), SocketAddr::new(addresses["b"], 9000));
    assert!(delivers(&a, &b, "wired a->b") && delivers(&b, &a, "wired b->a"), "the bridge carries both ways");

    network.set_links([("a", "b")], true).expect("cut");
    assert!(!delivers(&a, &b, "cut a->b"), "a one-way cut drops a's packets to b");
    assert!(delivers(&b, &a, "cut b->a"), "and only those");
    assert!(network.listed_rules().expect("nft list").contains("drop"));
    network.set_links([("a", "b")], false).expect("repair");
    assert!(delivers(&a, &b, "repaired a->b"));

    network.set_loss("a", 1.0).expect("loss");
    assert!(!delivers(&a, &b, "lossy a->b"), "all of a's datagrams are lost");
    network.set_loss("a", 0.0).expect("no loss");
    assert!(delivers(&a, &b, "lossless a->b"));
    assert!(!network.listed_rules().expect("nft list").contains("drop"), "no rule is left");

    drop((a, b));
    drop(network);
    let left: Vec<String> =
        network::leftovers().expect("ip netns list").into_iter().filter(|ns| ns.contains(&run_id)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert_eq!(root_links(), links_before, "the machine's own links are as they were");
}

/// The longest a run of the lab may take here: its 80 simulated seconds, set-up and judging.
const RUN_WAIT_MAX: Duration = Duration::from_secs(300);

/// One run of `scenario` on `engine`, seed 1: its exit code, verdicts (name to `HOLDS`,
/// `VIOLATED`...) and the pid of the process (every name a real run creates carries it).
fn run(scenario_file: &str, engine: &str) -> (i32, BTreeMap<String, String>, u32) {
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let mut child = Command::new(cli)
        .arg("run")
        .arg(scenario(scenario_file))
        .args(["--seed", "1", "--json", "--engine", engine])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rollcall-sim starts");
    let pid = child.id();
    // Read both pipes meanwhile, so that a full pipe never stalls the run.
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || read_all(&mut stdout));
    let err = std::thread::spawn(move || read_all(&mut stderr));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > RUN_WAIT_MAX {
            // SIGINT: the engine cleans up as after Ctrl-C.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let status = child.wait().expect("wait");
            panic!("{scenario_file} on {engine}: still running after {RUN_WAIT_MAX:?} ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output =
        std::process::Output { status, stdout: out.join().expect("read"), stderr: err.join().expect("read") };
    let code = output.status.code().unwrap_or(-1);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{scenario_file} on {engine}: no report ({error}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let verdicts = report["verdicts"].as_array().expect("verdicts").iter();
    let verdicts = verdicts
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["verdict"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (code, verdicts, pid)
}

/// The lab and its partition, on real processes: the merged trace gets the same verdicts as
/// the simulated run of the same scenario and seed, and nothing of the run is left behind.
#[test]
fn real_runs_of_the_lab_are_judged_like_simulated_ones_and_leave_nothing() {
    if !available("real_runs_of_the_lab_are_judged_like_simulated_ones_and_leave_nothing") {
        return;
    }
    let links_before = root_links();
    // Both at once: each run is mostly waiting on the wall clock.
    let runs: Vec<_> = ["lab.toml", "lab-partition.toml"]
        .into_iter()
        .map(|file| std::thread::spawn(move || (file, run(file, "real"))))
        .collect();
    for handle in runs {
        let (file, (code, real, pid)) = handle.join().expect("the run's thread");
        let (_, simulated, _) = run(file, "turmoil");
        assert_eq!(code, 0, "{file} on the real engine is not as expected: {real:?}");
        assert_eq!(real, simulated, "{file}: real verdicts differ from simulated ones");
        let left: Vec<String> = network::leftovers()
            .expect("ip netns list")
            .into_iter()
            .filter(|ns| ns.starts_with(&format!("rollcall-{pid}-")))
            .collect();
        assert!(left.is_empty(), "{file}: namespaces left: {left:?}");
    }
    assert_eq!(root_links(), links_before, "the machine's own links are as they were");
}

fn read_all(pipe: &mut impl std::io::Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    bytes
}

/// Ctrl-C mid-run: the engine stops its hosts, removes everything it made and exits 130.
#[test]
fn an_interrupted_real_run_removes_what_it_made() {
    if !available("an_interrupted_real_run_removes_what_it_made") {
        return;
    }
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let mut child = Command::new(cli)
        .arg("run")
        .arg(scenario("lab.toml"))
        .args(["--engine", "real"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rollcall-sim starts");
    let pid = child.id();
    let ours = || -> Vec<String> {
        let listed = network::leftovers().expect("ip netns list");
        listed.into_iter().filter(|ns| ns.starts_with(&format!("rollcall-{pid}-"))).collect()
    };
    // Past the network's set-up and the first boots.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!ours().is_empty(), "the run made its namespaces");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the engine did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = read_all(child.stderr.as_mut().expect("piped"));
    assert_eq!(status.code(), Some(130), "{}", String::from_utf8_lossy(&stderr));
    assert!(String::from_utf8_lossy(&stderr).contains("interrupted"));
    assert!(ours().is_empty(), "namespaces left: {:?}", ours());
}

/// What the real engine cannot make real is refused before anything starts, naming it,
/// with exit code 2, root or not.
#[test]
fn latency_faults_are_refused_on_the_real_engine() {
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let output = Command::new(cli)
        .arg("run")
        .arg(scenario("lab-faults.toml"))
        .args(["--engine", "real"])
        .output()
        .expect("rollcall-sim runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("latency") && stderr.contains("netem"), "{stderr}");
    for command in ["explore", "shrink"] {
        let mut run = Command::new(cli);
        run.arg(command).arg(scenario("lab.toml")).args(["--engine", "real"]);
        if command == "shrink" {
            run.args(["--seed", "1"]);
        }
        let output = run.output().expect("rollcall-sim runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("one seed at a time"), "{command}: {stderr}");
    }
}
