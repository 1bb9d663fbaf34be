//! `--metrics-addr`: Prometheus metrics over plain HTTP (`GET /metrics`), as
//! dockerd's `metrics-addr` does. Read-only; bind it to a private address.
//! Connections are admitted within [`LIMITS`] and get a short deadline, so
//! idle clients cannot take the agent's file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Agent;
use crate::admission::{Admission, Limits};

/// Scrapes served at once, overall and per client address.
pub const LIMITS: Limits = Limits {
    total: 64,
    per_peer: 8,
};
/// How long a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves metrics on `addr` as a task of `tasks` until `stop`; requests in
/// flight then finish.
pub async fn serve(
    agent: Arc<Agent>,
    addr: SocketAddr,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let admission = Admission::new(LIMITS);
    let connections = tasks.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = admission.serve(listener, connections, move |stream, _, permit| {
                let agent = agent.clone();
                async move {
                    let _permit = permit;
                    answer(agent, stream).await;
                }
            }) => {}
        }
    });
    Ok(())
}

async fn answer(agent: Arc<Agent>, mut stream: TcpStream) {
    let mut request = [0u8; 2048];
    let Ok(Ok(n)) = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut request)).await else {
        return;
    };
    let line = String::from_utf8_lossy(&request[..n]);
    let (status, body) = if line.starts_with("GET /metrics ") {
        ("200 OK", agent.metrics().await)
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = stream.write_all(response.as_bytes());
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write).await;
}
