//! Social sign-in against a provider that can misbehave (`helpers/idp.rs`): every ID token that
//! fails a check, a token endpoint that refuses or talks nonsense, a mapper that fails or never
//! ends, an expired flow — each ends on the flow with its reason and without a session. The
//! happy paths against a real OpenID provider are in the interop suite (`kratos-oidc.test.mjs`).
//! GitHub, Naver, Kakao, native apps and tokens for a browser session are in
//! `social_providers.rs`, on the same provider.

use crate::helpers::idp::{idp, Answer, Signer, CLIENT_ID};
use crate::helpers::{csrf, location, unique_email, Browser, TestApp, PASSWORD};
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Kratos's idiom: the e-mail only when verified.
const MAPPER: &str = r#"
local claims = { email_verified: false } + std.extVar('claims');
{ identity: { traits: {
    [if 'email' in claims && claims.email_verified then 'email' else null]: claims.email,
  },
  verified_addresses: if 'email' in claims && claims.email_verified then [{ value: claims.email, via: 'email' }] else [],
} }"#;
const FAILING: &str = "local c = std.extVar('claims'); error 'no luck for ' + c.sub";
/// Seconds of work (four million steps), past the 1 s deadline, yet finite: the thread the
/// server gives up on ends soon after.
const ENDLESS: &str = "std.foldl(function(a, i) std.foldl(function(b, j) b + 1, std.range(0, 100000), a), std.range(0, 39), 0)";
const NOT_AN_OBJECT: &str = "{ identity: { traits: 'this is not an object' } }";

/// Kratos's quickstart GitHub mapper, as it is.
const GITHUB_MAPPER: &str = include_str!(
    "../../../../../shared/reference/social-mfa/fixtures/mappers/kratos-head.quickstart.oidc.github.jsonnet"
);
/// Every address, with the name (Naver vouches for none).
const NAME_MAPPER: &str = r#"
local claims = std.extVar('claims');
{ identity: { traits: {
    email: claims.email,
    name: { first: claims.name },
  },
  verified_addresses: if 'email_verified' in claims && claims.email_verified then [{ value: claims.email, via: 'email' }] else [],
} }"#;

const CLERK_KEY: &str = "sk_test_portcullis_social_tests";

