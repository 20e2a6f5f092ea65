//! Social sign-in (`oidc`): OpenID Connect providers, exactly as Kratos exposes them.
//!
//! A login or registration submit naming a `provider` starts here: the flow keeps what the
//! round trip needs ([`Started`]: a hash of the state, the PKCE verifier, the nonce, the
//! traits the form carried), and the browser is sent to the provider (303, or 422
//! `browser_location_change_required` for JSON clients). The provider sends it back to
//! `/self-service/methods/oidc/callback/{provider}` ([`Core::oidc_callback`]), which checks
//! the state (sealed, one use, bound to the flow and to the browser's anti-CSRF cookie), trades
//! the code for tokens, checks the ID token and signs in the identity owning
//! `"<provider>:<subject>"` — or registers one from what the provider's Jsonnet mapper makes
//! of the claims, asking for what the identity schema still wants (registration completion).
//!
//! An address the provider vouches for never links accounts by itself: a provider account
//! whose address another identity has is linked only after signing in to that identity
//! (`link.rs`).

mod apple;
mod callback;
pub mod claims;
mod discovery;
pub mod link;
pub mod native;
mod oauth2;
pub mod provider;
mod register;
mod settings;

use crate::config::OidcMethodConfig;
use crate::error::{Error, Result, SubmitError, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::{Credential, Identity};
use crate::methods::Method;
use crate::sealed::{self, Purpose};
use crate::service::{Authenticated, Caller, Core};
use crate::session::hash_token;
use crate::ui::{msg, UiNode, UiText};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use claims::Claims;
use provider::{AuthRequest, Cache, Provider, ProviderError, Tokens};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// `upstream_parameters` a login or registration may pass on to the provider. Not
/// `login_hint`: Kratos stopped forwarding it (it let one client's hint reach another).
const UPSTREAM_ALLOWED: [&str; 4] = ["hd", "prompt", "auth_type", "acr_values"];

/// The configured providers, with their mappers, and what is cached about them.
#[derive(Default)]
pub struct Providers {
    list: Vec<Provider>,
    cache: Cache,
}

impl Providers {
    /// The providers of `selfservice.methods.oidc` (none when it is off), each with its
    /// mapper's source (`file://` or `base64://`), read now so a missing file stops the start.
    /// Their URLs, and every endpoint a discovery document names, must be `https` unless
    /// `allow_http` (dev mode): the client secret and the keys travel there.
    pub fn load(
        cfg: &OidcMethodConfig,
        allow_http: bool,
    ) -> std::result::Result<Providers, String> {
        if !cfg.enabled {
            return Ok(Providers::default());
        }
        let mut list = vec![];
        // The configuration's checks (`config/oidc.rs`) ran: the kinds are supported.
        for (i, p) in cfg.config.providers.iter().enumerate() {
            let at = format!("selfservice.methods.oidc.config.providers[{i}]");
            let mapper = crate::jsonnet::read_source(&p.mapper_url, false)
                .map_err(|e| format!("{at}.mapper_url: {e}"))?;
            for (field, url) in [
                ("issuer_url", &p.issuer_url),
                ("auth_url", &p.auth_url),
                ("token_url", &p.token_url),
            ] {
                if !allow_http && !url.is_empty() && !url.starts_with("https://") {
                    return Err(format!(
                        "{at}.{field}: {url:?} must be an https URL (plain http only in dev mode)"
                    ));
                }
            }
            list.push(Provider {
                config: p.clone(),
                mapper: mapper.into(),
            });
        }
        // Kratos lists the buttons in the order of the provider ids.
        list.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        Ok(Providers {
            list,
            cache: Cache::new(allow_http),
        })
    }

    fn get(&self, id: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.id() == id)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// What a flow keeps while the browser is at the provider; never in API responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub provider: String,
    /// SHA-256 of the `state` sent, hex.
    pub state_hash: String,
    /// The PKCE verifier, when the exchange uses PKCE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    pub nonce: String,
    /// The traits the form carried (registration completion): they win over the mapper's.
    #[serde(default)]
    pub traits: Value,
}

/// A login or registration submit naming a provider.
#[derive(Debug, Clone, Default)]
pub struct OidcSubmit {
    pub provider: String,
    /// `upstream_parameters`, passed on as far as they are allowed.
    pub upstream: Value,
    /// A native app's ID token from the provider's own SDK (Sign in with Google), and the
    /// nonce the app gave that SDK.
    pub id_token: Option<String>,
    pub id_token_nonce: Option<String>,
}

/// What the provider sent back to the callback.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Apple's first authorization: the user's name, as JSON (`apple.rs`).
    pub user: Option<String>,
}

