//! Security keys (`selfservice.methods.webauthn`) through the browser flows' JSON, as an SPA
//! drives them: as a second factor (settings, the second step, removal, bad answers) and with
//! `passwordless` as a first one. The software authenticator answers the ceremonies
//! (`helpers/webauthn.rs`); Chromium's virtual authenticator does the same through the hosted
//! pages in `tests/browser`.

use crate::helpers::webauthn::{
    add_key, b64url, keys_on, node, page, password_sign_in, post, second_step, value_of, whoami,
    CLERK_KEY,
};
use crate::helpers::{
    csrf, expect_error, json_of, message_ids, unique_email, Browser, TestApp, PASSWORD,
};
use base64::Engine;
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

crate::on_every_backend!(
    security_keys_are_linked_asked_for_and_removed with keys_on,
    bad_webauthn_answers_get_kratos_messages with keys_on,
    a_removed_key_no_longer_passes_an_open_second_step with keys_on,
    passwordless_keys_sign_up_and_in_after_the_identifier with passwordless_keys,
);

fn passwordless_keys(c: &mut Config) {
    keys_on(c);
    c.selfservice.methods.webauthn.config.passwordless = true;
}

async fn security_keys_are_linked_asked_for_and_removed(app: TestApp) {
    let email = unique_email("key");
    let (id, token) = app.register(&email, PASSWORD).await;
    // An app's settings flow offers no key: a ceremony needs the page's origin.
    let (_, api_flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    assert!(node(&api_flow, "webauthn_register_trigger").is_none());

    let mut b = Browser::new(&app);
    assert_eq!(password_sign_in(&mut b, &email).await.0, StatusCode::OK);
    let flow = b.flow("settings").await;
    let trigger = node(&flow, "webauthn_register_trigger").unwrap();
    assert_eq!(
        trigger["attributes"]["onclickTrigger"],
        "oryWebAuthnRegistration"
    );
    assert_eq!(trigger["meta"]["label"]["id"], 1050012);
    let script = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "script")
        .unwrap();
    assert_eq!(
        script["attributes"]["src"],
        app.url("/.well-known/ory/webauthn.js")
    );
    // The script is served with the hash the node pins.
    let served = app.get("/.well-known/ory/webauthn.js").await;
    assert_eq!(
        served.headers()["content-type"],
        "text/javascript; charset=UTF-8"
    );
    let bytes = served.bytes().await.unwrap();
    let hash = {
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes))
    };
    assert_eq!(script["attributes"]["integrity"], format!("sha512-{hash}"));
    let options: Value =
        serde_json::from_str(&value_of(&flow, "webauthn_register_trigger")).unwrap();
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        options["publicKey"]["user"]["id"],
        b64url(uuid::Uuid::parse_str(&id).unwrap().as_bytes()),
        "the user handle of a security key is the identity id"
    );

    let mut key = SoftPasskey::new(true);
    let key_id = add_key(&mut b, &mut key, "Desk key").await;
    let (_, me) = whoami(&mut b).await;
    assert_eq!(me["authenticator_assurance_level"], "aal2", "{me}");
    let (_, stored) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=webauthn"
        ))
        .await;
    let config = &stored["credentials"]["webauthn"]["config"];
    assert_eq!(config["credentials"][0]["display_name"], "Desk key");
    assert_eq!(config["credentials"][0]["is_passwordless"], false);
    assert_eq!(
        config["credentials"][0]["id"],
        base64::engine::general_purpose::STANDARD.encode(&key_id)
    );
    // The key is now a factor the identity has: the old token must step up.
    assert_eq!(app.whoami_status(&token).await, StatusCode::FORBIDDEN);

    // A password sign-in goes on to the key.
    let mut c = Browser::new(&app);
    let (s, e) = password_sign_in(&mut c, &email).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (flow, rcr) = second_step(&mut c).await;
    let allowed = rcr.public_key.allow_credentials.clone();
    assert_eq!(allowed.len(), 1);
    let assertion = key.do_authentication(page(), rcr).unwrap();
    let (s, done) = post(
        &mut c,
        &flow,
        json!({ "webauthn_login": serde_json::to_string(&assertion).unwrap() }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let (_, me) = whoami(&mut c).await;
    assert_eq!(me["authenticator_assurance_level"], "aal2");
    let amr: Vec<&str> = me["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(amr, ["password", "webauthn"]);
    let (_, stored) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=webauthn"
        ))
        .await;
    assert!(
        stored["credentials"]["webauthn"]["config"]["credentials"][0]["authenticator"]
            ["sign_count"]
            .as_u64()
            .unwrap()
            > 0,
        "the key's counter is kept"
    );

    // The same answer again, for another sign-in's challenge: refused.
    let mut d = Browser::new(&app);
    password_sign_in(&mut d, &email).await;
    let (flow, _) = second_step(&mut d).await;
    let (s, replay) = post(
        &mut d,
        &flow,
        json!({ "method": "webauthn", "webauthn_login": serde_json::to_string(&assertion).unwrap() }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&replay, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{replay}"
    );

    // Removed in settings: the identity is back to one factor.
    let flow = b.flow("settings").await;
    let remove = node(&flow, "webauthn_remove").unwrap();
    assert_eq!(remove["attributes"]["value"], hex::encode(&key_id));
    assert_eq!(remove["meta"]["label"]["id"], 1050018);
    assert_eq!(
        remove["meta"]["label"]["context"]["display_name"],
        "Desk key"
    );
    let (s, saved) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_remove": hex::encode(&key_id) }),
    )
    .await;
    assert_eq!(
        (s, saved["state"].as_str()),
        (StatusCode::OK, Some("success")),
        "{saved}"
    );
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert!(stored["credentials"].get("webauthn").is_none(), "{stored}");
    assert_eq!(app.whoami_status(&token).await, StatusCode::OK);
    // Each change was a user.updated event with its audit record.
    let audit = app
        .admin_get_list(&format!("/admin/audit?identity_id={id}"))
        .await;
    let kinds: Vec<&str> = audit
        .iter()
        .filter(|r| r["details"]["method"] == "webauthn")
        .filter_map(|r| r["type"].as_str())
        .collect();
    for kind in [
        "second_factor.added",
        "second_factor.removed",
        "second_factor.failed",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} (the replay is a failure): {audit:?}"
        );
    }
}

