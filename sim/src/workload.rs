//! The client workload: requests through the balancer at a steady pace, each one recorded
//! with its outcome and the backend that served it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::world::ClientSpec;
use rollcall::host::{Event, HostEnv};
use rollcall::net::{Net, http, resolve_endpoint};

/// Sends requests forever; the engine stops the run.
pub async fn run<N: Net>(env: HostEnv<N>, spec: ClientSpec) {
    let mut id = 0u64;
    loop {
        id += 1;
        let sent_at = env.now();
        let event = match resolve_endpoint(&env.net, &spec.target, 80) {
            Ok(addr) => {
                let request = Request::get("/")
                    .header("host", spec.target.as_str())
                    .header(rollcall::balancer::proxy::REQUEST_ID, request_id(&env.name, id))
                    .body(Full::new(Bytes::new()))
                    .expect("static request");
                match http::exchange(&env.net, addr, request, spec.timeout).await {
                    Ok(response) => Event::Request {
                        id,
                        sent_at_us: sent_at.as_micros() as u64,
                        status: Some(response.status().as_u16()),
                        served_by: served_by(response.body()),
                        error: None,
                    },
                    Err(error) => failed(id, sent_at, error.to_string()),
                }
            }
            Err(error) => failed(id, sent_at, error.to_string()),
        };
        env.observe(event);
        tokio::time::sleep(spec.interval).await;
    }
}

/// The `x-request-id` a client sends: unique across clients, so the balancer's record of the
/// answer can be matched to the request.
pub fn request_id(client: &str, id: u64) -> String {
    format!("{client}-{id}")
}

fn failed(id: u64, sent_at: Duration, error: String) -> Event {
    Event::Request {
        id,
        sent_at_us: sent_at.as_micros() as u64,
        status: None,
        served_by: None,
        error: Some(error),
    }
}

/// The `host` field of the webapp's JSON answer.
fn served_by(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("host")?.as_str().map(str::to_string)
}
