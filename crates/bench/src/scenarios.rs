//! The benchmark's scenarios as a table: what each row measures, on how many connections,
//! against which baseline, and the steps it needs around it. `main` runs the table in order;
//! the order matters, because some steps change the server (webhook endpoints, PostgreSQL).

use crate::load::{load, load_paced, Conn, Stats};
use crate::setup::{
    login, login_with_totp, register, social_sign_in, Fixtures, Step, LOGIN_WORKERS, PASSWORD,
};
use anyhow::{anyhow, Result};
use hyper::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Connections of the refresh-rotation scenarios, each with its own token family.
pub const REFRESH_CONNS: usize = 16;

/// Which server a scenario loads.
#[derive(Clone, Copy)]
pub enum Target {
    /// The hello baseline server.
    Hello,
    /// The Portcullis public port (SQLite, or PostgreSQL after [`Step::SwitchToPostgres`]).
    Public,
    /// The pair of fresh servers with the rate limiter and the throttle on, and off
    /// ([`Step::StartLimitsPair`]).
    LimitsOn,
    LimitsOff,
}

/// The figure a row is shown as a ratio of.
#[derive(Clone, Copy)]
pub enum Baseline {
    /// The hello row: what the HTTP stack alone does.
    Hello,
    /// Raw Argon2id hashes per second on every core ([`Step::MeasureArgon`]).
    Argon,
    /// Registration without webhook endpoints.
    Registration,
    /// The same operation on the server with the limits off (a [`Scenario::limits_off`] pair).
    LimitsOff,
}

impl Baseline {
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Hello => "hello",
            Baseline::Argon => "raw Argon2id/s",
            Baseline::Registration => "registration without endpoints",
            Baseline::LimitsOff => "limits off",
        }
    }
}

