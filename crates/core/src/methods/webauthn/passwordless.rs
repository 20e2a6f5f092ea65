//! Passwordless security keys (`webauthn.config.passwordless`, Kratos's older way of signing
//! in without a password; passkeys are the newer one): registration makes an account with a
//! key, and the login form's first step takes the identifier, then asks that account's keys
//! (a sign-in at aal1 with AMR `webauthn`). An identifier nobody has gets the same second
//! step, asking for a key nobody holds, so the form does not tell who has an account.

use super::security_key::Refusal;
use super::{
    ceremony, hidden, internal, key_registration_nodes, msg, parse_assertion, script_node,
    take_state, trigger_button, KeyList,
};
use crate::error::{Error, Result};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::factor::Pending;
use crate::methods::Method;
use crate::service::Core;
use crate::store::{Effects, StoreError};
use crate::ui::{UiNode, UiText};
use base64::Engine;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication};

impl Core {
    /// The login form's first step with passwordless keys: a button that sends the
    /// identifier (the `default` group's field) with `method=webauthn`.
    pub(crate) fn passwordless_login_nodes(&self, flow: &Flow) -> Vec<UiNode> {
        if !self.passwordless_keys_enabled() || flow.flow_type != FlowType::Browser {
            return vec![];
        }
        vec![
            UiNode::input("webauthn", "method", "submit", Some(msg::login_trigger()))
                .with_attr("value", json!(Method::WebAuthn.as_str())),
        ]
    }

    /// The second step of a passwordless sign-in: the keys of the identity `identifier`
    /// names (or none), asked for in a ceremony the flow keeps. The answer is JSON 422
    /// `browser_location_change_required` (browsers 303) to the flow's page, which shows it.
    pub(crate) async fn ask_for_key(
        &self,
        flow: &mut Flow,
        identifier: &str,
        now: OffsetDateTime,
    ) -> Error {
        match self.key_request(flow, identifier).await {
            Ok(()) => {}
            Err(e) => return e,
        }
        flow.updated_at = now;
        if let Err(e) = self.store.update_flow(flow).await {
            return e.into();
        }
        Error::BrowserLocationChangeRequired {
            redirect_browser_to: self.flow_page_url(FlowKind::Login, flow.id),
        }
    }

    async fn key_request(&self, flow: &mut Flow, identifier: &str) -> Result<()> {
        let found = self.find_by_key_identifier(identifier).await?;
        self.ask_keys_of(flow, identifier, found.as_ref())
    }

    /// A re-authentication of `identity` with its passwordless keys: the second step at once
    /// (the identifier is known).
    pub(crate) fn reauthentication_key_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> Result<()> {
        let has_keys = KeyList::of(identity, Method::WebAuthn)
            .credentials
            .iter()
            .any(|k| k.is_passwordless);
        if !self.passwordless_keys_enabled() || flow.flow_type != FlowType::Browser || !has_keys {
            return Ok(());
        }
        let identifier = self
            .key_identifiers(identity, &KeyList::of(identity, Method::WebAuthn))?
            .into_iter()
            .next()
            .unwrap_or_default();
        self.ask_keys_of(flow, &identifier, Some(identity))
    }

    async fn find_by_key_identifier(&self, identifier: &str) -> Result<Option<Identity>> {
        let found = match self
            .store
            .find_identity_by_identifier(Method::WebAuthn.as_str(), identifier)
            .await?
        {
            Some(i) => Some(i),
            None => {
                let lower = identifier.to_lowercase();
                self.store
                    .find_identity_by_identifier(Method::WebAuthn.as_str(), &lower)
                    .await?
            }
        };
        Ok(found)
    }