/// Where a callback lands.
pub enum Landed {
    /// Signed in (or registered) by a flow of this kind.
    Authenticated(Box<Authenticated>, FlowKind),
    /// A flow to show: registration completion, or the flow with what went wrong.
    Flow(Box<Flow>),
    /// A native app's sign-in is done: its browser goes to this URL (the app's `return_to`
    /// with the `code` that fetches the session token).
    Native(String),
}

/// A flow made from another during a social sign-in (registration from login, the linking
/// login flow) keeps its native exchange code.
fn carry_exchange(from: &Flow, to: &mut Flow) {
    if let Some(x) = from.pending.as_ref().and_then(|p| p.exchange.clone()) {
        to.pending.get_or_insert_with(Default::default).exchange = Some(x);
    }
}

const STATE_AAD: &str = "oidc-state";
const NO_STATE: &str = "Unable to complete OpenID Connect flow because the OpenID Provider did not return the state query parameter.";
const BAD_STATE: &str =
    "Unable to complete OpenID Connect flow because the state parameter is invalid.";

impl Core {
    fn provider(&self, id: &str) -> Result<&Provider> {
        self.oidc.get(id).ok_or_else(|| {
            Error::not_found(format!(
                "OpenID Connect Provider \"{}\" is unknown or has not been configured",
                crate::ui::echo(id)
            ))
        })
    }

    /// Whether a flow offers social sign-in.
    pub(crate) fn oidc_enabled(&self) -> bool {
        self.config.selfservice.methods.oidc.enabled && !self.oidc.is_empty()
    }

    /// `include_credential=oidc`: the admin API shows the providers' first tokens opened, as
    /// Kratos does (they are sealed at rest, bound to their `<provider>:<subject>`). One that
    /// no configured secret opens any more shows empty.
    pub(crate) fn reveal_upstream_tokens(&self, identity_json: &mut Value) {
        let secrets = self.cipher_secrets();
        let entries = identity_json
            .pointer_mut("/credentials/oidc/config/providers")
            .and_then(Value::as_array_mut);
        for entry in entries.into_iter().flatten() {
            let text = |e: &Value, k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let aad = format!("{}:{}", text(entry, "provider"), text(entry, "subject"));
            for key in [
                "initial_id_token",
                "initial_access_token",
                "initial_refresh_token",
            ] {
                let sealed = text(entry, key);
                if sealed.is_empty() {
                    continue;
                }
                let opened = sealed::open(&secrets, Purpose::UpstreamToken, &sealed, &aad)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                entry[key] = Value::String(opened);
            }
        }
    }

    /// The redirect URI registered at the provider: `<base>/self-service/methods/oidc/callback/<id>`.
    fn redirect_uri(&self, id: &str) -> String {
        let base = &self
            .config
            .selfservice
            .methods
            .oidc
            .config
            .base_redirect_uri;
        let base = if base.is_empty() {
            self.public_url()
        } else {
            base
        };
        format!(
            "{}/self-service/methods/oidc/callback/{id}",
            base.trim_end_matches('/')
        )
    }

    /// One button per provider, in id order: "Sign in with …" (login) or "Sign up with …";
    /// with `only`, just the providers that identity has linked (a re-authentication).
    pub(crate) fn oidc_buttons(&self, kind: FlowKind, only: Option<&Identity>) -> Vec<UiNode> {
        if !self.oidc_enabled() {
            return vec![];
        }
        let linked: Option<Vec<String>> = only.map(|i| {
            i.credentials
                .get("oidc")
                .map(|c| c.identifiers.clone())
                .unwrap_or_default()
        });
        self.oidc
            .list
            .iter()
            .filter(|p| {
                linked.as_ref().is_none_or(|ids| {
                    ids.iter()
                        .any(|i| i.split_once(':').is_some_and(|(id, _)| id == p.id()))
                })
            })
            .map(|p| {
                let (id, verb) = match kind {
                    FlowKind::Registration => (1040002, "Sign up"),
                    _ => (1010002, "Sign in"),
                };
                let label = UiText {
                    context: Some(json!({ "provider": p.label(), "provider_id": p.id() })),
                    ..UiText::info(id, format!("{verb} with {}", p.label()))
                };
                UiNode::input("oidc", "provider", "submit", Some(label))
                    .with_attr("value", json!(p.id()))
            })
            .collect()
    }

