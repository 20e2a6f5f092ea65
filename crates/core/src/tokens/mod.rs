//! The simplejwt-compatible token face's use cases: obtain a pair, refresh with rotation and
//! reuse detection, verify, blacklist and cookie-mode logout; also access tokens as session
//! credentials on whoami and session tokenization. `jwt.rs` holds the claims and checks,
//! `ring.rs` the signing keys.

mod jwt;
mod ring;

use jwt::unix;

pub use crate::error::TokenError;
pub use crate::keys::{KeyRingCache, Ring};

use crate::audit::{Actor, AuditKind, By, Origin};
use crate::error::{Error, Result};
use crate::identity::View;
use crate::service::{Caller, Core};
use crate::session::{hash_token, Session};
use crate::store::Effects;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// An issued access/refresh pair.
pub struct TokenPair {
    pub access: String,
    pub refresh: Option<String>,
}

fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// What `POST /api/token/` was sent, as the face read it: the identifier from the first
/// non-empty of the configured username field, `email`, `username` and `identifier`.
#[derive(Debug, Clone, Default)]
pub struct ObtainRequest {
    pub identifier: Option<String>,
    pub password: Option<String>,
    /// A code of the account's second factor (a TOTP code or a backup code), needed when it
    /// has one and `session.whoami.required_aal` is `highest_available`.
    pub otp: Option<String>,
}

