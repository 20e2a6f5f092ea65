//! The `passkey` method: discoverable WebAuthn credentials that sign in on their own (aal1,
//! as in Kratos), with no identifier typed: the authenticator names the account by its user
//! handle. Registration makes one with a new account, settings adds and removes them, and
//! the login form offers them both from a button and from the browser's autofill
//! (conditional mediation). Ceremonies and storage are shared with security keys
//! (`webauthn.rs`); passkeys demand user verification (webauthn-rs's passkey policy).

use super::factor::Pending;
use super::webauthn::{
    ceremony, hidden, parse_assertion, parse_response, script_node, take_state, trigger_button,
    KeyList,
};
use super::Method;
use crate::audit::{Actor, AuditKind, Origin};
use crate::error::{Error, Result};
use crate::flow::{Flow, FlowType};
use crate::identity::Identity;
use crate::service::Core;
use crate::store::{Effects, StoreError};
use crate::ui::{UiNode, UiText};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, RegisterPublicKeyCredential,
};

pub mod msg {
    use crate::ui::UiText;
    use serde_json::json;

    pub fn login_trigger() -> UiText {
        UiText::info(1010021, "Sign in with passkey")
    }
    pub fn register_trigger() -> UiText {
        UiText::info(1040007, "Sign up with passkey")
    }
    pub fn settings_trigger() -> UiText {
        UiText::info(1050019, "Add passkey")
    }
    pub fn remove(name: &str, added_at: &str, unix: i64) -> UiText {
        let mut t = UiText::info(1050020, format!("Remove passkey \"{name}\""));
        t.context =
            Some(json!({ "display_name": name, "added_at": added_at, "added_at_unix": unix }));
        t
    }
    pub fn last_one() -> UiText {
        UiText::error(
            4000001,
            "unable to remove this passkey because it would lock you out of your account",
            Some(
                json!({ "reason": "unable to remove this passkey because it would lock you out of your account" }),
            ),
        )
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("passkey: {e}"))
}

/// Creation options as the script reads them from `passkey_create_data`: discoverable
/// (resident) credentials required, as Kratos asks for (webauthn-rs leaves it to the
/// authenticator, and many would make a credential that cannot sign in without a name).
fn create_data(
    options: &webauthn_rs::prelude::CreationChallengeResponse,
    name_field: Option<String>,
) -> Result<String> {
    let mut options = serde_json::to_value(options).map_err(internal)?;
    if let Some(pk) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        let sel = pk
            .entry("authenticatorSelection")
            .or_insert_with(|| json!({}));
        if let Some(sel) = sel.as_object_mut() {
            sel.insert("residentKey".into(), json!("required"));
            sel.insert("requireResidentKey".into(), json!(true));
        }
    }
    let mut data = json!({ "credentialOptions": options });
    if let (Some(field), Some(o)) = (name_field, data.as_object_mut()) {
        o.insert("displayNameFieldName".into(), json!(field));
    }
    serde_json::to_string(&data).map_err(internal)
}

impl Core {
    pub(crate) fn passkeys_enabled(&self) -> bool {
        self.config.selfservice.methods.passkey.enabled
    }

    /// The login form's passkey nodes (browser flows): a discoverable ceremony, offered by a
    /// button and to the browser's autofill of the identifier field.
    pub(crate) fn passkey_login_nodes(&self, flow: &mut Flow) -> Result<Vec<UiNode>> {
        if !self.passkeys_enabled() || flow.flow_type != FlowType::Browser {
            return Ok(vec![]);
        }
        let (options, state) = self
            .relying_party(Method::Passkey)?
            .start_discoverable_authentication()
            .map_err(internal)?;
        flow.pending.get_or_insert_with(Pending::default).passkey = Some(ceremony(&state, None)?);
        // The script adds conditional mediation itself; the options carry none.
        let mut options = serde_json::to_value(&options).map_err(internal)?;
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        let options = serde_json::to_string(&options).map_err(internal)?;
        let onload = |n: UiNode| {
            n.with_attr("onload", json!("window.oryPasskeyLoginAutocompleteInit()"))
                .with_attr("onloadTrigger", json!("oryPasskeyLoginAutocompleteInit"))
        };
        let mut trigger = trigger_button(
            "passkey",
            "passkey_login_trigger",
            "oryPasskeyLogin",
            None,
            msg::login_trigger(),
        );
        trigger.set_value(json!(""));
        Ok(vec![
            script_node(self.public_url()),
            onload(trigger),
            onload(hidden("passkey", "passkey_login", "")),
            hidden("passkey", "passkey_challenge", &options),
        ])
    }

