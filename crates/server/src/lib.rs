//! Portcullis HTTP faces: on the public port (4433) the Kratos public API with its browser
//! flows, the hosted UI pages and the simplejwt token face; on the admin port (4434) the Kratos
//! admin API (with the courier's messages), webhook admin, the Clerk Backend API and, in dev
//! mode, the dev mailbox.
//!
//! Handlers are thin: extract, call the core, map the result. Each face maps core errors in
//! one place (`error.rs` and `browser::html_error` for Kratos, `tokens.rs`, `clerk.rs`); every
//! response carries `Cache-Control: no-store` unless its handler chose otherwise.

// `ApiError` wraps the core error; see the note on `result_large_err` in portcullis-core.
#![allow(clippy::result_large_err)]
// Library code does not index or slice where a bad index would panic: `get`, iterators and
// slice patterns say what happens when the data is shorter (tests index freely).
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

mod admin;
mod admin_guard;
mod audit;
mod browser;
mod clerk;
mod clerk_frontend;
mod cookies;
mod courier;
mod error;
mod extract;
mod listen;
mod mailbox;
mod outbound;
mod paging;
mod profile_images;
mod public;
mod ratelimit;
mod recovery;
mod social;
mod tokens;
mod ui;
mod verification;
mod webhooks;
mod workers;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::config::Config;
use portcullis_core::password::Hasher;
use portcullis_core::schema::IdentitySchema;
use portcullis_core::service::{Clock, Core, SystemClock};
use portcullis_core::store::prelude::*;
use portcullis_core::Error;
use portcullis_store::{Backend, SqlStore};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use clerk::create_key as create_clerk_key;
pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub admin_url: String,
    ui: Arc<ui::Ui>,
    /// Per-IP request rates (this instance's share; see `ratelimit.rs`).
    limiter: Arc<ratelimit::IpLimiter>,
}

/// Opens the database, applies migrations and assembles the core.
pub async fn build(config: Config) -> anyhow::Result<AppState> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// [`build`] with a chosen clock (tests move time forward to expire flows and sessions).
pub async fn build_with_clock(
    mut config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let store = SqlStore::connect(&config.dsn).await?;
    store.migrate().await?;
    let mut schemas = HashMap::new();
    if config.identity.schemas.is_empty() {
        let mut s = IdentitySchema::default_schema()?;
        s.id = config.identity.default_schema_id.clone();
        schemas.insert(s.id.clone(), s);
    }
    for r in &config.identity.schemas {
        schemas.insert(r.id.clone(), IdentitySchema::load(&r.id, &r.url)?);
    }
    if !schemas.contains_key(&config.identity.default_schema_id) {
        anyhow::bail!(
            "identity.default_schema_id: {:?} is not among identity.schemas",
            config.identity.default_schema_id
        );
    }
    if config.secrets.default.is_empty() {
        // Dev mode only (the config refuses this otherwise): generate once, keep in the database.
        let fresh: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        config.secrets.default = vec![store
            .get_or_init_kv("secrets.default", &fresh)
            .await?
            .into()];
    }
    let hasher = Hasher::new(&config.hashers)?;
    let admin_url = config.serve.admin.base_url.clone();
    // SQLite has exactly one server process, so an in-process session cache cannot go stale;
    // PostgreSQL deployments run several instances and read sessions from the database.
    let store: Arc<dyn Store> = match store.kind() {
        Backend::Sqlite => Arc::new(store.with_session_cache(100_000)),
        Backend::Postgres => Arc::new(store),
    };
    // The courier's templates and SMTP settings are checked now: a broken override or a bad
    // connection URI stops the start, naming what is wrong.
    let templates = match config.courier.template_override_path.as_str() {
        "" => portcullis_core::courier::Templates::builtin(),
        dir => portcullis_core::courier::Templates::load(std::path::Path::new(dir))
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    workers::courier::Mailer::new(&config.courier, config.public_url())
        .map_err(|e| anyhow::anyhow!(e))?;
    let providers = portcullis_core::methods::oidc::Providers::load(
        &config.selfservice.methods.oidc,
        config.dev,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let web_hooks = portcullis_core::selfservice::web_hook::WebHooks::load(&config)
        .map_err(|e| anyhow::anyhow!(e))?;
    let outbound = outbound::Client::new(config.webhooks.allow_private_networks || config.dev);
    let core = Core::new(config, store, hasher, schemas, clock)
        .with_templates(templates)
        .with_web_hooks(web_hooks)
        .with_social(
            providers,
            Arc::new(outbound),
            Arc::new(portcullis_core::jsonnet::InThread::default()),
        );
    // Signing keys are created on first start, not on the first token request.
    core.ring(core.now())
        .await
        .map_err(|e| anyhow::anyhow!("signing keys: {e}"))?;
    let ui = Arc::new(ui::Ui::new(core.config())?);
    let limiter = Arc::new(ratelimit::IpLimiter::new(
        &core.config().security.rate_limit,
    ));
    let state = AppState {
        core: Arc::new(core),
        admin_url,
        ui,
        limiter,
    };
    webhooks::sync_configured_endpoints(&state)
        .await
        .map_err(|e| anyhow::anyhow!("webhooks.endpoints: {e}"))?;
    Ok(state)
}

fn common(router: Router<AppState>, state: &AppState) -> Router {
    let limit = usize::try_from(state.core.config().serve.max_body_size.0).unwrap_or(usize::MAX);
    router
        .route("/health/alive", get(alive))
        .route("/health/ready", get(ready))
        .route("/version", get(version))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost, so the 408 still gets the default headers. Its body is empty: the core's
        // error envelope has no 408 yet.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            listen::REQUEST_TIMEOUT,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(default_headers))
        .with_state(state.clone())
}

pub fn public_router(state: &AppState) -> Router {
    let pages = ui::router(state.core.config()).layer(axum::middleware::map_response_with_state(
        state.clone(),
        ui::security_headers,
    ));
    let router = common(
        public::router(state.core.config())
            .merge(browser::router())
            .merge(social::router(state.core.config()))
            .merge(clerk_frontend::router(state.core.config()))
            .merge(profile_images::router())
            .merge(recovery::router(state.core.config()))
            .merge(verification::router(state.core.config()))
            .merge(pages)
            .merge(tokens::router(state.core.config())),
        state,
    );
    let router = router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        ratelimit::limit,
    ));
    match cors_layer(&state.core.config().serve.public.cors) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// `serve.public.cors`: SPAs on the listed origins may call the API with credentials. Nothing
/// is allowed unless enabled.
fn cors_layer(c: &portcullis_core::config::CorsConfig) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if !c.enabled {
        return None;
    }
    let origins: Vec<String> = c
        .allowed_origins
        .iter()
        .map(|o| o.to_ascii_lowercase())
        .collect();
    let allow = AllowOrigin::predicate(move |origin, _| {
        let Ok(o) = origin.to_str() else { return false };
        let o = o.to_ascii_lowercase();
        origins.iter().any(|pattern| origin_matches(pattern, &o))
    });
    let parse = |list: &[String]| -> Vec<axum::http::HeaderName> {
        list.iter().filter_map(|h| h.parse().ok()).collect()
    };
    let methods: Vec<axum::http::Method> = c
        .allowed_methods
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(methods)
            .allow_headers(parse(&c.allowed_headers))
            .expose_headers(parse(&c.exposed_headers))
            .allow_credentials(c.allow_credentials)
            .max_age(std::time::Duration::from_secs(c.max_age)),
    )
}