    /// Puts the request for `found`'s passwordless keys (a decoy for nobody) into the flow.
    fn ask_keys_of(
        &self,
        flow: &mut Flow,
        identifier: &str,
        found: Option<&Identity>,
    ) -> Result<()> {
        let keys: Vec<Passkey> = found
            .map(|i| {
                let mut list = KeyList::of(i, Method::WebAuthn);
                list.credentials.retain(|k| k.is_passwordless);
                list.keys()
            })
            .unwrap_or_default();
        let rp = self.relying_party(Method::WebAuthn)?;
        let (options, state) = match (found, keys.is_empty()) {
            (Some(i), false) => {
                let (o, s) = rp.start_passkey_authentication(&keys).map_err(internal)?;
                let mut c = ceremony(&s, None)?;
                c.identity = Some(i.id);
                (serde_json::to_value(o).map_err(internal)?, c)
            }
            // Nobody's keys: the request asks for a random credential, and nothing can pass.
            _ => {
                let key = self.code_keys().first().copied().unwrap_or_default();
                decoy_request(&rp, key, identifier)?
            }
        };
        flow.pending.get_or_insert_with(Pending::default).webauthn = Some(state);
        let options = serde_json::to_string(&options).map_err(internal)?;
        // The second step asks for the key alone (Kratos's); a re-authentication keeps the
        // other ways the identity has.
        if flow.refresh {
            flow.ui
                .nodes
                .retain(|n| n.group != "webauthn" && n.name() != "identifier");
        } else {
            flow.ui.nodes.retain(|n| n.name() == "csrf_token");
        }
        let mut id_node = UiNode::input("default", "identifier", "hidden", None);
        id_node.set_value(json!(crate::ui::echo(identifier)));
        let mut trigger = trigger_button(
            "webauthn",
            "webauthn_login_trigger",
            "oryWebAuthnLogin",
            Some(&options),
            msg::continue_label(),
        );
        trigger.set_value(json!(options));
        flow.ui.nodes.extend([
            id_node,
            hidden("webauthn", "webauthn_login", ""),
            script_node(self.public_url()),
            trigger,
        ]);
        flow.ui.messages = vec![msg::prepare()];
        Ok(())
    }