/// One operation of a load loop.
pub enum Op {
    /// One request; it succeeds on a 200 whose body has at least `min_len` bytes.
    Call {
        method: Method,
        path: String,
        headers: Vec<(&'static str, String)>,
        body: Option<Value>,
        min_len: usize,
    },
    /// A password login of `login{connection}@bench.example`.
    Login,
    /// A registration of `{prefix}{n}@bench.example`.
    Register(&'static str),
    /// A refresh with rotation for `email`; each connection keeps its own token family.
    Refresh(&'static str),
    /// A native app's social sign-in through the local provider (see [`social_sign_in`]),
    /// each connection one provider account.
    Social,
    /// A password login and its TOTP step-up, each on an account of its own from the pool
    /// (a code is accepted once, so an account signs in once per 30 s period).
    LoginTotp(Arc<Vec<(String, String)>>),
}

impl Op {
    fn get(path: &str) -> Op {
        Op::Call {
            method: Method::GET,
            path: path.into(),
            headers: vec![],
            body: None,
            min_len: 0,
        }
    }

    /// Success also needs a body of at least `n` bytes.
    fn min_len(mut self, n: usize) -> Op {
        if let Op::Call { min_len, .. } = &mut self {
            *min_len = n;
        }
        self
    }

    fn method(mut self, m: Method) -> Op {
        if let Op::Call { method, .. } = &mut self {
            *method = m;
        }
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Op {
        if let Op::Call { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }

    async fn once(&self, c: &mut Conn, n: u64) -> Result<()> {
        match self {
            Op::Call {
                method,
                path,
                headers,
                body,
                min_len,
            } => {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (s, b) = c
                    .call(method.clone(), path, body.as_ref(), &headers)
                    .await?;
                if s == 200 && b.len() >= *min_len {
                    Ok(())
                } else {
                    Err(anyhow!("{s}"))
                }
            }
            Op::Login => {
                let email = format!("login{}@bench.example", n / 1_000_000);
                login(c, &email, PASSWORD).await.map(|_| ())
            }
            Op::Register(prefix) => register(c, &format!("{prefix}{n}@bench.example"), PASSWORD)
                .await
                .map(|_| ()),
            Op::Refresh(_) => Err(anyhow!("refresh runs through refresh_load")),
            Op::Social => social_sign_in(c, &format!("social{}", n / 1_000_000)).await,
            Op::LoginTotp(pool) => {
                let (conn, i) = (n / 1_000_000, n % 1_000_000);
                let k = usize::try_from(conn + i * LOGIN_WORKERS as u64).unwrap_or(0);
                let (email, secret) = pool
                    .get(k)
                    .ok_or_else(|| anyhow!("the pool of TOTP accounts ran out"))?;
                login_with_totp(c, email, secret).await
            }
        }
    }

    /// Runs this operation on `conns` connections to `base` for `secs`.
    pub async fn load(
        self,
        base: &str,
        conns: usize,
        secs: f64,
        pace: Option<Duration>,
    ) -> Result<Stats> {
        if let Op::Refresh(email) = self {
            return refresh_load(base, conns, secs, email).await;
        }
        let op = Arc::new(self);
        load_paced(base, conns, secs, pace, move |mut c, n| {
            let op = op.clone();
            async move {
                let r = op.once(&mut c, n).await;
                (c, r)
            }
        })
        .await
    }
}

/// How a row makes its operation from the fixtures, once the steps before it have run.
pub type MakeOp = fn(&Fixtures) -> Op;

/// One row of the table (and the steps around it).
pub struct Scenario {
    pub name: String,
    /// What the progress line on stderr says.
    pub progress: Option<String>,
    pub target: Target,
    pub conns: usize,
    /// Idle time per connection between operations, outside the timing.
    pub pace: Option<Duration>,
    pub before: Option<Step>,
    /// The operation, made from the fixtures once `before` has run.
    pub op: MakeOp,
    pub baseline: Option<Baseline>,
    /// A load that runs at the same time; its row follows this one.
    pub alongside: Option<Box<Scenario>>,
    pub after: Option<Step>,
    /// The key other rows use as a baseline ([`Baseline::Registration`]).
    pub is_registration: bool,
    /// The limiter's cost: a row name and the same operation for the server with the rate
    /// limiter and the throttle off (the row's own `target` is then [`Target::LimitsOn`]).
    /// After an unmeasured warm-up of both, the pair is measured four times, off, on, on, off
    /// (so a drift of the machine falls on both alike), and printed as two rows, each the mean
    /// of its two runs: limits off (against `baseline`), then this row as a share of it.
    pub limits_off: Option<(String, MakeOp)>,
}

impl Scenario {
    fn new(name: impl Into<String>, conns: usize, op: MakeOp) -> Scenario {
        Scenario {
            name: name.into(),
            progress: None,
            target: Target::Public,
            conns,
            pace: None,
            before: None,
            op,
            baseline: None,
            alongside: None,
            after: None,
            is_registration: false,
            limits_off: None,
        }
    }

    fn progress(mut self, line: impl Into<String>) -> Self {
        self.progress = Some(line.into());
        self
    }

    fn vs(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    fn before(mut self, step: Step) -> Self {
        self.before = Some(step);
        self
    }

    fn after(mut self, step: Step) -> Self {
        self.after = Some(step);
        self
    }

    fn against_limits_off(mut self, name: impl Into<String>, op: MakeOp) -> Self {
        self.limits_off = Some((name.into(), op));
        self
    }
}

/// Every row, in the order it is measured and printed. `conns` is `--connections`.
pub fn table(conns: usize, secs: f64) -> Vec<Scenario> {
    let whoami =
        |f: &Fixtures| Op::get("/sessions/whoami").header("x-session-token", &f.session_token);
    let w = LOGIN_WORKERS;
    vec![
        Scenario {
            target: Target::Hello,
            ..Scenario::new("hello (baseline, same HTTP stack)", conns, |_| {
                Op::get("/hello")
            })
            .progress(format!("hello baseline ({secs}s, {conns} connections)"))
        },
        Scenario::new(
            format!("GET /sessions/whoami ({conns} conns)"),
            conns,
            whoami,
        )
        .progress("/sessions/whoami")
        .vs(Baseline::Hello),
        Scenario::new(format!("password login ({w} conns)"), w, |_| Op::Login)
            .before(Step::MeasureArgon)
            .progress("password logins")
            .vs(Baseline::Argon),
        Scenario::new(
            format!("password login + TOTP step-up ({w} conns)"),
            w,
            |f| Op::LoginTotp(f.totp_accounts.clone()),
        )
        .before(Step::SeedTotpAccounts)
        .progress("password logins with a TOTP step-up")
        .vs(Baseline::Argon),
        // The limiter's cost: the per-IP rate limiter and the brute-force throttle on at the
        // default quotas (never tripped, see `Limits::On`) against both off, on a fresh pair.
        Scenario {
            target: Target::LimitsOn,
            ..Scenario::new(format!("  whoami, limits on ({conns} conns)"), conns, |f| {
                Op::get("/sessions/whoami").header("x-session-token", &f.limits_on_session_token)
            })
            .before(Step::StartLimitsPair)
            .progress("whoami, limits on and off")
            .vs(Baseline::Hello)
            .against_limits_off(format!("whoami, limits off ({conns} conns)"), |f| {
                Op::get("/sessions/whoami").header("x-session-token", &f.limits_off_session_token)
            })
        },
        Scenario {
            target: Target::LimitsOn,
            ..Scenario::new(
                format!("  password login, limits on ({w} conns)"),
                w,
                |_| Op::Login,
            )
            .progress("password logins, limits on and off")
            .vs(Baseline::Argon)
            .against_limits_off(format!("password login, limits off ({w} conns)"), |_| {
                Op::Login
            })
            .after(Step::StopLimitsPair)
        },
        Scenario {
            pace: Some(Duration::from_millis(5)),
            alongside: Some(Box::new(
                Scenario::new(format!("  the flood: logins ({w} conns)"), w, |_| Op::Login)
                    .vs(Baseline::Argon),
            )),
            ..Scenario::new("whoami during login flood (4 conns, paced)", 4, whoami)
                .progress("whoami during a login flood")
        },
        Scenario::new(
            format!("token refresh + rotation, SQLite ({REFRESH_CONNS} conns)"),
            REFRESH_CONNS,
            |_| Op::Refresh("login0@bench.example"),
        )
        .progress("token refresh with rotation (SQLite)")
        .vs(Baseline::Hello),
        Scenario::new(
            format!("POST /api/token/verify/ ({conns} conns)"),
            conns,
            |f| Op::Call {
                method: Method::POST,
                path: "/api/token/verify/".into(),
                headers: vec![],
                body: Some(json!({ "token": f.access_token })),
                min_len: 0,
            },
        )
        .progress("token verify")
        .before(Step::ObtainAccessToken)
        .vs(Baseline::Hello),
        Scenario::new(
            format!("Clerk getToken(): POST /v1/client/sessions/{{id}}/tokens ({conns} conns)"),
            conns,
            |f| {
                Op::get(&format!("/v1/client/sessions/{}/tokens", f.clerk_session))
                    .method(Method::POST)
                    .header("cookie", &f.clerk_cookie)
                    .header("origin", &f.clerk_origin)
                    .min_len(500)
            },
        )
        .progress("Clerk session-token refresh through the Frontend API")
        .before(Step::ClerkSignIn)
        .vs(Baseline::Hello),
        Scenario::new(format!("whoami?tokenize_as ({conns} conns)"), conns, |f| {
            Op::get("/sessions/whoami?tokenize_as=bench")
                .header("x-session-token", &f.session_token)
        })
        .progress("whoami?tokenize_as")
        .vs(Baseline::Hello),
        Scenario::new(format!("social sign-in + callback ({w} conns)"), w, |_| {
            Op::Social
        })
        .progress("social sign-ins (flow, submit, the provider's callback, token exchange)")
        .vs(Baseline::Hello),
        Scenario::new(
            format!("GET /self-service/login/browser, JSON ({conns} conns)"),
            conns,
            |_| Op::get("/self-service/login/browser"),
        )
        .progress("browser flow creation and the hosted login page")
        .before(Step::StartBrowserFlow)
        .vs(Baseline::Hello),
        Scenario::new(
            format!("hosted login page /ui/login ({conns} conns)"),
            conns,
            |f| {
                // A real page, not an error: the login form is well over 1000 bytes.
                Op::get(&format!("/ui/login?flow={}", f.browser_flow))
                    .header("accept", "text/html")
                    .header("cookie", &f.csrf_cookie)
                    .min_len(1001)
            },
        )
        .vs(Baseline::Hello),
        Scenario {
            is_registration: true,
            ..Scenario::new(format!("registration ({w} conns)"), w, |_| {
                Op::Register("reg")
            })
            .progress("registrations")
            .vs(Baseline::Argon)
        },
        Scenario {
            after: Some(Step::DrainWebhooks),
            ..Scenario::new(
                format!("registration + 2 webhook endpoints ({w} conns)"),
                w,
                |_| Op::Register("hooked"),
            )
            .progress("registrations with two webhook endpoints, and delivery")
            .before(Step::AddWebhookEndpoints)
            .vs(Baseline::Registration)
        },
        Scenario::new(
            format!("token refresh + rotation, PostgreSQL ({REFRESH_CONNS} conns)"),
            REFRESH_CONNS,
            |_| Op::Refresh("refresh@bench.example"),
        )
        .progress("token refresh with rotation (PostgreSQL)")
        .before(Step::SwitchToPostgres)
        .vs(Baseline::Hello),
    ]
}

/// Refreshes with rotation on `conns` connections, each keeping its own token family.
async fn refresh_load(public: &str, conns: usize, secs: f64, email: &str) -> Result<Stats> {
    let mut c = Conn::open(public).await?;
    let mut tokens = vec![];
    for _ in 0..conns {
        let pair = c
            .json(
                Method::POST,
                "/api/token/",
                Some(&json!({ "email": email, "password": PASSWORD })),
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
