//! Self-service flows: the plumbing every flow shares, and one file per flow kind.
//!
//! Here: the request guard (API flows refuse browsers, browser flows need the anti-CSRF
//! token), loading a flow for reading or for a submit (expiry, and the replacement flow a
//! late submit gets), `return_to` checks, the browser init URL, the stored errors a browser is
//! sent to, and what a failed submit returns. Each flow kind is a file (`login.rs`,
//! `registration.rs` (with `registration_code.rs`, and `clerk_sign_up.rs` for Clerk's sign-ups on its code path), `settings.rs`, `recovery.rs`, `verification.rs`, with `address.rs` for
//! what the last two share, and `second_step.rs` for the second step of a sign-in) plus one arm in [`Core::replacement_flow`].

mod address;
mod clerk_account;
mod clerk_factors;
mod clerk_reset_password;
mod clerk_sign_in;
mod clerk_sign_up;
mod form;
mod login;
mod login_code;
mod recovery;
mod registration;
mod registration_code;
mod second_step;
mod settings;
mod verification;
pub mod web_hook;

pub use address::{AddressSubmit, AddressSubmitMethod};
pub use clerk_account::{AccountChange, NewAddress};
pub use clerk_factors::TotpVerified;
pub use clerk_reset_password::PendingReset;
pub use clerk_sign_in::{FirstFactor, FirstPassed, SecondFactor, SignedIn};
pub use clerk_sign_up::{ClerkSignUp, FieldProblem, SignUpStep};
pub use login::{LoginMethod, LoginSubmit};
pub use recovery::{parse_expires_in, AdminRecovery, Recovered, RecoveryOutcome};
pub use registration::{RegistrationMethod, RegistrationSubmit};
pub(crate) use second_step::code_addresses;
pub use settings::{SettingsMethod, SettingsSubmit};
pub use verification::StartedVerification;

pub use crate::error::{SubmitError, SubmitResult};

use crate::error::{Error, Result};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::{Identity, View};
use crate::service::{urlencode, Caller, Core};
use crate::session::Session;
use crate::ui::{msg, UiNode};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

impl Core {
    /// API flows refuse browser requests; browser flows need the anti-CSRF token (body field
    /// `csrf_token` or header `X-CSRF-Token`) to match the browser's CSRF cookie.
    fn guard_request(&self, flow: &Flow, caller: &Caller, csrf_token: Option<&str>) -> Result<()> {
        match flow.flow_type {
            FlowType::Api if caller.has_origin || caller.has_cookies => Err(Error::bad_request(
                "The request carries an Origin header or cookies, which is not allowed for API flows. Use a browser flow instead.",
            )),
            FlowType::Api => Ok(()),
            FlowType::Browser => {
                let submitted = csrf_token
                    .filter(|t| !t.is_empty())
                    .or(caller.csrf_header.as_deref());
                match (&caller.csrf_secret, submitted) {
                    (None, _) => Err(csrf_violation("The anti-CSRF cookie was not sent with the request.")),
                    (Some(_), None) => Err(csrf_violation("The anti-CSRF token was not sent in the csrf_token field or the X-CSRF-Token header.")),
                    (Some(s), Some(t)) if crate::csrf::verify(s, t) => {
                        // The flow must have been issued to this same secret, too.
                        self.check_flow_cookie(flow, caller)
                    }
                    _ => Err(csrf_violation("The anti-CSRF token does not match the anti-CSRF cookie.")),
                }
            }
        }
    }

    /// The anti-CSRF secret a browser signed in with `session` must hold (see [`crate::csrf`]):
    /// derived with the first cookie key (`secrets.cookie`, else `secrets.default`).
    pub fn session_csrf_secret(&self, session: &Session) -> String {
        let key = self.cookie_keys().next().unwrap_or_default();
        crate::csrf::session_secret(key, &session.token_hash)
    }

