//! The Portcullis load benchmark.
//!
//! Starts the real `portcullis` binary (release build) on a fresh SQLite file and a trivial
//! "hello" axum server as a second process on the same HTTP stack, then drives both from this
//! process over keep-alive HTTP/1.1 connections. Every figure is printed next to a baseline
//! measured in the same run, because the load generator shares the machine's cores with the
//! servers: absolute numbers mean little, ratios travel.
//!
//! Usage: `portcullis-bench [--bin target/release/portcullis] [--seconds 5] [--connections 64]`
//! (`scripts/bench` builds and runs it).

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    bin: String,
    seconds: u64,
    connections: usize,
}

fn parse_args() -> Result<(Option<String>, Args)> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        bin: "target/release/portcullis".into(),
        seconds: 5,
        connections: 64,
    };
    let mut mode = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => args.bin = it.next().ok_or_else(|| anyhow!("--bin needs a path"))?,
            "--seconds" => {
                args.seconds = it
                    .next()
                    .ok_or_else(|| anyhow!("--seconds needs a number"))?
                    .parse()?
            }
            "--connections" => {
                args.connections = it
                    .next()
                    .ok_or_else(|| anyhow!("--connections needs a number"))?
                    .parse()?
            }
            "hello" => mode = Some(it.next().ok_or_else(|| anyhow!("hello needs a port"))?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok((mode, args))
}

fn main() -> Result<()> {
    let (hello_port, args) = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match hello_port {
        Some(port) => rt.block_on(hello_server(port)),
        None => rt.block_on(run(args)),
    }
}

