//! The `lookup_secret` method: twelve single-use backup codes as a second factor.
//!
//! The settings steps are Kratos's: regenerate (new codes, shown, not yet saved), confirm
//! (saved), reveal (shown again), disable. Each code is checked against its HMAC-SHA256
//! under `secrets.default` (every configured key, so keys can rotate), in constant time over
//! all twelve, and is used once. Kratos keeps the codes in plain text so they can be revealed;
//! here the list for revealing is sealed ([`crate::sealed`]), and checking never opens it.
//! Config: `{recovery_codes: [{code_hash, used_at}], codes_encrypted}`.

use super::factor::{Checked, Pending};
use super::Method;
use crate::audit::{Actor, AuditKind, Origin};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::identity::{rfc3339, Credential, Identity};
use crate::service::Core;
use crate::store::StoreError;
use crate::ui::{UiNode, UiText};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

pub const CODE_COUNT: usize = 12;
/// How long revealed codes stay on the flow (the answer, and the page a browser goes to).
const REVEAL_FOR: time::Duration = time::Duration::minutes(2);
pub const CODE_LENGTH: usize = 8;

/// One stored code.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCode {
    code_hash: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    used_at: Option<OffsetDateTime>,
}

/// What a settings submit of the method asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupAction {
    Regenerate,
    Confirm,
    Reveal,
    Disable,
}

pub mod msg {
    use crate::ui::UiText;
    use serde_json::{json, Value};

    pub fn used() -> UiText {
        UiText::error(
            4000012,
            "This backup recovery code has already been used.",
            None,
        )
    }
    pub fn none_set_up() -> UiText {
        UiText::error(4000014, "You have no backup recovery codes set up.", None)
    }
    pub fn invalid() -> UiText {
        UiText::error(4000016, "The backup recovery code is not valid.", None)
    }
    pub fn reveal() -> UiText {
        UiText::info(1050007, "Reveal backup recovery codes")
    }
    pub fn regenerate() -> UiText {
        UiText::info(1050008, "Generate new backup recovery codes")
    }
    pub fn secret(code: &str) -> UiText {
        let mut t = UiText::info(1050009, code);
        t.context = Some(json!({ "secret": code }));
        t
    }
    pub fn codes_label() -> UiText {
        UiText::info(
            1050010,
            "These are your back up recovery codes. Please keep them in a safe place!",
        )
    }
    pub fn confirm() -> UiText {
        UiText::info(1050011, "Confirm backup recovery codes")
    }
    pub fn used_at(at: &str, unix: i64) -> UiText {
        let mut t = UiText::info(1050014, format!("Secret was used at {at}"));
        t.context = Some(json!({ "used_at": at, "used_at_unix": unix }));
        t
    }
    pub fn list(joined: String, secrets: Vec<UiText>) -> UiText {
        let mut t = UiText::info(1050015, joined);
        t.context = Some(
            json!({ "secrets": secrets.into_iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect::<Vec<_>>() }),
        );
        t
    }
    pub fn disable() -> UiText {
        UiText::info(1050016, "Disable this method")
    }
    pub fn login_label() -> UiText {
        UiText::info(1010007, "Backup recovery code")
    }
    pub fn login_submit() -> UiText {
        UiText::info(1010010, "Use backup recovery code")
    }
}

/// Twelve new codes: [`CODE_LENGTH`] characters of `[a-z0-9]` each (41 bits).
fn new_codes() -> Zeroizing<Vec<String>> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new(
        (0..CODE_COUNT)
            .map(|_| {
                (0..CODE_LENGTH)
                    .map(|_| {
                        let i = rng.gen_range(0..ALPHABET.len());
                        char::from(ALPHABET.get(i).copied().unwrap_or(b'a'))
                    })
                    .collect()
            })
            .collect(),
    )
}

fn hash_with(key: &[u8], identity: Uuid, code: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length; this arm is never taken.
        return String::new();
    };
    mac.update(b"portcullis lookup secret\0");
    mac.update(identity.as_bytes());
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn toggle(name: &str, label: UiText) -> UiNode {
    UiNode::input("lookup_secret", name, "submit", Some(label)).with_attr("value", json!("true"))
}

