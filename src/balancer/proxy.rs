//! The balancer's driver: loads the rendered file, serves its frontend, round-robins requests.
//!
//! A reload swaps the configuration that new requests see; requests already in flight keep
//! the configuration they started with, and their connections are never closed by a reload.
//! Servers with `check` are health-checked ([`super::checks`]); a DOWN server gets no
//! requests, and its state survives a reload that keeps it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checks::{self, Checks, HealthTable};
use super::config::{self, BalancerConfig, Server};
use super::select::{self, Selector};
use super::stats;
use crate::host::{AbortOnDrop, Event, HostEnv};
use crate::net::Net;
use crate::net::http::{self, HttpError, Origin, Pool};
use crate::node::PlantedBugs;

/// The header whose value the balancer records with each answer (HAProxy's `unique-id-header`
/// convention).
pub const REQUEST_ID: &str = "x-request-id";

/// Requests in flight and in total per server, shared across loads (for `leastconn` and the
/// stats page).
#[derive(Clone, Default)]
struct InFlight(Rc<RefCell<BTreeMap<String, (u32, u64)>>>);

impl InFlight {
    fn count(&self, server: &str) -> u32 {
        self.0.borrow().get(server).map_or(0, |(current, _)| *current)
    }

    fn figures(&self, server: &str) -> (u32, u64) {
        self.0.borrow().get(server).copied().unwrap_or_default()
    }

    /// Counts one request to `server` until the guard is dropped.
    fn enter<'a>(&'a self, server: &'a str) -> InFlightGuard<'a> {
        let mut table = self.0.borrow_mut();
        // Looked up before inserting: this runs once per request, and the name is allocated
        // only the first time a server is seen.
        let entry = match table.get_mut(server) {
            Some(entry) => entry,
            None => table.entry(server.to_string()).or_default(),
        };
        entry.0 += 1;
        entry.1 += 1;
        InFlightGuard { table: self, server }
    }
}

struct InFlightGuard<'a> {
    table: &'a InFlight,
    server: &'a str,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some((current, _)) = self.table.0.borrow_mut().get_mut(self.server) {
            *current = current.saturating_sub(1);
        }
    }
}

/// A loaded configuration, its balancing state and the servers' health.
pub(super) struct Loaded {
    pub(super) config: BalancerConfig,
    selector: Selector,
    health: HealthTable,
    in_flight: InFlight,
}

impl Loaded {
    /// A configuration just loaded, with its own balancing state and request counts.
    pub(super) fn new(config: BalancerConfig, health: HealthTable) -> Self {
        Loaded { config, selector: Selector::default(), health, in_flight: InFlight::default() }
    }

    /// The server the backend's algorithm chooses for `client`, skipping `except` (a
    /// redispatch) and servers that are DOWN, disabled or of weight 0.
    fn pick(&self, client: IpAddr, except: Option<&Server>) -> Option<&Server> {
        let backend = self.config.backend();
        let servers = &backend.servers;
        let except = except.and_then(|e| servers.iter().position(|s| s.name == e.name));
        let in_flight = |i: usize| self.in_flight.count(&servers[i].name);
        let usable = |s: &Server| self.health.is_up(s);
        let index = self.selector.choose(backend.balance, servers, usable, in_flight, client, except)?;
        Some(&servers[index])
    }

    /// The stats page's rows, one per server of the frontend's backend.
    fn stats(&self) -> Vec<stats::ServerStats> {
        let backend_name = &self.config.backend_name;
        let rows = self.config.backend().servers.iter().map(|server| {
            let (current, total) = self.in_flight.figures(&server.name);
            let (status, check_failures, downs, last_check) = match self.health.figures(server) {
                Some((status, failures, downs, last)) => (status, failures, downs, last.to_string()),
                None => ("no check".to_string(), 0, 0, String::new()),
            };
            stats::ServerStats {
                backend: backend_name.clone(),
                server: server.name.clone(),
                status: if server.disabled { "MAINT".into() } else { status },
                weight: server.weight,
                backup: server.backup,
                current,
                total,
                check_failures,
                downs,
                last_check,
            }
        });
        rows.collect()
    }

