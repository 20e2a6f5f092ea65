//! The audit log: one record per security event, who did what to whom, from where, and how it
//! ended. Records never hold a secret, a password, a token or a hash: only ids, names of
//! methods and reasons.
//!
//! A record of a change is written in the same transaction as the change (the store takes it
//! with the write, as it takes outbox events); a record of something that changed nothing
//! (a failed sign-in, a rate-limit trip) is written on its own.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// What happened. The wire names (`as_str`) are stable: filters and retention use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    LoginSucceeded,
    LoginFailed,
    Registration,
    PasswordChanged,
    ProfileChanged,
    RecoveryRequested,
    RecoverySucceeded,
    AddressVerified,
    SessionRevoked,
    SessionExtended,
    IdentityCreated,
    IdentityUpdated,
    IdentityStateChanged,
    IdentityCredentialsChanged,
    IdentityDeleted,
    KeysRotated,
    WebhookEndpointCreated,
    WebhookEndpointUpdated,
    WebhookEndpointDeleted,
    WebhookSecretRotated,
    ClerkKeyCreated,
    ClerkKeyRevoked,
    AdminKeyUsed,
    AdminKeyRefused,
    RateLimited,
    TokenObtained,
    TokenReuseDetected,
    /// A second factor was linked (TOTP, backup codes), by its owner.
    SecondFactorAdded,
    /// A second factor was removed, by its owner or an admin.
    SecondFactorRemoved,
    /// A wrong second-factor code (TOTP or backup code).
    SecondFactorFailed,
}

impl AuditKind {
    pub const ALL: &'static [AuditKind] = &[
        AuditKind::LoginSucceeded,
        AuditKind::LoginFailed,
        AuditKind::Registration,
        AuditKind::PasswordChanged,
        AuditKind::ProfileChanged,
        AuditKind::RecoveryRequested,
        AuditKind::RecoverySucceeded,
        AuditKind::AddressVerified,
        AuditKind::SessionRevoked,
        AuditKind::SessionExtended,
        AuditKind::IdentityCreated,
        AuditKind::IdentityUpdated,
        AuditKind::IdentityStateChanged,
        AuditKind::IdentityCredentialsChanged,
        AuditKind::IdentityDeleted,
        AuditKind::KeysRotated,
        AuditKind::WebhookEndpointCreated,
        AuditKind::WebhookEndpointUpdated,
        AuditKind::WebhookEndpointDeleted,
        AuditKind::WebhookSecretRotated,
        AuditKind::ClerkKeyCreated,
        AuditKind::ClerkKeyRevoked,
        AuditKind::AdminKeyUsed,
        AuditKind::AdminKeyRefused,
        AuditKind::RateLimited,
        AuditKind::TokenObtained,
        AuditKind::TokenReuseDetected,
        AuditKind::SecondFactorAdded,
        AuditKind::SecondFactorRemoved,
        AuditKind::SecondFactorFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LoginSucceeded => "login.succeeded",
            AuditKind::LoginFailed => "login.failed",
            AuditKind::Registration => "registration.succeeded",
            AuditKind::PasswordChanged => "password.changed",
            AuditKind::ProfileChanged => "profile.changed",
            AuditKind::RecoveryRequested => "recovery.requested",
            AuditKind::RecoverySucceeded => "recovery.succeeded",
            AuditKind::AddressVerified => "address.verified",
            AuditKind::SessionRevoked => "session.revoked",
            AuditKind::SessionExtended => "session.extended",
            AuditKind::IdentityCreated => "identity.created",
            AuditKind::IdentityUpdated => "identity.updated",
            AuditKind::IdentityStateChanged => "identity.state_changed",
            AuditKind::IdentityCredentialsChanged => "identity.credentials_changed",
            AuditKind::IdentityDeleted => "identity.deleted",
            AuditKind::KeysRotated => "keys.rotated",
            AuditKind::WebhookEndpointCreated => "webhook.endpoint_created",
            AuditKind::WebhookEndpointUpdated => "webhook.endpoint_updated",
            AuditKind::WebhookEndpointDeleted => "webhook.endpoint_deleted",
            AuditKind::WebhookSecretRotated => "webhook.secret_rotated",
            AuditKind::ClerkKeyCreated => "clerk_key.created",
            AuditKind::ClerkKeyRevoked => "clerk_key.revoked",
            AuditKind::AdminKeyUsed => "admin_key.used",
            AuditKind::AdminKeyRefused => "admin_key.refused",
            AuditKind::RateLimited => "rate_limit.tripped",
            AuditKind::TokenObtained => "token.obtained",
            AuditKind::TokenReuseDetected => "token.reuse_detected",
            AuditKind::SecondFactorAdded => "second_factor.added",
            AuditKind::SecondFactorRemoved => "second_factor.removed",
            AuditKind::SecondFactorFailed => "second_factor.failed",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in (or signing-in) identity.
    Identity(Uuid),
    /// The admin API, with the id of the admin API key when one was used.
    Admin { key_id: Option<String> },
    /// The Clerk Backend API, with the id of its secret key.
    ClerkKey(String),
    /// Nobody known: an unauthenticated request.
    Anonymous,
    /// The server itself (scheduled key rotation, reuse detection).
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Identity(_) => "identity",
            Actor::Admin { .. } => "admin",
            Actor::ClerkKey(_) => "clerk_key",
            Actor::Anonymous => "anonymous",
            Actor::System => "system",
        }
    }

    pub fn id(&self) -> Option<String> {
        match self {
            Actor::Identity(id) => Some(id.to_string()),
            Actor::Admin { key_id } => key_id.clone(),
            Actor::ClerkKey(id) => Some(id.clone()),
            Actor::Anonymous | Actor::System => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: OffsetDateTime,
    pub kind: AuditKind,
    pub actor: Actor,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The identity the event is about, when there is one (the filter `identity` matches it).
    pub identity_id: Option<Uuid>,
    /// What else it is about: `session:<id>`, `webhook_endpoint:<id>`, `key:<kid>` …
    pub target: Option<String>,
    pub outcome: Outcome,
    /// Why it failed, or which method succeeded (`password`, `rate_limit` …). Never a secret.
    pub reason: Option<String>,
    /// Small non-secret facts (the old and new `state`, how many sessions ended …).
    pub details: Value,
}

/// Where a request came from, for the audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Who is acting and from where: what an audited use case of the admin or Clerk face is told,
/// so its records name the key that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    pub actor: Actor,
    pub origin: Origin,
}

