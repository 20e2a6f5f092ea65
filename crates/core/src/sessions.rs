//! Session use cases: resolve a token to a session, issue one, end ("revoke") one or many,
//! extend one, list them, and present one. Every face that ends a session calls
//! [`Core::revoke_session`], so "revoke" means one thing: inactive from now on, with
//! `expires_at` clamped to now (as Kratos' logout documents), with its `session.revoked` event
//! and audit record written with it.

use crate::audit::{Actor, AuditKind, AuditRecord, By, Origin};
use crate::error::{Error, Result};
use crate::identity::{Identity, View};
use crate::service::{Caller, Core};
use crate::session::{hash_token, new_token, Device, Session};
use crate::store::{Effects, SessionQuery};
use crate::webhooks::EventKind;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// How many session cookies of one request are looked at (a browser sends one per matching
/// domain and path; more is an attack or a mess).
pub const MAX_SESSION_COOKIES: usize = 4;

/// What a request proved its session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The opaque session token (header, cookie or `Bearer`).
    SessionToken,
    /// One of our access JWTs: good for reading the session, nothing more.
    AccessToken,
}

impl Core {
    /// Resolves a session token into a valid session and its identity. Only the opaque
    /// session token counts: an access JWT is a credential for the app's own API, sent to
    /// every resource server, so it must not be enough to change the account (security review
    /// F2); only [`Core::authenticate_to_read`] (whoami) accepts one.
    pub async fn authenticate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, Identity)> {
        if token.starts_with("eyJ") {
            return Err(Error::SessionInactive);
        }
        self.authenticate_session_token(token, now).await
    }

    /// The session of a browser that sent several session cookies: a sibling subdomain can
    /// plant its own (`Domain=` the parent, a longer `Path` so it is sent first), to sign the
    /// victim into the attacker's account. The valid ones must all be of one identity; when
    /// they are not, nobody is believed (the browser is signed out, not signed in as a
    /// stranger). Stale cookies (ended sessions) are ignored. At most [`MAX_SESSION_COOKIES`]
    /// are looked at.
    pub async fn authenticate_cookies(
        &self,
        tokens: &[&str],
        now: OffsetDateTime,
    ) -> Result<(Session, Identity)> {
        let mut found: Option<(Session, Identity)> = None;
        for token in tokens.iter().take(MAX_SESSION_COOKIES) {
            match self.authenticate(token, now).await {
                Ok((s, i)) => {
                    match &found {
                        None => found = Some((s, i)),
                        Some((_, first)) if first.id == i.id => {}
                        Some(_) => {
                            tracing::warn!("session cookies of two identities in one request; none is believed");
                            return Err(Error::SessionInactive);
                        }
                    }
                }
                Err(Error::SessionInactive) => {}
                Err(e) => return Err(e),
            }
        }
        found.ok_or(Error::SessionInactive)
    }

    /// `GET /sessions/whoami`: the session of an opaque session token, or of one of our access
    /// JWTs (`Authorization: Bearer <jwt>`); says which it was.
    pub async fn authenticate_to_read(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, Identity, Credential)> {
        if token.starts_with("eyJ") {
            let (s, i) = self.authenticate_access_token(token, now).await?;
            return Ok((s, i, Credential::AccessToken));
        }
        let (s, i) = self.authenticate_session_token(token, now).await?;
        Ok((s, i, Credential::SessionToken))
    }

    async fn authenticate_session_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(Session, Identity)> {
        let hash = hash_token(token);
        match self.store.session_by_token_hash(&hash).await? {
            Some((s, i)) if s.is_valid(&i, now) => Ok((s, i)),
            _ => Err(Error::SessionInactive),
        }
    }

    pub(crate) async fn issue_session(
        &self,
        identity: &Identity,
        method: crate::methods::Method,
        provider: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<(Session, String)> {
        let (s, token) = self.new_session(identity, method, provider, caller, now);
        self.store
            .insert_session(&s, &Effects::event(EventKind::SessionCreated))
            .await?;
        Ok((s, token))
    }

    /// A session for `identity`, not yet stored (registration stores it with the identity);
    /// `provider`: the social sign-in provider `method` went through.
    pub(crate) fn new_session(
        &self,
        identity: &Identity,
        method: crate::methods::Method,
        provider: Option<&str>,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> (Session, String) {
        let t = new_token();
        let device = Device {
            id: Uuid::new_v4(),
            ip_address: caller.ip.clone(),
            user_agent: caller.user_agent.clone(),
            location: None,
        };
        let mut s = Session::new(
            identity.id,
            method,
            t.hash,
            self.config.session.lifespan.0,
            device,
            now,
        );
        s.name_provider(provider);
        (s, t.token)
    }

    /// `DELETE /self-service/logout/api`: ends the session of an opaque session token.
    pub async fn logout_token(
        &self,
        token: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        match self.store.session_by_token_hash(&hash_token(token)).await? {
            Some((s, _)) if s.active => {
                let by = own(s.identity_id, origin);
                self.revoke_session(&s, "logout", &by, now).await.map(drop)
            }
            _ => Err(Error::bad_request("Unable to log out because the session token does not exist or is no longer active.")),
        }
    }

    /// Browser logout with a logout token: ends the caller's session when the token is its
    /// own. Without a session there is nothing to end.
    pub async fn logout_with_token(
        &self,
        session: Option<&Session>,
        logout_token: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        match session {
            None => Ok(()),
            Some(s) if s.is_logout_token(logout_token) => {
                let by = own(s.identity_id, origin);
                self.revoke_session(s, "logout", &by, now).await.map(drop)
            }
            Some(_) => Err(Error::LogoutTokenMismatch),
        }
    }

    /// Ends a session: inactive from now on, and no longer valid past now either, audited as
    /// done `by` for `reason` (`logout`, `revoked`). Returns the session as stored.
    pub async fn revoke_session(
        &self,
        session: &Session,
        reason: &str,
        by: &By,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let mut s = session.clone();
        s.active = false;
        s.expires_at = s.expires_at.min(now);
        let record = session_record(by, AuditKind::SessionRevoked, &s, now).reason(reason);
        let fx = Effects::event(EventKind::SessionRevoked).audited(record);
        self.store.update_session(&s, now, &fx).await?;
        Ok(s)
    }

    /// Any session by id (admin views).
    pub async fn session_by_id(&self, id: Uuid) -> Result<(Session, Identity)> {
        self.store
            .get_session(id)
            .await?
            .ok_or_else(|| Error::not_found("Unable to locate the resource"))
    }

    /// Revokes session `id` (admin and Clerk faces) and returns it as it now is.
    pub async fn revoke_session_by_id(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Session> {
        let (s, _) = self.session_by_id(id).await?;
        self.revoke_session(&s, "revoked", by, now).await
    }

    /// Revokes one of the caller's own other sessions (`DELETE /sessions/{id}`); the current
    /// one is ended by logging out.
    pub async fn revoke_own_session(
        &self,
        current: &Session,
        id: Uuid,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        if id == current.id {
            return Err(Error::bad_request(
                "The current session cannot be revoked here; use the logout endpoints instead.",
            ));
        }
        match self.store.get_session(id).await? {
            Some((s, _)) if s.identity_id == current.identity_id => {
                let by = own(s.identity_id, origin);
                self.revoke_session(&s, "revoked", &by, now).await.map(drop)
            }
            _ => Err(Error::not_found("Unable to locate the resource")),
        }
    }

    /// The identity signs out everywhere but `keep`: every other active session ends;
    /// returns how many.
    pub async fn revoke_other_sessions(
        &self,
        identity_id: Uuid,
        keep: Uuid,
        origin: &Origin,
        reason: &str,
    ) -> Result<u64> {
        let now = self.now();
        let record = own(identity_id, origin)
            .record(AuditKind::SessionRevoked, now)
            .about(identity_id)
            .reason(reason)
            .details(serde_json::json!({ "kept": keep }));
        let fx = Effects::event(EventKind::SessionRevoked).audited(record);
        Ok(self
            .store
            .revoke_identity_sessions(identity_id, Some(keep), now, &fx)
            .await?)
    }

    /// The welcome page's "sign out everywhere else": a CSRF-checked form post.
    pub async fn revoke_other_sessions_by_form(
        &self,
        caller: &Caller,
        csrf_token: &str,
    ) -> Result<Option<u64>> {
        let csrf_ok = caller
            .csrf_secret
            .as_deref()
            .is_some_and(|s| crate::csrf::verify(s, csrf_token));
        if !csrf_ok {
            return Err(Error::CsrfViolation { hint: None });
        }
        match &caller.session {
            Some((current, identity)) => {
                // A password alone must not end the sessions that used the second factor.
                self.require_whoami_aal(current, identity)?;
                self.revoke_other_sessions(
                    identity.id,
                    current.id,
                    &caller.origin(),
                    "sign_out_others",
                )
                .await
                .map(Some)
            }
            None => Ok(None),
        }
    }

    /// `DELETE /admin/identities/{id}/sessions`: deletes every session of an identity.
    pub async fn delete_identity_sessions(&self, identity_id: Uuid, by: &By) -> Result<()> {
        self.admin_get_identity(identity_id).await?;
        let now = self.now();
        let record = by
            .record(AuditKind::SessionRevoked, now)
            .about(identity_id)
            .reason("deleted");
        let fx = Effects::event(EventKind::SessionRemoved).audited(record);
        self.store
            .delete_identity_sessions(identity_id, now, &fx)
            .await?;
        Ok(())
    }

    /// `PATCH /admin/sessions/{id}/extend`. Like Kratos, a session is only extended once it is
    /// within `session.earliest_possible_extend` of its expiry; earlier calls change nothing.
    pub async fn extend_session(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<(Session, Identity)> {
        let (mut s, i) = self.session_by_id(id).await?;
        if !s.is_valid(&i, now) {
            return Err(Error::not_found(
                "The session is not active and cannot be extended.",
            ));
        }
        let cfg = &self.config.session;
        if s.expires_at - now <= cfg.earliest_possible_extend.0 {
            s.expires_at = now + cfg.lifespan.0;
            let record = session_record(by, AuditKind::SessionExtended, &s, now);
            self.store
                .update_session(&s, now, &Effects::none().audited(record))
                .await?;
        }
        Ok((s, i))
    }

    /// Sessions matching `q`, each with its identity.
    pub async fn list_sessions(
        &self,
        q: &SessionQuery,
        now: OffsetDateTime,
    ) -> Result<Vec<(Session, Identity)>> {
        Ok(self.store.list_sessions(q, now).await?)
    }

    pub fn session_json(
        &self,
        s: &Session,
        identity: Option<&Identity>,
        view: View<'_>,
        now: OffsetDateTime,
    ) -> Value {
        s.to_api_json(identity, self.public_url(), view, now)
    }
}

/// The identity acting on its own sessions.
fn own(identity_id: Uuid, origin: &Origin) -> By {
    By {
        actor: Actor::Identity(identity_id),
        origin: origin.clone(),
    }
}

fn session_record(by: &By, kind: AuditKind, s: &Session, now: OffsetDateTime) -> AuditRecord {
    by.record(kind, now)
        .about(s.identity_id)
        .target(format!("session:{}", s.id))
}
