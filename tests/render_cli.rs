//! `rollcall render`: consul-template's one-shot render, judged by the balancer's parser
//! and by a check command (real `haproxy -c`), written atomically, never replacing a good
//! file with a rejected one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("render")
        .args(args)
        .output()
        .expect("run rollcall render")
}

fn members(dir: &Path, json: &str) -> String {
    let path = dir.join("members.json");
    std::fs::write(&path, json).unwrap();
    path.display().to_string()
}

const TWO: &str = r#"[
  {"name": "ha", "addr": "10.0.0.1", "tags": {"role": "balancer"}},
  {"name": "s2", "addr": "10.0.0.3", "tags": {"role": "backend"}},
  {"name": "s1", "addr": "10.0.0.2", "tags": {"role": "backend"}},
  {"name": "s3", "addr": "10.0.0.4", "tags": {"role": "backend"}, "live": false}
]"#;

#[test]
fn renders_checks_with_haproxy_keeps_a_backup_and_leaves_a_good_file_alone_on_rejection() {
    let dir = std::env::temp_dir().join(format!("rollcall-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = root().join("scenarios/templates/haproxy.cfg.hb");
    let template = template.to_str().unwrap();
    let out = dir.join("haproxy.cfg");
    let out_arg = out.to_str().unwrap();
    let list = members(&dir, TWO);
    let check = ["--check-cmd", "haproxy -c -q -f {file}"];
    let first =
        render(&[&["--template", template, "--members", &list, "--out", out_arg][..], &check].concat());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let good = std::fs::read_to_string(&out).unwrap();
    assert!(good.contains("server s1 10.0.0.2:3000 check") && good.contains("server s2 10.0.0.3:3000 check"));
    assert!(!good.contains("s3"), "a member that is not live is no backend");

    let again = render(&["--template", template, "--members", &list, "--out", out_arg]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("unchanged"));

    let bad = members(&dir, r#"[{"name": "bad name", "addr": "10.0.0.9", "tags": {"role": "backend"}}]"#);
    let rejected = render(&["--template", template, "--members", &bad, "--out", out_arg]);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("rendering rejected"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), good, "the good file stays");

    let one = members(&dir, r#"[{"name": "s1", "addr": "10.0.0.2", "tags": {"role": "backend"}}]"#);
    let vetoed =
        render(&["--template", template, "--members", &one, "--out", out_arg, "--check-cmd", "false"]);
    assert_eq!(vetoed.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), good, "a failed check keeps the file too");
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(leftovers, 0, "no staged file left behind");

    let marker = dir.join("reloaded");
    let reload = format!("touch {}", marker.display());
    let replaced = render(&[
        "--template",
        template,
        "--members",
        &one,
        "--out",
        out_arg,
        "--backup",
        "--command",
        &reload,
    ]);
    assert!(replaced.status.success(), "{}", String::from_utf8_lossy(&replaced.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("haproxy.cfg.bak")).unwrap(), good);
    assert!(marker.exists(), "the command ran after the change");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_members_are_bad_input_named_by_file_and_line_and_dry_run_prints() {
    let dir = std::env::temp_dir().join(format!("rollcall-render-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = root().join("scenarios/templates/haproxy.cfg.hb");
    let template = template.to_str().unwrap();
    let broken = members(&dir, "[\n  {\"name\": \"s1\", \"addr\": \"not an ip\"}\n]");
    let output = render(&["--template", template, "--members", &broken, "--dry-run"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{broken}:2:")), "{stderr}");
    let list = members(&dir, TWO);
    // A pipe would block the read for ever and a device fill the memory.
    for odd in ["/dev/zero", "/dev/stdin"] {
        let output = render(&["--template", template, "--members", odd, "--dry-run"]);
        assert_eq!(output.status.code(), Some(2), "{odd}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"), "{odd}");
        let output = render(&["--template", odd, "--members", &list, "--dry-run"]);
        assert_eq!(output.status.code(), Some(2), "{odd}");
    }
    let printed = render(&["--template", template, "--members", &list, "--dry-run"]);
    assert!(printed.status.success());
    assert!(String::from_utf8_lossy(&printed.stdout).contains("server s2 10.0.0.3:3000 check"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input never touches the file already there: a template with a syntax error, members
/// that are not JSON, a command that outlives its timeout (the new file is in place, and the
/// command's failure is reported), and `--dry-run`, which writes nothing.
#[test]
fn bad_input_and_a_slow_command_keep_what_was_written() {
    let dir = std::env::temp_dir().join(format!("rollcall-render-keep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("haproxy.cfg");
    let out_arg = out.to_str().unwrap();
    std::fs::write(&out, "the running configuration\n").unwrap();
    let template = root().join("scenarios/templates/haproxy.cfg.hb");
    let template = template.to_str().unwrap();
    let list = members(&dir, TWO);
    let broken_template = dir.join("broken.hb");
    std::fs::write(&broken_template, "backend nodes\n{{#each addresses}}\n").unwrap();
    let bad =
        render(&["--template", broken_template.to_str().unwrap(), "--members", &list, "--out", out_arg]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let not_json = members(&dir, "[{\"name\": ");
    let bad = render(&["--template", template, "--members", &not_json, "--out", out_arg]);
    assert_eq!(bad.status.code(), Some(2));
    let list = members(&dir, TWO); // the same file, good again
    let dry = render(&["--template", template, "--members", &list, "--out", out_arg, "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "the running configuration\n");
    let marker = dir.join("finished");
    let command = format!("sleep 2 && touch {}", marker.display());
    let slow = ["--command", &command, "--command-timeout-ms", "300"];
    let timed_out =
        render(&[&["--template", template, "--members", &list, "--out", out_arg][..], &slow].concat());
    assert_eq!(timed_out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&timed_out.stderr).contains("no answer within 300 ms"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!marker.exists(), "the command was killed at its timeout, before it could finish");
    assert!(std::fs::read_to_string(&out).unwrap().contains("server s1 10.0.0.2:3000 check"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--out` that is no regular file (a directory, a named pipe) is bad input named by its
/// path, before anything runs (a pipe had hung the read, a directory looked like a rejected
/// rendering); a link is followed and kept; a timed-out command dies with what it started;
/// meaningless flags are refused.
#[test]
fn odd_outputs_are_refused_links_kept_and_timed_out_commands_leave_nothing() {
    let dir = std::env::temp_dir().join(format!("rollcall-render-odd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let template = root().join("scenarios/templates/haproxy.cfg.hb");
    let template = template.to_str().unwrap();
    let list = members(&dir, TWO);
    let fifo = dir.join("fifo.cfg");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for odd in [dir.as_path(), fifo.as_path()] {
        let refused = Command::new("timeout")
            .args([
                "10",
                env!("CARGO_BIN_EXE_rollcall"),
                "render",
                "--template",
                template,
                "--members",
                &list,
            ])
            .args(["--out", odd.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{}: {stderr}", odd.display());
        assert!(stderr.contains(odd.to_str().unwrap()) && stderr.contains("not a regular file"), "{stderr}");
    }
    let real = dir.join("real.cfg");
    std::fs::write(&real, "old\n").unwrap();
    let link = dir.join("link.cfg");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let through = render(&["--template", template, "--members", &list, "--out", link.to_str().unwrap()]);
    assert!(through.status.success(), "{}", String::from_utf8_lossy(&through.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
    assert!(std::fs::read_to_string(&real).unwrap().contains("server s1 10.0.0.2:3000 check"));
    let marker = format!("30.{}", std::process::id());
    let command = format!("sleep {marker} & sleep {marker}");
    let out = dir.join("out.cfg");
    let slow = ["--command", &command, "--command-timeout-ms", "300"];
    let timed_out = render(
        &[&["--template", template, "--members", &list, "--out", out.to_str().unwrap()][..], &slow].concat(),
    );
    assert_eq!(timed_out.status.code(), Some(1));
    // A killed process may take a moment to go: look for up to 2 s.
    let running = || {
        !Command::new("pgrep").args(["-f", &format!("sleep {marker}")]).output().unwrap().stdout.is_empty()
    };
    let gone = (0..20).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !running()
    });
    assert!(gone, "what the command started is still running");
    let zero =
        render(&["--template", template, "--members", &list, "--dry-run", "--command-timeout-ms", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    let both = render(&["--template", template, "--members", &list, "--dry-run", "--backup"]);
    assert_eq!(both.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