    /// The server a sticky cookie names, if it can take the request.
    fn sticky(&self, value: &str) -> Option<&Server> {
        let usable = |s: &&Server| !s.disabled && s.weight > 0 && self.health.is_up(s);
        self.config.backend().servers.iter().filter(usable).find(|s| s.cookie.as_deref() == Some(value))
    }
}

/// Serves the configuration at `config_path` as process `pid` (HAProxy's master-worker
/// mode: one process, reloaded in place), reloading it whenever `reload` changes.
/// `bugs` are planted for the simulator's mutation tests ([`PlantedBugs`]): removed servers
/// that stay loaded, DOWN servers that still get requests. Real mode passes none.
pub async fn run<N: Net>(
    env: HostEnv<N>,
    config_path: PathBuf,
    mut reload: watch::Receiver<u64>,
    bugs: PlantedBugs,
    pid: u32,
) -> Result<(), String> {
    let mut proxy = Proxy::new(&env, bugs, pid);
    let result = loop {
        reload.borrow_and_update();
        match load(&env, &config_path) {
            Ok(config) => {
                if let Err(error) = proxy.apply(config).await {
                    break Err(error);
                }
            }
            // Keep serving the configuration we have: a bad render must not take the site down.
            Err(error) => env.observe(Event::ReloadFailed { error }),
        }
        if reload.changed().await.is_err() {
            break Err("reload channel closed".into());
        }
    };
    proxy.stop();
    result
}

/// A running balancer: what it serves and what it keeps across reloads.
///
/// Dropped with the run, however it ends: an aborted run (SIGKILL) leaves no listener. Its
/// fields drop in declaration order, so an aborted run stops the checks first, then the
/// stats page, then the frontend; [`Proxy::stop`] keeps the order of a run that returns.
struct Proxy<'a, N: Net> {
    generation: u64,
    checks: Option<Checks>,
    pool: Rc<Pool>,
    in_flight: InFlight,
    health: HealthTable,
    stats_task: Option<(SocketAddr, AbortOnDrop)>,
    listener_task: Option<(SocketAddr, AbortOnDrop)>,
    current: Rc<RefCell<Option<Rc<Loaded>>>>,
    env: &'a HostEnv<N>,
    bugs: PlantedBugs,
    pid: u32,
}

impl<'a, N: Net> Proxy<'a, N> {
    fn new(env: &'a HostEnv<N>, bugs: PlantedBugs, pid: u32) -> Self {
        Proxy {
            generation: 0,
            checks: None,
            pool: Rc::new(Pool::default()),
            in_flight: InFlight::default(),
            health: HealthTable::default(),
            stats_task: None,
            listener_task: None,
            current: Rc::new(RefCell::new(None)),
            env,
            bugs,
            pid,
        }
    }

    /// Serves `config` from now on: new requests see it, and the frontend and the stats page
    /// move if their addresses changed. An error is a frontend that could not be bound.
    async fn apply(&mut self, config: BalancerConfig) -> Result<(), String> {
        let bind = self.install(config);
        // A frontend moving onto the stats page's port needs the port first.
        if let Some((_, stats)) = self.stats_task.take_if(|(addr, _)| addr.port() == bind.port()) {
            stats.close().await;
        }
        self.open_frontend(bind).await?;
        self.open_stats().await;
        Ok(())
    }

    /// Makes `config` the one new requests see, with the health checks of its servers;
    /// returns its frontend's address.
    fn install(&mut self, mut config: BalancerConfig) -> SocketAddr {
        if self.bugs.balancer_ignores_removals {
            keep_removed_servers(&mut config, self.current.borrow().as_deref());
        }
        for warning in &config.warnings {
            tracing::debug!(host = %self.env.name, "{warning}");
        }
        self.env.observe(Event::Reloaded {
            bind: config.bind.to_string(),
            servers: config.backend().servers.iter().map(|s| s.name.clone()).collect(),
        });
        let bind = config.bind;
        self.health.reconcile(&config);
        self.generation += 1;
        self.checks = Some(checks::start(self.env, &config, &self.health, self.generation));
        let health =
            if self.bugs.balancer_ignores_health { HealthTable::default() } else { self.health.clone() };
        let loaded =
            Loaded { config, selector: Selector::default(), health, in_flight: self.in_flight.clone() };
        *self.current.borrow_mut() = Some(Rc::new(loaded));
        bind
    }

