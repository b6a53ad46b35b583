//! One node of the lab, wired the way the lab wires it: an s6-style supervisor running
//! `serf` plus either `renderer` and `haproxy` (the balancer node) or `webapp` (a backend).
//! The same wiring runs on real sockets and in the simulator.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::gossip::coalesce::{COALESCE_PERIOD_DEFAULT, QUIESCENT_PERIOD_DEFAULT};
use crate::gossip::driver::{AgentControl, Command};
use crate::gossip::handlers::{self, HandlerContext, HandlerSpec, PENDING_EVENTS_MAX};
use crate::gossip::{GossipConfig, JoinMode, Profile, driver as gossip};
use crate::host::HostEnv;
use crate::net::lossy::LinkFaults;
use crate::net::{Net, resolve_endpoint};
use crate::render::driver::{self as render, RenderOptions, RenderSettings};
use crate::supervisor::core::{FINISH_PERMANENT_FAILURE, NodeSettings, ServiceSpec};
use crate::supervisor::driver::{self as supervisor, Control, Readiness, Service, ServiceFuture, Stopped};
use crate::supervisor::signal::Signal;
use crate::{balancer, webapp};

/// The gossip port (Serf's default).
pub const GOSSIP_PORT: u16 = 7946;

/// The balancer's service name (the lab's s6 service directory is `haproxy`).
pub const BALANCER_SERVICE: &str = "haproxy";

/// The renderer's service name (consul-template's place in the lab).
pub const RENDERER_SERVICE: &str = "renderer";

/// What a node does in the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// `ha`: gossip, renderer and balancer.
    Balancer {
        template_file: String,
        template_text: String,
        output: PathBuf,
        options: RenderOptions,
        pipeline: Pipeline,
    },
    /// `s1`, `s2`, ...: gossip and the web app.
    Backend,
}

/// How `ha` goes from a membership change to a running balancer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// As the lab does it: the rendering goes straight onto the live file (truncated first),
    /// nothing validates it, and `s6-svc -h` kills the balancer's run script, whose next
    /// start runs a new balancer process with `-sf` on the pid in its pid file
    /// ([`balancer::legacy`]). The lab's failures follow.
    Lab,
    /// consul-template's way: validate, write atomically, and reload the one balancer
    /// process in place (HAProxy's master-worker reload).
    #[default]
    Fixed,
}

impl Pipeline {
    /// The name scenario files and `--pipeline` use.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Lab => "lab",
            Pipeline::Fixed => "fixed",
        }
    }
}

impl Pipeline {
    /// The renderer's options under this pipeline: the lab writes in place and validates
    /// nothing, whatever else was asked.
    pub fn render_options(self, options: RenderOptions) -> RenderOptions {
        match self {
            Pipeline::Lab => RenderOptions {
                validate: false,
                backup: false,
                in_place: true,
                wait_for_sync: false,
                ..options
            },
            Pipeline::Fixed => options,
        }
    }
}

impl Role {
    /// The services a node of this role supervises, in start order.
    pub fn services(&self) -> &'static [&'static str] {
        match self {
            Role::Balancer { .. } => &["serf", RENDERER_SERVICE, BALANCER_SERVICE],
            Role::Backend => &["serf", "webapp"],
        }
    }

    /// The `role` tag value.
    pub fn tag(&self) -> &'static str {
        match self {
            Role::Balancer { .. } => "balancer",
            Role::Backend => "backend",
        }
    }
}

/// Gossip settings of a node, before its seeds are resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipSettings {
    /// The memberlist profile the other settings start from.
    pub profile: Profile,
    /// Seeds as `host` or `host:port`.
    pub seeds: Vec<String>,
    /// Join behaviour.
    pub join: JoinMode,
    /// Probe interval (one round).
    pub probe_interval: Duration,
    /// Probe timeout.
    pub probe_timeout: Duration,
    /// Gossip tick.
    pub gossip_interval: Duration,
    /// Serf reconnect interval.
    pub reconnect_interval: Duration,
    /// memberlist's `PushPullInterval` (scaled up above 32 members).
    pub push_pull_interval: Duration,
    /// A member failed this long is forgotten (Serf's `reconnect_timeout`).
    pub reconnect_timeout: Duration,
    /// Serf's `-snapshot` (with `-rejoin`): where the agent keeps the members it knows.
    pub snapshot: Option<PathBuf>,
    /// The label and keyring gossip is sealed with (Serf's `-encrypt`); plain by default.
    pub wire: crate::gossip::keyring::Wire,
    /// Serf's `-keyring-file`: where keyring changes are kept across restarts.
    pub keyring_file: Option<PathBuf>,
}

