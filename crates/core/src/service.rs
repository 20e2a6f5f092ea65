//! The hub: [`Core`] and what every use case shares (the clock, the caller, the outcome of a
//! sign-in). The use cases themselves live in rooms of their own, each an `impl Core` block:
//! `sessions`, `credentials`, `selfservice::{login, registration, settings}`, `admin`, `tokens`.
//!
//! `Core`'s dependencies are private, so a face cannot go around a rule by reaching the store
//! or the hasher directly. Every method takes `now` (a [`Clock`] reading taken once per
//! request) so expiry rules are exact in tests.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::flow::FlowType;
use crate::identity::Identity;
use crate::keys::KeyRingCache;
use crate::password::Hasher;
use crate::schema::IdentitySchema;
use crate::session::Session;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    // The one reader of the wall clock (clippy.toml disallows it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What the HTTP layer knows about the caller of a flow endpoint.
#[derive(Debug, Default, Clone)]
pub struct Caller {
    pub session: Option<(Session, Identity)>,
    pub has_cookies: bool,
    pub has_origin: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The anti-CSRF secret of a browser: from its cookie, or freshly issued by a flow init
    /// that will set the cookie.
    pub csrf_secret: Option<String>,
    /// The `X-CSRF-Token` header, an alternative to the `csrf_token` body field.
    pub csrf_header: Option<String>,
    /// The language the caller reads (the UI's choice, else `Accept-Language`): messages
    /// sent for this request are written in it.
    pub locale: crate::courier::Locale,
    /// The request as a flow's web hooks see it (`ctx.request_*`); filled by the faces only
    /// when web hooks are configured.
    pub request: RequestInfo,
}

/// The HTTP request behind a call, for web hooks.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    /// The whole URL, as the public base URL names it.
    pub url: String,
    /// The headers on the allow-list ([`crate::selfservice::web_hook::HEADER_ALLOWLIST`]), by
    /// their canonical names.
    pub headers: Vec<(String, String)>,
    /// The cookies, without the session's and the anti-CSRF one's, which are secrets.
    pub cookies: Vec<(String, String)>,
}

