//! `selfservice.methods.oidc`: sign-in with OpenID Connect and OAuth2 providers, with Kratos's
//! provider fields (the method itself: `methods/oidc`).
//!
//! Every Kratos field parses; a provider kind Portcullis does not speak yet is refused while the
//! method is on, naming the ones it does ([`SUPPORTED`]). Secrets (`client_secret`,
//! `apple_private_key`) are [`Secret`]s, so `config check` prints them redacted.

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcMethodConfig {
    pub enabled: bool,
    pub config: OidcConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The base of the redirect URIs registered at the providers; the public URL when empty.
    pub base_redirect_uri: String,
    pub providers: Vec<OidcProviderConfig>,
}

choice! {
    /// `providers[].provider`: which provider's protocol quirks apply.
    pub enum OidcProviderKind {
        #[default]
        Generic = "generic",
        Github = "github",
        GithubApp = "github-app",
        Gitlab = "gitlab",
        Google = "google",
        Microsoft = "microsoft",
        Discord = "discord",
        Salesforce = "salesforce",
        Slack = "slack",
        Facebook = "facebook",
        Auth0 = "auth0",
        Vk = "vk",
        Yandex = "yandex",
        Apple = "apple",
        Spotify = "spotify",
        Netid = "netid",
        Dingtalk = "dingtalk",
        Patreon = "patreon",
        Line = "line",
        Linkedin = "linkedin",
        LinkedinV2 = "linkedin_v2",
        Lark = "lark",
        X = "x",
        FedcmTest = "fedcm-test",
        Amazon = "amazon",
        Uaepass = "uaepass",
        // Beyond Kratos: Korea's two big ones.
        Kakao = "kakao",
        Naver = "naver",
    }
    ignore_case: false,
    error: "{:?} is not a provider Kratos knows (generic, google, github, microsoft, apple, …)"
}

choice! {
    /// `providers[].subject_source` (Microsoft): where the subject identifier comes from.
    pub enum SubjectSource {
        #[default]
        Userinfo = "userinfo",
        Me = "me",
        Oid = "oid",
    }
    ignore_case: false,
    error: "{:?}: expected userinfo, me or oid"
}

choice! {
    /// `providers[].claims_source`: the ID token's claims, or the userinfo endpoint's.
    pub enum ClaimsSource {
        #[default]
        IdToken = "id_token",
        Userinfo = "userinfo",
    }
    ignore_case: false,
    error: "{:?}: expected id_token or userinfo"
}

choice! {
    /// `providers[].pkce`.
    pub enum Pkce {
        #[default]
        Auto = "auto",
        Never = "never",
        Force = "force",
    }
    ignore_case: false,
    error: "{:?}: expected auto, never or force"
}

choice! {
    /// `providers[].account_linking_mode`: what happens when the provider's address already has an account.
    pub enum AccountLinkingMode {
        #[default]
        ConfirmWithExistingCredential = "confirm_with_existing_credential",
        Automatic = "automatic",
    }
    ignore_case: false,
    error: "{:?}: expected confirm_with_existing_credential or automatic"
}

choice! {
    /// `providers[].update_identity_on_login`.
    pub enum UpdateIdentityOnLogin {
        #[default]
        Never = "never",
        Automatic = "automatic",
    }
    ignore_case: false,
    error: "{:?}: expected never or automatic"
}

/// `selfservice.methods.oidc.config.providers[]`, with Kratos's fields; `id`, `provider`,
/// `client_id` and `mapper_url` are required, as in Kratos.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The provider's name in URLs and forms (`/self-service/methods/oidc/callback/<id>`).
    pub id: String,
    pub provider: OidcProviderKind,
    pub client_id: String,
    /// Jsonnet that maps the provider's claims to traits: `file://`, `http(s)://` or `base64://`.
    pub mapper_url: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub client_secret: Secret,
    #[serde(default)]
    pub issuer_url: String,
    #[serde(default)]
    pub auth_url: String,
    #[serde(default)]
    pub token_url: String,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub microsoft_tenant: String,
    #[serde(default)]
    pub subject_source: SubjectSource,
    #[serde(default)]
    pub apple_team_id: String,
    #[serde(default)]
    pub apple_private_key_id: String,
    #[serde(default)]
    pub apple_private_key: Secret,
    /// The OpenID Connect `claims` request parameter (`{"id_token": {"email": null}}`), as given.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub requested_claims: Value,
    #[serde(default)]
    pub organization_id: String,
    #[serde(default)]
    pub additional_id_token_audiences: Vec<String>,
    #[serde(default)]
    pub aal2_acr_values: Vec<String>,
    #[serde(default)]
    pub aal2_amr_values: Vec<String>,
    #[serde(default)]
    pub claims_source: ClaimsSource,
    #[serde(default)]
    pub pkce: Pkce,
    #[serde(default)]
    pub fedcm_config_url: String,
    #[serde(default)]
    pub net_id_token_origin_header: String,
    #[serde(default)]
    pub account_linking_mode: AccountLinkingMode,
    #[serde(default)]
    pub update_identity_on_login: UpdateIdentityOnLogin,
}

