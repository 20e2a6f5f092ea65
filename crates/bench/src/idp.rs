//! A local OpenID provider for the social sign-in row: discovery, its key set, and a token
//! endpoint that signs an ID token for the code it gets. The code carries the sign-in's nonce
//! and the subject (`<nonce>.<subject>`), so the provider keeps no state and costs the
//! server's callback next to nothing of its own.

use anyhow::Result;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

pub const CLIENT_ID: &str = "portcullis-bench";

/// The provider's issuer URL, once started.
static ISSUER: OnceLock<String> = OnceLock::new();

pub fn issuer() -> Option<&'static str> {
    ISSUER.get().map(String::as_str)
}

struct Keys {
    issuer: String,
    key: EncodingKey,
    jwk: Jwk,
}

/// Starts the provider on a free port of 127.0.0.1, on the current runtime.
pub async fn start() -> Result<()> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("no key"))?;
    let key = EncodingKey::from_ec_der(der.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
    jwk.common.key_id = Some("bench".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let keys = Arc::new(Keys {
        issuer: issuer.clone(),
        key,
        jwk,
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(keys);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = ISSUER.set(issuer);
    Ok(())
}

/// The server's provider block for it, as the environment variable's JSON.
pub fn provider_env(issuer: &str) -> String {
    // `{identity: {traits: {email: claims.email}}}`, as base64.
    let mapper = "e2lkZW50aXR5OiB7dHJhaXRzOiB7ZW1haWw6IHN0ZC5leHRWYXIoJ2NsYWltcycpLmVtYWlsfX19";
    json!([{
        "id": "bench", "provider": "generic", "client_id": CLIENT_ID, "client_secret": "bench-secret",
        "issuer_url": issuer, "mapper_url": format!("base64://{mapper}"), "scope": ["email"],
    }])
    .to_string()
}

async fn discovery(State(k): State<Arc<Keys>>) -> Json<Value> {
    let i = &k.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/auth"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(k): State<Arc<Keys>>) -> Json<JwkSet> {
    Json(JwkSet {
        keys: vec![k.jwk.clone()],
    })
}

async fn token(
    State(k): State<Arc<Keys>>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Json<Value> {
    let code = form
        .iter()
        .find(|(f, _)| f == "code")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let (nonce, sub) = code.split_once('.').unwrap_or(("", ""));
    // The provider is another server, with the wall clock of its own.
    #[allow(clippy::disallowed_methods)]
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": k.issuer, "aud": CLIENT_ID, "sub": sub, "nonce": nonce, "iat": now, "exp": now + 300,
        "email": format!("{sub}@bench.example"), "email_verified": true,
    });
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("bench".into());
    let id_token = jsonwebtoken::encode(&h, &claims, &k.key).unwrap_or_default();
    Json(
        json!({ "access_token": format!("at-{code}"), "token_type": "Bearer", "expires_in": 300, "id_token": id_token }),
    )
}
