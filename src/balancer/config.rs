//! The subset of `haproxy.cfg` the balancer implements.
//!
//! Understood: `frontend` (`bind`, `default_backend`), `backend` (`server NAME ADDR:PORT`
//! with `check`, `inter`, `fastinter`, `downinter`, `rise`, `fall`; `default-server`;
//! `balance roundrobin`; `option forwardfor`; `option httpchk [METHOD [URI]]`), timeouts
//! `connect`, `server` and `check` in `defaults` or a backend. Everything else HAProxy knows is
//! accepted with a warning naming the line, so the lab's own file loads unchanged; a server
//! keyword HAProxy does not know is an error, as in HAProxy. Like HAProxy 2.6, an address on
//! a `listen`/`frontend` line is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::health::CheckSettings;

/// A configuration error, naming the file and line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// File name.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and, where known, the fix.
    pub message: String,
}

/// One `server` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Server name.
    pub name: String,
    /// Address and port.
    pub addr: SocketAddr,
    /// Health checks, when the line says `check`.
    pub check: Option<CheckSettings>,
    /// `weight` (default 1; 0 takes no new requests).
    pub weight: u32,
    /// `backup`: used only while no other server is UP.
    pub backup: bool,
    /// `disabled`: in maintenance, never used.
    pub disabled: bool,
    /// `cookie VALUE`: the value `cookie ... insert` sets for this server.
    pub cookie: Option<String>,
}

/// HAProxy 2.6's default and largest server `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest `weight`.
pub const WEIGHT_MAX: u32 = 256;

/// `balance`: how a server is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin (HAProxy's default).
    #[default]
    RoundRobin,
    /// Fewest requests in flight, round robin among equals.
    LeastConn,
    /// A hash of the client's address.
    Source,
    /// The first server, in declaration order, that is UP.
    First,
}

/// `cookie NAME insert [indirect] [nocache]`: sticky sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// `indirect`: the cookie is removed from requests and set only when missing or wrong.
    pub indirect: bool,
    /// `nocache`: responses that set it are marked non-cacheable.
    pub nocache: bool,
}

/// `option httpchk`: the request a health check sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// HTTP method (HAProxy's default: OPTIONS).
    pub method: String,
    /// Request target (default: `/`).
    pub uri: String,
}

/// One `backend` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Servers in file order.
    pub servers: Vec<Server>,
    /// `option forwardfor`: add X-Forwarded-For.
    pub forward_for: bool,
    /// `option httpchk`: checks are HTTP requests; without it a check is a TCP connect.
    pub http_check: Option<HttpCheck>,
    /// `timeout check` (else the defaults' one).
    pub timeout_check: Option<Duration>,
    /// `retries`: how many times a failed connect is retried (HAProxy's default: 3).
    pub retries: u32,
    /// `option redispatch`: a retry goes to another server.
    pub redispatch: bool,
    /// `balance`.
    pub balance: Balance,
    /// `cookie ... insert`.
    pub cookie: Option<StickyCookie>,
    /// `http-request set-header` rules, in order.
    pub set_headers: Vec<SetHeader>,
}

/// `http-request set-header NAME FORMAT`: FORMAT is text with `%[src]` (the client's address)
/// and `%[dst_port]` (the port the client connected to) samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetHeader {
    /// Header name.
    pub name: String,
    /// The value's parts.
    pub value: Vec<FormatPart>,
}

/// A piece of a log-format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatPart {
    /// Literal text.
    Text(String),
    /// `%[src]`.
    Source,
    /// `%[dst_port]`.
    DestinationPort,
}

impl SetHeader {
    /// The value for a client at `source` that connected to port `port`.
    pub fn value(&self, source: std::net::IpAddr, port: u16) -> String {
        self.value
            .iter()
            .map(|part| match part {
                FormatPart::Text(text) => text.clone(),
                FormatPart::Source => source.to_string(),
                FormatPart::DestinationPort => port.to_string(),
            })
            .collect()
    }
}

fn parse_set_header(words: &[&str]) -> Result<SetHeader, String> {
    let (Some(name), Some(_)) = (words.get(2), words.get(3)) else {
        return Err("http-request set-header needs a name and a value".into());
    };
    let mut rest = words[3..].join(" ");
    let mut value = Vec::new();
    while let Some(start) = rest.find("%[") {
        if start > 0 {
            value.push(FormatPart::Text(rest[..start].to_string()));
        }
        let end = rest[start..].find(']').ok_or_else(|| format!("unclosed sample in '{rest}'"))? + start;
        value.push(match &rest[start + 2..end] {
            "src" => FormatPart::Source,
            "dst_port" => FormatPart::DestinationPort,
            other => {
                return Err(format!("sample fetch '{other}' is not implemented (only src and dst_port)"));
            }
        });
        rest = rest[end + 1..].to_string();
    }
    if !rest.is_empty() {
        value.push(FormatPart::Text(rest));
    }
    Ok(SetHeader { name: name.to_string(), value })
}

