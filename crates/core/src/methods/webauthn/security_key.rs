//! Security keys in settings, in either mode of the `webauthn` method: as a second factor
//! (Kratos's default: touching the key is enough) or, with `passwordless`, as a way to sign
//! in on their own (the key must verify its user, webauthn-rs's passkey policy, and the last
//! way into the account cannot be removed). Also the second step of a sign-in, which asks a
//! second-factor key.

use super::{
    b64, ceremony, hidden, internal, key_registration_nodes, msg, parse_assertion, parse_response,
    script_node, take_state, trigger_button, KeyList, MAX_DISPLAY_NAME, MAX_KEYS,
};
use crate::audit::{AuditKind, Origin};
use crate::error::Result;
use crate::flow::{Flow, FlowType};
use crate::identity::Identity;
use crate::methods::factor::{Checked, Pending};
use crate::methods::Method;
use crate::service::Core;
use crate::store::{Effects, StoreError};
use crate::ui::{UiNode, UiText};
use base64::Engine;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyRegistration, RegisterPublicKeyCredential, SecurityKey,
    SecurityKeyAuthentication, SecurityKeyRegistration,
};

/// A message for the form, and the node it belongs to (none: the whole form).
pub(crate) type Refusal = (Option<&'static str>, UiText);

impl Core {
    /// Security keys are on as a second factor (`selfservice.methods.webauthn`).
    pub(crate) fn security_keys_enabled(&self) -> bool {
        let w = &self.config.selfservice.methods.webauthn;
        w.enabled && !w.config.passwordless
    }

    /// Security keys are on as a first factor (`webauthn.config.passwordless`).
    pub(crate) fn passwordless_keys_enabled(&self) -> bool {
        let w = &self.config.selfservice.methods.webauthn;
        w.enabled && w.config.passwordless
    }

    /// What the identity's keys are identified by: its id for second-factor keys; the
    /// identifiers it signs in with for passwordless ones (the first sign-in step asks one).
    pub(crate) fn key_identifiers(
        &self,
        identity: &Identity,
        list: &KeyList,
    ) -> Result<Vec<String>> {
        if !list.credentials.iter().any(|k| k.is_passwordless) {
            return Ok(vec![identity.id.to_string()]);
        }
        let schema = self.schema(&identity.schema_id)?;
        Ok(schema.derive(&identity.traits).password_identifiers)
    }

    /// Whether removing one passwordless key leaves `identity` another way in.
    fn can_lose_a_key(&self, identity: &Identity, list: &KeyList) -> bool {
        let has = |m: Method| identity.credentials.contains_key(m.as_str());
        list.credentials
            .iter()
            .filter(|k| k.is_passwordless)
            .count()
            > 1
            || has(Method::Password)
            || (self.passkeys_enabled() && has(Method::Passkey))
            || (self.config.selfservice.methods.code.passwordless_enabled && has(Method::Code))
    }

    /// The settings form's security-key nodes: a remove button per key, a name for a new one
    /// and the button that registers it (a fresh ceremony, kept in the flow). Browser flows
    /// only: an app cannot run a ceremony for this origin.
    pub(crate) fn webauthn_settings_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> Result<Vec<UiNode>> {
        let passwordless = self.passwordless_keys_enabled();
        if !(self.security_keys_enabled() || passwordless) || flow.flow_type != FlowType::Browser {
            return Ok(vec![]);
        }
        let list = KeyList::of(identity, Method::WebAuthn);
        let locked = passwordless && !self.can_lose_a_key(identity, &list);
        let mut nodes = list.remove_nodes("webauthn", "webauthn_remove", msg::remove, locked);
        if locked {
            for n in &mut nodes {
                n.messages.push(msg::last_key());
            }
        }
        let schema = self.schema(&identity.schema_id)?;
        let account = schema
            .totp_account_name(&identity.traits)
            .unwrap_or_else(|| identity.id.to_string());
        let rp = self.relying_party(Method::WebAuthn)?;
        let exclude = Some(list.ids());
        let (options, state) = if passwordless {
            let handle = list.handle().unwrap_or_else(Uuid::new_v4);
            let (o, s) = rp
                .start_passkey_registration(handle, &account, &account, exclude)
                .map_err(internal)?;
            (o, ceremony(&s, Some(handle))?)
        } else {
            let (o, s) = rp
                .start_securitykey_registration(
                    identity.id,
                    &account,
                    &account,
                    exclude,
                    None,
                    None,
                )
                .map_err(internal)?;
            (o, ceremony(&s, None)?)
        };
        flow.pending.get_or_insert_with(Pending::default).webauthn = Some(state);
        let options = serde_json::to_string(&options).map_err(internal)?;
        nodes.extend(key_registration_nodes(
            &options,
            msg::register_trigger(),
            self.public_url(),
        ));
        Ok(nodes)
    }

    /// The key the settings form's (or a passwordless registration's) ceremony made, added to
    /// `list`: webauthn-rs's record of it, checked against the ceremony in `flow`.
    pub(crate) fn finish_key_registration(
        &self,
        flow: &Flow,
        list: &mut KeyList,
        response: &str,
        display_name: &str,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), Refusal>> {
        let name = display_name.trim();
        let field = Some("webauthn_register_displayname");
        if name.is_empty() {
            return Ok(Err((
                field,
                crate::ui::msg::required("webauthn_register_displayname"),
            )));
        }
        if name.chars().count() > MAX_DISPLAY_NAME {
            let long = crate::ui::msg::max_length(MAX_DISPLAY_NAME as u64, name.chars().count());
            return Ok(Err((field, long)));
        }
        let reg: RegisterPublicKeyCredential = match parse_response(response) {
            Ok(r) => r,
            Err(text) => return Ok(Err((None, text))),
        };
        let rp = self.relying_party(Method::WebAuthn)?;
        let made = if self.passwordless_keys_enabled() {
            let Some((state, Some(handle))) =
                take_state::<PasskeyRegistration>(flow.pending.as_ref(), |p| p.webauthn.as_ref())
            else {
                return Ok(Err((
                    None,
                    msg::unparsable("this form started no registration"),
                )));
            };
            if list.handle().is_some_and(|h| h != handle) {
                return Ok(Err((
                    None,
                    msg::not_registered("the form is out of date; please try again"),
                )));
            }
            list.user_handle = b64().encode(handle.as_bytes());
            rp.finish_passkey_registration(&reg, &state)
                .map(|k: Passkey| (k.cred_id().to_vec(), serde_json::to_value(&k)))
        } else {
            let Some((state, _)) =
                take_state::<SecurityKeyRegistration>(flow.pending.as_ref(), |p| {
                    p.webauthn.as_ref()
                })
            else {
                return Ok(Err((
                    None,
                    msg::unparsable("this form started no registration"),
                )));
            };
            rp.finish_securitykey_registration(&reg, &state)
                .map(|k: SecurityKey| (k.cred_id().to_vec(), serde_json::to_value(&k)))
        };
        let (id, record) = match made {
            Ok((id, record)) => (id, record.map_err(internal)?),
            Err(e) => return Ok(Err((None, msg::not_registered(&e.to_string())))),
        };
        if list.find(&id).is_some() {
            return Ok(Err((
                None,
                msg::not_registered("the key is registered already"),
            )));
        }
        if list.credentials.len() >= MAX_KEYS {
            return Ok(Err((
                None,
                msg::not_registered("there are too many keys already"),
            )));
        }
        list.add(&id, record, name, self.passwordless_keys_enabled(), now);
        Ok(Ok(()))
    }

    /// Registers the key of the ceremony the settings form started.
    pub(crate) async fn link_security_key(
        &self,
        flow: &Flow,
        identity: &mut Identity,
        response: &str,
        display_name: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), Refusal>> {
        let mut list = KeyList::of(identity, Method::WebAuthn);
        if let Err(refused) =
            self.finish_key_registration(flow, &mut list, response, display_name, now)?
        {
            return Ok(Err(refused));
        }
        if list.user_handle.is_empty() {
            list.user_handle = b64().encode(identity.id.as_bytes());
        }
        let identifiers = self.key_identifiers(identity, &list)?;
        list.save(identity, Method::WebAuthn, identifiers, now);
        self.save_credential_change(
            identity,
            AuditKind::SecondFactorAdded,
            Method::WebAuthn,
            origin,
            now,
        )
        .await?;
        Ok(Ok(()))
    }

    /// Removes the key `hex_id` of `identity`, unless it is the last way in.
    pub(crate) async fn remove_security_key(
        &self,
        identity: &mut Identity,
        hex_id: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), UiText>> {
        let mut list = KeyList::of(identity, Method::WebAuthn);
        if self.passwordless_keys_enabled() && !self.can_lose_a_key(identity, &list) {
            return Ok(Err(msg::last_key()));
        }
        if !list.remove_hex(hex_id) {
            return Ok(Err(msg::no_device()));
        }
        let identifiers = self.key_identifiers(identity, &list)?;
        list.save(identity, Method::WebAuthn, identifiers, now);
        self.save_credential_change(
            identity,
            AuditKind::SecondFactorRemoved,
            Method::WebAuthn,
            origin,
            now,
        )
        .await?;
        Ok(Ok(()))
    }

    /// The second step's security-key nodes (a browser flow of an identity with keys): the
    /// button that asks for one of them, the answer's field and the script.
    pub(crate) fn security_key_login_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> Result<Vec<UiNode>> {
        let list = KeyList::of(identity, Method::WebAuthn);
        let keys: Vec<SecurityKey> = list.keys();
        if !self.security_keys_enabled() || flow.flow_type != FlowType::Browser || keys.is_empty() {
            return Ok(vec![]);
        }
        let (options, state) = self
            .relying_party(Method::WebAuthn)?
            .start_securitykey_authentication(&keys)
            .map_err(internal)?;
        flow.pending.get_or_insert_with(Pending::default).webauthn = Some(ceremony(&state, None)?);
        let options = serde_json::to_string(&options).map_err(internal)?;
        let mut trigger = trigger_button(
            "webauthn",
            "webauthn_login_trigger",
            "oryWebAuthnLogin",
            Some(&options),
            msg::login_trigger(),
        );
        trigger.set_value(json!(options));
        Ok(vec![
            hidden("webauthn", "webauthn_login", ""),
            script_node(self.public_url()),
            trigger,
        ])
    }

    /// Checks a security key's answer to the second step's ceremony and records its counter.
    pub(crate) async fn check_security_key(
        &self,
        flow: &Flow,
        identity: &Identity,
        response: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<Checked> {
        let mut list = KeyList::of(identity, Method::WebAuthn);
        if list.credentials.is_empty() {
            return Ok(Checked::Refused(msg::no_device()));
        }
        self.admit_second_factor(identity.id, now).await?;
        let cred = match parse_assertion(response) {
            Ok(c) => c,
            Err(text) => return Ok(Checked::Refused(text)),
        };
        let Some((state, _)) =
            take_state::<SecurityKeyAuthentication>(flow.pending.as_ref(), |p| p.webauthn.as_ref())
        else {
            return Ok(Checked::Refused(msg::no_device()));
        };
        let result = match self
            .relying_party(Method::WebAuthn)?
            .finish_securitykey_authentication(&cred, &state)
        {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("webauthn: {e}");
                self.second_factor_failed(identity.id, Method::WebAuthn, &reason, origin, now)
                    .await?;
                return Ok(Checked::Refused(msg::wrong()));
            }
        };
        // The flow's ceremony names the keys the identity had when it started: the key must
        // still be one of its keys now, and its counter must have moved on from the stored one.
        if !list.current(&result) {
            let reason = "webauthn: a key the identity no longer has, or a counter that went back";
            self.second_factor_failed(identity.id, Method::WebAuthn, reason, origin, now)
                .await?;
            return Ok(Checked::Refused(msg::wrong()));
        }
        list.used::<SecurityKey>(&result, |k| k.update_credential(&result) == Some(true));
        let mut used = identity.clone();
        let identifiers = self.key_identifiers(identity, &list)?;
        list.save(&mut used, Method::WebAuthn, identifiers, now);
        // The identity's version makes this answer count once (see `check_totp`).
        match self
            .store
            .update_identity(&mut used, &Effects::none())
            .await
        {
            Ok(()) => Ok(Checked::Accepted(Box::new(used))),
            Err(StoreError::Stale) => Ok(Checked::Refused(msg::wrong())),
            Err(e) => Err(e.into()),
        }
    }
}