impl GossipSettings {
    /// The agent's configuration: the profile's, with these settings over it (seeds are
    /// resolved by the caller).
    pub fn config(&self, name: impl Into<String>, addr: std::net::SocketAddr) -> GossipConfig {
        let mut config = GossipConfig::of(self.profile, name, addr);
        config.join = self.join.clone();
        config.probe_interval = self.probe_interval;
        config.probe_timeout = self.probe_timeout;
        config.gossip_interval = self.gossip_interval;
        config.reconnect_interval = self.reconnect_interval;
        config.push_pull_interval = self.push_pull_interval;
        config.reconnect_timeout = self.reconnect_timeout;
        config.wire = self.wire.clone();
        config
    }
}

impl GossipSettings {
    /// The timings of `profile`, no seeds, no snapshot.
    pub fn of(profile: Profile) -> Self {
        let base = GossipConfig::of(profile, "default", (std::net::Ipv4Addr::LOCALHOST, GOSSIP_PORT).into());
        Self {
            profile,
            seeds: Vec::new(),
            join: base.join,
            probe_interval: base.probe_interval,
            probe_timeout: base.probe_timeout,
            gossip_interval: base.gossip_interval,
            reconnect_interval: base.reconnect_interval,
            push_pull_interval: base.push_pull_interval,
            reconnect_timeout: base.reconnect_timeout,
            snapshot: None,
            wire: base.wire,
            keyring_file: None,
        }
    }
}

impl Default for GossipSettings {
    fn default() -> Self {
        Self::of(Profile::Lan)
    }
}

/// Bugs planted on purpose, so that the simulator's own tests can show that each invariant
/// catches the failure it exists for (mutation testing of the oracle, as FoundationDB's
/// BUGGIFY plants faults in production code). All off by default; `rollcall node` never sets
/// them (the real engine runs them when a scenario plants them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The balancer keeps every server it ever loaded: removals are ignored.
    pub balancer_ignores_removals: bool,
    /// The balancer sends requests to servers its health checks marked DOWN.
    pub balancer_ignores_health: bool,
    /// The balancer closes its listening socket on every reload and opens a new one a moment
    /// later (HAProxy's reloads before seamless reloads): connections meanwhile are refused.
    pub balancer_reopens_listener: bool,
    /// The renderer leaves the first live backend (by name) out of every rendering.
    pub renderer_drops_a_backend: bool,
    /// The renderer renders dead members as if they were alive.
    pub renderer_keeps_dead: bool,
    /// The gossip agent never refutes a suspicion or a death of itself.
    pub gossip_never_refutes: bool,
    /// The gossip agent believes accusations of itself: it records itself suspect or dead.
    pub gossip_believes_accusations: bool,
    /// A graceful leave stops the gossip agent without telling anyone: peers find it dead.
    pub gossip_leaves_silently: bool,
    /// The supervisor restarts a dead service at once, with no restart delay.
    pub supervisor_restarts_at_once: bool,
    /// The gossip agent tries its seeds once and, if none answers, lives on alone (a
    /// `serf join` run once, where `-retry-join` was meant): a node that boots before its
    /// seeds stays out of the cluster.
    pub gossip_joins_once: bool,
    /// The gossip agent never counts itself synced (no push-pull, sync deadline or give-up
    /// marks it): a renderer that waits for its data never renders.
    pub gossip_never_syncs: bool,
}