    /// Binds the frontend at `bind` if it is not listening there yet (or the planted bug
    /// reopens it on every reload); connections already open are kept.
    async fn open_frontend(&mut self, bind: SocketAddr) -> Result<(), String> {
        let reopen = self.bugs.balancer_reopens_listener && self.listener_task.is_some();
        if !reopen && self.listener_task.as_ref().map(|(addr, _)| *addr) == Some(bind) {
            return Ok(());
        }
        // The old listener is closed before the new one binds: HAProxy moves a frontend to
        // another address of the same port on a reload, and the port must be free first.
        if let Some((_, old)) = self.listener_task.take() {
            old.close().await;
            if reopen {
                tokio::time::sleep(REOPEN_GAP).await;
            }
        }
        let listener = match self.env.net.bind_tcp(bind).await {
            Ok(listener) => listener,
            Err(error) => {
                let error = format!("cannot bind frontend {bind}: {error}");
                self.env.observe(Event::ReloadFailed { error: error.clone() });
                return Err(error);
            }
        };
        let task = self.serve_frontend(listener);
        self.listener_task = Some((bind, AbortOnDrop(task)));
        self.env.observe(Event::Accepting { bind: bind.to_string(), pids: vec![self.pid] });
        Ok(())
    }

    /// Serves requests on `listener`, each forwarded with the configuration loaded when it
    /// arrives; the connection limits are those of the configuration loaded now.
    fn serve_frontend(&self, listener: N::Listener) -> JoinHandle<()> {
        // Behind an Rc: a request clones the pointer, not the host's name.
        let handler_env = Rc::new(self.env.clone());
        let handler_current = self.current.clone();
        let handler_pool = self.pool.clone();
        let (maxconn, head_timeout) = self
            .current
            .borrow()
            .as_ref()
            .map_or((http::CONNECTIONS_MAX, None), |l| (l.config.maxconn, l.config.timeout_client_head));
        let serve = move |origin, request| {
            let (env, pool) = (handler_env.clone(), handler_pool.clone());
            let loaded = handler_current.borrow().clone();
            async move { forward(&env, loaded, &pool, origin, request).await }
        };
        let refusals = head_refusals(self.env);
        let serving = http::serve_limited(listener, maxconn, head_timeout, Some(refusals), serve);
        tokio::task::spawn_local(serving)
    }

    /// Opens, moves or closes the stats page as the loaded configuration asks. A stats page
    /// that cannot be bound is logged: the frontend serves on without it.
    async fn open_stats(&mut self) {
        let stats_bind =
            self.current.borrow().as_ref().and_then(|l| l.config.stats.as_ref().map(|(bind, _)| *bind));
        if self.stats_task.as_ref().map(|(addr, _)| *addr) == stats_bind {
            return;
        }
        // Closed before it moves, as the frontend: another address may share its port.
        if let Some((_, old)) = self.stats_task.take() {
            old.close().await;
        }
        let Some(bind) = stats_bind else { return };
        match self.env.net.bind_tcp(bind).await {
            Ok(listener) => {
                self.stats_task = Some((bind, AbortOnDrop(serve_stats(listener, self.current.clone()))))
            }
            Err(error) => tracing::warn!(%bind, %error, "cannot bind the stats page"),
        }
    }

    /// Stops serving: the frontend first, then the stats page, then the health checks.
    fn stop(self) {
        let Proxy { listener_task, stats_task, checks, .. } = self;
        drop((listener_task, stats_task, checks));
    }
}

/// Request heads the frontend refused with 431, recorded as a limit at counts 1, 2, 4, ...
fn head_refusals<N: Net>(env: &HostEnv<N>) -> Rc<http::HeadRefusals> {
    let env = env.clone();
    http::HeadRefusals::new(move |count| {
        if count.is_power_of_two() {
            let max = http::REQUEST_HEAD_BYTES_MAX as u64;
            env.observe(Event::LimitReached { limit: HEAD_LIMIT.to_string(), max, count });
        }
    })
}

