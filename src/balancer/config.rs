//! The subset of `haproxy.cfg` the balancer implements.
//!
//! Understood: `frontend` (`bind`, `default_backend`), `backend` (`server NAME ADDR:PORT`,
//! `balance roundrobin`, `option forwardfor`), `defaults` timeouts. Everything else HAProxy
//! knows is accepted with a warning naming the line, so the lab's own file loads unchanged.
//! Like HAProxy 2.6, an address on a `listen`/`frontend` line is an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
}

/// One `backend` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Servers in file order.
    pub servers: Vec<Server>,
    /// `option forwardfor`: add X-Forwarded-For.
    pub forward_for: bool,
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
    /// Directives accepted but not implemented, with their line.
    pub warnings: Vec<String>,
}

impl BalancerConfig {
    /// The frontend's backend.
    pub fn backend(&self) -> &Backend {
        &self.backends[&self.backend_name]
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

/// Parses `text`; `file` names it in errors and warnings.
pub fn parse(file: &str, text: &str) -> Result<BalancerConfig, ConfigError> {
    let error = |line: usize, message: String| ConfigError { file: file.to_string(), line, message };
    let mut section = Section::None;
    let mut current_backend = String::new();
    let mut frontend: Option<(usize, Option<SocketAddr>, Option<String>)> = None;
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    let mut timeout_connect = Duration::from_secs(5);
    let mut timeout_server = Duration::from_secs(50);
    let mut warnings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        let Some(&keyword) = words.first() else { continue };
        match keyword {
            "global" | "defaults" | "frontend" | "backend" | "listen" => {
                if matches!(keyword, "frontend" | "listen") && words.len() > 2 {
                    return Err(error(
                        line,
                        format!(
                            "please use the 'bind' keyword for listening addresses \
                             (write `{keyword} {}` and, on the next line, `bind {}`)",
                            words[1], words[2]
                        ),
                    ));
                }
                let name = words.get(1).copied();
                section = match keyword {
                    "global" => Section::Global,
                    "defaults" => Section::Defaults,
                    "frontend" => {
                        if frontend.is_some() {
                            warnings.push(format!("{file}:{line}: only the first frontend is served"));
                            Section::None
                        } else {
                            frontend = Some((line, None, None));
                            Section::Frontend
                        }
                    }
                    "backend" => {
                        let name = name.ok_or_else(|| error(line, "backend needs a name".into()))?;
                        current_backend = name.to_string();
                        backends.insert(current_backend.clone(), Backend::default());
                        Section::Backend
                    }
                    _ => {
                        warnings.push(format!("{file}:{line}: listen sections are not served"));
                        Section::Listen
                    }
                };
            }
            _ => match section {
                Section::None => {
                    return Err(error(line, format!("unknown keyword '{keyword}' out of section")));
                }
                Section::Frontend => {
                    let (_, bind, backend) = frontend.as_mut().expect("frontend section has a frontend");
                    match keyword {
                        "bind" => {
                            *bind = Some(parse_bind(words.get(1).copied()).map_err(|m| error(line, m))?)
                        }
                        "default_backend" => {
                            let name = words
                                .get(1)
                                .ok_or_else(|| error(line, "default_backend needs a name".into()))?;
                            *backend = Some(name.to_string());
                        }
                        "mode" if words.get(1) == Some(&"http") => {}
                        _ => warnings.push(format!("{file}:{line}: '{keyword}' is not implemented, ignored")),
                    }
                }
                Section::Backend => {
                    let backend = backends.get_mut(&current_backend).expect("backend section has a backend");
                    match (keyword, words.get(1).copied()) {
                        ("server", _) => {
                            backend.servers.push(parse_server(&words).map_err(|m| error(line, m))?)
                        }
                        ("balance", Some("roundrobin")) | ("mode", Some("http")) => {}
                        ("option", Some("forwardfor")) => backend.forward_for = true,
                        _ => warnings.push(format!(
                            "{file}:{line}: '{}' is not implemented, ignored",
                            words.join(" ")
                        )),
                    }
                }
                Section::Defaults if keyword == "timeout" => {
                    let value = words.get(2).ok_or_else(|| error(line, "timeout needs a value".into()))?;
                    let value = parse_duration(value).map_err(|m| error(line, m))?;
                    match words[1] {
                        "connect" => timeout_connect = value,
                        "server" => timeout_server = value,
                        _ => {}
                    }
                }
                Section::Global | Section::Defaults | Section::Listen => {}
            },
        }
    }
    let Some((frontend_line, bind, backend_name)) = frontend else {
        return Err(error(text.lines().count().max(1), "no frontend section".into()));
    };
    let bind = bind.ok_or_else(|| error(frontend_line, "frontend has no 'bind' line".into()))?;
    let backend_name =
        backend_name.ok_or_else(|| error(frontend_line, "frontend has no default_backend".into()))?;
    if !backends.contains_key(&backend_name) {
        return Err(error(frontend_line, format!("default_backend '{backend_name}' is not defined")));
    }
    Ok(BalancerConfig { bind, backend_name, backends, timeout_connect, timeout_server, warnings })
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

fn parse_server(words: &[&str]) -> Result<Server, String> {
    let (Some(name), Some(addr)) = (words.get(1), words.get(2)) else {
        return Err("server needs a name and an address (server NAME IP:PORT)".into());
    };
    let addr = addr.parse().map_err(|_| format!("server {name}: '{addr}' is not an IP:PORT address"))?;
    Ok(Server { name: name.to_string(), addr })
}

/// HAProxy time values: a number of milliseconds, or with a unit (us, ms, s, m, h, d).
fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("bad time value '{value}'"))?;
    let millis = match unit {
        "" | "ms" => number,
        "s" => number * 1000,
        "m" => number * 60_000,
        "h" => number * 3_600_000,
        "d" => number * 86_400_000,
        "us" => number / 1000,
        _ => return Err(format!("bad time unit in '{value}'")),
    };
    Ok(Duration::from_millis(millis))
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
}