/// The provider kinds Portcullis speaks today.
pub const SUPPORTED: [OidcProviderKind; 6] = [
    OidcProviderKind::Generic,
    OidcProviderKind::Google,
    OidcProviderKind::Github,
    OidcProviderKind::Apple,
    OidcProviderKind::Kakao,
    OidcProviderKind::Naver,
];

impl OidcMethodConfig {
    /// The checks that hold whether or not the method is on: Kratos's schema makes them too.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "selfservice.methods.oidc.config";
        let c = &self.config;
        if !c.base_redirect_uri.is_empty() && url::Url::parse(&c.base_redirect_uri).is_err() {
            return Err(ConfigError::Invalid(format!(
                "{KEY}.base_redirect_uri: {:?} is not an absolute URL",
                c.base_redirect_uri
            )));
        }
        for (i, p) in c.providers.iter().enumerate() {
            let at = format!("{KEY}.providers[{i}]");
            let id_ok = !p.id.is_empty()
                && p.id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
            if !id_ok {
                return Err(ConfigError::Invalid(format!(
                    "{at}.id: {:?} must be 1 or more of A-Z a-z 0-9 - _ .",
                    p.id
                )));
            }
            if c.providers
                .get(..i)
                .unwrap_or_default()
                .iter()
                .any(|e| e.id == p.id)
            {
                return Err(ConfigError::Invalid(format!(
                    "{at}.id: {:?} is listed twice",
                    p.id
                )));
            }
            let scheme_ok = ["file://", "http://", "https://", "base64://"]
                .iter()
                .any(|s| p.mapper_url.starts_with(s));
            if !scheme_ok {
                return Err(ConfigError::Invalid(format!(
                    "{at}.mapper_url: {:?} must be a file://, http(s):// or base64:// URL",
                    p.mapper_url
                )));
            }
            if p.provider == OidcProviderKind::Microsoft && p.microsoft_tenant.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{at}.microsoft_tenant: required for the microsoft provider"
                )));
            }
            if !self.enabled {
                continue;
            }
            if !SUPPORTED.contains(&p.provider) {
                let names: Vec<&str> = SUPPORTED.iter().map(|k| k.as_str()).collect();
                return Err(ConfigError::Invalid(format!(
                    "{at}.provider: {:?} is not supported by Portcullis yet (supported: {})",
                    p.provider.as_str(),
                    names.join(", ")
                )));
            }
            if p.provider == OidcProviderKind::Apple {
                check_apple(&at, p)?;
            }
            if p.provider == OidcProviderKind::Generic && p.issuer_url.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{at}.issuer_url: required for the generic provider (its discovery document is read from there)"
                )));
            }
        }
        Ok(())
    }
}

/// Apple takes no client secret: Portcullis signs one for each code exchange with the team's
/// key (ES256), so the key must be there and be one.
fn check_apple(at: &str, p: &OidcProviderConfig) -> Result<(), ConfigError> {
    for (key, value) in [
        ("apple_team_id", p.apple_team_id.as_str()),
        ("apple_private_key_id", p.apple_private_key_id.as_str()),
        ("apple_private_key", p.apple_private_key.expose()),
    ] {
        if value.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{at}.{key}: required for the apple provider"
            )));
        }
    }
    // Signing once proves the key is a P-256 one (ES256), as Apple's are.
    let signs = jsonwebtoken::EncodingKey::from_ec_pem(p.apple_private_key.expose().as_bytes())
        .ok()
        .and_then(|key| {
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            jsonwebtoken::encode(&header, &serde_json::json!({}), &key).ok()
        });
    if signs.is_none() {
        return Err(ConfigError::Invalid(format!(
            "{at}.apple_private_key: not a PEM P-256 private key (the .p8 file Apple gives, -----BEGIN PRIVATE KEY-----)"
        )));
    }
    Ok(())
}
