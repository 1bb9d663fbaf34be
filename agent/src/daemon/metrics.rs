//! `--metrics-addr`: Prometheus metrics over plain HTTP (`GET /metrics`), as
//! dockerd's `metrics-addr` does. Read-only; bind it to a private address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Agent;

/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
    let connections = tasks.clone();
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            connections.spawn(answer(agent.clone(), stream));
        }
    });
    Ok(())
}

async fn answer(agent: Arc<Agent>, mut stream: TcpStream) {
    let mut request = [0u8; 2048];
    let Ok(Ok(n)) = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut request)).await else {
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
    let _ = stream.write_all(response.as_bytes()).await;
}
