//! Events and webhooks: the outbox rows, endpoints, deliveries, Standard Webhooks signing, the
//! retry schedule and the payload formats (Clerk's and the native Kratos shapes).
//!
//! Signing is written here rather than pulled in: it is one HMAC-SHA256 over
//! `id.timestamp.body` (checked against the Standard Webhooks test vectors), and the only
//! Rust crate for it brings its own HTTP client stack.

use crate::identity::{Identity, View};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;
use time::OffsetDateTime;

/// An event the core names with a write; the store appends it to the outbox in the write's
/// transaction, with the written row as its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    UserCreated,
    UserUpdated,
    UserDeleted,
    /// A session began.
    SessionCreated,
    /// A session was ended (logout, revocation) and is kept as inactive.
    SessionRevoked,
    /// A session that was still active was deleted (with its identity, or by an admin).
    SessionRemoved,
    /// A message was queued for the courier. The store appends it with every message it
    /// queues (never named in [`crate::store::Effects`]); it carries the message, code and
    /// all, so it goes only to endpoints that list it (see [`EventKind::opt_in`]).
    EmailCreated,
}

/// What an event is about: the store appends a session event once for every session the
/// write starts or ends, and an identity event once for the identity it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Identity,
    Session,
    /// An outgoing message.
    Email,
}

impl EventKind {
    /// The wire name (the Clerk event type; endpoints filter on it).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::UserCreated => "user.created",
            EventKind::UserUpdated => "user.updated",
            EventKind::UserDeleted => "user.deleted",
            EventKind::SessionCreated => "session.created",
            EventKind::SessionRevoked => "session.revoked",
            EventKind::SessionRemoved => "session.removed",
            EventKind::EmailCreated => "email.created",
        }
    }

    /// Whether an endpoint gets this event only when it lists it: an endpoint with no event
    /// filter ("every event") does not get it. `email.created` carries one-time codes, which
    /// an existing catch-all receiver (a log, an analytics sink) should not start receiving.
    pub const fn opt_in(self) -> bool {
        matches!(self, EventKind::EmailCreated)
    }

    pub fn subject(self) -> Subject {
        match self {
            EventKind::UserCreated | EventKind::UserUpdated | EventKind::UserDeleted => {
                Subject::Identity
            }
            EventKind::SessionCreated | EventKind::SessionRevoked | EventKind::SessionRemoved => {
                Subject::Session
            }
            EventKind::EmailCreated => Subject::Email,
        }
    }
}

/// Every event type Portcullis emits, by wire name.
pub const EVENT_TYPES: [&str; 7] = [
    EventKind::UserCreated.as_str(),
    EventKind::UserUpdated.as_str(),
    EventKind::UserDeleted.as_str(),
    EventKind::SessionCreated.as_str(),
    EventKind::SessionRevoked.as_str(),
    EventKind::SessionRemoved.as_str(),
    EventKind::EmailCreated.as_str(),
];

/// The event types an endpoint gets only when it lists them (see [`EventKind::opt_in`]).
pub const OPT_IN_EVENT_TYPES: [&str; 1] = [EventKind::EmailCreated.as_str()];

/// An outbox event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub identity_id: Option<String>,
    pub payload: Value,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSecret {
    pub secret: String,
    /// Set on a rotated-out secret: it keeps signing (as a second signature) until then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// `clerk` or `native`.
    pub format: String,
    pub secrets: Vec<WebhookSecret>,
    pub description: String,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The oldest pending delivery of an endpoint, with its event.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub id: String,
    pub attempts: i64,
    /// Changes when the delivery is resent or replayed.
    pub generation: i64,
    pub next_attempt_at: OffsetDateTime,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub endpoint_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub attempted_at: OffsetDateTime,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response: String,
    pub error: Option<String>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    Retry {
        at: OffsetDateTime,
    },
    /// Retries exhausted; the endpoint moves on to its next message.
    Failed,
}

/// Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// An endpoint failing this long is disabled.
pub const DISABLE_AFTER_FAILING: Duration = Duration::from_secs(5 * 24 * 3600);

/// The wait before retry number `attempts` (1-based count of failed attempts so far), with up
/// to 10 % jitter from `jitter` in [0, 1); `None` when the schedule is exhausted.
pub fn retry_delay(attempts: i64, jitter: f64) -> Option<Duration> {
    let base = *RETRY_SCHEDULE.get(usize::try_from(attempts - 1).ok()?)?;
    Some(base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.1))
}

pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, key = base64 after `whsec_`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    use hmac::{Mac, SimpleHmac};
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per live secret, space separated.
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    now: OffsetDateTime,
) -> String {
    secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|e| e > now))
        .filter_map(|s| sign(&s.secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Maps identities to Clerk's `User` object. Traits are read by dotted path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClerkMapping {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub username: String,
    /// Derived at load: where profile images are served (`{public URL}clerk/images/`).
    #[serde(skip)]
    pub image_base: String,
}

impl Default for ClerkMapping {
    fn default() -> Self {
        ClerkMapping {
            email: "email".into(),
            first_name: "name.first".into(),
            last_name: "name.last".into(),
            username: "username".into(),
            image_base: String::new(),
        }
    }
}

fn trait_str(traits: &Value, path: &str) -> Value {
    path.split('.')
        .try_fold(traits, |v, seg| v.get(seg))
        .and_then(Value::as_str)
        .map_or(Value::Null, |s| json!(s))
}

/// A Clerk-style id for a passkey: a digest of its credential id (not the id itself).
fn passkey_id(credential_id: &str) -> String {
    use sha2::Digest;
    let digest = hex::encode(Sha256::digest(credential_id.as_bytes()));
    format!("pk_{}", digest.get(..24).unwrap_or_default())
}

/// `user_<identity uuid without dashes>`: stable, reversible, and Clerk-shaped.
pub fn clerk_user_id(identity_id: &str) -> String {
    format!("user_{}", identity_id.replace('-', ""))
}

/// Writes one of Clerk's user fields into `traits` at its mapped dotted `path`; an empty or
/// null value removes the trait.
pub fn set_trait(traits: &mut Value, path: &str, value: &Value) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = traits;
    for (n, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if n == segs.len() - 1 {
            if value.is_null() || value.as_str() == Some("") {
                obj.remove(*seg);
            } else {
                obj.insert(seg.to_string(), value.clone());
            }
            return;
        }
        cur = obj.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

/// Clerk's `User` with every required field present.
pub fn clerk_user(i: &Identity, map: &ClerkMapping) -> Value {
    let emails: Vec<Value> = i
        .verifiable_addresses
        .iter()
        .filter(|a| a.via == "email")
        .map(|a| {
            json!({
                "id": format!("idn_{}", a.id.simple()),
                "object": "email_address",
                "email_address": a.value,
                "reserved": false,
                "verification": if a.verified {
                    json!({ "object": "verification_admin", "status": "verified", "strategy": "admin", "attempts": null, "expire_at": null })
                } else {
                    json!({ "object": "verification_otp", "status": "unverified", "strategy": "email_code", "attempts": null, "expire_at": null })
                },
                "linked_to": [],
                "created_at": ms(a.created_at),
                "updated_at": ms(a.updated_at),
            })
        })
        .collect();
    let primary = emails
        .first()
        .and_then(|e| e.get("id").cloned())
        .unwrap_or(Value::Null);
    let flag = |f: &str| {
        i.metadata_admin
            .as_ref()
            .and_then(|m| m.pointer(&format!("/clerk/{f}")))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    // Only an inactive identity is banned or locked; the flag set by the Clerk API says which
    // (one deactivated through the Kratos API shows as banned).
    let locked = !i.is_active() && flag("locked") && !flag("banned");
    let banned = !i.is_active() && !locked;
    let mut private = i.metadata_admin.clone().unwrap_or_else(|| json!({}));
    if let Some(o) = private.as_object_mut() {
        o.remove("clerk");
    }
    let totp = i.credentials.get("totp");
    let backup = i.credentials.get("lookup_secret");
    let keys = i.credentials.get("webauthn");
    let mfa_since = totp
        .iter()
        .chain(&backup)
        .chain(&keys)
        .map(|c| c.created_at)
        .min();
    let passkeys: Vec<Value> =
        crate::methods::webauthn::KeyList::of(i, crate::methods::Method::Passkey)
            .credentials
            .iter()
            .map(|k| {
                json!({
                    "object": "passkey",
                    "id": passkey_id(&k.id),
                    "name": k.display_name,
                    "last_used_at": ms(k.added_at),
                    "verification": {
                        "object": "verification_passkey",
                        "status": "verified",
                        "strategy": "passkey",
                        "attempts": null,
                        "expire_at": null,
                    },
                })
            })
            .collect();
    let external_accounts = clerk_external_accounts(i, map, emails.first());
    let image = crate::profile_image::image_id(i);
    let image_url = image
        .map(|id| format!("{}{id}", map.image_base))
        .unwrap_or_default();
    json!({
        "id": clerk_user_id(&i.id.to_string()),
        "object": "user",
        "external_id": i.external_id,
        "primary_email_address_id": primary,
        "primary_phone_number_id": null,
        "primary_web3_wallet_id": null,
        "username": trait_str(&i.traits, &map.username),
        "first_name": trait_str(&i.traits, &map.first_name),
        "last_name": trait_str(&i.traits, &map.last_name),
        "locale": null,
        "image_url": image_url,
        "profile_image_url": image_url,
        "has_image": image.is_some(),
        "public_metadata": i.metadata_public.clone().unwrap_or_else(|| json!({})),
        "private_metadata": private,
        "unsafe_metadata": {},
        "email_addresses": emails,
        "phone_numbers": [],
        "web3_wallets": [],
        "passkeys": passkeys,
        "password_enabled": i.credentials.contains_key("password"),
        "two_factor_enabled": mfa_since.is_some(),
        "totp_enabled": totp.is_some(),
        "backup_code_enabled": backup.is_some(),
        "mfa_enabled_at": mfa_since.map(ms),
        "mfa_disabled_at": null,
        "password_last_updated_at": i.credentials.get("password").map(|c| ms(c.updated_at)),
        "external_accounts": external_accounts,
        "saml_accounts": [],
        "enterprise_accounts": [],
        "last_sign_in_at": null,
        "banned": banned,
        "locked": locked,
        "lockout_expires_in_seconds": null,
        "verification_attempts_remaining": null,
        "updated_at": ms(i.updated_at),
        "created_at": ms(i.created_at),
        "delete_self_enabled": true,
        "create_organization_enabled": false,
        "create_organizations_limit": null,
        "last_active_at": null,
        "legal_accepted_at": null,
        "bypass_client_trust": false,
    })
}

/// Clerk's names for the providers it knows (`oauth_<name>`); any other provider id is a
/// custom one (`oauth_custom_<id>`), as Clerk names them.
const CLERK_PROVIDERS: [&str; 12] = [
    "google",
    "github",
    "apple",
    "microsoft",
    "facebook",
    "discord",
    "gitlab",
    "linkedin",
    "line",
    "slack",
    "spotify",
    "x",
];

/// Clerk's `external_accounts`: one per provider account linked (the `oidc` credential).
fn clerk_external_accounts(i: &Identity, map: &ClerkMapping, email: Option<&Value>) -> Vec<Value> {
    let Some(c) = i.credentials.get("oidc") else {
        return vec![];
    };
    let links = c
        .config
        .get("providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    links
        .iter()
        .filter_map(|l| {
            let provider = l.get("provider")?.as_str()?;
            let subject = l.get("subject")?.as_str()?;
            let strategy = if CLERK_PROVIDERS.contains(&provider) {
                format!("oauth_{provider}")
            } else {
                format!("oauth_custom_{provider}")
            };
            use sha2::Digest;
            let id = hex::encode(Sha256::digest(format!("{provider}:{subject}").as_bytes()));
            Some(json!({
                "object": "external_account",
                "id": format!("eac_{}", id.get(..27).unwrap_or_default()),
                "provider": strategy,
                "identification_id": format!("idn_{}", id.get(27..54).unwrap_or_default()),
                "provider_user_id": subject,
                "approved_scopes": "",
                "email_address": email.and_then(|e| e.get("email_address")).cloned().unwrap_or(json!("")),
                "first_name": trait_str(&i.traits, &map.first_name),
                "last_name": trait_str(&i.traits, &map.last_name),
                "image_url": "",
                "username": null,
                "phone_number": null,
                "public_metadata": {},
                "label": null,
                "created_at": ms(c.created_at),
                "updated_at": ms(c.updated_at),
                "verification": {
                    "object": "verification_oauth",
                    "status": "verified",
                    "strategy": strategy,
                    "attempts": null,
                    "expire_at": null,
                },
            }))
        })
        .collect()
}

/// Clerk's `Session` object with the embedded `user` that session webhooks carry.
fn clerk_session(
    event: &Event,
    s: &Value,
    identity: Option<&Identity>,
    map: &ClerkMapping,
    timestamp: i64,
) -> Value {
    let status = match event.kind.as_str() {
        "session.created" => "active",
        "session.removed" => "removed",
        "session.ended" => "ended",
        _ => "revoked",
    };
    let uid = s
        .get("identity_id")
        .and_then(Value::as_str)
        .map(clerk_user_id);
    let micros_to_ms = |k: &str| s.get(k).and_then(Value::as_i64).map(|m| m / 1000);
    let mut v = json!({
        "object": "session",
        "id": s.get("id").and_then(Value::as_str).map(|i| format!("sess_{}", i.replace('-', ""))),
        "user_id": uid,
        "client_id": "client_portcullis",
        "status": status,
        "last_active_at": micros_to_ms("authenticated_at").unwrap_or(timestamp),
        "expire_at": micros_to_ms("expires_at").unwrap_or(timestamp),
        "abandon_at": micros_to_ms("expires_at").unwrap_or(timestamp),
        "updated_at": timestamp,
        "created_at": micros_to_ms("issued_at").unwrap_or(timestamp),
    });
    if let (Some(i), Some(o)) = (identity, v.as_object_mut()) {
        o.insert("user".into(), clerk_user(i, map));
    }
    v
}

/// Clerk's `Email` object for an `email.created` event, whose payload is
/// `{"message": <the Kratos courier message>}`. The sender is the courier's configured one.
fn clerk_email(event: &Event, sender: &crate::config::SmtpConfig) -> Value {
    let m = event.payload.get("message").cloned().unwrap_or(Value::Null);
    let text = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let from_name = if sender.from_name.is_empty() {
        sender
            .from_address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        sender.from_name.clone()
    };
    json!({
        "object": "email",
        "id": m.get("id").and_then(Value::as_str).map(|i| format!("ema_{}", i.replace('-', ""))),
        "slug": text("template_type"),
        "from_email_name": from_name,
        "from_email_address": sender.from_address,
        "reply_to_email_name": null,
        "to_email_address": text("recipient"),
        "email_address_id": null,
        "user_id": event.identity_id.as_deref().map(clerk_user_id),
        "subject": text("subject"),
        "body": text("html_body"),
        "body_plain": text("body"),
        "status": "queued",
        "data": { "template_type": text("template_type"), "locale": text("locale") },
        "delivered_by_clerk": true,
    })
}

/// The body delivered for `event` in `format` (`clerk` or `native`); `sender` is the
/// courier's (an `email.created` event names it).
pub fn payload(
    event: &Event,
    format: &str,
    public_url: &str,
    map: &ClerkMapping,
    sender: &crate::config::SmtpConfig,
) -> Value {
    let timestamp = ms(event.created_at);
    if event.kind == EventKind::EmailCreated.as_str() {
        if format == "native" {
            let mut data = event.payload.get("message").cloned().unwrap_or(Value::Null);
            if let Some(o) = data.as_object_mut() {
                o.remove("html_body");
                o.remove("locale");
            }
            return json!({ "id": event.id, "type": event.kind, "timestamp": timestamp, "data": data });
        }
        return json!({
            "data": clerk_email(event, sender),
            "object": "event",
            "type": event.kind,
            "timestamp": timestamp,
            "instance_id": "ins_portcullis",
            "event_attributes": { "http_request": { "client_ip": "", "user_agent": "" } },
        });
    }
    let identity = event
        .payload
        .get("identity")
        .and_then(|v| serde_json::from_value::<Identity>(v.clone()).ok());
    let session = event.payload.get("session").cloned();
    if format == "native" {
        let data = match (&identity, &session) {
            // Session events: the session (the identity snapshot rides along for Clerk's format).
            (_, Some(s)) => s.clone(),
            (Some(i), None) => i.to_api_json(
                public_url,
                View::Admin {
                    include_credentials: &[],
                },
            ),
            _ => event
                .payload
                .get("identity")
                .cloned()
                .unwrap_or(Value::Null),
        };
        return json!({ "id": event.id, "type": event.kind, "timestamp": timestamp, "data": data });
    }
    let data = match (event.kind.as_str(), &identity, &session) {
        (k, _, Some(s)) if k.starts_with("session.") => {
            clerk_session(event, s, identity.as_ref(), map, timestamp)
        }
        ("user.deleted", _, _) => json!({
            "object": "user", "deleted": true,
            "id": event.payload.pointer("/identity/id").and_then(Value::as_str).map(clerk_user_id),
        }),
        (_, Some(i), _) => clerk_user(i, map),
        _ => Value::Null,
    };
    json!({
        "data": data,
        "object": "event",
        "type": event.kind,
        "timestamp": timestamp,
        "instance_id": "ins_portcullis",
        "event_attributes": { "http_request": { "client_ip": "", "user_agent": "" } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks test vectors from shared/reference/webhooks/test-vectors.json.
    #[test]
    fn signatures_match_the_standard_webhooks_vectors() {
        let cases = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                "{\"test\": 2432232314}",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                "{\"email\":\"test@example.com\",\"username\":\"test_user\"}",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, expected) in cases {
            assert_eq!(
                sign(secret, id, ts, body.as_bytes()).as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn rotated_secrets_sign_twice_until_they_expire() {
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let secrets = vec![
            WebhookSecret {
                secret: new_secret(),
                expires_at: None,
            },
            WebhookSecret {
                secret: new_secret(),
                expires_at: Some(now + Duration::from_secs(60)),
            },
        ];
        assert_eq!(
            signature_header(&secrets, "msg_1", 1, b"{}", now)
                .split(' ')
                .count(),
            2
        );
        assert_eq!(
            signature_header(&secrets, "msg_1", 1, b"{}", now + Duration::from_secs(61))
                .split(' ')
                .count(),
            1
        );
    }

    #[test]
    fn the_retry_schedule_is_svix_s_with_bounded_jitter() {
        assert_eq!(retry_delay(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(7, 0.0), Some(Duration::from_secs(36000)));
        assert_eq!(retry_delay(8, 0.0), None);
        let j = retry_delay(2, 0.99).unwrap();
        assert!(j > Duration::from_secs(300) && j < Duration::from_secs(331));
    }
}
