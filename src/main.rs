//! `rollcall`: one node of the lab stack on real sockets.
//!
//! ```text
//! rollcall node --name ha --role balancer --advertise 127.0.0.1 --template haproxy.cfg.hb --output haproxy.cfg
//! rollcall node --name s1 --role backend --advertise 127.0.0.2 --join 127.0.0.1 --retry-join
//! rollcall balancer --config haproxy.cfg
//! ```
//!
//! Exit codes: 0 stopped by Ctrl-C, 1 failed while running, 2 bad input (arguments, a config
//! file with errors at start).

use std::cell::Cell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;

use rollcall::gossip::codec::{NAME_BYTES_MAX, TAGS_BYTES_MAX, tags_bytes};
use rollcall::gossip::driver::AgentControl;
use rollcall::gossip::handlers::HandlerSpec;
use rollcall::gossip::keyring::{Key, Keyring, Wire};
use rollcall::gossip::serf::{BROADCAST_TIMEOUT, LEAVE_PROPAGATE_DELAY};
use rollcall::gossip::{JoinMode, Profile};
use rollcall::host::{Clock, Event, HostEnv, Observer, RealDisk};
use rollcall::net::tokio_net::TokioNet;
use rollcall::node::{self, GossipSettings, NodeHandles, NodeSpec, Role};
use rollcall::render::driver::RenderOptions;
use rollcall::supervisor::core::{Command as Svc, NodeSettings, ServiceSpec};
use rollcall::supervisor::driver::{self as supervisor, Control, Service};
use rollcall::supervisor::process::{process_service, read_service_dir};

// The balancer allocates a few small buffers per request across threads; mimalloc's
// thread-local free lists make that measurably cheaper than glibc's (benches/balancer.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rollcall", version, about = "The rollcall stack on real sockets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// memberlist's configuration profiles.
#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// Serf's defaults (memberlist `DefaultLANConfig`).
    Lan,
    /// Faster detection for one host or loopback (memberlist `DefaultLocalConfig`).
    Local,
    /// Slow, lossy links (memberlist `DefaultWANConfig`).
    Wan,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Balancer,
    Backend,
}

/// `--balancer`.
#[derive(Clone, Copy, ValueEnum)]
enum BalancerArg {
    /// rollcall's balancer, in this process.
    Builtin,
    /// The system's HAProxy, supervised as a service.
    Haproxy,
}

/// A node name peers accept: 1 to [`NAME_BYTES_MAX`] bytes (a longer one would have every
/// message about this node refused).
fn parse_node_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > NAME_BYTES_MAX {
        return Err(format!("{} bytes; a node name takes 1 to {NAME_BYTES_MAX}", text.len()));
    }
    Ok(text.to_string())
}

/// Refuses serf tags that peers would refuse: the map with the role tag over
/// [`TAGS_BYTES_MAX`] (every message about this node would be dropped as over the limit).
fn check_serf_tags(tags: &[(String, String)], role: &Role) -> Result<(), BadInput> {
    let mut carried: std::collections::BTreeMap<String, String> = tags.iter().cloned().collect();
    carried.insert("role".into(), role.tag().into());
    let bytes = tags_bytes(&carried);
    if bytes > TAGS_BYTES_MAX {
        return Err(BadInput(format!(
            "--serf-tag: the node's tags would be {bytes} bytes (a member carries at most {TAGS_BYTES_MAX})"
        )));
    }
    Ok(())
}

/// `KEY=VALUE`, with a non-empty key.
fn parse_serf_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && key != "role" => Ok((key.to_string(), value.to_string())),
        Some(("role", _)) => Err("the role tag comes from --role".to_string()),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// The HAProxy binary: the one given, else `haproxy` on PATH, else Debian's /usr/sbin/haproxy.
fn haproxy_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_file(), "--haproxy {}: no such file", path.display());
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("haproxy")).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = on_path.into_iter().chain([PathBuf::from("/usr/sbin/haproxy")]).find(|p| p.is_file());
    found.context("--balancer haproxy: no haproxy on PATH nor at /usr/sbin/haproxy (apt-get install haproxy)")
}