pub(crate) fn social(cfg: &mut Config) {
    let i = idp();
    let at = |kind: &str, id: &str, mapper: &str, extra: Value| {
        let mut p = i.provider(id, mapper);
        p["provider"] = json!(kind);
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let base = i.issuer();
    let providers = json!([
        i.provider("fake", MAPPER),
        i.provider("failing", FAILING),
        i.provider("endless", ENDLESS),
        i.provider("shapeless", NOT_AN_OBJECT),
        at(
            "github",
            "github",
            GITHUB_MAPPER,
            json!({
                "scope": ["user:email"],
                "auth_url": format!("{base}/github/login/oauth/authorize"),
                "token_url": format!("{base}/github/login/oauth/access_token"),
                "issuer_url": format!("{base}/github/api"),
            })
        ),
        at(
            "naver",
            "naver",
            NAME_MAPPER,
            json!({
                "scope": [],
                "auth_url": format!("{base}/naver/oauth2.0/authorize"),
                "token_url": format!("{base}/naver/oauth2.0/token"),
                "issuer_url": format!("{base}/naver"),
            })
        ),
        at(
            "kakao",
            "kakao",
            NAME_MAPPER,
            json!({ "scope": ["openid", "account_email", "profile_nickname"] })
        ),
        at(
            "google",
            "google",
            MAPPER,
            json!({ "additional_id_token_audiences": ["com.example.ios"] })
        ),
        at(
            "apple",
            "apple",
            crate::social_providers::APPLE_MAPPER,
            json!({
                "client_secret": "",
                "scope": ["name", "email"],
                "apple_team_id": crate::social_providers::APPLE_TEAM,
                "apple_private_key_id": crate::social_providers::APPLE_KEY_ID,
                "apple_private_key": crate::social_providers::apple_team_key().0,
            })
        ),
    ]);

    cfg.selfservice.methods.oidc.enabled = true;
    cfg.clerk.secret_keys = vec![CLERK_KEY.into()];
    cfg.selfservice
        .allowed_return_urls
        .push("https://app.example/callback".into());
    cfg.selfservice.methods.oidc.config.providers = serde_json::from_value(providers).unwrap();
}

crate::on_every_backend! {
    a_good_id_token_signs_up_once_and_signs_in_after with social,
    id_tokens_failing_a_check_sign_nobody_in with social,
    a_provider_refusing_or_talking_nonsense_signs_nobody_in with social,
    mappers_that_fail_never_end_or_return_no_traits_sign_nobody_in with social,
    a_flow_expired_at_the_provider_starts_over_without_a_session with social,
    the_hosted_pages_show_the_providers_in_english_and_korean with social,
    signing_in_to_another_account_on_a_linking_flow_links_nothing with social,
    settings_link_and_unlink_providers_but_never_the_last_way_in with social,
    an_address_typed_into_the_form_never_leads_to_linking with social,
}

/// The authorization request a provider button sends the browser to.
pub(crate) struct Started {
    pub flow: String,
    pub state: String,
    pub nonce: String,
    pub query: Vec<(String, String)>,
}

pub(crate) async fn start(b: &mut Browser<'_>, kind: &str, provider: &str) -> Started {
    start_at(b, kind, provider, "/auth").await
}

/// [`start`] for a provider whose authorization endpoint is at `path` of the test provider.
pub(crate) async fn start_at(
    b: &mut Browser<'_>,
    kind: &str,
    provider: &str,
    path: &str,
) -> Started {
    let flow = b.flow(kind).await;
    let id = flow["id"].as_str().unwrap().to_string();
    let r = b
        .post_form(
            &format!("/self-service/{kind}?flow={id}"),
            &[("csrf_token", csrf(&flow)), ("provider", provider)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(&location(&r)).unwrap();
    let expected = format!("{}{path}?", idp().issuer());
    assert!(to.as_str().starts_with(&expected), "{to}");
    let query: Vec<(String, String)> = to
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Started {
        flow: id,
        state: get("state"),
        nonce: get("nonce"),
        query,
    }
}

/// The provider's redirect back, with `code`.
pub(crate) async fn back(
    b: &mut Browser<'_>,
    provider: &str,
    s: &Started,
    code: &str,
) -> reqwest::Response {
    let path = format!(
        "/self-service/methods/oidc/callback/{provider}?code={code}&state={}",
        s.state
    );
    b.get(&path).await
}

pub(crate) fn code() -> String {
    format!("code-{}", uuid::Uuid::new_v4())
}

/// A callback that lands back on its flow: the flow's message, and no session.
pub(crate) async fn refused_on_flow(
    b: &mut Browser<'_>,
    r: reqwest::Response,
    kind: &str,
    flow: &str,
) -> String {
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.contains(&format!("flow={flow}")), "{to}");
    assert!(!b.has_session_cookie(), "no session");
    let shown = b.fetch_flow(kind, flow).await;
    shown["ui"]["messages"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn a_good_id_token_signs_up_once_and_signs_in_after(app: TestApp) {
    let sub = format!("sub-{}", uuid::Uuid::new_v4());
    let email = format!("{sub}@example.com");
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "fake").await;
    let get = |k: &str| s.query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    assert_eq!(get("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(get("scope").as_deref(), Some("openid email"));
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    let c = code();
    idp().answer_token(
        &c,
        &sub,
        &s.nonce,
        json!({"email": email, "email_verified": true}),
    );
    let r = back(&mut b, "fake", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    assert!(b.has_session_cookie());
    // The exchange carried the PKCE verifier of the challenge and the registered redirect URI.
    let form = idp().exchange(&c).unwrap();
    let field = |k: &str| {
        form.iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(field("code_verifier").as_bytes()));
    assert_eq!(Some(challenge), get("code_challenge"));
    assert_eq!(
        field("redirect_uri"),
        app.url("/self-service/methods/oidc/callback/fake")
    );
    let (st, me) = b_whoami(&mut b).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());
    assert_eq!(me["identity"]["verifiable_addresses"][0]["verified"], true);
    // The session names the provider, as Kratos's does.
    let amr = &me["authentication_methods"][0];
    assert_eq!(
        (&amr["method"], &amr["provider"]),
        (&json!("oidc"), &json!("fake"))
    );
    let id = me["identity"]["id"].as_str().unwrap().to_string();
    // The tokens are sealed at rest: the stored credential does not hold the ID token.
    let (_, admin) = app
        .admin_get_json(&format!("/admin/identities/{id}?include_credential=oidc"))
        .await;
    let provider = &admin["credentials"]["oidc"]["config"]["providers"][0];
    assert_eq!(provider["subject"], sub.as_str());
    // Clerk's User object lists the provider account.
    let clerk: Value = app
        .http
        .get(app.admin_url(&format!("/v1/users/user_{}", id.replace('-', ""))))
        .bearer_auth(CLERK_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = &clerk["external_accounts"][0];
    assert_eq!(account["object"], "external_account");
    assert_eq!(account["provider"], "oauth_custom_fake");
    assert_eq!(account["provider_user_id"], sub.as_str());
    assert_eq!(account["email_address"], email.as_str());
    assert_eq!(account["verification"]["status"], "verified");
    assert!(account["id"].as_str().unwrap().starts_with("eac_"));
    // Sealed at rest, the tokens are shown opened to the admin API (as Kratos does).
    assert_eq!(provider["initial_access_token"], format!("at-{c}"));
    assert!(provider["initial_id_token"]
        .as_str()
        .unwrap()
        .starts_with("eyJ"));
    let (_, plain) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert!(
        plain["credentials"]["oidc"].get("config").is_none(),
        "{plain}"
    );

    // Signing in with the same subject: the same identity, and no second one.
    let mut b2 = Browser::new(&app);
    let s2 = start(&mut b2, "login", "fake").await;
    let c2 = code();
    idp().answer_token(
        &c2,
        &sub,
        &s2.nonce,
        json!({"email": email, "email_verified": true}),
    );
    let r = back(&mut b2, "fake", &s2, &c2).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, me2) = b_whoami(&mut b2).await;
    assert_eq!(me2["identity"]["id"], id.as_str());
    assert_eq!(me2["authentication_methods"][0]["provider"], "fake");
    let owners = app
        .admin_get_list(&format!(
            "/admin/identities?credentials_identifier=fake:{sub}"
        ))
        .await;
    assert_eq!(owners.len(), 1);
}

pub(crate) async fn b_whoami(b: &mut Browser<'_>) -> (StatusCode, Value) {
    let r = b.get_json("/sessions/whoami").await;
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn id_tokens_failing_a_check_sign_nobody_in(app: TestApp) {
    let now = portcullis_core::service::Clock::now(&*app.clock).unix_timestamp();
    // What the flow's message must name, and the answer for a flow's nonce.
    type Case = (&'static str, Box<dyn Fn(&str) -> Answer>);
    let cases: Vec<Case> = vec![
        (
            "signature",
            Box::new(|n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n}),
                signer: Signer::Other,
            }),
        ),
        (
            "public-key",
            Box::new(|n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n}),
                signer: Signer::ClientSecret,
            }),
        ),
        (
            "another client",
            Box::new(|n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n, "aud": "someone-else"}),
                signer: Signer::Published,
            }),
        ),
        (
            "another issuer",
            Box::new(|n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n, "iss": "https://evil.example"}),
                signer: Signer::Published,
            }),
        ),
        (
            "nonce",
            Box::new(|_: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": "replayed"}),
                signer: Signer::Published,
            }),
        ),
        (
            "nonce",
            Box::new(|_: &str| Answer::IdToken {
                claims: json!({"sub": "s"}),
                signer: Signer::Published,
            }),
        ),
        (
            "expired",
            Box::new(move |n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n, "exp": now - 3600, "iat": now - 7200}),
                signer: Signer::Published,
            }),
        ),
        (
            "future",
            Box::new(move |n: &str| Answer::IdToken {
                claims: json!({"sub": "s", "nonce": n, "iat": now + 3600, "exp": now + 7200}),
                signer: Signer::Published,
            }),
        ),
        (
            "subject",
            Box::new(|n: &str| Answer::IdToken {
                claims: json!({"sub": "", "nonce": n}),
                signer: Signer::Published,
            }),
        ),
    ];
    for (why, answer) in cases {
        let mut b = Browser::new(&app);
        let s = start(&mut b, "login", "fake").await;
        let c = code();
        idp().answer(&c, answer(&s.nonce));
        let r = back(&mut b, "fake", &s, &c).await;
        let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
        assert!(text.contains(why), "{why}: {text}");
        assert!(
            text.starts_with("Signing in with Fake did not work"),
            "{text}"
        );
    }
}