async fn bad_webauthn_answers_get_kratos_messages(app: TestApp) {
    let email = unique_email("bad-key");
    app.register(&email, PASSWORD).await;
    let mut b = Browser::new(&app);
    password_sign_in(&mut b, &email).await;

    // Settings: no name, a malformed answer, another page's origin, another relying party.
    let flow = b.flow("settings").await;
    let ccr: CreationChallengeResponse =
        serde_json::from_str(&value_of(&flow, "webauthn_register_trigger")).unwrap();
    let mut key = SoftPasskey::new(true);
    let reg = serde_json::to_string(&key.do_registration(page(), ccr.clone()).unwrap()).unwrap();
    let (s, nameless) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_register": reg }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        message_ids(&nameless, Some("webauthn_register_displayname")),
        vec![4000002]
    );
    let flow = b.flow("settings").await;
    let (s, garbage) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_register": "{not json", "webauthn_register_displayname": "x" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&garbage, None)),
        (StatusCode::BAD_REQUEST, vec![4000001])
    );
    let huge = "x".repeat(20_000);
    let (s, too_big) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_register": huge, "webauthn_register_displayname": "x" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&too_big, None)),
        (StatusCode::BAD_REQUEST, vec![4000001])
    );
    let flow = b.flow("settings").await;
    let ccr: CreationChallengeResponse =
        serde_json::from_str(&value_of(&flow, "webauthn_register_trigger")).unwrap();
    let elsewhere = key
        .do_registration(Url::parse("http://localhost:6666").unwrap(), ccr.clone())
        .unwrap();
    let (s, refused) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_register": serde_json::to_string(&elsewhere).unwrap(), "webauthn_register_displayname": "x" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000001]),
        "{refused}"
    );
    let mut other_rp = ccr.clone();
    other_rp.public_key.rp.id = "example.com".into();
    let foreign = key
        .do_registration(Url::parse("https://example.com").unwrap(), other_rp)
        .unwrap();
    let (s, refused) = post(
        &mut b,
        &flow,
        json!({ "method": "webauthn", "webauthn_register": serde_json::to_string(&foreign).unwrap(), "webauthn_register_displayname": "x" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000001]),
        "{refused}"
    );
    // An answer to another form's challenge (the ceremony above was for an older flow).
    let newer = b.flow("settings").await;
    let (s, refused) = post(
        &mut b,
        &newer,
        json!({ "method": "webauthn", "webauthn_register": reg, "webauthn_register_displayname": "x" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000001]),
        "{refused}"
    );

    // With a key linked, the second step refuses answers for another origin or party.
    add_key(&mut b, &mut key, "Real key").await;
    let mut c = Browser::new(&app);
    password_sign_in(&mut c, &email).await;
    let (flow, rcr) = second_step(&mut c).await;
    let wrong_origin = key
        .do_authentication(Url::parse("http://localhost:6666").unwrap(), rcr.clone())
        .unwrap();
    let (s, refused) = post(
        &mut c,
        &flow,
        json!({ "webauthn_login": serde_json::to_string(&wrong_origin).unwrap() }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{refused}"
    );
    let (s, refused) = post(&mut c, &flow, json!({ "webauthn_login": "[]" })).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000001]),
        "{refused}"
    );
    // A security key is no first factor, and a passkey answer is no second one.
    let mut e = Browser::new(&app);
    let first = e.flow("login").await;
    let (s, refused) = post(
        &mut e,
        &first,
        json!({ "method": "webauthn", "webauthn_login": "{}" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4010002]),
        "{refused}"
    );
    let (s, refused) = post(
        &mut c,
        &flow,
        json!({ "method": "passkey", "passkey_login": "{}" }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4010002]),
        "{refused}"
    );
    // After all that the right answer still signs in.
    let answer = key.do_authentication(page(), rcr).unwrap();
    let (s, done) = post(
        &mut c,
        &flow,
        json!({ "webauthn_login": serde_json::to_string(&answer).unwrap() }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    // A second factor submitted without a first: 401 as Kratos.
    let mut f = Browser::new(&app);
    let r = f.get_json("/self-service/login/browser?aal=aal2").await;
    let e = expect_error(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e["error"]["id"], "session_aal1_required");
}

/// A second step opened while the identity had two keys: after one is removed, its answer
/// is refused in that open step (the ceremony was started for both); the other still works.
/// Clerk's user shows the keys as a second factor.
async fn a_removed_key_no_longer_passes_an_open_second_step(app: TestApp) {
    let email = unique_email("removed-key");
    let (id, _) = app.register(&email, PASSWORD).await;
    let mut b = Browser::new(&app);
    password_sign_in(&mut b, &email).await;
    let (mut lost, mut kept) = (SoftPasskey::new(true), SoftPasskey::new(true));
    let lost_id = add_key(&mut b, &mut lost, "Lost key").await;
    add_key(&mut b, &mut kept, "Kept key").await;
    let (s, user) = json_of(
        app.http
            .get(app.admin_url(&format!("/v1/users/user_{}", id.replace('-', ""))))
            .bearer_auth(CLERK_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{user}");
    assert_eq!(user["two_factor_enabled"], true, "{user}");

    let mut thief = Browser::new(&app);
    password_sign_in(&mut thief, &email).await;
    let (flow, rcr) = second_step(&mut thief).await;
    assert_eq!(rcr.public_key.allow_credentials.len(), 2);
    // The owner removes the lost key.
    let settings = b.flow("settings").await;
    let (s, _) = post(
        &mut b,
        &settings,
        json!({ "webauthn_remove": hex::encode(&lost_id) }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let stolen = lost.do_authentication(page(), rcr.clone()).unwrap();
    let (s, refused) = post(
        &mut thief,
        &flow,
        json!({ "webauthn_login": serde_json::to_string(&stolen).unwrap() }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{refused}"
    );
    let (_, me) = whoami(&mut thief).await;
    assert_ne!(me["authenticator_assurance_level"], "aal2");
    let good = kept.do_authentication(page(), rcr).unwrap();
    let (s, done) = post(
        &mut thief,
        &flow,
        json!({ "webauthn_login": serde_json::to_string(&good).unwrap() }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
}

/// `webauthn.config.passwordless`: a registration makes an account with a key and no
/// password; the login form's first step takes the identifier and answers 422 to the same
/// flow, which then asks that account's keys (AMR `webauthn` at aal1). An identifier of
/// nobody gets the same answer, asking a key nobody has; the last key cannot be removed.
async fn passwordless_keys_sign_up_and_in_after_the_identifier(app: TestApp) {
    let email = unique_email("pwless");
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let trigger = node(&flow, "webauthn_register_trigger").unwrap();
    assert_eq!(trigger["meta"]["label"]["id"], 1040004);
    let ccr: CreationChallengeResponse =
        serde_json::from_str(&value_of(&flow, "webauthn_register_trigger")).unwrap();
    let mut key = SoftPasskey::new(true);
    let reg = key.do_registration(page(), ccr).unwrap();
    let body = json!({
        "traits": { "email": email },
        "webauthn_register": serde_json::to_string(&reg).unwrap(),
        "webauthn_register_displayname": "Travel key",
    });
    let (s, done) = post(&mut b, &flow, body).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let id = done["identity"]["id"].as_str().unwrap().to_string();
    let (_, stored) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=webauthn"
        ))
        .await;
    let creds = stored["credentials"].as_object().unwrap();
    assert_eq!(creds.keys().collect::<Vec<_>>(), ["webauthn"], "{stored}");
    assert_eq!(creds["webauthn"]["identifiers"], json!([email]));
    assert_eq!(
        creds["webauthn"]["config"]["credentials"][0]["is_passwordless"],
        true
    );

    // Sign in: the identifier, then the key.
    let mut c = Browser::new(&app);
    let flow = c.flow("login").await;
    let first = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["group"] == "webauthn" && n["attributes"]["value"] == "webauthn")
        .unwrap();
    assert_eq!(first["meta"]["label"]["id"], 1010008);
    let r = c
        .post_json(
            flow["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&flow), "method": "webauthn", "identifier": email }),
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["error"]["id"], "browser_location_change_required");
    let fid = flow["id"].as_str().unwrap();
    assert!(
        e["redirect_browser_to"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?flow={fid}")),
        "{e}"
    );
    let asked = c.fetch_flow("login", fid).await;
    assert_eq!(message_ids(&asked, None), vec![1010012]);
    assert!(
        node(&asked, "password").is_none(),
        "the key alone is asked for"
    );
    assert_eq!(
        node(&asked, "webauthn_login_trigger").unwrap()["meta"]["label"]["id"],
        1010013
    );
    let rcr: RequestChallengeResponse =
        serde_json::from_str(&value_of(&asked, "webauthn_login_trigger")).unwrap();
    assert_eq!(rcr.public_key.allow_credentials.len(), 1);
    let answer = key.do_authentication(page(), rcr).unwrap();
    let body = json!({ "method": "webauthn", "identifier": email, "webauthn_login": serde_json::to_string(&answer).unwrap() });
    let (s, signed_in) = post(&mut c, &asked, body).await;
    assert_eq!(s, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["session"]["identity"]["id"], json!(id));
    assert_eq!(
        signed_in["session"]["authenticator_assurance_level"],
        "aal1"
    );
    assert_eq!(
        signed_in["session"]["authentication_methods"][0]["method"],
        "webauthn"
    );
    let (s, _) = whoami(&mut c).await;
    assert_eq!(s, StatusCode::OK, "a first factor: no second step is asked");

    // Nobody's identifier: the same answer, and the real key does not open it.
    let mut d = Browser::new(&app);
    let flow = d.flow("login").await;
    let r = d
        .post_json(
            flow["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&flow), "method": "webauthn", "identifier": unique_email("nobody") }),
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["error"]["id"], "browser_location_change_required");
    let decoy = d.fetch_flow("login", flow["id"].as_str().unwrap()).await;
    // The decoy has the fields of a real request, and its credentials those of real ones.
    let shape = |f: &Value| -> (Vec<String>, Vec<String>) {
        let o: Value = serde_json::from_str(&value_of(f, "webauthn_login_trigger")).unwrap();
        let pk = o["publicKey"].as_object().unwrap();
        let cred = o["publicKey"]["allowCredentials"][0].as_object().unwrap();
        let mut top: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        top.extend(pk.keys().map(|k| format!("publicKey.{k}")));
        top.sort();
        let mut c: Vec<String> = cred.keys().cloned().collect();
        c.sort();
        (top, c)
    };
    assert_eq!(shape(&decoy), shape(&asked));
    let rcr: RequestChallengeResponse =
        serde_json::from_str(&value_of(&decoy, "webauthn_login_trigger")).unwrap();
    let decoys = rcr.public_key.allow_credentials.len();
    assert!(
        (1..=3).contains(&decoys),
        "looks like an account's request: {decoys}"
    );
    // The real key, asked for by a forged request, still cannot sign in to nobody.
    let mut forged = serde_json::to_value(&rcr).unwrap();
    forged["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": b64url(&reg.raw_id) }]);
    let answer = key
        .do_authentication(page(), serde_json::from_value(forged).unwrap())
        .unwrap();
    let body =
        json!({ "method": "webauthn", "webauthn_login": serde_json::to_string(&answer).unwrap() });
    let (s, refused) = post(&mut d, &decoy, body).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{refused}"
    );

    // Asking again for nobody gives the same request (a real account's never changes
    // either), so the decoy cannot be told by asking twice.
    let ids = |flow: &Value| -> Value {
        let options: Value =
            serde_json::from_str(&value_of(flow, "webauthn_login_trigger")).unwrap();
        options["publicKey"]["allowCredentials"].clone()
    };
    let nobody = unique_email("nobody-twice");
    let mut seen = vec![];
    for _ in 0..2 {
        let mut e = Browser::new(&app);
        let flow = e.flow("login").await;
        let body = json!({ "csrf_token": csrf(&flow), "method": "webauthn", "identifier": nobody });
        let r = e
            .post_json(flow["ui"]["action"].as_str().unwrap(), &body)
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        seen.push(ids(&e
            .fetch_flow("login", flow["id"].as_str().unwrap())
            .await));
    }
    assert_eq!(seen[0], seen[1]);

    // A re-authentication asks for the account's keys at once, and only its own count.
    let r = c.get_json("/self-service/login/browser?refresh=true").await;
    let refresh: Value = r.json().await.unwrap();
    assert!(node(&refresh, "password").is_none(), "{refresh}");
    let rcr: RequestChallengeResponse =
        serde_json::from_str(&value_of(&refresh, "webauthn_login_trigger")).unwrap();
    let answer = key.do_authentication(page(), rcr).unwrap();
    let body =
        json!({ "method": "webauthn", "webauthn_login": serde_json::to_string(&answer).unwrap() });
    let (s, again) = post(&mut c, &refresh, body).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["session"]["authentication_methods"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An admin's removal of second-factor keys leaves a passwordless key alone.
    let r = app
        .admin_delete(&format!("/admin/identities/{id}/credentials/webauthn"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert!(stored["credentials"].get("webauthn").is_some());

    // The only key cannot be removed.
    let settings = b.flow("settings").await;
    let remove = node(&settings, "webauthn_remove").unwrap();
    assert_eq!(remove["attributes"]["disabled"], true);
    assert_eq!(remove["messages"][0]["id"], 4000001);
    let (s, kept) = post(
        &mut b,
        &settings,
        json!({ "webauthn_remove": remove["attributes"]["value"] }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{kept}");
}