#[derive(Subcommand)]
// One command per process, parsed once: the node's many flags cost nothing to keep inline.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run one node until interrupted.
    Node {
        /// Node name (unique in the cluster), 1 to 128 bytes as the gossip wire allows.
        #[arg(long, value_parser = parse_node_name)]
        name: String,
        /// What the node runs.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Address peers reach this node at (also the address it binds).
        #[arg(long)]
        advertise: IpAddr,
        /// Gossip port.
        #[arg(long, default_value_t = node::GOSSIP_PORT)]
        gossip_port: u16,
        /// Seed to join through (repeatable), as host or host:port.
        #[arg(long, value_parser = parse_join)]
        join: Vec<String>,
        /// Keep retrying the join (Serf's -retry-join) instead of giving up.
        #[arg(long)]
        retry_join: bool,
        /// Time between join attempts, in ms (at least 100, as in scenario files).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..))]
        retry_interval_ms: u64,
        /// Keep the alive members in this file and push-pull with them on restart (Serf's
        /// -snapshot with -rejoin).
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// Encrypt gossip with this base64 AES key (Serf's -encrypt; `serf keygen` makes one).
        #[arg(long, value_name = "KEY", value_parser = parse_key)]
        encrypt: Option<String>,
        /// Keep the keyring in this file, a JSON list of base64 keys, primary first (Serf's
        /// -keyring-file): read at start over --encrypt, rewritten on every key change.
        #[arg(long, value_name = "PATH")]
        keyring_file: Option<PathBuf>,
        /// Label every gossip frame and refuse frames without it (memberlist's Label).
        #[arg(long, value_name = "LABEL", value_parser = parse_label)]
        label: Option<String>,
        /// Gossip timings profile.
        #[arg(long, value_enum, default_value = "lan")]
        profile: ProfileArg,
        /// Balancer: the handlebars template.
        #[arg(long, required_if_eq("role", "balancer"))]
        template: Option<PathBuf>,
        /// Balancer: the rendered configuration file.
        #[arg(long, required_if_eq("role", "balancer"))]
        output: Option<PathBuf>,
        /// Backend: the webapp's TAG.
        #[arg(long, default_value = "")]
        tag: String,
        /// Seed of the node's random choices, to replay them; default: drawn from the OS.
        /// Refused with --encrypt: a restart with the same seed would repeat AES-GCM nonces.
        #[arg(long, conflicts_with = "encrypt")]
        seed: Option<u64>,
        /// Serf's event handler (repeatable): `[member-join,member-leave,...=]SCRIPT`, run
        /// with `sh -c` for each coalesced batch of member events (3 s coalesce, 1 s quiescent
        /// period), never two at once.
        #[arg(long = "event-handler", value_name = "SPEC")]
        event_handlers: Vec<HandlerSpec>,
        /// Serf's `-tag key=value` (repeatable), beyond `role`; templates read them as
        /// `{{ tags.key }}`.
        #[arg(long = "serf-tag", value_name = "KEY=VALUE", value_parser = parse_serf_tag)]
        serf_tags: Vec<(String, String)>,
        /// Balancer: rollcall's own balancer, or the system's HAProxy (master-worker, reloaded
        /// with SIGUSR2, every rendering checked with `haproxy -c` before the swap).
        #[arg(long, value_enum, default_value = "builtin")]
        balancer: BalancerArg,
        /// With `--balancer haproxy`: its path (default: `haproxy` on PATH, else
        /// /usr/sbin/haproxy, Debian's place).
        #[arg(long)]
        haproxy: Option<PathBuf>,
    },
    /// Run the balancer alone on an haproxy.cfg, as HAProxy would: it reloads on SIGHUP and
    /// whenever the file changes; a config with errors is reported and never replaces the
    /// running one.
    Balancer {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Seed of the health checks' phases.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Threads, each serving the frontend (default: one per CPU, as HAProxy's nbthread).
        /// Each thread runs its own health checks.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
    },
    /// Render a template once for a members file, as consul-template does with `-once`:
    /// validated with the balancer's parser (and --check-cmd), written atomically only when
    /// the bytes change, then --command. Exit 0: rendered or unchanged; 1: the rendering was
    /// rejected (the old file stays) or --command failed (the new file is in place); 2: bad
    /// input.
    Render {
        /// The handlebars template.
        #[arg(long)]
        template: PathBuf,
        /// The members, as JSON: `[{"name": "s1", "addr": "10.0.0.2", "tags": {"role":
        /// "backend"}, "live": true}]` (`tags` and `live` optional; live defaults to true).
        #[arg(long)]
        members: PathBuf,
        /// Where the rendering goes.
        #[arg(long, required_unless_present = "dry_run")]
        out: Option<PathBuf>,
        /// A command that must accept the rendering before it replaces the file; `{file}` is
        /// the new rendering's path, e.g. `haproxy -c -f {file}`.
        #[arg(long)]
        check_cmd: Option<String>,
        /// A command run after the file changed (a reload), as consul-template's `command`.
        #[arg(long)]
        command: Option<String>,
        /// Longest run of --check-cmd or --command, in ms (at least 1).
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
        command_timeout_ms: u64,
        /// Keep the replaced file as OUT.bak.
        #[arg(long, conflicts_with = "dry_run")]
        backup: bool,
        /// Skip the balancer's own check of the rendering.
        #[arg(long)]
        no_validate: bool,
        /// Print the rendering instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Supervise real processes as s6-svscan under s6-overlay does: init steps in order, then
    /// one s6 service directory per subdirectory of --services (run, finish, down,
    /// timeout-finish, timeout-kill, down-signal, max-death-tally), then the main program,
    /// whose exit halts everything with its code. Events print as JSON lines; SIGINT or
    /// SIGTERM shuts down (exit code 0).
    Supervise {
        /// The scan directory.
        #[arg(long)]
        services: PathBuf,
        /// cont-init.d: executables run one after another, in name order, first.
        #[arg(long)]
        init: Option<PathBuf>,
        /// A failing init step halts the node (S6_BEHAVIOUR_IF_STAGE2_FAILS=2).
        #[arg(long)]
        init_failure_halts: bool,
        /// The main program and its arguments (CMD), after `--`.
        #[arg(last = true)]
        main: Vec<String>,
    },
}

