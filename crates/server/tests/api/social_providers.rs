//! Social sign-in with the providers beyond plain OpenID Connect (GitHub, Naver, Kakao, against
//! their recorded answers; Apple's client secret, form_post and first-time name), native apps
//! (exchange codes, Google and Apple ID tokens) and tokens for a browser's session; the
//! scenarios and helpers of `social.rs`, on the same test provider.

use crate::helpers::idp::idp;
use crate::helpers::{location, unique_email, Browser, TestApp};
use crate::social::{b_whoami, back, code, refused_on_flow, social, start, start_at, Started};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend! {
    github_signs_up_without_an_id_token_with_its_primary_verified_address with social,
    naver_signs_up_with_an_address_it_does_not_vouch_for_and_its_200_errors_refuse with social,
    kakao_vouches_for_the_address_in_userinfo_and_names_by_nickname with social,
    a_native_app_signs_up_in_the_system_browser_and_exchanges_its_code_once with social,
    a_native_app_signs_in_with_googles_id_token_and_its_nonce with social,
    a_browser_signed_in_by_a_provider_gets_tokens_for_its_api with social,
    apple_posts_back_names_the_user_once_and_gets_a_signed_client_secret with social,
}

/// An Apple mapper as Apple's documentation suggests writing one: the address (Apple's
/// `email_verified` is the string "true") and the names of the first authorization.
pub(crate) const APPLE_MAPPER: &str = r#"
local claims = { email_verified: false } + std.extVar('claims');
{ identity: { traits: {
    email: claims.email,
    name: { first: std.get(claims, 'given_name', ''), last: std.get(claims, 'family_name', '') },
  },
  verified_addresses: if claims.email_verified then [{ value: claims.email, via: 'email' }] else [],
} }"#;
pub(crate) const APPLE_TEAM: &str = "TEAM123456";
pub(crate) const APPLE_KEY_ID: &str = "KEY7654321";

/// The team's signing key as Apple hands it out (a PKCS#8 `.p8` PEM), and its public half.
pub(crate) fn apple_team_key() -> &'static (String, Vec<u8>) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;
    static KEY: std::sync::OnceLock<(String, Vec<u8>)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        (pem, pair.public_key().as_ref().to_vec())
    })
}

fn query_of(s: &Started) -> std::collections::HashMap<String, String> {
    s.query.iter().cloned().collect()
}

