//! The same stack on real sockets: three `rollcall` processes on loopback addresses, the
//! webapps started before the balancer with retry-join. Bounded in time; every process it
//! starts is killed when it ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the process when dropped, so a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Running {
    rollcall(&[&["node"], args].concat())
}

/// `rollcall ARGS...`, its output discarded.
fn rollcall(args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollcall");
    Running(child)
}

/// One HTTP/1.0 GET; the `host` field of the webapp's JSON answer, if any.
fn get(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = response.split("\r\n\r\n").nth(1)?;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["host"].as_str().map(str::to_string)
}

#[test]
fn webapps_started_first_join_the_balancer_and_get_traffic() {
    let dir = std::env::temp_dir().join(format!("rollcall-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("haproxy.cfg");
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-mode.cfg.hb");
    let join = ["--join", "127.0.61.1", "--retry-join", "--retry-interval-ms", "300"];
    let _s1 =
        start(&[&["--name", "s1", "--role", "backend", "--advertise", "127.0.61.2"][..], &join].concat());
    let _s2 =
        start(&[&["--name", "s2", "--role", "backend", "--advertise", "127.0.61.3"][..], &join].concat());
    std::thread::sleep(Duration::from_millis(500));
    let _ha = start(&[
        "--name",
        "ha",
        "--role",
        "balancer",
        "--advertise",
        "127.0.61.1",
        "--template",
        template.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let frontend: SocketAddr = "127.0.61.1:18080".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served_by = std::collections::BTreeSet::new();
    while served_by.len() < 2 && Instant::now() < deadline {
        if let Some(host) = get(frontend) {
            served_by.insert(host);
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(served_by.into_iter().collect::<Vec<_>>(), ["s1", "s2"], "both webapps served within 30 s");
    let rendered = std::fs::read_to_string(&output).unwrap();
    assert!(rendered.contains("server s1 127.0.61.2:3000 check"), "{rendered}");
    assert!(rendered.contains("server s2 127.0.61.3:3000 check"), "{rendered}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Gossip sealed with `--encrypt` on real sockets: a webapp with the cluster's key joins and
/// gets traffic; one with another key never enters the rendered file, and the balancer logs
/// its frames as refused.
#[test]
fn an_encrypted_cluster_admits_its_key_holders_only() {
    const KEY: &str = "cU7OUr1XgjM9p/kPMqnOSzsHlvaQEgcOfJ8UtQIFBTk=";
    const OTHER: &str = "FFVnUW8HdsYigDWuvtk+wJihUsoGuXx4y98ZCVxWPn8=";
    let dir = std::env::temp_dir().join(format!("rollcall-real-keyring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("haproxy.cfg");
    // The fixture's balancer address, moved to this test's loopback range.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-mode.cfg.hb");
    let template = dir.join("real-mode.cfg.hb");
    std::fs::write(&template, std::fs::read_to_string(fixture).unwrap().replace("127.0.61.1", "127.0.62.1"))
        .unwrap();
    // Each node: its name and address, a key, the label, and a keyring file of its own.
    let node = |name: &str, ip: &str, key: &str, role: &[&str]| -> Running {
        let keyring = dir.join(format!("{name}.keyring"));
        let sealed = ["--name", name, "--advertise", ip, "--encrypt", key, "--label", "lab"];
        start(&[&sealed[..], &["--keyring-file", keyring.to_str().unwrap()], role].concat())
    };
    let join = ["--role", "backend", "--join", "127.0.62.1", "--retry-join", "--retry-interval-ms", "300"];
    let _s1 = node("s1", "127.0.62.2", KEY, &join);
    let _s2 = node("s2", "127.0.62.3", OTHER, &join);
    let balancer = [
        "--role",
        "balancer",
        "--template",
        template.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    let _ha = node("ha", "127.0.62.1", KEY, &balancer);
    let frontend: SocketAddr = "127.0.62.1:18080".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(frontend).as_deref() != Some("s1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(frontend).as_deref(), Some("s1"), "s1 served within 30 s");
    // s2 has retried its join for as long as s1 took, and a while more.
    std::thread::sleep(Duration::from_secs(2));
    let rendered = std::fs::read_to_string(&output).unwrap();
    assert!(rendered.contains("server s1 127.0.62.2:3000 check"), "{rendered}");
    assert!(!rendered.contains("s2"), "a node with another key got in: {rendered}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in backend: answers every request with 200 and its name, until the test ends.
fn backend(addr: &str, name: &'static str) {
    let listener = std::net::TcpListener::bind(addr).expect("bind backend");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{{\"host\":\"{name}\"}}");
                let head =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(format!("{head}{body}").as_bytes());
            });
        }
    });
}

fn balancer_config(servers: &[(&str, &str)]) -> String {
    let lines: Vec<String> = servers
        .iter()
        .map(|(name, addr)| format!("    server {name} {addr} check inter 200ms rise 1 fall 1"))
        .collect();
    format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout server 2s\n\nfrontend web\n    bind 127.0.62.1:18180\n    default_backend nodes\n\nbackend nodes\n    option httpchk GET /\n{}\n",
        lines.join("\n")
    )
}

fn hangup(process: &Running) {
    let status = Command::new("kill").args(["-HUP", &process.0.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// The answers of `count` requests in a row (None for a failed one).
fn answers(frontend: SocketAddr, count: usize) -> Vec<Option<String>> {
    (0..count).map(|_| get(frontend)).collect()
}

/// A node name or serf tags that peers would refuse (every message about the node dropped as
/// over the wire limits) are bad input at start: exit code 2 naming the option.
#[test]
fn a_node_name_or_tags_over_the_wire_limits_are_refused_at_start() {
    let node = |extra: &[&str]| {
        let base = ["node", "--role", "backend", "--advertise", "127.0.63.1"];
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(base)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A node that accepted the input runs until stopped: give it 10 s, not for ever.
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let long_name = "n".repeat(129);
    let (code, stderr) = node(&["--name", &long_name]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--name") && stderr.contains("1 to 128"), "{stderr}");
    let big_tag = format!("note={}", "x".repeat(600));
    let (code, stderr) = node(&["--name", "s1", "--serf-tag", &big_tag]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--serf-tag") && stderr.contains("at most 512"), "{stderr}");
    // Settings the agent could never use are refused at start, where they had made it fail
    // and restart every second for ever, or be quietly ignored.
    let dir = std::env::temp_dir().join(format!("rollcall-node-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("keyring.json");
    std::fs::write(&garbage, "not json").unwrap();
    let dir_arg = dir.to_str().unwrap();
    for (flag, value) in [
        ("--join", "bad host::x"),
        ("--retry-interval-ms", "0"),
        ("--event-handler", "bogus-event=true"),
        ("--keyring-file", garbage.to_str().unwrap()),
        ("--snapshot", dir_arg),
    ] {
        let (code, stderr) = node(&["--name", "s1", "--retry-join", flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) || stderr.contains("bogus-event"), "{flag}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rollcall balancer --config F` on loopback: serves both servers, reloads on SIGHUP and on a
/// file change, keeps its config when the new one has errors, and loses no request while it
/// reloads under load. A config with errors at start is exit code 2 naming file and line.
#[test]
fn the_balancer_alone_serves_reloads_and_keeps_a_good_config() {
    let dir = std::env::temp_dir().join(format!("rollcall-balancer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("haproxy.cfg");
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "frontend web\n    bind 127.0.62.1:18181\n    default_backend nodes\nbackend nodes\n    server s1 nowhere check\n").unwrap();
    let rejected = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["balancer", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(rejected.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("bad.cfg:5:"), "{rejected:?}");

    backend("127.0.62.2:18182", "b1");
    backend("127.0.62.3:18182", "b2");
    let both = [("b1", "127.0.62.2:18182"), ("b2", "127.0.62.3:18182")];
    std::fs::write(&file, balancer_config(&both)).unwrap();
    let balancer = rollcall(&["balancer", "--config", file.to_str().unwrap()]);
    let frontend: SocketAddr = "127.0.62.1:18180".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers(frontend, 2).iter().flatten().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let served: std::collections::BTreeSet<String> = answers(frontend, 6).into_iter().flatten().collect();
    assert_eq!(served.into_iter().collect::<Vec<_>>(), ["b1", "b2"]);

    // Reload under load: a client thread sends requests while the file alternates between one
    // and two servers, reloaded by SIGHUP every 200 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                failed += usize::from(get(frontend).is_none());
            }
            (sent, failed)
        })
    };
    for round in 0..10 {
        let servers = if round % 2 == 0 { &both[1..] } else { &both[..] };
        std::fs::write(&file, balancer_config(servers)).unwrap();
        hangup(&balancer);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    eprintln!("reload under load: {sent} requests, {failed} failed, 10 reloads");
    assert!(sent > 50, "{sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed across reloads");

    // The last write left both servers; now only b2, by a file change alone (no signal).
    std::fs::write(&file, balancer_config(&both[1..])).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(answers(frontend, 6).iter().all(|a| a.as_deref() == Some("b2")));
    // A config with errors is reported and never replaces the running one.
    std::fs::write(&file, "frontend web\n    bind nowhere\n").unwrap();
    hangup(&balancer);
    std::thread::sleep(Duration::from_millis(500));
    assert!(answers(frontend, 4).iter().all(|a| a.as_deref() == Some("b2")));
    drop(balancer);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One request with optional extra headers; the whole response text.
fn raw_get(addr: SocketAddr, headers: &str) -> String {
    raw_request(addr, &format!("GET / HTTP/1.0\r\nHost: test\r\n{headers}\r\n"))
}

/// Sends `text` as is on a new connection and reads until the balancer closes it.
fn raw_request(addr: SocketAddr, text: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(text.as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// `cookie SERVERID insert indirect nocache`: a new client gets the cookie of the server that
/// answered; a client that sends it stays on that server and gets no new cookie.
#[test]
fn sticky_cookies_keep_a_client_on_its_server() {
    let dir = std::env::temp_dir().join(format!("rollcall-sticky-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    backend("127.0.62.4:18183", "b1");
    backend("127.0.62.5:18183", "b2");
    let file = dir.join("haproxy.cfg");
    std::fs::write(
        &file,
        "defaults\n    timeout connect 1s\n    timeout server 2s\n    timeout http-request 300ms\nfrontend web\n    bind 127.0.62.1:18184\n    default_backend nodes\nbackend nodes\n    cookie SERVERID insert indirect nocache\n    server b1 127.0.62.4:18183 cookie b1\n    server b2 127.0.62.5:18183 cookie b2\nlisten stats\n    bind 127.0.62.1:18185\n    stats enable\n    stats uri /stats\n    stats auth admin:s3cret\n",
    )
    .unwrap();
    let _balancer = rollcall(&["balancer", "--config", file.to_str().unwrap(), "--threads", "1"]);
    let frontend: SocketAddr = "127.0.62.1:18184".parse().unwrap();
    assert_sticky_cookies(frontend);
    assert_hostile_requests_refused(frontend);
    assert_slow_client_cut_off(frontend);
    // The stats page counts them: b2 had 4 sticky requests plus its share of the others.
    assert_stats_page_counts("127.0.62.1:18185".parse().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A new client gets the cookie of the server that answered (waiting for the balancer to
/// start); one that sends a cookie stays on its server and gets no new cookie; a cookie
/// naming no server is ignored.
fn assert_sticky_cookies(frontend: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = raw_get(frontend, "");
    while first.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        first = raw_get(frontend, "");
    }
    let lower = first.to_ascii_lowercase();
    assert!(lower.contains("set-cookie: serverid=b1; path=/"), "{first}");
    assert!(lower.contains("cache-control: private"), "{first}");
    for _ in 0..4 {
        let sticky = raw_get(frontend, "Cookie: SERVERID=b2\r\n");
        assert!(sticky.contains("\"host\":\"b2\""), "{sticky}");
        assert!(!sticky.to_ascii_lowercase().contains("set-cookie"), "indirect: no new cookie: {sticky}");
    }
    // A cookie naming no server is ignored: the request is balanced and gets a cookie.
    let stray = raw_get(frontend, "Cookie: SERVERID=nobody\r\n");
    assert!(stray.to_ascii_lowercase().contains("set-cookie: serverid="), "{stray}");
}

/// Hostile requests: too many headers or too large a head is 431; conflicting
/// Content-Length values, or both framings, are 400 (request smuggling). A well-framed
/// chunked request is still served.
fn assert_hostile_requests_refused(frontend: SocketAddr) {
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert!(raw_get(frontend, &many).starts_with("HTTP/1.1 431"), "too many headers");
    let large = format!("X-Big: {}\r\n", "a".repeat(20_000));
    assert!(raw_get(frontend, &large).starts_with("HTTP/1.1 431"), "head too large");
    let smuggle = "Content-Length: 1\r\nContent-Length: 2\r\n";
    assert!(raw_get(frontend, smuggle).starts_with("HTTP/1.1 400"), "conflicting lengths");
    // Both Transfer-Encoding and Content-Length, in either order: 400, and the connection
    // closes (hyper alone would read it by Transfer-Encoding and forward it).
    for framing in
        ["Transfer-Encoding: chunked\r\nContent-Length: 3", "Content-Length: 3\r\nTransfer-Encoding: chunked"]
    {
        let text = format!("POST / HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n0\r\n\r\n");
        let answer = raw_request(frontend, &text);
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing}: {answer}");
        assert!(answer.contains("Transfer-Encoding and Content-Length"), "{answer}");
    }
    // A chunked request followed by another on the same connection: both served.
    let pipelined = "POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                     GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let both = raw_request(frontend, pipelined);
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");
}

/// A client that never finishes its request head is cut off after `timeout http-request`.
fn assert_slow_client_cut_off(frontend: SocketAddr) {
    let mut slow = TcpStream::connect_timeout(&frontend, Duration::from_secs(1)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(2), "slow client kept for {:?}", started.elapsed());
}

/// The stats page asks for its account (`stats auth`) first; its CSV counts b2's requests.
fn assert_stats_page_counts(stats: SocketAddr) {
    let stats_page = |headers: &str| {
        let mut stream = TcpStream::connect_timeout(&stats, Duration::from_secs(1)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(format!("GET /stats;csv HTTP/1.0\r\n{headers}\r\n").as_bytes()).unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let refused = stats_page("");
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("www-authenticate: basic realm=\"haproxy statistics\""));
    assert!(stats_page("Authorization: Basic YWRtaW46d3Jvbmc=\r\n").starts_with("HTTP/1.0 401"));
    // base64("admin:s3cret")
    let csv = stats_page("Authorization: Basic YWRtaW46czNjcmV0\r\n");
    assert!(csv.contains("# pxname,svname,scur,stot,status"), "{csv}");
    let b2 = csv.lines().find(|l| l.starts_with("nodes,b2,")).expect("b2 row");
    let total: u64 = b2.split(',').nth(3).unwrap().parse().unwrap();
    assert!(total >= 4, "{csv}");
}

/// The files in `dir`, sorted.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits up to `limit` for `dir` to hold exactly `expected`.
fn wait_for_files(dir: &std::path::Path, expected: &[&str], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let found = files_in(dir);
        if found == expected || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Serf's event handlers on real processes, with scripts equivalent to the lab's: the
/// member-join handler writes one file per backend, the member-leave one (bound to
/// member-leave and member-failed) deletes it. A graceful leave (SIGINT) and a kill -9 each
/// take their backend's file away.
#[test]
fn the_labs_handler_scripts_keep_the_backend_set() {
    let dir = std::env::temp_dir().join(format!("rollcall-handlers-{}", std::process::id()));
    let nodes = dir.join("nodes");
    std::fs::create_dir_all(&nodes).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let handler =
        |event: &str, script: &str| format!("{event}={}", fixtures.join("handlers").join(script).display());
    let template = fixtures.join("real-mode.cfg.hb");
    let output = dir.join("haproxy.cfg");
    let ha = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["node", "--name", "ha", "--role", "balancer", "--advertise", "127.0.62.1"])
        .args(["--template", template.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .args(["--event-handler", &handler("member-join", "member-join.sh")])
        .args(["--event-handler", &handler("member-leave,member-failed", "member-leave.sh")])
        .env("NODES_DIR", &nodes)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollcall");
    let _ha = Running(ha);
    let join = ["--join", "127.0.62.1", "--retry-join", "--retry-interval-ms", "300"];
    let s1 =
        start(&[&["--name", "s1", "--role", "backend", "--advertise", "127.0.62.2"][..], &join].concat());
    let s2 =
        start(&[&["--name", "s2", "--role", "backend", "--advertise", "127.0.62.3"][..], &join].concat());
    assert_eq!(wait_for_files(&nodes, &["s1", "s2"], Duration::from_secs(20)), ["s1", "s2"]);
    assert_eq!(std::fs::read_to_string(nodes.join("s1")).unwrap(), "s1 127.0.62.2\n");
    let interrupted = Command::new("kill").args(["-INT", &s2.0.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    assert_eq!(wait_for_files(&nodes, &["s1"], Duration::from_secs(20)), ["s1"], "s2 left");
    drop(s1);
    assert!(wait_for_files(&nodes, &[], Duration::from_secs(40)).is_empty(), "s1 failed");
    let log = std::fs::read_to_string(dir.join("nodes.log")).unwrap();
    assert!(log.starts_with("member-join self=ha role=balancer\n"), "{log}");
    assert!(log.contains("member-leave self=ha") && log.contains("member-failed self=ha"), "{log}");
    drop(s2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node stopped as Ctrl-C stops it (a graceful leave, then its services, HAProxy's process
/// group included), killed if it has not ended within 15 s.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HAPROXY_FRONTEND: &str = "127.0.63.1:18280";

/// One node of the real-HAProxy cluster on 127.0.63.x (no other test uses that range).
fn haproxy_node(name: &str, output: &std::path::Path, extra: &[&str]) -> Node {
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-haproxy.cfg.hb");
    let addr = match name {
        "ha" => "127.0.63.1".to_string(),
        other => format!("127.0.63.{}", other[1..].parse::<u8>().unwrap() + 1),
    };
    let mut args = vec!["node", "--name", name, "--advertise", &addr];
    let join = ["--join", "127.0.63.1", "--retry-join", "--retry-interval-ms", "300"];
    let balancer = ["--role", "balancer", "--balancer", "haproxy", "--template", template.to_str().unwrap()];
    if name == "ha" {
        args.extend(balancer);
        args.extend(["--output", output.to_str().unwrap()]);
    } else {
        args.extend(["--role", "backend"]);
        args.extend(join);
    }
    args.extend(extra);
    // Its log beside the rendered file, for a failure's post-mortem.
    let log = std::fs::File::create(output.with_file_name(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start rollcall");
    Node(child)
}

/// The webapps HAProxy serves within `limit`, asking until `wanted` answered.
fn served_through_haproxy(wanted: &[&str], limit: Duration) -> std::collections::BTreeSet<String> {
    let frontend: SocketAddr = HAPROXY_FRONTEND.parse().unwrap();
    let deadline = Instant::now() + limit;
    let mut served = std::collections::BTreeSet::new();
    while Instant::now() < deadline && !wanted.iter().all(|w| served.contains(*w)) {
        match get(frontend) {
            Some(host) => drop(served.insert(host)),
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    served
}

/// Kills, when dropped, the process a pid file names if it still runs: nothing this test
/// started outlives it, even when an assertion fails.
struct KillPidFile(PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.0) {
            if pid_runs(&self.0) {
                let _ = Command::new("kill").args(["-KILL", text.trim()]).status();
            }
        }
    }
}

/// Whether the pid in `file` is a running process (a zombie, dead but not yet reaped by
/// whoever inherited it, does not run).
fn pid_runs(file: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else { return false };
    let Some(pid) = text.lines().next().map(str::trim) else { return false };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command's closing parenthesis.
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// `rollcall node --balancer haproxy`: the system's HAProxy 2.6 serves the rendered file, in
/// every start order of ha and two webapps; a webapp killed with SIGKILL leaves HAProxy's
/// configuration; a member whose tag renders a file `haproxy -c` rejects never reaches it,
/// and HAProxy keeps serving. Every HAProxy it started is gone at the end.
#[test]
fn real_haproxy_in_the_loop_in_every_start_order() {
    let dir = std::env::temp_dir().join(format!("rollcall-real-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("haproxy.cfg");
    let pid_file = dir.join("haproxy.cfg.pid");
    let _leftover = KillPidFile(pid_file.clone());
    let orders = [
        ["ha", "s1", "s2"],
        ["ha", "s2", "s1"],
        ["s1", "ha", "s2"],
        ["s2", "ha", "s1"],
        ["s1", "s2", "ha"],
        ["s2", "s1", "ha"],
    ];
    for order in orders {
        let _ = std::fs::remove_file(&output);
        let mut nodes = Vec::new();
        for name in order {
            nodes.push(haproxy_node(name, &output, &[]));
            std::thread::sleep(Duration::from_millis(300));
        }
        let served = served_through_haproxy(&["s1", "s2"], Duration::from_secs(30));
        assert_eq!(served.into_iter().collect::<Vec<_>>(), ["s1", "s2"], "order {order:?}");
        assert!(pid_runs(&pid_file), "HAProxy's master runs");
        if order == ["s2", "s1", "ha"] {
            kill_and_reject(&mut nodes, &output, &pid_file);
        }
        // ha first, while its peers can still hear its leave (a leave nobody hears waits
        // for its broadcast timeouts).
        let ha = order.iter().position(|name| *name == "ha").unwrap();
        drop(nodes.remove(ha));
        // SIGKILL reached its process group; give the kernel a moment to end it.
        let gone = Instant::now() + Duration::from_secs(2);
        while pid_runs(&pid_file) && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pid_runs(&pid_file), "HAProxy stopped with its node (order {order:?})");
        drop(nodes);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// s2 (the first node) killed with SIGKILL, then s3 joining with `weight=300`.
fn kill_and_reject(nodes: &mut [Node], output: &std::path::Path, pid_file: &std::path::Path) {
    let master = std::fs::read_to_string(pid_file).unwrap();
    let _ = nodes[0].0.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && std::fs::read_to_string(output).unwrap().contains("server s2 ") {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !std::fs::read_to_string(output).unwrap().contains("server s2 "),
        "s2 out of the file within 30 s"
    );
    let frontend: SocketAddr = HAPROXY_FRONTEND.parse().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<Option<String>> = answers(frontend, 10);
    assert!(after.iter().all(|a| a.as_deref() == Some("s1")), "only s1 serves: {after:?}");
    let _s3 = haproxy_node("s3", output, &["--serf-tag", "weight=300"]);
    std::thread::sleep(Duration::from_secs(5));
    let rendered = std::fs::read_to_string(output).unwrap();
    assert!(!rendered.contains("server s3 "), "the rejected rendering never replaced the file:\n{rendered}");
    let still: Vec<Option<String>> = answers(frontend, 10);
    assert!(still.iter().all(|a| a.as_deref() == Some("s1")), "HAProxy keeps serving: {still:?}");
    assert_eq!(std::fs::read_to_string(pid_file).unwrap(), master, "the same master, never restarted");
}