impl By {
    /// The server itself (scheduled work, start-up).
    pub fn system() -> Self {
        By {
            actor: Actor::System,
            origin: Origin::default(),
        }
    }

    /// A record of `kind` at `now` by this actor, from this origin.
    pub fn record(&self, kind: AuditKind, now: OffsetDateTime) -> AuditRecord {
        AuditRecord::new(kind, self.actor.clone(), &self.origin, now)
    }
}

impl AuditRecord {
    pub fn new(kind: AuditKind, actor: Actor, origin: &Origin, now: OffsetDateTime) -> Self {
        AuditRecord {
            id: Uuid::now_v7(),
            at: now,
            kind,
            actor,
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.as_deref().map(truncate_agent),
            identity_id: None,
            target: None,
            outcome: Outcome::Success,
            reason: None,
            details: Value::Null,
        }
    }

    pub fn about(mut self, identity: Uuid) -> Self {
        self.identity_id = Some(identity);
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn failed(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Failure;
        self.reason = Some(reason.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// User agents are attacker-chosen text: keep a bounded prefix.
fn truncate_agent(ua: &str) -> String {
    ua.chars().take(512).collect()
}

/// A filter for `GET /admin/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub identity_id: Option<Uuid>,
    pub kind: Option<AuditKind>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub page_size: u32,
    /// Keyset cursor: records older than this id (ids are time-ordered v7 UUIDs).
    pub before: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_by_its_wire_name_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(*k));
            assert!(seen.insert(k.as_str()), "{} twice", k.as_str());
        }
        assert_eq!(AuditKind::parse("nope"), None);
    }

    #[test]
    fn user_agents_are_bounded() {
        let origin = Origin {
            ip: None,
            user_agent: Some("x".repeat(10_000)),
        };
        let r = AuditRecord::new(
            AuditKind::LoginFailed,
            Actor::Anonymous,
            &origin,
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(r.user_agent.map(|u| u.len()), Some(512));
    }
}
