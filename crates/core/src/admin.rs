//! Admin identity management (the Kratos admin API's use cases).

use crate::audit::{AuditKind, AuditRecord, By};
use crate::error::{Error, Result};
use crate::identity::{Identity, View, STATE_ACTIVE, STATE_INACTIVE};
use crate::password::Hasher;
use crate::service::Core;
use crate::store::{Effects, StoreError};
use crate::webhooks::EventKind;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// `createIdentityBody` / `updateIdentityBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBody {
    pub schema_id: Option<String>,
    pub traits: Option<Value>,
    pub state: Option<String>,
    #[serde(default)]
    pub metadata_public: Option<Value>,
    #[serde(default)]
    pub metadata_admin: Option<Value>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<Value>,
    #[serde(default)]
    pub verifiable_addresses: Option<Vec<AddressBody>>,
    #[serde(default)]
    pub recovery_addresses: Option<Vec<Value>>,
    #[serde(default)]
    pub credentials: Option<CredentialsBody>,
}

#[derive(Debug, Deserialize)]
pub struct AddressBody {
    pub value: String,
    #[serde(default)]
    pub verified: bool,
    pub via: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    pub password: Option<PasswordCredentialBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordCredentialBody {
    pub config: PasswordConfigBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfigBody {
    pub password: Option<String>,
    pub hashed_password: Option<String>,
    #[serde(default)]
    pub use_password_migration_hook: Option<bool>,
}

/// One item of a batch: the created identity's id, or why it was not created.
pub struct BatchItem {
    pub patch_id: Value,
    pub outcome: Result<Uuid>,
}

pub fn parse_body(v: Value) -> Result<IdentityBody> {
    serde_json::from_value(v)
        .map_err(|e| Error::bad_request(format!("The request body is invalid: {e}")))
}

fn validation_error(errors: Vec<(Option<String>, crate::ui::UiText)>) -> Error {
    let reason = errors
        .iter()
        .map(|(node, t)| format!("{}: {}", node.as_deref().unwrap_or("traits"), t.text))
        .collect::<Vec<_>>()
        .join("; ");
    Error::IdentityInvalid {
        reason: format!("The identity does not match its schema: {reason}"),
        errors,
    }
}

impl Core {
    /// Applies a create/replace body to `identity`. `replace` clears omitted metadata (PUT).
    async fn apply_body(
        &self,
        identity: &mut Identity,
        body: IdentityBody,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let schema_id = body
            .schema_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.config.identity.default_schema_id.clone());
        let schema = self.schema(&schema_id)?;
        let traits = body
            .traits
            .ok_or_else(|| Error::bad_request("The field `traits` is required."))?;
        let errors = schema.validate(&traits);
        if !errors.is_empty() {
            return Err(validation_error(errors));
        }
        let derived = schema.derive(&traits);
        identity.schema_id = schema_id;
        identity.traits = traits;
        match body.state.as_deref() {
            None => {}
            Some(s @ (STATE_ACTIVE | STATE_INACTIVE)) => identity.set_state(s, now),
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "The state {other:?} is invalid: expected \"active\" or \"inactive\"."
                )))
            }
        }
        identity.metadata_public = body.metadata_public.filter(|v| !v.is_null());
        identity.metadata_admin = body.metadata_admin.filter(|v| !v.is_null());
        identity.external_id = body.external_id.filter(|s| !s.is_empty());
        let mut password_set = false;
        if let Some(pw) = body.credentials.and_then(|c| c.password) {
            let hash = match (pw.config.password, pw.config.hashed_password) {
                (Some(p), None) if !p.is_empty() => {
                    if let Some(max) = self.hasher.max_password_bytes().filter(|m| p.len() > *m) {
                        return Err(Error::bad_request(format!(
                            "The password is {} bytes long; the configured hasher (bcrypt) accepts at most {max}.",
                            p.len()
                        )));
                    }
                    self.hasher.hash(p).await?
                }
                (None, Some(h)) => {
                    Hasher::check_importable(&h)?;
                    h
                }
                (Some(_), Some(_)) => return Err(Error::bad_request(
                    "Set either credentials.password.config.password or hashed_password, not both.",
                )),
                _ => {
                    return Err(Error::bad_request(
                        "credentials.password.config needs `password` or `hashed_password`.",
                    ))
                }
            };
            identity.set_password_hash(hash, derived.password_identifiers.clone(), now);
            password_set = true;
        }
        identity.apply_derived(&derived, now);
        if let Some(addrs) = body.verifiable_addresses {
            for a in addrs {
                let value = a.value.trim().to_lowercase();
                if let Some(v) = identity
                    .verifiable_addresses
                    .iter_mut()
                    .find(|v| v.value == value)
                {
                    v.verified = a.verified;
                    v.status = a.status.unwrap_or_else(|| {
                        if a.verified {
                            "completed".into()
                        } else {
                            "pending".into()
                        }
                    });
                    v.verified_at = if a.verified { Some(now) } else { None };
                    v.updated_at = now;
                }
            }
        }
        identity.updated_at = now;
        Ok(password_set)
    }

    pub async fn admin_create_identity(
        &self,
        body: Value,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Identity> {
        let body = parse_body(body)?;
        let mut identity = Identity::new("", json!({}), now);
        self.apply_body(&mut identity, body, now).await?;
        identity.created_at = now;
        let record = by
            .record(AuditKind::IdentityCreated, now)
            .about(identity.id)
            .details(json!({ "state": identity.state }));
        let fx = Effects::event(EventKind::UserCreated).audited(record);
        self.store.insert_identity(&identity, &fx).await?;
        Ok(identity)
    }

    pub async fn admin_get_identity(&self, id: Uuid) -> Result<Identity> {
        self.store
            .get_identity(id)
            .await?
            .ok_or_else(|| Error::not_found("Unable to locate the resource"))
    }

    pub async fn admin_replace_identity(
        &self,
        id: Uuid,
        body: Value,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Identity> {
        let body = parse_body(body)?;
        if body.state.is_none() {
            return Err(Error::bad_request("The field `state` is required."));
        }
        let mut identity = self.admin_get_identity(id).await?;
        let before = identity.clone();
        let password_set = self.apply_body(&mut identity, body, now).await?;
        self.save_identity(&before, &mut identity, by, now).await?;
        if password_set {
            self.password_changed(identity.id).await?;
        }
        Ok(identity)
    }

    /// RFC 6902 JSON Patch over the admin view of the identity.
    pub async fn admin_patch_identity(
        &self,
        id: Uuid,
        patch: Value,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Identity> {
        let patch: json_patch::Patch = serde_json::from_value(patch)
            .map_err(|e| Error::bad_request(format!("The JSON Patch document is invalid: {e}")))?;
        for op in &patch.0 {
            let path = op_path(op);
            if [
                "/id",
                "/created_at",
                "/updated_at",
                "/state_changed_at",
                "/schema_url",
            ]
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")))
            {
                return Err(Error::bad_request(format!(
                    "The path {path:?} cannot be patched."
                )));
            }
        }
        let mut identity = self.admin_get_identity(id).await?;
        let mut doc = json!({
            "schema_id": identity.schema_id,
            "state": identity.state,
            "traits": identity.traits,
            "metadata_public": identity.metadata_public,
            "metadata_admin": identity.metadata_admin,
            "external_id": identity.external_id,
        });
        json_patch::patch(&mut doc, &patch)
            .map_err(|e| Error::bad_request(format!("The JSON Patch could not be applied: {e}")))?;
        let before = identity.clone();
        let body = parse_body(doc)?;
        self.apply_body(&mut identity, body, now).await?;
        self.save_identity(&before, &mut identity, by, now).await?;
        Ok(identity)
    }

    /// Writes an admin (or Clerk) change of `before` into `identity`, audited as what it
    /// changed; an identity that is no longer active loses its sessions and refresh tokens.
    pub(crate) async fn save_identity(
        &self,
        before: &Identity,
        identity: &mut Identity,
        by: &By,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.save_identity_with(before, identity, by, None, vec![], now)
            .await
    }

    /// [`Self::save_identity`], with `also` (the record of why) in the same transaction.
    pub(crate) async fn save_identity_with(
        &self,
        before: &Identity,
        identity: &mut Identity,
        by: &By,
        also: Option<AuditRecord>,
        messages: Vec<crate::courier::Message>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let fx = also.into_iter().fold(
            identity_change_effects(before, identity, by, now),
            Effects::audited,
        );
        let fx = messages.into_iter().fold(fx, Effects::message);
        self.store
            .update_identity(identity, &fx)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => Error::not_found("Unable to locate the resource"),
                other => other.into(),
            })?;
        if !identity.is_active() {
            let record = by
                .record(AuditKind::SessionRevoked, now)
                .about(identity.id)
                .reason("identity_inactive");
            let fx = Effects::event(EventKind::SessionRevoked).audited(record);
            self.store
                .revoke_identity_sessions(identity.id, None, now, &fx)
                .await?;
            self.store
                .revoke_identity_refresh_tokens(identity.id)
                .await?;
        }
        Ok(())
    }

    pub async fn admin_delete_identity(&self, id: Uuid, by: &By) -> Result<()> {
        let now = self.now();
        let record = by.record(AuditKind::IdentityDeleted, now).about(id);
        let fx = Effects::event(EventKind::UserDeleted)
            .and_event(EventKind::SessionRemoved)
            .audited(record);
        if self.store.delete_identity(id, now, &fx).await? {
            Ok(())
        } else {
            Err(Error::not_found("Unable to locate the resource"))
        }
    }

    /// Batch create (`PATCH /admin/identities`): each item succeeds or fails on its own; a
    /// failure of ours (the database) fails the whole batch.
    pub async fn admin_batch(
        &self,
        body: Value,
        now: OffsetDateTime,
        by: &By,
    ) -> Result<Vec<BatchItem>> {
        let items = body
            .get("identities")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::bad_request("The body must be {\"identities\": [...]}."))?;
        if items.len() > 1000 {
            return Err(Error::bad_request(format!(
                "At most 1000 identities can be patched at once, got {}.",
                items.len()
            )));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let patch_id = item.get("patch_id").cloned().unwrap_or(Value::Null);
            let Some(create) = item.get("create").cloned() else {
                out.push(BatchItem {
                    patch_id,
                    outcome: Err(Error::bad_request(
                        "Only `create` is supported in batch patches.",
                    )),
                });
                continue;
            };
            match self.admin_create_identity(create, now, by).await {
                Err(Error::Internal(m)) => return Err(Error::Internal(m)),
                outcome => out.push(BatchItem {
                    patch_id,
                    outcome: outcome.map(|i| i.id),
                }),
            }
        }
        Ok(out)
    }

    pub fn identity_json(&self, identity: &Identity, view: View<'_>) -> Value {
        let mut json = identity.to_api_json(self.public_url(), view);
        let oidc = match view {
            View::Admin {
                include_credentials,
            }
            | View::AdminList {
                include_credentials,
            } => include_credentials.iter().any(|c| c == "oidc"),
            View::Public => false,
        };
        if oidc {
            self.reveal_upstream_tokens(&mut json);
        }
        json
    }
}

