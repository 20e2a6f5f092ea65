//! `webhooks`: outgoing webhooks. Endpoints are managed through `/admin/webhooks`; the ones
//! declared here are created or brought up to date at start-up.

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

choice! {
    /// `webhooks.endpoints[].format`: the payload shape an endpoint receives.
    pub enum WebhookFormat {
        #[default]
        Clerk = "clerk",
        Native = "native",
    }
    ignore_case: false,
    error: "{:?}: expected \"clerk\" or \"native\""
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow endpoints on loopback, private and link-local addresses (always allowed with `--dev`).
    pub allow_private_networks: bool,
    /// Which traits fill Clerk's `User` fields in `clerk`-format payloads (dotted paths).
    pub clerk_mapping: crate::webhooks::ClerkMapping,
    /// Endpoints declared here are created or brought up to date at start-up.
    pub endpoints: Vec<ConfiguredEndpoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredEndpoint {
    /// Stable id (`ep_…`), so restarts update rather than duplicate.
    pub id: String,
    /// Printed with its userinfo and query values blanked: either may carry a credential.
    #[serde(serialize_with = "super::redact::serialize_url")]
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub format: WebhookFormat,
    /// `whsec_<base64>`.
    pub secret: Secret,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl WebhooksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, e) in self.endpoints.iter().enumerate() {
            e.validate(&format!("webhooks.endpoints.{i}"))?;
        }
        Ok(())
    }
}

impl ConfiguredEndpoint {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !self.id.starts_with("ep_") || self.id.len() < 4 {
            return Err(ConfigError::Invalid(format!(
                "{key}.id: {:?} must look like ep_<name>",
                self.id
            )));
        }
        if url::Url::parse(&self.url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(ConfigError::Invalid(format!(
                "{key}.url: {:?} is not an http(s) URL",
                super::redact::redact_url(&self.url)
            )));
        }
        let secret = self.secret.expose();
        if crate::webhooks::sign(secret, "x", 0, b"").is_none() || !secret.starts_with("whsec_") {
            return Err(ConfigError::Invalid(format!(
                "{key}.secret: expected whsec_<base64>"
            )));
        }
        if let Some(bad) = self
            .events
            .iter()
            .find(|t| !crate::webhooks::EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(ConfigError::Invalid(format!(
                "{key}.events: unknown event type {bad:?}"
            )));
        }
        Ok(())
    }
}
