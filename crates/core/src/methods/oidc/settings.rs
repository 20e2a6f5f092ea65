//! Linking and unlinking providers in settings (`link` / `unlink`, Kratos's
//! `strategy_settings.go`): a link goes through the provider like a sign-in and comes back to
//! the settings flow; an unlink happens in the request, never for the last way to sign in.
//! Both need a privileged session, like a password change.

use super::{Landed, Provider};
use crate::audit::{AuditKind, Origin};
use crate::error::{Error, SubmitResult};
use crate::flow::{Flow, FlowKind, FlowType};
use crate::identity::Identity;
use crate::methods::{webauthn::KeyList, Method};
use crate::selfservice::web_hook::Stage;
use crate::service::{Caller, Core};
use crate::ui::{msg, UiNode, UiText};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The providers `identity` has linked, by config id.
pub(crate) fn linked_providers(identity: &Identity) -> Vec<String> {
    identity
        .credentials
        .get("oidc")
        .map(|c| {
            c.identifiers
                .iter()
                .filter_map(|i| i.split_once(':').map(|(p, _)| p.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Core {
    /// How many ways `identity` has to sign in on its own (Kratos's first-factor count): a
    /// password, each linked provider, passwordless keys and passkeys, codes by e-mail.
    pub(crate) fn sign_in_ways(&self, identity: &Identity) -> usize {
        let password = usize::from(identity.password_hash().is_some());
        let mut providers = linked_providers(identity);
        providers.sort();
        providers.dedup();
        let providers = providers.len();
        let keys = if self.passwordless_keys_enabled() {
            KeyList::of(identity, Method::WebAuthn)
                .credentials
                .iter()
                .filter(|k| k.is_passwordless)
                .count()
        } else {
            0
        };
        let passkeys = KeyList::of(identity, Method::Passkey).credentials.len();
        let code = usize::from(
            self.config.selfservice.methods.code.passwordless_enabled
                && identity.credentials.contains_key("code"),
        );
        password + providers + keys + passkeys + code
    }

    /// The settings form's provider buttons (browser flows, as Kratos v1.3): "Link …" for each
    /// provider not linked, "Unlink …" for each linked one while it is not the last way in.
    pub(crate) fn oidc_settings_nodes(&self, flow: &Flow, identity: &Identity) -> Vec<UiNode> {
        if !self.oidc_enabled() || flow.flow_type != FlowType::Browser {
            return vec![];
        }
        let linked = linked_providers(identity);
        let can_unlink = self.sign_in_ways(identity) >= 2;
        let button = |name: &str, id: u32, verb: &str, p: &Provider| {
            let label = UiText {
                context: Some(json!({ "provider": p.label() })),
                ..UiText::info(id, format!("{verb} {}", p.label()))
            };
            UiNode::input("oidc", name, "submit", Some(label)).with_attr("value", json!(p.id()))
        };
        self.oidc
            .list
            .iter()
            .filter_map(|p| match linked.iter().any(|l| l == p.id()) {
                false => Some(button("link", 1050002, "Link", p)),
                true if can_unlink => Some(button("unlink", 1050003, "Unlink", p)),
                true => None,
            })
            .collect()
    }

    /// A settings submit with `link` or `unlink`: a link leaves for the provider (always an
    /// error to the submit, as for a sign-in); an unlink is saved here.
    pub(crate) async fn oidc_settings(
        &self,
        flow: &mut Flow,
        identity: &mut Identity,
        link: Option<String>,
        unlink: Option<String>,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> SubmitResult<()> {
        flow.active = Some(Method::Oidc.as_str().into());
        let refuse = |flow: &mut Flow, why: &str| {
            flow.ui.messages.push(msg::generic(why));
        };
        match (link, unlink) {
            (Some(_), Some(_)) => {
                refuse(
                    flow,
                    "it is not possible to link and unlink providers in the same request",
                );
                Err(self.reject(flow, Some(identity), now).await)
            }
            (Some(id), None) => {
                let linkable =
                    self.oidc.get(&id).is_some() && !linked_providers(identity).contains(&id);
                if !linkable {
                    refuse(
                        flow,
                        "can not link unknown or already existing OpenID Connect connection",
                    );
                    return Err(self.reject(flow, Some(identity), now).await);
                }
                Err(self
                    .start_oidc(flow, &id, json!({}), &Value::Null, now)
                    .await)
            }
            (None, Some(id)) => {
                if !linked_providers(identity).contains(&id) {
                    refuse(
                        flow,
                        "can not unlink non-existing OpenID Connect connection",
                    );
                    return Err(self.reject(flow, Some(identity), now).await);
                }
                if self.sign_in_ways(identity) < 2 {
                    refuse(flow, "can not unlink OpenID Connect connection because it is the last remaining first factor credential");
                    return Err(self.reject(flow, Some(identity), now).await);
                }
                unlink_provider(identity, &id, now);
                self.save_credential_change(
                    identity,
                    AuditKind::IdentityCredentialsChanged,
                    Method::Oidc,
                    origin,
                    now,
                )
                .await?;
                Ok(())
            }
            (None, None) => Err(Error::bad_request("`link` or `unlink` is required.").into()),
        }
    }

    /// A settings flow's answer from the provider: the provider account joins the flow's
    /// identity, unless another identity has it.
    pub(super) async fn link_in_settings(
        &self,
        mut flow: Flow,
        p: &Provider,
        credential: crate::identity::Credential,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let Some((_, signed_in)) = &caller.session else {
            return Err(Error::SessionInactive.into());
        };
        if flow.identity_id != Some(signed_in.id) {
            return Err(Error::IdentityMismatch.into());
        }
        // Still privileged when the provider answers, not only when the link was asked for.
        if let Some((session, _)) = &caller.session {
            if !self.is_privileged(session, now) {
                return Err(self.refresh_required(flow.id).into());
            }
        }
        let mut identity = self
            .store
            .get_identity(signed_in.id)
            .await?
            .ok_or(Error::SessionInactive)?;
        let identifier = credential.identifiers.first().cloned().unwrap_or_default();
        let owner = self
            .store
            .find_identity_by_identifier("oidc", &identifier)
            .await?;
        if owner.is_some() || linked_providers(&identity).iter().any(|l| l == p.id()) {
            flow.ui.messages.push(msg::duplicate_credentials());
            return Err(self.reject(&mut flow, Some(&identity), now).await);
        }
        let entry = credential
            .config
            .pointer("/providers/0")
            .cloned()
            .unwrap_or(Value::Null);
        super::link::add_link(&mut identity, &identifier, entry, now);
        self.save_credential_change(
            &mut identity,
            AuditKind::IdentityCredentialsChanged,
            Method::Oidc,
            &caller.origin(),
            now,
        )
        .await?;
        self.render_settings_nodes(&mut flow, &identity, false)?;
        flow.state = "success".into();
        flow.ui.messages = vec![msg::settings_saved()];
        flow.updated_at = now;
        self.store.update_flow(&flow).await?;
        // The settings hooks that run once a change is stored: the link is stored now (those
        // that parse ran when it was asked for).
        let hooks = self.config.after(FlowKind::Settings).hooks_for("oidc");
        let _ = self
            .run_web_hooks(
                hooks.unwrap_or_default(),
                Stage::PostPersist,
                &flow,
                Some(&mut identity),
                caller,
            )
            .await;
        Ok(Landed::Flow(Box::new(flow)))
    }
}

/// Removes every link of provider `id` from the identity's `oidc` credential (the credential
/// with it, when none is left).
fn unlink_provider(identity: &mut Identity, id: &str, now: OffsetDateTime) {
    let prefix = format!("{id}:");
    let empty = match identity.credentials.get_mut("oidc") {
        Some(c) => {
            c.identifiers.retain(|i| !i.starts_with(&prefix));
            if let Some(list) = c.config.get_mut("providers").and_then(Value::as_array_mut) {
                list.retain(|e| e.get("provider").and_then(Value::as_str) != Some(id));
            }
            c.updated_at = now;
            c.identifiers.is_empty()
        }
        None => false,
    };
    if empty {
        identity.credentials.remove("oidc");
    }
}