/// The login form's nodes for a second step with a backup code.
pub fn login_nodes() -> Vec<UiNode> {
    let mut code = UiNode::input(
        "lookup_secret",
        "lookup_secret",
        "text",
        Some(msg::login_label()),
    )
    .with_attr("required", json!(true))
    .with_attr("autocomplete", json!("off"));
    code.set_value(json!(""));
    let submit = UiNode::input(
        "lookup_secret",
        "method",
        "submit",
        Some(msg::login_submit()),
    )
    .with_attr("value", json!("lookup_secret"));
    vec![code, submit]
}

fn stored_codes(cred: &Credential) -> Vec<StoredCode> {
    cred.config
        .get("recovery_codes")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

impl Core {
    /// The settings form's backup-code nodes for the flow's state: codes waiting for
    /// confirmation, codes revealed, or the buttons. The codes node is stored empty; the
    /// answer fills it in ([`Core::show_lookup_codes`]).
    pub(crate) fn lookup_settings_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
        reveal: bool,
    ) -> Result<Vec<UiNode>> {
        if !self.factor_enabled(Method::LookupSecret) {
            return Ok(vec![]);
        }
        let cred = identity.credentials.get(Method::LookupSecret.as_str());
        let now = self.now();
        let pending = flow.pending.get_or_insert_with(Pending::default);
        let revealing = reveal && cred.is_some() && pending.lookup.is_none();
        pending.reveal_until = revealing.then(|| now + REVEAL_FOR);
        if pending.lookup.is_some() {
            return Ok(vec![
                codes_node(&[]),
                toggle("lookup_secret_confirm", msg::confirm()),
            ]);
        }
        if cred.is_none() {
            return Ok(vec![toggle("lookup_secret_regenerate", msg::regenerate())]);
        }
        if !revealing {
            return Ok(vec![
                toggle("lookup_secret_reveal", msg::reveal()),
                toggle("lookup_secret_disable", msg::disable()),
            ]);
        }
        Ok(vec![
            codes_node(&[]),
            toggle("lookup_secret_disable", msg::disable()),
            toggle("lookup_secret_regenerate", msg::regenerate()),
        ])
    }

    /// Fills the codes node of a flow's answer: the pending codes, or the saved ones when
    /// they are to be revealed (a used one reads `used`).
    pub(crate) fn show_lookup_codes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
        pending: &Pending,
    ) -> Result<()> {
        let revealing = pending.reveal_until.is_some_and(|until| self.now() < until);
        let shown: Vec<(String, Option<OffsetDateTime>)> = match (&pending.lookup, revealing) {
            (Some(sealed), _) => {
                let codes: Vec<String> =
                    serde_json::from_slice(&self.open_factor(identity.id, sealed)?)
                        .unwrap_or_default();
                codes.into_iter().map(|c| (c, None)).collect()
            }
            (None, true) => {
                let Some(cred) = identity.credentials.get(Method::LookupSecret.as_str()) else {
                    return Ok(());
                };
                let sealed = cred
                    .config
                    .get("codes_encrypted")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                let codes: Vec<String> =
                    serde_json::from_slice(&self.open_factor(identity.id, sealed)?)
                        .unwrap_or_default();
                codes
                    .into_iter()
                    .zip(stored_codes(cred).into_iter().map(|s| s.used_at))
                    .collect()
            }
            (None, false) => return Ok(()),
        };
        let filled = codes_node(&shown);
        for n in &mut flow.ui.nodes {
            if n.attributes.get("id").and_then(serde_json::Value::as_str)
                == Some("lookup_secret_codes")
            {
                *n = filled.clone();
            }
        }
        Ok(())
    }

    /// Twelve new codes for `identity`, and the same sealed to it (kept until they are saved).
    pub(crate) fn new_lookup_codes(
        &self,
        identity: Uuid,
    ) -> Result<(Zeroizing<Vec<String>>, String)> {
        let codes = new_codes();
        let plain = Zeroizing::new(serde_json::to_vec(&*codes).unwrap_or_default());
        let sealed = self.seal_factor(identity, &plain)?;
        Ok((codes, sealed))
    }

    /// The credential that holds `codes` (hashed, each usable once; `sealed` for revealing).
    pub(crate) fn lookup_credential(
        &self,
        identity: Uuid,
        codes: &[String],
        sealed: String,
        now: OffsetDateTime,
    ) -> Credential {
        let key = self.code_keys().first().copied().unwrap_or_default();
        let stored: Vec<StoredCode> = codes
            .iter()
            .map(|c| StoredCode {
                code_hash: hash_with(key, identity, c),
                used_at: None,
            })
            .collect();
        let kind = Method::LookupSecret.as_str();
        Credential {
            id: Uuid::new_v4(),
            kind: kind.into(),
            identifiers: vec![identity.to_string()],
            config: json!({ "recovery_codes": stored, "codes_encrypted": sealed }),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// Runs a settings action. `Ok(true)` saved a change (the flow succeeds); `Ok(false)` only
    /// shows something (new or revealed codes): the form comes back. `Err(reason)` is a 400.
    pub(crate) async fn lookup_settings_action(
        &self,
        action: LookupAction,
        flow: &mut Flow,
        identity: &mut Identity,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let kind = Method::LookupSecret.as_str();
        match action {
            LookupAction::Regenerate => {
                let (_, sealed) = self.new_lookup_codes(identity.id)?;
                flow.pending.get_or_insert_with(Pending::default).lookup = Some(sealed);
                Ok(false)
            }
            LookupAction::Reveal => {
                if !identity.credentials.contains_key(kind) {
                    return Err(Error::bad_request(
                        "Can not reveal lookup codes because you have none.",
                    ));
                }
                Ok(false)
            }
            LookupAction::Confirm => {
                let Some(sealed) = flow.pending.as_mut().and_then(|p| p.lookup.take()) else {
                    return Err(Error::bad_request(
                        "You must (re-)generate recovery backup codes before you can save them.",
                    ));
                };
                let codes: Vec<String> =
                    serde_json::from_slice(&self.open_factor(identity.id, &sealed)?)
                        .unwrap_or_default();
                if codes.len() != CODE_COUNT {
                    return Err(Error::bad_request(
                        "You must (re-)generate recovery backup codes before you can save them.",
                    ));
                }
                let credential = self.lookup_credential(identity.id, &codes, sealed, now);
                identity.credentials.insert(kind.into(), credential);
                self.save_credential_change(
                    identity,
                    AuditKind::SecondFactorAdded,
                    Method::LookupSecret,
                    origin,
                    now,
                )
                .await?;
                Ok(true)
            }
            LookupAction::Disable => {
                self.remove_factor(
                    identity,
                    Method::LookupSecret,
                    Actor::Identity(identity.id),
                    origin,
                    now,
                )
                .await?;
                Ok(true)
            }
        }
    }

    /// Checks a backup code of `identity` and uses it up.
    pub(crate) async fn check_lookup(
        &self,
        identity: &Identity,
        code: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Checked> {
        let kind = Method::LookupSecret.as_str();
        let Some(cred) = identity.credentials.get(kind) else {
            return Ok(Checked::Refused(msg::none_set_up()));
        };
        self.admit_second_factor(identity.id, now).await?;
        let code = code.trim().to_ascii_lowercase();
        let mut codes = stored_codes(cred);
        let mut hit: Option<usize> = None;
        if code.len() == CODE_LENGTH {
            let candidates: Vec<String> = self
                .code_keys()
                .into_iter()
                .map(|k| hash_with(k, identity.id, &code))
                .collect();
            for (i, stored) in codes.iter().enumerate() {
                let mut same = 0u8;
                for c in &candidates {
                    same |= c.as_bytes().ct_eq(stored.code_hash.as_bytes()).unwrap_u8();
                }
                if same == 1 {
                    hit = Some(i);
                }
            }
        }
        let Some(slot) = hit.and_then(|i| codes.get_mut(i)) else {
            self.second_factor_failed(
                identity.id,
                Method::LookupSecret,
                "invalid_code",
                origin,
                now,
            )
            .await?;
            return Ok(Checked::Refused(msg::invalid()));
        };
        if slot.used_at.is_some() {
            self.second_factor_failed(identity.id, Method::LookupSecret, "used_code", origin, now)
                .await?;
            return Ok(Checked::Refused(msg::used()));
        }
        slot.used_at = Some(now);
        let mut used = identity.clone();
        if let Some(o) = used
            .credentials
            .get_mut(kind)
            .and_then(|c| c.config.as_object_mut())
        {
            o.insert("recovery_codes".into(), json!(codes));
        }
        let record = self.factor_effects(
            AuditKind::IdentityCredentialsChanged,
            Method::LookupSecret,
            identity.id,
            Actor::Identity(identity.id),
            origin,
            now,
        );
        // The identity's version makes this the one use of the code (see `check_totp`).
        match self.store.update_identity(&mut used, &record).await {
            Ok(()) => Ok(Checked::Accepted(Box::new(used))),
            Err(StoreError::Stale) => Ok(Checked::Refused(msg::used())),
            Err(e) => Err(e.into()),
        }
    }

    /// How many backup codes of `identity` are still unused (Clerk's `backup_code_enabled`).
    pub fn unused_lookup_codes(&self, identity: &Identity) -> usize {
        identity
            .credentials
            .get(Method::LookupSecret.as_str())
            .map(|c| {
                stored_codes(c)
                    .iter()
                    .filter(|s| s.used_at.is_none())
                    .count()
            })
            .unwrap_or(0)
    }
}

/// The `lookup_secret_codes` text node: the codes joined by ", " (a used one as `used`), each
/// also in the context, with the time it was used.
fn codes_node(codes: &[(String, Option<OffsetDateTime>)]) -> UiNode {
    let joined = codes
        .iter()
        .map(|(c, used)| if used.is_some() { "used" } else { c.as_str() })
        .collect::<Vec<_>>()
        .join(", ");
    let secrets = codes
        .iter()
        .map(|(c, used)| match used {
            Some(at) => msg::used_at(&rfc3339(*at), at.unix_timestamp()),
            None => msg::secret(c),
        })
        .collect();
    UiNode::text(
        "lookup_secret",
        "lookup_secret_codes",
        msg::list(joined, secrets),
        msg::codes_label(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_twelve_distinct_lowercase_alphanumerics_and_hashes_bind_the_identity() {
        let codes = new_codes();
        assert_eq!(codes.len(), CODE_COUNT);
        for c in codes.iter() {
            assert_eq!(c.len(), CODE_LENGTH);
            assert!(c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        let mut unique = codes.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), CODE_COUNT);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            hash_with(b"k", a, "abcd1234"),
            hash_with(b"k", a, "abcd1234")
        );
        assert_ne!(
            hash_with(b"k", a, "abcd1234"),
            hash_with(b"k", b, "abcd1234")
        );
        assert_ne!(
            hash_with(b"k", a, "abcd1234"),
            hash_with(b"j", a, "abcd1234")
        );
    }

    #[test]
    fn the_codes_node_marks_used_codes_as_kratos_does() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let n = codes_node(&[("aaaa1111".into(), None), ("bbbb2222".into(), Some(at))]);
        let text = &n.attributes["text"];
        assert_eq!(text["id"], 1050015);
        assert_eq!(text["text"], "aaaa1111, used");
        assert_eq!(
            text["context"]["secrets"][0]["context"]["secret"],
            "aaaa1111"
        );
        assert_eq!(text["context"]["secrets"][1]["id"], 1050014);
        assert_eq!(n.attributes["id"], "lookup_secret_codes");
    }
}
