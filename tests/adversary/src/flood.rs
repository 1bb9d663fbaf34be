//! Idle connections: opens many TCP connections to one port, sends nothing,
//! and holds them, counting how many the server closed meanwhile. Run it
//! under `prlimit --nofile=...` for counts past the default limit.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub async fn flood(target: SocketAddr, count: usize, hold_secs: u64) -> anyhow::Result<Value> {
    let mut tasks = Vec::with_capacity(count);
    let hold = Duration::from_secs(hold_secs);
    for _ in 0..count {
        tasks.push(tokio::spawn(async move {
            let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target));
            let Ok(Ok(mut stream)) = connect.await else {
                return (false, false);
            };
            // Closed by the server (EOF or reset) within the hold, or not;
            // what it says before closing (an HTTP server's 408) is read
            // and skipped.
            let deadline = tokio::time::Instant::now() + hold;
            let mut buf = [0u8; 512];
            let closed = loop {
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => break true,
                    Ok(Ok(_)) => continue,
                    Err(_) => break false,
                }
            };
            (true, closed)
        }));
    }
    let (mut connected, mut closed) = (0, 0);
    for task in tasks {
        let (c, k) = task.await?;
        connected += usize::from(c);
        closed += usize::from(k);
    }
    Ok(json!({
        "connected": connected,
        "closed_by_server": closed,
        "open_at_end": connected - closed,
    }))
}
