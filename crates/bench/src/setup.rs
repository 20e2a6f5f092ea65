//! Everything around the measurements: the processes (the `portcullis` binary and the hello
//! baseline server), the accounts and tokens the scenarios use, and the steps a scenario needs
//! before or after it runs (measuring raw Argon2id, starting a pair of fresh servers with the
//! limits on and off, adding webhook endpoints, switching to PostgreSQL).

use crate::load::Conn;
use crate::report::Delivery;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The password of every benchmark account.
pub const PASSWORD: &str = "benchmark pass phrase";
/// Connections (and accounts, `login{n}@bench.example`) for the Argon2-bound scenarios.
pub const LOGIN_WORKERS: usize = 8;

/// The baseline: the smallest useful handler on the same stack (tokio + hyper + axum).
/// Also the webhook receiver: `POST /hook` counts, `GET /count` tells.
pub async fn hello_server(port: String) -> Result<()> {
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

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process, killed when dropped.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn wait_ready(url: &str) -> Result<()> {
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

/// Whether the server runs its per-IP rate limiter and brute-force throttle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// The default quotas, as in production. The load generator sends each request from
    /// another address of 10.0.0.0/16 (`X-Forwarded-For`, which the server trusts), so the
    /// limiter keeps tens of thousands of addresses but never refuses one: it costs what it
    /// costs a busy server, and no row is throttled.
    On,
    /// `security.rate_limit.enabled` and `security.brute_force.enabled` false: the baseline
    /// of the limiter's cost.
    Off,
}

/// Starts `portcullis serve --dev` on `dsn` with a tokenizer template for the benchmark.
pub fn start_server(bin: &str, dsn: &str, limits: Limits) -> Result<(Proc, String, String)> {
    let (pp, ap) = (free_port()?, free_port()?);
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--dev"])
        .env("PORTCULLIS_DSN", dsn)
        .env("PORTCULLIS_SERVE_PUBLIC_PORT", pp.to_string())
        .env("PORTCULLIS_SERVE_ADMIN_PORT", ap.to_string())
        .env("PORTCULLIS_SERVE_PUBLIC_TRUST_FORWARDED_HEADERS", "true")
        .env("PORTCULLIS_LOG_LEVEL", "warn")
        .env("PORTCULLIS_CLERK_FRONTEND_ENABLED", "true");
    if let Some(issuer) = crate::idp::issuer() {
        cmd.env("PORTCULLIS_SELFSERVICE_METHODS_OIDC_ENABLED", "true")
            .env(
                "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS",
                crate::idp::provider_env(issuer),
            );
    }
    if limits == Limits::Off {
        cmd.env("PORTCULLIS_SECURITY_RATE_LIMIT_ENABLED", "false")
            .env("PORTCULLIS_SECURITY_BRUTE_FORCE_ENABLED", "false");
    }
    let child = cmd
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

pub async fn register(c: &mut Conn, email: &str, password: &str) -> Result<Value> {
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

pub async fn login(c: &mut Conn, email: &str, password: &str) -> Result<Value> {
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

/// A native app's social sign-in of `sub` through the local provider ([`crate::idp`]): an
/// API flow with an exchange code, the submit (422 to the provider), the provider's callback
/// (303 to the app with a code) and the token exchange. The first one of a subject registers it.
pub async fn social_sign_in(c: &mut Conn, sub: &str) -> Result<()> {
    let flow = c
        .json(
            Method::GET,
            "/self-service/login/api?return_session_token_exchange_code=true",
            None,
            &[],
        )
        .await?;
    let (id, init) = (
        flow["id"].as_str().ok_or_else(|| anyhow!("no flow id"))?,
        flow["session_token_exchange_code"]
            .as_str()
            .ok_or_else(|| anyhow!("no exchange code"))?,
    );
    let body = json!({ "method": "oidc", "provider": "bench" });
    let (status, bytes) = c
        .call(
            Method::POST,
            &format!("/self-service/login?flow={id}"),
            Some(&body),
            &[],
        )
        .await?;
    let answer: Value = serde_json::from_slice(&bytes)?;
    let to = answer["redirect_browser_to"].as_str().unwrap_or_default();
    if status != 422 || to.is_empty() {
        return Err(anyhow!("submit: HTTP {status}"));
    }
    // The state and nonce are base64url: no percent-encoding to undo.
    let param = |name: &str| {
        to.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let (state, nonce) = (param("state"), param("nonce"));
    let (status, headers, _) = c
        .call_full(
            Method::GET,
            &format!("/self-service/methods/oidc/callback/bench?code={nonce}.{sub}&state={state}"),
            None,
            &[],
        )
        .await?;
    let back = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let code = back.split_once("code=").map(|(_, c)| c).unwrap_or_default();
    if status != 303 || code.is_empty() {
        return Err(anyhow!("callback: HTTP {status}"));
    }
    c.json(
        Method::GET,
        &format!("/sessions/token-exchange?init_code={init}&return_to_code={code}"),
        None,
        &[],
    )
    .await
    .map(|_| ())
}

/// The authenticator-app code of `secret` (base32) for the period after the current one
/// (accepted within the one-period window, and later than the enrolment's).
fn next_totp_code(secret: &str) -> Result<String> {
    let bytes = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .map_err(|e| anyhow!("TOTP secret: {e:?}"))?;
    let t = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes);
    // The bench compares wall-clock behaviour with the server, which reads the same clock.
    #[allow(clippy::disallowed_methods)]
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(t.generate(u64::try_from(now + 30)?))
}

/// A password login followed by the second step with a TOTP code.
pub async fn login_with_totp(c: &mut Conn, email: &str, secret: &str) -> Result<()> {
    let first = login(c, email, PASSWORD).await?;
    let token = first["session_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no session token"))?
        .to_string();
    let auth = [("x-session-token", token.as_str())];
    let flow = c
        .json(Method::GET, "/self-service/login/api?aal=aal2", None, &auth)
        .await?;
    let id = flow["id"].as_str().ok_or_else(|| anyhow!("no aal2 flow"))?;
    let body = json!({ "method": "totp", "totp_code": next_totp_code(secret)? });
    let done = c
        .json(
            Method::POST,
            &format!("/self-service/login?flow={id}"),
            Some(&body),
            &auth,
        )
        .await?;
    match done["session"]["authenticator_assurance_level"].as_str() {
        Some("aal2") => Ok(()),
        _ => Err(anyhow!("the step-up failed: {done}")),
    }
}

/// Registers `count` accounts and links TOTP to each; (email, base32 secret).
async fn seed_totp_accounts(public: &str, count: usize) -> Result<Vec<(String, String)>> {
    let mut c = Conn::open(public).await?;
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let email = format!("totp{n}@bench.example");
        let reg = register(&mut c, &email, PASSWORD).await?;
        let token = reg["session_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no session token"))?
            .to_string();
        let auth = [("x-session-token", token.as_str())];
        let flow = c
            .json(Method::GET, "/self-service/settings/api", None, &auth)
            .await?;
        let secret = flow["ui"]["nodes"]
            .as_array()
            .and_then(|nodes| {
                nodes
                    .iter()
                    .find(|n| n["attributes"]["id"] == "totp_secret_key")
            })
            .and_then(|n| n["attributes"]["text"]["context"]["secret"].as_str())
            .ok_or_else(|| anyhow!("no TOTP secret on the settings form (is TOTP on?)"))?
            .to_string();
        let id = flow["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no settings flow"))?;
        // The current period's code, so the row's codes (the next period's) are later.
        let bytes = totp_rs::Secret::Encoded(secret.clone())
            .to_bytes()
            .map_err(|e| anyhow!("TOTP secret: {e:?}"))?;
        let t = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes);
        #[allow(clippy::disallowed_methods)]
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp())?;
        let body = json!({ "method": "totp", "totp_code": t.generate(now) });
        let saved = c
            .json(
                Method::POST,
                &format!("/self-service/settings?flow={id}"),
                Some(&body),
                &auth,
            )
            .await?;
        if saved["state"] != "success" {
            return Err(anyhow!("linking TOTP failed: {saved}"));
        }
        out.push((email, secret));
    }
    Ok(out)
}