impl PlantedBugs {
    /// Every bug's name, as scenario files write it.
    pub const NAMES: [&'static str; 11] = [
        "balancer-ignores-removals",
        "balancer-ignores-health",
        "balancer-reopens-listener",
        "renderer-drops-a-backend",
        "renderer-keeps-dead",
        "gossip-never-refutes",
        "gossip-believes-accusations",
        "gossip-leaves-silently",
        "gossip-joins-once",
        "gossip-never-syncs",
        "supervisor-restarts-at-once",
    ];

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "balancer-ignores-removals" => &mut self.balancer_ignores_removals,
            "balancer-ignores-health" => &mut self.balancer_ignores_health,
            "balancer-reopens-listener" => &mut self.balancer_reopens_listener,
            "renderer-drops-a-backend" => &mut self.renderer_drops_a_backend,
            "renderer-keeps-dead" => &mut self.renderer_keeps_dead,
            "gossip-never-refutes" => &mut self.gossip_never_refutes,
            "gossip-believes-accusations" => &mut self.gossip_believes_accusations,
            "gossip-leaves-silently" => &mut self.gossip_leaves_silently,
            "gossip-joins-once" => &mut self.gossip_joins_once,
            "gossip-never-syncs" => &mut self.gossip_never_syncs,
            "supervisor-restarts-at-once" => &mut self.supervisor_restarts_at_once,
            _ => return None,
        })
    }

    /// Turns on the bug called `name`; false if there is none by that name.
    pub fn plant(&mut self, name: &str) -> bool {
        self.flag(name).map(|flag| *flag = true).is_some()
    }

    /// The names of the bugs that are on.
    pub fn planted(&self) -> Vec<&'static str> {
        let mut copy = *self;
        Self::NAMES.iter().copied().filter(|name| copy.flag(name).is_some_and(|flag| *flag)).collect()
    }
}

/// A node's full description.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    /// Role and role-specific settings.
    pub role: Role,
    /// Gossip settings.
    pub gossip: GossipSettings,
    /// Gossip port.
    pub gossip_port: u16,
    /// The webapp's `TAG`.
    pub tag: String,
    /// Services whose finish script exits 125 (never restarted).
    pub permanent_failure: Vec<String>,
    /// Bugs planted for the oracle's mutation tests.
    pub bugs: PlantedBugs,
    /// Serf's `-event-handler`s (real processes: real mode only).
    pub handlers: Vec<HandlerSpec>,
    /// Serf's `-tag key=value`s beyond `role`.
    pub tags: BTreeMap<String, String>,
    /// The system's HAProxy at this path instead of the built-in balancer (real processes:
    /// real mode only). It runs in master-worker mode on the rendered file, SIGHUP becomes
    /// a reload (SIGUSR2 to the master), and every rendering is checked with `haproxy -c`
    /// before it replaces the file.
    pub haproxy: Option<PathBuf>,
}

/// How the world reaches into a node: the simulator's link faults, s6-svc commands to its
/// supervisor, and commands to its gossip agent.
pub struct NodeHandles {
    /// Loss and latency of the node's gossip datagrams.
    pub faults: Rc<Cell<LinkFaults>>,
    /// s6-svc.
    pub control: mpsc::UnboundedReceiver<Control>,
    /// Serf's RPC.
    pub agent: Rc<AgentControl>,
}

