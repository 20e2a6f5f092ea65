//! `selfservice.methods.totp` and `selfservice.methods.lookup_secret`: the second factors.
//! Off by default as in Kratos, on in dev mode unless set.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpMethodConfig {
    /// Read it with [`TotpMethodConfig::is_enabled`] (filled from dev mode at load).
    pub enabled: Option<bool>,
    pub config: TotpConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    /// The name authenticator apps show next to the code; the public URL's host when empty
    /// (as Kratos), filled at load.
    pub issuer: String,
}

impl TotpMethodConfig {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

/// `selfservice.methods.lookup_secret`: twelve single-use backup codes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupSecretMethodConfig {
    pub enabled: Option<bool>,
}

impl LookupSecretMethodConfig {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

/// The host of `public_url` (Kratos's default TOTP issuer).
pub(super) fn default_issuer(public_url: &str) -> String {
    url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "Portcullis".into())
}
