//! Security keys and passkeys through the browser flows' JSON (as an SPA drives them), with
//! `webauthn-authenticator-rs`'s software authenticator answering the ceremonies for a page on
//! `http://localhost:4455` (the relying party `localhost`, as in Kratos's own tests). Chromium's
//! virtual authenticator does the same through the hosted pages in `tests/browser`.
//!
//! The software authenticator keeps no discoverable credentials, so for passkeys the test
//! plays the browser's part: it names the credential in the sign-in request and returns the
//! user handle the authenticator would have kept. The server's side is the real one.

use crate::helpers::{
    csrf, expect_error, json_of, message_ids, unique_email, Browser, TestApp, PASSWORD,
};
use base64::Engine;
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url,
    WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

crate::on_every_backend!(
    security_keys_are_linked_asked_for_and_removed with keys_on,
    passkeys_sign_up_and_in_without_a_password with keys_on,
    bad_webauthn_answers_get_kratos_messages with keys_on,
    a_removed_key_no_longer_passes_an_open_second_step with keys_on,
    passkeys_reauthenticate_and_keep_one_handle with keys_on,
    a_code_sign_up_account_keeps_its_last_passkey_only_with_another_way_in with keys_and_codes,
);

const CLERK_KEY: &str = "sk_test_portcullis_webauthn";

fn keys_and_codes(c: &mut Config) {
    keys_on(c);
    c.selfservice.methods.code.passwordless_enabled = true;
}

const PAGE: &str = "http://localhost:4455";

fn keys_on(c: &mut Config) {
    let m = &mut c.selfservice.methods;
    m.webauthn.enabled = true;
    m.passkey.enabled = true;
    for rp in [&mut m.webauthn.config.rp, &mut m.passkey.config.rp] {
        rp.id = "localhost".into();
        rp.display_name = "Portcullis tests".into();
        rp.origins = vec![PAGE.into()];
    }
    c.clerk.secret_keys = vec![CLERK_KEY.into()];
}

fn page() -> Url {
    Url::parse(PAGE).unwrap()
}

fn node<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == name)
}