async fn a_provider_refusing_or_talking_nonsense_signs_nobody_in(app: TestApp) {
    let cases = [
        // GitHub and Naver answer errors with 200.
        (
            200,
            json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}),
            "bad_verification_code",
        ),
        (400, json!({"error": "invalid_grant"}), "invalid_grant"),
        (500, json!("<html>oops</html>"), "without an access token"),
        (
            200,
            json!({"access_token": "at-1", "token_type": "Bearer"}),
            "did not return an ID token",
        ),
    ];
    for (status, body, why) in cases {
        let mut b = Browser::new(&app);
        let s = start(&mut b, "login", "fake").await;
        let c = code();
        idp().answer(&c, Answer::Body { status, body });
        let r = back(&mut b, "fake", &s, &c).await;
        let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
        assert!(text.contains(why), "{why}: {text}");
    }
    // The provider's own refusal, without a code.
    let mut b = Browser::new(&app);
    let s = start(&mut b, "login", "fake").await;
    let r = b
        .get(&format!(
            "/self-service/methods/oidc/callback/fake?error=access_denied&error_description=nope&state={}",
            s.state
        ))
        .await;
    let text = refused_on_flow(&mut b, r, "login", &s.flow).await;
    assert!(text.contains("\"access_denied\": nope"), "{text}");
    // And a state used once is spent, even when that use failed.
    let c = code();
    idp().answer_token(&c, "late", &s.nonce, json!({}));
    let r = back(&mut b, "fake", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("/ui/error?id="), "{}", location(&r));
    assert!(!b.has_session_cookie());
}