/// How often the balancer looks at its file for changes.
const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a graceful leave can take: two broadcasts, each up to the broadcast timeout,
/// then the propagate delay, and a second to spare.
const LEAVE_WAIT_MAX: Duration =
    Duration::from_secs(2 * BROADCAST_TIMEOUT.as_secs() + LEAVE_PROPAGATE_DELAY.as_secs() + 1);

/// Real monotonic time since the process started.
struct ProcessClock(tokio::time::Instant);

impl Clock for ProcessClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Writes `text` on stdout. A reader that went away (`| head -1`) is no reason to stop a
/// supervisor or an agent, nor to leave their children behind as a panic would: what it
/// would have read is dropped.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints events as JSON lines on stdout; the per-request ones only when asked (a balancer
/// under load would spend its time printing).
struct PrintObserver {
    per_request: bool,
}

impl Observer for PrintObserver {
    fn record(&self, at: Duration, host: &str, event: Event) {
        if !self.per_request && matches!(event, Event::Forwarding { .. } | Event::Proxied { .. }) {
            return;
        }
        let line = serde_json::json!({ "t_us": at.as_micros() as u64, "host": host, "event": event });
        print_stdout(&format!("{line}\n"));
    }

    fn records_requests(&self) -> bool {
        self.per_request
    }
}