/// `stats enable` in a `listen` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsPage {
    /// `stats uri` (HAProxy's default: `/haproxy?stats`).
    pub uri: String,
    /// `stats hide-version`.
    pub hide_version: bool,
    /// `stats auth user:password` lines: with any, the page asks for HTTP basic auth.
    pub users: Vec<(String, String)>,
    /// `stats realm` (HAProxy's default: `HAProxy Statistics`).
    pub realm: String,
}

impl Default for StatsPage {
    fn default() -> Self {
        StatsPage {
            uri: "/haproxy?stats".into(),
            hide_version: false,
            users: Vec::new(),
            realm: "HAProxy Statistics".into(),
        }
    }
}

/// Most `stats auth` accounts of one stats page.
pub const STATS_USERS_MAX: usize = 64;

/// `maxconn` when none is set.
pub const DEFAULT_MAXCONN: usize = 4096;
/// Largest `maxconn`.
pub const MAXCONN_MAX: usize = 1_000_000;

/// HAProxy 2.6's default `retries`.
pub const DEFAULT_RETRIES: u32 = 3;

/// What a `defaults` section sets for the backends that follow it.
#[derive(Clone, Copy, Debug)]
struct BackendDefaults {
    retries: u32,
    redispatch: bool,
}

/// The loaded configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerConfig {
    /// Frontend listening address.
    pub bind: SocketAddr,
    /// Backend the frontend sends to.
    pub backend_name: String,
    /// All backends by name.
    pub backends: BTreeMap<String, Backend>,
    /// `timeout connect`.
    pub timeout_connect: Duration,
    /// `timeout server`.
    pub timeout_server: Duration,
    /// `timeout check` in `defaults`.
    pub timeout_check: Option<Duration>,
    /// The stats page of a `listen` section, and where it listens.
    pub stats: Option<(SocketAddr, StatsPage)>,
    /// `maxconn`: connections the frontend serves at once (global, defaults or frontend).
    pub maxconn: usize,
    /// `timeout http-request`, else `timeout client` (defaults or frontend): the longest a
    /// client may take to send a request head, idle keep-alive included.
    pub timeout_client_head: Option<Duration>,
    /// The frontend's `http-request set-header` rules (applied before the backend's).
    pub frontend_set_headers: Vec<SetHeader>,
    /// Directives accepted but not implemented, with their line.
    pub warnings: Vec<String>,
}

impl BalancerConfig {
    /// The frontend's backend.
    pub fn backend(&self) -> &Backend {
        &self.backends[&self.backend_name]
    }

