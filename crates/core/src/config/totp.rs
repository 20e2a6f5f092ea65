//! `selfservice.methods.totp`: time-based one-time passwords as a second factor.
//!
//! Parsed so that a Kratos file that turns TOTP on loads, but **not active yet** (issue 12):
//! no flow offers or asks for a TOTP code. [`TotpMethodConfig::note`] says so at start-up and in
//! `config check`, so nobody believes a second factor is enforced.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpMethodConfig {
    pub enabled: bool,
    pub config: TotpConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    /// The name authenticator apps show next to the code (Kratos: the public URL's host when empty).
    pub issuer: String,
}

impl TotpMethodConfig {
    /// The warning for a method that is on but does nothing yet.
    pub(super) fn note(&self) -> Option<String> {
        self.enabled.then(|| {
            "selfservice.methods.totp: accepted but NOT ACTIVE yet: Portcullis offers no TOTP second \
             factor, so no one is asked for a code and sessions are aal1 (required_aal: \
             highest_available is the same as aal1 until it is)"
                .to_string()
        })
    }
}