fn main() -> ExitCode {
    // Logs go to stderr: stdout carries the events as JSON lines.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let result = match Cli::parse().command {
        command @ Command::Node { .. } => run_node(command),
        Command::Balancer { config, seed, threads } => run_balancer(config, seed, threads),
        Command::Render {
            template,
            members,
            out,
            check_cmd,
            command,
            command_timeout_ms,
            backup,
            no_validate,
            dry_run,
        } => {
            let job = RenderJob {
                template,
                members,
                out,
                check_cmd,
                command,
                timeout: Duration::from_millis(command_timeout_ms),
                backup,
                validate: !no_validate,
                dry_run,
            };
            return match run_render(&job) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(if error.is::<BadInput>() { 2 } else { 1 })
                }
            };
        }
        Command::Supervise { services, init, init_failure_halts, main } => {
            return match run_supervise(&services, init.as_deref(), init_failure_halts, main) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(if error.is::<BadInput>() { 2 } else { 1 })
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.is::<BadInput>() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

/// Largest file the binary reads (a members list of thousands of nodes is a few MB; the
/// renderer bounds a template further).
const INPUT_BYTES_MAX: u64 = 16 << 20;

/// Input the user must fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// What `rollcall render` was asked to do.
struct RenderJob {
    template: PathBuf,
    members: PathBuf,
    out: Option<PathBuf>,
    check_cmd: Option<String>,
    command: Option<String>,
    timeout: Duration,
    backup: bool,
    validate: bool,
    dry_run: bool,
}

fn run_render(job: &RenderJob) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        rollcall::files::read_bounded(path, INPUT_BYTES_MAX)
            .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))
    };
    let template_file = job.template.display().to_string();
    let renderer = rollcall::render::Renderer::new(&template_file, &read(&job.template)?)
        .map_err(|e| BadInput(e.to_string()))?;
    let members: Vec<rollcall::render::Member> = serde_json::from_str(&read(&job.members)?)
        .map_err(|e| BadInput(format!("{}:{}:{}: {e}", job.members.display(), e.line(), e.column())))?;
    let text = renderer
        .render(&rollcall::render::Renderer::addresses(&members))
        .map_err(|e| BadInput(e.to_string()))?;
    let Some(out) = job.out.as_ref().filter(|_| !job.dry_run) else {
        print_stdout(&text);
        return Ok(());
    };
    let out = &rollcall::files::replaceable_target(out)
        .map_err(|e| BadInput(format!("--out {}: {e}", out.display())))?;
    for input in [&job.template, &job.members] {
        if rollcall::files::same_file(out, input) {
            return Err(BadInput(format!(
                "--out {}: this is {}: rendering there would replace it",
                out.display(),
                input.display()
            ))
            .into());
        }
    }
    // What is there now, if it can be read: one that cannot (not UTF-8, unreadable) is
    // replaced all the same, as a changed file.
    let old = std::fs::read(out).ok();
    if old.as_deref() == Some(text.as_bytes()) {
        eprintln!("{}: unchanged", out.display());
        return Ok(());
    }
    if job.validate {
        rollcall::balancer::config::parse(&out.display().to_string(), &text)
            .map_err(|e| anyhow::anyhow!("rendering rejected, {} kept: {e}", out.display()))?;
    }
    let staged = staged_write(out, text.as_bytes())
        .map_err(|e| BadInput(format!("cannot write beside {}: {e}", out.display())))?;
    if let Some(check) = &job.check_cmd {
        let command = check.replace("{file}", &staged.display().to_string());
        if let Err(error) = run_command(&command, job.timeout) {
            let _ = std::fs::remove_file(&staged);
            anyhow::bail!("rendering rejected by `{command}`, {} kept: {error}", out.display());
        }
    }
    if let (true, Some(old)) = (job.backup, &old) {
        let backup = PathBuf::from(format!("{}.bak", out.display()));
        if let Err(error) = rollcall::files::write_atomic(&backup, old) {
            let _ = std::fs::remove_file(&staged);
            return Err(BadInput(format!("cannot write {}: {error}", backup.display())).into());
        }
    }
    std::fs::rename(&staged, out)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    eprintln!("{}: rendered", out.display());
    match &job.command {
        Some(command) => run_command(command, job.timeout).map_err(|e| anyhow::anyhow!("`{command}`: {e}")),
        None => Ok(()),
    }
}

/// The rendering, written and synced beside `out` (same folder, so the rename is atomic).
fn staged_write(out: &std::path::Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staged = out.with_file_name(format!(".{name}.rollcall-{}", std::process::id()));
    // A leftover or a link planted at the staged name is removed, not followed.
    let _ = std::fs::remove_file(&staged);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&staged)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(staged)
}