    /// How long one health check of the frontend's backend may take: HAProxy bounds the
    /// connection by `timeout connect` and the answer by `timeout check`, or by `inter` when
    /// there is no `timeout check`.
    pub fn check_timeout(&self, settings: &CheckSettings) -> Duration {
        match self.backend().timeout_check.or(self.timeout_check) {
            Some(check) => self.timeout_connect.min(settings.inter) + check,
            None => settings.inter,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
}

/// The parse in progress.
struct Parser<'a> {
    file: &'a str,
    section: Section,
    current_backend: String,
    frontend: Option<(usize, Option<SocketAddr>, Option<String>)>,
    backends: BTreeMap<String, Backend>,
    /// `default-server` of the `defaults` section, and of the backend being read.
    default_server: ServerTemplate,
    backend_default_server: ServerTemplate,
    timeout_connect: Duration,
    timeout_server: Duration,
    timeout_check: Option<Duration>,
    backend_defaults: BackendDefaults,
    listens: Vec<ListenSection>,
    maxconn: usize,
    frontend_set_headers: Vec<SetHeader>,
    timeout_client: Option<Duration>,
    timeout_http_request: Option<Duration>,
    warnings: Vec<String>,
    /// Every (backend, server) name read, so a duplicate is found without a pass over the
    /// backend (a rendered config of 10,000 servers is read at every render).
    server_names: BTreeSet<(String, String)>,
}

/// A `listen` section while it is read.
struct ListenSection {
    line: usize,
    bind: Option<SocketAddr>,
    stats: Option<StatsPage>,
}

/// The file at `path`, as read (`read`), loaded as the balancer loads it: UTF-8, then parsed;
/// the error names the file. Every engine that runs a balancer loads its file this way.
pub fn load(path: &std::path::Path, read: std::io::Result<Vec<u8>>) -> Result<BalancerConfig, String> {
    let bytes = read.map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

/// Parses `text`; `file` names it in errors and warnings.
pub fn parse(file: &str, text: &str) -> Result<BalancerConfig, ConfigError> {
    let mut parser = Parser {
        file,
        section: Section::None,
        current_backend: String::new(),
        frontend: None,
        backends: BTreeMap::new(),
        default_server: ServerTemplate::default(),
        backend_default_server: ServerTemplate::default(),
        timeout_connect: Duration::from_secs(5),
        timeout_server: Duration::from_secs(50),
        timeout_check: None,
        backend_defaults: BackendDefaults { retries: DEFAULT_RETRIES, redispatch: false },
        listens: Vec::new(),
        maxconn: DEFAULT_MAXCONN,
        frontend_set_headers: Vec::new(),
        timeout_client: None,
        timeout_http_request: None,
        warnings: Vec::new(),
        server_names: BTreeSet::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        parser.line(index + 1, &words).map_err(|message| parser.error(index + 1, message))?;
    }
    parser.finish(text.lines().count().max(1))
}

impl Parser<'_> {
    fn error(&self, line: usize, message: String) -> ConfigError {
        ConfigError { file: self.file.to_string(), line, message }
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(format!("{}:{line}: {message}", self.file));
    }

    fn line(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        let keyword = words[0];
        if matches!(keyword, "global" | "defaults" | "frontend" | "backend" | "listen") {
            return self.open_section(line, words);
        }
        match self.section {
            Section::None => Err(format!("unknown keyword '{keyword}' out of section")),
            Section::Frontend => self.frontend_line(line, words),
            Section::Backend => self.backend_line(line, words),
            Section::Defaults => self.defaults_line(line, words),
            Section::Listen => self.listen_line(line, words),
            Section::Global if keyword == "maxconn" => {
                self.maxconn = parse_maxconn(words)?;
                Ok(())
            }
            Section::Global => Ok(()),
        }
    }

    fn open_section(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        let keyword = words[0];
        if matches!(keyword, "frontend" | "listen") && words.len() > 2 {
            return Err(format!(
                "please use the 'bind' keyword for listening addresses \
                 (write `{keyword} {}` and, on the next line, `bind {}`)",
                words[1], words[2]
            ));
        }
        self.section = match keyword {
            "global" => Section::Global,
            "defaults" => Section::Defaults,
            "frontend" if self.frontend.is_some() => {
                self.warn(line, "only the first frontend is served".into());
                Section::None
            }
            "frontend" => {
                self.frontend = Some((line, None, None));
                Section::Frontend
            }
            "backend" => {
                let name = words.get(1).ok_or("backend needs a name")?;
                if self.backends.contains_key(*name) {
                    return Err(format!("backend '{name}' is defined twice"));
                }
                self.current_backend = name.to_string();
                let defaults = self.backend_defaults;
                let backend = Backend {
                    retries: defaults.retries,
                    redispatch: defaults.redispatch,
                    ..Backend::default()
                };
                self.backends.insert(self.current_backend.clone(), backend);
                self.backend_default_server = self.default_server.clone();
                Section::Backend
            }
            _ => {
                self.listens.push(ListenSection { line, bind: None, stats: None });
                Section::Listen
            }
        };
        Ok(())
    }

    /// A `listen` section serves the stats page (`stats enable`, `stats uri`,
    /// `stats hide-version`, `stats auth`, `stats realm`); anything else in it is not served.
    fn listen_line(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        let listen = self.listens.last_mut().expect("listen section has a listen");
        match (words[0], words.get(1).copied()) {
            ("bind", _) => listen.bind = Some(parse_bind(words.get(1).copied())?),
            ("mode", Some("http")) => {}
            ("stats", Some("enable")) => {
                listen.stats.get_or_insert_with(StatsPage::default);
            }
            ("stats", Some("uri")) => {
                let uri = words.get(2).ok_or("stats uri needs a path")?;
                listen.stats.get_or_insert_with(StatsPage::default).uri = uri.to_string();
            }
            ("stats", Some("hide-version")) => {
                listen.stats.get_or_insert_with(StatsPage::default).hide_version = true
            }
            ("stats", Some("auth")) => {
                let account = words.get(2).and_then(|w| w.split_once(':'));
                let (user, password) = account.ok_or("'stats auth' needs a user:password account")?;
                let page = listen.stats.get_or_insert_with(StatsPage::default);
                if page.users.len() >= STATS_USERS_MAX {
                    return Err(format!("more than {STATS_USERS_MAX} 'stats auth' accounts"));
                }
                page.users.push((user.to_string(), password.to_string()));
            }
            ("stats", Some("realm")) => {
                // One word, as HAProxy reads it (a space in a realm is escaped there).
                let realm = words.get(2).ok_or("'stats realm' needs a realm")?;
                listen.stats.get_or_insert_with(StatsPage::default).realm = realm.to_string();
                if words.len() > 3 {
                    self.warn(
                        line,
                        format!("'stats realm' takes one word, '{}' ignored", words[3..].join(" ")),
                    );
                }
            }
            _ => self.warn(line, format!("'{}' is not implemented, ignored", words.join(" "))),
        }
        Ok(())
    }

    fn frontend_line(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        let (_, bind, backend) = self.frontend.as_mut().expect("frontend section has a frontend");
        match words[0] {
            "bind" => *bind = Some(parse_bind(words.get(1).copied())?),
            "default_backend" => {
                *backend = Some(words.get(1).ok_or("default_backend needs a name")?.to_string())
            }
            "mode" if words.get(1) == Some(&"http") => {}
            "maxconn" => self.maxconn = parse_maxconn(words)?,
            "timeout" if words.get(1) == Some(&"client") => self.timeout_client = Some(timeout_value(words)?),
            "timeout" if words.get(1) == Some(&"http-request") => {
                self.timeout_http_request = Some(timeout_value(words)?)
            }
            "http-request" if words.get(1) == Some(&"set-header") => {
                self.frontend_set_headers.push(parse_set_header(words)?)
            }
            keyword => self.warn(line, format!("'{keyword}' is not implemented, ignored")),
        }
        Ok(())
    }

    fn backend_line(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        match (words[0], words.get(1).copied()) {
            ("server", _) => {
                let (server, warnings) = parse_server(words, &self.backend_default_server)?;
                for warning in warnings {
                    self.warn(line, warning);
                }
                if !self.server_names.insert((self.current_backend.clone(), server.name.clone())) {
                    return Err(format!("another server named '{}' was already defined", server.name));
                }
                let backend =
                    self.backends.get_mut(&self.current_backend).expect("backend section has a backend");
                backend.servers.push(server);
            }
            ("default-server", _) => {
                let warnings = server_keywords(&words[1..], &mut self.backend_default_server)?;
                warnings.into_iter().for_each(|w| self.warn(line, w));
            }
            ("balance", _) => {
                let (balance, warning) = parse_balance(words)?;
                self.backend().balance = balance;
                warning.into_iter().for_each(|w| self.warn(line, w));
            }
            ("cookie", _) => {
                let (cookie, warnings) = parse_cookie(words)?;
                self.backend().cookie = Some(cookie);
                warnings.into_iter().for_each(|w| self.warn(line, w));
            }
            ("mode", Some("http")) => {}
            ("option", Some("forwardfor")) => self.backend().forward_for = true,
            ("option", Some("httpchk")) => self.backend().http_check = Some(parse_httpchk(&words[2..])?),
            ("timeout", Some("check")) => self.backend().timeout_check = Some(timeout_value(words)?),
            ("retries", _) => self.backend().retries = retries(words)?,
            ("option", Some("redispatch")) => self.backend().redispatch = true,
            ("http-request", Some("set-header")) => {
                let rule = parse_set_header(words)?;
                self.backend().set_headers.push(rule);
            }
            _ => self.warn(line, format!("'{}' is not implemented, ignored", words.join(" "))),
        }
        Ok(())
    }

    fn backend(&mut self) -> &mut Backend {
        self.backends.get_mut(&self.current_backend).expect("backend section has a backend")
    }

    fn defaults_line(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        match (words[0], words.get(1).copied()) {
            ("timeout", Some("connect")) => self.timeout_connect = timeout_value(words)?,
            ("timeout", Some("server")) => self.timeout_server = timeout_value(words)?,
            ("timeout", Some("check")) => self.timeout_check = Some(timeout_value(words)?),
            ("timeout", Some("client")) => self.timeout_client = Some(timeout_value(words)?),
            ("timeout", Some("http-request")) => self.timeout_http_request = Some(timeout_value(words)?),
            ("timeout", Some(_)) => {
                timeout_value(words)?;
            }
            ("retries", _) => self.backend_defaults.retries = retries(words)?,
            ("maxconn", _) => self.maxconn = parse_maxconn(words)?,
            ("option", Some("redispatch")) => self.backend_defaults.redispatch = true,
            ("default-server", _) => {
                let warnings = server_keywords(&words[1..], &mut self.default_server)?;
                warnings.into_iter().for_each(|w| self.warn(line, w));
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self, last_line: usize) -> Result<BalancerConfig, ConfigError> {
        let mut stats = None;
        for listen in std::mem::take(&mut self.listens) {
            match (listen.bind, listen.stats) {
                (Some(bind), Some(page)) if stats.is_none() => stats = Some((bind, page)),
                (_, Some(_)) if stats.is_some() => {
                    self.warn(listen.line, "only the first stats page is served".into())
                }
                (None, Some(_)) => {
                    self.warn(listen.line, "stats section has no 'bind' line, not served".into())
                }
                _ => self.warn(listen.line, "listen sections are not served, except for stats".into()),
            }
        }
        let Some((frontend_line, bind, backend_name)) = self.frontend.clone() else {
            return Err(self.error(last_line, "no frontend section".into()));
        };
        let bind = bind.ok_or_else(|| self.error(frontend_line, "frontend has no 'bind' line".into()))?;
        let backend_name = backend_name
            .ok_or_else(|| self.error(frontend_line, "frontend has no default_backend".into()))?;
        if !self.backends.contains_key(&backend_name) {
            return Err(self.error(frontend_line, format!("default_backend '{backend_name}' is not defined")));
        }
        Ok(BalancerConfig {
            bind,
            backend_name,
            backends: self.backends,
            timeout_connect: self.timeout_connect,
            timeout_server: self.timeout_server,
            timeout_check: self.timeout_check,
            stats,
            maxconn: self.maxconn,
            frontend_set_headers: self.frontend_set_headers,
            timeout_client_head: self.timeout_http_request.or(self.timeout_client).filter(|t| !t.is_zero()),
            warnings: self.warnings,
        })
    }
}

fn parse_maxconn(words: &[&str]) -> Result<usize, String> {
    let value = words.get(1).ok_or("maxconn needs a number")?;
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAXCONN_MAX).contains(n))
        .ok_or_else(|| format!("maxconn expects 1 to {MAXCONN_MAX}, not '{value}'"))
}

fn retries(words: &[&str]) -> Result<u32, String> {
    let value = words.get(1).ok_or("retries needs a number")?;
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= 100)
        .ok_or_else(|| format!("retries expects 0 to 100, not '{value}'"))
}

