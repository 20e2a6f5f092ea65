//! One configured provider and the OpenID Connect / OAuth2 conversation with it: its
//! endpoints (discovered in `discovery.rs`), the authorization URL, the code exchange, the ID
//! token's checks and userinfo.
//!
//! Written on `jsonwebtoken` (already the workspace's JWT library, on aws-lc-rs) and the
//! [`Upstream`] port rather than on the `openidconnect` crate: that one brings a second
//! crypto stack (RustCrypto RSA and elliptic curves) and its own HTTP client, and its typed
//! claims would hide what Kratos hands the mapper (`raw_claims`, every claim as sent). What is
//! left to write here is small: building one URL and reading three JSON documents.

use super::claims::Claims;
use crate::config::{ClaimsSource, OidcProviderConfig, OidcProviderKind, Pkce};
use crate::upstream::{HttpRequest, Upstream};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;
use time::OffsetDateTime;

pub use super::discovery::{Cache, Discovery};

/// Google's issuer; its ID tokens may also say it without the scheme.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Kakao's issuer (OpenID Connect must be switched on for the app in Kakao's console).
const KAKAO_ISSUER: &str = "https://kauth.kakao.com";
/// The `iss` Kratos gives GitHub's claims (GitHub has no ID token), and Naver's alike.
pub(super) const GITHUB_ISS: &str = "https://github.com/login/oauth/access_token";
pub(super) const NAVER_ISS: &str = "https://nid.naver.com";
/// Clock skew allowed on an ID token's `exp` and `iat`.
const LEEWAY: i64 = 60;

/// What went wrong talking to the provider, in words for the flow's message (they name the
/// provider's answer, never our secrets).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

pub(super) fn fail(reason: impl Into<String>) -> ProviderError {
    ProviderError(reason.into())
}

/// The provider could not be reached: the cause (what the outbound guard refused, a timeout)
/// is logged, never shown.
pub(super) fn unreachable(what: &str, cause: &crate::upstream::UpstreamError) -> ProviderError {
    tracing::warn!(%cause, "{what}");
    fail(what)
}

/// The token endpoint's answer. Naver sends `expires_in` as a string, so it is read loosely.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
}

/// A configured provider: its settings and its mapper's source.
pub struct Provider {
    pub config: OidcProviderConfig,
    pub mapper: Arc<str>,
}

/// Where each provider's sign-in page is, as an origin (`https://accounts.google.com`): the
/// `auth_url` when set, GitHub's and Naver's fixed ones, else the issuer's (discovery names the
/// endpoint, and providers keep it on the issuer's host). The hosted pages' CSP lets their
/// forms be redirected there.
pub fn authorization_origins(cfg: &crate::config::OidcMethodConfig) -> Vec<String> {
    if !cfg.enabled {
        return vec![];
    }
    cfg.config
        .providers
        .iter()
        .filter_map(|p| {
            let url = if !p.auth_url.is_empty() {
                p.auth_url.clone()
            } else if !p.issuer_url.is_empty()
                && !matches!(
                    p.provider,
                    OidcProviderKind::Github | OidcProviderKind::Naver
                )
            {
                p.issuer_url.clone()
            } else {
                match p.provider {
                    OidcProviderKind::Google => GOOGLE_ISSUER.into(),
                    OidcProviderKind::Kakao => KAKAO_ISSUER.into(),
                    OidcProviderKind::Github => "https://github.com".into(),
                    OidcProviderKind::Naver => NAVER_ISS.into(),
                    OidcProviderKind::Apple => super::apple::APPLE_ISSUER.into(),
                    _ => p.issuer_url.clone(),
                }
            };
            let u = url::Url::parse(&url).ok()?;
            Some(u.origin().ascii_serialization())
        })
        .collect()
}

/// What the authorization request carries besides the client's settings.
pub struct AuthRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: Option<&'a str>,
    /// A re-authentication: the provider is asked to sign the user in again.
    pub refresh: bool,
    /// `upstream_parameters` of the submit, already filtered to the allowed ones.
    pub upstream: &'a [(String, String)],
}

impl Provider {
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The name on buttons: the label, else the id.
    pub fn label(&self) -> &str {
        if self.config.label.is_empty() {
            &self.config.id
        } else {
            &self.config.label
        }
    }

