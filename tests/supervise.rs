//! `rollcall supervise` on real processes, against what a real s6 2.11 did on this machine
//! (../shared/reference/supervisor.md, part B): restarts 1 s after finish, finish told
//! `3 0` or `256 15`, finish 125 never restarted, a slow finish killed at timeout-finish,
//! the main program's exit code halting everything, and no process left behind. Bounded in
//! time; the supervisor is killed if it outlives the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the supervisor if the test ends first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The supervisor's exit status once it halts; the test fails (and kills it) past `deadline`.
fn halted(mut running: Running, deadline: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "rollcall supervise did not halt");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

/// A service directory with a `run` script, a `finish` script if given, and control files.
fn service(scan: &Path, name: &str, run: &str, finish: Option<&str>, files: &[(&str, &str)]) {
    let dir = scan.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_script(&dir.join("run"), &format!("date +%s.%N >> \"$LOG_DIR/{name}.starts\"\n{run}"));
    if let Some(finish) = finish {
        write_script(
            &dir.join("finish"),
            &format!("echo \"$1 $2 $3\" >> \"$LOG_DIR/{name}.finish\"\n{finish}"),
        );
    }
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
}

fn starts(log: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(log.join(format!("{name}.starts"))).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn lines(log: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(log.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
}

fn gaps(times: &[f64]) -> Vec<f64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn real_processes_follow_s6s_rules_and_the_main_exit_halts_with_its_code() {
    let root = std::env::temp_dir().join(format!("rollcall-supervise-{}", std::process::id()));
    let (scan, log) = (root.join("services"), root.join("log"));
    std::fs::create_dir_all(&scan).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    service(&scan, "crash3", "sleep 0.2\nexit 3", Some("exit 0"), &[]);
    service(&scan, "sig", "sleep 0.3\nkill -TERM $$", Some("exit 0"), &[]);
    service(&scan, "perm", "sleep 0.5\nexit 7", Some("exit 125"), &[]);
    service(&scan, "slowfin", "sleep 0.2\nexit 1", Some("sleep 5"), &[("timeout-finish", "300\n")]);
    service(&scan, "quiet", "sleep 1", None, &[("down", "")]);
    let marker = format!("1000.{}", std::process::id());
    service(&scan, "forever", &format!("sleep {marker}"), None, &[]);
    let begun = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["supervise", "--services", scan.to_str().unwrap(), "--", "/bin/sh", "-c", "sleep 4.5; exit 4"])
        .env("LOG_DIR", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollcall supervise");
    let status = halted(Running(child), begun + Duration::from_secs(20));
    let elapsed = begun.elapsed();
    assert_eq!(status.code(), Some(4), "the main program's exit code");
    assert!(elapsed < Duration::from_secs(8), "halted {elapsed:?} after start");

    let crash3 = starts(&log, "crash3");
    assert!(crash3.len() >= 3, "{crash3:?}");
    for gap in gaps(&crash3) {
        // s6: 1.215-1.228 s (0.2 s run + finish + 1 s).
        assert!((1.2..2.5).contains(&gap), "crash3 restarted {gap:.3} s after its last start");
    }
    assert_eq!(lines(&log, "crash3.finish")[0], "3 0 crash3");
    assert_eq!(lines(&log, "sig.finish")[0], "256 15 sig");
    assert_eq!(starts(&log, "perm").len(), 1, "finish 125: never restarted");
    assert_eq!(lines(&log, "perm.finish"), ["7 0 perm"]);
    for gap in gaps(&starts(&log, "slowfin")) {
        // s6: about 1.52 s (0.2 s run + finish killed at 0.3 s + 1 s).
        assert!((1.45..2.5).contains(&gap), "slowfin restarted {gap:.3} s after its last start");
    }
    assert!(starts(&log, "quiet").is_empty(), "a down file: not started");
    let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "processes left behind: {}", String::from_utf8_lossy(&left.stdout));
    let _ = std::fs::remove_dir_all(&root);
}

/// A service directory without a run script is bad input: exit 2, naming it.
#[test]
fn a_service_directory_without_run_is_refused() {
    let root = std::env::temp_dir().join(format!("rollcall-supervise-bad-{}", std::process::id()));
    std::fs::create_dir_all(root.join("broken")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["supervise", "--services", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken") && stderr.contains("no run script"), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `--services ./services`, as README writes it: s6 runs `./run` inside each service
/// directory, and a relative scan directory still finds it (it had named no directory from
/// there, and every start failed with exit 111).
#[test]
fn a_relative_services_directory_runs_its_services() {
    let root = std::env::temp_dir().join(format!("rollcall-supervise-relative-{}", std::process::id()));
    let (scan, log) = (root.join("services"), root.join("log"));
    std::fs::create_dir_all(&scan).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    service(&scan, "up", "sleep 10", None, &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["supervise", "--services", "./services", "--", "/bin/sh", "-c", "sleep 3; exit 0"])
        .current_dir(&root)
        .env("LOG_DIR", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollcall supervise");
    let status = halted(Running(child), Instant::now() + Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "the main program's exit code");
    assert_eq!(starts(&log, "up").len(), 1, "the service started once and ran until the halt");
    let _ = std::fs::remove_dir_all(&root);
}
