//! Account linking, as Kratos does it (1010016): a provider account whose address another
//! identity already has is never joined to it by itself. The user is asked to sign in to that
//! identity with what it already has (its password, a code, a passkey, another provider) on a
//! login flow that carries the provider account ([`Link`]); the sign-in joins it, if the
//! identity that signed in owns the address. Anyone can make a provider account claim any
//! address, so the address alone proves nothing.

use super::provider::Provider;
use super::Landed;
use crate::audit::{AuditKind, Origin};
use crate::error::{Result, SubmitResult};
use crate::flow::Flow;
use crate::identity::{Credential, Identity};
use crate::methods::{Aal, Method};
use crate::service::{Caller, Core};
use crate::ui::UiText;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The provider account a linking login flow joins to the identity that signs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// `<provider>:<subject>`.
    pub identifier: String,
    /// Its entry of the `oidc` credential's `providers` (tokens sealed).
    pub entry: Value,
    /// The address that is taken.
    pub duplicate: String,
}

impl Core {
    /// An identity that already has one of these addresses, and that address.
    pub(super) async fn duplicate_owner(
        &self,
        addresses: &[String],
    ) -> Result<Option<(Identity, String)>> {
        for value in addresses {
            for kind in ["verifiable", "recovery"] {
                if let Some(owner) = self.store.find_identity_by_address(kind, value).await? {
                    return Ok(Some((owner, value.clone())));
                }
            }
        }
        Ok(None)
    }

    /// The login flow that asks the owner of `duplicate` to sign in and so link the provider
    /// account (`credential`, made for the identity that could not be created).
    pub(super) async fn ask_to_link(
        &self,
        registration: &Flow,
        p: &Provider,
        credential: &Credential,
        duplicate: String,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> SubmitResult<Landed> {
        let mut login = self
            .new_login_flow(
                registration.flow_type,
                registration.request_url.clone(),
                false,
                Aal::Aal1,
                None,
                caller,
                now,
            )
            .await?;
        login.return_to = registration.return_to.clone();
        super::carry_exchange(registration, &mut login);
        // The provider just used cannot confirm itself; the others confirm.
        login
            .ui
            .nodes
            .retain(|n| !(n.group == "oidc" && n.attributes.get("value") == Some(&json!(p.id()))));
        for n in &mut login.ui.nodes {
            if n.group == "oidc" {
                let label = n
                    .meta
                    .pointer("/label/context/provider")
                    .cloned()
                    .unwrap_or(Value::Null);
                let text = format!("Confirm with {}", label.as_str().unwrap_or_default());
                n.meta = json!({ "label": UiText {
                    context: Some(json!({ "provider": label })),
                    ..UiText::info(1010018, text)
                }});
            } else if n.meta.pointer("/label/id") == Some(&json!(1010001)) {
                n.meta = json!({ "label": UiText::info(1010017, "Sign in and link") });
            }
            if n.name() == "identifier" {
                if let Some(a) = n.attributes.as_object_mut() {
                    a.insert("type".into(), json!("hidden"));
                }
                n.set_value(json!(duplicate));
            }
        }
        login.ui.messages = vec![UiText {
            context: Some(json!({
                "available_credential_types": [],
                "available_providers": [],
                "duplicateIdentifier": duplicate,
                "duplicate_identifier": duplicate,
                "provider": p.label(),
            })),
            ..UiText::info(
                1010016,
                format!(
                    "You tried to sign in with {duplicate:?}, but that email is already used by another account. Sign in to your account with one of the options below to add your account {duplicate:?} at {:?} as another way to sign in.",
                    p.label()
                ),
            )
        }];
        let identifier = credential.identifiers.first().cloned().unwrap_or_default();
        let entry = credential
            .config
            .pointer("/providers/0")
            .cloned()
            .unwrap_or(Value::Null);
        login.pending.get_or_insert_with(Default::default).link = Some(Link {
            identifier,
            entry,
            duplicate,
        });
        login.updated_at = now;
        self.store.update_flow(&login).await?;
        Ok(Landed::Flow(Box::new(login)))
    }

    /// A sign-in on a linking flow: the provider account joins `identity` if it owns the
    /// taken address (else 4010009 and no sign-in). Any other flow passes untouched.
    pub(crate) async fn link_on_sign_in(
        &self,
        flow: &mut Flow,
        identity: &mut Identity,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> SubmitResult<()> {
        let Some(link) = flow.pending.as_ref().and_then(|p| p.link.clone()) else {
            return Ok(());
        };
        let owns = identity
            .verifiable_addresses
            .iter()
            .map(|a| &a.value)
            .chain(identity.recovery_addresses.iter().map(|a| &a.value))
            .chain(
                identity
                    .credentials
                    .values()
                    .flat_map(|c| c.identifiers.iter()),
            )
            .any(|v| v.eq_ignore_ascii_case(&link.duplicate));
        if !owns {
            flow.ui.reset_messages();
            flow.ui.messages.push(UiText::error(
                4010009,
                "Linked credentials do not match.",
                None,
            ));
            return Err(self.reject(flow, None, now).await);
        }
        let provider = link
            .identifier
            .split_once(':')
            .map(|(p, _)| p)
            .unwrap_or_default();
        let same = identity
            .credentials
            .get("oidc")
            .is_some_and(|c| c.identifiers.contains(&link.identifier));
        if !same
            && super::settings::linked_providers(identity)
                .iter()
                .any(|p| p == provider)
        {
            flow.ui.reset_messages();
            flow.ui.messages.push(crate::ui::msg::generic(
                "can not link unknown or already existing OpenID Connect connection",
            ));
            return Err(self.reject(flow, None, now).await);
        }
        add_link(identity, &link.identifier, link.entry.clone(), now);
        self.save_credential_change(
            identity,
            AuditKind::IdentityCredentialsChanged,
            Method::Oidc,
            origin,
            now,
        )
        .await?;
        if let Some(p) = flow.pending.as_mut() {
            p.link = None;
        }
        Ok(())
    }
}

/// Adds the provider account `identifier` (`<provider>:<subject>`, with its `providers` entry)
/// to the identity's `oidc` credential, making the credential if it has none.
pub(super) fn add_link(
    identity: &mut Identity,
    identifier: &str,
    entry: Value,
    now: OffsetDateTime,
) {
    let credential = identity
        .credentials
        .entry("oidc".into())
        .or_insert_with(|| Credential {
            id: uuid::Uuid::new_v4(),
            kind: "oidc".into(),
            identifiers: vec![],
            config: json!({ "providers": [] }),
            version: 0,
            created_at: now,
            updated_at: now,
        });
    if credential.identifiers.iter().any(|i| i == identifier) {
        return;
    }
    credential.identifiers.push(identifier.to_string());
    match credential
        .config
        .get_mut("providers")
        .and_then(Value::as_array_mut)
    {
        Some(list) => list.push(entry),
        None => credential.config = json!({ "providers": [entry] }),
    }
    credential.updated_at = now;
}
