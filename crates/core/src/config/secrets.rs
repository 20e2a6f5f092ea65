//! `secrets`: the server's own keys. `default` signs and encrypts unless a more specific list
//! is set; `cookie` and `cipher` let an operator rotate those uses separately.

use super::{ConfigError, Ctx, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub default: Vec<Secret>,
    pub cookie: Vec<Secret>,
    pub cipher: Vec<Secret>,
}

impl SecretsConfig {
    pub(super) fn validate(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        if self.default.is_empty() && !ctx.dev {
            return Err(ConfigError::Invalid(
                "secrets.default: at least one secret of 32 or more characters is required outside dev mode \
                 (e.g. PORTCULLIS_SECRETS_DEFAULT='[\"<random 32+ chars>\"]')"
                    .into(),
            ));
        }
        for (key, list) in [
            ("default", &self.default),
            ("cookie", &self.cookie),
            ("cipher", &self.cipher),
        ] {
            for (i, s) in list.iter().enumerate() {
                let n = s.chars();
                if n < 32 {
                    return Err(ConfigError::Invalid(format!(
                        "secrets.{key}.{i}: {n} characters long; every secret must have at least 32"
                    )));
                }
            }
        }
        Ok(())
    }
}