/// The limit's name in traces: a request head over 16 KiB or 100 header lines.
const HEAD_LIMIT: &str = "http-request-head";

/// How long the planted `balancer_reopens_listener` bug leaves the port closed on a reload.
const REOPEN_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves the stats page of whatever configuration is loaded: the text table at its uri, the
/// CSV at the uri followed by `;csv`.
fn serve_stats<L: crate::net::Listener>(
    listener: L,
    current: Rc<RefCell<Option<Rc<Loaded>>>>,
) -> JoinHandle<()> {
    tokio::task::spawn_local(http::serve(listener, move |_origin, request: Request<Incoming>| {
        let loaded = current.borrow().clone();
        async move {
            let Some(loaded) = loaded else { return http::text_response(503, "no configuration loaded\n") };
            let Some((_, page)) = &loaded.config.stats else {
                return http::text_response(404, "no stats page\n");
            };
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let at_page = target == page.uri || target == format!("{};csv", page.uri);
            let authorization = request.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
            if at_page && !stats::authorized(page, authorization) {
                let mut refused = http::text_response(401, "401 Unauthorized\n");
                if let Ok(value) = hyper::header::HeaderValue::from_str(&stats::challenge(page)) {
                    refused.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, value);
                }
                return refused;
            }
            if target == format!("{};csv", page.uri) {
                http::text_response(200, stats::csv(&loaded.stats()))
            } else if target == page.uri {
                let version = (!page.hide_version).then_some(env!("CARGO_PKG_VERSION"));
                http::text_response(200, stats::text(&loaded.stats(), version))
            } else {
                http::text_response(404, "not found\n")
            }
        }
    }))
}

fn keep_removed_servers(config: &mut BalancerConfig, previous: Option<&Loaded>) {
    let Some(previous) = previous else { return };
    let name = config.backend_name.clone();
    let Some(backend) = config.backends.get_mut(&name) else { return };
    // A set, not a pass over the backend per server: rendered backends have thousands.
    let kept: std::collections::BTreeSet<String> = backend.servers.iter().map(|s| s.name.clone()).collect();
    for server in &previous.config.backend().servers {
        if !kept.contains(&server.name) {
            backend.servers.push(server.clone());
        }
    }
}

pub(super) fn load<N: Net>(env: &HostEnv<N>, path: &Path) -> Result<BalancerConfig, String> {
    config::load(path, env.disk().read(path))
}

pub(super) async fn forward<N: Net>(
    env: &HostEnv<N>,
    loaded: Option<Rc<Loaded>>,
    pool: &Pool,
    origin: Origin,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(loaded) = loaded else {
        return http::text_response(503, "no configuration loaded\n");
    };
    // The request id links this answer to the client's record of the request in the trace.
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (mut parts, body) = request.into_parts();
    let sticky = sticky_server(&loaded, &mut parts.headers);
    let Some(first) = sticky.or_else(|| loaded.pick(origin.peer.ip(), None)) else {
        env.observe_request(|| Event::Proxied { request: request_id, server: None, status: 503 });
        return http::text_response(503, "No server is available to handle this request.\n");
    };
    let body = if hyper::body::Body::is_end_stream(&body) {
        Bytes::new()
    } else {
        match http::read_body(body).await {
            Ok(body) => body,
            Err(error) => return http::text_response(400, format!("bad request body: {error}\n")),
        }
    };
    remove_hop_by_hop(&mut parts.headers);
    add_forwarding_headers(&loaded.config, origin, &mut parts.headers);
    // HAProxy's `http-reuse safe`: only a request after the first on its client connection
    // may go over an idle server connection.
    let reuse = origin.earlier > 0;
    let upstream = Request::from_parts(parts, Full::new(body));
    let attempt = Attempt { pool, reuse, request: upstream, request_id: request_id.as_deref() };
    let (server, mut response) = send_with_retries(env, &loaded, first, origin.peer.ip(), attempt).await;
    insert_cookie(&loaded.config, server, sticky, &mut response);
    let status = response.status().as_u16();
    env.observe_request(|| Event::Proxied { request: request_id, server: Some(server.name.clone()), status });
    response
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1): a server's
/// `Connection: close` must not close the client's connection, nor a client's the pooled
/// connection to the server. Bodies are read whole, so a chunked one goes on with its length
/// (a `Content-Length` that was there already matches it: hyper checked).
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn remove_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

