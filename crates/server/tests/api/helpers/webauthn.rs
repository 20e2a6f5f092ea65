//! Shared by the WebAuthn scenarios (`webauthn.rs`, `passkeys.rs`): a relying party for a
//! page on `http://localhost:4455` (as in Kratos's own tests), the browser-flow JSON steps, and
//! `webauthn-authenticator-rs`'s software authenticator answering the ceremonies. It keeps no
//! discoverable credentials, so for passkeys the helpers play the browser's part: they name
//! the credential in the sign-in request and return the user handle it would have kept.

use super::{csrf, json_of, Browser, PASSWORD};
use base64::Engine;
use portcullis_core::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url,
    WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

pub const CLERK_KEY: &str = "sk_test_portcullis_webauthn";

pub const PAGE: &str = "http://localhost:4455";

pub fn keys_on(c: &mut Config) {
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

pub fn page() -> Url {
    Url::parse(PAGE).unwrap()
}

pub fn node<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == name)
}

pub fn value_of(flow: &Value, name: &str) -> String {
    node(flow, name).unwrap_or_else(|| panic!("no {name} in {flow}"))["attributes"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub async fn post(b: &mut Browser<'_>, flow: &Value, mut body: Value) -> (StatusCode, Value) {
    body["csrf_token"] = json!(csrf(flow));
    let action = flow["ui"]["action"].as_str().unwrap().to_string();
    json_of(b.post_json(&action, &body).await).await
}

/// Signs `b` in with the password (the JSON answer of a browser flow).
pub async fn password_sign_in(b: &mut Browser<'_>, email: &str) -> (StatusCode, Value) {
    let flow = b.flow("login").await;
    post(
        b,
        &flow,
        json!({ "method": "password", "identifier": email, "password": PASSWORD }),
    )
    .await
}

pub async fn whoami(b: &mut Browser<'_>) -> (StatusCode, Value) {
    json_of(b.get_json("/sessions/whoami").await).await
}

/// Registers a security key from `b`'s settings, named `name`: the key's id.
pub async fn add_key(b: &mut Browser<'_>, key: &mut SoftPasskey, name: &str) -> Vec<u8> {
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
pub async fn second_step(b: &mut Browser<'_>) -> (Value, RequestChallengeResponse) {
    let r = b.get_json("/self-service/login/browser?aal=aal2").await;
    assert_eq!(r.status(), StatusCode::OK);
    let flow: Value = r.json().await.unwrap();
    let rcr = serde_json::from_str(&value_of(&flow, "webauthn_login_trigger")).unwrap();
    (flow, rcr)
}

/// The creation options of a form's `passkey_create_data`, asking for a plain credential (the
/// software authenticator keeps no discoverable ones), and the user handle they carry.
pub fn passkey_options(flow: &Value) -> (CreationChallengeResponse, Vec<u8>) {
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
pub fn passkey_answer(flow: &Value, device: &mut SoftPasskey, id: &[u8], handle: &[u8]) -> String {
    let mut challenge: Value = serde_json::from_str(&value_of(flow, "passkey_challenge")).unwrap();
    challenge["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": b64url(id) }]);
    let rcr: RequestChallengeResponse = serde_json::from_value(challenge).unwrap();
    let mut cred: PublicKeyCredential = device.do_authentication(page(), rcr).unwrap();
    cred.response.user_handle = Some(handle.to_vec());
    serde_json::to_string(&cred).unwrap()
}