/// Boots the node: builds its services and supervises them until the node halts.
pub async fn boot<N: Net>(env: HostEnv<N>, spec: NodeSpec, handles: NodeHandles) {
    let NodeHandles { faults, control: from_world, agent } = handles;
    // s6-svc from the world and from the node itself (the lab's handler runs `s6-svc -h`).
    let (svc, control) = mpsc::unbounded_channel();
    let mut from_world = from_world;
    // What the world ordered before the boot reaches the supervisor as it starts, which
    // settles it (supervisor::settle_early_orders); the forwarder would run only later.
    while let Ok(command) = from_world.try_recv() {
        let _ = svc.send(command);
    }
    let forward_svc = svc.clone();
    let forwarder = tokio::task::spawn_local(async move {
        while let Some(command) = from_world.recv().await {
            if forward_svc.send(command).is_err() {
                return;
            }
        }
    });
    let (view, _) = watch::channel(gossip::View::default());
    let view = Rc::new(view);
    let mut services = vec![serf_service(&env, &spec, faults, view.clone(), agent)];
    match &spec.role {
        Role::Balancer { output, pipeline, .. } => {
            let (reload, _) = watch::channel(0u64);
            let reload = Rc::new(reload);
            let settings = render_settings(&spec).expect("a balancer renders");
            if *pipeline == Pipeline::Lab {
                lab_image_config(&env, &settings);
            }
            // A balancer that is not this process's own is told to reload as s6-svc -h tells it.
            if *pipeline == Pipeline::Lab || spec.haproxy.is_some() {
                let mut reloads = reload.subscribe();
                tokio::task::spawn_local(async move {
                    // The handler's `s6-svc -h haproxy` after each render.
                    while reloads.changed().await.is_ok() {
                        if svc.send(Control::signal(BALANCER_SERVICE, Signal::Hup)).is_err() {
                            return;
                        }
                    }
                });
            }
            let (render_env, render_view, render_reload) = (env.clone(), view.clone(), reload.clone());
            services.push(service(&spec, RENDERER_SERVICE, move |_| {
                let run = render::run(
                    render_env.clone(),
                    settings.clone(),
                    render_view.subscribe(),
                    render_reload.clone(),
                );
                Box::pin(run)
            }));
            services.push(match (pipeline, &spec.haproxy) {
                (Pipeline::Fixed, Some(haproxy)) => real_haproxy(haproxy, output),
                (Pipeline::Fixed, None) => master_worker_balancer(&env, &spec, output, reload),
                (Pipeline::Lab, _) => lab_balancer(&env, &spec, output),
            });
        }
        Role::Backend => {
            let (app_env, tag) = (env.clone(), spec.tag.clone());
            services
                .push(service(&spec, "webapp", move |_| Box::pin(webapp::run(app_env.clone(), tag.clone()))));
        }
    }
    supervisor::run(env, services, NodeSettings::default(), control).await;
    forwarder.abort();
}

/// The renderer's settings on a balancer node (`None` on a backend): the pipeline's options;
/// with the system's HAProxy, `haproxy -c` judges each rendering instead of our parser. Every
/// engine builds the renderer this way.
pub fn render_settings(spec: &NodeSpec) -> Option<RenderSettings> {
    let Role::Balancer { template_file, template_text, output, options, pipeline } = &spec.role else {
        return None;
    };
    let mut options = pipeline.render_options(*options);
    options.validate &= spec.haproxy.is_none();
    let check_command = spec.haproxy.as_ref().filter(|_| *pipeline == Pipeline::Fixed).map(|haproxy| {
        let check = ["-c", "-q", "-f", "/dev/stdin"].map(String::from);
        std::iter::once(haproxy.display().to_string()).chain(check).collect()
    });
    Some(RenderSettings {
        template_file: template_file.clone(),
        template_text: template_text.clone(),
        output: output.clone(),
        options,
        check_command,
        drops_a_backend: spec.bugs.renderer_drops_a_backend,
        keeps_dead: spec.bugs.renderer_keeps_dead,
    })
}

/// The configuration the lab's image ships (its Dockerfile copies one in): what the template
/// gives for a cluster without backends, put in place only if the file is not there yet, so
/// that the first HAProxy start has a file to read.
fn lab_image_config<N: Net>(env: &HostEnv<N>, settings: &RenderSettings) {
    if env.disk().read(&settings.output).is_ok() {
        return;
    }
    let Ok(renderer) = crate::render::Renderer::new(&settings.template_file, &settings.template_text) else {
        return;
    };
    if let Ok(text) = renderer.render(&[]) {
        if let Err(error) = env.disk().write_atomic(&settings.output, text.as_bytes()) {
            env.observe(crate::host::Event::RenderFailed {
                error: format!("{}: {error}", settings.output.display()),
            });
        }
    }
}

