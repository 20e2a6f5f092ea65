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

pub mod claims;
pub mod link;
pub mod native;
pub mod provider;
mod settings;

use crate::config::OidcMethodConfig;
use crate::error::{Error, Result, SubmitError, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::{Credential, Identity};
use crate::methods::Method;
use crate::sealed::{self, Purpose};
use crate::service::{Authenticated, Caller, Core};
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
            let mapper = read_mapper(&p.mapper_url).map_err(|e| format!("{at}.mapper_url: {e}"))?;
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

/// A mapper's source from its `file://` or `base64://` URL.
fn read_mapper(url: &str) -> std::result::Result<String, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    }
    if let Some(b64) = url.strip_prefix("base64://") {
        let bytes = STANDARD
            .decode(b64.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
            .map_err(|e| format!("not base64: {e}"))?;
        return String::from_utf8(bytes).map_err(|_| "not UTF-8".into());
    }
    Err(
        "only file:// and base64:// mappers are supported (fetch http(s) mappers into a file)"
            .into(),
    )
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

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
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
    /// SDK sign-in; Google only, as in Kratos, Apple being unsupported) it signs in or
    /// registers now; otherwise the browser goes to the provider.
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
        if p.config.provider != crate::config::OidcProviderKind::Google {
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
            // Kratos, which lets Google tokens without one pass): a token captured elsewhere
            // then cannot be replayed here by itself.
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
        let verifier = p.uses_pkce(&d).then(|| random_token(32));
        let challenge = verifier
            .as_deref()
            .map(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
        let nonce = random_token(16);
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
            state_hash: sha256_hex(&state),
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

    /// `GET /self-service/methods/oidc/callback/{provider}`: the provider's answer.
    ///
    /// Every check that fails before a flow is known (no state, a state not ours, spent or for
    /// another provider) is an error page; after, the flow shows the reason. Nothing here
    /// issues a session unless the ID token passed every check.
    pub async fn oidc_callback(
        &self,
        provider_id: &str,
        cb: Callback,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let state = cb
            .state
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::bad_request(NO_STATE))?;
        let flow_id = self
            .open_state(&state)
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        let mut flow = self
            .store
            .get_flow(flow_id)
            .await?
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        // Spent (or never started): the state is good for one answer.
        let started = flow
            .pending
            .as_ref()
            .and_then(|p| p.oidc.clone())
            .filter(|s| crate::csrf::same_secret(&s.state_hash, &sha256_hex(&state)))
            .ok_or_else(|| Error::bad_request(BAD_STATE))?;
        if started.provider != provider_id {
            return Err(Error::bad_request(
                "Unable to complete OpenID Connect flow because of a provider mismatch between internal state and URL.",
            )
            .into());
        }
        // The browser that started the flow must be the one coming back (login CSRF).
        self.check_flow_cookie(&flow, caller)?;
        if let Some(p) = flow.pending.as_mut() {
            p.oidc = None;
        }
        flow.ui.reset_messages();
        if flow.is_expired(now) {
            self.store.update_flow(&flow).await?;
            return Err(self.expired(&flow, caller, now).await.into());
        }
        self.store.update_flow(&flow).await?;
        let p = self.provider(provider_id)?;
        if let Some(err) = cb.error.filter(|e| !e.is_empty()) {
            let why = format!(
                "the provider returned error \"{}\": {}",
                crate::ui::echo(&err),
                crate::ui::echo(cb.error_description.as_deref().unwrap_or(""))
            );
            return Err(self.provider_failed(&mut flow, p, &why, now).await);
        }
        let Some(code) = cb.code.filter(|c| !c.is_empty()) else {
            let why = "the provider did not return the code query parameter";
            return Err(self.provider_failed(&mut flow, p, why, now).await);
        };
        if caller.session.is_some() && !flow.refresh && flow.kind != FlowKind::Settings {
            return Err(Error::AlreadySignedIn.into());
        }
        let native = (flow.flow_type == FlowType::Api).then(|| flow.clone());
        let (claims, tokens) = match self.provider_answer(p, &code, &started, &state, now).await {
            Ok(answer) => answer,
            Err(ProviderError(why)) => {
                return Err(self.provider_failed(&mut flow, p, &why, now).await)
            }
        };
        let landed = match flow.kind {
            FlowKind::Login => {
                self.social_login(flow, p, claims, tokens, caller, now)
                    .await?
            }
            FlowKind::Registration => {
                self.social_registration(flow, p, claims, tokens, started.traits, caller, now)
                    .await?
            }
            FlowKind::Settings => {
                let credential = self.oidc_credential(p, &claims, &tokens, now)?;
                self.link_in_settings(flow, p, credential, caller, now)
                    .await?
            }
            _ => return Err(Error::bad_request(BAD_STATE).into()),
        };
        match (landed, native) {
            (Landed::Authenticated(a, _), Some(flow)) => Ok(self.hand_over(&flow, &a, now).await?),
            (landed, _) => Ok(landed),
        }
    }

    /// The code traded for tokens, and the claims they carry.
    async fn provider_answer(
        &self,
        p: &Provider,
        code: &str,
        started: &Started,
        state: &str,
        now: OffsetDateTime,
    ) -> std::result::Result<(Claims, Tokens), ProviderError> {
        let up = &*self.upstream;
        let d = p.endpoints(&self.oidc.cache, up, now).await?;
        let redirect_uri = self.redirect_uri(p.id());
        let tokens = p
            .exchange(
                up,
                &d,
                code,
                &redirect_uri,
                started.verifier.as_deref(),
                state,
            )
            .await?;
        let claims = p
            .claims(&self.oidc.cache, up, &d, &tokens, Some(&started.nonce), now)
            .await?;
        Ok((claims, tokens))
    }

    fn identifier(p: &Provider, claims: &Claims) -> String {
        format!("{}:{}", p.id(), claims.sub)
    }

    /// A login flow's answer: the identity linked to this subject signs in; an unknown
    /// subject registers, in the same request.
    async fn social_login(
        &self,
        flow: Flow,
        p: &Provider,
        claims: Claims,
        tokens: Tokens,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let identifier = Self::identifier(p, &claims);
        let found = self
            .store
            .find_identity_by_identifier("oidc", &identifier)
            .await?;
        match found {
            Some(identity) => self.sign_in_linked(flow, identity, caller, now).await,
            None if flow.refresh => Err(Error::IdentityMismatch.into()),
            None => {
                let mut reg = self
                    .new_registration_flow(flow.flow_type, flow.request_url.clone(), caller, now)
                    .await?;
                reg.return_to = flow.return_to.clone();
                carry_exchange(&flow, &mut reg);
                self.social_registration(reg, p, claims, tokens, json!({}), caller, now)
                    .await
            }
        }
    }

    /// The identity the subject is linked to signs in with `flow` (a login flow).
    async fn sign_in_linked(
        &self,
        mut flow: Flow,
        identity: Identity,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        if flow.refresh && flow.identity_id != Some(identity.id) {
            return Err(Error::IdentityMismatch.into());
        }
        if !identity.is_active() {
            flow.ui.messages.push(msg::identity_disabled());
            return Err(self.reject(&mut flow, None, now).await);
        }
        self.complete_login(flow, identity, Method::Oidc, caller, now)
            .await
            .map(|a| Landed::Authenticated(Box::new(a), FlowKind::Login))
    }

    /// A registration flow's answer: the mapper makes the identity; what the schema still
    /// wants is asked for on the flow (registration completion). A subject that already has
    /// an identity signs in instead.
    #[allow(clippy::too_many_arguments)]
    async fn social_registration(
        &self,
        mut flow: Flow,
        p: &Provider,
        claims: Claims,
        tokens: Tokens,
        form_traits: Value,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let identifier = Self::identifier(p, &claims);
        let found = self
            .store
            .find_identity_by_identifier("oidc", &identifier)
            .await?;
        if let Some(identity) = found {
            let mut login = self
                .new_login_flow(
                    flow.flow_type,
                    flow.request_url.clone(),
                    false,
                    crate::methods::Aal::Aal1,
                    None,
                    caller,
                    now,
                )
                .await?;
            login.return_to = flow.return_to.clone();
            carry_exchange(&flow, &mut login);
            return self.sign_in_linked(login, identity, caller, now).await;
        }
        let mapped = match self.map_claims(p, &claims).await {
            Ok(m) => m,
            Err(why) => return Err(self.provider_failed(&mut flow, p, &why, now).await),
        };
        let schema = self.default_schema()?;
        // The addresses that may lead to a linking prompt: the provider's (the mapper's), not
        // ones typed into the form; with enumeration mitigation only those it vouches for, so
        // nobody learns who has an account by typing addresses.
        let from_provider = schema.derive(&mapped.traits);
        let mitigate = self.config.security.account_enumeration.mitigate;
        let linkable: Vec<String> = from_provider
            .verifiable
            .iter()
            .chain(&from_provider.recovery)
            .map(|(value, _)| value.clone())
            .filter(|v| {
                !mitigate
                    || mapped
                        .verified
                        .iter()
                        .any(|(w, _)| w.eq_ignore_ascii_case(v))
            })
            .collect();
        let mut traits = mapped.traits;
        merge(&mut traits, &form_traits);
        let violations = schema.validate(&traits);
        if !violations.is_empty() {
            self.ask_for_missing_traits(&mut flow, p, &traits, violations);
            flow.updated_at = now;
            self.store.update_flow(&flow).await?;
            return Ok(Landed::Flow(Box::new(flow)));
        }
        let derived = schema.derive(&traits);
        let mut identity = Identity::new(&schema.id, traits, now);
        identity.apply_derived(&derived, now);
        identity.metadata_public = mapped.metadata_public;
        identity.metadata_admin = mapped.metadata_admin;
        for a in &mut identity.verifiable_addresses {
            let vouched = mapped
                .verified
                .iter()
                .any(|(value, via)| *via == a.via && value.eq_ignore_ascii_case(&a.value));
            if vouched {
                a.verified = true;
                a.status = "completed".into();
                a.verified_at = Some(now);
            }
        }
        let credential = self.oidc_credential(p, &claims, &tokens, now)?;
        if let Some((_, duplicate)) = self.duplicate_owner(&linkable).await? {
            return self
                .ask_to_link(&flow, p, &credential, duplicate, caller, now)
                .await;
        }
        identity.credentials.insert("oidc".into(), credential);
        self.finish_registration(flow, identity, Method::Oidc, caller, now)
            .await
            .map(|a| Landed::Authenticated(Box::new(a), FlowKind::Registration))
    }

    /// Registration completion (Kratos's shape): the flow's form becomes the schema's traits,
    /// prefilled from the provider, with the messages of what is missing, and one "Continue"
    /// button that goes through the provider again.
    fn ask_for_missing_traits(
        &self,
        flow: &mut Flow,
        p: &Provider,
        traits: &Value,
        violations: Vec<(Option<String>, UiText)>,
    ) {
        let Ok(schema) = self.default_schema() else {
            return;
        };
        flow.ui.nodes.retain(|n| n.name() == "csrf_token");
        // Group `default`, as Kratos since `feature_flags.legacy_oidc_registration_node_group`
        // (which Portcullis accepts only off).
        for f in &schema.fields {
            flow.ui.nodes.push(f.node("default", f.get(traits)));
        }
        flow.ui.nodes.push(
            UiNode::input(
                "oidc",
                "provider",
                "submit",
                Some(UiText::info(1040003, "Continue")),
            )
            .with_attr("value", json!(p.id())),
        );
        for (node, text) in violations {
            flow.ui.add_message(node.as_deref(), text);
        }
        flow.active = Some(Method::Oidc.as_str().into());
        flow.state = "choose_method".into();
    }

    /// The `oidc` credential: the identifier `"<provider>:<subject>"` and, as Kratos keeps
    /// them, the first tokens, sealed (bound to the identifier).
    fn oidc_credential(
        &self,
        p: &Provider,
        claims: &Claims,
        tokens: &Tokens,
        now: OffsetDateTime,
    ) -> Result<Credential> {
        let identifier = Self::identifier(p, claims);
        let secret = self.cipher_secrets().into_iter().next().unwrap_or_default();
        let seal = |t: &str| -> Result<String> {
            if t.is_empty() {
                return Ok(String::new());
            }
            sealed::seal(&secret, Purpose::UpstreamToken, t.as_bytes(), &identifier)
                .map_err(|e| Error::Internal(e.to_string()))
        };
        Ok(Credential {
            id: Uuid::new_v4(),
            kind: "oidc".into(),
            identifiers: vec![identifier.clone()],
            config: json!({ "providers": [{
                "subject": claims.sub,
                "provider": p.id(),
                "initial_id_token": seal(&tokens.id_token)?,
                "initial_access_token": seal(&tokens.access_token)?,
                "initial_refresh_token": seal(&tokens.refresh_token)?,
            }]}),
            version: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// Runs the provider's mapper on the claims.
    async fn map_claims(
        &self,
        p: &Provider,
        claims: &Claims,
    ) -> std::result::Result<Mapped, String> {
        let out = self
            .jsonnet
            .evaluate(
                p.mapper.clone(),
                &p.config.mapper_url,
                vec![("claims".into(), claims.to_value())],
            )
            .await
            .map_err(|e| format!("its Jsonnet mapper failed ({e})"))?;
        Mapped::read(&out)
    }
}

/// What a mapper returned, checked as Kratos checks it.
struct Mapped {
    traits: Value,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    /// `(value, via)` the provider vouches for.
    verified: Vec<(String, String)>,
}

impl Mapped {
    fn read(out: &Value) -> std::result::Result<Mapped, String> {
        let identity = out.get("identity").cloned().unwrap_or(Value::Null);
        let traits = match identity.get("traits") {
            Some(Value::Object(t)) => Value::Object(t.clone()),
            _ => {
                return Err(
                    "its Jsonnet mapper did not return an object for key identity.traits".into(),
                )
            }
        };
        let object = |key: &str| -> std::result::Result<Option<Value>, String> {
            match identity.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(Value::Object(m.clone()))),
                Some(_) => Err(format!(
                    "its Jsonnet mapper did not return an object for key identity.{key}"
                )),
            }
        };
        let verified = identity
            .get("verified_addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let value = a.get("value")?.as_str()?.trim().to_lowercase();
                let via = a.get("via")?.as_str()?.to_string();
                Some((value, via))
            })
            .collect();
        Ok(Mapped {
            traits,
            metadata_public: object("metadata_public")?,
            metadata_admin: object("metadata_admin")?,
            verified,
        })
    }
}

/// Deep-merges `over` into `base`: objects field by field, anything else replaced (the form's
/// traits win over the mapper's, as in Kratos).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) if !o.is_null() => *b = o.clone(),
        _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_traits_win_over_mapped_ones_field_by_field() {
        let mut base = json!({"email": "a@example.com", "name": {"first": "A", "last": "L"}});
        merge(
            &mut base,
            &json!({"name": {"first": "Ada"}, "nickname": "ada"}),
        );
        assert_eq!(
            base,
            json!({"email": "a@example.com", "name": {"first": "Ada", "last": "L"}, "nickname": "ada"})
        );
    }

    #[test]
    fn a_mapper_result_is_checked_as_kratos_checks_it() {
        let bad = Mapped::read(&json!({"identity": {"traits": "this is not an object"}}));
        assert_eq!(
            bad.err().as_deref(),
            Some("its Jsonnet mapper did not return an object for key identity.traits")
        );
        let bad = Mapped::read(&json!({"identity": {"traits": {}, "metadata_public": [1]}}));
        assert!(bad.is_err());
        let ok = Mapped::read(&json!({"identity": {
            "traits": {"email": "a@example.com"},
            "verified_addresses": [{"value": " A@Example.com ", "via": "email"}],
        }}));
        let ok = ok.ok();
        assert_eq!(
            ok.map(|m| m.verified),
            Some(vec![("a@example.com".to_string(), "email".to_string())])
        );
    }

    #[test]
    fn mappers_are_read_from_files_and_base64() {
        let b64 = STANDARD.encode("{identity: {traits: {}}}");
        assert_eq!(
            read_mapper(&format!("base64://{b64}")).ok().as_deref(),
            Some("{identity: {traits: {}}}")
        );
        assert!(read_mapper("https://example.com/m.jsonnet").is_err());
        assert!(read_mapper("file:///nonexistent/m.jsonnet").is_err());
    }
}
