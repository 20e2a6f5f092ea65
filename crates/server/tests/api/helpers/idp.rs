//! A small OpenID provider for the scenarios the real one (`oidc-provider`, in the interop
//! suite) cannot stage: ID tokens signed with the wrong key, for another audience or issuer,
//! with another nonce or expired, a token endpoint that answers an error with 200 or nonsense.
//! It also plays GitHub (`/github/…`), Naver (`/naver/…`) and Kakao's userinfo with their
//! recorded answers (`tests/fixtures/providers/`).
//!
//! It answers with the documented shapes (discovery, JWKS, the token response); a test decides
//! what the token endpoint answers for the authorization code it will send ([`Idp::answer`]),
//! so scenarios running at the same time do not meet. One provider serves the whole test
//! binary ([`idp`]), on a thread of its own, as every scenario's server must know its URL when
//! it is configured.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const CLIENT_ID: &str = "portcullis-api-tests";
pub const CLIENT_SECRET: &str = "api-tests-secret";

/// What the token endpoint answers next.
#[derive(Clone)]
pub enum Answer {
    /// An ID token with these claims (merged over iss, aud, exp, iat), signed with the
    /// published key, or with `Signer::Other` a key it does not publish, or HS256 with the
    /// client secret.
    IdToken { claims: Value, signer: Signer },
    /// This JSON body, with this status.
    Body { status: u16, body: Value },
}

#[derive(Clone, Copy)]
pub enum Signer {
    Published,
    Other,
    ClientSecret,
}

struct Inner {
    issuer: String,
    key: EncodingKey,
    other: EncodingKey,
    jwk: Jwk,
    /// What the token endpoint answers, by authorization code.
    answers: Mutex<HashMap<String, Answer>>,
    /// The forms the token endpoint received, by authorization code.
    exchanges: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// What the profile APIs say for the user of a code, over the recorded answers.
    profiles: Mutex<HashMap<String, Value>>,
}

#[derive(Clone)]
pub struct Idp {
    inner: Arc<Inner>,
}

fn ec_key() -> EncodingKey {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    EncodingKey::from_ec_der(der.as_ref())
}

/// The test binary's provider.
pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (idp, listener) = Idp::bind().await;
                tx.send(idp.clone()).unwrap();
                let app = Router::new()
                    .route("/.well-known/openid-configuration", get(discovery))
                    .route("/jwks", get(jwks))
                    .route("/token", post(token))
                    .route("/v1/oidc/userinfo", get(kakao_userinfo))
                    .route("/github/login/oauth/access_token", post(github_token))
                    .route("/github/api/user", get(github_user))
                    .route("/github/api/user/emails", get(github_emails))
                    .route("/naver/oauth2.0/token", post(naver_token))
                    .route("/naver/v1/nid/me", get(naver_me))
                    .with_state(idp);
                axum::serve(listener, app).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

impl Idp {
    async fn bind() -> (Idp, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = ec_key();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let idp = Idp {
            inner: Arc::new(Inner {
                issuer,
                key,
                other: ec_key(),
                jwk,
                answers: Mutex::new(HashMap::new()),
                exchanges: Mutex::new(HashMap::new()),
                profiles: Mutex::new(HashMap::new()),
            }),
        };
        (idp, listener)
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// What the token endpoint answers for `code`.
    pub fn answer(&self, code: &str, a: Answer) {
        self.inner
            .answers
            .lock()
            .unwrap()
            .insert(code.to_string(), a);
    }

    /// For `code`: a good ID token for `sub` with this nonce, plus `extra` claims.
    pub fn answer_token(&self, code: &str, sub: &str, nonce: &str, extra: Value) {
        let mut claims = json!({ "sub": sub, "nonce": nonce });
        merge(&mut claims, &extra);
        self.answer(
            code,
            Answer::IdToken {
                claims,
                signer: Signer::Published,
            },
        );
    }

    /// What the profile APIs say for `code`'s user: `user` and `emails` (GitHub), `naver`
    /// (its `response`), `naver_error` (the envelope's failure), `kakao` (userinfo), each over
    /// the recorded answer.
    pub fn profile(&self, code: &str, overrides: Value) {
        self.inner
            .profiles
            .lock()
            .unwrap()
            .insert(code.to_string(), overrides);
    }

    /// An ID token of this provider: `claims` over iss, aud, iat and exp (now + 5 min).
    pub fn sign(&self, claims: Value) -> String {
        #[allow(clippy::disallowed_methods)]
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut full =
            json!({ "iss": self.issuer(), "aud": CLIENT_ID, "iat": now, "exp": now + 300 });
        merge(&mut full, &claims);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, &full, &self.inner.key).unwrap()
    }

    /// The form the token endpoint received with `code`.
    pub fn exchange(&self, code: &str) -> Option<Vec<(String, String)>> {
        self.inner.exchanges.lock().unwrap().get(code).cloned()
    }

