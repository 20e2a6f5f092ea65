//! The `code` method: a one-time code sent to an address, entered on the flow that sent it.
//! Recovery and verification use it today (sign-in by code comes with the second factors).
//!
//! A code is 6 random digits. Only its HMAC (under the server's secret, bound to the flow id)
//! is kept, on the flow; a flow accepts `selfservice.methods.code.config.max_submissions`
//! wrong codes in all (counted atomically by the store, so parallel guesses count too), a
//! code lives `config.lifespan` (at most 15 minutes) and a new code replaces the old one.
//! Sending takes the same time and gives the same answer whether or not the address has an
//! account ([`SEND_FLOOR`]).

use crate::courier::{Locale, Message, TemplateKind};
use crate::flow::Flow;
use crate::identity::Identity;
use crate::service::{Caller, Core};
use crate::ui::{UiNode, UiText};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

/// Digits in a code.
pub const CODE_LENGTH: usize = 6;

/// Wrong codes an identity's flows accept in all within an hour, across every flow (a new
/// flow brings a new code but not a new budget): at 10 per hour a guesser needs ~11 years
/// for an even chance against 10⁶ codes.
pub const MAX_WRONG_CODES_PER_HOUR: u32 = 10;

/// Codes sent to one identity within an hour; more requests are answered alike but send
/// nothing (an inbox is not flooded from many client addresses).
pub const MAX_CODES_SENT_PER_HOUR: u32 = 10;

/// The store counter of an identity's wrong codes.
pub(crate) fn wrong_codes_key(identity: Uuid) -> String {
    format!("code-wrong:{identity}")
}

/// The store counter of the codes sent to an identity.
pub(crate) fn sent_codes_key(identity: Uuid) -> String {
    format!("code-sent:{identity}")
}

/// The least time a request that may send a code takes, so that whether a message went out
/// (an address with an account) cannot be read off the response time.
pub const SEND_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);

/// The code a flow sent, as the flow keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentCode {
    /// HMAC-SHA256 (hex) of the flow id and the code under the first secret key.
    pub hash: String,
    /// The address as the user typed it (normalised), to show on the form and resend to.
    pub address: String,
    /// The identity it was sent for; `None` when the address has no account (no valid code
    /// exists then, and every submit is wrong).
    pub identity_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A new code: uniformly random digits.
pub fn new_code() -> String {
    let n: u32 = rand::rngs::OsRng.gen_range(0..1_000_000);
    format!("{n:06}")
}

/// A new link token (recovery links): 32 random bytes, base64url.
pub fn new_link_token() -> String {
    crate::csrf::new_secret()
}

/// Whether `code` has the form of a code (exactly [`CODE_LENGTH`] ASCII digits): anything else
/// is refused without counting as a guess or touching the store.
pub fn well_formed(code: &str) -> bool {
    code.len() == CODE_LENGTH && code.bytes().all(|b| b.is_ascii_digit())
}

/// Addresses compare without case and surrounding space (as the schema derives them).
pub fn normalise_address(address: &str) -> String {
    address.trim().to_lowercase()
}

impl Core {
    /// The keys codes are hashed with, newest first (rotating `secrets.default` keeps codes
    /// sent under the previous key valid); one empty key when none is configured (dev mode).
    pub(crate) fn code_keys(&self) -> Vec<&[u8]> {
        let keys: Vec<&[u8]> = self
            .config
            .secrets
            .default
            .iter()
            .map(|k| k.expose().as_bytes())
            .collect();
        if keys.is_empty() {
            vec![b""]
        } else {
            keys
        }
    }

    fn hash_code_with(key: &[u8], flow_id: Uuid, code: &str) -> String {
        use hmac::{Hmac, Mac};
        use sha2::Sha256;
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            // HMAC takes keys of any length; this arm is never taken.
            return String::new();
        };
        mac.update(b"portcullis one-time code\0");
        mac.update(flow_id.as_bytes());
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The stored form of `code` for `flow_id`.
    pub(crate) fn hash_code(&self, flow_id: Uuid, code: &str) -> String {
        let key = self.code_keys().first().copied().unwrap_or_default();
        Self::hash_code_with(key, flow_id, code)
    }

    /// Whether `code` is the one `sent` holds, compared in constant time under every key.
    pub(crate) fn code_matches(&self, sent: &SentCode, flow_id: Uuid, code: &str) -> bool {
        if sent.identity_id.is_none() || sent.hash.is_empty() {
            return false;
        }
        let mut any = 0u8;
        for key in self.code_keys() {
            let h = Self::hash_code_with(key, flow_id, code);
            any |= h.as_bytes().ct_eq(sent.hash.as_bytes()).unwrap_u8();
        }
        any == 1
    }

