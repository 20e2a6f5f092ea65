//! The `webauthn` method: security keys, as a second factor (`security_key.rs`) or on their
//! own (`passwordless.rs`). This file holds what they share with `passkey.rs`: the relying
//! party, the stored key list, the ceremony state a flow keeps, the `webauthn_script` node and
//! the script it loads.
//!
//! The ceremonies are `webauthn-rs`'s. A ceremony's state lives in its flow row
//! ([`Ceremony`] in [`super::factor::Pending`]), so any instance can finish it; it is
//! replaced whenever the form is drawn again and ends with the flow. Credentials are kept in
//! the identity as Kratos lays them out (`{credentials: [{id, display_name, added_at,
//! is_passwordless, authenticator: {sign_count}}], user_handle}`, byte fields in standard
//! base64), each with webauthn-rs's own record of the key (`key`) beside it.

use super::factor::Pending;
use super::Method;
use crate::config::RelyingParty;
use crate::error::{Error, Result};
use crate::identity::{Credential, Identity};
use crate::service::Core;
use crate::ui::{UiNode, UiText};
use base64::Engine;

mod passwordless;
mod security_key;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use std::sync::OnceLock;
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{AuthenticationResult, PublicKeyCredential, Webauthn, WebauthnBuilder};

/// The script the `webauthn_script` node loads (`GET /.well-known/ory/webauthn.js`).
pub const SCRIPT: &str = include_str!("webauthn.js");

/// Where the script is served, below the public URL.
pub const SCRIPT_PATH: &str = ".well-known/ory/webauthn.js";

/// The longest WebAuthn response a form field may carry: an attestation with a certificate
/// chain stays well below it.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// The longest name a key may be given.
pub(crate) const MAX_DISPLAY_NAME: usize = 64;

/// The most keys (or passkeys) an identity may register: each is listed in every sign-in
/// request it takes part in.
pub const MAX_KEYS: usize = 20;

/// The script's Subresource Integrity hash, over the exact bytes served.
pub fn script_integrity() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let digest = Sha512::digest(SCRIPT.as_bytes());
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

pub mod msg {
    use crate::ui::UiText;
    use serde_json::json;

    pub fn login_trigger() -> UiText {
        UiText::info(1010008, "Sign in with hardware key")
    }
    pub fn register_trigger() -> UiText {
        UiText::info(1050012, "Add security key")
    }
    pub fn display_name() -> UiText {
        UiText::info(1050013, "Name of the security key")
    }
    pub fn remove(name: &str, added_at: &str, unix: i64) -> UiText {
        let mut t = UiText::info(1050018, format!("Remove security key \"{name}\""));
        t.context =
            Some(json!({ "display_name": name, "added_at": added_at, "added_at_unix": unix }));
        t
    }
    pub fn signup_trigger() -> UiText {
        UiText::info(1040004, "Sign up with security key")
    }
    pub fn continue_label() -> UiText {
        UiText::info(1010013, "Continue")
    }
    pub fn prepare() -> UiText {
        UiText::info(
            1010012,
            "Prepare your WebAuthn device (e.g. security key, biometrics scanner, ...) and press continue.",
        )
    }
    pub fn last_key() -> UiText {
        let reason =
            "unable to remove this security key because it would lock you out of your account";
        UiText::error(4000001, reason, Some(json!({ "reason": reason })))
    }
    pub fn no_device() -> UiText {
        UiText::error(4000013, "You have no WebAuthn device set up.", None)
    }
    pub fn wrong() -> UiText {
        UiText::error(
            4000043,
            "The provided web authn login is invalid, please try again.",
            None,
        )
    }
    /// A response that is not one (malformed JSON, a ceremony of another form).
    pub fn unparsable(reason: &str) -> UiText {
        let reason = format!("Unable to parse WebAuthn response: {reason}");
        UiText::error(4000001, reason.clone(), Some(json!({ "reason": reason })))
    }
    /// A registration the browser ran but the server does not accept (another origin or
    /// relying party, another challenge, a key already registered).
    pub fn not_registered(reason: &str) -> UiText {
        let reason = format!("Unable to register the key: {reason}");
        UiText::error(4000001, reason.clone(), Some(json!({ "reason": reason })))
    }
}

/// The state of a WebAuthn ceremony a flow started (webauthn-rs's, serialised), and for a
/// passkey registration the user handle the new credential is made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceremony {
    pub state: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<Uuid>,
    /// For a passwordless sign-in, the identity whose keys were asked for (none: the
    /// identifier named nobody, and no answer can pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Uuid>,
}

/// The `webauthn` or `passkey` credential's config: the keys and the user handle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyList {
    #[serde(default)]
    pub credentials: Vec<StoredKey>,
    /// Standard base64 of the 16-byte handle the keys were made for.
    #[serde(default)]
    pub user_handle: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// Standard base64 of the credential id.
    pub id: String,
    pub display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    pub is_passwordless: bool,
    pub authenticator: Authenticator,
    /// webauthn-rs's record of the key (public key, counter, flags).
    pub key: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Authenticator {
    pub sign_count: u32,
}

