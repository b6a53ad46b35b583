//! Bad scenario files get a one-line error naming the file, line and key; never a panic.

use std::path::{Path, PathBuf};

use rollcall_sim::scenario::{self, ScenarioError};

const GOOD: &str = r#"name = "t"
duration_s = 10

[gossip]
seeds = ["ha"]

[[host]]
name = "ha"
role = "balancer"
template = "templates/haproxy.cfg.hb"

[[host]]
name = "s1"
role = "backend"

[invariants]
converge_rounds = 5
"#;

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn parse(text: &str) -> Result<rollcall_sim::world::World, ScenarioError> {
    scenario::parse("bad.toml", text, &base())
}

fn error(text: &str) -> ScenarioError {
    let error = parse(text).expect_err("bad input must be rejected");
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.starts_with("bad.toml:"), "{line}");
    error
}

#[test]
fn the_good_file_parses() {
    let world = parse(GOOD).unwrap();
    assert_eq!(world.hosts.len(), 2);
}

#[test]
fn unknown_key() {
    let e = error(&GOOD.replace("role = \"backend\"", "role = \"backend\"\ncolour = \"red\""));
    assert_eq!(e.line, 15);
    assert!(e.message.contains("colour"), "{e}");
}

#[test]
fn wrong_type() {
    let e = error(&GOOD.replace("duration_s = 10", "duration_s = \"ten\""));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("invalid type"), "{e}");
}

#[test]
fn missing_field() {
    let e = error(&GOOD.replace("[invariants]\nconverge_rounds = 5\n", ""));
    assert!(e.message.contains("invariants"), "{e}");
}

#[test]
fn unknown_host_in_seeds_start_order_and_faults() {
    let e = error(&GOOD.replace("seeds = [\"ha\"]", "seeds = [\"hq\"]"));
    assert_eq!((e.line, e.column), (5, 10));
    assert!(e.message.contains("unknown host 'hq'"), "{e}");

    let e = error(&format!("{GOOD}\n[start]\norder = [\"s1\", \"s9\"]\n"));
    assert_eq!(e.line, 20);
    assert!(e.message.contains("'s9'"), "{e}");

    let e = error(&format!("{GOOD}\n[[fault]]\nkind = \"host-crash\"\nat_s = 1\nhost = \"s7\"\n"));
    assert_eq!(e.line, 19, "the fault's table");
    assert!(e.message.contains("'s7'"), "{e}");
}

#[test]
fn unknown_fault_kind_and_bad_values() {
    let e = error(&format!("{GOOD}\n[[fault]]\nkind = \"meteor\"\nat_s = 1\n"));
    assert!(e.message.contains("meteor"), "{e}");
    let e = error(&format!("{GOOD}\n[[fault]]\nkind = \"loss\"\nat_s = 1\nfor_s = 2\nrate = 1.5\n"));
    assert!(e.message.contains("1.5"), "{e}");
    let e = error(&format!("{GOOD}\n[expect]\nviolated = [\"liveness\"]\n"));
    assert!(e.message.contains("unknown invariant 'liveness'"), "{e}");
}