/// Runs `sh -c command`, killed after `timeout` with everything it started (its own
/// process group: killing the shell alone left `sleep 30` running); an error unless it
/// exits 0.
fn run_command(command: &str, timeout: Duration) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // Its own process group, as consul-template runs commands, so that a timeout kills all
    // of it; no terminal input (it is not in the terminal's foreground group).
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "{status}");
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            anyhow::bail!("no answer within {} ms", timeout.as_millis());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The services `rollcall supervise` runs, in start order.
fn supervised_services(
    services: &std::path::Path,
    init: Option<&std::path::Path>,
    main: Vec<String>,
) -> anyhow::Result<Vec<Service>> {
    let sorted = |dir: &std::path::Path| -> anyhow::Result<Vec<PathBuf>> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| BadInput(format!("cannot read {}: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        Ok(paths)
    };
    let mut list = Vec::new();
    for step in init.map(sorted).transpose()?.unwrap_or_default().into_iter().filter(|p| p.is_file()) {
        let name = step.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        list.push(process_service(ServiceSpec::init(name), vec![step.display().to_string()], None));
    }
    // s6 runs `./run` inside the service directory: a relative --services would name no
    // directory from there.
    let services = std::fs::canonicalize(services)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", services.display())))?;
    for dir in sorted(&services)?.into_iter().filter(|p| p.is_dir()) {
        list.push(read_service_dir(&dir).map_err(|e| BadInput(e.to_string()))?);
    }
    if !main.is_empty() {
        list.push(process_service(ServiceSpec::main("main"), main, None));
    }
    Ok(list)
}

fn run_supervise(
    services: &std::path::Path,
    init: Option<&std::path::Path>,
    init_failure_halts: bool,
    main: Vec<String>,
) -> anyhow::Result<i32> {
    let list = supervised_services(services, init, main)?;
    let settings = NodeSettings { init_failure_halts, ..NodeSettings::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let env = HostEnv::new(
            "supervise",
            TokioNet::new(std::net::Ipv4Addr::LOCALHOST.into()),
            Rc::new(ProcessClock(tokio::time::Instant::now())),
            Rc::new(RealDisk),
            Rc::new(PrintObserver { per_request: false }),
            1,
        );
        let (control, control_rx) = mpsc::unbounded_channel();
        let supervisor = supervisor::run(env, list, settings, control_rx);
        tokio::pin!(supervisor);
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                code = &mut supervisor => return Ok(code),
                _ = tokio::signal::ctrl_c() => { let _ = control.send(Control::Shutdown { code: 0 }); }
                _ = terminate.recv() => { let _ = control.send(Control::Shutdown { code: 0 }); }
            }
        }
    })
}

fn run_balancer(config: PathBuf, seed: u64, threads: Option<u16>) -> anyhow::Result<()> {
    let text = rollcall::files::read_bounded(&config, INPUT_BYTES_MAX)
        .map_err(|error| BadInput(format!("cannot read {}: {error}", config.display())))?;
    let parsed = rollcall::balancer::config::parse(&config.display().to_string(), &text)
        .map_err(|error| BadInput(error.to_string()))?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let threads =
        threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let advertise = parsed.bind.ip();
    // One current-thread runtime per thread, each with its own listener on the shared port
    // (SO_REUSEPORT), so the stack's non-Send futures run unchanged; the first thread alone
    // watches the file and signals, and tells the others to reload.
    let (reload, reload_rx) = tokio::sync::watch::channel(0u64);
    let mut workers = Vec::new();
    for index in 1..threads {
        let (config, reload_rx) = (config.clone(), reload_rx.clone());
        let seed = seed.wrapping_add(index as u64);
        workers.push(std::thread::spawn(move || balancer_thread(advertise, config, seed, reload_rx, None)));
    }
    balancer_thread(advertise, config, seed, reload_rx, Some(reload))?;
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a balancer thread panicked"))??;
    }
    Ok(())
}

