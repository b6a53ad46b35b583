//! The lab's own files: the renderer renders its templates unchanged with its data model,
//! the balancer loads the HAProxy 2.6 rendering, and the old one is flagged at line 53 the
//! way HAProxy 2.6 flags it. Real HAProxy checks every rendering we ship.

use std::path::{Path, PathBuf};
use std::process::Command;

use rollcall::balancer::config;
use rollcall::render::{Address, Renderer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lab's `addresses.json`, as its handler scripts build it.
fn lab_addresses() -> Vec<Address> {
    let json: serde_json::Value =
        serde_json::from_str(&read(&root().join("tests/fixtures/lab/addresses.json"))).unwrap();
    json["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Address {
            host: a["host"].as_str().unwrap().into(),
            ip: a["ip"].as_str().unwrap().into(),
            tags: Default::default(),
        })
        .collect()
}

fn render(template: &Path, addresses: &[Address]) -> String {
    let renderer = Renderer::new(&template.display().to_string(), &read(template)).unwrap();
    renderer.render(addresses).unwrap()
}

fn shipped_template() -> PathBuf {
    root().join("scenarios/templates/haproxy.cfg.hb")
}

#[test]
fn the_lab_membership_renders_the_snapshot() {
    let rendered = render(&shipped_template(), &lab_addresses());
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("lab_haproxy_cfg", rendered);
    });
}

#[test]
fn the_balancer_loads_the_2_6_rendering_checks_its_servers_and_warns_about_the_rest() {
    let rendered = render(&shipped_template(), &lab_addresses());
    let loaded = config::parse("haproxy.cfg", &rendered).unwrap();
    assert_eq!(loaded.bind.port(), 80);
    let servers: Vec<String> =
        loaded.backend().servers.iter().map(|s| format!("{} {}", s.name, s.addr)).collect();
    assert_eq!(servers, ["s1 192.168.42.11:3000", "s2 192.168.42.22:3000"]);
    assert!(loaded.backend().forward_for);
    // The lab's `listen stats` section is served: bind *:1936, stats uri /, hide-version.
    let (bind, page) = loaded.stats.clone().expect("stats page");
    assert_eq!((bind.port(), page.uri.as_str(), page.hide_version), (1936, "/", true));
    // `option httpchk HEAD /` and `server ... check`: HAProxy 2.6's default check settings.
    let check = loaded.backend().http_check.clone().expect("option httpchk");
    assert_eq!((check.method.as_str(), check.uri.as_str()), ("HEAD", "/"));
    let settings = loaded.backend().servers[0].check.expect("check");
    assert_eq!(settings, rollcall::balancer::health::CheckSettings::default());
    assert!(!loaded.warnings.iter().any(|w| w.contains("httpchk")), "{:?}", loaded.warnings);
    // `http-request set-header X-Forwarded-Port %[dst_port]` is applied, not warned about.
    let rule = &loaded.backend().set_headers[0];
    assert_eq!(
        (rule.name.as_str(), rule.value([10, 0, 0, 9].into(), 80)),
        ("X-Forwarded-Port", "80".to_string())
    );
    assert!(!loaded.warnings.iter().any(|w| w.contains("set-header")), "{:?}", loaded.warnings);
}

#[test]
fn the_old_lab_template_renders_but_line_53_is_rejected_as_haproxy_2_6_does() {
    let old = root().join("tests/fixtures/lab/haproxy.cfg.hb");
    let rendered = render(&old, &lab_addresses());
    assert!(rendered.contains("server s1 192.168.42.11:3000 check"));
    let error = config::parse("haproxy.cfg", &rendered).unwrap_err();
    assert_eq!(error.line, 53);
    assert!(error.to_string().contains("please use the 'bind' keyword for listening addresses"), "{error}");
    assert!(rendered.lines().nth(52).unwrap().starts_with("listen stats *:1936"));
}

