//! `clerk`: the Clerk Backend API face (`/v1` on the admin port).

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClerkConfig {
    /// Accepted `Authorization: Bearer sk_…` keys (besides keys created through the admin API).
    pub secret_keys: Vec<Secret>,
}

impl ClerkConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