    /// Checks a passkey's answer to the login form's ceremony: the identity its user handle
    /// names, when the key is one of its passkeys and the signature holds (with the key's
    /// counter recorded). `Err` is the message for the form.
    pub(crate) async fn check_passkey(
        &self,
        flow: &Flow,
        response: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<Identity, UiText>> {
        use super::webauthn::msg::{unparsable, wrong};
        let cred = match parse_assertion(response) {
            Ok(c) => c,
            Err(text) => return Ok(Err(text)),
        };
        let Some((state, _)) =
            take_state::<DiscoverableAuthentication>(flow.pending.as_ref(), |p| p.passkey.as_ref())
        else {
            return Ok(Err(unparsable("this form started no passkey sign-in")));
        };
        let rp = self.relying_party(Method::Passkey)?;
        // Unknown handles and keys are answered as a wrong signature: nothing tells an
        // account that exists from one that does not.
        let Ok((handle, cred_id)) = rp.identify_discoverable_authentication(&cred) else {
            return Ok(Err(wrong()));
        };
        let Some(identity) = self
            .store
            .find_identity_by_identifier(Method::Passkey.as_str(), &handle.to_string())
            .await?
        else {
            return Ok(Err(wrong()));
        };
        let mut list = KeyList::of(&identity, Method::Passkey);
        let stored = list
            .find(cred_id)
            .and_then(|k| serde_json::from_value::<Passkey>(k.key.clone()).ok());
        let Some(passkey) = stored else {
            return Ok(Err(wrong()));
        };
        let result = match rp.finish_discoverable_authentication_v2(&cred, state, &passkey) {
            Ok(r) => r,
            Err(e) => {
                self.passkey_failed(&identity, &e.to_string(), origin, now)
                    .await?;
                return Ok(Err(wrong()));
            }
        };
        list.used::<Passkey>(&result, |k| k.update_credential(&result) == Some(true));
        let mut used = identity.clone();
        list.save(&mut used, Method::Passkey, vec![handle.to_string()], now);
        match self
            .store
            .update_identity(&mut used, &Effects::none())
            .await
        {
            Ok(()) => Ok(Ok(used)),
            Err(StoreError::Stale) => Ok(Err(wrong())),
            Err(e) => Err(e.into()),
        }
    }

    async fn passkey_failed(
        &self,
        identity: &Identity,
        reason: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<()> {
        let record =
            crate::audit::AuditRecord::new(AuditKind::LoginFailed, Actor::Anonymous, origin, now)
                .about(identity.id)
                .failed("passkey")
                .details(json!({ "method": "passkey", "reason": reason }));
        self.store.insert_audit(&record).await?;
        Ok(())
    }

    /// The registration form's passkey nodes (browser flows): the creation options for a
    /// new user handle, named from the trait the script reads (`displayNameFieldName`).
    pub(crate) fn passkey_registration_nodes(&self, flow: &mut Flow) -> Result<Vec<UiNode>> {
        if !self.passkeys_enabled() || flow.flow_type != FlowType::Browser {
            return Ok(vec![]);
        }
        let handle = Uuid::new_v4();
        let (field, _) = self.default_schema()?.passkey_display_name(&json!({}));
        // The script puts the typed name in; this one shows only without it.
        let (options, state) = self
            .relying_party(Method::Passkey)?
            .start_passkey_registration(handle, "passkey", "passkey", None)
            .map_err(internal)?;
        flow.pending.get_or_insert_with(Pending::default).passkey =
            Some(ceremony(&state, Some(handle))?);
        let mut trigger = trigger_button(
            "passkey",
            "passkey_register_trigger",
            "oryPasskeyRegistration",
            None,
            msg::register_trigger(),
        );
        trigger.set_value(json!(""));
        Ok(vec![
            script_node(self.public_url()),
            hidden("passkey", "passkey_register", ""),
            trigger,
            hidden(
                "passkey",
                "passkey_create_data",
                &create_data(&options, field)?,
            ),
        ])
    }

    /// The passkey a form's ceremony made, added to `identity`'s passkeys (named from its
    /// traits) and saved into the identity: checked against the ceremony, not one it has
    /// already, within the cap, and for the user handle its passkeys have. `Err` is the
    /// message for the form.
    pub(crate) fn add_passkey(
        &self,
        flow: &Flow,
        identity: &mut Identity,
        response: &str,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), UiText>> {
        use super::webauthn::msg::{not_registered, unparsable};
        let reg: RegisterPublicKeyCredential = match parse_response(response) {
            Ok(r) => r,
            Err(text) => return Ok(Err(text)),
        };
        let Some((state, Some(handle))) =
            take_state::<PasskeyRegistration>(flow.pending.as_ref(), |p| p.passkey.as_ref())
        else {
            return Ok(Err(unparsable("this form started no passkey registration")));
        };
        let key = match self
            .relying_party(Method::Passkey)?
            .finish_passkey_registration(&reg, &state)
        {
            Ok(k) => k,
            Err(e) => return Ok(Err(not_registered(&e.to_string()))),
        };
        let mut list = KeyList::of(identity, Method::Passkey);
        if list.find(key.cred_id().as_ref()).is_some() {
            return Ok(Err(not_registered("the passkey is registered already")));
        }
        if list.credentials.len() >= super::webauthn::MAX_KEYS {
            return Ok(Err(not_registered("there are too many passkeys already")));
        }
        // Another form added the first passkey meanwhile, under another user handle: this
        // one's would never sign in.
        if list.handle().is_some_and(|h| h != handle) {
            return Ok(Err(not_registered(
                "the form is out of date; please try again",
            )));
        }
        let (_, name) = self
            .schema(&identity.schema_id)?
            .passkey_display_name(&identity.traits);
        list.user_handle = base64_of(handle);
        let record = serde_json::to_value(&key).map_err(internal)?;
        let name = name.unwrap_or_default();
        list.add(key.cred_id().as_ref(), record, &name, true, now);
        list.save(identity, Method::Passkey, vec![handle.to_string()], now);
        Ok(Ok(()))
    }

    /// Whether removing one passkey leaves `identity` a way to sign in: another passkey, a
    /// password, or (with sign-in by code) an address sign-in by code finds it by (a password
    /// identifier or a `code` credential; see `login_code.rs`).
    fn can_lose_a_passkey(&self, identity: &Identity, list: &KeyList) -> bool {
        let has = |m: Method| identity.credentials.contains_key(m.as_str());
        let keys = KeyList::of(identity, Method::WebAuthn);
        list.credentials.len() > 1
            || has(Method::Password)
            || (self.passwordless_keys_enabled()
                && keys.credentials.iter().any(|k| k.is_passwordless))
            || (self.config.selfservice.methods.code.passwordless_enabled && has(Method::Code))
            || has(Method::Oidc)
    }

    /// The settings form's passkey nodes (browser flows): a remove button per passkey
    /// (disabled for the last way to sign in) and the button that adds one.
    pub(crate) fn passkey_settings_nodes(
        &self,
        flow: &mut Flow,
        identity: &Identity,
    ) -> Result<Vec<UiNode>> {
        if !self.passkeys_enabled() || flow.flow_type != FlowType::Browser {
            return Ok(vec![]);
        }
        let list = KeyList::of(identity, Method::Passkey);
        let locked = !self.can_lose_a_passkey(identity, &list);
        let handle = list.handle().unwrap_or_else(Uuid::new_v4);
        let (_, name) = self
            .schema(&identity.schema_id)?
            .passkey_display_name(&identity.traits);
        let name = name.unwrap_or_else(|| identity.id.to_string());
        let (options, state) = self
            .relying_party(Method::Passkey)?
            .start_passkey_registration(handle, &name, &name, Some(list.ids()))
            .map_err(internal)?;
        flow.pending.get_or_insert_with(Pending::default).passkey =
            Some(ceremony(&state, Some(handle))?);
        let mut trigger = trigger_button(
            "passkey",
            "passkey_register_trigger",
            "oryPasskeySettingsRegistration",
            None,
            msg::settings_trigger(),
        );
        trigger.set_value(json!(""));
        let mut nodes = vec![trigger];
        nodes.extend(list.remove_nodes("passkey", "passkey_remove", msg::remove, locked));
        nodes.extend([
            hidden("passkey", "passkey_settings_register", ""),
            hidden(
                "passkey",
                "passkey_create_data",
                &create_data(&options, None)?,
            ),
            script_node(self.public_url()),
        ]);
        Ok(nodes)
    }

    /// Adds the passkey of the settings form's ceremony to `identity`.
    pub(crate) async fn link_passkey(
        &self,
        flow: &Flow,
        identity: &mut Identity,
        response: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), UiText>> {
        if let Err(text) = self.add_passkey(flow, identity, response, now)? {
            return Ok(Err(text));
        }
        let (kind, method) = (AuditKind::SecondFactorAdded, Method::Passkey);
        self.save_credential_change(identity, kind, method, origin, now)
            .await?;
        Ok(Ok(()))
    }

    /// Removes the passkey `hex_id`, unless it is the last way `identity` signs in.
    pub(crate) async fn remove_passkey(
        &self,
        identity: &mut Identity,
        hex_id: &str,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), UiText>> {
        let mut list = KeyList::of(identity, Method::Passkey);
        if !self.can_lose_a_passkey(identity, &list) {
            return Ok(Err(msg::last_one()));
        }
        let handle = list.handle().map(|h| h.to_string()).unwrap_or_default();
        if !list.remove_hex(hex_id) {
            return Ok(Err(super::webauthn::msg::no_device()));
        }
        list.save(identity, Method::Passkey, vec![handle], now);
        self.save_credential_change(
            identity,
            AuditKind::SecondFactorRemoved,
            Method::Passkey,
            origin,
            now,
        )
        .await?;
        Ok(Ok(()))
    }
}

fn base64_of(handle: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(handle.as_bytes())
}