    /// Checks a key's answer to the second step's ceremony: the identity it was asked for,
    /// with the key's counter recorded. `Err` is the message for the form.
    pub(crate) async fn check_passwordless_key(
        &self,
        flow: &Flow,
        response: &str,
        origin: &crate::audit::Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<Identity, UiText>> {
        let cred = match parse_assertion(response) {
            Ok(c) => c,
            Err(text) => return Ok(Err(text)),
        };
        let Some(c) = flow.pending.as_ref().and_then(|p| p.webauthn.clone()) else {
            return Ok(Err(msg::unparsable("this form asked for no key")));
        };
        let Some(identity_id) = c.identity else {
            return Ok(Err(msg::wrong()));
        };
        let Some((state, _)) =
            take_state::<PasskeyAuthentication>(flow.pending.as_ref(), |p| p.webauthn.as_ref())
        else {
            return Ok(Err(msg::wrong()));
        };
        let Some(identity) = self.store.get_identity(identity_id).await? else {
            return Ok(Err(msg::wrong()));
        };
        let result = match self
            .relying_party(Method::WebAuthn)?
            .finish_passkey_authentication(&cred, &state)
        {
            Ok(r) => r,
            Err(e) => {
                self.key_sign_in_failed(&identity, &e.to_string(), origin, now)
                    .await?;
                return Ok(Err(msg::wrong()));
            }
        };
        let mut list = KeyList::of(&identity, Method::WebAuthn);
        if !list.current(&result) {
            let reason = "a key the identity no longer has, or a counter that went back";
            self.key_sign_in_failed(&identity, reason, origin, now)
                .await?;
            return Ok(Err(msg::wrong()));
        }
        list.used::<Passkey>(&result, |k| k.update_credential(&result) == Some(true));
        let mut used = identity.clone();
        let identifiers = self.key_identifiers(&identity, &list)?;
        list.save(&mut used, Method::WebAuthn, identifiers, now);
        match self
            .store
            .update_identity(&mut used, &Effects::none())
            .await
        {
            Ok(()) => Ok(Ok(used)),
            Err(StoreError::Stale) => Ok(Err(msg::wrong())),
            Err(e) => Err(e.into()),
        }
    }

    async fn key_sign_in_failed(
        &self,
        identity: &Identity,
        reason: &str,
        origin: &crate::audit::Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        use crate::audit::{Actor, AuditKind, AuditRecord};
        let record = AuditRecord::new(AuditKind::LoginFailed, Actor::Anonymous, origin, now)
            .about(identity.id)
            .failed("webauthn")
            .details(json!({ "method": "webauthn", "reason": reason }));
        self.store.insert_audit(&record).await?;
        Ok(())
    }

    /// The registration form's key nodes (passwordless mode, browser flows): a name for the
    /// key, and the button that creates it for a new user handle.
    pub(crate) fn passwordless_registration_nodes(&self, flow: &mut Flow) -> Result<Vec<UiNode>> {
        if !self.passwordless_keys_enabled() || flow.flow_type != FlowType::Browser {
            return Ok(vec![]);
        }
        let handle = Uuid::new_v4();
        let (options, state) = self
            .relying_party(Method::WebAuthn)?
            .start_passkey_registration(handle, "security key", "security key", None)
            .map_err(internal)?;
        flow.pending.get_or_insert_with(Pending::default).webauthn =
            Some(ceremony(&state, Some(handle))?);
        let options = serde_json::to_string(&options).map_err(internal)?;
        Ok(key_registration_nodes(
            &options,
            msg::signup_trigger(),
            self.public_url(),
        ))
    }

    /// The key a registration's ceremony made, saved into the new `identity`.
    pub(crate) fn register_key(
        &self,
        flow: &Flow,
        identity: &mut Identity,
        response: &str,
        display_name: &str,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), Refusal>> {
        let mut list = KeyList::default();
        if let Err(refused) =
            self.finish_key_registration(flow, &mut list, response, display_name, now)?
        {
            return Ok(Err(refused));
        }
        let identifiers = self.key_identifiers(identity, &list)?;
        if identifiers.is_empty() {
            let text = crate::ui::msg::generic(
                "No login identifiers found in the traits. Make sure the identity schema marks at least one trait as a password identifier.",
            );
            return Ok(Err((None, text)));
        }
        list.save(identity, Method::WebAuthn, identifiers, now);
        Ok(Ok(()))
    }
}

/// A sign-in request for credentials nobody holds, shaped like an account's: the same
/// identifier always gets the same one to three ids of the lengths authenticators use
/// (derived from `secrets.default` and the identifier), so asking twice tells nothing.
fn decoy_request(
    rp: &webauthn_rs::Webauthn,
    key: &[u8],
    identifier: &str,
) -> Result<(Value, super::Ceremony)> {
    use hmac::{Hmac, Mac};
    let (options, state) = rp.start_discoverable_authentication().map_err(internal)?;
    let mut options = serde_json::to_value(options).map_err(internal)?;
    let seed = |label: &[u8]| -> Vec<u8> {
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
            // HMAC takes keys of any length; this arm is never taken.
            return vec![0; 32];
        };
        mac.update(b"portcullis decoy credential\0");
        mac.update(identifier.to_lowercase().as_bytes());
        mac.update(label);
        mac.finalize().into_bytes().to_vec()
    };
    let shape = seed(b"shape");
    let count = 1 + usize::from(shape.first().copied().unwrap_or(0) % 3);
    let ids: Vec<Value> = (0..count)
        .map(|i| {
            let pick = usize::from(shape.get(i + 1).copied().unwrap_or(0) % 4);
            let len = [32usize, 64, 48, 16].get(pick).copied().unwrap_or(32);
            let mut bytes = seed(&[b'a' + u8::try_from(i).unwrap_or(0)]);
            bytes.extend(seed(&[b'A' + u8::try_from(i).unwrap_or(0)]));
            bytes.truncate(len);
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            json!({ "type": "public-key", "id": id })
        })
        .collect();
    if let Some(o) = options.as_object_mut() {
        o.remove("mediation");
    }
    if let Some(pk) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        pk.remove("extensions");
        pk.insert("allowCredentials".into(), Value::Array(ids));
    }
    Ok((options, ceremony(&state, None)?))
}
