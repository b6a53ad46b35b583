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
}

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
            let health = match table.remove(&server.name) {
                Some(old) if old.addr == server.addr => old.health.with_settings(settings),
                _ => Health::new(settings),
            };
            next.insert(server.name.clone(), Entry { addr: server.addr, health });
        }
        *table = next;
    }

    fn record(
        &self,
        server: &str,
        passed: bool,
        failure: Option<String>,
    ) -> Option<(bool, String, Duration)> {
        let mut table = self.0.borrow_mut();
        let entry = table.get_mut(server)?;
        let transition = entry.health.record(passed, failure);
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
        let passed = result.is_ok();
        let Some((up, reason, next)) = table.record(&spec.server.name, passed, result.err()) else { return };
        if !reason.is_empty() {
            env.observe(Event::ServerState { server: spec.server.name.clone(), up, reason });
        }
        wait = next;
    }
}

/// One check: an HTTP request whose status is 2xx or 3xx, or a TCP connect.
async fn check_once<N: Net>(env: &HostEnv<N>, spec: &CheckSpec) -> Result<(), String> {
    let addr = spec.server.addr;
    let Some(http) = &spec.http else {
        return match tokio::time::timeout(spec.timeout, env.net.connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("connect: {}", error.kind())),
            Err(_) => Err("connect timeout".into()),
        };
    };
    let request = Request::builder()
        .method(http.method.as_str())
        .uri(http.uri.as_str())
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad check request: {e}"))?;
    match http::exchange(&env.net, addr, request, spec.timeout).await {
        Ok(response) if response.status().is_success() || response.status().is_redirection() => Ok(()),
        Ok(response) => Err(format!("status {}", response.status().as_u16())),
        Err(HttpError::Connect { source, .. }) => Err(format!("connect: {}", source.kind())),
        Err(HttpError::Timeout { .. }) => Err("timeout".into()),
        Err(HttpError::Protocol { message, .. }) => Err(format!("protocol: {message}")),
    }
}
