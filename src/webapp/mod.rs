//! The lab's small web app: `GET /` answers who served the request, with a per-backend
//! session counter carried by the `NODESESSID` cookie; `POST /delay` stalls the whole app,
//! like the lab's blocking sleep.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub mod sessions;

pub use sessions::SESSIONS_MAX;
use sessions::Sessions;

use crate::host::HostEnv;
use crate::net::Net;
use crate::net::http;

/// The port the lab's app listens on.
pub const PORT: u16 = 3000;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "NODESESSID";

struct App {
    host: String,
    ip: String,
    tag: String,
    sessions: RefCell<Sessions>,
    rng: RefCell<ChaCha8Rng>,
    delay: RefCell<Duration>,
    /// Held during a delay, so that every request waits: the lab's sleep blocks the process.
    stall: tokio::sync::Mutex<()>,
}

/// Serves the app on port [`PORT`] until the listener fails.
pub async fn run<N: Net>(env: HostEnv<N>, tag: String) -> Result<(), String> {
    let addr = SocketAddr::new(env.net.local_ip(), PORT);
    let listener = env.net.bind_tcp(addr).await.map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let app = Rc::new(App {
        host: env.name.clone(),
        ip: env.net.local_ip().to_string(),
        tag,
        sessions: RefCell::new(Sessions::default()),
        rng: RefCell::new(env.rng("webapp-sessions")),
        delay: RefCell::new(Duration::ZERO),
        stall: tokio::sync::Mutex::new(()),
    });
    http::serve(listener, move |_origin, request| {
        let app = app.clone();
        async move { app.handle(request).await }
    })
    .await;
    Ok(())
}

impl App {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method().clone(), request.uri().path()) {
            (Method::GET | Method::HEAD, "/") => self.hello(&request).await,
            (Method::POST, "/delay") => self.set_delay(request).await,
            _ => http::text_response(404, "Not Found\n"),
        }
    }

    async fn hello(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let delay = *self.delay.borrow();
        if !delay.is_zero() {
            let _stalled = self.stall.lock().await;
            tokio::time::sleep(delay).await;
        }
        let known = session_id(request).filter(|id| self.sessions.borrow().contains(id));
        let (id, fresh) = match known {
            Some(id) => (id, false),
            None => (format!("{:016x}", self.rng.borrow_mut().random::<u64>()), true),
        };
        let views = self.sessions.borrow_mut().view(&id);
        let body = serde_json::json!({
            "hello": "world!",
            "ip": self.ip,
            "host": self.host,
            "tag": self.tag,
            "sessionViews": views,
            "id": id,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        let headers = response.headers_mut();
        headers.insert("content-type", "application/json".parse().expect("static header"));
        if let Ok(ip) = self.ip.parse() {
            headers.insert("x-backend-ip", ip);
        }
        if fresh {
            if let Ok(cookie) = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly").parse() {
                headers.insert("set-cookie", cookie);
            }
        }
        response
    }

    async fn set_delay(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match http::read_body(request.into_body()).await {
            Ok(body) => body,
            Err(error) => return http::text_response(400, format!("{error}\n")),
        };
        let delay = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value.get("delay").and_then(serde_json::Value::as_u64));
        match delay {
            Some(millis) => {
                *self.delay.borrow_mut() = Duration::from_millis(millis);
                http::text_response(200, format!("delay set to {millis} ms\n"))
            }
            None => http::text_response(500, "expected a JSON body with a numeric \"delay\"\n"),
        }
    }
}

fn session_id(request: &Request<Incoming>) -> Option<String> {
    let cookies = request.headers().get("cookie")?.to_str().ok()?;
    cookies.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then(|| value.to_string())
    })
}