/// The baseline: the smallest useful handler on the same stack (tokio + hyper + axum).
/// Also the webhook receiver: `POST /hook` counts, `GET /count` tells.
async fn hello_server(port: String) -> Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    let (c1, c2) = (count.clone(), count);
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .route(
            "/hook",
            axum::routing::post(move || {
                c1.fetch_add(1, Ordering::Relaxed);
                async { "ok" }
            }),
        )
        .route(
            "/count",
            axum::routing::get(move || async move { c2.load(Ordering::Relaxed).to_string() }),
        );
    let l = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(l, app).await?;
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(url: &str) -> Result<()> {
    for _ in 0..200 {
        if let Ok(mut c) = Conn::open(url).await {
            if let Ok((200, _)) = c.call(Method::GET, "/health/ready", None, &[]).await {
                return Ok(());
            }
            if let Ok((200, _)) = c.call(Method::GET, "/hello", None, &[]).await {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not become ready")
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(base: &str) -> Result<Conn> {
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

    async fn call(
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
    async fn call_full(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(b)?))
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

    async fn json(
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

/// A call's outcome as a load-loop result: only 200 counts as success.
fn ok_200((status, _): (u16, Bytes)) -> Result<()> {
    if status == 200 {
        Ok(())
    } else {
        Err(anyhow!("{status}"))
    }
}

#[derive(Clone, Copy)]
struct Stats {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Runs `op` on `conns` connections for `secs`, recording each operation's latency.
async fn load<F, Fut>(base: &str, conns: usize, secs: f64, op: F) -> Result<Stats>
where
    F: Fn(Conn, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send,
{
    load_paced(base, conns, secs, None, op).await
}

/// [`load`], with each connection idling for `pace` between operations (outside the timing).
async fn load_paced<F, Fut>(
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

async fn register(c: &mut Conn, email: &str, password: &str) -> Result<Value> {
    let flow = c
        .json(Method::GET, "/self-service/registration/api", None, &[])
        .await?;
    let id = flow["id"].as_str().ok_or_else(|| anyhow!("no flow id"))?;
    let body = json!({ "method": "password", "password": password, "traits": { "email": email } });
    c.json(
        Method::POST,
        &format!("/self-service/registration?flow={id}"),
        Some(&body),
        &[],
    )
    .await
}

async fn login(c: &mut Conn, email: &str, password: &str) -> Result<Value> {
    let flow = c
        .json(Method::GET, "/self-service/login/api", None, &[])
        .await?;
    let id = flow["id"].as_str().ok_or_else(|| anyhow!("no flow id"))?;
    let body = json!({ "method": "password", "identifier": email, "password": password });
    c.json(
        Method::POST,
        &format!("/self-service/login?flow={id}"),
        Some(&body),
        &[],
    )
    .await
}

/// Argon2id hashes per second using every core, at the server's parameters.
fn raw_argon2_rate(secs: f64) -> f64 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
                let a = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").unwrap_or_else(|_| {
                    SaltString::generate(&mut argon2::password_hash::rand_core::OsRng)
                });
                while !stop.load(Ordering::Relaxed) {
                    let _ = a.hash_password(b"benchmark password", &salt);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Row {
    name: String,
    stats: Stats,
    baseline: Option<(String, f64)>,
}

/// Starts `portcullis serve --dev` on `dsn` with a tokenizer template for the benchmark.
fn start_server(bin: &str, dsn: &str) -> Result<(Proc, String, String)> {
    let (pp, ap) = (free_port()?, free_port()?);
    let child = Command::new(bin)
        .args(["serve", "--dev"])
        .env("PORTCULLIS_DSN", dsn)
        .env("PORTCULLIS_SERVE_PUBLIC_PORT", pp.to_string())
        .env("PORTCULLIS_SERVE_ADMIN_PORT", ap.to_string())
        .env("PORTCULLIS_LOG_LEVEL", "warn")
        .env(
            "PORTCULLIS_SESSION_WHOAMI_TOKENIZER_TEMPLATES",
            r#"{"bench":{"ttl":"5m","claims":{"email":"identity.traits.email"}}}"#,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!("cannot start {bin} (build it with `cargo build --release -p portcullis`)")
        })?;
    Ok((
        Proc(child),
        format!("http://127.0.0.1:{pp}"),
        format!("http://127.0.0.1:{ap}"),
    ))
}

/// Refreshes with rotation on `conns` connections, each keeping its own token family.
async fn refresh_load(
    public: &str,
    conns: usize,
    secs: f64,
    email: &str,
    password: &str,
) -> Result<Stats> {
    let mut c = Conn::open(public).await?;
    let mut tokens = vec![];
    for _ in 0..conns {
        let pair = c
            .json(
                Method::POST,
                "/api/token/",
                Some(&json!({ "email": email, "password": password })),
                &[],
            )
            .await?;
        let r = pair["refresh"]
            .as_str()
            .ok_or_else(|| anyhow!("no refresh token"))?
            .to_string();
        tokens.push(tokio::sync::Mutex::new(r));
    }
    let tokens = Arc::new(tokens);
    load(public, conns, secs, move |mut c, n| {
        let tokens = tokens.clone();
        async move {
            let slot = &tokens[(n / 1_000_000) as usize];
            let mut current = slot.lock().await;
            let r = c
                .json(
                    Method::POST,
                    "/api/token/refresh/",
                    Some(&json!({ "refresh": *current })),
                    &[],
                )
                .await
                .and_then(|v| {
                    v["refresh"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("no rotated token"))
                });
            let r = r.map(|new| *current = new);
            (c, r)
        }
    })
    .await
}

async fn run(args: Args) -> Result<()> {
    let secs = args.seconds as f64;
    let me = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let hello_port = free_port()?;
    let _hello = Proc(
        Command::new(&me)
            .args(["hello", &hello_port.to_string()])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let hello = format!("http://127.0.0.1:{hello_port}");

    let spawn_at = Instant::now();
    let (server, public, admin) = start_server(
        &args.bin,
        &format!("sqlite://{}/bench.sqlite", dir.display()),
    )?;
    wait_ready(&public).await?;
    let ready_ms = spawn_at.elapsed().as_secs_f64() * 1000.0;
    wait_ready(&hello).await?;
    let idle_rss = rss_kib(server.0.id());

    // Fixtures: one account per login worker and a session to check.
    let password = "benchmark pass phrase";
    let mut c = Conn::open(&public).await?;
    let reg = register(&mut c, "whoami@bench.example", password).await?;
    let token = reg["session_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no session token"))?
        .to_string();
    let login_workers = 8usize;
    for n in 0..login_workers {
        register(&mut c, &format!("login{n}@bench.example"), password).await?;
    }

    let mut rows = vec![];
    eprintln!(
        "measuring: hello baseline ({secs}s, {} connections)",
        args.connections
    );
    let hello_stats = load(&hello, args.connections, secs, |mut c, _| async move {
        let r = c
            .call(Method::GET, "/hello", None, &[])
            .await
            .and_then(ok_200);
        (c, r)
    })
    .await?;
    rows.push(Row {
        name: "hello (baseline, same HTTP stack)".into(),
        stats: hello_stats,
        baseline: None,
    });

    eprintln!("measuring: /sessions/whoami");
    let t = token.clone();
    let whoami = load(&public, args.connections, secs, move |mut c, _| {
        let t = t.clone();
        async move {
            let r = c
                .call(
                    Method::GET,
                    "/sessions/whoami",
                    None,
                    &[("x-session-token", &t)],
                )
                .await
                .and_then(ok_200);
            (c, r)
        }
    })
    .await?;
    rows.push(Row {
        name: format!("GET /sessions/whoami ({} conns)", args.connections),
        stats: whoami,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });

    eprintln!("measuring: raw Argon2id rate (m=19MiB, t=2, p=1)");
    let argon = tokio::task::spawn_blocking(move || raw_argon2_rate(secs)).await?;

    eprintln!("measuring: password logins");
    let logins = load(&public, login_workers, secs, move |mut c, n| async move {
        let email = format!("login{}@bench.example", n / 1_000_000);
        let r = login(&mut c, &email, password).await.map(|_| ());
        (c, r)
    })
    .await?;
    rows.push(Row {
        name: format!("password login ({login_workers} conns)"),
        stats: logins,
        baseline: Some(("raw Argon2id/s".into(), argon)),
    });

    eprintln!("measuring: whoami during a login flood");
    let p2 = public.clone();
    let flood = tokio::spawn(async move {
        load(&p2, login_workers, secs, move |mut c, n| async move {
            let email = format!("login{}@bench.example", n / 1_000_000);
            let r = login(&mut c, &email, password).await.map(|_| ());
            (c, r)
        })
        .await
    });
    let t = token.clone();
    let during = load_paced(
        &public,
        4,
        secs,
        Some(Duration::from_millis(5)),
        move |mut c, _| {
            let t = t.clone();
            async move {
                let r = c
                    .call(
                        Method::GET,
                        "/sessions/whoami",
                        None,
                        &[("x-session-token", &t)],
                    )
                    .await
                    .and_then(ok_200);
                (c, r)
            }
        },
    )
    .await?;
    let flood_stats = flood.await??;
    rows.push(Row {
        name: "whoami during login flood (4 conns, paced)".into(),
        stats: during,
        baseline: None,
    });
    rows.push(Row {
        name: format!("  the flood: logins ({login_workers} conns)"),
        stats: flood_stats,
        baseline: Some(("raw Argon2id/s".into(), argon)),
    });

    eprintln!("measuring: token refresh with rotation (SQLite)");
    let conns = 16;
    let refresh_sqlite =
        refresh_load(&public, conns, secs, "login0@bench.example", password).await?;
    rows.push(Row {
        name: format!("token refresh + rotation, SQLite ({conns} conns)"),
        stats: refresh_sqlite,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });

    eprintln!("measuring: token verify");
    let pair = c
        .json(
            Method::POST,
            "/api/token/",
            Some(&json!({ "email": "login0@bench.example", "password": password })),
            &[],
        )
        .await?;
    let access = pair["access"]
        .as_str()
        .ok_or_else(|| anyhow!("no access token"))?
        .to_string();
    let verify_body = Arc::new(json!({ "token": access }));
    let verifies = load(&public, args.connections, secs, move |mut c, _| {
        let body = verify_body.clone();
        async move {
            let r = c
                .call(Method::POST, "/api/token/verify/", Some(&body), &[])
                .await
                .and_then(ok_200);
            (c, r)
        }
    })
    .await?;
    rows.push(Row {
        name: format!("POST /api/token/verify/ ({} conns)", args.connections),
        stats: verifies,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });

    eprintln!("measuring: whoami?tokenize_as");
    let t = token.clone();
    let tokenize = load(&public, args.connections, secs, move |mut c, _| {
        let t = t.clone();
        async move {
            let r = c
                .call(
                    Method::GET,
                    "/sessions/whoami?tokenize_as=bench",
                    None,
                    &[("x-session-token", &t)],
                )
                .await
                .and_then(ok_200);
            (c, r)
        }
    })
    .await?;
    rows.push(Row {
        name: format!("whoami?tokenize_as ({} conns)", args.connections),
        stats: tokenize,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });

    eprintln!("measuring: browser flow creation and the hosted login page");
    let mut c = Conn::open(&public).await?;
    let (_, headers, body) = c
        .call_full(Method::GET, "/self-service/login/browser", None, &[])
        .await?;
    let flow_id = serde_json::from_slice::<Value>(&body)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let csrf_cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string();
    let inits = load(
        &public,
        args.connections,
        secs,
        move |mut c, _| async move {
            let r = c
                .call(Method::GET, "/self-service/login/browser", None, &[])
                .await
                .and_then(ok_200);
            (c, r)
        },
    )
    .await?;
    rows.push(Row {
        name: format!(
            "GET /self-service/login/browser, JSON ({} conns)",
            args.connections
        ),
        stats: inits,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });
    let page_path = format!("/ui/login?flow={flow_id}");
    let pages = load(&public, args.connections, secs, move |mut c, _| {
        let (path, cookie) = (page_path.clone(), csrf_cookie.clone());
        async move {
            let r = c
                .call(
                    Method::GET,
                    &path,
                    None,
                    &[("accept", "text/html"), ("cookie", &cookie)],
                )
                .await
                .and_then(|(s, b)| {
                    if s == 200 && b.len() > 1000 {
                        Ok(())
                    } else {
                        Err(anyhow!("{s}"))
                    }
                });
            (c, r)
        }
    })
    .await?;
    rows.push(Row {
        name: format!("hosted login page /ui/login ({} conns)", args.connections),
        stats: pages,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });

    eprintln!("measuring: registrations");
    let regs = load(&public, login_workers, secs, move |mut c, n| async move {
        let r = register(&mut c, &format!("reg{n}@bench.example"), password)
            .await
            .map(|_| ());
        (c, r)
    })
    .await?;
    rows.push(Row {
        name: format!("registration ({login_workers} conns)"),
        stats: regs,
        baseline: Some(("raw Argon2id/s".into(), argon)),
    });

    eprintln!("measuring: registrations with two webhook endpoints, and delivery");
    let mut a = Conn::open(&admin).await?;
    let mut endpoint_ids = vec![];
    for _ in 0..2 {
        let ep = a
            .json(
                Method::POST,
                "/admin/webhooks",
                Some(&json!({ "url": format!("{hello}/hook"), "format": "clerk" })),
                &[],
            )
            .await?;
        endpoint_ids.push(ep["id"].as_str().unwrap_or_default().to_string());
    }
    let since = (time::OffsetDateTime::now_utc() - Duration::from_secs(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut h = Conn::open(&hello).await?;
    let count = |b: Bytes| {
        String::from_utf8_lossy(&b)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let before = count(h.call(Method::GET, "/count", None, &[]).await?.1);
    let burst_started = Instant::now();
    let regs_hooked = load(&public, login_workers, secs, move |mut c, n| async move {
        let r = register(&mut c, &format!("hooked{n}@bench.example"), password)
            .await
            .map(|_| ());
        (c, r)
    })
    .await?;
    rows.push(Row {
        name: format!("registration + 2 webhook endpoints ({login_workers} conns)"),
        stats: regs_hooked,
        baseline: Some(("registration without endpoints".into(), regs.rate)),
    });
    // Each registration emits user.created and session.created, to each of the two endpoints.
    let expected = before + (regs_hooked.rate * secs).round() as u64 * 4;
    let mut delivered = before;
    for _ in 0..600 {
        delivered = count(h.call(Method::GET, "/count", None, &[]).await?.1);
        if delivered >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = burst_started;
    // Throughput: queue every event of the burst again for both endpoints and time the drain.
    let start_count = count(h.call(Method::GET, "/count", None, &[]).await?.1);
    let mut queued = 0;
    let drain_started = Instant::now();
    for id in &endpoint_ids {
        let r = a
            .json(
                Method::POST,
                &format!("/admin/webhooks/{id}/replay"),
                Some(&json!({ "since": since })),
                &[],
            )
            .await?;
        queued += r["queued"].as_u64().unwrap_or(0);
    }
    let mut drained = start_count;
    for _ in 0..1200 {
        drained = count(h.call(Method::GET, "/count", None, &[]).await?.1);
        if drained >= start_count + queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivery_rate = (drained - start_count) as f64 / drain_started.elapsed().as_secs_f64();
    let registration_p50_added = regs_hooked.p50_ms - regs.p50_ms;

    // The same refresh load on PostgreSQL (a throwaway cluster on this machine).
    eprintln!("measuring: token refresh with rotation (PostgreSQL)");
    drop(server);
    let pg = portcullis_store::testing::fresh_postgres_database().await;
    let (pg_server, pg_public, _) = start_server(&args.bin, &pg)?;
    wait_ready(&pg_public).await?;
    let mut c = Conn::open(&pg_public).await?;
    register(&mut c, "refresh@bench.example", password).await?;
    let refresh_pg =
        refresh_load(&pg_public, conns, secs, "refresh@bench.example", password).await?;
    rows.push(Row {
        name: format!("token refresh + rotation, PostgreSQL ({conns} conns)"),
        stats: refresh_pg,
        baseline: Some(("hello".into(), hello_stats.rate)),
    });
    drop(pg_server);

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!();
    println!("Portcullis benchmark — SQLite, {cores} cores shared by servers and load generator, {secs}s per row");
    println!(
        "{:<46} {:>10} {:>9} {:>9} {:>7}  vs baseline",
        "scenario", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(110));
    for r in &rows {
        let vs = match &r.baseline {
            Some((name, base)) if *base > 0.0 => format!(
                "{:.1}% of {name} ({base:.0}/s)",
                100.0 * r.stats.rate / base
            ),
            _ => String::new(),
        };
        println!(
            "{:<46} {:>10.0} {:>9.2} {:>9.2} {:>7}  {vs}",
            r.name, r.stats.rate, r.stats.p50_ms, r.stats.p99_ms, r.stats.errors
        );
    }
    println!(
        "{:<46} {:>10.0}",
        "raw Argon2id hashes/s (all cores)", argon
    );
    println!();
    println!(
        "webhook deliveries: {delivery_rate:.0}/s draining a replayed backlog of {queued} messages to a local receiver (2 endpoints); \
         during the burst {} of {} arrived; registration p50 {registration_p50_added:+.2} ms with two endpoints",
        delivered - before,
        expected - before,
    );
    println!("ready in {ready_ms:.0} ms (process start to /health/ready 200, includes migrations)");
    if let Some(kib) = idle_rss {
        println!("idle RSS {:.1} MiB", kib as f64 / 1024.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