/// Argon2id hashes per second using every core, at the server's parameters.
pub fn raw_argon2_rate(secs: f64) -> f64 {
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

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Values the scenarios' requests are made of, filled in by the steps that need the server.
#[derive(Default)]
pub struct Fixtures {
    /// A session token of `whoami@bench.example`.
    pub session_token: String,
    /// An access token of `login0@bench.example` (step [`Step::ObtainAccessToken`]).
    pub access_token: String,
    /// A browser login flow and the CSRF cookie it set (step [`Step::StartBrowserFlow`]).
    pub browser_flow: String,
    pub csrf_cookie: String,
    /// Session tokens of `whoami@bench.example` on the pair of servers with the limits on
    /// and off (step [`Step::StartLimitsPair`]).
    pub limits_on_session_token: String,
    pub limits_off_session_token: String,
    /// Accounts with TOTP linked and their secrets (step [`Step::SeedTotpAccounts`]).
    pub totp_accounts: Arc<Vec<(String, String)>>,
    /// A Clerk client cookie (`__client=…`) holding a session of `login0@bench.example`,
    /// that session's id, and the page origin clerk-js sends (step [`Step::ClerkSignIn`]).
    pub clerk_cookie: String,
    pub clerk_session: String,
    pub clerk_origin: String,
}

/// What a scenario needs done just before (or just after) its measurement.
#[derive(Clone, Copy)]
pub enum Step {
    /// Measures raw Argon2id on every core, the baseline of the password scenarios.
    MeasureArgon,
    /// Starts two fresh servers with the same accounts, one with the rate limiter and the
    /// throttle on and one with both off, for the rows that compare them: nothing but the
    /// limits tells them apart (not the history of the main server's database).
    StartLimitsPair,
    /// Stops them again.
    StopLimitsPair,
    ObtainAccessToken,
    /// Signs in through Clerk's Frontend API, as `<SignIn/>` does.
    ClerkSignIn,
    StartBrowserFlow,
    /// Registers enough accounts with TOTP for one step-up row (one per sign-in).
    SeedTotpAccounts,
    /// Adds two webhook endpoints (Clerk format) pointing at the hello server's `/hook`.
    AddWebhookEndpoints,
    /// Waits for the burst's deliveries, then replays them and times the drain.
    DrainWebhooks,
    /// Stops the SQLite server and starts one on a throwaway PostgreSQL cluster.
    SwitchToPostgres,
}

/// Webhook endpoints added before the burst, and the counts to compare after it.
struct Hooks {
    admin: Conn,
    receiver: Conn,
    endpoint_ids: Vec<String>,
    since: String,
    before: u64,
}

/// The running servers and what the steps measured or made.
pub struct Bench {
    pub bin: String,
    /// Where the SQLite files go.
    pub dir: String,
    pub secs: f64,
    pub hello: String,
    pub public: String,
    pub admin: String,
    pub server: Option<Proc>,
    /// The pair of servers with the limits on and off, while the rows that compare them run,
    /// and their public URLs.
    pub limits_pair: Option<(Proc, Proc)>,
    pub limits_on_public: String,
    pub limits_off_public: String,
    pub fixtures: Fixtures,
    pub argon: f64,
    pub delivery: Delivery,
    hooks: Option<Hooks>,
}

impl Bench {
    pub fn new(
        bin: String,
        dir: String,
        secs: f64,
        hello: String,
        server: Proc,
        public: String,
        admin: String,
    ) -> Bench {
        Bench {
            bin,
            dir,
            secs,
            hello,
            public,
            admin,
            server: Some(server),
            limits_pair: None,
            limits_on_public: String::new(),
            limits_off_public: String::new(),
            fixtures: Fixtures::default(),
            argon: 0.0,
            delivery: Delivery::default(),
            hooks: None,
        }
    }

    /// One account per login worker and a session to check.
    pub async fn seed(&mut self) -> Result<()> {
        self.fixtures.session_token = seed_accounts(&self.public).await?;
        Ok(())
    }

    /// Runs `step`; `measured` is the rate of the scenario it follows, if any.
    pub async fn run(&mut self, step: Step, measured: Option<f64>) -> Result<()> {
        match step {
            Step::MeasureArgon => {
                eprintln!("measuring: raw Argon2id rate (m=19MiB, t=2, p=1)");
                let secs = self.secs;
                self.argon = tokio::task::spawn_blocking(move || raw_argon2_rate(secs)).await?;
            }
            Step::StartLimitsPair => {
                let mut started = vec![];
                for (limits, name) in [(Limits::On, "on"), (Limits::Off, "off")] {
                    let dsn = format!("sqlite://{}/limits-{name}.sqlite", self.dir);
                    let (server, public, _) = start_server(&self.bin, &dsn, limits)?;
                    wait_ready(&public).await?;
                    let token = seed_accounts(&public).await?;
                    started.push((server, public, token));
                }
                let (Some((off, off_url, off_token)), Some((on, on_url, on_token))) =
                    (started.pop(), started.pop())
                else {
                    bail!("the pair of servers did not start");
                };
                self.fixtures.limits_on_session_token = on_token;
                self.fixtures.limits_off_session_token = off_token;
                (self.limits_on_public, self.limits_off_public) = (on_url, off_url);
                self.limits_pair = Some((on, off));
            }
            Step::StopLimitsPair => self.limits_pair = None,
            Step::ObtainAccessToken => {
                let mut c = Conn::open(&self.public).await?;
                let pair = c
                    .json(
                        Method::POST,
                        "/api/token/",
                        Some(&json!({ "email": "login0@bench.example", "password": PASSWORD })),
                        &[],
                    )
                    .await?;
                self.fixtures.access_token = pair["access"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no access token"))?
                    .to_string();
            }
            Step::ClerkSignIn => {
                let mut c = Conn::open(&self.public).await?;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("strategy", "password")
                    .append_pair("identifier", "login0@bench.example")
                    .append_pair("password", PASSWORD)
                    .finish();
                let origin = [("origin", self.public.as_str())];
                let (status, headers, body) = c
                    .call_form(Method::POST, "/v1/client/sign_ins", &form, &origin)
                    .await?;
                let body: Value = serde_json::from_slice(&body)?;
                if status != 200 || body["response"]["status"] != "complete" {
                    bail!("Clerk sign-in: HTTP {status}: {body}");
                }
                self.fixtures.clerk_session = body["response"]["created_session_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.fixtures.clerk_cookie = headers
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find(|v| v.starts_with("__client="))
                    .and_then(|v| v.split(';').next())
                    .ok_or_else(|| anyhow!("Clerk sign-in set no __client cookie"))?
                    .to_string();
                self.fixtures.clerk_origin = self.public.clone();
            }
            Step::StartBrowserFlow => {
                let mut c = Conn::open(&self.public).await?;
                let (_, headers, body) = c
                    .call_full(Method::GET, "/self-service/login/browser", None, &[])
                    .await?;
                self.fixtures.browser_flow = serde_json::from_slice::<Value>(&body)?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.fixtures.csrf_cookie = headers
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .unwrap_or_default()
                    .to_string();
            }
            Step::SeedTotpAccounts => {
                // More than the row can use: logins are bounded by raw Argon2id (~110/s here).
                let count = (self.secs * 150.0).ceil() as usize;
                eprintln!("seeding: {count} accounts with TOTP");
                self.fixtures.totp_accounts =
                    Arc::new(seed_totp_accounts(&self.public, count).await?);
            }
            Step::AddWebhookEndpoints => self.add_webhook_endpoints().await?,
            Step::DrainWebhooks => self.drain_webhooks(measured.unwrap_or(0.0)).await?,
            Step::SwitchToPostgres => {
                self.server = None; // stops the SQLite server
                let pg = portcullis_store::testing::fresh_postgres_database().await;
                let (server, public, admin) = start_server(&self.bin, &pg, Limits::On)?;
                wait_ready(&public).await?;
                let mut c = Conn::open(&public).await?;
                register(&mut c, "refresh@bench.example", PASSWORD).await?;
                (self.server, self.public, self.admin) = (Some(server), public, admin);
            }
        }
        Ok(())
    }

    async fn add_webhook_endpoints(&mut self) -> Result<()> {
        let mut admin = Conn::open(&self.admin).await?;
        let mut endpoint_ids = vec![];
        for _ in 0..2 {
            let ep = admin
                .json(
                    Method::POST,
                    "/admin/webhooks",
                    Some(&json!({ "url": format!("{}/hook", self.hello), "format": "clerk" })),
                    &[],
                )
                .await?;
            endpoint_ids.push(ep["id"].as_str().unwrap_or_default().to_string());
        }
        // The server under load runs on the system clock, so its deliveries are stamped with
        // the wall time.
        #[allow(clippy::disallowed_methods)]
        let since = (time::OffsetDateTime::now_utc() - Duration::from_secs(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut receiver = Conn::open(&self.hello).await?;
        let before = delivered(&mut receiver).await?;
        self.hooks = Some(Hooks {
            admin,
            receiver,
            endpoint_ids,
            since,
            before,
        });
        Ok(())
    }

    /// `rate` is the registration rate of the burst.
    async fn drain_webhooks(&mut self, rate: f64) -> Result<()> {
        let Some(mut h) = self.hooks.take() else {
            bail!("no webhook endpoints were added");
        };
        // Each registration emits user.created and session.created, to each of the two endpoints.
        let expected = h.before + (rate * self.secs).round() as u64 * 4;
        let mut arrived = h.before;
        for _ in 0..600 {
            arrived = delivered(&mut h.receiver).await?;
            if arrived >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Throughput: queue every event of the burst again for both endpoints and time the drain.
        let start_count = delivered(&mut h.receiver).await?;
        let mut queued = 0;
        let drain_started = Instant::now();
        for id in &h.endpoint_ids {
            let r = h
                .admin
                .json(
                    Method::POST,
                    &format!("/admin/webhooks/{id}/replay"),
                    Some(&json!({ "since": h.since })),
                    &[],
                )
                .await?;
            queued += r["queued"].as_u64().unwrap_or(0);
        }
        let mut drained = start_count;
        for _ in 0..1200 {
            drained = delivered(&mut h.receiver).await?;
            if drained >= start_count + queued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.delivery.rate = (drained - start_count) as f64 / drain_started.elapsed().as_secs_f64();
        self.delivery.queued = queued;
        self.delivery.arrived = arrived - h.before;
        self.delivery.expected = expected - h.before;
        Ok(())
    }
}

/// Registers `whoami@bench.example` and one account per login worker on the server at
/// `public`; returns whoami's session token.
async fn seed_accounts(public: &str) -> Result<String> {
    let mut c = Conn::open(public).await?;
    let reg = register(&mut c, "whoami@bench.example", PASSWORD).await?;
    let token = reg["session_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no session token"))?
        .to_string();
    for n in 0..LOGIN_WORKERS {
        register(&mut c, &format!("login{n}@bench.example"), PASSWORD).await?;
    }
    Ok(token)
}

/// How many webhook messages the hello server has received.
async fn delivered(receiver: &mut Conn) -> Result<u64> {
    let count = |b: Bytes| {
        String::from_utf8_lossy(&b)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    Ok(count(
        receiver.call(Method::GET, "/count", None, &[]).await?.1,
    ))
}
