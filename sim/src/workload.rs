//! The client workload: requests through the balancer at a steady pace, each one recorded
//! with its outcome and the backend that served it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::Rng;

use crate::world::ClientSpec;
use rollcall::host::{Event, HostEnv};
use rollcall::net::{Net, http, resolve_endpoint};

/// Sends requests forever; the engine stops the run.
pub async fn run<N: Net>(env: HostEnv<N>, spec: ClientSpec) {
    // Unique across clients and across reboots of this one (the counter starts again at 1),
    // so that the balancer's record of a request is matched to this one alone.
    let boot_tag: u32 = env.rng("request-ids").random();
    let mut id = 0u64;
    loop {
        id += 1;
        let sent_at = env.now();
        let request_id = format!("{}-{boot_tag:08x}-{id}", env.name);
        let outcome = match resolve_endpoint(&env.net, &spec.target, 80) {
            Ok(addr) => {
                let request = Request::get("/")
                    .header("host", spec.target.as_str())
                    .header(rollcall::balancer::proxy::REQUEST_ID, request_id.as_str())
                    .body(Full::new(Bytes::new()))
                    .expect("static request");
                match http::exchange(&env.net, addr, request, spec.timeout).await {
                    Ok(response) => Ok((response.status().as_u16(), served_by(response.body()))),
                    Err(error) => Err(error.to_string()),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        env.observe(record(id, request_id, sent_at, outcome));
        tokio::time::sleep(spec.interval).await;
    }
}

fn record(
    id: u64,
    request_id: String,
    sent_at: Duration,
    outcome: Result<(u16, Option<String>), String>,
) -> Event {
    let sent_at_us = sent_at.as_micros() as u64;
    match outcome {
        Ok((status, served_by)) => {
            Event::Request { id, request_id, sent_at_us, status: Some(status), served_by, error: None }
        }
        Err(error) => {
            Event::Request { id, request_id, sent_at_us, status: None, served_by: None, error: Some(error) }
        }
    }
}

/// The `host` field of the webapp's JSON answer.
fn served_by(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("host")?.as_str().map(str::to_string)
}