/// `option forwardfor`, then the frontend's and the backend's `http-request set-header` rules.
fn add_forwarding_headers(config: &BalancerConfig, origin: Origin, headers: &mut hyper::HeaderMap) {
    let client = origin.peer.ip();
    if config.backend().forward_for {
        if let Ok(value) = client.to_string().parse() {
            headers.insert("x-forwarded-for", value);
        }
    }
    for rule in config.frontend_set_headers.iter().chain(&config.backend().set_headers) {
        let name = hyper::header::HeaderName::from_bytes(rule.name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, rule.value(client, config.bind.port()).parse()) {
            headers.insert(name, value);
        }
    }
}

/// The server the request's sticky cookie names, if it can take the request; with
/// `indirect` the cookie is removed from what the server sees.
fn sticky_server<'a>(loaded: &'a Loaded, headers: &mut hyper::HeaderMap) -> Option<&'a Server> {
    let cookie = loaded.config.backend().cookie.as_ref()?;
    let values = headers.get_all(hyper::header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    let server = select::cookie_value(values, &cookie.name).and_then(|value| loaded.sticky(value));
    if cookie.indirect {
        let kept: Vec<String> = headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| select::without_cookie(v, &cookie.name))
            .collect();
        headers.remove(hyper::header::COOKIE);
        for value in kept.into_iter().filter_map(|v| v.parse().ok()) {
            headers.append(hyper::header::COOKIE, value);
        }
    }
    server
}

/// `cookie NAME insert`: tells the client which server answered, unless (`indirect`) its
/// cookie already named that server; `nocache` keeps shared caches from storing it.
fn insert_cookie(
    config: &BalancerConfig,
    server: &Server,
    sticky: Option<&Server>,
    response: &mut Response<Full<Bytes>>,
) {
    let (Some(cookie), Some(value)) = (config.backend().cookie.as_ref(), server.cookie.as_ref()) else {
        return;
    };
    if cookie.indirect && sticky.is_some_and(|s| s.name == server.name) {
        return;
    }
    if let Ok(header) = format!("{}={value}; path=/", cookie.name).parse() {
        response.headers_mut().append(hyper::header::SET_COOKIE, header);
    }
    if cookie.nocache {
        response
            .headers_mut()
            .insert(hyper::header::CACHE_CONTROL, "private".parse().expect("static header"));
    }
}

/// One request on its way to a server.
struct Attempt<'a> {
    pool: &'a Pool,
    reuse: bool,
    /// What the server gets; it goes back to the caller unsent when a connection fails.
    request: Request<Full<Bytes>>,
    request_id: Option<&'a str>,
}

fn answer(result: Result<Response<Bytes>, HttpError>) -> Response<Full<Bytes>> {
    match result {
        Ok(mut response) => {
            remove_hop_by_hop(response.headers_mut());
            response.map(Full::new)
        }
        Err(error @ HttpError::Timeout { .. }) => http::text_response(504, format!("{error}\n")),
        Err(error) => http::text_response(502, format!("{error}\n")),
    }
}

