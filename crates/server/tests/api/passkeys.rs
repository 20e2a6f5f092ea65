//! Passkeys (`selfservice.methods.passkey`) through the browser flows' JSON: sign-up without
//! a password, discoverable sign-in, re-authentication, settings, and the rules that keep an
//! account a way in. The software authenticator answers the ceremonies (`helpers/webauthn.rs`).

use crate::helpers::webauthn::{
    b64url, keys_on, node, page, passkey_answer, passkey_options, password_sign_in, post, value_of,
    whoami,
};
use crate::helpers::{
    csrf, expect_error, json_of, message_ids, unique_email, Browser, TestApp, PASSWORD,
};
use base64::Engine;
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    PublicKeyCredential, RequestChallengeResponse, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

crate::on_every_backend!(
    passkeys_sign_up_and_in_without_a_password with keys_on,
    passkeys_reauthenticate_and_keep_one_handle with keys_on,
    a_code_sign_up_account_keeps_its_last_passkey_only_with_another_way_in with keys_and_codes,
);

fn keys_and_codes(c: &mut Config) {
    keys_on(c);
    c.selfservice.methods.code.passwordless_enabled = true;
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
