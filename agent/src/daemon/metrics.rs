//! `--metrics-addr`: Prometheus metrics over plain HTTP (`GET /metrics`), as
//! dockerd's `metrics-addr` does, served by hyper/axum like the Engine API.
//! Read-only; bind it to a private address. Connections are admitted within
//! [`LIMITS`]; a client has [`REQUEST_TIMEOUT`] to send its request head
//! (at most [`MAX_REQUEST_BYTES`]) and [`CONNECTION_TIMEOUT`] for the whole
//! exchange (hyper answers a late head 408 and closes), one request per
//! connection, so slow or idle clients cannot hold the agent's file
//! descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
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
/// How long a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection may last, answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request head may take (hyper's smallest buffer); a longer one
/// is answered 431 and closed.
pub const MAX_REQUEST_BYTES: usize = 8192;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Makes the metrics page on each scrape.
pub type Page = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// The metrics routes: `GET /metrics` (and `HEAD`); 405 for another method
/// there, 404 for any other path.
pub fn router(page: Page) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(not_found)
        .with_state(page)
}

async fn scrape(State(page): State<Page>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        page().await,
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "only GET /metrics is served\n").into_response()
}

/// Serves `agent`'s metrics on `addr` as a task of `tasks` until `stop`;
/// requests in flight then finish (within [`CONNECTION_TIMEOUT`]).
pub async fn serve(
    agent: Arc<Agent>,
    addr: SocketAddr,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let page: Page = Arc::new(move || {
        let agent = agent.clone();
        Box::pin(async move { agent.metrics().await })
    });
    serve_on(listener, router(page), tasks, stop);
    Ok(())
}

/// Serves `app` on `listener` within [`LIMITS`] and the timeouts above.
fn serve_on(listener: TcpListener, app: Router, tasks: &TaskTracker, stop: CancellationToken) {
    let admission = Admission::new(LIMITS);
    let connections = tasks.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = admission.serve(listener, connections, move |stream, _, permit| {
                let app = app.clone();
                async move {
                    let _permit = permit;
                    answer(app, stream).await;
                }
            }) => {}
        }
    });
}

/// One connection: one request, answered, then closed.
async fn answer(app: Router, stream: TcpStream) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false);
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("metrics connection: {e}"),
        Err(_) => tracing::debug!("metrics connection closed after {CONNECTION_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    fn fixed_page() -> Page {
        Arc::new(|| Box::pin(async { "shoal_tasks{state=\"running\"} 2\n".to_string() }))
    }

    async fn ask(method: Method, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router(fixed_page()).oneshot(request).await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn get_metrics_answers_the_page_in_prometheus_text() {
        let (status, kind, body) = ask(Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind.as_deref(), Some(CONTENT_TYPE));
        assert_eq!(body, "shoal_tasks{state=\"running\"} 2\n");
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        for path in ["/", "/metrics/x", "/metricsx", "/v1.41/metrics"] {
            let (status, _, body) = ask(Method::GET, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(body.contains("only GET /metrics"), "{body}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let (status, _, body) = ask(method.clone(), "/metrics").await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert!(!body.contains("shoal_tasks"), "{body}");
        }
    }

    /// A server on a loopback port, its address and its stop token.
    async fn server() -> (SocketAddr, CancellationToken, TaskTracker) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        serve_on(listener, router(fixed_page()), &tasks, stop.clone());
        (addr, stop, tasks)
    }

    /// Everything the server sends until it closes, and how long that took
    /// (at most 20 s).
    async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out));
        let _ = read.await.expect("the server did not close the connection");
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn a_scrape_over_tcp_is_answered_and_closed() {
        let (addr, stop, _tasks) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, _) = read_to_close(&mut stream).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(
            text.ends_with("shoal_tasks{state=\"running\"} 2\n"),
            "{text}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_after_the_request_timeout() {
        let (addr, stop, _tasks) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Half a request line, then a byte now and then: slow loris.
        stream.write_all(b"GET /metr").await.unwrap();
        let dribble = async {
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if stream.write_all(b"i").await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), dribble).await;
        let (text, _) = read_to_close(&mut stream).await;
        assert!(!text.contains("shoal_tasks"), "{text}");
        // An idle client is dropped too, within the request timeout.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let (text, took) = read_to_close(&mut idle).await;
        assert!(!text.contains("200 OK"), "{text}");
        assert!(
            took < REQUEST_TIMEOUT + Duration::from_secs(3),
            "an idle client held the connection {took:?}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn an_oversized_request_head_is_refused() {
        let (addr, stop, _tasks) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 4 * MAX_REQUEST_BYTES));
        request.extend(b"\r\n\r\n");
        // The server may close before taking it all.
        let _ = stream.write_all(&request).await;
        let (text, _) = read_to_close(&mut stream).await;
        assert!(!text.contains("shoal_tasks"), "{text}");
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "unexpected answer {text}"
        );
        stop.cancel();
    }
}
