//! `session`: how long a session lives, its cookie, and the `whoami` tokenizer templates.
//! [`SameSite`] lives here because the session cookie is the first of the cookies that use it.

use super::{ConfigError, Ctx, Dur};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

choice! {
    /// A cookie's `SameSite` attribute (`Lax`, `Strict` or `None`, read without regard to case).
    pub enum SameSite {
        #[default]
        Lax = "Lax",
        Strict = "Strict",
        None = "None",
    }
    ignore_case: true,
    error: "{:?}: expected Lax, Strict or None"
}

impl SameSite {
    /// Browsers drop `SameSite=None` cookies that are not `Secure`, so `None` needs https.
    pub(super) fn validate(self, key: &str, ctx: &Ctx) -> Result<(), ConfigError> {
        if self == SameSite::None && !ctx.public_url.to_ascii_lowercase().starts_with("https://") {
            return Err(ConfigError::Invalid(format!(
                "{key}: None needs an https public URL (browsers refuse SameSite=None cookies without Secure)"
            )));
        }
        Ok(())
    }
}

choice! {
    /// `required_aal` of whoami and the settings flow: the assurance level a session needs.
    /// `highest_available` asks for the second factor whenever the identity has one.
    pub enum RequiredAal {
        Aal1 = "aal1",
        #[default]
        HighestAvailable = "highest_available",
    }
    ignore_case: false,
    error: "{:?}: expected aal1 or highest_available"
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub lifespan: Dur,
    pub earliest_possible_extend: Dur,
    /// The absolute cap on a session kept alive by refresh-token rotation, measured from
    /// when it was created; after it, the user signs in again (ASVS 3.3.2).
    pub max_lifetime: Dur,
    pub cookie: SessionCookieConfig,
    pub whoami: WhoamiConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lifespan: Dur::hours(24),
            earliest_possible_extend: Dur::hours(24),
            max_lifetime: Dur::hours(30 * 24),
            cookie: SessionCookieConfig::default(),
            whoami: WhoamiConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionCookieConfig {
    pub name: String,
    pub domain: String,
    pub path: String,
    pub persistent: bool,
    pub same_site: SameSite,
}

impl SessionCookieConfig {
    /// A `__Host-` or `__Secure-` name (the operator's choice of a cookie that a sibling
    /// subdomain cannot plant) is only kept by browsers under its rules, so a name they would
    /// drop is refused here rather than found out as "nobody can sign in".
    fn validate_prefix(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        let https = ctx.public_url.starts_with("https://");
        let problem = if self.name.starts_with("__Host-") {
            (!https || !self.domain.is_empty() || self.path != "/")
                .then_some("a __Host- cookie needs an https public URL, no domain and path /")
        } else if self.name.starts_with("__Secure-") {
            (!https).then_some("a __Secure- cookie needs an https public URL")
        } else {
            None
        };
        match problem {
            Some(p) => Err(ConfigError::Invalid(format!("session.cookie.name: {p}"))),
            None => Ok(()),
        }
    }
}

impl Default for SessionCookieConfig {
    fn default() -> Self {
        SessionCookieConfig {
            name: "ory_kratos_session".into(),
            domain: String::new(),
            path: "/".into(),
            persistent: true,
            same_site: SameSite::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhoamiConfig {
    pub required_aal: RequiredAal,
    pub tokenizer: TokenizerConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    pub templates: BTreeMap<String, TokenizerTemplate>,
}

/// `session.whoami.tokenizer.templates.<name>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerTemplate {
    pub ttl: Dur,
    /// Claim name → dotted path into the session (`identity.traits.email`,
    /// `identity.metadata_public.plan`, `authenticator_assurance_level`, …).
    pub claims: BTreeMap<String, String>,
}

impl Default for TokenizerTemplate {
    fn default() -> Self {
        TokenizerTemplate {
            ttl: Dur::secs(60),
            claims: Default::default(),
        }
    }
}

/// Registered claims, and the ones that would let a tokenized session pass for one of our
/// access or refresh tokens: Portcullis sets these itself.
const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "token_type",
];

impl SessionConfig {
    pub(super) fn validate(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        self.cookie
            .same_site
            .validate("session.cookie.same_site", ctx)?;
        self.cookie.validate_prefix(ctx)?;
        for (name, tpl) in &self.whoami.tokenizer.templates {
            if tpl.ttl.0.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "session.whoami.tokenizer.templates.{name}.ttl: must be longer than 0s"
                )));
            }
            for claim in tpl.claims.keys() {
                if RESERVED_CLAIMS.contains(&claim.as_str()) || *claim == ctx.user_id_claim {
                    return Err(ConfigError::Invalid(format!(
                        "session.whoami.tokenizer.templates.{name}.claims.{claim}: this claim is set by Portcullis"
                    )));
                }
            }
        }
        Ok(())
    }
}
