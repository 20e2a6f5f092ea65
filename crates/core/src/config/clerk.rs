//! `clerk`: the Clerk Backend API face (`/v1` on the admin port) and the Frontend API face
//! (`/v1` on the public port, for Clerk's browser SDK).

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClerkConfig {
    /// Accepted `Authorization: Bearer sk_…` keys (besides keys created through the admin API).
    pub secret_keys: Vec<Secret>,
    pub frontend: ClerkFrontendConfig,
    /// Claims added to every session token, as Clerk's "customize session token" takes them:
    /// JSON whose strings may hold `{{user.<field>}}` shortcodes over the Clerk User
    /// (`{"role": "{{user.public_metadata.role}}"}`).
    pub session_claims: serde_json::Map<String, serde_json::Value>,
}

/// The claims every session token has; `clerk.session_claims` cannot replace them.
pub const RESERVED_SESSION_CLAIMS: [&str; 12] = [
    "iss", "sub", "sid", "iat", "nbf", "exp", "jti", "v", "fva", "sts", "azp", "aud",
];

/// `clerk.frontend`: the Frontend API that clerk-js talks to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClerkFrontendConfig {
    /// Serve the Frontend API (`/v1/…`) and clerk-js's bundles (`/npm/…`) on the public port.
    pub enabled: bool,
    /// The directory holding the npm packages whose bundles clerk-js loads from its server:
    /// `@clerk/clerk-js/dist/` and `@clerk/ui/dist/` below it (a `node_modules` directory).
    /// Empty: the bundles are not served (the app bundles clerk-js itself).
    pub assets_dir: String,
    /// Signed-in users may delete their own account from `<UserProfile/>` (Clerk's "delete
    /// self"). Off by default: the Kratos faces offer no such thing.
    pub delete_self: bool,
}

impl ClerkConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(taken) = self
            .session_claims
            .keys()
            .find(|k| RESERVED_SESSION_CLAIMS.contains(&k.as_str()))
        {
            return Err(ConfigError::Invalid(format!(
                "clerk.session_claims.{taken}: a claim every session token has; choose another name"
            )));
        }
        let dir = &self.frontend.assets_dir;
        if !dir.is_empty() && !std::path::Path::new(dir).is_dir() {
            return Err(ConfigError::Invalid(format!(
                "clerk.frontend.assets_dir: {dir:?} is not a directory"
            )));
        }
        for (i, k) in self.secret_keys.iter().enumerate() {
            if !k.expose().starts_with("sk_") || k.expose().len() < 20 {
                return Err(ConfigError::Invalid(format!(
                    "clerk.secret_keys.{i}: expected a key of the form sk_test_… or sk_live_… (at least 20 characters)"
                )));
            }
        }
        Ok(())
    }
}