fn balancer_thread(
    advertise: IpAddr,
    config: PathBuf,
    seed: u64,
    reload_rx: tokio::sync::watch::Receiver<u64>,
    watcher: Option<tokio::sync::watch::Sender<u64>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let env = HostEnv::new(
            "balancer",
            TokioNet { advertise, reuse_port: true },
            Rc::new(ProcessClock(tokio::time::Instant::now())),
            Rc::new(RealDisk),
            Rc::new(PrintObserver { per_request: false }),
            seed,
        );
        if let Some(reload) = watcher {
            tokio::task::spawn_local(watch_config(config.clone(), reload));
        }
        let bugs = rollcall::node::PlantedBugs::default();
        tokio::select! {
            result = rollcall::balancer::proxy::run(env, config, reload_rx, bugs, std::process::id()) => {
                result.map_err(|e| anyhow::anyhow!(e))
            }
            _ = tokio::signal::ctrl_c() => std::process::exit(0),
        }
    })
}

/// Bumps `reload` on SIGHUP and when the file's modification time or size changes.
async fn watch_config(path: PathBuf, reload: tokio::sync::watch::Sender<u64>) {
    let stamp = |path: &PathBuf| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&path);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(CONFIG_POLL_INTERVAL);
    loop {
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = signalled => {}
            _ = poll.tick() => {
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                last = now;
            }
        }
        reload.send_modify(|generation| *generation += 1);
    }
}

/// The profile's timings, with the join, snapshot and wire the command line asks for.
fn gossip_settings(
    profile: ProfileArg,
    seeds: Vec<String>,
    join: JoinMode,
    snapshot: Option<PathBuf>,
    wire: Wire,
    keyring_file: Option<PathBuf>,
) -> GossipSettings {
    let profile = match profile {
        ProfileArg::Lan => Profile::Lan,
        ProfileArg::Local => Profile::Local,
        ProfileArg::Wan => Profile::Wan,
    };
    GossipSettings { seeds, join, snapshot, wire, keyring_file, ..GossipSettings::of(profile) }
}

/// A key checked where it is given; kept as text, which the keyring parses again.
fn parse_key(text: &str) -> Result<String, String> {
    Key::parse(text).map(|_| text.to_string()).map_err(|error| error.to_string())
}

/// A seed from the OS's entropy: a node's nonces must differ from every other node's and from
/// its own earlier runs'.
fn os_seed() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no OS entropy for the seed: {error}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A `--join` seed that names a host (or an address) and a port, checked where it is given;
/// the name is resolved when the agent starts, as Serf resolves it.
fn parse_join(text: &str) -> Result<String, String> {
    let well_formed = |host: &str| {
        let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if host.parse::<IpAddr>().is_ok() || (!host.is_empty() && host.chars().all(name)) {
            Ok(IpAddr::from([0, 0, 0, 0]))
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is no host name or address"),
            ))
        }
    };
    rollcall::net::resolve_endpoint_with(text, node::GOSSIP_PORT, well_formed)
        .map(|_| text.to_string())
        .map_err(|error| error.to_string())
}

fn parse_label(text: &str) -> Result<String, String> {
    Wire::new(Some(text.to_string()), None).map(|_| text.to_string()).map_err(|error| error.to_string())
}

fn run_node(command: Command) -> anyhow::Result<()> {
    let Command::Node {
        name,
        role,
        advertise,
        gossip_port,
        join,
        retry_join,
        retry_interval_ms,
        snapshot,
        encrypt,
        keyring_file,
        label,
        profile,
        template,
        output,
        tag,
        seed,
        event_handlers,
        serf_tags,
        balancer,
        haproxy,
    } = command
    else {
        unreachable!("called for the node command")
    };
    check_node_files(snapshot.as_deref(), keyring_file.as_deref(), output.as_deref())?;
    let role = node_role(role, template, output)?;
    check_serf_tags(&serf_tags, &role)?;
    let join_mode = if retry_join {
        JoinMode::Retry { interval: Duration::from_millis(retry_interval_ms), max: 0 }
    } else {
        JoinMode::Once { timeout: Duration::from_secs(1) }
    };
    let keyring = encrypt.map(|key| Keyring::parse(&[key])).transpose()?;
    let wire = Wire::new(label, keyring)?;
    let spec = NodeSpec {
        role,
        gossip: gossip_settings(profile, join, join_mode, snapshot, wire, keyring_file),
        gossip_port,
        tag,
        permanent_failure: Vec::new(),
        bugs: rollcall::node::PlantedBugs::default(),
        handlers: event_handlers,
        tags: serf_tags.into_iter().collect(),
        haproxy: match balancer {
            BalancerArg::Builtin => None,
            BalancerArg::Haproxy => Some(haproxy_binary(haproxy)?),
        },
    };
    let seed = seed.map_or_else(os_seed, Ok)?;
    run_until_stopped(name, advertise, seed, spec)
}

