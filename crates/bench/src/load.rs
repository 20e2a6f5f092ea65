//! The load generator: keep-alive HTTP/1.1 connections and a timed loop that runs one operation
//! per connection as fast as it can (or paced), collecting each operation's latency.

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests sent so far, for [`client_address`].
static SENT: AtomicU64 = AtomicU64::new(0);

/// The client address the next request claims (`X-Forwarded-For`): one of 10.0.0.0/16 in
/// turn, as if every request came from another of 65,536 users behind a proxy, so per-IP
/// limits at their default quotas run without ever refusing the load generator.
fn client_address() -> String {
    let n = SENT.fetch_add(1, Ordering::Relaxed);
    format!("10.0.{}.{}", (n >> 8) & 0xff, n & 0xff)
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(base: &str) -> Result<Conn> {
        let host = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = tokio::net::TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { send, host })
    }

    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Bytes)> {
        let (status, _, bytes) = self.call_full(method, path, body, headers).await?;
        Ok((status, bytes))
    }

    /// [`Conn::call`] with the response headers.
    pub async fn call_full(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, Bytes)> {
        let body = match body {
            Some(b) => Some(("application/json", Bytes::from(serde_json::to_vec(b)?))),
            None => None,
        };
        self.request(method, path, body, headers).await
    }

    /// A form-encoded call (Clerk's Frontend API takes no JSON), with the response headers.
    pub async fn call_form(
        &mut self,
        method: Method,
        path: &str,
        form: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, Bytes)> {
        let body = (
            "application/x-www-form-urlencoded",
            Bytes::from(form.to_string()),
        );
        self.request(method, path, Some(body), headers).await
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("accept", "application/json")
            .header("x-forwarded-for", client_address());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header("content-type", content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        self.send.ready().await?;
        let resp = self.send.send_request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, headers, bytes))
    }

    /// A call that must succeed (status below 300), its body parsed as JSON.
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let (status, bytes) = self.call(method, path, body, headers).await?;
        if status >= 300 {
            bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

#[derive(Clone, Copy)]
pub struct Stats {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Stats {
    /// Two runs of equal length as one: mean rate and percentiles, errors added.
    pub fn mean(a: Stats, b: Stats) -> Stats {
        Stats {
            rate: (a.rate + b.rate) / 2.0,
            p50_ms: (a.p50_ms + b.p50_ms) / 2.0,
            p99_ms: (a.p99_ms + b.p99_ms) / 2.0,
            errors: a.errors + b.errors,
        }
    }
}

/// Runs `op` on `conns` connections for `secs`, recording each operation's latency.
/// `op` gets the connection and a number that is `connection * 1_000_000 + operation`.
pub async fn load<F, Fut>(base: &str, conns: usize, secs: f64, op: F) -> Result<Stats>
where
    F: Fn(Conn, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send,
{
    load_paced(base, conns, secs, None, op).await
}

/// [`load`], with each connection idling for `pace` between operations (outside the timing).
pub async fn load_paced<F, Fut>(
    base: &str,
    conns: usize,
    secs: f64,
    pace: Option<Duration>,
    op: F,
) -> Result<Stats>
where
    F: Fn(Conn, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for n in 0..conns {
        let c = Conn::open(base).await?;
        let (stop, errors, op) = (stop.clone(), errors.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut conn = c;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (c2, r) = op(conn, n as u64 * 1_000_000 + i).await;
                conn = c2;
                i += 1;
                match r {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u32),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(p) = pace {
                    tokio::time::sleep(p).await;
                }
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(Stats {
        rate: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    })
}