    /// Gives `flow` a fresh code for `address` and returns it with the message that carries
    /// it: the `valid` template when `identity` owns the address, the `invalid` one when
    /// `notify_unknown` (else no message). The flow moves to `sent_email` either way and
    /// looks the same either way.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn issue_code(
        &self,
        flow: &mut Flow,
        address: &str,
        identity: Option<&Identity>,
        templates: (TemplateKind, TemplateKind),
        notify_unknown: bool,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> crate::error::Result<Option<Message>> {
        // Past the hourly send cap the flow looks the same but no valid code exists.
        let identity = match identity {
            Some(i) if self.codes_sent_capped(i.id, now).await? => None,
            other => other,
        };
        let code = new_code();
        let lifespan = self.config.selfservice.methods.code.config.lifespan.0;
        flow.code = Some(SentCode {
            hash: match identity {
                Some(_) => self.hash_code(flow.id, &code),
                None => String::new(),
            },
            address: address.to_string(),
            identity_id: identity.map(|i| i.id),
            expires_at: now + lifespan,
        });
        flow.state = "sent_email".into();
        flow.active = Some("code".into());
        flow.updated_at = now;
        let minutes = (lifespan.as_secs() / 60).max(1);
        let locale = message_locale(identity, caller);
        let (valid, invalid) = templates;
        let message = match identity {
            Some(i) => {
                let mut model = json!({
                    "To": address,
                    "Code": code,
                    "ExpiresInMinutes": minutes,
                    "RequestURL": flow.request_url,
                    // The page that takes the code (Kratos's VerificationURL / RecoveryURL).
                    "VerificationURL": self.flow_page_url(flow.kind, flow.id),
                    "RecoveryURL": self.flow_page_url(flow.kind, flow.id),
                    "Identity": i.to_api_json(self.public_url(), crate::identity::View::Public),
                });
                // Kratos's templates name the code after the flow.
                let named = match valid {
                    TemplateKind::RecoveryCodeValid => "RecoveryCode",
                    TemplateKind::VerificationCodeValid => "VerificationCode",
                    TemplateKind::RegistrationCodeValid => "RegistrationCode",
                    _ => "LoginCode",
                };
                if let Some(o) = model.as_object_mut() {
                    o.insert(named.into(), json!(code));
                }
                Some(self.compose(valid, address, locale, &model, Some(i.id), now)?)
            }
            None if notify_unknown => {
                let model = json!({ "To": address, "RequestURL": flow.request_url });
                Some(self.compose(invalid, address, locale, &model, None, now)?)
            }
            None => None,
        };
        Ok(message)
    }
}

impl Core {
    /// Counts one code sent to `identity`; true when the hourly cap was already reached.
    async fn codes_sent_capped(
        &self,
        identity: Uuid,
        now: OffsetDateTime,
    ) -> crate::error::Result<bool> {
        self.send_capped(sent_codes_key(identity), now).await
    }

    /// Whether `address` had its hourly [`MAX_CODES_SENT_PER_HOUR`] sign-up codes (an address
    /// with no account yet has no identity to count against); counts this one otherwise.
    /// The counter is keyed by the address's SHA-256, not the address.
    pub(crate) async fn address_codes_capped(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> crate::error::Result<bool> {
        use sha2::{Digest, Sha256};
        let key = format!(
            "code-sent-to:{}",
            hex::encode(Sha256::digest(address.as_bytes()))
        );
        self.send_capped(key, now).await
    }

    async fn send_capped(&self, key: String, now: OffsetDateTime) -> crate::error::Result<bool> {
        if self.hourly_count(&key, now).await? >= MAX_CODES_SENT_PER_HOUR {
            return Ok(true);
        }
        self.store
            .record_login_failure(std::slice::from_ref(&key), now)
            .await?;
        Ok(false)
    }

    /// What the counter `key` holds in its current hourly window.
    pub(crate) async fn hourly_count(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> crate::error::Result<u32> {
        let found = self.store.login_failures(&[key.to_string()]).await?;
        Ok(found
            .first()
            .filter(|(_, f)| now - f.window_start < time::Duration::HOUR)
            .map_or(0, |(_, f)| f.count))
    }
}

/// The recipient's language: the identity's `locale` or `language` trait when it names one
/// we write, else the language of the request.
fn message_locale(identity: Option<&Identity>, caller: &Caller) -> Locale {
    identity
        .and_then(|i| {
            ["locale", "language", "lang"]
                .iter()
                .find_map(|k| i.traits.get(*k).and_then(Value::as_str))
        })
        .map(Locale::from_tag)
        .unwrap_or(caller.locale)
}

/// The form pieces of the code method.
pub(crate) mod nodes {
    use super::*;

    /// `code/email`: where to send the code.
    pub fn email_input() -> UiNode {
        UiNode::input(
            "code",
            "email",
            "email",
            Some(UiText::info(1070007, "Email")),
        )
        .with_attr("required", json!(true))
    }

    /// `code/code`: the code, labelled for the flow (1070010 recovery, 1070011 verification).
    pub fn code_input(label: UiText) -> UiNode {
        UiNode::input("code", "code", "text", Some(label))
            .with_attr("required", json!(true))
            .with_attr("autocomplete", json!("one-time-code"))
            .with_attr("pattern", json!("[0-9]+"))
            .with_attr("maxlength", json!(CODE_LENGTH))
    }

    /// The hidden `method=code` that keeps the method when the code is submitted with Enter.
    pub fn method_hidden() -> UiNode {
        UiNode::input("code", "method", "hidden", None).with_attr("value", json!("code"))
    }

    /// The `method=code` submit button (1070009 Continue).
    pub fn submit() -> UiNode {
        UiNode::input(
            "code",
            "method",
            "submit",
            Some(UiText::info(1070009, "Continue")),
        )
        .with_attr("value", json!("code"))
    }

    /// `code/email=<address>` submit (1070008 Resend code).
    pub fn resend(address: &str) -> UiNode {
        UiNode::input(
            "code",
            "email",
            "submit",
            Some(UiText::info(1070008, "Resend code")),
        )
        .with_attr("value", json!(address))
    }
}