impl Caller {
    /// Where the request came from, for throttling and the audit log.
    pub fn origin(&self) -> crate::audit::Origin {
        crate::audit::Origin {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// The successful outcome of a login or registration.
pub struct Authenticated {
    pub identity: Identity,
    /// The session it began; a registration without the `session` hook signs nobody in.
    pub session: Option<Session>,
    /// Present when a new session was issued.
    pub token: Option<String>,
    pub flow_type: FlowType,
    /// The flow's validated `return_to`, if it had one.
    pub return_to: Option<String>,
    /// Kratos's `continue_with` items besides the redirect (a verification flow to show).
    pub continue_with: Vec<serde_json::Value>,
    /// A browser should go to this page next rather than to its return URL (the
    /// `show_verification_ui` hook).
    pub next_page: Option<String>,
    /// The session lacks the identity's second factor, which whoami will ask for: the
    /// client continues at this login URL (`aal=aal2`). Browsers are sent there, SPAs told
    /// to go (422), native apps start that flow with their new token.
    pub second_factor: Option<String>,
}

pub struct Core {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hasher: Hasher,
    pub(crate) schemas: HashMap<String, IdentitySchema>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keyring: KeyRingCache,
    pub(crate) templates: crate::courier::Templates,
    /// Social sign-in: the configured providers, the client that reaches them, the mappers' engine.
    pub(crate) oidc: crate::methods::oidc::Providers,
    pub(crate) upstream: Arc<dyn crate::upstream::Upstream>,
    pub(crate) jsonnet: Arc<dyn crate::jsonnet::Evaluator>,
    /// The flows' web hooks' bodies (their settings are the configuration's).
    pub(crate) web_hooks: crate::selfservice::web_hook::WebHooks,
    /// Clerk's session-token key, loaded on first use.
    pub(crate) clerk_key: tokio::sync::OnceCell<Arc<crate::clerk_session::ClerkKey>>,
    /// The profile-image uploads being worked on (a few at a time).
    pub(crate) image_work: crate::profile_image::ImageWork,
}

impl Core {
    /// Assembles the core from its dependencies (the composition root is the server's `build`).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        hasher: Hasher,
        schemas: HashMap<String, IdentitySchema>,
        clock: Arc<dyn Clock>,
    ) -> Core {
        let (jsonnet, upstream) = crate::methods::oidc::defaults();
        Core {
            config: Arc::new(config),
            store,
            hasher,
            schemas,
            clock,
            keyring: KeyRingCache::default(),
            templates: crate::courier::Templates::builtin(),
            oidc: Default::default(),
            upstream,
            jsonnet,
            web_hooks: Default::default(),
            clerk_key: Default::default(),
            image_work: Default::default(),
        }
    }

    /// Social sign-in: the providers (see [`crate::methods::oidc::Providers::load`]), the
    /// outbound client that reaches them and the evaluator of their mappers.
    pub fn with_social(
        mut self,
        providers: crate::methods::oidc::Providers,
        upstream: Arc<dyn crate::upstream::Upstream>,
        jsonnet: Arc<dyn crate::jsonnet::Evaluator>,
    ) -> Core {
        self.oidc = providers;
        self.upstream = upstream;
        self.jsonnet = jsonnet;
        self
    }

    /// The flows' web hooks (see [`crate::selfservice::web_hook::WebHooks::load`]); they
    /// send through the upstream of [`Core::with_social`].
    pub fn with_web_hooks(mut self, hooks: crate::selfservice::web_hook::WebHooks) -> Core {
        self.web_hooks = hooks;
        self
    }

    /// Whether a flow has web hooks: the faces then describe the request in
    /// [`Caller::request`].
    pub fn has_web_hooks(&self) -> bool {
        self.web_hooks.configured()
    }

    /// The message templates, when the operator overrides the built-in ones.
    pub fn with_templates(mut self, templates: crate::courier::Templates) -> Core {
        self.templates = templates;
        self
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The configuration, read-only: the faces read their presentation settings from it.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn public_url(&self) -> &str {
        self.config.public_url()
    }

    pub fn schema(&self, id: &str) -> Result<&IdentitySchema> {
        self.schemas.get(id).ok_or_else(|| {
            Error::bad_request(format!("The identity schema {id:?} is not configured."))
        })
    }

    /// Every configured identity schema, by id, in id order.
    pub fn schemas(&self) -> Vec<&IdentitySchema> {
        let mut all: Vec<&IdentitySchema> = self.schemas.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    pub(crate) fn default_schema(&self) -> Result<&IdentitySchema> {
        self.schema(&self.config.identity.default_schema_id)
    }

    /// Readiness: whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// Housekeeping: deletes flows, sessions and refresh tokens that expired before `before`,
    /// and retired keys no token can need; audit records past `security.audit.retention`, and
    /// sent or abandoned courier messages as old (a message is kept as long as the audit
    /// record of what caused it). Returns how many rows went.
    pub async fn delete_expired(&self, before: OffsetDateTime) -> Result<u64> {
        let audit_before = self.now() - self.config.security.audit.retention.0;
        Ok(self.store.delete_expired(before).await?
            + self.store.delete_audit_before(audit_before).await?
            + self.store.delete_messages_before(audit_before).await?)
    }

    /// `GET /admin/audit`: audit records, newest first.
    pub async fn audit_log(
        &self,
        query: &crate::audit::AuditQuery,
    ) -> Result<Vec<crate::audit::AuditRecord>> {
        Ok(self.store.list_audit(query).await?)
    }
}

/// Percent-encodes a query value (`application/x-www-form-urlencoded`), for every URL the
/// core and the faces build.
/// `url` with `key=value` added to its query (percent-encoded).
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", urlencode(value))
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
