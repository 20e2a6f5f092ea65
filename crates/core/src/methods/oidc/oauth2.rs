//! The OAuth2 providers without OpenID Connect (GitHub, Naver): no ID token, so the claims
//! come from each one's REST API, read the way Kratos reads GitHub's.

use super::claims::Claims;
use super::provider::{
    fail, unreachable, Discovery, Provider, ProviderError, GITHUB_ISS, NAVER_ISS,
};
use crate::upstream::{HttpRequest, Upstream};
use serde_json::Value;
use time::OffsetDateTime;

impl Provider {
    /// GitHub (`provider_github.go`): `/user`, and with the `user:email` scope the primary
    /// entry of `/user/emails`. No `raw_claims`, as in Kratos.
    pub(super) async fn github_claims(
        &self,
        up: &dyn Upstream,
        d: &Discovery,
        access_token: &str,
    ) -> Result<Claims, ProviderError> {
        let user = self.rest(up, &d.userinfo_endpoint, access_token).await?;
        let user = user.as_object().cloned().unwrap_or_default();
        let text = |k: &str| match user.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let updated_at = user
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map_or(0, OffsetDateTime::unix_timestamp);
        let mut c = Claims {
            iss: GITHUB_ISS.into(),
            sub: text("id"),
            name: text("name"),
            nickname: text("login"),
            website: text("blog"),
            picture: text("avatar_url"),
            profile: text("html_url"),
            updated_at,
            ..Claims::default()
        };
        if self.config.scope.iter().any(|s| s == "user:email") {
            let url = format!("{}/emails", d.userinfo_endpoint);
            let emails = self.rest(up, &url, access_token).await?;
            let primary = emails
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e.get("primary") == Some(&Value::Bool(true)));
            if let Some(e) = primary {
                c.email = e
                    .get("email")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                c.email_verified = e.get("verified") == Some(&Value::Bool(true));
            }
        }
        Ok(c)
    }

    /// Naver (`/v1/nid/me`): an envelope whose `resultcode` is `"00"` on success, the profile
    /// in `response`. Its e-mail carries no verification flag, so it is never vouched for.
    pub(super) async fn naver_claims(
        &self,
        up: &dyn Upstream,
        d: &Discovery,
        access_token: &str,
    ) -> Result<Claims, ProviderError> {
        let body = self.rest(up, &d.userinfo_endpoint, access_token).await?;
        if body.get("resultcode").and_then(Value::as_str) != Some("00") {
            let why = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no profile");
            return Err(fail(format!(
                "the provider refused the profile: {}",
                crate::ui::echo(why)
            )));
        }
        let r = body
            .get("response")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let text = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let birthdate = match (text("birthyear"), text("birthday")) {
            (y, md) if !y.is_empty() && !md.is_empty() => format!("{y}-{md}"),
            _ => String::new(),
        };
        Ok(Claims {
            iss: NAVER_ISS.into(),
            sub: text("id"),
            name: text("name"),
            nickname: text("nickname"),
            email: text("email"),
            picture: text("profile_image"),
            gender: text("gender"),
            birthdate,
            phone_number: text("mobile_e164"),
            raw: Some(r),
            ..Claims::default()
        })
    }

    /// A REST API's JSON answer for the user's token.
    async fn rest(
        &self,
        up: &dyn Upstream,
        url: &str,
        access_token: &str,
    ) -> Result<Value, ProviderError> {
        let resp = up
            .send(HttpRequest::get(url).bearer(access_token))
            .await
            .map_err(|e| unreachable("the provider's API could not be reached", &e))?;
        match resp.json() {
            Some(v) if resp.status == 200 => Ok(v),
            _ => Err(fail(format!("the provider's API answered {}", resp.status))),
        }
    }
}
