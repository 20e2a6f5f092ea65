//! Identities, their credentials and derived addresses.

use crate::schema::Derived;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

pub const STATE_ACTIVE: &str = "active";
pub const STATE_INACTIVE: &str = "inactive";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub identifiers: Vec<String>,
    /// Absent in event payloads, which never carry credential secrets.
    #[serde(default)]
    pub config: Value,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiableAddress {
    pub id: Uuid,
    pub value: String,
    pub verified: bool,
    pub via: String,
    pub status: String,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub verified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryAddress {
    pub id: Uuid,
    pub value: String,
    pub via: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The stored identity. Its JSON form (`serde`) is what the store persists; the API views are
/// built by [`Identity::to_api_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub id: Uuid,
    pub schema_id: String,
    pub state: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub state_changed_at: Option<OffsetDateTime>,
    pub traits: Value,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    pub external_id: Option<String>,
    pub credentials: BTreeMap<String, Credential>,
    pub verifiable_addresses: Vec<VerifiableAddress>,
    pub recovery_addresses: Vec<RecoveryAddress>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version: the store writes an identity only if the stored
    /// version is still this one, then increments both. Stored with the document, never in
    /// API JSON (`to_api_json`) or event payloads.
    #[serde(default)]
    pub version: i64,
}

/// How much of an identity an API response shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    /// Public face (whoami, settings flow): no credentials, no `metadata_admin`.
    Public,
    /// Admin face: `metadata_admin` and credential summaries; `config` only for the listed types.
    Admin { include_credentials: &'a [String] },
    /// Admin list: like Admin but without credentials unless requested.
    AdminList { include_credentials: &'a [String] },
}

pub fn schema_url(public_url: &str, schema_id: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(schema_id);
    format!("{}schemas/{b64}", public_url)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Identity {
    pub fn new(schema_id: &str, traits: Value, now: OffsetDateTime) -> Self {
        Identity {
            id: Uuid::new_v4(),
            schema_id: schema_id.to_string(),
            state: STATE_ACTIVE.into(),
            state_changed_at: Some(now),
            traits,
            metadata_public: None,
            metadata_admin: None,
            external_id: None,
            credentials: BTreeMap::new(),
            verifiable_addresses: vec![],
            recovery_addresses: vec![],
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    pub fn is_active(&self) -> bool {
        self.state == STATE_ACTIVE
    }

    /// Marks the address that normalises to `address` verified (a code sent to it came
    /// back); whether it was not before.
    pub fn verify_address(&mut self, address: &str, now: OffsetDateTime) -> bool {
        let mut changed = false;
        for a in &mut self.verifiable_addresses {
            if !a.verified && crate::methods::code::normalise_address(&a.value) == address {
                a.verified = true;
                a.status = "completed".into();
                a.verified_at = Some(now);
                a.updated_at = now;
                changed = true;
            }
        }
        if changed {
            self.updated_at = now;
        }
        changed
    }

    pub fn set_state(&mut self, state: &str, now: OffsetDateTime) {
        if self.state != state {
            self.state = state.to_string();
            self.state_changed_at = Some(now);
        }
    }

    /// Re-derives addresses and credential identifiers from the traits, keeping the ids and
    /// verification status of addresses whose value did not change.
    pub fn apply_derived(&mut self, d: &Derived, now: OffsetDateTime) {
        let old_v = std::mem::take(&mut self.verifiable_addresses);
        self.verifiable_addresses = d
            .verifiable
            .iter()
            .map(|(value, via)| {
                old_v
                    .iter()
                    .find(|a| &a.value == value && &a.via == via)
                    .cloned()
                    .unwrap_or(VerifiableAddress {
                        id: Uuid::new_v4(),
                        value: value.clone(),
                        verified: false,
                        via: via.clone(),
                        status: "pending".into(),
                        verified_at: None,
                        created_at: now,
                        updated_at: now,
                    })
            })
            .collect();
        let old_r = std::mem::take(&mut self.recovery_addresses);
        self.recovery_addresses = d
            .recovery
            .iter()
            .map(|(value, via)| {
                old_r
                    .iter()
                    .find(|a| &a.value == value && &a.via == via)
                    .cloned()
                    .unwrap_or(RecoveryAddress {
                        id: Uuid::new_v4(),
                        value: value.clone(),
                        via: via.clone(),
                        created_at: now,
                        updated_at: now,
                    })
            })
            .collect();
        if let Some(pw) = self.credentials.get_mut("password") {
            if pw.identifiers != d.password_identifiers {
                pw.identifiers = d.password_identifiers.clone();
                pw.updated_at = now;
            }
        }
        // The other credentials that sign in by what the traits say follow them too, or an
        // address given up would still open the account: a code goes to the e-mail
        // addresses (Kratos's `code` credential), passwordless keys answer to the password
        // identifiers (second-factor keys are identified by the identity id and stay).
        let emails: Vec<String> = d
            .verifiable
            .iter()
            .filter(|(_, via)| via == "email")
            .map(|(v, _)| crate::methods::code::normalise_address(v))
            .collect();
        if let Some(code) = self.credentials.get_mut("code") {
            if code.identifiers != emails {
                code.identifiers = emails.clone();
                let addresses: Vec<Value> = emails
                    .iter()
                    .map(|a| serde_json::json!({ "channel": "email", "address": a }))
                    .collect();
                code.config = serde_json::json!({ "addresses": addresses });
                code.updated_at = now;
            }
        }
        let passwordless =
            crate::methods::webauthn::KeyList::of(self, crate::methods::Method::WebAuthn)
                .credentials
                .iter()
                .any(|k| k.is_passwordless);
        if let (true, Some(keys)) = (passwordless, self.credentials.get_mut("webauthn")) {
            if keys.identifiers != d.password_identifiers {
                keys.identifiers = d.password_identifiers.clone();
                keys.updated_at = now;
            }
        }
    }

    /// Sets (or replaces) the password credential's hash.
    pub fn set_password_hash(
        &mut self,
        hash: String,
        identifiers: Vec<String>,
        now: OffsetDateTime,
    ) {
        let config = json!({ "hashed_password": hash });
        match self.credentials.get_mut("password") {
            Some(c) => {
                c.config = config;
                c.identifiers = identifiers;
                c.updated_at = now;
            }
            None => {
                self.credentials.insert(
                    "password".into(),
                    Credential {
                        id: Uuid::new_v4(),
                        kind: "password".into(),
                        identifiers,
                        config,
                        version: 0,
                        created_at: now,
                        updated_at: now,
                    },
                );
            }
        }
    }

    /// The highest assurance level this identity can reach (Kratos's `available_aal`): aal2
    /// with a second factor (TOTP, backup codes, a security key), else aal1.
    pub fn available_aal(&self) -> crate::methods::Aal {
        use crate::methods::{Aal, Method};
        // Passwordless security keys are a first factor.
        let second = [Method::Totp, Method::LookupSecret]
            .iter()
            .any(|m| self.credentials.contains_key(m.as_str()))
            || crate::methods::webauthn::KeyList::of(self, Method::WebAuthn)
                .credentials
                .iter()
                .any(|k| !k.is_passwordless);
        if second {
            Aal::Aal2
        } else {
            Aal::Aal1
        }
    }

    pub fn password_hash(&self) -> Option<&str> {
        self.credentials
            .get("password")?
            .config
            .get("hashed_password")?
            .as_str()
    }

    /// Every (credential type, identifier) pair this identity holds; unique across identities.
    pub fn credential_identifiers(&self) -> Vec<(String, String)> {
        self.credentials
            .values()
            .flat_map(|c| {
                c.identifiers
                    .iter()
                    .map(move |i| (c.kind.clone(), i.clone()))
            })
            .collect()
    }

    pub fn to_api_json(&self, public_url: &str, view: View<'_>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("schema_id".into(), json!(self.schema_id));
        m.insert(
            "schema_url".into(),
            json!(schema_url(public_url, &self.schema_id)),
        );
        m.insert("state".into(), json!(self.state));
        if let Some(t) = self.state_changed_at {
            m.insert("state_changed_at".into(), json!(rfc3339(t)));
        }
        m.insert("traits".into(), self.traits.clone());
        m.insert(
            "verifiable_addresses".into(),
            json!(self.verifiable_addresses),
        );
        m.insert("recovery_addresses".into(), json!(self.recovery_addresses));
        m.insert(
            "metadata_public".into(),
            self.metadata_public.clone().unwrap_or(Value::Null),
        );
        let (include, with_creds) = match view {
            View::Public => (&[][..], false),
            View::Admin {
                include_credentials,
            } => (include_credentials, true),
            View::AdminList {
                include_credentials,
            } => (include_credentials, !include_credentials.is_empty()),
        };
        if view != View::Public {
            m.insert(
                "metadata_admin".into(),
                self.metadata_admin.clone().unwrap_or(Value::Null),
            );
        }
        if let Some(e) = &self.external_id {
            m.insert("external_id".into(), json!(e));
        }
        m.insert("organization_id".into(), Value::Null);
        if with_creds {
            let creds: Map<String, Value> = self
                .credentials
                .iter()
                .map(|(k, c)| {
                    let mut v = json!({
                        "type": c.kind,
                        "identifiers": c.identifiers,
                        "version": c.version,
                        "created_at": rfc3339(c.created_at),
                        "updated_at": rfc3339(c.updated_at),
                    });
                    if include.iter().any(|t| t == k) {
                        if let Some(o) = v.as_object_mut() {
                            o.insert("config".into(), c.config.clone());
                        }
                    }
                    (k.clone(), v)
                })
                .collect();
            m.insert("credentials".into(), Value::Object(creds));
        }
        m.insert("created_at".into(), json!(rfc3339(self.created_at)));
        m.insert("updated_at".into(), json!(rfc3339(self.updated_at)));
        Value::Object(m)
    }
}
