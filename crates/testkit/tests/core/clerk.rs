//! Clerk's ban and lock, stored in `metadata_admin.clerk`.

use portcullis_core::audit::{Actor, By, Origin};
use portcullis_core::clerk::Block;
use portcullis_testkit::Kit;
use serde_json::json;

#[tokio::test]
async fn a_ban_replaces_clerk_metadata_that_is_not_an_object() {
    let kit = Kit::new().await;
    let mut identity = kit.register("ada@example.com").await.identity;
    // As the Kratos admin API may have stored it: it takes any JSON there.
    identity.metadata_admin = Some(json!({ "crm": 7, "clerk": "imported" }));
    let clerk_key = By {
        actor: Actor::ClerkKey("ck_test".into()),
        origin: Origin::default(),
    };
    let banned = kit
        .core
        .set_clerk_block(identity, Block::Banned, true, kit.now(), &clerk_key)
        .await
        .unwrap();
    assert_eq!(
        banned.metadata_admin,
        Some(json!({ "crm": 7, "clerk": { "banned": true } }))
    );
    assert_eq!(banned.state, "inactive");
}
