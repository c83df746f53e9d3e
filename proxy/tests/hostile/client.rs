//! The well-behaved client: GETs at a steady pace, alternately on one keep-alive connection and
//! on a fresh connection each, every one timed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::{millis, stopped, support};

/// How often the well-behaved client starts a request (alternately on its keep-alive connection
/// and on a fresh one).
const WELL_BEHAVED_PACE: Duration = Duration::from_millis(25);
/// A well-behaved request without an answer by then counts as failed.
const WELL_BEHAVED_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reuse {
    KeepAlive,
    Fresh,
}

pub struct Sample {
    pub reuse: Reuse,
    /// The status, or why there was none.
    outcome: Result<u16, String>,
    latency: Duration,
}

/// GETs `/version` every `WELL_BEHAVED_PACE`, alternately on one keep-alive connection and on a
/// fresh connection, until `stop`; a request in flight at the stop is finished.
pub async fn well_behaved_client(port: u16, mut stop: watch::Receiver<bool>) -> Vec<Sample> {
    let keep_alive = support::client();
    let mut pace = tokio::time::interval(WELL_BEHAVED_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    for count in 0usize.. {
        tokio::select! {
            _ = pace.tick() => {}
            () = stopped(&mut stop) => break,
        }
        let reuse = if count % 2 == 0 {
            Reuse::KeepAlive
        } else {
            Reuse::Fresh
        };
        let started = Instant::now();
        let request = async {
            match reuse {
                Reuse::KeepAlive => get_kept_alive(&keep_alive, port).await,
                Reuse::Fresh => get_on_fresh_connection(port).await,
            }
        };
        let outcome = tokio::time::timeout(WELL_BEHAVED_REQUEST_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {WELL_BEHAVED_REQUEST_TIMEOUT:?}")));
        samples.push(Sample {
            reuse,
            outcome,
            latency: started.elapsed(),
        });
    }
    samples
}

fn version_request(port: u16) -> Request<Full<Bytes>> {
    Request::get(format!("http://127.0.0.1:{port}/version"))
        .header("host", format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

async fn get_kept_alive(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    port: u16,
) -> Result<u16, String> {
    let response = client
        .request(version_request(port))
        .await
        .map_err(|error| format!("keep-alive: {error:?}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("keep-alive body: {error}"))?;
    Ok(status)
}

async fn get_on_fresh_connection(port: u16) -> Result<u16, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("fresh connect: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("fresh handshake: {error}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(version_request(port))
        .await
        .map_err(|error| format!("fresh: {error}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("fresh body: {error}"))?;
    Ok(status)
}

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Every request that did not get a 200, described.
    pub failures: Vec<String>,
}

impl Latency {
    pub fn of(samples: &[Sample]) -> Self {
        let mut latencies: Vec<Duration> = samples.iter().map(|sample| sample.latency).collect();
        latencies.sort();
        let percentile = |fraction: f64| {
            let index = ((latencies.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
            latencies.get(index).copied().unwrap_or_default()
        };
        let failures = samples
            .iter()
            .filter(|sample| sample.outcome != Ok(200))
            .map(|sample| {
                format!(
                    "{:?} after {:.1} ms: {:?}",
                    sample.reuse,
                    millis(sample.latency),
                    sample.outcome
                )
            })
            .collect();
        Self {
            p50: percentile(0.50),
            p99: percentile(0.99),
            max: latencies.last().copied().unwrap_or_default(),
            failures,
        }
    }
}