/// What a change of an identity records besides itself: `user.updated` and the audit records
/// of [`identity_change_records`].
pub(crate) fn identity_change_effects(
    before: &Identity,
    after: &Identity,
    by: &By,
    now: OffsetDateTime,
) -> Effects {
    identity_change_records(before, after, by, now)
        .into_iter()
        .fold(Effects::event(EventKind::UserUpdated), Effects::audited)
}

/// The audit records of an admin change: always `identity.updated`, and the state and
/// credential changes on their own, so a filter finds who deactivated an account.
fn identity_change_records(
    before: &Identity,
    after: &Identity,
    by: &By,
    now: OffsetDateTime,
) -> Vec<AuditRecord> {
    let record = |kind| by.record(kind, now).about(after.id);
    let mut out = vec![record(AuditKind::IdentityUpdated)];
    if before.state != after.state {
        out.push(
            record(AuditKind::IdentityStateChanged)
                .details(json!({ "from": before.state, "to": after.state })),
        );
    }
    let secrets = |i: &Identity| -> Vec<(String, Value)> {
        i.credentials
            .iter()
            .map(|(k, c)| (k.clone(), c.config.clone()))
            .collect()
    };
    if secrets(before) != secrets(after) {
        let methods: Vec<&String> = after.credentials.keys().collect();
        out.push(
            record(AuditKind::IdentityCredentialsChanged).details(json!({ "methods": methods })),
        );
    }
    out
}

fn op_path(op: &json_patch::PatchOperation) -> String {
    use json_patch::PatchOperation as P;
    match op {
        P::Add(o) => o.path.to_string(),
        P::Remove(o) => o.path.to_string(),
        P::Replace(o) => o.path.to_string(),
        P::Move(o) => o.path.to_string(),
        P::Copy(o) => o.path.to_string(),
        P::Test(o) => o.path.to_string(),
    }
}