async fn github_signs_up_without_an_id_token_with_its_primary_verified_address(app: TestApp) {
    let mut b = Browser::new(&app);
    let s = start_at(
        &mut b,
        "registration",
        "github",
        "/github/login/oauth/authorize",
    )
    .await;
    let q = query_of(&s);
    // OAuth2: the configured scope only, no nonce, no PKCE unless forced.
    assert_eq!(q["scope"], "user:email");
    assert!(
        !q.contains_key("nonce") && !q.contains_key("code_challenge"),
        "{q:?}"
    );
    let c = code();
    idp().profile(&c, json!({ "user": { "id": 4242 } }));
    let r = back(&mut b, "github", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(b.has_session_cookie(), "{}", location(&r));
    // The client's credentials went in the body.
    let form = idp().exchange(&c).unwrap();
    assert!(form
        .iter()
        .any(|(k, v)| k == "client_secret" && v == crate::helpers::idp::CLIENT_SECRET));
    let (_, me) = b_whoami(&mut b).await;
    assert_eq!(
        me["identity"]["traits"]["email"], "octocat@github.com",
        "the primary address"
    );
    assert_eq!(
        me["identity"]["verifiable_addresses"][0]["verified"], false,
        "the quickstart mapper vouches for nothing"
    );
    let owners = app
        .admin_get_list("/admin/identities?credentials_identifier=github:4242")
        .await;
    assert_eq!(owners.len(), 1, "the numeric id is the subject");
    // GitHub answers a bad code with 200 and an error.
    let mut b = Browser::new(&app);
    let s = start_at(&mut b, "login", "github", "/github/login/oauth/authorize").await;
    let r = back(&mut b, "github", &s, &format!("bad-{}", code())).await;
    let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
    assert!(
        text.contains("bad_verification_code: The code passed is incorrect or expired."),
        "{text}"
    );
}

async fn naver_signs_up_with_an_address_it_does_not_vouch_for_and_its_200_errors_refuse(
    app: TestApp,
) {
    let mut b = Browser::new(&app);
    let s = start_at(&mut b, "registration", "naver", "/naver/oauth2.0/authorize").await;
    let q = query_of(&s);
    assert!(
        !q.contains_key("scope") && !q.contains_key("nonce"),
        "{q:?}"
    );
    let c = code();
    let email = unique_email("naver");
    idp().profile(
        &c,
        json!({ "naver": { "email": email, "id": format!("n-{c}") } }),
    );
    let r = back(&mut b, "naver", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(b.has_session_cookie(), "{}", location(&r));
    let (_, me) = b_whoami(&mut b).await;
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());
    assert_eq!(me["identity"]["traits"]["name"]["first"], "오픈 API");
    assert_eq!(me["identity"]["verifiable_addresses"][0]["verified"], false);
    // The token request carried the state, as Naver wants.
    let form = idp().exchange(&c).unwrap();
    assert!(form.iter().any(|(k, v)| k == "state" && *v == s.state));
    // A refused code (200 with an error) and a refused profile (resultcode not "00").
    for (what, why) in [
        ("code", "invalid_request: no valid data in session"),
        ("profile", "Authentication failed"),
    ] {
        let mut b = Browser::new(&app);
        let s = start_at(&mut b, "login", "naver", "/naver/oauth2.0/authorize").await;
        let c = if what == "code" {
            format!("bad-{}", code())
        } else {
            code()
        };
        idp().profile(&c, json!({ "naver_error": true }));
        let r = back(&mut b, "naver", &s, &c).await;
        let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
        assert!(text.contains(why), "{what}: {text}");
    }
}

async fn kakao_vouches_for_the_address_in_userinfo_and_names_by_nickname(app: TestApp) {
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "kakao").await;
    let c = code();
    let sub = format!(
        "{}",
        1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000)
    );
    let email = unique_email("kakao");
    // The ID token has no `email_verified`; userinfo says it is verified.
    idp().answer_token(
        &c,
        &sub,
        &s.nonce,
        json!({ "email": email, "nickname": "홍길동" }),
    );
    idp().profile(&c, json!({ "kakao": { "sub": sub, "email": email } }));
    let r = back(&mut b, "kakao", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(b.has_session_cookie(), "{}", location(&r));
    let (_, me) = b_whoami(&mut b).await;
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());
    assert_eq!(me["identity"]["traits"]["name"]["first"], "홍길동");
    assert_eq!(me["identity"]["verifiable_addresses"][0]["verified"], true);
    // Kakao takes the client's credentials in the body.
    let form = idp().exchange(&c).unwrap();
    assert!(form.iter().any(|(k, _)| k == "client_secret"));
    // Userinfo about someone else than the ID token is refused.
    let mut b = Browser::new(&app);
    let s = start(&mut b, "login", "kakao").await;
    let c = code();
    idp().answer_token(&c, "111", &s.nonce, json!({}));
    idp().profile(&c, json!({ "kakao": { "sub": "222" } }));
    let r = back(&mut b, "kakao", &s, &c).await;
    let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
    assert!(text.contains("another subject"), "{text}");
}