fn timeout_value(words: &[&str]) -> Result<Duration, String> {
    parse_duration(words.get(2).ok_or("timeout needs a value")?)
}

fn parse_httpchk(words: &[&str]) -> Result<HttpCheck, String> {
    match words {
        [] => Ok(HttpCheck { method: "OPTIONS".into(), uri: "/".into() }),
        [uri] if uri.starts_with('/') => Ok(HttpCheck { method: "OPTIONS".into(), uri: uri.to_string() }),
        [method] => Ok(HttpCheck { method: method.to_string(), uri: "/".into() }),
        [method, uri, ..] => Ok(HttpCheck { method: method.to_string(), uri: uri.to_string() }),
    }
}

fn parse_bind(value: Option<&str>) -> Result<SocketAddr, String> {
    let value = value.ok_or("bind needs an address")?;
    let (host, port) = value.rsplit_once(':').ok_or_else(|| format!("bind address '{value}' has no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in bind address '{value}'"))?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        host => host.parse().map_err(|_| format!("bad address in bind '{value}'"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Server keywords HAProxy 2.6 knows that take a value and that the balancer does not
/// implement: accepted with a warning.
const IGNORED_WITH_VALUE: [&str; 10] = [
    "maxconn",
    "port",
    "addr",
    "slowstart",
    "on-error",
    "error-limit",
    "observe",
    "agent-port",
    "id",
    "maxqueue",
];
/// Flags of the same kind.
const IGNORED_FLAGS: [&str; 4] = ["enabled", "send-proxy", "no-check", "agent-check"];

/// Server settings as written on `default-server` and `server` lines: `fastinter` and
/// `downinter` follow the server's `inter` unless set.
#[derive(Clone, Debug, Default)]
struct ServerTemplate {
    check: bool,
    inter: Option<Duration>,
    fastinter: Option<Duration>,
    downinter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    weight: Option<u32>,
    backup: bool,
    disabled: bool,
    cookie: Option<String>,
}

impl ServerTemplate {
    fn settings(&self) -> CheckSettings {
        let defaults = CheckSettings::default();
        let inter = self.inter.unwrap_or(defaults.inter);
        CheckSettings {
            inter,
            fastinter: self.fastinter.unwrap_or(inter),
            downinter: self.downinter.unwrap_or(inter),
            rise: self.rise.unwrap_or(defaults.rise),
            fall: self.fall.unwrap_or(defaults.fall),
        }
    }

    fn server(&self, name: &str, addr: SocketAddr) -> Server {
        Server {
            name: name.to_string(),
            addr,
            check: self.check.then(|| self.settings()),
            weight: self.weight.unwrap_or(DEFAULT_WEIGHT),
            backup: self.backup,
            disabled: self.disabled,
            cookie: self.cookie.clone(),
        }
    }
}

/// Applies server keywords to `template`; warnings for the known ones not implemented, an
/// error for an unknown one.
fn server_keywords(words: &[&str], template: &mut ServerTemplate) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let keyword = words[index];
        let value = || words.get(index + 1).copied().ok_or_else(|| format!("'{keyword}' expects a value"));
        let mut takes_value = true;
        match keyword {
            "check" => (template.check, takes_value) = (true, false),
            "backup" => (template.backup, takes_value) = (true, false),
            "disabled" => (template.disabled, takes_value) = (true, false),
            "inter" => template.inter = Some(positive_duration(keyword, value()?)?),
            "fastinter" => template.fastinter = Some(positive_duration(keyword, value()?)?),
            "downinter" => template.downinter = Some(positive_duration(keyword, value()?)?),
            "rise" => template.rise = Some(count(keyword, value()?)?),
            "fall" => template.fall = Some(count(keyword, value()?)?),
            "weight" => template.weight = Some(weight(value()?)?),
            "cookie" => template.cookie = Some(value()?.to_string()),
            k if IGNORED_WITH_VALUE.contains(&k) => {
                value()?;
                warnings.push(format!("server keyword '{k}' is not implemented, ignored"));
            }
            k if IGNORED_FLAGS.contains(&k) => {
                takes_value = false;
                warnings.push(format!("server keyword '{k}' is not implemented, ignored"));
            }
            k => return Err(format!("unknown keyword '{k}'")),
        }
        index += if takes_value { 2 } else { 1 };
    }
    Ok(warnings)
}

fn weight(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= WEIGHT_MAX)
        .ok_or_else(|| format!("'weight' expects 0 to {WEIGHT_MAX}, not '{value}'"))
}

