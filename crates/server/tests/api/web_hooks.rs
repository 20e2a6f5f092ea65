//! Kratos's flow web hooks against a receiver playing the app behind them
//! (`helpers/hooks.rs`): the Jsonnet body and its `ctx`, both kinds of `auth`, answers that
//! refuse with messages or change the identity before it is stored, hooks that run once it is
//! stored, in the background, before a flow, or cancel themselves, and failures that stop a
//! flow without a session or a 500.

use crate::helpers::hooks::receiver;
use crate::helpers::{unique_email, TestApp, PASSWORD};
use base64::Engine;
use portcullis_core::config::{Config, HookConfig, HookName};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every body sends the traits' address as `key`, which tells the scenarios' calls apart.
const BODY: &str = r#"function(ctx) {
  key: ctx.identity.traits.email,
  traits: ctx.identity.traits,
  identity_id: ctx.identity.id,
  flow_id: ctx.flow.id,
  flow_type: ctx.flow.type,
  method: ctx.request_method,
  url: ctx.request_url,
  user_agent: std.get(ctx.request_headers, 'User-Agent', [''])[0],
  cookies: ctx.request_cookies,
}"#;
/// A flow starting has no identity: the key comes from the User-Agent.
const BEFORE_BODY: &str = r#"function(ctx) {
  key: std.get(ctx.request_headers, 'User-Agent', [''])[0],
  flow_id: ctx.flow.id,
  cookies: ctx.request_cookies,
  csrf: [n.attributes.value for n in ctx.flow.ui.nodes if std.get(n.attributes, 'name') == 'csrf_token'],
}"#;
/// Skips its call for addresses at quiet.example.
const CANCELLING_BODY: &str = r#"function(ctx)
  if std.endsWith(ctx.identity.traits.email, '@quiet.example') then error 'cancel'
  else { key: ctx.identity.traits.email }"#;

