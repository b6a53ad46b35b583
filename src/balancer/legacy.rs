//! HAProxy reloaded the legacy way, as the lab's run script does it: every reload is a new
//! process that reads the file once, binds the frontend port beside the processes already
//! there (`SO_REUSEPORT`), then soft-stops the pids it was handed with `-sf`. A process is
//! never told to reload; nothing stops a process whose pid nobody hands on.
//!
//! [`Processes`] is one host's process table and its shared port: the kernel gives each
//! new connection to one of the processes listening, chosen by a hash of the client's
//! address and port, so each process serves its own configuration to its own share of
//! clients.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use tokio::sync::watch;

use super::checks::{self, Checks, HealthTable};
use super::proxy::{self, Loaded};
use crate::host::{AbortOnDrop, Event, HostEnv, mix, stable_hash};
use crate::net::Net;
use crate::net::http::{self, Pool};

/// Most balancer processes one host keeps; a start beyond it fails as a fork would.
pub const PROCESSES_MAX: usize = 64;

/// One legacy process.
struct Process {
    loaded: Rc<Loaded>,
    /// Its health checks run as long as it does.
    _checks: Checks,
    /// Set to true when it exits.
    exited: watch::Sender<bool>,
}

/// The balancer processes of one host and the port they share.
#[derive(Clone, Default)]
pub struct Processes(Rc<RefCell<Table>>);

#[derive(Default)]
struct Table {
    next_pid: u32,
    live: BTreeMap<u32, Process>,
    /// The listening socket group per bound address, with the task accepting on it.
    ports: BTreeMap<SocketAddr, AbortOnDrop>,
}

impl Processes {
    /// `haproxy -f path -sf handoff`: loads the file, joins the port group, soft-stops
    /// `handoff` if that pid is alive. Returns the new pid; a file that fails to load ends
    /// the process at once (its pid is still returned, as `$!` is, and it is already gone).
    pub async fn start<N: Net>(&self, env: &HostEnv<N>, path: &Path, handoff: Option<u32>) -> u32 {
        let pid = {
            let mut table = self.0.borrow_mut();
            table.next_pid += 1;
            table.next_pid
        };
        let config = match proxy::load(env, path) {
            Ok(config) if self.0.borrow().live.len() < PROCESSES_MAX => config,
            Ok(_) => {
                env.observe(Event::ReloadFailed { error: format!("pid {pid}: too many processes") });
                return pid;
            }
            Err(error) => {
                env.observe(Event::ReloadFailed { error: format!("pid {pid}: {error}") });
                return pid;
            }
        };
        let bind = config.bind;
        env.observe(Event::Reloaded {
            bind: bind.to_string(),
            servers: config.backend().servers.iter().map(|s| s.name.clone()).collect(),
        });
        let health = HealthTable::default();
        health.reconcile(&config);
        let checks = checks::start(env, &config, &health, u64::from(pid));
        let loaded = Rc::new(Loaded::new(config, health));
        // Bound before it is registered: a run script killed meanwhile leaves no process.
        if !self.0.borrow().ports.contains_key(&bind) {
            match env.net.bind_tcp(bind).await {
                Ok(listener) => {
                    let task = tokio::task::spawn_local(self.clone().accept(env.clone(), listener, bind));
                    self.0.borrow_mut().ports.insert(bind, AbortOnDrop(task));
                }
                Err(error) => {
                    env.observe(Event::ReloadFailed {
                        error: format!("pid {pid}: cannot bind {bind}: {error}"),
                    });
                    return pid;
                }
            }
        }
        let (exited, _) = watch::channel(false);
        self.0.borrow_mut().live.insert(pid, Process { loaded, _checks: checks, exited });
        if let Some(old) = handoff.filter(|old| *old != pid) {
            self.exit(env, old);
        }
        self.record(env, bind);
        pid
    }

    /// Whether `pid` runs.
    pub fn is_alive(&self, pid: u32) -> bool {
        self.0.borrow().live.contains_key(&pid)
    }

    /// Waits until `pid` has exited (at once if it is not alive), as the run script's `wait`.
    pub async fn wait(&self, pid: u32) {
        let Some(mut exited) = self.0.borrow().live.get(&pid).map(|p| p.exited.subscribe()) else { return };
        let _ = exited.wait_for(|gone| *gone).await;
    }

    /// SIGUSR1: `pid` stops accepting and exits; its requests in flight finish (they hold
    /// their configuration). The port closes with its last process.
    pub fn exit<N: Net>(&self, env: &HostEnv<N>, pid: u32) {
        let Some(process) = self.0.borrow_mut().live.remove(&pid) else { return };
        let _ = process.exited.send(true);
        let bind = process.loaded.config.bind;
        let still_bound = self.0.borrow().live.values().any(|p| p.loaded.config.bind == bind);
        if !still_bound {
            // Dropping the guard closes the port.
            let closed = self.0.borrow_mut().ports.remove(&bind);
            drop(closed);
        }
        self.record(env, bind);
    }

    /// Records which pids accept on `bind` now.
    fn record<N: Net>(&self, env: &HostEnv<N>, bind: SocketAddr) {
        let pids = self.accepting(bind).into_iter().map(|(pid, _)| pid).collect();
        env.observe(Event::Accepting { bind: bind.to_string(), pids });
    }

    fn accepting(&self, bind: SocketAddr) -> Vec<(u32, Rc<Loaded>)> {
        let table = self.0.borrow();
        let processes = table.live.iter().filter(|(_, p)| p.loaded.config.bind == bind);
        processes.map(|(pid, p)| (*pid, p.loaded.clone())).collect()
    }

    /// Accepts on the shared port and hands each connection to one live process, chosen as
    /// the kernel's `SO_REUSEPORT` does: by a hash of the client's address and port.
    async fn accept<N: Net, L: crate::net::Listener>(self, env: HostEnv<N>, listener: L, bind: SocketAddr) {
        let env = Rc::new(env);
        let pool = Rc::new(Pool::default());
        let serve = move |origin: http::Origin, request| {
            let processes = self.accepting(bind);
            let peer = origin.peer;
            let hash = mix(stable_hash(peer.ip().to_string().as_bytes()), u64::from(peer.port()));
            let loaded = (!processes.is_empty())
                .then(|| processes[(hash % processes.len() as u64) as usize].1.clone());
            let (env, pool) = (env.clone(), pool.clone());
            async move { proxy::forward(&env, loaded, &pool, origin, request).await }
        };
        http::serve_limited(listener, http::CONNECTIONS_MAX, None, None, serve).await;
    }
}