    /// The issuer whose discovery document names the endpoints (OpenID Connect providers),
    /// or the base of the REST API the profile comes from (GitHub, Naver). The fixed ones are
    /// the providers'; an `issuer_url` points them elsewhere (GitHub Enterprise, a proxy, a
    /// test server).
    pub fn issuer(&self) -> String {
        let configured = self.config.issuer_url.trim_end_matches('/');
        if !configured.is_empty() {
            return configured.to_string();
        }
        match self.config.provider {
            OidcProviderKind::Google => GOOGLE_ISSUER.into(),
            OidcProviderKind::Kakao => KAKAO_ISSUER.into(),
            OidcProviderKind::Github => "https://api.github.com".into(),
            OidcProviderKind::Naver => "https://openapi.naver.com".into(),
            OidcProviderKind::Apple => super::apple::APPLE_ISSUER.into(),
            _ => String::new(),
        }
    }

    /// OAuth2 without OpenID Connect: no ID token, no discovery, the profile from a REST API.
    fn is_oauth2(&self) -> bool {
        matches!(
            self.config.provider,
            OidcProviderKind::Github | OidcProviderKind::Naver
        )
    }

    /// The endpoints: from discovery, or the fixed ones of an OAuth2 provider (`auth_url` and
    /// `token_url` override them).
    pub async fn endpoints(
        &self,
        cache: &Cache,
        up: &dyn Upstream,
        now: OffsetDateTime,
    ) -> Result<Arc<Discovery>, ProviderError> {
        let or = |set: &str, default: &str| {
            if set.is_empty() {
                default.to_string()
            } else {
                set.to_string()
            }
        };
        let (iss, auth, token, profile) = match self.config.provider {
            OidcProviderKind::Github => (
                GITHUB_ISS,
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "/user",
            ),
            OidcProviderKind::Naver => (
                NAVER_ISS,
                "https://nid.naver.com/oauth2.0/authorize",
                "https://nid.naver.com/oauth2.0/token",
                "/v1/nid/me",
            ),
            _ => return cache.discover(up, &self.issuer(), now).await,
        };
        Ok(Arc::new(Discovery {
            issuer: iss.into(),
            authorization_endpoint: or(&self.config.auth_url, auth),
            token_endpoint: or(&self.config.token_url, token),
            userinfo_endpoint: format!("{}{profile}", self.issuer()),
            jwks_uri: String::new(),
            code_challenge_methods_supported: vec![],
            // Both take the client's credentials in the body.
            token_endpoint_auth_methods_supported: vec!["client_secret_post".into()],
        }))
    }

    /// The scopes asked for: the configured ones, with `openid` (OpenID Connect providers).
    /// Google's `offline_access` becomes `access_type=offline` instead.
    fn scopes(&self) -> Vec<String> {
        if self.config.provider == OidcProviderKind::Naver {
            // Naver's permissions are set in its console; it takes no scope.
            return vec![];
        }
        let mut scopes: Vec<String> = self
            .config
            .scope
            .iter()
            .filter(|s| {
                !(self.config.provider == OidcProviderKind::Google && *s == "offline_access")
            })
            .cloned()
            .collect();
        if !self.is_oauth2() && !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        scopes
    }

    /// Whether the code exchange uses PKCE (`pkce: auto` follows what discovery offers).
    pub fn uses_pkce(&self, d: &Discovery) -> bool {
        match self.config.pkce {
            Pkce::Force => true,
            Pkce::Never => false,
            Pkce::Auto => d
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256"),
        }
    }