fn b64(s: &str) -> String {
    format!(
        "base64://{}",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

fn web_hook(path: &str, body: &str, extra: Value) -> HookConfig {
    let mut config = json!({ "url": receiver().url(path), "method": "POST", "body": b64(body) });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    HookConfig {
        hook: HookName::WebHook,
        config,
    }
}

fn session() -> HookConfig {
    HookConfig {
        hook: HookName::Session,
        config: Value::Null,
    }
}

const PARSE: &str = r#"{"response": {"parse": true}}"#;

fn extra(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn hooked(c: &mut Config) {
    let f = &mut c.selfservice.flows;
    f.registration.after.password.hooks = Some(vec![
        web_hook(
            "check",
            BODY,
            json!({"response": {"parse": true}, "auth": {"type": "api_key", "config": {"name": "X-Api-Key", "value": "k-123", "in": "header"}}}),
        ),
        session(),
        web_hook(
            "ok",
            BODY,
            json!({"auth": {"type": "basic_auth", "config": {"user": "portcullis", "password": "s3cret"}}, "headers": {"X-Tenant": "uni"}}),
        ),
        web_hook("held", BODY, json!({"response": {"ignore": true}})),
        web_hook("cancelled", CANCELLING_BODY, json!({})),
    ]);
    f.login.after.password.hooks = Some(vec![web_hook("check", BODY, extra(PARSE))]);
    f.settings.after.profile.hooks = Some(vec![
        web_hook("check", BODY, extra(PARSE)),
        web_hook("ok", BODY, json!({})),
    ]);
    f.registration.before.hooks = vec![web_hook("check-before", BEFORE_BODY, json!({}))];
    f.login.before.hooks = vec![web_hook("check-before", BEFORE_BODY, json!({}))];
}

fn failing(c: &mut Config) {
    let f = &mut c.selfservice.flows;
    f.registration.after.password.hooks =
        Some(vec![web_hook("fail", BODY, extra(PARSE)), session()]);
    f.login.after.password.hooks = Some(vec![web_hook("fail", BODY, json!({}))]);
    f.verification.before.hooks = vec![web_hook("flow-refusal", BEFORE_BODY, extra(PARSE))];
    f.recovery.before.hooks = vec![web_hook("moved", BEFORE_BODY, extra(PARSE))];
}

crate::on_every_backend! {
    a_registration_hook_refuses_with_its_messages_or_changes_the_identity_before_it_is_stored with hooked,
    hooks_after_the_registration_get_the_stored_identity_and_their_auth with hooked,
    a_login_hook_refuses_before_any_session_and_settings_hooks_rewrite_a_profile with hooked,
    failing_hooks_stop_their_flows_without_a_session_or_a_500 with failing,
}

fn traits(email: &str) -> Value {
    json!({ "email": email, "name": { "first": "Ada", "last": "Lovelace" } })
}

async fn register(app: &TestApp, email: &str) -> (StatusCode, Value) {
    let flow = app.flow("registration").await;
    let r = app
        .submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "password", "password": PASSWORD, "traits": traits(email) }),
            None,
        )
        .await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn a_registration_hook_refuses_with_its_messages_or_changes_the_identity_before_it_is_stored(
    app: TestApp,
) {
    let refused = unique_email("refused");
    let (status, flow) = register(&app, &refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{flow}");
    let email = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "traits.email")
        .unwrap();
    assert_eq!(email["messages"][0]["id"], 4000001);
    assert_eq!(
        email["messages"][0]["text"],
        "This address is not on the invitation list."
    );
    assert_eq!(email["messages"][0]["context"], json!({"list": "beta"}));
    assert!(flow.get("session_token").is_none());
    let found = app
        .admin_get_list(&format!(
            "/admin/identities?credentials_identifier={refused}"
        ))
        .await;
    assert!(found.is_empty(), "a refused sign-up stores nothing");
    // The refusal came before the identity was stored, so the hooks after it never ran.
    assert!(receiver().calls("ok", &refused).is_empty());

    let renamed = unique_email("renamed");
    let (status, body) = register(&app, &renamed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["identity"]["id"].as_str().unwrap();
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert_eq!(stored["metadata_public"], json!({"plan": "free"}));
    assert_eq!(
        stored["metadata_admin"],
        json!({"crm_id": format!("crm-{renamed}")})
    );
    assert_eq!(stored["traits"]["name"]["first"], "Renamed");
    let check = receiver().calls("check", &renamed).pop().unwrap();
    assert_eq!(check.header("x-api-key"), "k-123");
    assert_eq!(check.body["traits"], traits(&renamed));
    assert_eq!(check.body["flow_type"], "api");
    assert_eq!(check.body["method"], "POST");
    assert!(
        check.body["url"].as_str().unwrap().ends_with(&format!(
            "/self-service/registration?flow={}",
            check.body["flow_id"].as_str().unwrap()
        )),
        "{}",
        check.body["url"]
    );
}

async fn hooks_after_the_registration_get_the_stored_identity_and_their_auth(app: TestApp) {
    let email = unique_email("after");
    let (status, body) = register(&app, &email).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["session_token"].is_string());
    let id = body["identity"]["id"].as_str().unwrap();
    // Hooks after the identity is stored are sent in the background.
    let ok = receiver().wait_for("ok", &email).await;
    assert_eq!(ok.body["identity_id"], id);
    assert_eq!(ok.method, "POST");
    assert_eq!(ok.header("x-tenant"), "uni");
    let basic = base64::engine::general_purpose::STANDARD.encode("portcullis:s3cret");
    assert_eq!(ok.header("authorization"), format!("Basic {basic}"));
    assert_eq!(ok.header("content-type"), "application/json");
    // The ignored hook is still waiting for its answer: the registration did not.
    let held = receiver().wait_for("held", &email).await;
    assert_eq!(held.body["identity_id"], id);
    receiver().release_held();
    // A body that cancels skips its call; another address's is sent.
    receiver().wait_for("cancelled", &email).await;
    let quiet = format!("{}@quiet.example", uuid::Uuid::new_v4().simple());
    let (status, _) = register(&app, &quiet).await;
    assert_eq!(status, StatusCode::OK);
    receiver().wait_for("ok", &quiet).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(receiver().calls("cancelled", &quiet).is_empty());

    // A `before` hook sees the request as it starts the flow: the browser's headers and
    // cookies, but never a credential (the anti-CSRF cookie, the token cookies, the flow's
    // anti-CSRF token).
    let agent = format!("agent-{}", uuid::Uuid::new_v4());
    let csrf = app.state.core.config().csrf_cookie_name().to_string();
    let r = app
        .request(reqwest::Method::GET, "/self-service/registration/browser")
        .header("user-agent", &agent)
        .header(
            "cookie",
            format!("theme=dark; {csrf}=secret; access_token=eyJ.a.b; refresh_token=eyJ.c.d; __client=sealed"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let before = receiver().calls("check-before", &agent).pop().unwrap();
    assert!(before.body["flow_id"].is_string());
    assert_eq!(before.body["cookies"], json!({"theme": "dark"}));
    assert_eq!(before.body["csrf"], json!([""]));
}

async fn a_login_hook_refuses_before_any_session_and_settings_hooks_rewrite_a_profile(
    app: TestApp,
) {
    // Signed up before the receiver refused it (its check is by address prefix).
    let email = unique_email("member");
    let (status, body) = register(&app, &email).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["session_token"].as_str().unwrap().to_string();
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let login = receiver().calls("check", &email);
    assert_eq!(login.len(), 2, "once at sign-up, once at sign-in");

    // An account the admin made (admin writes run no hooks) that the receiver refuses: no
    // session from the login flow, and no tokens from the token face either.
    let refused = unique_email("refused");
    let created = app
        .create_identity(json!({
            "schema_id": "default",
            "traits": traits(&refused),
            "credentials": { "password": { "config": { "password": PASSWORD } } },
        }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let r = app.login(&refused, PASSWORD).await;
    let (status, shown): (StatusCode, Value) = (r.status(), r.json().await.unwrap());
    assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}");
    assert!(shown.get("session_token").is_none());
    assert!(shown
        .to_string()
        .contains("This address is not on the invitation list."));
    let (status, body) = app
        .post_json(
            "/api/token/",
            &json!({ "email": refused, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["detail"],
        "This address is not on the invitation list."
    );
    // The login `before` hooks see the token face's request too, before any password.
    let agent = format!("agent-{}", uuid::Uuid::new_v4());
    let r = app
        .request(reqwest::Method::POST, "/api/token/")
        .header("user-agent", &agent)
        .json(&json!({ "email": email, "password": "not the password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let before = receiver()
        .calls("check-before", &agent)
        .pop()
        .expect("the before hook");
    assert!(before.body["flow_id"].is_string());

    // Settings: the new address is refused by the receiver, with its message on the field.
    let (_, flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    let id = flow["id"].as_str().unwrap();
    let refused = unique_email("refused");
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "profile", "traits": traits(&refused) }),
            Some(&token),
        )
        .await;
    let (status, shown): (StatusCode, Value) = (r.status(), r.json().await.unwrap());
    assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}");
    assert!(shown
        .to_string()
        .contains("This address is not on the invitation list."));
    let (_, me) = app.get_json_with_token("/sessions/whoami", &token).await;
    assert_eq!(me["identity"]["traits"]["email"], email, "nothing changed");
    assert!(receiver().calls("ok", &refused).is_empty());

    // A change it accepts is stored with what it answered.
    let renamed = unique_email("renamed");
    let r = app
        .submit(
            "settings",
            id,
            json!({ "method": "profile", "traits": traits(&renamed) }),
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, me) = app.get_json_with_token("/sessions/whoami", &token).await;
    assert_eq!(me["identity"]["traits"]["email"], renamed);
    assert_eq!(me["identity"]["traits"]["name"]["first"], "Renamed");
    assert_eq!(me["identity"]["metadata_public"], json!({"plan": "free"}));
    let after = receiver().wait_for("ok", &renamed).await;
    assert_eq!(after.body["traits"]["name"]["first"], "Renamed");
}

async fn failing_hooks_stop_their_flows_without_a_session_or_a_500(app: TestApp) {
    // A hook that parses but answers 500 without messages: the sign-up fails, nothing stored.
    let email = unique_email("failing");
    let (status, body) = register(&app, &email).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], 502);
    assert!(body["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("web hook"));
    let found = app
        .admin_get_list(&format!("/admin/identities?credentials_identifier={email}"))
        .await;
    assert!(found.is_empty());

    // Login: a failing hook that does not parse still runs before the session, and stops it.
    let id = app
        .create_identity(json!({
            "schema_id": "default",
            "traits": traits(&email),
            "credentials": { "password": { "config": { "password": PASSWORD } } },
        }))
        .await;
    assert_eq!(id.status(), StatusCode::CREATED);
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("session_token").is_none());
    assert_eq!(receiver().calls("fail", &email).len(), 2);
    // The token face signs in by password without a flow: the login hooks gate it alike.
    let (status, body) = app
        .post_json(
            "/api/token/",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.get("access").is_none() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(receiver().calls("fail", &email).len(), 3);

    // Before a flow: a refusal with messages is a 400 with the receiver's words; a failure a 502.
    let r = app.get("/self-service/verification/api").await;
    let (status, body): (StatusCode, Value) = (r.status(), r.json().await.unwrap());
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "Sign-ups are closed this week.");
    // A receiver that redirects (a login page in front of it) fails: never a pass.
    let r = app.get("/self-service/recovery/api").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}
