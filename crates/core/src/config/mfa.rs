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

/// `selfservice.methods.webauthn`: security keys as a second factor, or with `passwordless`
/// as a first factor (Kratos's older passwordless WebAuthn; passkeys are the newer way).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnMethodConfig {
    pub enabled: bool,
    pub config: WebauthnConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// Security keys sign in on their own (aal1) instead of after a password (aal2).
    pub passwordless: bool,
    pub rp: RelyingParty,
}

/// `selfservice.methods.passkey`: discoverable credentials that sign in without a password.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyMethodConfig {
    pub enabled: bool,
    pub config: PasskeyConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyConfig {
    pub rp: RelyingParty,
}

/// The WebAuthn relying party: the domain credentials are bound to and the page origins
/// ceremonies may run on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelyingParty {
    /// The public URL's host when empty. Credentials are bound to it: changing it later
    /// makes every registered key unusable.
    pub id: String,
    /// The name authenticators show; the RP id when empty.
    pub display_name: String,
    /// Where the pages that run ceremonies are served (scheme, host, port). The public
    /// URL's origin and every flow page's origin when empty.
    pub origins: Vec<String>,
    /// Kratos's older single origin; added to `origins`.
    pub origin: String,
    /// Deprecated in Kratos and ignored.
    pub icon: String,
}

impl RelyingParty {
    /// Fills the id, name and origins left empty (`pages`: the public URL and the flow pages).
    pub(super) fn fill_defaults(&mut self, public_url: &str, pages: &[&str]) {
        if self.id.is_empty() {
            self.id = default_issuer(public_url);
        }
        if self.display_name.is_empty() {
            self.display_name = self.id.clone();
        }
        if !self.origin.is_empty() && !self.origins.contains(&self.origin) {
            self.origins.push(std::mem::take(&mut self.origin));
        }
        if self.origins.is_empty() {
            // Pages on another host join only when the RP id covers them (set `rp.id` to a
            // parent domain for that).
            for page in std::iter::once(&public_url).chain(pages) {
                let Ok(u) = url::Url::parse(page) else {
                    continue;
                };
                let o = u.origin().ascii_serialization();
                if o != "null" && self.covers(u.host_str()) && !self.origins.contains(&o) {
                    self.origins.push(o);
                }
            }
        }
    }

    /// Whether `host` is the RP id or below it.
    fn covers(&self, host: Option<&str>) -> bool {
        let host = host.unwrap_or_default();
        host == self.id || host.ends_with(&format!(".{}", self.id))
    }

    /// The origins as URLs, and the check that the RP id is each one's host or a parent
    /// domain of it (else no browser would run a ceremony).
    pub fn origin_urls(&self, key: &str) -> Result<Vec<url::Url>, String> {
        let mut out = vec![];
        for o in &self.origins {
            let u = url::Url::parse(o).map_err(|e| format!("{key}.origins: {o:?}: {e}"))?;
            if !self.covers(u.host_str()) {
                return Err(format!(
                    "{key}.origins: {o:?} is not on the relying party {:?} (rp.id must be the origin's host or a parent domain of it)",
                    self.id
                ));
            }
            out.push(u);
        }
        if out.is_empty() {
            return Err(format!("{key}.origins: at least one origin is needed"));
        }
        Ok(out)
    }
}
