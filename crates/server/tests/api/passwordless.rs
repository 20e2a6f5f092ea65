//! Without a password: signing in and signing up by a code mailed to the address
//! (`selfservice.methods.code.passwordless_enabled`), read from the courier's outbox.

use crate::helpers::{json_of, message_ids, unique_email, TestApp, PASSWORD};
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    a_mailed_code_signs_in_without_the_password with passwordless,
    a_mailed_code_signs_up_without_a_password with passwordless,
    a_taken_address_gets_no_sign_up_code with passwordless,
    a_taken_address_is_answered_alike_under_mitigation with passwordless_mitigated,
    sign_up_codes_to_one_address_are_capped with passwordless,
);

async fn whoami(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.get_json_with_token("/sessions/whoami", token).await
}

fn passwordless(c: &mut Config) {
    c.selfservice.methods.code.passwordless_enabled = true;
}

/// `code.passwordless_enabled`: the login form also sends a code to the identifier; the code
/// signs in (AMR `code`, aal1) and verifies the address it was read at.
async fn a_mailed_code_signs_in_without_the_password(app: TestApp) {
    let email = unique_email("passwordless");
    let (id, _) = app.register(&email, PASSWORD).await;
    let flow = app.flow("login").await;
    let send = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["group"] == "code" && n["attributes"]["value"] == "code")
        .unwrap();
    assert_eq!(send["meta"]["label"]["id"], 1010015);
    let fid = flow["id"].as_str().unwrap().to_string();
    let submit = |body: Value| {
        let (app, fid) = (&app, fid.clone());
        async move { json_of(app.submit("login", &fid, body, None).await).await }
    };
    let (s, sent) = submit(json!({ "method": "code", "identifier": email.to_uppercase() })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(message_ids(&sent, None), vec![1010014]);
    let code = app.mailed_code(&email, "login_code_valid").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, bad) = submit(json!({ "method": "code", "identifier": email, "code": wrong })).await;
    assert_eq!(
        (s, message_ids(&bad, None)),
        (StatusCode::BAD_REQUEST, vec![4010008])
    );
    let (s, done) = submit(json!({ "method": "code", "identifier": email, "code": code })).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(
        done["session"]["authentication_methods"][0]["method"],
        "code"
    );
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal1");
    assert_eq!(
        done["session"]["identity"]["verifiable_addresses"][0]["verified"],
        true
    );
    let token = done["session_token"].as_str().unwrap();
    assert_eq!(whoami(&app, token).await.1["identity"]["id"], json!(id));
    // An unknown address is answered alike, and nobody is mailed.
    let stranger = unique_email("nobody");
    let flow = app.flow("login").await;
    let (s, alike) = json_of(
        app.submit(
            "login",
            flow["id"].as_str().unwrap(),
            json!({ "method": "code", "identifier": stranger }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, alike["state"].clone()),
        (StatusCode::BAD_REQUEST, json!("sent_email"))
    );
    assert_eq!(message_ids(&alike, None), vec![1010014]);
    assert!(app.messages_to(&stranger).await.is_empty());
}

fn passwordless_mitigated(c: &mut Config) {
    passwordless(c);
    c.security.account_enumeration.mitigate = true;
}

/// The code's node of a flow, by its value (`method=code` buttons) or name.
fn node<'a>(flow: &'a Value, name: &str, value: Option<&str>) -> Option<&'a Value> {
    flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| {
        n["attributes"]["name"] == name && value.is_none_or(|v| n["attributes"]["value"] == v)
    })
}