    /// The browser's anti-CSRF secret among the values of its CSRF cookies. Signed in, only
    /// the value bound to its session counts (under any configured cookie key, so keys can
    /// rotate), wherever it sits among the cookies: a planted cookie neither matches nor
    /// shadows it. Signed out, the first well-formed value.
    pub fn browser_csrf_secret<'a>(
        &self,
        session: Option<&Session>,
        cookies: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let mut cookies = cookies.into_iter().filter(|c| crate::csrf::is_secret(c));
        let Some(session) = session else {
            return cookies.next().map(str::to_string);
        };
        let bound: Vec<String> = self
            .cookie_keys()
            .map(|k| crate::csrf::session_secret(k, &session.token_hash))
            .collect();
        cookies
            .find(|c| bound.iter().any(|b| crate::csrf::same_secret(b, c)))
            .map(str::to_string)
    }

    /// A secret for a browser that has none (the response sets it as the cookie): bound to
    /// its session when it has one, random otherwise.
    pub fn new_csrf_secret(&self, session: Option<&Session>) -> String {
        match session {
            Some(s) => self.session_csrf_secret(s),
            None => crate::csrf::new_secret(),
        }
    }

    /// The keys CSRF secrets are derived with, newest first; without any configured secret
    /// (dev mode) one empty key, so secrets still differ per session.
    fn cookie_keys(&self) -> impl Iterator<Item = &[u8]> {
        let s = &self.config.secrets;
        let configured = s
            .cookie
            .iter()
            .chain(&s.default)
            .map(|k| k.expose().as_bytes());
        let none = (s.cookie.is_empty() && s.default.is_empty()).then_some(&b""[..]);
        configured.chain(none)
    }

    /// Gives a new browser flow its anti-CSRF token: stored on the flow and rendered as the
    /// hidden `csrf_token` node, first in the form.
    fn attach_csrf(&self, flow: &mut Flow, caller: &Caller) {
        if flow.flow_type != FlowType::Browser {
            return;
        }
        let Some(token) = caller.csrf_secret.as_deref().and_then(crate::csrf::mask) else {
            return;
        };
        let mut node = UiNode::input("default", "csrf_token", "hidden", None)
            .with_attr("required", json!(true));
        node.set_value(json!(token));
        flow.ui.nodes.retain(|n| n.name() != "csrf_token");
        flow.ui.nodes.insert(0, node);
        flow.csrf_token = Some(token);
    }

    /// Whether the caller's CSRF cookie is the one a browser flow was issued with.
    pub(crate) fn check_flow_cookie(&self, flow: &Flow, caller: &Caller) -> Result<()> {
        if flow.flow_type != FlowType::Browser {
            return Ok(());
        }
        match (&caller.csrf_secret, &flow.csrf_token) {
            (Some(s), Some(t)) if crate::csrf::verify(s, t) => Ok(()),
            _ => Err(csrf_violation(
                "The anti-CSRF cookie is missing or does not belong to this flow.",
            )),
        }
    }

    async fn stored_flow(&self, kind: FlowKind, id: Uuid) -> Result<Flow> {
        match self.store.get_flow(id).await? {
            Some(f) if f.kind == kind => Ok(f),
            _ => Err(Error::not_found(format!(
                "The {} flow could not be found.",
                kind.as_str()
            ))),
        }
    }

    /// Loads a flow of `kind` for reading: an expired flow is refused (a browser is told where
    /// to start over), and a browser flow needs the CSRF cookie it was issued with.
    pub async fn load_flow(
        &self,
        kind: FlowKind,
        id: Uuid,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let flow = self.stored_flow(kind, id).await?;
        if flow.is_expired(now) {
            // A browser starts over at the flow's init URL, heading where it was.
            let restart_url = (flow.flow_type == FlowType::Browser)
                .then(|| self.browser_flow_url(kind, false, flow.return_to.as_deref()));
            return Err(Error::FlowExpired {
                kind,
                since: now - flow.expires_at,
                expired_at: flow.expires_at,
                replacement: None,
                restart_url,
            });
        }
        self.check_flow_cookie(&flow, caller)?;
        Ok(flow)
    }

    /// A browser flow made without a browser (an admin's recovery code) belongs to the first
    /// browser that opens it: it takes that browser's anti-CSRF secret. A flow that has one
    /// already is left alone (and must be this browser's to be shown).
    pub async fn adopt_flow(&self, kind: FlowKind, id: Uuid, caller: &Caller) -> Result<()> {
        let mut flow = self.stored_flow(kind, id).await?;
        if flow.flow_type == FlowType::Browser && flow.csrf_token.is_none() {
            self.attach_csrf(&mut flow, caller);
            self.store.update_flow(&flow).await?;
        }
        Ok(())
    }

    /// Loads a flow of `kind` for a submit: the request must pass the flow type's guard (CSRF
    /// for browsers) before anything else, and an expired flow is refused with a fresh
    /// replacement flow that tells the user why.
    async fn load_flow_for_submit(
        &self,
        kind: FlowKind,
        id: Uuid,
        caller: &Caller,
        csrf_token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let flow = self.stored_flow(kind, id).await?;
        self.guard_request(&flow, caller, csrf_token)?;
        if !flow.is_expired(now) {
            return Ok(flow);
        }
        Err(self.expired(&flow, caller, now).await)
    }

    /// The error of a submit to an expired flow: it names a replacement flow, which carries
    /// the "expired" message and the return URL.
    pub(crate) async fn expired(&self, flow: &Flow, caller: &Caller, now: OffsetDateTime) -> Error {
        match self.try_expired(flow, caller, now).await {
            Ok(e) | Err(e) => e,
        }
    }

    async fn try_expired(
        &self,
        flow: &Flow,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Error> {
        let kind = flow.kind;
        let since = now - flow.expires_at;
        let mut replacement = self.replacement_flow(flow, caller, now).await?;
        let expired_at = crate::identity::rfc3339(flow.expires_at);
        let minutes = since.whole_nanoseconds() as i64 as f64 / 60e9;
        replacement.ui.messages.push(msg::flow_expired(
            kind.as_str(),
            minutes,
            &expired_at,
            flow.expires_at.unix_timestamp(),
        ));
        replacement.return_to = flow.return_to.clone();
        self.store.update_flow(&replacement).await?;
        Ok(Error::FlowExpired {
            kind,
            since,
            expired_at: flow.expires_at,
            replacement: Some(replacement.id),
            restart_url: None,
        })
    }

    /// A new flow of the same kind and type as `expired`: the one place that starts a flow by
    /// its kind.
    async fn replacement_flow(
        &self,
        expired: &Flow,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Flow> {
        let (flow_type, url) = (expired.flow_type, expired.request_url.clone());
        match expired.kind {
            FlowKind::Login => {
                self.new_login_flow(
                    flow_type,
                    url,
                    false,
                    crate::methods::Aal::Aal1,
                    None,
                    caller,
                    now,
                )
                .await
            }
            FlowKind::Registration => {
                self.new_registration_flow(flow_type, url, caller, now)
                    .await
            }
            FlowKind::Settings => match &caller.session {
                Some((_, i)) => self.new_settings_flow(flow_type, url, i, caller, now).await,
                None => Err(Error::SessionInactive),
            },
            FlowKind::Recovery => self.new_recovery_flow(flow_type, url, caller, now).await,
            FlowKind::Verification => {
                self.new_verification_flow(flow_type, url, caller, now)
                    .await
            }
        }
    }

    /// Saves a flow that now carries messages for the user and returns it as the submit's
    /// error. The values of invalid fields are bounded first (security review F6).
    pub(crate) async fn reject(
        &self,
        flow: &mut Flow,
        identity: Option<&Identity>,
        now: OffsetDateTime,
    ) -> SubmitError {
        flow.updated_at = now;
        flow.ui.bound_invalid_values();
        if let Err(e) = self.store.update_flow(flow).await {
            return e.into();
        }
        invalid(flow.clone(), identity)
    }

    /// A flow as the API shows it, with the identity of a settings flow.
    /// Secrets a settings flow shows (a new TOTP key, backup codes) are filled in here, in
    /// the answer only: the stored flow never holds them in the clear.
    pub fn flow_response(&self, flow: &Flow, identity: Option<&Identity>) -> Value {
        let public = identity.map(|i| i.to_api_json(self.public_url(), View::Public));
        match (identity, &flow.pending) {
            (Some(i), Some(_))
                if flow.kind == FlowKind::Settings && flow.identity_id == Some(i.id) =>
            {
                let mut shown = flow.clone();
                self.show_factor_secrets(&mut shown, i);
                shown.to_api_json(public)
            }
            _ => flow.to_api_json(public),
        }
    }

    /// `return_to` must match `selfservice.allowed_return_urls` or point at our own public URL.
    pub fn validate_return_to(&self, return_to: Option<String>) -> Result<Option<String>> {
        match return_to.filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(r)
                if return_to_allowed(
                    &r,
                    self.public_url(),
                    &self.config.selfservice.allowed_return_urls,
                ) =>
            {
                // Kept as parsed, so what was checked is what redirects (the parser drops
                // tabs and newlines that would otherwise reach a Location header).
                Ok(url::Url::parse(&r).map(|u| u.to_string()).ok())
            }
            Some(url) => Err(Error::ReturnToForbidden { url }),
        }
    }

    async fn remember_return_to(&self, flow: &mut Flow, return_to: Option<String>) -> Result<()> {
        if return_to.is_some() {
            flow.return_to = return_to;
            self.store.update_flow(flow).await?;
        }
        Ok(())
    }

    /// The URL that starts a browser flow of `kind`: `<public>self-service/<kind>/browser`,
    /// with `refresh=true` (re-authentication) and `return_to` when given.
    pub fn browser_flow_url(
        &self,
        kind: FlowKind,
        refresh: bool,
        return_to: Option<&str>,
    ) -> String {
        let mut url = format!(
            "{}self-service/{}/browser",
            self.public_url(),
            kind.as_str()
        );
        let mut sep = '?';
        if refresh {
            url += "?refresh=true";
            sep = '&';
        }
        if let Some(r) = return_to.filter(|r| !r.is_empty()) {
            url += &format!("{sep}return_to={}", urlencode(r));
        }
        url
    }

    /// Keeps an error a browser was redirected away from, for the error page
    /// (`/self-service/errors?id=`), and returns its id. `error` is the face's rendering of
    /// it. Errors live as long as a login flow.
    pub async fn record_flow_error(&self, error: Value, now: OffsetDateTime) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let at = crate::identity::rfc3339(now);
        let body = json!({
            "id": id,
            "error": error,
            "created_at": at,
            "updated_at": at,
        });
        let keep = self.config.selfservice.flows.login.lifespan.0;
        self.store.insert_flow_error(id, &body, now + keep).await?;
        Ok(id)
    }

    /// A kept error by id.
    pub async fn flow_error(&self, id: &str) -> Result<Value> {
        let missing = || Error::not_found("The requested error could not be found.");
        let uuid = Uuid::parse_str(id).map_err(|_| missing())?;
        self.store.get_flow_error(uuid).await?.ok_or_else(missing)
    }
}