    /// The URL the browser is sent to.
    pub fn authorization_url(
        &self,
        d: &Discovery,
        r: &AuthRequest<'_>,
    ) -> Result<String, ProviderError> {
        let mut url = url::Url::parse(&d.authorization_endpoint)
            .map_err(|_| fail("the provider's authorization endpoint is not a URL"))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", r.redirect_uri);
            let scopes = self.scopes();
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
            q.append_pair("state", r.state);
            // A nonce goes where an ID token comes back to carry it.
            if !self.is_oauth2() {
                q.append_pair("nonce", r.nonce);
            }
            if let Some(challenge) = r.code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
            match (r.refresh, self.config.provider) {
                (false, _) | (true, OidcProviderKind::Github) => {}
                (true, OidcProviderKind::Naver) => {
                    q.append_pair("auth_type", "reauthenticate");
                }
                (true, _) => {
                    q.append_pair("prompt", "login");
                }
            }
            if !self.config.requested_claims.is_null() {
                q.append_pair("claims", &self.config.requested_claims.to_string());
            }
            if self.config.provider == OidcProviderKind::Google
                && self.config.scope.iter().any(|s| s == "offline_access")
            {
                q.append_pair("access_type", "offline");
            }
            if self.config.provider == OidcProviderKind::Apple
                && super::apple::wants_form_post(&scopes)
            {
                q.append_pair("response_mode", "form_post");
            }
            for (k, v) in r.upstream {
                if !(r.refresh && k == "prompt") {
                    q.append_pair(k, v);
                }
            }
        }
        Ok(url.into())
    }

    /// Trades the authorization code for tokens. Client authentication: HTTP Basic unless the
    /// provider offers only `client_secret_post`; Apple's secret is minted for the exchange.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange(
        &self,
        up: &dyn Upstream,
        d: &Discovery,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Tokens, ProviderError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", redirect_uri.to_string()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_string()));
        }
        // Naver's token endpoint wants the state again.
        if self.config.provider == OidcProviderKind::Naver {
            form.push(("state", state.to_string()));
        }
        let apple = self.config.provider == OidcProviderKind::Apple;
        let secret = if apple {
            super::apple::client_secret(&self.config, now)?
        } else {
            self.config.client_secret.expose().to_string()
        };
        let methods = &d.token_endpoint_auth_methods_supported;
        // Kakao documents `client_secret_post` only; Apple takes its secret in the body.
        let post_only = apple
            || self.config.provider == OidcProviderKind::Kakao
            || (!methods.is_empty() && !methods.iter().any(|m| m == "client_secret_basic"));
        if post_only {
            form.push(("client_id", self.config.client_id.clone()));
            form.push(("client_secret", secret.clone()));
        }
        let mut req = HttpRequest::post_form(&d.token_endpoint, form);
        if !post_only {
            req.basic_auth = Some((form_encode(&self.config.client_id), form_encode(&secret)));
        }
        let resp = up
            .send(req)
            .await
            .map_err(|e| unreachable("the provider's token endpoint could not be reached", &e))?;
        let body = resp.json().unwrap_or(Value::Null);
        // Some providers answer an error with 200 (GitHub, Naver): the body decides.
        if let Some(err) = body.get("error").and_then(Value::as_str) {
            let why = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(fail(format!(
                "the provider refused the authorization code: {}{}{}",
                crate::ui::echo(err),
                if why.is_empty() { "" } else { ": " },
                crate::ui::echo(why)
            )));
        }
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if resp.status != 200 || text("access_token").is_empty() {
            return Err(fail(format!(
                "the provider's token endpoint answered {} without an access token",
                resp.status
            )));
        }
        Ok(Tokens {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
        })
    }

    /// The user's claims: the ID token's (checked against the provider's keys, our client id,
    /// the issuer, the nonce and the time), or, with `claims_source: userinfo`, userinfo's
    /// for the same subject; GitHub's and Naver's from their REST APIs.
    pub async fn claims(
        &self,
        cache: &Cache,
        up: &dyn Upstream,
        d: &Discovery,
        tokens: &Tokens,
        nonce: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Claims, ProviderError> {
        let mut claims = match self.config.provider {
            OidcProviderKind::Github => self.github_claims(up, d, &tokens.access_token).await?,
            OidcProviderKind::Naver => self.naver_claims(up, d, &tokens.access_token).await?,
            _ => self.oidc_claims(cache, up, d, tokens, nonce, now).await?,
        };
        if claims.sub.is_empty() {
            return Err(fail("the provider did not return a subject"));
        }
        if claims.iss.is_empty() {
            claims.iss = d.issuer.clone();
        }
        Ok(claims)
    }

    /// An OpenID Connect provider's claims (see [`Provider::claims`]). Kakao's e-mail is
    /// verified only in userinfo, so Kakao always reads it, and is named by the nickname when
    /// the name is not shared.
    async fn oidc_claims(
        &self,
        cache: &Cache,
        up: &dyn Upstream,
        d: &Discovery,
        tokens: &Tokens,
        nonce: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Claims, ProviderError> {
        if tokens.id_token.is_empty() {
            return Err(fail("the provider did not return an ID token"));
        }
        let id = self
            .verify_id_token(cache, up, d, &tokens.id_token, nonce, now)
            .await?;
        let kakao = self.config.provider == OidcProviderKind::Kakao;
        if !kakao && self.config.claims_source != ClaimsSource::Userinfo {
            return Ok(Claims::from_standard(&id));
        }
        let info = self.userinfo(up, d, &tokens.access_token).await?;
        if info.get("sub") != id.get("sub") {
            return Err(fail(
                "the provider's userinfo is about another subject than its ID token",
            ));
        }
        let mut c = if kakao {
            // Everything both said, userinfo winning.
            let mut all = id.clone();
            all.extend(info);
            let mut c = Claims::from_standard(&all);
            if c.name.is_empty() {
                c.name = c.nickname.clone();
            }
            c
        } else {
            Claims::from_standard(&info)
        };
        if c.iss.is_empty() {
            c.iss = d.issuer.clone();
        }
        Ok(c)
    }

    async fn userinfo(
        &self,
        up: &dyn Upstream,
        d: &Discovery,
        access_token: &str,
    ) -> Result<Map<String, Value>, ProviderError> {
        if d.userinfo_endpoint.is_empty() {
            return Err(fail(
                "the provider has no userinfo endpoint (claims_source: userinfo)",
            ));
        }
        let resp = up
            .send(HttpRequest::get(&d.userinfo_endpoint).bearer(access_token))
            .await
            .map_err(|e| {
                unreachable("the provider's userinfo endpoint could not be reached", &e)
            })?;
        match resp.json() {
            Some(Value::Object(m)) if resp.status == 200 => Ok(m),
            _ => Err(fail(format!(
                "the provider's userinfo endpoint answered {}",
                resp.status
            ))),
        }
    }

    /// Checks an ID token and returns its claims.
    pub async fn verify_id_token(
        &self,
        cache: &Cache,
        up: &dyn Upstream,
        d: &Discovery,
        token: &str,
        nonce: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Map<String, Value>, ProviderError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| fail("the ID token is malformed"))?;
        // Only the provider's public keys sign ID tokens: a symmetric `alg` would make the
        // client secret (or a key set entry) a verification key.
        const ASYMMETRIC: [Algorithm; 9] = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(fail(
                "the ID token is not signed with a public-key algorithm",
            ));
        }
        let keys = cache
            .jwks(up, &d.jwks_uri, header.kid.as_deref(), now)
            .await?;
        let jwk = keys
            .keys
            .iter()
            .find(|k| match &header.kid {
                Some(_) => k.common.key_id == header.kid,
                // No key id: a signing key made for this algorithm (or for any).
                None => {
                    k.common.public_key_use != Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                        && k.common
                            .key_algorithm
                            .is_none_or(|a| a.to_string() == format!("{:?}", header.alg))
                }
            })
            .ok_or_else(|| {
                fail("the ID token is signed with a key the provider does not publish")
            })?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|_| fail("the provider publishes a key that cannot be used"))?;
        let mut v = Validation::new(header.alg);
        let mut audiences = vec![self.config.client_id.clone()];
        audiences.extend(self.config.additional_id_token_audiences.iter().cloned());
        v.set_audience(&audiences);
        let mut issuers = vec![d.issuer.clone()];
        if d.issuer == GOOGLE_ISSUER {
            issuers.push("accounts.google.com".into());
        }
        v.set_issuer(&issuers);
        // Time is checked below against the core's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            fail(match e.kind() {
                ErrorKind::InvalidAudience => "the ID token is for another client",
                ErrorKind::InvalidIssuer => "the ID token is from another issuer",
                ErrorKind::InvalidSignature => "the ID token's signature is wrong",
                _ => "the ID token is invalid",
            })
        })?;
        let claims = data.claims;
        // Issued to several audiences: the party it was issued for must be one of ours.
        let several = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        if let (true, Some(azp)) = (several, claims.get("azp").and_then(Value::as_str)) {
            if !audiences.iter().any(|a| a == azp) {
                return Err(fail("the ID token is for another client"));
            }
        }
        let at = |k: &str| claims.get(k).and_then(Value::as_i64);
        let t = now.unix_timestamp();
        match at("exp") {
            Some(exp) if exp + LEEWAY > t => {}
            _ => return Err(fail("the ID token has expired")),
        }
        if at("iat").is_some_and(|iat| iat > t + LEEWAY) {
            return Err(fail("the ID token was issued in the future"));
        }
        if let Some(expected) = nonce {
            let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !crate::csrf::same_secret(got, expected) {
                return Err(fail("the ID token's nonce is not this sign-in's"));
            }
        }
        Ok(claims)
    }
}

/// `application/x-www-form-urlencoded` of a client id or secret, as RFC 6749 §2.3.1 wants
/// them before Basic authentication.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