    /// The sealed `state`: the flow's id and 16 random bytes, so it names its flow without a
    /// lookup and cannot be made up.
    fn seal_state(&self, flow: Uuid) -> Result<String> {
        let mut plain = flow.as_bytes().to_vec();
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        plain.extend(nonce);
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        let sealed = sealed::seal(&secret, Purpose::OidcState, &plain, STATE_AAD)
            .map_err(|e| Error::Internal(e.to_string()))?;
        // URL-safe, as it travels in a query.
        let raw = STANDARD
            .decode(sealed)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    fn open_state(&self, state: &str) -> Option<Uuid> {
        let raw = URL_SAFE_NO_PAD.decode(state).ok()?;
        let sealed = STANDARD.encode(raw);
        let plain = sealed::open(
            &self.cipher_secrets(),
            Purpose::OidcState,
            &sealed,
            STATE_AAD,
        )
        .ok()?;
        let id: [u8; 16] = plain.get(..16)?.try_into().ok()?;
        Some(Uuid::from_bytes(id))
    }

    /// A login or registration submit naming a provider: with an ID token (a native app's
    /// SDK sign-in; Google and Apple, as in Kratos) it signs in or registers now; otherwise
    /// the browser goes to the provider.
    pub(crate) async fn submit_oidc(
        &self,
        mut flow: Flow,
        submit: OidcSubmit,
        traits: Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Authenticated> {
        let Some(id_token) = submit.id_token.filter(|t| !t.is_empty()) else {
            return Err(self
                .start_oidc(&mut flow, &submit.provider, traits, &submit.upstream, now)
                .await);
        };
        let p = self.provider(&submit.provider)?;
        use crate::config::OidcProviderKind::{Apple, Google};
        if !matches!(p.config.provider, Google | Apple) {
            return Err(Error::bad_request(format!(
                "The provider \"{}\" does not support signing in with an ID token.",
                crate::ui::echo(p.id())
            ))
            .into());
        }
        flow.active = Some(Method::Oidc.as_str().into());
        let up = &*self.upstream;
        let checked = async {
            let d = p.endpoints(&self.oidc.cache, up, now).await?;
            let claims = p
                .verify_id_token(&self.oidc.cache, up, &d, &id_token, None, now)
                .await?;
            // The token must carry the nonce the app chose for this sign-in (stricter than
            // Kratos, which lets Google tokens without one pass, and Apple's from devices
            // without nonce support). It ties the token to the app's sign-in, not to one use:
            // the nonce is readable in the token, so whoever holds a valid token can submit
            // it again until it expires, as with Kratos.
            let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
            let given = submit.id_token_nonce.as_deref().unwrap_or("");
            if nonce.is_empty() || !crate::csrf::same_secret(nonce, given) {
                return Err(ProviderError(
                    "the ID token's nonce is missing or not the one given".into(),
                ));
            }
            let claims = Claims::from_standard(&claims);
            if claims.sub.is_empty() {
                return Err(ProviderError(
                    "the provider did not return a subject".into(),
                ));
            }
            Ok(claims)
        }
        .await;
        let claims = match checked {
            Ok(c) => c,
            Err(ProviderError(why)) => {
                return Err(self.provider_failed(&mut flow, p, &why, now).await)
            }
        };
        let tokens = Tokens {
            id_token,
            ..Tokens::default()
        };
        let landed = match flow.kind {
            FlowKind::Registration => {
                self.social_registration(flow, p, claims, tokens, traits, caller, now)
                    .await?
            }
            _ => {
                self.social_login(flow, p, claims, tokens, caller, now)
                    .await?
            }
        };
        match landed {
            Landed::Authenticated(a, _) => Ok(*a),
            Landed::Flow(flow) => Err(SubmitError::FlowInvalid {
                flow,
                identity: None,
            }),
            Landed::Native(_) => {
                Err(Error::Internal("a native hand-over for an ID token".into()).into())
            }
        }
    }

    /// A submit naming a provider: the flow remembers the round trip, and the browser goes to
    /// the provider (always an error to the submit: [`Error::BrowserLocationChangeRequired`],
    /// or the flow with why not).
    pub(crate) async fn start_oidc(
        &self,
        flow: &mut Flow,
        provider_id: &str,
        traits: Value,
        upstream: &Value,
        now: OffsetDateTime,
    ) -> SubmitError {
        match self
            .try_start_oidc(flow, provider_id, traits, upstream, now)
            .await
        {
            Ok(url) => Error::BrowserLocationChangeRequired {
                redirect_browser_to: url,
            }
            .into(),
            Err(e) => e,
        }
    }

    async fn try_start_oidc(
        &self,
        flow: &mut Flow,
        provider_id: &str,
        traits: Value,
        upstream: &Value,
        now: OffsetDateTime,
    ) -> SubmitResult<String> {
        let p = self.provider(provider_id)?;
        let exchange = flow.pending.as_ref().is_some_and(|p| p.exchange.is_some());
        if flow.flow_type == FlowType::Api && !exchange {
            return Err(Error::bad_request(
                "A native app signs in with a provider on an API flow started with return_session_token_exchange_code=true.",
            )
            .into());
        }
        // A provider's callback in some browser must not confirm an app's account link: on
        // an API flow, only the app's own submit (a password, a code) links.
        let linking = flow.pending.as_ref().is_some_and(|p| p.link.is_some());
        if flow.flow_type == FlowType::Api && linking {
            return Err(Error::bad_request(
                "An account link on an API flow is confirmed with the existing account's own method, not a provider.",
            )
            .into());
        }
        flow.active = Some(Method::Oidc.as_str().into());
        let d = match p.endpoints(&self.oidc.cache, &*self.upstream, now).await {
            Ok(d) => d,
            Err(ProviderError(why)) => return Err(self.provider_failed(flow, p, &why, now).await),
        };
        let state = self.seal_state(flow.id)?;
        let verifier = p.uses_pkce(&d).then(crate::csrf::new_secret);
        let challenge = verifier
            .as_deref()
            .map(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
        let nonce = crate::csrf::new_secret();
        let passed: Vec<(String, String)> = upstream
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| UPSTREAM_ALLOWED.contains(&k.as_str()))
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        let redirect_uri = self.redirect_uri(p.id());
        let url = p
            .authorization_url(
                &d,
                &AuthRequest {
                    redirect_uri: &redirect_uri,
                    state: &state,
                    nonce: &nonce,
                    code_challenge: challenge.as_deref(),
                    refresh: flow.refresh,
                    upstream: &passed,
                },
            )
            .map_err(|e| Error::Internal(e.0))?;
        flow.pending.get_or_insert_with(Default::default).oidc = Some(Started {
            provider: p.id().to_string(),
            state_hash: hash_token(&state),
            verifier,
            nonce,
            traits,
        });
        flow.updated_at = now;
        self.store.update_flow(flow).await?;
        Ok(url)
    }

    /// The flow back with the provider's failure as its message (logged, too).
    async fn provider_failed(
        &self,
        flow: &mut Flow,
        p: &Provider,
        why: &str,
        now: OffsetDateTime,
    ) -> SubmitError {
        tracing::warn!(provider = p.id(), reason = why, "social sign-in failed");
        flow.ui.messages.push(msg::generic(&format!(
            "Signing in with {} did not work: {why}.",
            p.label()
        )));
        self.reject(flow, None, now).await
    }
}

/// The evaluator and upstream a core uses by default: none reach out.
pub(crate) fn defaults() -> (
    Arc<dyn crate::jsonnet::Evaluator>,
    Arc<dyn crate::upstream::Upstream>,
) {
    (
        Arc::new(crate::jsonnet::InThread::default()),
        Arc::new(crate::upstream::Offline),
    )
}
