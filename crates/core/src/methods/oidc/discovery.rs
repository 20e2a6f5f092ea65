//! What a provider publishes about itself: its discovery document
//! (`/.well-known/openid-configuration`) and its key set, fetched through the [`Upstream`]
//! port and kept by URL.

use super::provider::{fail, unreachable, ProviderError};
use crate::upstream::{HttpRequest, Upstream};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// How long discovery documents and key sets are kept.
const CACHE_FOR: Duration = Duration::hours(1);
/// A key set is fetched again for an unknown key id at most this often.
const REFETCH_AFTER: Duration = Duration::seconds(10);

/// `/.well-known/openid-configuration`, the fields used.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

/// Discovery documents and key sets, by URL, for an hour; an unknown key id fetches the set
/// again (keys rotate), at most every ten seconds.
#[derive(Default)]
pub struct Cache {
    /// Whether discovered endpoints may be plain http (dev mode).
    allow_http: bool,
    discovery: Mutex<HashMap<String, (OffsetDateTime, Arc<Discovery>)>>,
    jwks: Mutex<HashMap<String, (OffsetDateTime, Arc<JwkSet>)>>,
}

impl Cache {
    pub fn new(allow_http: bool) -> Cache {
        Cache {
            allow_http,
            ..Cache::default()
        }
    }

    pub async fn discover(
        &self,
        up: &dyn Upstream,
        issuer: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Discovery>, ProviderError> {
        if let Some((at, d)) = self
            .discovery
            .lock()
            .ok()
            .and_then(|m| m.get(issuer).cloned())
        {
            if now - at < CACHE_FOR {
                return Ok(d);
            }
        }
        let url = format!("{issuer}/.well-known/openid-configuration");
        let resp = up.send(HttpRequest::get(&url)).await.map_err(|e| {
            unreachable("the provider's discovery document could not be fetched", &e)
        })?;
        let d: Discovery = match resp.json() {
            Some(v) if resp.status == 200 => serde_json::from_value(v).map_err(|e| {
                fail(format!(
                    "the provider's discovery document is incomplete: {e}"
                ))
            })?,
            _ => {
                return Err(fail(format!(
                    "the provider's discovery document answered {}",
                    resp.status
                )))
            }
        };
        if d.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(fail(
                "the provider's discovery document names another issuer",
            ));
        }
        let urls = [
            &d.issuer,
            &d.authorization_endpoint,
            &d.token_endpoint,
            &d.jwks_uri,
            &d.userinfo_endpoint,
        ];
        if !self.allow_http
            && urls
                .iter()
                .any(|u| !u.is_empty() && !u.starts_with("https://"))
        {
            return Err(fail(
                "the provider's discovery document names endpoints that are not https",
            ));
        }
        let d = Arc::new(d);
        if let Ok(mut m) = self.discovery.lock() {
            m.insert(issuer.to_string(), (now, d.clone()));
        }
        Ok(d)
    }

    pub(super) async fn jwks(
        &self,
        up: &dyn Upstream,
        url: &str,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Arc<JwkSet>, ProviderError> {
        let cached = self.jwks.lock().ok().and_then(|m| m.get(url).cloned());
        if let Some((at, set)) = &cached {
            let has = kid.is_none_or(|k| {
                set.keys
                    .iter()
                    .any(|j| j.common.key_id.as_deref() == Some(k))
            });
            if now - *at < CACHE_FOR && (has || now - *at < REFETCH_AFTER) {
                return Ok(set.clone());
            }
        }
        let resp = up
            .send(HttpRequest::get(url))
            .await
            .map_err(|e| unreachable("the provider's keys could not be fetched", &e))?;
        let set: JwkSet = match resp.json() {
            Some(v) if resp.status == 200 => serde_json::from_value(v)
                .map_err(|_| fail("the provider's key set is malformed"))?,
            _ => {
                return Err(fail(format!(
                    "the provider's key set answered {}",
                    resp.status
                )))
            }
        };
        let set = Arc::new(set);
        if let Ok(mut m) = self.jwks.lock() {
            m.insert(url.to_string(), (now, set.clone()));
        }
        Ok(set)
    }
}