/// The balancer as one process reloaded in place: SIGHUP reloads the file, as it does for
/// `rollcall balancer` (HAProxy's master-worker mode).
fn master_worker_balancer<N: Net>(
    env: &HostEnv<N>,
    spec: &NodeSpec,
    output: &std::path::Path,
    reload: Rc<watch::Sender<u64>>,
) -> Service {
    let (env, output, bugs) = (env.clone(), output.to_path_buf(), spec.bugs);
    let hangup_reload = reload.clone();
    let pids = Cell::new(0u32);
    let haproxy = service(spec, BALANCER_SERVICE, move |_| {
        pids.set(pids.get() + 1);
        let (env, path) = (env.clone(), output.clone());
        Box::pin(balancer::proxy::run(env, path, reload.subscribe(), bugs, pids.get()))
    });
    haproxy.on(Signal::Hup, move || hangup_reload.send_modify(|generation| *generation += 1))
}

/// The system's HAProxy in master-worker mode (`-W`, in the foreground with `-db`, its
/// master's pid in `<output>.pid`) on the rendered file: SIGHUP, the renderer's reload, becomes SIGUSR2 to the master, which starts
/// a new worker on the file and soft-stops the old one (a worker whose file fails keeps the
/// old one serving). Other signals go to the master as they are.
fn real_haproxy(haproxy: &std::path::Path, output: &std::path::Path) -> Service {
    let (haproxy, output) = (haproxy.display().to_string(), output.display().to_string());
    let pid_file = format!("{output}.pid");
    let argv = [haproxy.as_str(), "-W", "-db", "-p", &pid_file, "-f", &output].map(str::to_string);
    let (service, pid) = crate::supervisor::process::process_service_with_pid(
        ServiceSpec::longrun(BALANCER_SERVICE),
        argv.to_vec(),
        None,
    );
    service.on(Signal::Hup, move || crate::supervisor::process::signal_pid(&pid, Signal::Usr2))
}

/// The lab's `haproxy` run script: start HAProxy with `-sf` on the pid in the pid file,
/// write the new pid there, `wait`; SIGTERM becomes SIGUSR1 (a soft stop) for that pid.
/// SIGHUP, which the renderer's `s6-svc -h` sends, kills the script and leaves its HAProxy
/// running; the supervisor starts the script again.
fn lab_balancer<N: Net>(env: &HostEnv<N>, spec: &NodeSpec, output: &std::path::Path) -> Service {
    let processes = balancer::legacy::Processes::default();
    // The pid file: it outlives the run script (a file on the host), not the boot.
    let pid_file: Rc<Cell<Option<u32>>> = Rc::default();
    let (run_env, output) = (env.clone(), output.to_path_buf());
    let (run_processes, run_pid_file) = (processes.clone(), pid_file.clone());
    let haproxy = service(spec, BALANCER_SERVICE, move |_| {
        let (env, path, processes, pid_file) =
            (run_env.clone(), output.clone(), run_processes.clone(), run_pid_file.clone());
        Box::pin(async move {
            let pid = processes.start(&env, &path, pid_file.get()).await;
            pid_file.set(Some(pid));
            if !processes.is_alive(pid) {
                return Err(format!("haproxy {pid} exited at start"));
            }
            processes.wait(pid).await;
            Ok(())
        })
    });
    let term_env = env.clone();
    haproxy.on(Signal::Term, move || {
        if let Some(pid) = pid_file.get() {
            processes.exit(&term_env, pid);
        }
    })
}

/// One run of an in-process service: its error is exit 1.
type InProcess = std::pin::Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// How s6 supervises the service `name` of a node: a longrun with s6's defaults; a finish
/// script (which exits 125) for a service listed in `permanent_failure`; SIGINT as serf's
/// down signal (see [`serf_service`]); no restart delay with the planted bug. Every engine
/// supervises a node's services with these specs.
pub fn service_spec(spec: &NodeSpec, name: &str) -> ServiceSpec {
    let mut service_spec = ServiceSpec::longrun(name);
    if spec.bugs.supervisor_restarts_at_once {
        service_spec.restart_delay = std::time::Duration::ZERO;
    }
    service_spec.has_finish = spec.permanent_failure.iter().any(|s| s == name);
    if name == "serf" {
        service_spec.down_signal = Signal::Int;
    }
    service_spec
}