/// Runs `haproxy -c -f` on `text`; real HAProxy is the judge of what we render.
fn haproxy_check(name: &str, text: &str) -> (bool, String) {
    let which = Command::new("haproxy").arg("-v").output();
    let Ok(version) = which else {
        panic!(
            "HAProxy is not installed: this test needs the real `haproxy` binary \
             (Debian: apt-get install -y haproxy; .ci/run installs it)"
        );
    };
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("HAProxy version"),
        "unexpected haproxy -v output"
    );
    let dir = std::env::temp_dir().join(format!("rollcall-haproxy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, text).unwrap();
    let output = Command::new("haproxy").arg("-c").arg("-f").arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[test]
fn real_haproxy_accepts_every_rendering_of_the_shipped_template() {
    let many: Vec<Address> = (1..=40)
        .map(|i| Address {
            host: format!("web-{i:02}"),
            ip: format!("10.0.{}.{}", i / 200, i % 200 + 1),
            tags: Default::default(),
        })
        .collect();
    let cases: [(&str, Vec<Address>); 4] = [
        ("none", Vec::new()),
        ("one", lab_addresses()[..1].to_vec()),
        ("lab", lab_addresses()),
        ("many", many),
    ];
    for (name, addresses) in cases {
        let (ok, said) = haproxy_check(name, &render(&shipped_template(), &addresses));
        assert!(ok, "haproxy -c rejected the '{name}' rendering:\n{said}");
    }
}

#[test]
fn real_haproxy_rejects_the_old_template_at_the_line_our_checker_names() {
    let rendered = render(&root().join("tests/fixtures/lab/haproxy.cfg.hb"), &lab_addresses());
    let (ok, said) = haproxy_check("old", &rendered);
    assert!(!ok, "HAProxy 2.6 accepted the 1.5 syntax:\n{said}");
    assert!(said.contains(":53]"), "HAProxy names another line:\n{said}");
    assert_eq!(config::parse("haproxy.cfg", &rendered).unwrap_err().line, 53);
}

/// Member views as the renderer gets them (from gossip or a members file): who is a backend
/// and who is not, each rendering kept as a reviewed snapshot and judged by real HAProxy.
#[test]
fn member_views_render_as_their_snapshots_and_haproxy_accepts_them() {
    use rollcall::render::Member;
    let member = |name: &str, ip: [u8; 4], tags: &[(&str, &str)], live: bool| Member {
        name: name.into(),
        addr: ip.into(),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        live,
    };
    let backend = |name: &str, last: u8| member(name, [10, 0, 0, last], &[("role", "backend")], true);
    let balancer = member("ha", [10, 0, 0, 1], &[("role", "balancer")], true);
    let cases: Vec<(&str, Vec<Member>)> = vec![
        ("view_empty", vec![balancer.clone()]),
        ("view_one_backend", vec![balancer.clone(), backend("s1", 2)]),
        ("view_three_backends", vec![backend("s3", 4), balancer.clone(), backend("s1", 2), backend("s2", 3)]),
        (
            "view_odd_tags",
            vec![
                member(
                    "s1",
                    [10, 0, 0, 2],
                    &[("role", "backend"), ("zone", "eu-1/a b"), ("x", "{{y}}")],
                    true,
                ),
                member("s2", [10, 0, 0, 3], &[("role", "Backend")], true),
                member("s3", [10, 0, 0, 4], &[("weight", "5")], true),
            ],
        ),
        (
            "view_a_node_leaving",
            vec![balancer, backend("s1", 2), member("s2", [10, 0, 0, 3], &[("role", "backend")], false)],
        ),
    ];
    let template = shipped_template();
    let renderer = Renderer::new(&template.display().to_string(), &read(&template)).unwrap();
    for (name, view) in cases {
        let output = renderer.update(&view).unwrap().expect("nothing written yet");
        let text = String::from_utf8(output.bytes).unwrap();
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, text);
        });
        let (ok, said) = haproxy_check(name, &text);
        assert!(ok, "haproxy -c rejected the '{name}' rendering:\n{said}");
    }
}

/// The tag-driven template of `lab-invalid-render.toml`: a weight outside 0-256 is rejected by
/// real HAProxy and by our checker at the same line, and a good one is accepted by both.
#[test]
fn the_weights_template_is_judged_alike_by_haproxy_and_our_checker() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/templates/haproxy-weights.cfg.hb");
    let renderer = Renderer::new(&path.display().to_string(), &read(&path)).unwrap();
    let weighted = |weight: &str| rollcall::render::Member {
        name: "s2".into(),
        addr: [10, 0, 0, 3].into(),
        tags: [("role", "backend"), ("weight", weight)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        live: true,
    };
    let render = |weight: &str| renderer.render(&Renderer::addresses(&[weighted(weight)])).unwrap();
    let (ok, said) = haproxy_check("weight-5", &render("5"));
    assert!(ok, "{said}");
    assert!(config::parse("haproxy.cfg", &render("5")).is_ok());
    let bad = render("300");
    let line = config::parse("haproxy.cfg", &bad).unwrap_err().line;
    let (ok, said) = haproxy_check("weight-300", &bad);
    assert!(
        !ok && said.contains(&format!(":{line}]")),
        "HAProxy accepted it, or names another line than {line}:\n{said}"
    );
}