impl Core {
    /// `POST /api/token/`: identifier + password → access and refresh tokens (and a session).
    pub async fn obtain_tokens(
        &self,
        req: ObtainRequest,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<TokenPair> {
        let t = &self.config.tokens;
        let identifier = req.identifier.filter(|s| !s.is_empty());
        let password = req.password.filter(|s| !s.is_empty());
        let mut missing = vec![];
        if identifier.is_none() {
            missing.push(t.username_field.clone());
        }
        if password.is_none() {
            missing.push("password".to_string());
        }
        let (Some(identifier), Some(password)) = (identifier, password) else {
            return Err(TokenError::Missing(missing).into());
        };
        let (identifier, password) = (identifier.as_str(), password.as_str());
        let hooked = self.flowless_login(caller, now);
        if let Some(flow) = &hooked {
            self.flowless_login_hooks(flow, None, caller).await?;
        }
        let identity = self
            .verify_password_login(identifier, password, None, &caller.origin(), now)
            .await?
            .ok_or(TokenError::BadCredentials)?;
        if !identity.is_active() {
            return Err(TokenError::BadCredentials.into());
        }
        // `require_verified_address` holds here too, refused like a wrong password (this face
        // mails no code, and under enumeration mitigation a fresh sign-up must not be told
        // from a taken address by its tokens).
        let after = self.config.after(crate::flow::FlowKind::Login);
        let needs_verified = after.runs(
            crate::methods::Method::Password.as_str(),
            crate::config::HookName::RequireVerifiedAddress,
            false,
        );
        if needs_verified && !identity.verifiable_addresses.iter().any(|a| a.verified) {
            return Err(TokenError::BadCredentials.into());
        }
        let second = self
            .second_factor_for_tokens(&identity, req.otp.as_deref(), caller, now)
            .await?;
        if let Some(flow) = &hooked {
            self.flowless_login_hooks(flow, Some(&identity), caller)
                .await?;
        }
        let (mut session, _opaque) = self.new_session(
            &identity,
            crate::methods::Method::Password,
            None,
            caller,
            now,
        );
        if let Some(method) = second {
            session.add_method(method, now);
        }
        self.store
            .insert_session(
                &session,
                &Effects::event(crate::webhooks::EventKind::SessionCreated),
            )
            .await?;
        self.issue_pair(identity.id, session.id, now).await
    }

    /// Tokens for a browser's own session, whatever signed it in (a provider, a passkey, a
    /// code): an SPA signed in on the hosted pages calls its API with JWTs without a password
    /// of its own. They are bound to that session, so signing out or revoking it ends their
    /// refresh; a session without the identity's second factor gets none (as a refresh).
    pub async fn session_tokens(
        &self,
        session: &Session,
        identity: &crate::identity::Identity,
        now: OffsetDateTime,
    ) -> Result<TokenPair> {
        if !identity.is_active() || !session.active {
            return Err(TokenError::NoActiveAccount.into());
        }
        if self.session_lacks_second_factor(session, identity) {
            return Err(TokenError::SecondFactorRequired.into());
        }
        self.issue_pair(identity.id, session.id, now).await
    }

    /// A new access token and a new refresh-token family for `session`.
    async fn issue_pair(
        &self,
        identity: Uuid,
        session: Uuid,
        now: OffsetDateTime,
    ) -> Result<TokenPair> {
        let ring = self.ring(now).await?;
        let access = self.access_token(&ring, identity, session, now)?;
        let (refresh, row) = self.refresh_token(&ring, Uuid::new_v4(), identity, session, now)?;
        self.store.insert_refresh_token(&row).await?;
        Ok(TokenPair {
            access,
            refresh: Some(refresh),
        })
    }

    /// The second factor a token request must show: none when the account has none or
    /// enforcement is off (`session.whoami.required_aal: aal1`); otherwise `otp` must be a
    /// current TOTP code (six digits) or an unused backup code.
    async fn second_factor_for_tokens(
        &self,
        identity: &crate::identity::Identity,
        otp: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Option<crate::methods::Method>> {
        use crate::methods::factor::Checked;
        use crate::methods::{Aal, Method};
        let enforced =
            self.config.session.whoami.required_aal == crate::config::RequiredAal::HighestAvailable;
        if !enforced || identity.available_aal() < Aal::Aal2 {
            return Ok(None);
        }
        let Some(otp) = otp.map(str::trim).filter(|o| !o.is_empty()) else {
            return Err(TokenError::SecondFactorRequired.into());
        };
        let origin = caller.origin();
        let totp = otp.len() == crate::methods::totp::DIGITS
            && otp.bytes().all(|b| b.is_ascii_digit())
            && identity.credentials.contains_key(Method::Totp.as_str());
        let (checked, method) = if totp {
            (
                self.check_totp(identity, otp, &origin, now).await?,
                Method::Totp,
            )
        } else {
            (
                self.check_lookup(identity, otp, &origin, now).await?,
                Method::LookupSecret,
            )
        };
        match checked {
            Checked::Accepted(_) => Ok(Some(method)),
            Checked::Refused(_) => Err(TokenError::SecondFactorInvalid.into()),
        }
    }

    /// Whether a session may keep refreshing: under `highest_available`, one that never
    /// showed the second factor its identity now has may not (tokens obtained while the
    /// factor was being linked must not outlive it).
    fn session_lacks_second_factor(&self, s: &Session, i: &crate::identity::Identity) -> bool {
        self.config.session.whoami.required_aal == crate::config::RequiredAal::HighestAvailable
            && s.level() < i.available_aal()
    }

    /// After a rotation: refuses (and revokes the new token's family) when the session lacks
    /// the identity's second factor. One read of the session per successful refresh; a
    /// revoked or reused token never gets here and keeps its own answer.
    async fn refresh_needs_no_second_factor(&self, session_id: Uuid, new_hash: &str) -> Result<()> {
        match self.store.get_session(session_id).await? {
            Some((s, i)) if self.session_lacks_second_factor(&s, &i) => {
                if let Some(row) = self.store.get_refresh_token(new_hash).await? {
                    self.store
                        .revoke_refresh_family(row.family_id, &Effects::none())
                        .await?;
                }
                Err(TokenError::SecondFactorRequired.into())
            }
            _ => Ok(()),
        }
    }

    /// `POST /api/token/refresh/`: a new access token, and with rotation a new refresh token.
    /// Reusing a rotated token revokes its whole family (and the session behind it).
    pub async fn refresh_tokens(&self, refresh: &str, now: OffsetDateTime) -> Result<TokenPair> {
        let claims = self.verify_jwt(refresh, Some("refresh"), now).await?;
        let uuid_claim = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        };
        let (Some(identity_id), Some(session_id)) = (uuid_claim("sub"), uuid_claim("sid")) else {
            return Err(TokenError::Invalid("Token is invalid").into());
        };
        let hash = hash_token(refresh);
        let ring = self.ring(now).await?;
        if self.config.tokens.rotate_refresh_tokens {
            // The fast path is a single write: it succeeds only if the token is active and its
            // session and identity still are. Anything else is explained by `refresh_refused`.
            let (new_refresh, new_row) =
                self.refresh_token(&ring, Uuid::nil(), identity_id, session_id, now)?;
            if self
                .store
                .rotate_refresh_token(&hash, &new_row, Some(self.config.session.max_lifetime.0))
                .await?
            {
                self.refresh_needs_no_second_factor(session_id, &new_row.token_hash)
                    .await?;
                let access = self.access_token(&ring, identity_id, session_id, now)?;
                return Ok(TokenPair {
                    access,
                    refresh: Some(new_refresh),
                });
            }
            return Err(self.refresh_refused(&hash, now).await);
        }
        match self.store.refresh_token_with_session(&hash).await? {
            Some((row, Some((s, i))))
                if row.state == "active" && s.id == session_id && s.is_valid(&i, now) =>
            {
                if self.session_lacks_second_factor(&s, &i) {
                    return Err(TokenError::SecondFactorRequired.into());
                }
                Ok(TokenPair {
                    access: self.access_token(&ring, i.id, s.id, now)?,
                    refresh: None,
                })
            }
            _ => Err(self.refresh_refused(&hash, now).await),
        }
    }

    /// Why a refresh was refused, with the side effects of reuse: a rotated token presented
    /// again after the grace window revokes its whole family and the session behind it.
    async fn refresh_refused(&self, hash: &str, now: OffsetDateTime) -> Error {
        let found = match self.store.refresh_token_with_session(hash).await {
            Ok(f) => f,
            Err(e) => return e.into(),
        };
        let Some((row, session)) = found else {
            return TokenError::Invalid("Token is invalid").into();
        };
        match row.state.as_str() {
            // Presented again this soon after its rotation, the token comes from a client racing
            // itself (two tabs refreshing at once), not a thief: refused, the family survives.
            "rotated"
                if row
                    .rotated_at
                    .is_some_and(|at| now - at < self.config.tokens.rotation_grace.0) =>
            {
                TokenError::Invalid("Token is blacklisted").into()
            }
            "rotated" => {
                tracing::warn!(family = %row.family_id, identity = %row.identity_id, "refresh token reuse detected; revoking the family");
                let record = By::system()
                    .record(AuditKind::TokenReuseDetected, now)
                    .about(row.identity_id)
                    .target(format!("session:{}", row.session_id))
                    .failed("refresh_token_reuse");
                let fx = Effects::none().audited(record);
                if let Err(e) = self.store.revoke_refresh_family(row.family_id, &fx).await {
                    return e.into();
                }
                if let Some((s, _)) = session {
                    let by = By::system();
                    if let Err(e) = self
                        .revoke_session(&s, "refresh_token_reuse", &by, now)
                        .await
                    {
                        return e;
                    }
                }
                TokenError::Invalid("Token is blacklisted").into()
            }
            "active" => match session {
                // Active and valid: a concurrent refresh of the same token won the rotation.
                Some((s, i)) if s.is_valid(&i, now) => {
                    TokenError::Invalid("Token is blacklisted").into()
                }
                _ => TokenError::NoActiveAccount.into(),
            },
            _ => TokenError::Invalid("Token is blacklisted").into(),
        }
    }

    /// `POST /api/token/verify/`: any of our tokens; refresh tokens must not be revoked or rotated.
    pub async fn verify_any_token(&self, token: &str, now: OffsetDateTime) -> Result<()> {
        let claims = self.verify_jwt(token, None, now).await?;
        if claims.get("token_type").and_then(Value::as_str) == Some("refresh") {
            match self.store.get_refresh_token(&hash_token(token)).await? {
                Some(r) if r.state == "active" => {}
                Some(_) => return Err(TokenError::Invalid("Token is blacklisted").into()),
                None => return Err(TokenError::Invalid("Token is invalid").into()),
            }
        }
        Ok(())
    }

    /// `POST /api/token/blacklist/`: revokes one refresh token.
    pub async fn blacklist_refresh(&self, refresh: &str, now: OffsetDateTime) -> Result<()> {
        self.verify_jwt(refresh, Some("refresh"), now).await?;
        if self
            .store
            .revoke_refresh_token(&hash_token(refresh))
            .await?
        {
            Ok(())
        } else {
            Err(TokenError::Invalid("Token is blacklisted").into())
        }
    }

    /// Cookie-mode logout: blacklists the refresh token and ends its session.
    pub async fn logout_refresh(
        &self,
        refresh: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.verify_jwt(refresh, Some("refresh"), now).await?;
        let hash = hash_token(refresh);
        let row = self
            .store
            .get_refresh_token(&hash)
            .await?
            .ok_or(TokenError::Invalid("Token is invalid"))?;
        self.store
            .revoke_refresh_family(row.family_id, &Effects::none())
            .await?;
        if let Some((s, _)) = self.store.get_session(row.session_id).await? {
            let by = By {
                actor: Actor::Identity(s.identity_id),
                origin: origin.clone(),
            };
            self.revoke_session(&s, "logout", &by, now).await?;
        }
        Ok(())
    }

    /// A session by one of our access tokens (`Authorization: Bearer <jwt>` on whoami).
    pub async fn authenticate_access_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, crate::identity::Identity)> {
        if !looks_like_jwt(token) {
            return Err(Error::SessionInactive);
        }
        let claims = match self.verify_jwt(token, Some("access"), now).await {
            Ok(c) => c,
            Err(Error::Token(_)) => return Err(Error::SessionInactive),
            Err(e) => return Err(e),
        };
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(Error::SessionInactive)?;
        match self.store.get_session(sid).await? {
            Some((s, i)) if s.is_valid(&i, now) => Ok((s, i)),
            _ => Err(Error::SessionInactive),
        }
    }

