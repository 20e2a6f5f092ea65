//! Sign in with Apple's quirks, as Kratos handles them: Apple takes no fixed client secret
//! but a short-lived ES256 JWT signed with the team's key for each code exchange, sent in the
//! body; it answers with `response_mode=form_post` when the name or the address is asked for
//! (the server's `form_post` route turns that cross-site POST into a GET with the browser's
//! cookies); and it sends the user's name only on the first authorization, unsigned, as the
//! `user` form field, which fills the name claims the ID token lacks.

use super::claims::Claims;
use super::provider::{fail, ProviderError};
use crate::config::OidcProviderConfig;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Apple's issuer (and the audience of its client secrets).
pub(super) const APPLE_ISSUER: &str = "https://appleid.apple.com";

/// How long a minted client secret is good for (Apple allows up to six months; one exchange
/// needs seconds).
const SECRET_FOR: time::Duration = time::Duration::minutes(5);

/// The `user` field is a few names and an address: anything longer is not Apple's.
const MAX_USER_FIELD: usize = 4096;

/// The client secret of one code exchange: `{iss: team, sub: client_id, aud: Apple, iat,
/// exp}`, ES256, `kid` the key's id.
pub(super) fn client_secret(
    cfg: &OidcProviderConfig,
    now: OffsetDateTime,
) -> Result<String, ProviderError> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(cfg.apple_private_key.expose().as_bytes())
        .map_err(|_| fail("the apple_private_key cannot sign"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(cfg.apple_private_key_id.clone());
    let iat = now.unix_timestamp();
    let claims = json!({
        "iss": cfg.apple_team_id,
        "sub": cfg.client_id,
        "aud": APPLE_ISSUER,
        "iat": iat,
        "exp": iat + SECRET_FOR.whole_seconds(),
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|_| fail("the apple_private_key cannot sign"))
}

/// Whether the authorization asks for `response_mode=form_post`: Apple requires it when the
/// scope names the user's name or address.
pub(super) fn wants_form_post(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == "name" || s == "email")
}

/// The first authorization's `user` field (`{"name": {"firstName", "lastName"}, "email"}`)
/// fills the names the ID token does not carry, never replacing what it does. It is not
/// signed, so it names the user and nothing more: the address and the subject come from the
/// ID token only.
pub(super) fn add_user_field(claims: &mut Claims, user: Option<&str>) {
    let Some(user) = user.filter(|u| !u.is_empty() && u.len() <= MAX_USER_FIELD) else {
        return;
    };
    let Ok(Value::Object(u)) = serde_json::from_str::<Value>(user) else {
        return;
    };
    let name = |k: &str| {
        u.get("name")
            .and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let (true, Some(first)) = (claims.given_name.is_empty(), name("firstName")) {
        claims.given_name = first;
    }
    if let Some(last) = name("lastName") {
        if claims.family_name.is_empty() {
            claims.family_name = last.clone();
        }
        if claims.last_name.is_empty() {
            claims.last_name = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_field_names_but_never_addresses() {
        let mut c = Claims {
            sub: "000123.abc.0456".into(),
            email: "x@privaterelay.appleid.com".into(),
            ..Claims::default()
        };
        let user =
            r#"{"name":{"firstName":"Grace","lastName":"Hopper"},"email":"other@example.com"}"#;
        add_user_field(&mut c, Some(user));
        assert_eq!(
            (
                c.given_name.as_str(),
                c.family_name.as_str(),
                c.last_name.as_str()
            ),
            ("Grace", "Hopper", "Hopper")
        );
        assert_eq!(c.email, "x@privaterelay.appleid.com");
        // What the ID token said stays; nonsense and oversized fields change nothing.
        let before = c.clone();
        add_user_field(&mut c, Some(r#"{"name":{"firstName":"Eve"}}"#));
        add_user_field(&mut c, Some("not json"));
        add_user_field(
            &mut c,
            Some(&format!(
                r#"{{"name":{{"lastName":"{}"}}}}"#,
                "x".repeat(5000)
            )),
        );
        assert_eq!(c, before);
    }

    #[test]
    fn form_post_follows_the_scopes_that_need_it() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants_form_post(&s(&["openid", "name"])));
        assert!(wants_form_post(&s(&["email"])));
        assert!(!wants_form_post(&s(&["openid"])));
    }
}