/// The node's files, checked before anything starts: an agent that cannot use them would
/// otherwise fail at every start (a keyring file it cannot read), or quietly do without
/// them (a snapshot that is a directory), and a renderer fail at every rendering.
fn check_node_files(
    snapshot: Option<&std::path::Path>,
    keyring_file: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let writable_file = |flag: &str, path: &std::path::Path| -> anyhow::Result<()> {
        let target = rollcall::files::replaceable_target(path)
            .map_err(|e| BadInput(format!("{flag} {}: {e}", path.display())))?;
        let dir =
            target.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(BadInput(format!("{flag} {}: no directory {}", path.display(), dir.display())).into());
        }
        Ok(())
    };
    if let Some(path) = snapshot {
        writable_file("--snapshot", path)?;
    }
    if let Some(path) = output {
        writable_file("--output", path)?;
    }
    if let Some(path) = keyring_file {
        writable_file("--keyring-file", path)?;
        if path.exists() {
            let bad = |error: String| BadInput(format!("--keyring-file {}: {error}", path.display()));
            let text = rollcall::files::read_bounded(path, INPUT_BYTES_MAX).map_err(bad)?;
            Keyring::from_file_text(text.as_bytes()).map_err(bad)?;
        }
    }
    Ok(())
}

/// The node's role: a balancer's template is read and checked before anything starts.
fn node_role(role: RoleArg, template: Option<PathBuf>, output: Option<PathBuf>) -> anyhow::Result<Role> {
    Ok(match role {
        RoleArg::Backend => Role::Backend,
        RoleArg::Balancer => {
            let template = template.context("--template is required for a balancer")?;
            let template_text = rollcall::files::read_bounded(&template, INPUT_BYTES_MAX)
                .map_err(|error| BadInput(format!("cannot read template {}: {error}", template.display())))?;
            let template_file = template.display().to_string();
            rollcall::render::Renderer::new(&template_file, &template_text)
                .map_err(|error| BadInput(error.to_string()))?;
            let output = output.context("--output is required")?;
            Role::Balancer {
                template_file,
                template_text,
                output,
                options: RenderOptions::default(),
                pipeline: rollcall::node::Pipeline::Fixed,
            }
        }
    })
}

/// Runs the node until it ends or is interrupted; the first SIGINT is a graceful leave.
fn run_until_stopped(name: String, advertise: IpAddr, seed: u64, spec: NodeSpec) -> anyhow::Result<()> {
    // One thread, like a simulated host: the same futures run here and under turmoil.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let env = HostEnv::new(
            name,
            TokioNet::new(advertise),
            Rc::new(ProcessClock(tokio::time::Instant::now())),
            Rc::new(RealDisk),
            Rc::new(PrintObserver { per_request: true }),
            seed,
        );
        let (control, control_rx) = mpsc::unbounded_channel();
        let agent = Rc::new(AgentControl::default());
        let handles =
            NodeHandles { faults: Rc::new(Cell::default()), control: control_rx, agent: agent.clone() };
        let node = node::boot(env, spec, handles);
        tokio::pin!(node);
        tokio::select! {
            () = &mut node => return,
            _ = tokio::signal::ctrl_c() => {}
        }
        // SIGINT is a graceful leave, as for Serf: peers record this node as left, not
        // failed. A second SIGINT, or a leave that takes too long, stops at once.
        eprintln!("leaving the cluster (Ctrl-C again to stop at once)");
        let _ = control.send(Control::Svc { service: "serf".into(), command: Svc::Down });
        tokio::select! {
            () = &mut node => {}
            () = agent.left() => {}
            _ = tokio::signal::ctrl_c() => {}
            () = tokio::time::sleep(LEAVE_WAIT_MAX) => eprintln!("leave timed out"),
        }
    });
    Ok(())
}