async fn mappers_that_fail_never_end_or_return_no_traits_sign_nobody_in(app: TestApp) {
    for (provider, why) in [
        ("failing", "no luck for s-failing"),
        ("endless", "did not finish"),
        (
            "shapeless",
            "did not return an object for key identity.traits",
        ),
    ] {
        let mut b = Browser::new(&app);
        let s = start(&mut b, "registration", provider).await;
        let c = code();
        idp().answer_token(&c, &format!("s-{provider}"), &s.nonce, json!({}));
        let r = back(&mut b, provider, &s, &c).await;
        let text = refused_on_flow(&mut b, r, "registration", &s.flow).await;
        assert!(text.contains(why), "{provider}: {text}");
    }
    // Nothing was created.
    let owners = app.admin_get_list("/admin/identities").await;
    assert!(owners.is_empty(), "{owners:?}");
}

async fn a_flow_expired_at_the_provider_starts_over_without_a_session(app: TestApp) {
    let mut b = Browser::new(&app);
    let s = start(&mut b, "login", "fake").await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    let c = code();
    idp().answer_token(&c, "late-user", &s.nonce, json!({}));
    let r = back(&mut b, "fake", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(
        to.contains("flow=") && !to.contains(&s.flow),
        "a replacement flow: {to}"
    );
    assert!(!b.has_session_cookie());
    // The code was never exchanged.
    assert!(idp().exchange(&c).is_none());
}

async fn the_hosted_pages_show_the_providers_in_english_and_korean(app: TestApp) {
    let mut b = Browser::new(&app);
    let r = b.get("/self-service/login/browser").await;
    let r = b.get(&location(&r)).await;
    // The button's form is redirected to the provider: the policy allows it there.
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let form_action = csp
        .split(';')
        .find(|d| d.trim().starts_with("form-action"))
        .unwrap();
    assert!(form_action.contains(idp().issuer()), "{csp}");
    let page = r.text().await.unwrap();
    for id in [
        "fake",
        "failing",
        "endless",
        "shapeless",
        "github",
        "kakao",
        "naver",
        "google",
    ] {
        assert!(
            page.contains(&format!("name=\"provider\" value=\"{id}\"")),
            "{id} in {page}"
        );
    }
    assert!(page.contains("Sign in with Fake"), "{page}");
    // Each button shows its kind's icon, which the page may load (images from itself).
    for (id, icon) in [
        ("fake", "generic"),
        ("github", "github"),
        ("kakao", "kakao"),
        ("naver", "naver"),
        ("google", "google"),
        ("apple", "apple"),
    ] {
        let button = format!(
            "name=\"provider\" value=\"{id}\" class=\"provider\"><img class=\"provider-icon\" src=\"{}ui/static/icons/{icon}.svg\"",
            app.url("/")
        );
        assert!(page.contains(&button), "{button} in {page}");
    }
    assert!(csp.contains("img-src 'self'"), "{csp}");
    for icon in ["generic", "github", "kakao", "naver", "google", "apple"] {
        let r = b.get(&format!("/ui/static/icons/{icon}.svg")).await;
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert!(r
            .text()
            .await
            .unwrap()
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
    assert_eq!(
        b.get("/ui/static/icons/..%2Fstyle.css").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.get("/ui/static/icons/unknown.svg").await.status(),
        StatusCode::NOT_FOUND
    );
    b.headers.push(("accept-language".into(), "ko".into()));
    let r = b.get("/self-service/registration/browser").await;
    let page = b.get(&location(&r)).await.text().await.unwrap();
    assert!(page.contains("Fake(으)로 가입하기"), "{page}");
}

async fn signing_in_to_another_account_on_a_linking_flow_links_nothing(app: TestApp) {
    let (victim, intruder) = (unique_email("victim"), unique_email("intruder"));
    for email in [&victim, &intruder] {
        Browser::new(&app).register(email).await;
    }
    // A provider account claiming the victim's address lands on a linking flow.
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "fake").await;
    let c = code();
    idp().answer_token(
        &c,
        "claims-victim",
        &s.nonce,
        json!({"email": victim, "email_verified": true}),
    );
    let r = back(&mut b, "fake", &s, &c).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(&location(&r)).unwrap();
    let link = to
        .query_pairs()
        .find(|(k, _)| k == "flow")
        .unwrap()
        .1
        .into_owned();
    let flow = b.fetch_flow("login", &link).await;
    assert_eq!(flow["ui"]["messages"][0]["id"], 1010016);
    // Its other providers confirm instead of signing in.
    let confirm = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["value"] == "failing")
        .unwrap();
    assert_eq!(confirm["meta"]["label"]["id"], 1010018);
    assert!(flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["attributes"]["value"] != "fake"));
    // The intruder signs in to their own account on it: refused, nothing linked.
    let r = b
        .post_form(
            &format!("/self-service/login?flow={link}"),
            &[
                ("csrf_token", csrf(&flow)),
                ("method", "password"),
                ("identifier", &intruder),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!b.has_session_cookie());
    let shown = b.fetch_flow("login", &link).await;
    assert_eq!(shown["ui"]["messages"][0]["id"], 4010009);
    let linked = app
        .admin_get_list("/admin/identities?credentials_identifier=fake:claims-victim")
        .await;
    assert!(linked.is_empty(), "{linked:?}");
    // The victim can still link by signing in.
    let r = b
        .post_form(
            &format!("/self-service/login?flow={link}"),
            &[
                ("csrf_token", csrf(&shown)),
                ("method", "password"),
                ("identifier", &victim),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(b.has_session_cookie());
    let owners = app
        .admin_get_list("/admin/identities?credentials_identifier=fake:claims-victim")
        .await;
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["traits"]["email"], victim.as_str());
}

fn node<'v>(flow: &'v Value, name: &str, value: &str) -> Option<&'v Value> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == name && n["attributes"]["value"] == value)
}