impl KeyList {
    /// The keys of `identity`'s credential of `method` (none when it has none).
    pub fn of(identity: &Identity, method: Method) -> KeyList {
        identity
            .credentials
            .get(method.as_str())
            .and_then(|c| serde_json::from_value(c.config.clone()).ok())
            .unwrap_or_default()
    }

    /// The user handle the keys were made for.
    pub fn handle(&self) -> Option<Uuid> {
        let bytes = b64().decode(&self.user_handle).ok()?;
        Uuid::from_slice(&bytes).ok()
    }

    /// The keys as webauthn-rs reads them (a `SecurityKey` or a `Passkey`: one record).
    pub fn keys<T: serde::de::DeserializeOwned>(&self) -> Vec<T> {
        self.credentials
            .iter()
            .filter_map(|k| serde_json::from_value(k.key.clone()).ok())
            .collect()
    }

    /// The ids of the keys, to keep a browser from registering one twice.
    pub fn ids(&self) -> Vec<webauthn_rs::prelude::CredentialID> {
        self.credentials
            .iter()
            .filter_map(|k| b64().decode(&k.id).ok())
            .collect()
    }

    pub fn find(&self, id: &[u8]) -> Option<&StoredKey> {
        let id = b64().encode(id);
        self.credentials.iter().find(|k| k.id == id)
    }

    /// Adds a newly registered key (`key`: webauthn-rs's record of it).
    pub fn add(
        &mut self,
        id: &[u8],
        key: Value,
        name: &str,
        passwordless: bool,
        now: OffsetDateTime,
    ) {
        self.credentials.push(StoredKey {
            id: b64().encode(id),
            display_name: name.to_string(),
            added_at: now,
            is_passwordless: passwordless,
            authenticator: Authenticator::default(),
            key,
        });
    }

    /// Removes the key whose id is `hex` (as the remove buttons carry it).
    pub fn remove_hex(&mut self, hex_id: &str) -> bool {
        let Ok(id) = hex::decode(hex_id.trim()) else {
            return false;
        };
        let id = b64().encode(id);
        let before = self.credentials.len();
        self.credentials.retain(|k| k.id != id);
        self.credentials.len() != before
    }

    /// Records a sign-in with one of the keys: its counter and flags as the authenticator
    /// reported them (`update` is webauthn-rs's `update_credential` of the key's type).
    pub fn used<T>(&mut self, result: &AuthenticationResult, update: impl Fn(&mut T) -> bool)
    where
        T: serde::de::DeserializeOwned + Serialize,
    {
        let raw: &[u8] = result.cred_id().as_ref();
        let id = b64().encode(raw);
        for k in self.credentials.iter_mut().filter(|k| k.id == id) {
            if let Ok(mut key) = serde_json::from_value::<T>(k.key.clone()) {
                if update(&mut key) {
                    k.key = serde_json::to_value(&key).unwrap_or(Value::Null);
                }
            }
            k.authenticator.sign_count = k.authenticator.sign_count.max(result.counter());
        }
    }

    /// Whether the key that answered is still in the list, with a counter past the stored
    /// one (authenticators without a counter report 0 every time).
    pub fn current(&self, result: &AuthenticationResult) -> bool {
        let raw: &[u8] = result.cred_id().as_ref();
        self.find(raw).is_some_and(|k| {
            let stored = k.authenticator.sign_count;
            stored == 0 && result.counter() == 0 || result.counter() > stored
        })
    }

    /// Writes the list back into `identity` as its credential of `method`.
    pub fn save(
        &self,
        identity: &mut Identity,
        method: Method,
        identifiers: Vec<String>,
        now: OffsetDateTime,
    ) {
        if self.credentials.is_empty() {
            identity.credentials.remove(method.as_str());
            return;
        }
        let config = serde_json::to_value(self).unwrap_or(Value::Null);
        let entry = identity
            .credentials
            .entry(method.as_str().into())
            .or_insert_with(|| Credential {
                id: Uuid::new_v4(),
                kind: method.as_str().into(),
                identifiers: vec![],
                config: Value::Null,
                version: 0,
                created_at: now,
                updated_at: now,
            });
        entry.identifiers = identifiers;
        entry.config = config;
        entry.updated_at = now;
    }

