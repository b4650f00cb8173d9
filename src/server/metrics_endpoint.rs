//! The metrics listener (`[metrics] listen`): `GET /metrics` answers the Prometheus text
//! of the gate's [`Metrics`], anything else 404. A listener of its own, never the gate's
//! address: the gate's address routes every path to the console or to the gate's pages,
//! and metrics are not one of them.
//!
//! It serves the registry, not a gate: a gate rebuilt from a new configuration counts
//! into the same registry, and this listener goes on serving it. Changing its address
//! takes a restart.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::response::{full, text, Body};

/// The one path served.
pub const PATH: &str = "/metrics";

/// How long a scrape connection may stay open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// Binds the metrics listener the configuration names, if any.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(config: &Config) -> Result<Option<TcpListener>, super::StartError> {
    let Some(m) = &config.metrics else {
        return Ok(None);
    };
    let listener = TcpListener::bind(m.listen)
        .await
        .map_err(|source| super::StartError::Bind {
            addr: m.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(m.listen);
    tracing::info!(%addr, path = PATH, "serving Prometheus metrics");
    Ok(Some(listener))
}

/// Serves `metrics` on `listener` in a task of its own (abort it to stop).
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(serve(listener, metrics))
}

/// Accepts scrapes until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(answer(&metrics, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
}

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Body> {
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = Response::new(full(metrics.render()));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