/// Submits a settings flow's form with these fields (and its CSRF token).
async fn settings_submit(
    b: &mut Browser<'_>,
    flow: &Value,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let id = flow["id"].as_str().unwrap();
    let mut all = vec![("csrf_token", csrf(flow))];
    all.extend_from_slice(fields);
    b.post_form(&format!("/self-service/settings?flow={id}"), &all)
        .await
}

async fn settings_link_and_unlink_providers_but_never_the_last_way_in(app: TestApp) {
    let email = unique_email("linker");
    let mut b = Browser::new(&app);
    b.register(&email).await;
    let flow = b.flow("settings").await;
    let link = node(&flow, "link", "fake").expect("a link button");
    assert_eq!(link["group"], "oidc");
    assert_eq!(link["meta"]["label"]["id"], 1050002);
    assert_eq!(link["meta"]["label"]["text"], "Link Fake");
    assert!(node(&flow, "unlink", "fake").is_none());

    // Link: through the provider and back to the settings flow, saved.
    let r = settings_submit(&mut b, &flow, &[("link", "fake")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(&location(&r)).unwrap();
    assert!(
        to.as_str()
            .starts_with(&format!("{}/auth?", idp().issuer())),
        "{to}"
    );
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    let c = code();
    let sub = format!("linked-{}", uuid::Uuid::new_v4());
    idp().answer_token(&c, &sub, &q["nonce"], json!({}));
    let r = b
        .get(&format!(
            "/self-service/methods/oidc/callback/fake?code={c}&state={}",
            q["state"]
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).contains(&format!("flow={}", flow["id"].as_str().unwrap())),
        "{}",
        location(&r)
    );
    let saved = b.fetch_flow("settings", flow["id"].as_str().unwrap()).await;
    assert_eq!(saved["state"], "success");
    assert_eq!(saved["ui"]["messages"][0]["id"], 1050001);
    let unlink =
        node(&saved, "unlink", "fake").expect("an unlink button (the password is another way in)");
    assert_eq!(unlink["meta"]["label"]["id"], 1050003);
    let owners = app
        .admin_get_list(&format!(
            "/admin/identities?credentials_identifier=fake:{sub}"
        ))
        .await;
    assert_eq!(owners[0]["traits"]["email"], email.as_str());
    // The provider now signs this account in.
    let mut other = Browser::new(&app);
    let s = start(&mut other, "login", "fake").await;
    let c2 = code();
    idp().answer_token(&c2, &sub, &s.nonce, json!({}));
    back(&mut other, "fake", &s, &c2).await;
    let (_, me) = b_whoami(&mut other).await;
    assert_eq!(me["identity"]["traits"]["email"], email.as_str());

    // The same provider account cannot be linked to a second identity.
    let mut second = Browser::new(&app);
    second.register(&unique_email("second")).await;
    let f2 = second.flow("settings").await;
    let r = settings_submit(&mut second, &f2, &[("link", "fake")]).await;
    let q2: std::collections::HashMap<String, String> = url::Url::parse(&location(&r))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let c3 = code();
    idp().answer_token(&c3, &sub, &q2["nonce"], json!({}));
    let r = second
        .get(&format!(
            "/self-service/methods/oidc/callback/fake?code={c3}&state={}",
            q2["state"]
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let refused = second
        .fetch_flow("settings", f2["id"].as_str().unwrap())
        .await;
    assert_eq!(refused["ui"]["messages"][0]["id"], 4000007);
    let owners = app
        .admin_get_list(&format!(
            "/admin/identities?credentials_identifier=fake:{sub}"
        ))
        .await;
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["traits"]["email"], email.as_str());

    // Unlink, then unlinking again is refused.
    let r = settings_submit(&mut b, &saved, &[("unlink", "fake")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let after = b.fetch_flow("settings", flow["id"].as_str().unwrap()).await;
    assert_eq!(after["state"], "success");
    assert!(node(&after, "link", "fake").is_some());
    let owners = app
        .admin_get_list(&format!(
            "/admin/identities?credentials_identifier=fake:{sub}"
        ))
        .await;
    assert!(owners.is_empty());
    settings_submit(&mut b, &after, &[("unlink", "fake")]).await;
    let again = b.fetch_flow("settings", flow["id"].as_str().unwrap()).await;
    assert!(
        again["ui"]["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("non-existing"),
        "{again}"
    );

    // An account made by the provider alone cannot unlink it: it is its only way in.
    let mut social = Browser::new(&app);
    let s = start(&mut social, "registration", "fake").await;
    let c4 = code();
    let only = unique_email("only");
    idp().answer_token(
        &c4,
        &format!("only-{only}"),
        &s.nonce,
        json!({"email": only, "email_verified": true}),
    );
    back(&mut social, "fake", &s, &c4).await;
    let f = social.flow("settings").await;
    assert!(
        node(&f, "unlink", "fake").is_none(),
        "no unlink for the last way in"
    );
    settings_submit(&mut social, &f, &[("unlink", "fake")]).await;
    let refused = social
        .fetch_flow("settings", f["id"].as_str().unwrap())
        .await;
    assert!(
        refused["ui"]["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("last remaining first factor"),
        "{refused}"
    );

    // A session too old for a privileged change re-authenticates first.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let f = b.flow("settings").await;
    let r = settings_submit(&mut b, &f, &[("link", "fake")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).contains("/self-service/login/browser?refresh=true"),
        "{}",
        location(&r)
    );
}

async fn an_address_typed_into_the_form_never_leads_to_linking(app: TestApp) {
    let victim = unique_email("typed-victim");
    Browser::new(&app).register(&victim).await;
    // A provider account without an address: registration completion asks for one, and the
    // attacker types the victim's.
    let mut b = Browser::new(&app);
    let s = start(&mut b, "registration", "fake").await;
    let c = code();
    idp().answer_token(&c, "typist", &s.nonce, json!({}));
    back(&mut b, "fake", &s, &c).await;
    let shown = b.fetch_flow("registration", &s.flow).await;
    let r = b
        .post_form(
            &format!("/self-service/registration?flow={}", s.flow),
            &[
                ("csrf_token", csrf(&shown)),
                ("provider", "fake"),
                ("traits.email", &victim),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q: std::collections::HashMap<String, String> = url::Url::parse(&location(&r))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let c = code();
    idp().answer_token(&c, "typist", &q["nonce"], json!({}));
    let r = b
        .get(&format!(
            "/self-service/methods/oidc/callback/fake?code={c}&state={}",
            q["state"]
        ))
        .await;
    // A duplicate on the registration flow, not a linking prompt on a login flow.
    assert!(
        location(&r).contains(&format!("flow={}", s.flow)),
        "{}",
        location(&r)
    );
    let refused = b.fetch_flow("registration", &s.flow).await;
    assert_eq!(refused["ui"]["messages"][0]["id"], 4000007, "{refused}");
    assert!(!b.has_session_cookie());
}