fn value_of(flow: &Value, name: &str) -> String {
    node(flow, name).unwrap_or_else(|| panic!("no {name} in {flow}"))["attributes"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn post(b: &mut Browser<'_>, flow: &Value, mut body: Value) -> (StatusCode, Value) {
    body["csrf_token"] = json!(csrf(flow));
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    json_of(b.post_json(&action, &body).await).await
}

/// Signs `b` in with the password (the JSON answer of a browser flow).
async fn password_sign_in(b: &mut Browser<'_>, email: &str) -> (StatusCode, Value) {
    let flow = b.flow("login").await;
    post(
        b,
        &flow,
        json!({ "method": "password", "identifier": email, "password": PASSWORD }),
    )
    .await
}

async fn whoami(b: &mut Browser<'_>) -> (StatusCode, Value) {
    json_of(b.get_json("/sessions/whoami").await).await
}

/// Registers a security key from `b`'s settings, named `name`: the key's id.
async fn add_key(b: &mut Browser<'_>, key: &mut SoftPasskey, name: &str) -> Vec<u8> {
    let flow = b.flow("settings").await;
    let ccr: CreationChallengeResponse =
        serde_json::from_str(&value_of(&flow, "webauthn_register_trigger")).unwrap();
    let reg = key.do_registration(page(), ccr).unwrap();
    let body = json!({
        "method": "webauthn",
        "webauthn_register": serde_json::to_string(&reg).unwrap(),
        "webauthn_register_displayname": name,
    });
    let (s, saved) = post(b, &flow, body).await;
    assert_eq!(
        (s, saved["state"].as_str()),
        (StatusCode::OK, Some("success")),
        "{saved}"
    );
    reg.raw_id.to_vec()
}

/// The second step's request for a security key (after a password sign-in of `b`).
async fn second_step(b: &mut Browser<'_>) -> (Value, RequestChallengeResponse) {
    let r = b.get_json("/self-service/login/browser?aal=aal2").await;
    assert_eq!(r.status(), StatusCode::OK);
    let flow: Value = r.json().await.unwrap();
    let rcr = serde_json::from_str(&value_of(&flow, "webauthn_login_trigger")).unwrap();
    (flow, rcr)
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

async fn passkeys_sign_up_and_in_without_a_password(app: TestApp) {
    let email = unique_email("passkey");
    let mut b = Browser::new(&app);
    let flow = b.flow("registration").await;
    let data: Value = serde_json::from_str(&value_of(&flow, "passkey_create_data")).unwrap();
    assert_eq!(data["displayNameFieldName"], "traits.email");
    let mut options = data["credentialOptions"].clone();
    let selection = &mut options["publicKey"]["authenticatorSelection"];
    assert_eq!(
        selection["residentKey"], "required",
        "passkeys are discoverable"
    );
    assert_eq!(selection["userVerification"], "required");
    // The software authenticator keeps no discoverable keys: it is asked for a plain one.
    selection["residentKey"] = json!("discouraged");
    selection["requireResidentKey"] = json!(false);
    let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(options["publicKey"]["user"]["id"].as_str().unwrap())
        .unwrap();
    let mut device = SoftPasskey::new(true);
    let reg = device
        .do_registration(page(), serde_json::from_value(options).unwrap())
        .unwrap();
    // The script posts the form without a `method`.
    let (s, done) = post(
        &mut b,
        &flow,
        json!({ "traits": { "email": email }, "passkey_register": serde_json::to_string(&reg).unwrap() }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let id = done["identity"]["id"].as_str().unwrap().to_string();
    let (_, me) = whoami(&mut b).await;
    assert_eq!(me["authentication_methods"][0]["method"], "passkey");
    let (_, stored) = app
        .admin_get_json(&format!(
            "/admin/identities/{id}?include_credential=passkey"
        ))
        .await;
    let creds = stored["credentials"].as_object().unwrap();
    assert_eq!(
        creds.keys().collect::<Vec<_>>(),
        ["passkey"],
        "no password: {stored}"
    );
    assert_eq!(
        creds["passkey"]["identifiers"][0],
        uuid::Uuid::from_slice(&handle).unwrap().to_string()
    );
    assert_eq!(
        creds["passkey"]["config"]["credentials"][0]["display_name"],
        email
    );

    // Sign in: the login form's discoverable request, answered with the user handle.
    let sign_in = |flow: &Value, device: &mut SoftPasskey, handle: &[u8]| {
        let mut challenge: Value =
            serde_json::from_str(&value_of(flow, "passkey_challenge")).unwrap();
        assert!(
            challenge.get("mediation").is_none(),
            "the script adds the mediation itself"
        );
        assert_eq!(challenge["publicKey"]["allowCredentials"], json!([]));
        challenge["publicKey"]["allowCredentials"] =
            json!([{ "type": "public-key", "id": b64url(&reg.raw_id) }]);
        let rcr: RequestChallengeResponse = serde_json::from_value(challenge).unwrap();
        let mut cred: PublicKeyCredential = device.do_authentication(page(), rcr).unwrap();
        cred.response.user_handle = Some(handle.to_vec());
        serde_json::to_string(&cred).unwrap()
    };
    let mut c = Browser::new(&app);
    let flow = c.flow("login").await;
    assert_eq!(
        node(&flow, "identifier").unwrap()["attributes"]["autocomplete"],
        "username webauthn"
    );
    assert_eq!(
        node(&flow, "passkey_login").unwrap()["attributes"]["onloadTrigger"],
        "oryPasskeyLoginAutocompleteInit"
    );
    let answer = sign_in(&flow, &mut device, &handle);
    let (s, done) = post(&mut c, &flow, json!({ "passkey_login": answer })).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["session"]["identity"]["id"], id);
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal1");
    assert_eq!(
        done["session"]["authentication_methods"][0]["method"],
        "passkey"
    );

    // The same answer for another sign-in is refused, and so is a handle of nobody.
    let mut d = Browser::new(&app);
    let other = d.flow("login").await;
    let (s, replay) = post(
        &mut d,
        &other,
        json!({ "method": "passkey", "passkey_login": answer }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&replay, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{replay}"
    );
    let other = d.flow("login").await;
    let stranger = sign_in(&other, &mut device, uuid::Uuid::new_v4().as_bytes());
    let (s, refused) = post(&mut d, &other, json!({ "passkey_login": stranger })).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000043]),
        "{refused}"
    );
    assert!(!d.has_session_cookie());

    // The only way in cannot be removed.
    let settings = b.flow("settings").await;
    let remove = node(&settings, "passkey_remove").unwrap();
    assert_eq!(remove["attributes"]["disabled"], true);
    let (s, kept) = post(
        &mut b,
        &settings,
        json!({ "method": "passkey", "passkey_remove": remove["attributes"]["value"] }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{kept}");
    let (_, stored) = app.admin_get_json(&format!("/admin/identities/{id}")).await;
    assert!(stored["credentials"].get("passkey").is_some());
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

/// The creation options of a form's `passkey_create_data`, asking for a plain credential (the
/// software authenticator keeps no discoverable ones), and the user handle they carry.
fn passkey_options(flow: &Value) -> (CreationChallengeResponse, Vec<u8>) {
    let data: Value = serde_json::from_str(&value_of(flow, "passkey_create_data")).unwrap();
    let mut options = data["credentialOptions"].clone();
    let selection = &mut options["publicKey"]["authenticatorSelection"];
    selection["residentKey"] = json!("discouraged");
    selection["requireResidentKey"] = json!(false);
    let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(options["publicKey"]["user"]["id"].as_str().unwrap())
        .unwrap();
    (serde_json::from_value(options).unwrap(), handle)
}

/// A passkey's answer to `flow`'s sign-in request (`passkey_challenge`), as a browser with a
/// discoverable credential `id` made for `handle` gives it.
fn passkey_answer(flow: &Value, device: &mut SoftPasskey, id: &[u8], handle: &[u8]) -> String {
    let mut challenge: Value = serde_json::from_str(&value_of(flow, "passkey_challenge")).unwrap();
    challenge["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": b64url(id) }]);
    let rcr: RequestChallengeResponse = serde_json::from_value(challenge).unwrap();
    let mut cred: PublicKeyCredential = device.do_authentication(page(), rcr).unwrap();
    cred.response.user_handle = Some(handle.to_vec());
    serde_json::to_string(&cred).unwrap()
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

/// A passkey-only account re-authenticates with its passkey (another account's passkey does
/// not count), and two settings forms cannot give its passkeys two user handles.
async fn passkeys_reauthenticate_and_keep_one_handle(app: TestApp) {
    // A password account adds its first passkey from one of two open settings forms.
    let email = unique_email("two-forms");
    app.register(&email, PASSWORD).await;
    let mut b = Browser::new(&app);
    password_sign_in(&mut b, &email).await;
    let (first, second) = (b.flow("settings").await, b.flow("settings").await);
    let mut device = SoftPasskey::new(true);
    let (options, _) = passkey_options(&first);
    let reg = device.do_registration(page(), options).unwrap();
    let first_id = reg.raw_id.to_vec();
    let (s, saved) = post(
        &mut b,
        &first,
        json!({ "passkey_settings_register": serde_json::to_string(&reg).unwrap() }),
    )
    .await;
    assert_eq!(
        (s, saved["state"].as_str()),
        (StatusCode::OK, Some("success")),
        "{saved}"
    );
    let (options, _) = passkey_options(&second);
    let mut other_device = SoftPasskey::new(true);
    let reg = other_device.do_registration(page(), options).unwrap();
    let (s, refused) = post(
        &mut b,
        &second,
        json!({ "passkey_settings_register": serde_json::to_string(&reg).unwrap() }),
    )
    .await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4000001]),
        "{refused}"
    );

    // Removing passkeys is for browser flows only, as adding them is.
    let token = app.login_token(&email).await;
    let (_, api_flow) = app
        .get_json_with_token("/self-service/settings/api", &token)
        .await;
    let r = app
        .request(
            reqwest::Method::POST,
            &format!(
                "/self-service/settings?flow={}",
                api_flow["id"].as_str().unwrap()
            ),
        )
        .header("X-Session-Token", &token)
        .json(&json!({ "method": "passkey", "passkey_remove": hex::encode(&first_id) }))
        .send()
        .await
        .unwrap();
    let (s, refused) = json_of(r).await;
    assert_eq!(
        (s, message_ids(&refused, None)),
        (StatusCode::BAD_REQUEST, vec![4010004]),
        "{refused}"
    );

    // A passkey-only account: signed up with a passkey.
    let mut p = Browser::new(&app);
    let flow = p.flow("registration").await;
    let (options, handle) = passkey_options(&flow);
    let mut own = SoftPasskey::new(true);
    let reg = own.do_registration(page(), options).unwrap();
    let own_id = reg.raw_id.to_vec();
    let (s, done) = post(&mut p, &flow, json!({ "traits": { "email": unique_email("pk-only") }, "passkey_register": serde_json::to_string(&reg).unwrap() })).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    // Its re-authentication asks for a passkey, not for a password it does not have.
    let r = p.get_json("/self-service/login/browser?refresh=true").await;
    let refresh: Value = r.json().await.unwrap();
    assert!(node(&refresh, "password").is_none(), "{refresh}");
    assert!(node(&refresh, "passkey_challenge").is_some());
    let answer = passkey_answer(&refresh, &mut own, &own_id, &handle);
    let (s, done) = post(&mut p, &refresh, json!({ "passkey_login": answer })).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let methods: Vec<&str> = done["session"]["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["passkey", "passkey"],
        "the same session, refreshed"
    );
    // The password account's passkey is valid, but it is not this session's identity.
    let r = p.get_json("/self-service/login/browser?refresh=true").await;
    let refresh: Value = r.json().await.unwrap();
    let (_, found) = app
        .admin_get_json(&format!("/admin/identities?credentials_identifier={email}"))
        .await;
    let (_, full) = app
        .admin_get_json(&format!(
            "/admin/identities/{}?include_credential=passkey",
            found[0]["id"].as_str().unwrap()
        ))
        .await;
    let config = &full["credentials"]["passkey"]["config"];
    let other_id = base64::engine::general_purpose::STANDARD
        .decode(config["credentials"][0]["id"].as_str().unwrap())
        .unwrap();
    let other_handle = base64::engine::general_purpose::STANDARD
        .decode(config["user_handle"].as_str().unwrap())
        .unwrap();
    let foreign = passkey_answer(&refresh, &mut device, &other_id, &other_handle);
    let r = p
        .post_json(
            refresh["ui"]["action"].as_str().unwrap(),
            &json!({ "csrf_token": csrf(&refresh), "passkey_login": foreign }),
        )
        .await;
    let e = expect_error(r, StatusCode::FORBIDDEN).await;
    assert_eq!(e["error"]["id"], "security_identity_mismatch");
}

/// With sign-in by code on, an account that signed up with a passkey has no address code
/// sign-in finds: its last passkey stays; one that signed up by code may drop it.
async fn a_code_sign_up_account_keeps_its_last_passkey_only_with_another_way_in(app: TestApp) {
    let mut p = Browser::new(&app);
    let flow = p.flow("registration").await;
    let (options, _) = passkey_options(&flow);
    let mut device = SoftPasskey::new(true);
    let reg = device.do_registration(page(), options).unwrap();
    let (s, _) = post(&mut p, &flow, json!({ "traits": { "email": unique_email("pk-code") }, "passkey_register": serde_json::to_string(&reg).unwrap() })).await;
    assert_eq!(s, StatusCode::OK);
    let settings = p.flow("settings").await;
    assert_eq!(
        node(&settings, "passkey_remove").unwrap()["attributes"]["disabled"],
        true
    );
    let (s, _) = post(
        &mut p,
        &settings,
        json!({ "passkey_remove": hex::encode(&reg.raw_id) }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Signed up by code, then a passkey added: the code still signs in, so it may go.
    let email = unique_email("code-pk");
    let mut c = Browser::new(&app);
    let flow = c.flow("registration").await;
    let traits = json!({ "email": email });
    let (s, _) = post(&mut c, &flow, json!({ "method": "code", "traits": traits })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let code = app.mailed_code(&email, "registration_code_valid").await;
    let (s, done) = post(
        &mut c,
        &flow,
        json!({ "method": "code", "traits": traits, "code": code }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let settings = c.flow("settings").await;
    let (options, _) = passkey_options(&settings);
    let mut device = SoftPasskey::new(true);
    let reg = device.do_registration(page(), options).unwrap();
    let (s, _) = post(
        &mut c,
        &settings,
        json!({ "passkey_settings_register": serde_json::to_string(&reg).unwrap() }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let settings = c.flow("settings").await;
    assert_eq!(
        node(&settings, "passkey_remove").unwrap()["attributes"]["disabled"],
        false
    );
    let (s, saved) = post(
        &mut c,
        &settings,
        json!({ "passkey_remove": hex::encode(&reg.raw_id) }),
    )
    .await;
    assert_eq!(
        (s, saved["state"].as_str()),
        (StatusCode::OK, Some("success")),
        "{saved}"
    );
}
