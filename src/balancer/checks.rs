//! The health-check driver: one local task per checked server, running the checks HAProxy
//! would (an HTTP request with `option httpchk`, else a TCP connect) and feeding the results
//! to each server's [`Health`]. The request path reads the same table.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::Rng;
use tokio::task::JoinHandle;

use super::config::{BalancerConfig, HttpCheck, Server};
use super::health::Health;
use crate::host::{Event, HostEnv};
use crate::net::Net;
use crate::net::http::{self, HttpError};

/// A checked server's health, and the address it was checked at.
#[derive(Clone, Debug)]
struct Entry {
    addr: SocketAddr,
    health: Health,
    /// Failed checks since the server was loaded.
    failures: u32,
    /// UP to DOWN transitions.
    downs: u32,
    /// HAProxy's code for the last check (`INI` before the first).
    last_check: &'static str,
}

/// What the stats page shows of a checked server: status, failed checks, downs, last check.
pub type CheckFigures = (String, u32, u32, &'static str);

/// The health of every checked server, shared by the check tasks and the request path.
#[derive(Clone, Default)]
pub struct HealthTable(Rc<RefCell<BTreeMap<String, Entry>>>);

impl HealthTable {
    /// Whether `server` gets traffic: unchecked servers always do.
    pub fn is_up(&self, server: &Server) -> bool {
        self.0.borrow().get(&server.name).is_none_or(|entry| entry.health.is_up())
    }

    /// HAProxy's status word for a server (`no check` when unchecked).
    pub fn status(&self, server: &Server) -> String {
        self.0.borrow().get(&server.name).map_or_else(|| "no check".into(), |e| e.health.status())
    }

    /// Adopts a new configuration: a checked server that remains (same name and address)
    /// keeps its state, as HAProxy's server-state file would carry it; a new one starts UP,
    /// one failure away from DOWN; servers no longer checked are forgotten.
    pub fn reconcile(&self, config: &BalancerConfig) {
        let mut table = self.0.borrow_mut();
        let mut next = BTreeMap::new();
        for server in &config.backend().servers {
            let Some(settings) = server.check else { continue };
            let entry = match table.remove(&server.name) {
                Some(old) if old.addr == server.addr => {
                    Entry { health: old.health.with_settings(settings), ..old }
                }
                _ => Entry {
                    addr: server.addr,
                    health: Health::new(settings),
                    failures: 0,
                    downs: 0,
                    last_check: "INI",
                },
            };
            next.insert(server.name.clone(), entry);
        }
        *table = next;
    }

    /// A checked server's figures for the stats page.
    pub fn figures(&self, server: &Server) -> Option<CheckFigures> {
        let table = self.0.borrow();
        let entry = table.get(&server.name)?;
        Some((entry.health.status(), entry.failures, entry.downs, entry.last_check))
    }

    fn record(&self, server: &str, outcome: Result<bool, CheckFailure>) -> Option<(bool, String, Duration)> {
        let mut table = self.0.borrow_mut();
        let entry = table.get_mut(server)?;
        let passed = outcome.is_ok();
        entry.last_check = match &outcome {
            Ok(code) => code_of_pass(*code),
            Err(failure) => failure.code,
        };
        entry.failures += u32::from(!passed);
        let transition = entry.health.record(passed, outcome.err().map(|f| f.reason));
        if transition.as_ref().is_some_and(|t| !t.up) {
            entry.downs += 1;
        }
        let next = entry.health.next_interval();
        Some(transition.map_or((entry.health.is_up(), String::new(), next), |t| (t.up, t.reason, next)))
    }
}

/// The check tasks of one loaded configuration; dropping it stops them.
pub struct Checks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What one server's checks need.
#[derive(Clone)]
struct CheckSpec {
    server: Server,
    http: Option<HttpCheck>,
    timeout: Duration,
}

/// Starts the checks of `config`; `generation` seeds each server's first-check phase, so that
/// reloads do not all check in step.
pub fn start<N: Net>(
    env: &HostEnv<N>,
    config: &BalancerConfig,
    table: &HealthTable,
    generation: u64,
) -> Checks {
    let mut tasks = Vec::new();
    for server in &config.backend().servers {
        let Some(settings) = server.check else { continue };
        let spec = CheckSpec {
            server: server.clone(),
            http: config.backend().http_check.clone(),
            timeout: config.check_timeout(&settings),
        };
        let mut rng = env.rng(&format!("health-check/{generation}/{}", server.name));
        // HAProxy starts each server's first check at a random point within `inter`.
        let phase = Duration::from_millis(rng.random_range(0..settings.inter.as_millis().max(1) as u64));
        tasks.push(tokio::task::spawn_local(check_loop(env.clone(), spec, table.clone(), phase)));
    }
    Checks { tasks }
}

async fn check_loop<N: Net>(env: HostEnv<N>, spec: CheckSpec, table: HealthTable, phase: Duration) {
    let mut wait = phase;
    loop {
        tokio::time::sleep(wait).await;
        let result = check_once(&env, &spec).await;
        let Some((up, reason, next)) = table.record(&spec.server.name, result) else { return };
        if !reason.is_empty() {
            env.observe(Event::ServerState { server: spec.server.name.clone(), up, reason });
        }
        wait = next;
    }
}

/// Why a check failed, with HAProxy's code for it.
#[derive(Debug)]
struct CheckFailure {
    code: &'static str,
    reason: String,
}

fn failed(code: &'static str, reason: String) -> CheckFailure {
    CheckFailure { code, reason }
}

fn code_of_pass(http: bool) -> &'static str {
    if http { "L7OK" } else { "L4OK" }
}

/// One check: an HTTP request whose status is 2xx or 3xx, or a TCP connect. `Ok(true)` for a
/// passed HTTP check, `Ok(false)` for a passed connect.
async fn check_once<N: Net>(env: &HostEnv<N>, spec: &CheckSpec) -> Result<bool, CheckFailure> {
    let addr = spec.server.addr;
    let Some(http) = &spec.http else {
        return match tokio::time::timeout(spec.timeout, env.net.connect(addr)).await {
            Ok(Ok(_)) => Ok(false),
            Ok(Err(error)) => Err(failed("L4CON", format!("connect: {}", error.kind()))),
            Err(_) => Err(failed("L4TOUT", "connect timeout".into())),
        };
    };
    let request = Request::builder()
        .method(http.method.as_str())
        .uri(http.uri.as_str())
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| failed("L7RSP", format!("bad check request: {e}")))?;
    match http::exchange(&env.net, addr, request, spec.timeout).await {
        Ok(response) if response.status().is_success() || response.status().is_redirection() => Ok(true),
        Ok(response) => Err(failed("L7STS", format!("status {}", response.status().as_u16()))),
        Err(HttpError::Connect { source, .. }) => Err(failed("L4CON", format!("connect: {}", source.kind()))),
        Err(HttpError::Timeout { .. }) => Err(failed("L4TOUT", "timeout".into())),
        Err(HttpError::Protocol { message, .. }) => Err(failed("L7RSP", format!("protocol: {message}"))),
    }
}