/// A longrun as [`service_spec`] describes it.
fn service(spec: &NodeSpec, name: &str, start: impl Fn(Readiness) -> InProcess + 'static) -> Service {
    let start = move |ready| -> ServiceFuture {
        let run = start(ready);
        Box::pin(async move { run.await.map_err(Stopped::from) })
    };
    let service_spec = service_spec(spec, name);
    let has_finish = service_spec.has_finish;
    let service = Service::new(service_spec, start);
    if has_finish {
        return service.finish(|_, _| Box::pin(async { FINISH_PERMANENT_FAILURE }));
    }
    service
}

fn serf_service<N: Net>(
    env: &HostEnv<N>,
    spec: &NodeSpec,
    faults: Rc<Cell<LinkFaults>>,
    view: Rc<watch::Sender<gossip::View>>,
    agent: Rc<AgentControl>,
) -> Service {
    let env = env.clone();
    let node = spec.clone();
    let on_interrupt = agent.clone();
    let serf = service(spec, "serf", move |_| {
        let (env, node) = (env.clone(), node.clone());
        let (events, received) = mpsc::channel(PENDING_EVENTS_MAX);
        let events = (!node.handlers.is_empty()).then_some(events);
        let links =
            gossip::Links { faults: faults.clone(), view: view.clone(), control: agent.clone(), events };
        Box::pin(async move {
            let config = gossip_config(&env, &node).map_err(|e| e.to_string())?;
            let context = HandlerContext {
                name: config.name.clone(),
                tags: (*config.tags).clone(),
                coalesce: COALESCE_PERIOD_DEFAULT,
                quiescent: QUIESCENT_PERIOD_DEFAULT,
            };
            let clock = env.clone();
            let handlers = handlers::run(node.handlers.clone(), context, received, move || clock.now());
            let files = gossip::AgentFiles {
                snapshot: node.gossip.snapshot.clone(),
                keyring: node.gossip.keyring_file.clone(),
            };
            let agent = gossip::run(env, config, links, files);
            // The handlers live as long as the agent: they end when its event sender drops.
            let (ran, ()) = tokio::join!(agent, handlers);
            ran.map_err(|e| e.to_string())
        })
    });
    // SIGINT is a graceful leave, as for Serf, and the service's down signal (a
    // `down-signal` file, set by `service_spec`): `s6-svc -d` makes the agent leave instead
    // of dying on SIGTERM as failed. SIGTERM still stops it without a leave (Serf's
    // `leave_on_terminate` false).
    serf.on(Signal::Int, move || {
        on_interrupt.send(Command::Leave);
    })
}

fn gossip_config<N: Net>(env: &HostEnv<N>, node: &NodeSpec) -> std::io::Result<GossipConfig> {
    agent_config(&env.name, env.net.local_ip(), node, |seed| resolve_endpoint(&env.net, seed, GOSSIP_PORT))
}

/// The gossip agent's configuration for the node `name` at `ip`; `resolve` turns a seed
/// (`host[:port]`) into an address. Every engine builds agents this way.
pub fn agent_config(
    name: &str,
    ip: std::net::IpAddr,
    node: &NodeSpec,
    resolve: impl Fn(&str) -> std::io::Result<std::net::SocketAddr>,
) -> std::io::Result<GossipConfig> {
    let addr = (ip, node.gossip_port).into();
    let mut config = node.gossip.config(name.to_string(), addr);
    let tags = std::sync::Arc::make_mut(&mut config.tags);
    tags.extend(node.tags.clone());
    tags.insert("role".into(), node.role.tag().into());
    config.seeds = node.gossip.seeds.iter().map(|seed| resolve(seed)).collect::<Result<Vec<_>, _>>()?;
    // Joining through ourselves (the lab's `ha` runs `--join ha`) is no join at all.
    config.seeds.retain(|seed| *seed != addr);
    config.never_refutes = node.bugs.gossip_never_refutes;
    config.believes_accusations = node.bugs.gossip_believes_accusations;
    config.leaves_silently = node.bugs.gossip_leaves_silently;
    config.joins_once = node.bugs.gossip_joins_once;
    config.never_syncs = node.bugs.gossip_never_syncs;
    Ok(config)
}