    /// `whoami?tokenize_as=<template>`: the session as a signed JWT.
    pub async fn tokenize(
        &self,
        session: &Session,
        identity: &crate::identity::Identity,
        template: &str,
        now: OffsetDateTime,
    ) -> Result<String> {
        let tpl = self
            .config
            .session
            .whoami
            .tokenizer
            .templates
            .get(template)
            .ok_or_else(|| {
                Error::bad_request(format!("Unable to find tokenizer template {template:?}."))
            })?;
        let session_json = self.session_json(session, Some(identity), View::Public, now);
        let mut claims = Map::new();
        for (claim, path) in &tpl.claims {
            let value = path.split('.').try_fold(&session_json, |v, seg| v.get(seg));
            if let Some(v) = value {
                claims.insert(claim.clone(), v.clone());
            }
        }
        claims.insert("jti".into(), json!(Uuid::new_v4().to_string()));
        // The configured audience, so Portcullis's own verifier (and simplejwt's) accepts it.
        match self.config.tokens.audience.as_slice() {
            [] => {}
            [one] => {
                claims.insert("aud".into(), json!(one));
            }
            many => {
                claims.insert("aud".into(), json!(many));
            }
        }
        claims.insert("iss".into(), json!(self.config.tokens.issuer));
        claims.insert("sub".into(), json!(identity.id.to_string()));
        claims.insert("sid".into(), json!(session.id.to_string()));
        claims.insert("iat".into(), json!(unix(now)));
        claims.insert("nbf".into(), json!(unix(now)));
        claims.insert("exp".into(), json!(unix(now + tpl.ttl.0)));
        let ring = self.ring(now).await?;
        self.sign(&ring, &claims)
    }
}