async fn a_native_app_signs_up_in_the_system_browser_and_exchanges_its_code_once(app: TestApp) {
    // Without an exchange code an API flow cannot use a provider.
    let (_, plain) = app.get_json("/self-service/login/api").await;
    let (st, body) = app
        .post_json(
            &format!("/self-service/login?flow={}", plain["id"].as_str().unwrap()),
            &json!({"method": "oidc", "provider": "fake"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("return_session_token_exchange_code"),
        "{body}"
    );

    let (st, flow) = app
        .get_json("/self-service/registration/api?return_session_token_exchange_code=true&return_to=https://app.example/callback")
        .await;
    assert_eq!(st, StatusCode::OK, "{flow}");
    let init = flow["session_token_exchange_code"]
        .as_str()
        .unwrap()
        .to_string();
    let id = flow["id"].as_str().unwrap();
    // Read again, the flow does not show it.
    let (_, again) = app
        .get_json(&format!("/self-service/registration/flows?id={id}"))
        .await;
    assert!(again.get("session_token_exchange_code").is_none());
    let (st, body) = app
        .post_json(
            &format!("/self-service/registration?flow={id}"),
            &json!({"method": "oidc", "provider": "fake"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let to = url::Url::parse(body["redirect_browser_to"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    // The system browser: no cookie of the app or of an earlier flow.
    let mut system = Browser::new(&app);
    let c = code();
    let email = unique_email("native");
    idp().answer_token(
        &c,
        &format!("native-{c}"),
        &q["nonce"],
        json!({"email": email, "email_verified": true}),
    );
    let r = system
        .get(&format!(
            "/self-service/methods/oidc/callback/fake?code={c}&state={}",
            q["state"]
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = url::Url::parse(&location(&r)).unwrap();
    assert_eq!(back.origin().ascii_serialization(), "https://app.example");
    let return_to_code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    assert!(
        !system.has_session_cookie(),
        "the system browser is not signed in"
    );

    let exchange = |init: &str, code: &str| {
        format!("/sessions/token-exchange?init_code={init}&return_to_code={code}")
    };
    let (st, _) = app.get_json(&exchange(&init, "wrong")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = app
        .get_json(&exchange(
            &format!("{}x", &init[..init.len() - 1]),
            &return_to_code,
        ))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, body) = app.get_json("/sessions/token-exchange").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = app.get_json(&exchange(&init, &return_to_code)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = body["session_token"].as_str().unwrap();
    assert_eq!(
        body["session"]["identity"]["traits"]["email"],
        email.as_str()
    );
    let (st, me) = app.get_json_with_token("/sessions/whoami", token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["authentication_methods"][0]["method"], "oidc");
    // Once.
    let (st, _) = app.get_json(&exchange(&init, &return_to_code)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn a_native_app_signs_in_with_googles_id_token_and_its_nonce(app: TestApp) {
    let login = |body: Value| {
        let app = &app;
        async move {
            let (_, flow) = app.get_json("/self-service/login/api").await;
            let id = flow["id"].as_str().unwrap().to_string();
            app.post_json(&format!("/self-service/login?flow={id}"), &body)
                .await
        }
    };
    let sub = format!("g-{}", uuid::Uuid::new_v4());
    let email = unique_email("google-sdk");
    // Issued for the iOS app (an additional audience), with the nonce the app chose.
    let token = idp().sign(json!({"sub": sub, "email": email, "email_verified": true, "nonce": "n-1", "aud": "com.example.ios"}));
    let (st, body) = login(
        json!({"method": "oidc", "provider": "google", "id_token": token, "id_token_nonce": "n-2"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["ui"]["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("nonce"),
        "{body}"
    );
    let (st, body) = login(
        json!({"method": "oidc", "provider": "google", "id_token": token, "id_token_nonce": "n-1"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let session = body["session_token"].as_str().unwrap().to_string();
    let (_, me) = app.get_json_with_token("/sessions/whoami", &session).await;
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());
    // A token without a nonce, or signed by a key the provider does not publish: refused.
    let bare = idp().sign(json!({"sub": sub}));
    let (st, body) = login(json!({"method": "oidc", "provider": "google", "id_token": bare})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (st, body) = login(json!({"method": "oidc", "provider": "google", "id_token": forged, "id_token_nonce": "n-1"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.get("session_token").is_none());
    // Only Google takes ID tokens.
    let (st, body) = login(json!({"method": "oidc", "provider": "fake", "id_token": token})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("does not support signing in with an ID token"),
        "{body}"
    );
}

async fn a_browser_signed_in_by_a_provider_gets_tokens_for_its_api(app: TestApp) {
    // Signed out: nothing.
    let mut stranger = Browser::new(&app);
    let r = stranger.get_json("/api/token/session/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Signed in with the provider.
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "fake").await;
    let c = code();
    let email = unique_email("spa-tokens");
    idp().answer_token(
        &c,
        &format!("spa-{c}"),
        &s.nonce,
        json!({"email": email, "email_verified": true}),
    );
    back(&mut b, "fake", &s, &c).await;
    assert!(b.has_session_cookie());
    // Without the anti-CSRF token (what a page of another site could send): refused.
    let r = b.post_json("/api/token/session/", &json!({})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Cross-Site-Request-Forgery"),
        "{body}"
    );
    // With it: a pair for this session.
    let token: Value = b
        .get_json("/api/token/session/")
        .await
        .json()
        .await
        .unwrap();
    let csrf = token["csrf_token"].as_str().unwrap().to_string();
    b.headers.push(("x-csrf-token".into(), csrf));
    let r = b.post_json("/api/token/session/", &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let access = pair["access"].as_str().unwrap();
    assert!(pair["refresh"].as_str().is_some());
    let r = app.get_with_bearer("/sessions/whoami", access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());
    assert_eq!(me["authentication_methods"][0]["method"], "oidc");
}

async fn apple_posts_back_names_the_user_once_and_gets_a_signed_client_secret(app: TestApp) {
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "apple").await;
    let q = query_of(&s);
    // Asking for the name and the address makes Apple answer with a cross-site form post.
    assert_eq!(q["response_mode"], "form_post");
    assert_eq!(q["scope"], "openid name email");
    let sub = format!("000123.{}.0456", uuid::Uuid::new_v4().simple());
    let email = format!("{}@privaterelay.appleid.com", uuid::Uuid::new_v4().simple());
    let c = code();
    idp().answer_token(
        &c,
        &sub,
        &s.nonce,
        json!({ "email": email, "email_verified": "true", "is_private_email": "true" }),
    );
    // Apple posts from its own site: the form goes on to the GET callback, which the browser
    // then makes with its own cookies.
    let user =
        r#"{"name":{"firstName":"Grace","lastName":"Hopper"},"email":"ignored@example.com"}"#;
    // Only the callback's own fields go on, each of a bounded length.
    let long = "x".repeat(2049);
    let r = b
        .post_form(
            "/self-service/methods/oidc/callback/apple",
            &[("code", long.as_str()), ("state", &s.state)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = b
        .post_form(
            "/self-service/methods/oidc/callback/apple",
            &[
                ("code", &c),
                ("state", &s.state),
                ("user", user),
                ("padding", &long),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let to = location(&r);
    assert!(!to.contains("padding") && to.contains("user="), "{to}");
    assert!(
        to.starts_with(&app.url("/self-service/methods/oidc/callback/apple?")),
        "{to}"
    );
    let r = b.get(&to).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", location(&r));
    let (_, me) = b_whoami(&mut b).await;
    let traits = &me["identity"]["traits"];
    assert_eq!(traits["email"], email.as_str());
    assert_eq!(
        (&traits["name"]["first"], &traits["name"]["last"]),
        (&json!("Grace"), &json!("Hopper"))
    );
    assert_eq!(me["identity"]["verifiable_addresses"][0]["verified"], true);
    assert_eq!(me["authentication_methods"][0]["provider"], "apple");

    // The client secret was minted for the exchange: ES256 by the team's key, in the body.
    let form = idp().exchange(&c).unwrap();
    let field = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(
        field("client_id").as_deref(),
        Some(crate::helpers::idp::CLIENT_ID)
    );
    let secret = field("client_secret").expect("the secret in the body");
    let header = jsonwebtoken::decode_header(&secret).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(APPLE_KEY_ID));
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["https://appleid.apple.com"]);
    v.set_issuer(&[APPLE_TEAM]);
    v.validate_exp = false;
    let key = jsonwebtoken::DecodingKey::from_ec_der(&apple_team_key().1);
    let claims = jsonwebtoken::decode::<Value>(&secret, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], crate::helpers::idp::CLIENT_ID);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // Later authorizations carry no `user`: the same subject signs in, its name kept.
    let mut b2 = Browser::new(&app);
    let s2 = start(&mut b2, "login", "apple").await;
    let c2 = code();
    idp().answer_token(
        &c2,
        &sub,
        &s2.nonce,
        json!({ "email": email, "email_verified": "true" }),
    );
    let r = b2
        .post_form(
            "/self-service/methods/oidc/callback/apple",
            &[("code", c2.as_str()), ("state", s2.state.as_str())],
        )
        .await;
    let r = b2.get(&location(&r)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, me2) = b_whoami(&mut b2).await;
    assert_eq!(me2["identity"]["id"], me["identity"]["id"]);
    assert_eq!(me2["identity"]["traits"]["name"]["first"], "Grace");

    // A native app with Sign in with Apple: the device's ID token and the nonce it chose.
    let (_, flow) = app.get_json("/self-service/login/api").await;
    let id = flow["id"].as_str().unwrap().to_string();
    let token = idp()
        .sign(json!({ "sub": sub, "email": email, "email_verified": "true", "nonce": "apple-n" }));
    let (st, body) = app
        .post_json(
            &format!("/self-service/login?flow={id}"),
            &json!({"method": "oidc", "provider": "apple", "id_token": token, "id_token_nonce": "apple-n"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["identity"]["id"], me["identity"]["id"]);
    let (_, flow) = app.get_json("/self-service/login/api").await;
    let id = flow["id"].as_str().unwrap().to_string();
    let bare = idp().sign(json!({ "sub": sub, "nonce_supported": false }));
    let (st, body) = app
        .post_json(
            &format!("/self-service/login?flow={id}"),
            &json!({"method": "oidc", "provider": "apple", "id_token": bare}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.get("session_token").is_none());
}