fn parse_balance(words: &[&str]) -> Result<(Balance, Option<String>), String> {
    let algorithm = words.get(1).ok_or("balance needs an algorithm")?;
    let balance = match *algorithm {
        "roundrobin" => Balance::RoundRobin,
        "leastconn" => Balance::LeastConn,
        "source" => Balance::Source,
        "first" => Balance::First,
        "static-rr" | "uri" | "url_param" | "random" => {
            return Ok((
                Balance::RoundRobin,
                Some(format!("balance {algorithm} is not implemented, using roundrobin")),
            ));
        }
        a if a.starts_with("hdr(") || a.starts_with("rdp-cookie") || a.starts_with("random(") => {
            return Ok((
                Balance::RoundRobin,
                Some(format!("balance {a} is not implemented, using roundrobin")),
            ));
        }
        other => {
            return Err(format!(
                "balance only supports 'roundrobin', 'static-rr', 'leastconn', 'source', 'uri', 'url_param', \
                 'hdr(name)' and 'rdp-cookie(name)' options, not '{other}'"
            ));
        }
    };
    Ok((balance, None))
}

fn parse_cookie(words: &[&str]) -> Result<(StickyCookie, Vec<String>), String> {
    let name = words.get(1).ok_or("cookie needs a name")?;
    let mut cookie = StickyCookie { name: name.to_string(), indirect: false, nocache: false };
    let mut insert = false;
    let mut warnings = Vec::new();
    for option in &words[2..] {
        match *option {
            "insert" => insert = true,
            "indirect" => cookie.indirect = true,
            "nocache" => cookie.nocache = true,
            "rewrite" | "prefix" | "postonly" | "preserve" | "httponly" | "secure" | "dynamic" => {
                warnings.push(format!("cookie option '{option}' is not implemented, ignored"))
            }
            other => return Err(format!("unknown cookie option '{other}'")),
        }
    }
    if !insert {
        warnings.push("only 'cookie ... insert' is implemented; the cookie is inserted".into());
    }
    Ok((cookie, warnings))
}

