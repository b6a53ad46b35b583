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
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("node")
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