    /// A provider block for the server's configuration, with this id and mapper.
    pub fn provider(&self, id: &str, mapper: &str) -> Value {
        use base64::Engine;
        json!({
            "id": id,
            "label": "Fake",
            "provider": "generic",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "issuer_url": self.issuer(),
            "mapper_url": format!("base64://{}", base64::engine::general_purpose::STANDARD.encode(mapper)),
            "scope": ["email"],
        })
    }
}

fn merge(base: &mut Value, over: &Value) {
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
    }
}

async fn discovery(State(idp): State<Idp>) -> Json<Value> {
    let i = idp.issuer();
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/auth"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/v1/oidc/userinfo"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(idp): State<Idp>) -> Json<JwkSet> {
    Json(JwkSet {
        keys: vec![idp.inner.jwk.clone()],
    })
}

async fn token(
    State(idp): State<Idp>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> (axum::http::StatusCode, Json<Value>) {
    let code = form
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    idp.inner
        .exchanges
        .lock()
        .unwrap()
        .insert(code.clone(), form);
    let next = idp.inner.answers.lock().unwrap().get(&code).cloned();
    let next = next.unwrap_or(Answer::Body {
        status: 400,
        body: json!({"error": "invalid_grant"}),
    });
    match next {
        Answer::Body { status, body } => (
            axum::http::StatusCode::from_u16(status).unwrap(),
            Json(body),
        ),
        Answer::IdToken { claims, signer } => {
            // The provider is another server, with its own (the wall) clock.
            #[allow(clippy::disallowed_methods)]
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let mut full =
                json!({ "iss": idp.issuer(), "aud": CLIENT_ID, "iat": now, "exp": now + 300 });
            merge(&mut full, &claims);
            let token = match signer {
                Signer::ClientSecret => jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &full,
                    &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
                ),
                s => {
                    let mut h = Header::new(Algorithm::ES256);
                    h.kid = Some("k1".into());
                    let key = if matches!(s, Signer::Published) {
                        &idp.inner.key
                    } else {
                        &idp.inner.other
                    };
                    jsonwebtoken::encode(&h, &full, key)
                }
            }
            .unwrap();
            (
                axum::http::StatusCode::OK,
                Json(
                    json!({ "access_token": format!("at-{code}"), "token_type": "Bearer", "expires_in": 300, "id_token": token }),
                ),
            )
        }
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The code a profile request's `Authorization: Bearer at-<code>` stands for.
fn code_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer at-"))
        .unwrap_or_default()
        .to_string()
}

fn overrides(idp: &Idp, code: &str, key: &str) -> Value {
    let profiles = idp.inner.profiles.lock().unwrap();
    profiles
        .get(code)
        .and_then(|p| p.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

/// GitHub's token endpoint: JSON (asked for with `Accept`), errors with 200.
async fn github_token(
    State(idp): State<Idp>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Json<Value> {
    let code = form
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    idp.inner
        .exchanges
        .lock()
        .unwrap()
        .insert(code.clone(), form);
    if code.starts_with("bad") {
        return Json(fixture("github-token-error.json"));
    }
    let mut t = fixture("github-token.json");
    t["access_token"] = json!(format!("at-{code}"));
    Json(t)
}

async fn github_user(State(idp): State<Idp>, headers: axum::http::HeaderMap) -> Json<Value> {
    let mut user = fixture("github-user.json");
    merge(&mut user, &overrides(&idp, &code_of(&headers), "user"));
    Json(user)
}

async fn github_emails(State(idp): State<Idp>, headers: axum::http::HeaderMap) -> Json<Value> {
    match overrides(&idp, &code_of(&headers), "emails") {
        Value::Null => Json(fixture("github-emails.json")),
        emails => Json(emails),
    }
}

/// Naver's token endpoint: the client's credentials and the state in the form, `expires_in`
/// as a string, errors with 200.
async fn naver_token(
    State(idp): State<Idp>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Json<Value> {
    let field = |k: &str| {
        form.iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let code = field("code");
    idp.inner
        .exchanges
        .lock()
        .unwrap()
        .insert(code.clone(), form.clone());
    if field("state").is_empty() || field("client_secret") != CLIENT_SECRET {
        return Json(
            json!({"error": "invalid_request", "error_description": "state or client_secret missing"}),
        );
    }
    if code.starts_with("bad") {
        return Json(fixture("naver-token-error.json"));
    }
    let mut t = fixture("naver-token.json");
    t["access_token"] = json!(format!("at-{code}"));
    Json(t)
}

async fn naver_me(State(idp): State<Idp>, headers: axum::http::HeaderMap) -> Json<Value> {
    let code = code_of(&headers);
    if overrides(&idp, &code, "naver_error") == json!(true) {
        return Json(fixture("naver-me-error.json"));
    }
    let mut me = fixture("naver-me.json");
    merge(&mut me["response"], &overrides(&idp, &code, "naver"));
    Json(me)
}

async fn kakao_userinfo(State(idp): State<Idp>, headers: axum::http::HeaderMap) -> Json<Value> {
    let mut info = fixture("kakao-userinfo.json");
    merge(&mut info, &overrides(&idp, &code_of(&headers), "kakao"));
    Json(info)
}