    /// One remove button per key (`name`: `webauthn_remove` or `passkey_remove`), its value
    /// the key id in hex; `label` words it from the key's name and date.
    pub fn remove_nodes(
        &self,
        group: &str,
        name: &str,
        label: impl Fn(&str, &str, i64) -> UiText,
        disabled: bool,
    ) -> Vec<UiNode> {
        self.credentials
            .iter()
            .map(|k| {
                let added = k
                    .added_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let hex_id = b64().decode(&k.id).map(hex::encode).unwrap_or_default();
                UiNode::input(
                    group,
                    name,
                    "submit",
                    Some(label(&k.display_name, &added, k.added_at.unix_timestamp())),
                )
                .with_attr("value", json!(hex_id))
                .with_attr("disabled", json!(disabled))
            })
            .collect()
    }
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The browser's answer of a ceremony, from a form field: `Err` is the message for the form.
pub fn parse_response<T: serde::de::DeserializeOwned>(raw: &str) -> std::result::Result<T, UiText> {
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err(msg::unparsable("the response is too large"));
    }
    serde_json::from_str(raw).map_err(|e| msg::unparsable(&e.to_string()))
}

/// A sign-in answer; an empty `userHandle` (the authenticator gave none) reads as absent.
pub fn parse_assertion(raw: &str) -> std::result::Result<PublicKeyCredential, UiText> {
    let mut cred: PublicKeyCredential = parse_response(raw)?;
    if cred
        .response
        .user_handle
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        cred.response.user_handle = None;
    }
    Ok(cred)
}

/// The `webauthn_script` node: the script, pinned by its hash.
pub fn script_node(public_url: &str) -> UiNode {
    use rand::RngCore;
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    UiNode {
        node_type: "script".into(),
        group: "webauthn".into(),
        attributes: json!({
            "src": format!("{public_url}{SCRIPT_PATH}"),
            "async": true,
            "referrerpolicy": "no-referrer",
            "crossorigin": "anonymous",
            "integrity": script_integrity(),
            "type": "text/javascript",
            "id": "webauthn_script",
            "nonce": hex::encode(nonce),
            "node_type": "script",
        }),
        messages: vec![],
        meta: json!({}),
    }
}

/// A button that runs a ceremony through the script: `trigger` is the window function.
pub fn trigger_button(
    group: &str,
    name: &str,
    trigger: &str,
    argument: Option<&str>,
    label: UiText,
) -> UiNode {
    let onclick = format!("window.{trigger}({})", argument.unwrap_or_default());
    UiNode::input(group, name, "button", Some(label))
        .with_attr("onclick", json!(onclick))
        .with_attr("onclickTrigger", json!(trigger))
}

/// The nodes that register a security key: its name, the answer's field, the button that
/// runs the ceremony of `options` (labelled `label`) and the script.
pub(crate) fn key_registration_nodes(
    options: &str,
    label: UiText,
    public_url: &str,
) -> Vec<UiNode> {
    let mut name = UiNode::input(
        "webauthn",
        "webauthn_register_displayname",
        "text",
        Some(msg::display_name()),
    );
    name.set_value(json!(""));
    let mut trigger = trigger_button(
        "webauthn",
        "webauthn_register_trigger",
        "oryWebAuthnRegistration",
        Some(options),
        label,
    );
    trigger.set_value(json!(options));
    vec![
        name,
        hidden("webauthn", "webauthn_register", ""),
        trigger,
        script_node(public_url),
    ]
}

/// A hidden input (the ceremony's answer, or its options).
pub fn hidden(group: &str, name: &str, value: &str) -> UiNode {
    let mut n = UiNode::input(group, name, "hidden", None);
    n.set_value(json!(value));
    n
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("WebAuthn: {e}"))
}

/// The ceremony state in a flow's pending secrets (`slot` picks the method's).
pub(crate) fn take_state<T: serde::de::DeserializeOwned>(
    pending: Option<&Pending>,
    slot: impl Fn(&Pending) -> Option<&Ceremony>,
) -> Option<(T, Option<Uuid>)> {
    let c = slot(pending?)?;
    let state = serde_json::from_value(c.state.clone()).ok()?;
    Some((state, c.user_handle))
}

pub(crate) fn ceremony<T: Serialize>(state: &T, user_handle: Option<Uuid>) -> Result<Ceremony> {
    Ok(Ceremony {
        state: serde_json::to_value(state).map_err(internal)?,
        user_handle,
        identity: None,
    })
}

impl Core {
    /// The relying party of `method` (`webauthn` or `passkey`), from the configuration.
    pub(crate) fn relying_party(&self, method: Method) -> Result<Webauthn> {
        let m = &self.config.selfservice.methods;
        let rp: &RelyingParty = match method {
            Method::Passkey => &m.passkey.config.rp,
            _ => &m.webauthn.config.rp,
        };
        let origins = rp.origin_urls("rp").map_err(internal)?;
        let (first, rest) = origins.split_first().ok_or_else(|| internal("no origin"))?;
        // A security key is the second factor: touching it is enough (Kratos asks no
        // verification either). A passkey signs in alone and must verify its user.
        let mut b = WebauthnBuilder::new(&rp.id, first)
            .map_err(internal)?
            .rp_name(&rp.display_name)
            .danger_set_user_presence_only_security_keys(method == Method::WebAuthn);
        for o in rest {
            b = b.append_allowed_origin(o);
        }
        b.build().map_err(internal)
    }
}