fn positive_duration(keyword: &str, value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err(format!("'{keyword}' must be positive"));
    }
    Ok(duration)
}

fn count(keyword: &str, value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!("'{keyword}' expects a number from 1 to 1000, not '{value}'")),
    }
}

fn parse_server(words: &[&str], defaults: &ServerTemplate) -> Result<(Server, Vec<String>), String> {
    let (Some(name), Some(addr)) = (words.get(1), words.get(2)) else {
        return Err("server needs a name and an address (server NAME IP:PORT)".into());
    };
    let addr = addr.parse().map_err(|_| format!("server {name}: '{addr}' is not an IP:PORT address"))?;
    let mut template = defaults.clone();
    let warnings =
        server_keywords(&words[3..], &mut template).map_err(|m| format!("'server {name}': {m}"))?;
    Ok((template.server(name, addr), warnings))
}

/// HAProxy time values: a number of milliseconds, or with a unit (us, ms, s, m, h, d).
fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("bad time value '{value}'"))?;
    let per_unit = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "us" => return Ok(Duration::from_micros(number)),
        _ => return Err(format!("bad time unit in '{value}'")),
    };
    number
        .checked_mul(per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("time value '{value}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "defaults\n    timeout connect 2s\nfrontend web\n    bind *:80\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n    server s1 10.0.0.2:3000 check\n    server s2 10.0.0.3:3000 check\n";

    #[test]
    fn parses_frontend_backend_and_servers() {
        let config = parse("h.cfg", MINIMAL).unwrap();
        assert_eq!(config.bind, "0.0.0.0:80".parse().unwrap());
        assert_eq!(config.backend().servers.len(), 2);
        assert_eq!(config.backend().servers[1].name, "s2");
        assert_eq!(config.timeout_connect, Duration::from_secs(2));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn a_server_name_twice_in_one_backend_is_an_error_but_not_across_backends() {
        let twice = MINIMAL.replace("server s2", "server s1");
        let error = parse("h.cfg", &twice).unwrap_err();
        assert_eq!(error.line, 9);
        assert!(error.to_string().contains("another server named 's1'"), "{error}");
        let other_backend = format!("{MINIMAL}backend spare\n    server s1 10.0.0.4:3000\n");
        assert!(parse("h.cfg", &other_backend).is_ok());
    }

    #[test]
    fn stats_auth_and_realm_are_read_and_a_bad_account_names_its_line() {
        let text = format!(
            "{MINIMAL}listen stats\n    bind 127.0.0.1:1936\n    stats enable\n    stats auth admin:s3cret\n    stats auth ops:a:b\n    stats realm Ops Only\n"
        );
        let (bind, page) = parse("h.cfg", &text).unwrap().stats.expect("stats page");
        assert_eq!(bind, "127.0.0.1:1936".parse().unwrap());
        assert_eq!(page.users, [("admin".into(), "s3cret".into()), ("ops".into(), "a:b".into())]);
        assert_eq!(page.realm, "Ops");
        let bad = format!("{MINIMAL}listen stats\n    bind :1936\n    stats auth admin\n");
        let error = parse("h.cfg", &bad).unwrap_err();
        assert_eq!(error.line, 12);
        assert!(error.to_string().contains("user:password"), "{error}");
    }

    #[test]
    fn an_empty_backend_is_valid() {
        let text = "frontend web\n    bind :80\n    default_backend nodes\nbackend nodes\n";
        assert!(parse("h.cfg", text).unwrap().backend().servers.is_empty());
    }

    #[test]
    fn the_old_listen_syntax_is_rejected_like_haproxy_2_6() {
        let text = "global\n    stats timeout 30s\nlisten stats *:1936\n";
        let error = parse("haproxy.cfg", text).unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.to_string().starts_with("haproxy.cfg:3: please use the 'bind' keyword"), "{error}");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let bad_server = MINIMAL.replace("10.0.0.3:3000", "nowhere");
        assert_eq!(parse("h.cfg", &bad_server).unwrap_err().line, 9);
        let no_backend = "frontend web\n    bind *:80\n    default_backend missing\n";
        assert_eq!(parse("h.cfg", no_backend).unwrap_err().line, 1);
        assert_eq!(parse("h.cfg", "bogus\n").unwrap_err().line, 1);
        assert!(parse("h.cfg", "").is_err());
    }

    #[test]
    fn check_keywords_default_server_and_timeout_check() {
        let text = "defaults\n    timeout check 1s\n    default-server inter 3s fall 2\nfrontend web\n    bind *:80\n    default_backend nodes\nbackend nodes\n    option httpchk GET /health\n    default-server rise 4\n    server s1 10.0.0.2:3000 check fastinter 500ms\n    server s2 10.0.0.3:3000 check inter 1s downinter 10s maxconn 5\n    server s3 10.0.0.4:3000\n";
        let config = parse("h.cfg", text).unwrap();
        let backend = config.backend();
        assert_eq!(backend.http_check, Some(HttpCheck { method: "GET".into(), uri: "/health".into() }));
        let s1 = backend.servers[0].check.unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            (s1.inter, s1.fastinter, s1.downinter, s1.rise, s1.fall),
            (secs(3), Duration::from_millis(500), secs(3), 4, 2)
        );
        let s2 = backend.servers[1].check.unwrap();
        assert_eq!((s2.inter, s2.fastinter, s2.downinter), (secs(1), secs(1), secs(10)));
        assert_eq!(backend.servers[2].check, None);
        assert_eq!(config.timeout_check, Some(secs(1)));
        // `timeout connect` (5 s default) is longer than inter: the connect is bounded by inter.
        assert_eq!(config.check_timeout(&s2), secs(1) + secs(1));
        assert!(
            config.warnings.iter().any(|w| w.starts_with("h.cfg:11:") && w.contains("'maxconn'")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn httpchk_forms_and_haproxy_defaults() {
        assert_eq!(parse_httpchk(&[]).unwrap(), HttpCheck { method: "OPTIONS".into(), uri: "/".into() });
        assert_eq!(parse_httpchk(&["/ping"]).unwrap().method, "OPTIONS");
        assert_eq!(parse_httpchk(&["HEAD", "/"]).unwrap().method, "HEAD");
        let config = parse("h.cfg", MINIMAL).unwrap();
        assert_eq!(config.backend().servers[0].check, Some(CheckSettings::default()));
        assert_eq!(config.check_timeout(&CheckSettings::default()), Duration::from_secs(2));
    }

    #[test]
    fn a_malformed_server_line_is_an_error_naming_the_line() {
        for (bad, needle) in [
            ("check", "check chek"),
            ("check", "check inter"),
            ("check", "check inter 0"),
            ("check", "check rise 0"),
            ("check", "check fall many"),
            ("check", "check inter 5x"),
        ] {
            let text = MINIMAL.replacen(bad, needle, 1);
            let error = parse("h.cfg", &text).unwrap_err();
            assert_eq!(error.line, 8, "{needle}: {error}");
        }
        let error = parse("h.cfg", &MINIMAL.replacen("check", "check chek", 1)).unwrap_err();
        assert!(error.message.contains("unknown keyword 'chek'"), "{error}");
        let twice = MINIMAL.replace("server s2 10.0.0.3", "server s1 10.0.0.3");
        assert!(parse("h.cfg", &twice).unwrap_err().message.contains("another server named 's1'"));
        let huge = MINIMAL.replace("timeout connect 2s", "timeout connect 99999999999999999d");
        assert_eq!(parse("h.cfg", &huge).unwrap_err().line, 2);
    }

    #[test]
    fn retries_and_redispatch_follow_defaults_then_the_backend() {
        let text = "defaults\n    retries 1\n    option redispatch\nfrontend web\n    bind *:80\n    default_backend nodes\nbackend nodes\n    retries 5\nbackend other\n";
        let config = parse("h.cfg", text).unwrap();
        assert_eq!((config.backend().retries, config.backend().redispatch), (5, true));
        assert_eq!(config.backends["other"].retries, 1);
        let plain = parse("h.cfg", MINIMAL).unwrap();
        assert_eq!((plain.backend().retries, plain.backend().redispatch), (DEFAULT_RETRIES, false));
        assert_eq!(parse("h.cfg", &text.replace("retries 5", "retries lots")).unwrap_err().line, 8);
    }

    #[test]
    fn balance_cookie_weight_backup_and_disabled() {
        let text = "frontend web\n    bind *:80\n    default_backend nodes\nbackend nodes\n    balance leastconn\n    cookie SERVERID insert indirect nocache\n    server s1 10.0.0.2:80 cookie a weight 3\n    server s2 10.0.0.3:80 backup disabled\n";
        let config = parse("h.cfg", text).unwrap();
        let backend = config.backend();
        assert_eq!(backend.balance, Balance::LeastConn);
        assert_eq!(
            backend.cookie,
            Some(StickyCookie { name: "SERVERID".into(), indirect: true, nocache: true })
        );
        assert_eq!((backend.servers[0].weight, backend.servers[0].cookie.as_deref()), (3, Some("a")));
        assert!(backend.servers[1].backup && backend.servers[1].disabled);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let unknown = parse("h.cfg", &text.replace("leastconn", "fastest")).unwrap_err();
        assert_eq!(unknown.line, 5);
        assert!(unknown.message.starts_with("balance only supports"), "{unknown}");
        let warned = parse("h.cfg", &text.replace("leastconn", "uri")).unwrap();
        assert_eq!(warned.backend().balance, Balance::RoundRobin);
        assert!(
            warned.warnings[0].starts_with("h.cfg:5: balance uri is not implemented"),
            "{:?}",
            warned.warnings
        );
        assert_eq!(parse("h.cfg", &text.replace("weight 3", "weight 300")).unwrap_err().line, 7);
        assert_eq!(parse("h.cfg", &text.replace("nocache", "sometimes")).unwrap_err().line, 6);
    }

    #[test]
    fn set_header_samples_and_maxconn() {
        let text = "global\n    maxconn 100\nfrontend web\n    bind *:8080\n    maxconn 50\n    http-request set-header X-Via rollcall\n    default_backend nodes\nbackend nodes\n    http-request set-header X-Client %[src]:%[dst_port]\n";
        let config = parse("h.cfg", text).unwrap();
        assert_eq!(config.maxconn, 50);
        let rule = &config.backend().set_headers[0];
        assert_eq!(rule.value([10, 1, 2, 3].into(), 8080), "10.1.2.3:8080");
        assert_eq!(config.frontend_set_headers[0].value([10, 1, 2, 3].into(), 8080), "rollcall");
        assert_eq!(parse("h.cfg", &text.replace("%[src]", "%[req.hdr(x)]")).unwrap_err().line, 9);
        assert_eq!(parse("h.cfg", &text.replace("maxconn 50", "maxconn 0")).unwrap_err().line, 5);
        assert_eq!(parse("h.cfg", MINIMAL).unwrap().maxconn, DEFAULT_MAXCONN);
    }
}