/// Sends the request to `server` (over an idle connection when reuse is allowed), retrying a
/// failed connect up to `retries` times as HAProxy does: on the same server after
/// min(`timeout connect`, 1 s), or, with `option redispatch`, at once on another server the
/// algorithm chooses. Nothing is retried once the request has been sent. Returns the server
/// that answered (or failed last) and the response.
async fn send_with_retries<'a, N: Net>(
    env: &HostEnv<N>,
    loaded: &'a Loaded,
    mut server: &'a Server,
    client: IpAddr,
    attempt: Attempt<'_>,
) -> (&'a Server, Response<Full<Bytes>>) {
    let config = &loaded.config;
    let backend = config.backend();
    let Attempt { pool, reuse, request: mut upstream, request_id } = attempt;
    let mut retried = 0;
    loop {
        env.observe_request(|| Event::Forwarding {
            request: request_id.map(str::to_string),
            server: server.name.clone(),
            addr: server.addr.to_string(),
        });
        let _counted = loaded.in_flight.enter(&server.name);
        if reuse {
            match pool.send_idle(server.addr, upstream, config.timeout_server).await {
                Ok(result) => return (server, answer(result)),
                Err(unsent) => upstream = unsent,
            }
        }
        let error = match http::connect(&env.net, server.addr, config.timeout_connect).await {
            Ok(stream) => {
                let result = pool.send_new(stream, server.addr, upstream, config.timeout_server).await;
                return (server, answer(result));
            }
            Err(error) => error,
        };
        if retried >= backend.retries {
            // HAProxy answers 503 when it could not connect to any server.
            return (server, http::text_response(503, format!("{error}\n")));
        }
        retried += 1;
        match loaded.pick(client, Some(server)).filter(|_| backend.redispatch) {
            Some(other) => server = other,
            None => tokio::time::sleep(config.timeout_connect.min(RETRY_TURNAROUND_MAX)).await,
        }
    }
}

/// HAProxy waits min(`timeout connect`, 1 s) before retrying the same server.
const RETRY_TURNAROUND_MAX: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::host::testing::{host, run_real};
    use crate::host::{Disk, MemoryDisk};
    use crate::net::tokio_net::TokioNet;

    /// A stand-in server on 127.0.0.1:`port` that answers 200 with its name.
    async fn stand_in(port: u16, name: &'static str) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        tokio::task::spawn_local(http::serve(listener, move |_origin, _request| async move {
            http::text_response(200, name)
        }));
    }

    fn config(ports: &[u16]) -> String {
        let servers: String =
            ports.iter().map(|p| format!("    server s{p} 127.0.0.1:{p} check inter 100ms\n")).collect();
        format!("frontend web\n    bind 127.0.0.1:18196\n    default_backend nodes\nbackend nodes\n{servers}")
    }

    /// A reload every 50 ms while a client sends requests one after another: a reload swaps the
    /// configuration new requests see, the listener stays open, and no request fails.
    #[test]
    fn reloads_under_load_lose_no_request() {
        run_real(async {
            stand_in(18197, "a").await;
            stand_in(18198, "b").await;
            let disk = Rc::new(MemoryDisk::default());
            let path = std::path::PathBuf::from("/haproxy.cfg");
            disk.write_atomic(&path, config(&[18197, 18198]).as_bytes()).unwrap();
            let (env, _recorded) = host(disk.clone());
            let (reload, reload_rx) = watch::channel(0u64);
            tokio::task::spawn_local(run(env, path.clone(), reload_rx, PlantedBugs::default(), 1));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let client = tokio::task::spawn_local(async {
                let net = TokioNet::new([127, 0, 0, 1].into());
                let (mut sent, mut failed) = (0, 0);
                let addr = "127.0.0.1:18196".parse().unwrap();
                let started = tokio::time::Instant::now();
                while started.elapsed() < Duration::from_millis(1000) {
                    let request = Request::get("/").body(Full::new(Bytes::new())).unwrap();
                    sent += 1;
                    match http::exchange(&net, addr, request, Duration::from_secs(2)).await {
                        Ok(response) if response.status() == 200 => {}
                        _ => failed += 1,
                    }
                }
                (sent, failed)
            });
            for round in 0..18 {
                let ports: &[u16] = if round % 2 == 0 { &[18198] } else { &[18197, 18198] };
                disk.write_atomic(&path, config(ports).as_bytes()).unwrap();
                reload.send_modify(|generation| *generation += 1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (sent, failed) = client.await.unwrap();
            assert!(sent > 50, "{sent} requests");
            assert_eq!(failed, 0, "{failed} of {sent} requests failed across 18 reloads");
        });
    }
}