/// Whether `origin` is the public port's own or one its CORS settings list: who may make a
/// browser send a cookie-setting request here.
pub(crate) fn own_or_listed_origin(
    public: &portcullis_core::config::EndpointConfig,
    origin: &str,
) -> bool {
    let own = url::Url::parse(&public.base_url)
        .map(|u| u.origin().ascii_serialization())
        .is_ok_and(|own| own.eq_ignore_ascii_case(origin));
    own || (public.cors.enabled
        && public
            .cors
            .allowed_origins
            .iter()
            .any(|p| origin_matches(&p.to_ascii_lowercase(), &origin.to_ascii_lowercase())))
}

/// `*` matches every origin; `https://*.example.com` any subdomain (not the apex).
pub(crate) fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once("://*.") {
        Some((scheme, suffix)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| {
                host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
            }),
        None => pattern == origin,
    }
}

pub fn admin_router(state: &AppState) -> Router {
    let admin = admin::router()
        .merge(audit::router())
        .merge(webhooks::router())
        .merge(courier::router())
        .merge(mailbox::router(state.core.config().dev))
        .merge(clerk::router(state))
        .merge(clerk::admin_router())
        .merge(recovery::admin_router())
        .route("/admin/health/alive", get(alive))
        .route("/admin/health/ready", get(ready))
        .route("/admin/version", get(version));
    let router = common(admin, state).layer(axum::middleware::from_fn_with_state(
        state.clone(),
        admin_guard::guard,
    ));
    match cors_layer(&state.core.config().serve.admin.cors) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Every response is uncacheable unless its handler chose otherwise (the JWKS and the UI's
/// stylesheets do), and is never content-sniffed. The hosted pages add their own, stricter
/// headers (`ui::security_headers`).
async fn default_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key("cache-control") {
        h.insert(
            "cache-control",
            HeaderValue::from_static("private, no-cache, no-store, must-revalidate"),
        );
    }
    resp
}

async fn alive() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(st): State<AppState>) -> Response {
    match st.core.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "errors": { "database": "the database is not reachable" } })),
            )
                .into_response()
        }
    }
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({ "version": concat!("v", env!("CARGO_PKG_VERSION")) }))
}

async fn not_found() -> ApiError {
    ApiError(Error::not_found(
        "The requested resource could not be found",
    ))
}

async fn method_not_allowed() -> error::EdgeError {
    error::EdgeError::MethodNotAllowed
}

/// Both listeners, bound and serving.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Serves both faces on already-bound listeners until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    workers::spawn(&state, &tx);
    let p = public_router(&state);
    let a = admin_router(&state);
    let mut rx1 = tx.subscribe();
    let mut rx2 = tx.subscribe();
    let handle = tokio::spawn(async move {
        let limits = listen::Limits::default();
        let ps = listen::serve(public, p, limits, async move {
            let _ = rx1.recv().await;
        });
        let as_ = listen::serve(admin, a, limits, async move {
            let _ = rx2.recv().await;
        });
        let stopper = async move {
            shutdown.await;
            let _ = tx.send(());
        };
        let (r1, r2, ()) = tokio::join!(ps, as_, stopper);
        r1?;
        r2?;
        Ok(())
    });
    Ok(Running {
        public_addr,
        admin_addr,
        handle,
    })
}