/// Registration by code: the traits first (a code is mailed, the traits come back hidden),
/// then the code, which creates the account without a password, its address verified; the
/// address then signs in by code too.
async fn a_mailed_code_signs_up_without_a_password(app: TestApp) {
    let email = unique_email("signup-code");
    let flow = app.flow("registration").await;
    let send = node(&flow, "method", Some("code")).unwrap();
    assert_eq!(send["meta"]["label"]["id"], 1040006);
    assert_eq!(send["group"], "code");
    let fid = flow["id"].as_str().unwrap().to_string();
    let submit = |body: Value| {
        let (app, fid) = (&app, fid.clone());
        async move { json_of(app.submit("registration", &fid, body, None).await).await }
    };
    // Invalid traits are refused before any mail.
    let (s, bad) =
        submit(json!({ "method": "code", "traits": { "email": "not an address" } })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(!message_ids(&bad, Some("traits.email")).is_empty(), "{bad}");
    let traits = json!({ "email": email, "name": { "first": "Ada" } });
    let (s, sent) = submit(json!({ "method": "code", "traits": traits })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(message_ids(&sent, None), vec![1040005]);
    let kept = node(&sent, "traits.email", None).unwrap();
    assert_eq!(kept["attributes"]["type"], "hidden");
    assert_eq!(kept["attributes"]["value"], email);
    assert_eq!(
        node(&sent, "code", None).unwrap()["meta"]["label"]["id"],
        1070012
    );
    assert!(node(&sent, "resend", Some("code")).is_some());
    assert!(node(&sent, "password", None).is_none());
    let code = app.mailed_code(&email, "registration_code_valid").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, refused) = submit(json!({ "method": "code", "traits": traits, "code": wrong })).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4040003])
    );
    // The traits cannot change between the steps.
    let other = json!({ "email": unique_email("swapped") });
    let (s, refused) = submit(json!({ "method": "code", "traits": other, "code": code })).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000036])
    );
    let (s, done) = submit(json!({ "method": "code", "traits": traits, "code": code })).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let identity = &done["identity"];
    assert_eq!(identity["verifiable_addresses"][0]["verified"], true);
    assert_eq!(
        done["session"]["authentication_methods"][0]["method"],
        "code"
    );
    let id = identity["id"].as_str().unwrap().to_string();
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    let kinds: Vec<&String> = stored["credentials"].as_object().unwrap().keys().collect();
    assert_eq!(kinds, ["code"], "no password: {stored}");
    assert_eq!(stored["credentials"]["code"]["identifiers"], json!([email]));
    let token = done["session_token"].as_str().unwrap();
    assert_eq!(whoami(&app, token).await.1["identity"]["id"], json!(id));
    // The flow is used up, and the account signs in by code later.
    let (s, again) = submit(json!({ "method": "code", "traits": traits, "code": code })).await;
    assert_eq!(
        (s, message_ids(&again, None)),
        (StatusCode::BAD_REQUEST, vec![4040002])
    );
    let login = app.flow("login").await;
    let lid = login["id"].as_str().unwrap();
    let (s, _) = json_of(
        app.submit(
            "login",
            lid,
            json!({ "method": "code", "identifier": email }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let code = app.mailed_code(&email, "login_code_valid").await;
    let (s, signed_in) = json_of(
        app.submit(
            "login",
            lid,
            json!({ "method": "code", "identifier": email, "code": code }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["session"]["identity"]["id"], json!(id));
    let token = signed_in["session_token"].as_str().unwrap().to_string();

    // A re-authentication asks for a code too (the account has no password), for itself.
    let (s, refresh) = app
        .get_json_with_token("/self-service/login/api?refresh=true", &token)
        .await;
    assert_eq!(s, StatusCode::OK, "{refresh}");
    assert!(node(&refresh, "password", None).is_none(), "{refresh}");
    let hidden = node(&refresh, "identifier", None).unwrap();
    assert_eq!(
        (
            hidden["attributes"]["type"].as_str(),
            hidden["attributes"]["value"].as_str()
        ),
        (Some("hidden"), Some(email.as_str()))
    );
    let rid = refresh["id"].as_str().unwrap();
    let (s, _) = json_of(
        app.submit(
            "login",
            rid,
            json!({ "method": "code", "identifier": email }),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let code = app.mailed_code(&email, "login_code_valid").await;
    let (s, again) = json_of(
        app.submit(
            "login",
            rid,
            json!({ "method": "code", "identifier": email, "code": code }),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["session"]["authentication_methods"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The address changes in settings: the old one no longer signs in by code, the new one does.
    let new_email = unique_email("moved");
    let (_, settings) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    let (s, saved) = json_of(
        app.submit(
            "settings",
            settings["id"].as_str().unwrap(),
            json!({ "method": "profile", "traits": { "email": new_email, "name": { "first": "Ada" } } }),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, saved["state"].clone()),
        (StatusCode::OK, json!("success")),
        "{saved}"
    );
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert_eq!(
        stored["credentials"]["code"]["identifiers"],
        json!([new_email])
    );
    let before = app.messages_to(&email).await.len();
    let login = app.flow("login").await;
    let (s, alike) = json_of(
        app.submit(
            "login",
            login["id"].as_str().unwrap(),
            json!({ "method": "code", "identifier": email }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, alike["state"].clone()),
        (StatusCode::BAD_REQUEST, json!("sent_email"))
    );
    assert_eq!(
        app.messages_to(&email).await.len(),
        before,
        "nothing for the old address"
    );
    let login = app.flow("login").await;
    let lid = login["id"].as_str().unwrap();
    json_of(
        app.submit(
            "login",
            lid,
            json!({ "method": "code", "identifier": new_email }),
            None,
        )
        .await,
    )
    .await;
    let code = app.mailed_code(&new_email, "login_code_valid").await;
    let (s, moved) = json_of(
        app.submit(
            "login",
            lid,
            json!({ "method": "code", "identifier": new_email, "code": code }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{moved}");
    assert_eq!(moved["session"]["identity"]["id"], json!(id));
}

/// Without enumeration mitigation a taken address is refused, and mailed nothing.
async fn a_taken_address_gets_no_sign_up_code(app: TestApp) {
    let email = unique_email("taken-code");
    app.register(&email, PASSWORD).await;
    let before = app.messages_to(&email).await.len();
    let flow = app.flow("registration").await;
    let (s, refused) = json_of(
        app.submit(
            "registration",
            flow["id"].as_str().unwrap(),
            json!({ "method": "code", "traits": { "email": email } }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000007])
    );
    assert_eq!(app.messages_to(&email).await.len(), before);
}

/// With mitigation a taken address looks like a free one, no code is mailed, and no code
/// can complete it.
async fn a_taken_address_is_answered_alike_under_mitigation(app: TestApp) {
    let email = unique_email("taken-alike");
    app.register(&email, PASSWORD).await;
    let before = app.messages_to(&email).await.len();
    let flow = app.flow("registration").await;
    let fid = flow["id"].as_str().unwrap().to_string();
    let (s, alike) = json_of(
        app.submit(
            "registration",
            &fid,
            json!({ "method": "code", "traits": { "email": email } }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, alike["state"].clone()),
        (StatusCode::BAD_REQUEST, json!("sent_email"))
    );
    assert_eq!(message_ids(&alike, None), vec![1040005]);
    assert_eq!(
        app.messages_to(&email).await.len(),
        before,
        "no code for a taken address"
    );
    let (s, refused) = json_of(
        app.submit(
            "registration",
            &fid,
            json!({ "method": "code", "traits": { "email": email }, "code": "123456" }),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4040003])
    );
}

/// However many flows ask, one address gets ten sign-up codes an hour; the eleventh request
/// looks the same and mails nothing.
async fn sign_up_codes_to_one_address_are_capped(app: TestApp) {
    let email = unique_email("bombed");
    for i in 0..11 {
        let flow = app.flow("registration").await;
        let (s, sent) = json_of(
            app.submit(
                "registration",
                flow["id"].as_str().unwrap(),
                json!({ "method": "code", "traits": { "email": email } }),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(
            (s, sent["state"].clone()),
            (StatusCode::BAD_REQUEST, json!("sent_email")),
            "request {i}"
        );
    }
    assert_eq!(app.messages_to(&email).await.len(), 10);
}