fn invalid(flow: Flow, identity: Option<&Identity>) -> SubmitError {
    SubmitError::FlowInvalid {
        flow: Box::new(flow),
        identity: identity.map(|i| Box::new(i.clone())),
    }
}

fn csrf_violation(hint: &'static str) -> Error {
    Error::CsrfViolation { hint: Some(hint) }
}

/// Kratos's return_to rule: same scheme, host (exact, or `*.example.com` for any subdomain) and
/// port as an allowed URL, and a path under the allowed URL's path. Our own public URL is
/// always allowed.
pub fn return_to_allowed(candidate: &str, public_url: &str, allowed: &[String]) -> bool {
    let Ok(c) = url::Url::parse(candidate) else {
        return false;
    };
    let Some(host) = c.host_str() else {
        return false;
    };
    let matches = |pattern: &str| -> bool {
        let Some((scheme, rest)) = pattern.split_once("://") else {
            return false;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (phost, pport) = match authority.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|ch| ch.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (authority, None),
        };
        let port_ok = pport.or_else(|| {
            url::Url::parse(&format!("{scheme}://x"))
                .ok()
                .and_then(|u| u.port_or_known_default())
        }) == c.port_or_known_default();
        let host_ok = match phost.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len()
                    && host
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
            }
            None => host.eq_ignore_ascii_case(phost),
        };
        c.scheme().eq_ignore_ascii_case(scheme) && host_ok && port_ok && c.path().starts_with(path)
    };
    matches(public_url) || allowed.iter().any(|a| matches(a))
}

#[cfg(test)]
mod tests {
    use super::return_to_allowed;

    #[test]
    fn return_to_matches_scheme_host_port_and_path_prefix() {
        let allowed = vec![
            "https://app.example.com/dashboard".to_string(),
            "https://*.example.org".to_string(),
        ];
        let public = "https://id.example.com/";
        assert!(return_to_allowed(
            "https://app.example.com/dashboard/x?y=1",
            public,
            &allowed
        ));
        assert!(return_to_allowed(
            "https://id.example.com/anything",
            public,
            &allowed
        ));
        assert!(return_to_allowed(
            "https://a.b.example.org/",
            public,
            &allowed
        ));
        assert!(!return_to_allowed("https://example.org/", public, &allowed));
        assert!(!return_to_allowed(
            "http://app.example.com/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://app.example.com/other",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://app.example.com:8443/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed(
            "https://evil.com/?https://app.example.com/dashboard",
            public,
            &allowed
        ));
        assert!(!return_to_allowed("javascript:alert(1)", public, &allowed));
    }
}
