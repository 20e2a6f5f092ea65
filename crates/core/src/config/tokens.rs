//! `tokens`: JWTs for API backends — the simplejwt-compatible endpoints, signing keys, the
//! JWKS, and the optional cookie mode.

use super::{ConfigError, Ctx, Dur, SameSite, Secret};
use serde::{Deserialize, Serialize};

choice! {
    /// `tokens.algorithm`: the algorithm of new signing keys.
    pub enum TokenAlgorithm {
        #[default]
        Es256 = "ES256",
        EdDsa = "EdDSA",
        Rs256 = "RS256",
        /// A shared secret (`tokens.hs256_secret`) instead of a key pair; nothing in the JWKS.
        Hs256 = "HS256",
    }
    ignore_case: false,
    error: "{:?} is not supported: expected ES256, EdDSA, RS256 or HS256"
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Algorithm of new signing keys: `ES256` (default), `EdDSA`, `RS256`, or `HS256` (needs `hs256_secret`).
    pub algorithm: TokenAlgorithm,
    /// Shared secret for HS256, for simplejwt setups that verify with `SIGNING_KEY`.
    pub hs256_secret: Secret,
    /// `iss` of every token; defaults to the public base URL without its trailing `/`.
    pub issuer: String,
    /// `aud` of every token (and what verification requires); empty = no audience.
    pub audience: Vec<String>,
    pub access_token_lifetime: Dur,
    pub refresh_token_lifetime: Dur,
    /// Refresh returns a new refresh token and retires the old one (reuse revokes the family).
    pub rotate_refresh_tokens: bool,
    /// A password change revokes the identity's refresh tokens.
    pub revoke_on_password_change: bool,
    /// A rotated refresh token presented again within this window is refused without revoking
    /// its family: two tabs refreshing at once is a race, not theft. `0s` disables the window.
    pub rotation_grace: Dur,
    /// Claim holding the identity id (simplejwt's `USER_ID_CLAIM`).
    pub user_id_claim: String,
    /// Body field accepted for the identifier on obtain, besides `email`, `username` and `identifier`.
    pub username_field: String,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`.
    pub leeway: Dur,
    /// Rotate the signing key this often (`0s` = only by `portcullis keys rotate`).
    pub key_rotation_interval: Dur,
    pub paths: TokenPathsConfig,
    pub cookies: TokenCookiesConfig,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            algorithm: TokenAlgorithm::default(),
            hs256_secret: Secret::default(),
            issuer: String::new(),
            audience: vec![],
            access_token_lifetime: Dur::secs(300),
            refresh_token_lifetime: Dur::hours(24),
            rotate_refresh_tokens: true,
            revoke_on_password_change: true,
            rotation_grace: Dur::secs(5),
            user_id_claim: "user_id".into(),
            username_field: "email".into(),
            leeway: Dur::secs(10),
            key_rotation_interval: Dur::secs(0),
            paths: TokenPathsConfig::default(),
            cookies: TokenCookiesConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPathsConfig {
    pub obtain: String,
    pub refresh: String,
    pub verify: String,
    pub blacklist: String,
    /// Cookie mode only: clears both cookies and blacklists the refresh token.
    pub logout: String,
}

impl Default for TokenPathsConfig {
    fn default() -> Self {
        TokenPathsConfig {
            obtain: "/api/token/".into(),
            refresh: "/api/token/refresh/".into(),
            verify: "/api/token/verify/".into(),
            blacklist: "/api/token/blacklist/".into(),
            logout: "/api/token/logout/".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCookiesConfig {
    pub enabled: bool,
    pub access_name: String,
    pub refresh_name: String,
    pub domain: String,
    pub path: String,
    pub same_site: SameSite,
}

impl Default for TokenCookiesConfig {
    fn default() -> Self {
        TokenCookiesConfig {
            enabled: false,
            access_name: "access_token".into(),
            refresh_name: "refresh_token".into(),
            domain: String::new(),
            path: "/".into(),
            same_site: SameSite::default(),
        }
    }
}

/// Claims our own tokens carry; the identity id cannot be stored under one of them.
const RESERVED_CLAIMS: &[&str] = &[
    "exp",
    "iat",
    "nbf",
    "jti",
    "iss",
    "aud",
    "token_type",
    "sid",
];

impl TokensConfig {
    /// The issuer, when not set: the public base URL without its trailing `/`.
    pub(super) fn fill_defaults(&mut self, ctx: &Ctx) {
        if self.issuer.is_empty() {
            self.issuer = ctx.public_url.trim_end_matches('/').to_string();
        }
    }

    pub(super) fn validate(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        self.cookies
            .same_site
            .validate("tokens.cookies.same_site", ctx)?;
        if self.algorithm == TokenAlgorithm::Hs256 && self.hs256_secret.chars() < 32 {
            return Err(ConfigError::Invalid(
                "tokens.hs256_secret: HS256 needs a shared secret of at least 32 characters".into(),
            ));
        }
        if self.access_token_lifetime.0.is_zero() || self.refresh_token_lifetime.0.is_zero() {
            return Err(ConfigError::Invalid(
                "tokens: token lifetimes must be longer than 0s".into(),
            ));
        }
        if self.user_id_claim.is_empty() || RESERVED_CLAIMS.contains(&self.user_id_claim.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "tokens.user_id_claim: {:?} is empty or a registered claim",
                self.user_id_claim
            )));
        }
        let p = &self.paths;
        for (name, path) in [
            ("obtain", &p.obtain),
            ("refresh", &p.refresh),
            ("verify", &p.verify),
            ("blacklist", &p.blacklist),
            ("logout", &p.logout),
        ] {
            if !path.starts_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "tokens.paths.{name}: {path:?} must start with /"
                )));
            }
        }
        Ok(())
    }
}
