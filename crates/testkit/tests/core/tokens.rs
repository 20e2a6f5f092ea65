//! The token face and second factors: a race the use cases close.

use portcullis_core::error::{Error, TokenError};
use portcullis_core::identity::Credential;
use portcullis_core::store::{Effects, IdentityStore};
use portcullis_core::tokens::ObtainRequest;
use portcullis_testkit::{CallerBuilder, Kit, PASSWORD};
use serde_json::json;

/// Tokens obtained with the password alone just before a second factor is linked (the link
/// revokes the tokens that exist; these were still being issued) stop refreshing once the
/// identity has the factor.
#[tokio::test]
async fn a_refresh_token_without_the_identitys_second_factor_stops_working() {
    let kit = Kit::new().await;
    let reg = kit.register("ada@example.com").await;
    let caller = CallerBuilder::api().build();
    let obtain = ObtainRequest {
        identifier: Some("ada@example.com".into()),
        password: Some(PASSWORD.into()),
        otp: None,
    };
    let pair = kit
        .core
        .obtain_tokens(obtain, &caller, kit.now())
        .await
        .unwrap();
    let refresh = pair.refresh.unwrap();
    // Before the factor, it rotates.
    let rotated = kit.core.refresh_tokens(&refresh, kit.now()).await.unwrap();
    let refresh = rotated.refresh.unwrap();
    // The factor arrives without the link's revocation (the race).
    let mut identity = kit
        .store
        .get_identity(reg.identity.id)
        .await
        .unwrap()
        .unwrap();
    identity.credentials.insert(
        "totp".into(),
        Credential {
            id: uuid::Uuid::new_v4(),
            kind: "totp".into(),
            identifiers: vec![identity.id.to_string()],
            config: json!({}),
            version: 0,
            created_at: kit.now(),
            updated_at: kit.now(),
        },
    );
    kit.store
        .update_identity(&mut identity, &Effects::none())
        .await
        .unwrap();
    let refused = kit.core.refresh_tokens(&refresh, kit.now()).await;
    assert!(
        matches!(refused, Err(Error::Token(TokenError::SecondFactorRequired))),
        "{:?}",
        refused.err()
    );
    // And the token it would have rotated to is gone with its family.
    let again = kit.core.refresh_tokens(&refresh, kit.now()).await;
    assert!(again.is_err());
}