#[test]
fn a_template_syntax_error_names_the_template_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("rollcall-bad-template-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("templates/haproxy.cfg.hb"), "backend nodes\n{{#each addresses}}\n{{/eahc}}\n")
        .unwrap();
    let e = scenario::parse("bad.toml", GOOD, &dir).expect_err("syntax error");
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("haproxy.cfg.hb:3:"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_exits_2_on_bad_input() {
    let dir = std::env::temp_dir().join(format!("rollcall-bad-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "name = 3\n").unwrap();
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let output = std::process::Command::new(cli).args(["run", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:1:8"), "{stderr}");
    let missing = std::process::Command::new(cli).args(["run", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let bad_seed = std::process::Command::new(cli).args(["run", "x.toml", "--seed", "abc"]).output().unwrap();
    assert_eq!(bad_seed.status.code(), Some(2));
    assert!(Path::new(&file).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Values that are infinite, negative, zero where zero makes no sense, too large to be a
/// duration, and bad host names: each an error at the value's line and column, never a panic.
#[test]
fn out_of_range_values_name_their_line_and_column() {
    let cases: [(&str, &str, (usize, usize), &str); 15] = [
        ("duration_s = 10", "duration_s = inf", (2, 14), "duration_s"),
        ("duration_s = 10", "duration_s = nan", (2, 14), "duration_s"),
        ("duration_s = 10", "duration_s = -5", (2, 14), "duration_s"),
        ("duration_s = 10", "duration_s = 0", (2, 14), "duration_s"),
        ("duration_s = 10", "duration_s = 1e30", (2, 14), "duration_s"),
        ("duration_s = 10", "duration_s = 10\ntick_ms = 0", (3, 11), "tick_ms"),
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\nprobe_interval_ms = 0", (6, 21), "probe_interval_ms"),
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\nretry_interval_ms = 0", (6, 21), "retry_interval_ms"),
        // A TCP connection per millisecond ran turmoil out of ports or socket buffer.
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\nretry_interval_ms = 1", (6, 21), "at least 100 ms"),
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\nreconnect_interval_ms = 99", (6, 25), "at least 100 ms"),
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\ngossip_interval_ms = 99999999999", (6, 22), "over the limit"),
        ("seeds = [\"ha\"]", "seeds = [\"ha\"]\nprobe_interval_ms = -1", (6, 21), ""),
        ("converge_rounds = 5", "converge_rounds = 0", (17, 19), "at least 1"),
        ("name = \"s1\"", "name = \"\"", (13, 8), "host name"),
        ("name = \"s1\"", "name = \"s1 with spaces\"", (13, 8), "host name"),
    ];
    for (from, to, (line, column), needle) in cases {
        let text = GOOD.replacen(from, to, 1);
        let e = error(&text);
        assert_eq!((e.line, e.column), (line, column), "{to}: {e}");
        assert!(e.message.contains(needle), "{to}: {e}");
    }
    let client =
        format!("{GOOD}\n[[host]]\nname = \"c\"\nrole = \"client\"\ntarget = \"ha\"\ninterval_ms = 0\n");
    let e = error(&client);
    assert_eq!((e.line, e.column), (23, 15), "{e}");
    assert!(e.message.contains("interval_ms must be positive"), "{e}");
    let long = format!("name = \"{}\"", "s".repeat(64));
    assert!(error(&GOOD.replacen("name = \"s1\"", &long, 1)).message.contains("host name"));
}

#[test]
fn out_of_range_fault_times_are_errors_not_panics() {
    for fault in [
        "kind = \"partition\"\nat_s = 1\nfor_s = 1e300\na = [\"s1\"]",
        "kind = \"partition\"\nat_s = inf\nfor_s = 1\na = [\"s1\"]",
        "kind = \"host-crash\"\nat_s = 1\nhost = \"s1\"\nrestart_after_s = -3",
        "kind = \"loss\"\nat_s = 1\nfor_s = 1\nrate = nan",
        "kind = \"latency\"\nat_s = 1\nfor_s = 1\nextra_ms = 0",
        "kind = \"reload\"\nat_s = 1\nfor_s = 1\nhost = \"ha\"\nevery_ms = 0",
        "kind = \"reload\"\nat_s = 1\nfor_s = 1\nhost = \"s1\"",
    ] {
        let e = error(&format!("{GOOD}\n[[fault]]\n{fault}\n"));
        assert_eq!(e.line, 19, "{fault}: {e}");
    }
}

#[test]
fn an_expected_violation_must_name_an_enabled_invariant_and_known_hosts() {
    let e = error(&format!("{GOOD}\n[expect]\nviolated = [\"available\"]\n"));
    assert!(e.message.contains("not enabled"), "{e}");
    let e = error(&format!("{GOOD}\n[[expect.violation]]\ninvariant = \"converge\"\nhosts = [\"s9\"]\n"));
    assert_eq!((e.line, e.column), (21, 10), "{e}");
    let e = error(&GOOD.replace("converge_rounds = 5", "serve = true"));
    assert!(e.message.contains("unknown field `serve`"), "{e}");
}

#[test]
fn a_client_targets_the_balancer_and_seeds_are_nodes() {
    let client = format!("{GOOD}\n[[host]]\nname = \"c\"\nrole = \"client\"\ntarget = \"s1\"\n");
    let e = error(&client);
    assert_eq!((e.line, e.column), (22, 10), "{e}");
    assert!(e.message.contains("not the balancer"), "{e}");
    let seeded = format!("{GOOD}\n[[host]]\nname = \"c\"\nrole = \"client\"\ntarget = \"ha\"\n")
        .replace("seeds = [\"ha\"]", "seeds = [\"c\"]");
    let e = error(&seeded);
    assert_eq!((e.line, e.column), (5, 10), "{e}");
    assert!(e.message.contains("is a client"), "{e}");
    let e = error(&GOOD.replace("duration_s = 10", "duration_s = 1e-10"));
    assert!(e.message.contains("shorter than one tick"), "{e}");
}

/// Found by hand-made hostile scenarios: a template that is not a regular file (a pipe would
/// block the run for ever, /dev/zero would fill memory) or is over the size limit, a
/// `[from, to]` pair of three values, a turmoil world too large for turmoil, and seed ranges
/// past the largest seed: each an error with exit 2, not a hang, a panic or a silent cut.
#[test]
fn hostile_templates_pairs_host_counts_and_seed_ranges_are_refused() {
    let e = error(&GOOD.replace("templates/haproxy.cfg.hb", "/dev/zero"));
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("not a regular file"), "{e}");
    let dir = std::env::temp_dir().join(format!("rollcall-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.hb");
    std::fs::write(&big, vec![b'x'; (scenario::TEMPLATE_BYTES_MAX + 1) as usize]).unwrap();
    let e = error(&GOOD.replace("templates/haproxy.cfg.hb", big.to_str().unwrap()));
    assert!(e.message.contains("byte limit"), "{e}");
    let swarm = "\n[swarm]\nchaos_s = [1, 2, 3]\n";
    let e = error(&format!("{GOOD}{swarm}"));
    assert!(e.message.contains("two values, got 3"), "{e}");
    let e = error(&format!("{GOOD}\n[swarm]\nchaos_s = [1, 5]\nfaults = [2]\n"));
    assert!(e.message.contains("two values, got 1"), "{e}");

    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let crowd = dir.join("crowd.toml");
    let many = GOOD.replace("name = \"s1\"", "name = \"s{1..100}\"");
    std::fs::write(&crowd, many.replace("templates/", &format!("{}/templates/", base().display()))).unwrap();
    let output = std::process::Command::new(cli).args(["run", crowd.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("crowd.toml") && stderr.contains("at most 64"), "{stderr}");
    let good = base().join("lab.toml");
    for args in [
        ["--from", "1", "--seeds", "18446744073709551615"],
        ["--from", "18446744073709551615", "--seeds", "5"],
    ] {
        let output = std::process::Command::new(cli).arg("figures").arg(&good).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("seeds"), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A host named twice in one list (also through a pattern), an empty fault host list and an
/// empty output path or one onto serf's own files are slips to report, not to run.
#[test]
fn a_host_listed_twice_an_empty_host_list_and_an_empty_output_are_errors() {
    let e = error(&GOOD.replace("seeds = [\"ha\"]", "seeds = [\"ha\", \"ha\"]"));
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("'ha' is listed twice"), "{e}");
    let order = format!("{GOOD}\n[start]\norder = [\"s{{1..1}}\", \"s1\", \"ha\"]\n");
    assert!(error(&order).message.contains("'s1' is listed twice"));
    let loss = format!("{GOOD}\n[[fault]]\nkind = \"loss\"\nat_s = 1\nfor_s = 1\nrate = 0.1\nhosts = []\n");
    assert!(error(&loss).message.contains("empty host list"), "{}", error(&loss));
    let cut = format!("{GOOD}\n[[fault]]\nkind = \"partition\"\nat_s = 1\nfor_s = 1\na = [\"s1\", \"s1\"]\n");
    assert!(error(&cut).message.contains("listed twice"), "{}", error(&cut));
    let e = error(&GOOD.replace("role = \"balancer\"", "role = \"balancer\"\noutput = \"\""));
    assert!(e.message.contains("empty path"), "{e}");
    // The renderer would overwrite serf's files (and serf read a config as its keyring).
    for output in ["/serf/keyring", "/serf//snapshot", "serf/keyring"] {
        let e = error(
            &GOOD.replace("role = \"balancer\"", &format!("role = \"balancer\"\noutput = \"{output}\"")),
        );
        assert!(e.message.contains("would overwrite serf's"), "{output}: {e}");
    }
}

/// A bug, a service, an invariant or a swarm kind named twice is a slip, reported at its line.
#[test]
fn names_given_twice_are_errors() {
    let bugs = GOOD.replace(
        "role = \"backend\"",
        "role = \"backend\"\nplanted_bugs = [\"gossip-never-refutes\", \"gossip-never-refutes\"]",
    );
    assert!(error(&bugs).message.contains("listed twice"), "{}", error(&bugs));
    let services =
        GOOD.replace("role = \"backend\"", "role = \"backend\"\npermanent_failure = [\"serf\", \"serf\"]");
    assert!(error(&services).message.contains("'serf' is listed twice"), "{}", error(&services));
    let expect = format!("{GOOD}\n[expect]\nviolated = [\"converge\", \"converge\"]\n");
    assert!(error(&expect).message.contains("'converge' is listed twice"), "{}", error(&expect));
    let kinds = format!("{GOOD}\n[swarm]\nchaos_s = [1, 5]\nkinds = [\"loss\", \"loss\"]\n");
    assert!(error(&kinds).message.contains("'loss' is listed twice"), "{}", error(&kinds));
}

/// A `tags` fault with an empty key, a key both set and deleted, or more tags than a member
/// carries: refused when the file is read, not a warning in the middle of the run.
#[test]
fn a_tags_fault_that_cannot_apply_is_an_error() {
    let big = "x".repeat(600);
    for (tags, wanted) in [
        ("set = { \"\" = \"5\" }".to_string(), "empty"),
        ("set = { w = \"5\" }\ndelete = [\"w\"]".to_string(), "both set and deleted"),
        (format!("set = {{ w = \"{big}\" }}"), "at most 512"),
        // 1 + 497 + 2 = 500 bytes alone, over 512 with the host's role tag (13 bytes).
        (format!("set = {{ k = \"{}\" }}", "x".repeat(497)), "at most 512"),
    ] {
        let e = error(&format!("{GOOD}\n[[fault]]\nkind = \"tags\"\nat_s = 1\nhost = \"s1\"\n{tags}\n"));
        assert_eq!(e.line, 19, "{e}");
        assert!(e.message.contains(wanted), "{e}");
    }
}

/// A seed pattern that takes in a client is refused, as a client named alone is (the check
/// once paired expanded names with unexpanded items, so `s{1..2}` checked only s1).
#[test]
fn a_seed_pattern_that_names_a_client_is_an_error() {
    let text = GOOD.replace("seeds = [\"ha\"]", "seeds = [\"s{1..2}\"]")
        + "\n[[host]]\nname = \"s2\"\nrole = \"client\"\ntarget = \"ha\"\n";
    let e = error(&text);
    assert!(e.message.contains("'s2' is a client or an attacker"), "{e}");
}

/// A keyring's keys, its label and a `keys` fault are checked where they are written.
#[test]
fn bad_keys_labels_and_keys_faults_are_errors() {
    const KEY: &str = "cU7OUr1XgjM9p/kPMqnOSzsHlvaQEgcOfJ8UtQIFBTk=";
    let keyring = |line: &str| GOOD.replace("seeds = [\"ha\"]", &format!("seeds = [\"ha\"]\n{line}"));
    let e = error(&keyring("keyring = [\"not base64!\"]"));
    assert_eq!((e.line, e.message.contains("not valid base64")), (6, true), "{e}");
    let e = error(&keyring("keyring = [\"AAAA\"]"));
    assert!(e.message.contains("key of 3 bytes"), "{e}");
    let e = error(&keyring(&format!("keyring = [\"{KEY}\", \"{KEY}\"]")));
    assert!(e.message.contains("listed twice"), "{e}");
    let e = error(&keyring(&format!("label = \"{}\"", "x".repeat(256))));
    assert!(e.message.contains("label of 256 bytes"), "{e}");
    let fault = |op: &str, key: &str| {
        format!("\n[[fault]]\nkind = \"keys\"\nat_s = 1\nop = \"{op}\"\nkey = \"{key}\"\n")
    };
    let e = error(&(GOOD.to_string() + &fault("install", KEY)));
    assert!(e.message.contains("needs encrypted gossip"), "{e}");
    let encrypted = keyring(&format!("keyring = [\"{KEY}\"]"));
    let e = error(&(encrypted.clone() + &fault("install", "short")));
    assert!(e.message.contains("key:"), "{e}");
    let e = error(&(encrypted.clone() + &fault("rotate", KEY)));
    assert!(e.message.contains("rotate"), "{e}");
    let world = parse(&(encrypted + &fault("use", KEY))).unwrap();
    assert_eq!(world.faults.len(), 1);
}

/// An attacker needs a victim among the nodes; its keys belong to its role alone.
#[test]
fn an_attacker_needs_a_node_victim_and_its_keys_apply_to_it_alone() {
    let attacker =
        |keys: &str| format!("{GOOD}\n[[host]]\nname = \"mallory\"\nrole = \"attacker\"\n{keys}\n");
    let e = error(&attacker(""));
    assert!(e.message.contains("needs a 'victim'"), "{e}");
    let e = error(&attacker("victim = \"nobody\""));
    assert!(e.message.contains("unknown host 'nobody'"), "{e}");
    let e = error(&attacker("victim = \"mallory\""));
    assert!(e.message.contains("runs no gossip agent"), "{e}");
    let e = error(&attacker("victim = \"s1\"\nkey = \"short\""));
    assert!(e.message.contains("key:"), "{e}");
    let e = error(&attacker("victim = \"s1\"\ntargets = [\"mallory\"]"));
    assert!(e.message.contains("runs no gossip agent"), "{e}");
    let e = error(&GOOD.replace("role = \"backend\"", "role = \"backend\"\nvictim = \"ha\""));
    assert!(e.message.contains("'victim' does not apply"), "{e}");
    let world = parse(&attacker("victim = \"s1\"\nevery_ms = 200")).unwrap();
    assert_eq!(world.hosts[2].role(), "attacker");
}

/// Found by a doc audit and hostile files: a template calling a helper handlebars does not
/// have (it loaded and then failed every render, a stack failure with exit 1) or nesting
/// thousands of blocks deep (the load aborted), a balancer-only or node-only key on
/// a host it means nothing to, a swarm host named twice, an output that names no file or
/// climbs out of the host's root, and a scenario file that is a pipe or a device.
#[test]
fn unknown_helpers_misplaced_keys_swarm_duplicates_bad_outputs_and_odd_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("rollcall-audit-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("templates/haproxy.cfg.hb"), "global\n# {{nohelper 1}}\n").unwrap();
    let e = scenario::parse("bad.toml", GOOD, &dir).expect_err("unknown helper");
    assert_eq!(e.line, 10, "{e}");
    assert!(
        e.message.contains("haproxy.cfg.hb:2:") && e.message.contains("unknown helper 'nohelper'"),
        "{e}"
    );
    // Thousands of nested blocks overflowed handlebars' stack (an abort) as it rendered,
    // and tens of thousands of tags took minutes to compile.
    let deep = format!("global\n{}x{}", "{{#with this}}".repeat(400), "{{/with}}".repeat(400));
    std::fs::write(dir.join("templates/haproxy.cfg.hb"), deep).unwrap();
    let e = scenario::parse("bad.toml", GOOD, &dir).expect_err("too deep");
    assert!(e.message.contains("haproxy.cfg.hb:2:") && e.message.contains("nest more than 128"), "{e}");
    std::fs::write(dir.join("templates/haproxy.cfg.hb"), "{{#each addresses}}x{{/each}}".repeat(600))
        .unwrap();
    let e = scenario::parse("bad.toml", GOOD, &dir).expect_err("too many tags");
    assert!(e.message.contains("more than 1024 tags"), "{e}");
    for key in [
        "render_wait_min_ms = 5",
        "render_wait_max_ms = 5",
        "render_validate = false",
        "render_backup = true",
    ] {
        let e = error(&GOOD.replace("role = \"backend\"", &format!("role = \"backend\"\n{key}")));
        assert!(e.message.contains("does not apply to this role"), "{key}: {e}");
    }
    let client = format!(
        "{GOOD}\n[[host]]\nname = \"c\"\nrole = \"client\"\ntarget = \"ha\"\npermanent_failure = [\"x\"]\n"
    );
    assert!(error(&client).message.contains("'permanent_failure' does not apply"), "{}", error(&client));
    let swarm = format!("{GOOD}\n[swarm]\nchaos_s = [1, 5]\nhosts = [\"s1\", \"s{{1..1}}\"]\n");
    assert!(error(&swarm).message.contains("'s1' is listed twice"), "{}", error(&swarm));
    for (output, wanted) in [
        ("/", "names a directory"),
        (".", "names a directory"),
        ("/etc/haproxy/", "names a directory"),
        ("/serf", "serf's directory"),
        ("serf/.", "names a directory"),
        ("serf//", "names a directory"),
        ("/serf/./", "names a directory"),
        ("./serf", "serf's directory"),
        ("/serf/x/../keyring", "'..'"),
        ("../haproxy.cfg", "'..'"),
    ] {
        let text =
            GOOD.replace("role = \"balancer\"", &format!("role = \"balancer\"\noutput = \"{output}\""));
        let e = error(&text);
        assert!(e.message.contains(wanted), "{output}: {e}");
    }
    // A fault within the last tick never starts; a zero restart or rejoin names its own key.
    for (fault, wanted) in [
        ("kind = \"stall\"\nat_s = 10\nfor_s = 1\nhost = \"s1\"\nservice = \"serf\"", "before the end"),
        ("kind = \"stall\"\nat_s = 9.9995\nfor_s = 1\nhost = \"s1\"\nservice = \"serf\"", "a tick (1 ms)"),
        ("kind = \"host-crash\"\nat_s = 1\nhost = \"s1\"\nrestart_after_s = 0", "restart_after_s > 0"),
        ("kind = \"leave\"\nat_s = 1\nhost = \"s1\"\nrejoin_after_s = -2", "rejoin_after_s > 0"),
    ] {
        let e = error(&format!("{GOOD}\n[[fault]]\n{fault}\n"));
        assert!(e.message.contains(wanted), "{fault}: {e}");
    }
    let client = |timeout: &str| {
        format!(
            "{GOOD}\n[[host]]\nname = \"c\"\nrole = \"client\"\ntarget = \"ha\"\ntimeout_ms = {timeout}\n"
        )
    };
    assert!(error(&client("1")).message.contains("at least 100 ms"), "{}", error(&client("1")));
    let coarse = client("500").replace("duration_s = 10", "duration_s = 10\ntick_ms = 100");
    assert!(error(&coarse).message.contains("at least 1000 ms"), "{}", error(&coarse));
    parse(&client("100")).expect("100 ms is enough at a 1 ms tick");
    let fine = GOOD.replace("role = \"balancer\"", "role = \"balancer\"\noutput = \"./etc/haproxy.cfg\"");
    parse(&fine).expect("a relative file path is fine");
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let fifo = dir.join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    for file in [fifo.as_path(), Path::new("/dev/zero")] {
        let output = std::process::Command::new(cli).args(["run", file.to_str().unwrap()]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", file.display());
        assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"), "{}", file.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Outputs that would destroy an input or a special file are refused (exit 2) and leave
/// them as they were: a trace, page or shrunk file over the scenario itself, a trace onto a
/// named pipe or a link to a device. An empty trace is no trace to `diff`, a shard that holds
/// no seed is no exploration, and an unknown invariant is named as unknown.
#[test]
fn outputs_never_replace_inputs_or_special_files() {
    let dir = std::env::temp_dir().join(format!("rollcall-outputs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("lab.toml");
    let original = std::fs::read_to_string(base().join("lab.toml")).unwrap();
    std::fs::write(&scenario, original.replace("templates/", &format!("{}/templates/", base().display())))
        .unwrap();
    let before = std::fs::read(&scenario).unwrap();
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let sim = |args: &[&str]| {
        std::process::Command::new("timeout").arg("120").arg(cli).args(args).output().unwrap()
    };
    let path = scenario.to_str().unwrap();
    let link = dir.join("same.toml");
    std::os::unix::fs::symlink(&scenario, &link).unwrap();
    for args in [
        vec!["run", path, "--trace", path],
        vec!["run", path, "--trace", link.to_str().unwrap()],
        vec!["report", path, "--html", path],
        vec!["shrink", path, "--seed", "1", "--out", path],
    ] {
        let output = sim(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains("would replace it"), "{args:?}");
    }
    assert_eq!(std::fs::read(&scenario).unwrap(), before, "the scenario is untouched");
    let fifo = dir.join("trace.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let null = dir.join("null.jsonl");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    for special in [&fifo, &null] {
        let output = sim(&["run", path, "--trace", special.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::symlink_metadata(&fifo).unwrap().file_type()));
    assert!(std::fs::symlink_metadata(&null).unwrap().file_type().is_symlink());
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(sim(&["diff", empty.to_str().unwrap(), empty.to_str().unwrap()]).status.code(), Some(2));
    assert_eq!(sim(&["explore", path, "--seeds", "1..2", "--shard", "3/5"]).status.code(), Some(2));
    let unknown = sim(&["shrink", path, "--seed", "1", "--invariant", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown invariant 'nosuch'"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Values that loaded and quietly changed a run: a window too short for the plan's
/// milliseconds (planned as none), hosts that start after the run's end (every invariant
/// about them unchecked), an attacker with no target, a `tags` fault that changes nothing, a
/// NUL byte no path or command line can carry, a host pattern whose padding makes names of
/// thousands of bytes (it was expanded before its length was checked, gigabytes for a 1 MB
/// file). And an unknown host in a mid-render crash is named as unknown.
#[test]
fn nonsense_that_used_to_load_is_refused_naming_its_line() {
    let cases: [(String, &str); 9] = [
        (
            format!("{GOOD}\n[[fault]]\nkind = \"partition\"\nat_s = 1\nfor_s = 1e-300\na = [\"s1\"]\n"),
            "shorter than the shortest window",
        ),
        (
            format!(
                "{GOOD}\n[[fault]]\nkind = \"host-crash\"\nat_s = 1\nhost = \"s1\"\nrestart_after_s = 1e-7\n"
            ),
            "shorter than the shortest window",
        ),
        (format!("{GOOD}\n[start]\norder = [\"ha\", \"s1\"]\ngap_ms = 3600000\n"), "every host must start"),
        (
            GOOD.replace(
                "[invariants]",
                "[[host]]\nname = \"x\"\nrole = \"attacker\"\nvictim = \"s1\"\ntargets = []\n\n[invariants]",
            ),
            "names no host",
        ),
        (format!("{GOOD}\n[[fault]]\nkind = \"tags\"\nat_s = 1\nhost = \"s1\"\n"), "changes nothing"),
        (GOOD.replace("seeds = [\"ha\"]", "seeds = [\"ha\"]\nlabel = \"a\\u0000b\""), "NUL"),
        (GOOD.replace("template = ", "output = \"a\\u0000b\"\ntemplate = "), "NUL"),
        (
            GOOD.replace("name = \"s1\"", &format!("name = \"s{{{}1..3}}\"", "0".repeat(100_000))),
            "at most 63",
        ),
        (
            format!(
                "{GOOD}\n[[fault]]\nkind = \"host-crash\"\nat_s = 1\nhost = \"zz\"\nduring = \"render\"\n"
            ),
            "unknown host 'zz'",
        ),
    ];
    for (text, wanted) in cases {
        let e = error(&text);
        assert!(e.to_string().contains(wanted) && e.line > 1, "{wanted}: {e}");
        assert!(e.to_string().len() < 400, "a short message: {e}");
    }
}

/// `--jobs` beyond the thread limit (it spawned threads without end on `figures`), an output
/// whose folder does not exist (refused after the whole run), and shard files that are no
/// shard or that lost or gained seeds all exit 2 before anything runs.
#[test]
fn cli_limits_missing_output_folders_and_edited_shards_are_refused() {
    let cli = env!("CARGO_BIN_EXE_rollcall-sim");
    let lab = base().join("lab.toml");
    let lab = lab.to_str().unwrap();
    let sim =
        |args: &[&str]| std::process::Command::new("timeout").arg("60").arg(cli).args(args).output().unwrap();
    for args in [
        vec!["figures", lab, "--seeds", "1", "--jobs", "18446744073709551615"],
        vec!["explore", lab, "--seeds", "1", "--jobs", "0"],
        vec!["run", lab, "--trace", "/nonexistent/dir/x.jsonl"],
        vec!["report", lab, "--html", "/nonexistent/dir/x.html"],
    ] {
        let output = sim(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let dir = std::env::temp_dir().join(format!("rollcall-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let explore = sim(&["explore", lab, "--seeds", "1..2", "--json", "--jobs", "1"]);
    let whole: serde_json::Value = serde_json::from_slice(&explore.stdout).expect("explore --json");
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("shard 0 of 0", |v| v["shard"] = serde_json::json!([0, 0])),
        ("a seed lost", |v| {
            v["outcomes"].as_array_mut().unwrap().remove(0);
        }),
        ("a seed outside the range", |v| v["outcomes"][1]["seed"] = serde_json::json!(999)),
        ("a range it never ran", |v| v["seeds"] = serde_json::json!([1, u64::MAX])),
    ];
    for (what, edit) in edits {
        let mut shard = whole.clone();
        edit(&mut shard);
        let file = dir.join("shard.json");
        std::fs::write(&file, shard.to_string()).unwrap();
        let output = sim(&["merge", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{what}: {}", String::from_utf8_lossy(&output.stdout));
    }
    let file = dir.join("whole.json");
    std::fs::write(&file, whole.to_string()).unwrap();
    assert_eq!(sim(&["merge", file.to_str().unwrap()]).status.code(), Some(0), "the untouched shard merges");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A violation pinned to some seeds: none listed, a seed pinned twice for one invariant, an
/// invariant expected on every seed and pinned to some, are refused naming their line; a
/// valid file gives each seed its own expected outcome and every other seed none.
#[test]
fn violations_pinned_to_seeds_are_checked_and_apply_to_their_seeds_only() {
    let pin = |hosts: &str, seeds: &str| {
        format!("\n[[expect.violation]]\ninvariant = \"converge\"\nhosts = [{hosts}]\nseeds = [{seeds}]\n")
    };
    let cases = [
        (format!("{GOOD}{}", pin("\"s1\"", "")), "lists no seeds"),
        (format!("{GOOD}{}{}", pin("\"s1\"", "3, 4"), pin("\"ha\"", "4")), "pinned twice for seed 4"),
        (
            format!("{GOOD}\n[expect]\nviolated = [\"converge\"]\n{}", pin("\"s1\"", "3")),
            "expected on every seed",
        ),
        (format!("{GOOD}{}", pin("\"s1\"", "-1")), "expected u64"),
        (format!("{GOOD}{}", pin("\"s1\"", "3, 3")), "seed 3 is listed twice"),
    ];
    for (text, wanted) in cases {
        let e = error(&text);
        assert!(e.to_string().contains(wanted) && e.line > 1, "{wanted}: {e}");
    }
    let world =
        parse(&format!("{GOOD}{}{}", pin("\"s1\"", "3, 5"), pin("\"ha\", \"s1\"", "7"))).expect("loads");
    let on = |seed: u64| world.expect.for_seed(seed);
    assert!(on(1).violated.is_empty() && on(1).hosts.is_empty());
    assert!(on(3).violated.contains("converge") && on(3).hosts["converge"] == ["s1".to_string()].into());
    assert_eq!(on(5), on(3));
    assert_eq!(on(7).hosts["converge"].len(), 2);
    assert!(on(3).seeded.is_empty(), "a seed's outcome has nothing left to resolve");
}
