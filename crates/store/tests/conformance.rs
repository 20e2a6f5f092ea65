//! One storage conformance suite, run on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails by panicking

use portcullis_core::flow::{Flow, FlowKind, FlowType};
use portcullis_core::identity::Identity;
use portcullis_core::schema::IdentitySchema;
use portcullis_core::session::{new_token, Device, Session};
use portcullis_core::store::prelude::*;
use portcullis_core::store::{Effects, IdentityQuery, SessionQuery, StoreError};
use portcullis_core::webhooks::EventKind;
use portcullis_store::SqlStore;
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

async fn sqlite() -> SqlStore {
    let path = std::env::temp_dir().join(format!("pc-store-{}.sqlite", Uuid::new_v4()));
    let s = SqlStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    s
}

async fn postgres() -> SqlStore {
    let url = portcullis_store::testing::fresh_postgres_database().await;
    let s = SqlStore::connect(&url).await.unwrap();
    s.migrate().await.unwrap();
    s
}

// The effects the core names for each kind of write; the store appends exactly these.
fn fx_created() -> Effects {
    Effects::event(EventKind::UserCreated)
}
fn fx_updated() -> Effects {
    Effects::event(EventKind::UserUpdated)
}
fn fx_deleted() -> Effects {
    Effects::event(EventKind::UserDeleted).and_event(EventKind::SessionRemoved)
}
fn fx_started() -> Effects {
    Effects::event(EventKind::SessionCreated)
}
fn fx_ended() -> Effects {
    Effects::event(EventKind::SessionRevoked)
}
fn fx_removed() -> Effects {
    Effects::event(EventKind::SessionRemoved)
}
fn fx_registered() -> Effects {
    Effects::event(EventKind::UserCreated).and_event(EventKind::SessionCreated)
}

/// Every scenario runs on SQLite, on PostgreSQL, and on SQLite with the session cache on, as
/// the server runs it.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_backend { $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )* }
        mod sqlite_cached { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await.with_session_cache(1000)).await } )* }
    };
}

on_both!(
    identities_round_trip_and_are_found_by_identifier,
    duplicate_identifiers_and_addresses_conflict,
    updates_rederive_identifiers_atomically,
    identity_list_pages_by_keyset_and_filters,
    deleting_an_identity_removes_its_sessions,
    sessions_are_found_by_token_hash_with_their_identity,
    session_lists_filter_active_and_revocation_works,
    flows_round_trip,
    flow_errors_are_kept_apart_from_flows_and_expire,
    kv_initialises_once,
    writes_are_visible_to_later_token_lookups,
    expired_rows_are_cleaned_up,
    a_flow_completes_once,
    refresh_tokens_rotate_once_and_revoke_by_family_and_identity,
    one_current_signing_key_even_when_installs_race,
    every_write_appends_its_event_and_fans_it_out,
    deliveries_retry_requeue_replay_and_lease,
    a_stale_identity_write_is_refused_and_changes_nothing,
    a_registration_flow_creates_one_account_under_concurrent_submits,
    refresh_rotation_extends_a_session_only_up_to_its_absolute_lifetime,
    login_failures_count_every_concurrent_failure_and_reset_the_run,
    known_devices_are_recognised_by_their_sessions,
    audit_records_filter_page_and_expire,
    audit_records_commit_with_their_change_and_only_then,
    a_write_appends_only_the_events_it_is_given,
    a_stale_session_write_never_reactivates_a_revoked_session,
    courier_messages_commit_with_their_write_and_only_then,
    courier_claims_are_exclusive_under_concurrency,
    courier_attempts_back_off_then_abandon,
    courier_lists_filter_and_page_newest_first,
    courier_keeps_queued_messages_and_cleans_up_old_finished_ones,
    courier_email_created_goes_only_to_endpoints_that_name_it,
    a_profile_image_changes_with_its_identity_and_goes_with_it,
);

#[path = "conformance/courier.rs"]
mod courier;
use courier::*;

// Fixtures carry the wall time (the store itself takes every time as an argument).
#[allow(clippy::disallowed_methods)]
fn now() -> OffsetDateTime {
    // Microsecond precision, as stored.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

fn identity(email: &str) -> Identity {
    let schema = IdentitySchema::default_schema().unwrap();
    let traits = json!({ "email": email, "name": { "first": "Ada", "last": "L" } });
    let d = schema.derive(&traits);
    let mut i = Identity::new("default", traits, now());
    i.set_password_hash(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        d.password_identifiers.clone(),
        now(),
    );
    i.apply_derived(&d, now());
    i
}

/// A login flow of `ty`, started now, that lives for a minute.
fn flow(ty: FlowType, request_url: &str) -> Flow {
    Flow::new(
        FlowKind::Login,
        ty,
        request_url.into(),
        "http://x/",
        Duration::from_secs(60),
        now(),
    )
}

fn session_for(i: &Identity, lifespan: Duration) -> (Session, String) {
    let t = new_token();
    let dev = Device {
        id: Uuid::new_v4(),
        ip_address: Some("127.0.0.1".into()),
        user_agent: None,
        location: None,
    };
    (
        Session::new(
            i.id,
            portcullis_core::methods::Method::Password,
            t.hash,
            lifespan,
            dev,
            now(),
        ),
        t.token,
    )
}

async fn identities_round_trip_and_are_found_by_identifier(s: impl Store) {
    let i = identity("ada@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    assert_eq!(s.get_identity(i.id).await.unwrap(), Some(i.clone()));
    let found = s
        .find_identity_by_identifier("password", "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, i.id);
    assert!(s
        .find_identity_by_identifier("password", "nobody@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(s.get_identity(Uuid::new_v4()).await.unwrap().is_none());
}

async fn duplicate_identifiers_and_addresses_conflict(s: impl Store) {
    s.insert_identity(&identity("dup@example.com"), &fx_created())
        .await
        .unwrap();
    let err = s
        .insert_identity(&identity("dup@example.com"), &fx_created())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The failed insert left nothing behind.
    let all = s
        .list_identities(&IdentityQuery {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let mut ext = identity("ext1@example.com");
    ext.external_id = Some("x-1".into());
    s.insert_identity(&ext, &fx_created()).await.unwrap();
    let mut ext2 = identity("ext2@example.com");
    ext2.external_id = Some("x-1".into());
    assert!(matches!(
        s.insert_identity(&ext2, &fx_created()).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn updates_rederive_identifiers_atomically(s: impl Store) {
    let schema = IdentitySchema::default_schema().unwrap();
    let mut a = identity("a@example.com");
    let b = identity("b@example.com");
    s.insert_identity(&a, &fx_created()).await.unwrap();
    s.insert_identity(&b, &fx_created()).await.unwrap();
    // Changing a's email to b's conflicts and changes nothing.
    a.traits = json!({ "email": "b@example.com" });
    a.apply_derived(&schema.derive(&a.traits), now());
    assert!(matches!(
        s.update_identity(&mut a, &fx_updated()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.find_identity_by_identifier("password", "a@example.com")
            .await
            .unwrap()
            .map(|i| i.id),
        Some(a.id)
    );
    a.traits = json!({ "email": "c@example.com" });
    a.apply_derived(&schema.derive(&a.traits), now());
    s.update_identity(&mut a, &fx_updated()).await.unwrap();
    assert!(s
        .find_identity_by_identifier("password", "a@example.com")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.find_identity_by_identifier("password", "c@example.com")
            .await
            .unwrap()
            .map(|i| i.id),
        Some(a.id)
    );
    let mut ghost = identity("ghost@example.com");
    ghost.id = Uuid::new_v4();
    assert!(matches!(
        s.update_identity(&mut ghost, &fx_updated()).await,
        Err(StoreError::NotFound)
    ));
}

async fn identity_list_pages_by_keyset_and_filters(s: impl Store) {
    let mut ids = vec![];
    for n in 0..5 {
        let i = identity(&format!("p{n}@example.com"));
        ids.push(i.id);
        s.insert_identity(&i, &fx_created()).await.unwrap();
    }
    ids.sort();
    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = s
            .list_identities(&IdentityQuery {
                page_size: 2,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.id);
        seen.extend(page.iter().map(|i| i.id));
    }
    assert_eq!(seen, ids);
    let only = s
        .list_identities(&IdentityQuery {
            page_size: 10,
            credentials_identifier: Some("p3@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].traits["email"], "p3@example.com");
    let by_ids = s
        .list_identities(&IdentityQuery {
            page_size: 10,
            ids: vec![ids[0], ids[4]],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_ids.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ids[0], ids[4]]
    );
}

async fn deleting_an_identity_removes_its_sessions(s: impl Store) {
    let i = identity("del@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (sess, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&sess, &fx_started()).await.unwrap();
    assert!(s.delete_identity(i.id, now(), &fx_deleted()).await.unwrap());
    assert!(!s.delete_identity(i.id, now(), &fx_deleted()).await.unwrap());
    assert!(s
        .session_by_token_hash(&sess.token_hash)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .find_identity_by_identifier("password", "del@example.com")
        .await
        .unwrap()
        .is_none());
    // The identifier is free again.
    s.insert_identity(&identity("del@example.com"), &fx_created())
        .await
        .unwrap();
}

async fn sessions_are_found_by_token_hash_with_their_identity(s: impl Store) {
    let i = identity("sess@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (sess, token) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&sess, &fx_started()).await.unwrap();
    let (got, owner) = s
        .session_by_token_hash(&portcullis_core::session::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sess);
    assert_eq!(owner.id, i.id);
    assert!(s
        .session_by_token_hash(&portcullis_core::session::hash_token("ory_st_wrong"))
        .await
        .unwrap()
        .is_none());
    let mut changed = got.clone();
    changed.active = false;
    s.update_session(&changed, now(), &fx_ended())
        .await
        .unwrap();
    assert!(!s.get_session(sess.id).await.unwrap().unwrap().0.active);
}

async fn session_lists_filter_active_and_revocation_works(s: impl Store) {
    let i = identity("list@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (a, _) = session_for(&i, Duration::from_secs(60));
    let (b, _) = session_for(&i, Duration::from_secs(60));
    let (mut expired, _) = session_for(&i, Duration::from_secs(60));
    expired.expires_at = now() - Duration::from_secs(1);
    for x in [&a, &b, &expired] {
        s.insert_session(x, &fx_started()).await.unwrap();
    }
    let q = |active| SessionQuery {
        identity_id: Some(i.id),
        active,
        page_size: 10,
        ..Default::default()
    };
    assert_eq!(
        s.list_sessions(&q(Some(true)), now()).await.unwrap().len(),
        2
    );
    assert_eq!(
        s.list_sessions(&q(Some(false)), now()).await.unwrap().len(),
        1
    );
    assert_eq!(s.list_sessions(&q(None), now()).await.unwrap().len(), 3);
    assert_eq!(
        s.revoke_identity_sessions(i.id, Some(a.id), now(), &fx_ended())
            .await
            .unwrap(),
        2
    );
    let live = s.list_sessions(&q(Some(true)), now()).await.unwrap();
    assert_eq!(
        live.iter().map(|(x, _)| x.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    assert_eq!(
        s.delete_identity_sessions(i.id, now(), &fx_removed())
            .await
            .unwrap(),
        3
    );
}

async fn flows_round_trip(s: impl Store) {
    let mut f = flow(FlowType::Api, "http://x/self-service/login/api");
    s.insert_flow(&f).await.unwrap();
    assert_eq!(s.get_flow(f.id).await.unwrap(), Some(f.clone()));
    f.state = "passed_challenge".into();
    s.update_flow(&f).await.unwrap();
    assert_eq!(
        s.get_flow(f.id).await.unwrap().unwrap().state,
        "passed_challenge"
    );
    assert!(s.get_flow(Uuid::new_v4()).await.unwrap().is_none());
}

async fn flow_errors_are_kept_apart_from_flows_and_expire(s: impl Store) {
    let id = Uuid::new_v4();
    let body = json!({ "id": id, "error": { "code": 403, "id": "security_csrf_violation" } });
    s.insert_flow_error(id, &body, now() + time::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(s.get_flow_error(id).await.unwrap(), Some(body));
    assert!(
        s.get_flow(id).await.unwrap().is_none(),
        "an error is not a flow"
    );
    let f = flow(FlowType::Browser, "http://x/self-service/login/browser");
    s.insert_flow(&f).await.unwrap();
    assert!(
        s.get_flow_error(f.id).await.unwrap().is_none(),
        "a flow is not an error"
    );
    s.delete_expired(now() + time::Duration::minutes(10))
        .await
        .unwrap();
    assert!(s.get_flow_error(id).await.unwrap().is_none());
}

async fn kv_initialises_once(s: impl Store) {
    assert_eq!(s.get_or_init_kv("k", "first").await.unwrap(), "first");
    assert_eq!(s.get_or_init_kv("k", "second").await.unwrap(), "first");
}

async fn writes_are_visible_to_later_token_lookups(s: impl Store) {
    let schema = IdentitySchema::default_schema().unwrap();
    let mut i = identity("visible@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (sess, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&sess, &fx_started()).await.unwrap();
    let lookup = || s.session_by_token_hash(&sess.token_hash);
    assert!(lookup().await.unwrap().unwrap().0.active);
    i.traits = json!({ "email": "visible@example.com", "name": { "first": "Changed" } });
    i.apply_derived(&schema.derive(&i.traits), now());
    s.update_identity(&mut i, &fx_updated()).await.unwrap();
    assert_eq!(
        lookup().await.unwrap().unwrap().1.traits["name"]["first"],
        "Changed"
    );
    s.revoke_identity_sessions(i.id, None, now(), &fx_ended())
        .await
        .unwrap();
    assert!(!lookup().await.unwrap().unwrap().0.active);
    // A session update is seen at once (the cache is invalidated); an ended session cannot
    // be brought back by one (review S1), and the lookup says so too.
    let mut again = sess.clone();
    again.active = true;
    s.update_session(&again, now(), &fx_ended()).await.unwrap();
    assert!(!lookup().await.unwrap().unwrap().0.active);
    let (other, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&other, &fx_started()).await.unwrap();
    let other_lookup = || s.session_by_token_hash(&other.token_hash);
    assert!(other_lookup().await.unwrap().is_some());
    let mut extended = other.clone();
    extended.expires_at = other.expires_at + Duration::from_secs(3600);
    s.update_session(&extended, now(), &Effects::none())
        .await
        .unwrap();
    assert_eq!(
        other_lookup().await.unwrap().unwrap().0.expires_at,
        extended.expires_at
    );
    s.delete_identity(i.id, now(), &fx_deleted()).await.unwrap();
    assert!(lookup().await.unwrap().is_none());
}

async fn expired_rows_are_cleaned_up(s: impl Store) {
    let i = identity("cleanup@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (live, _) = session_for(&i, Duration::from_secs(3600));
    let (mut old, _) = session_for(&i, Duration::from_secs(60));
    old.expires_at = now() - Duration::from_secs(7200);
    s.insert_session(&live, &fx_started()).await.unwrap();
    s.insert_session(&old, &fx_started()).await.unwrap();
    let mut stale = flow(FlowType::Api, "u");
    stale.expires_at = now() - Duration::from_secs(7200);
    let fresh = flow(FlowType::Api, "u");
    s.insert_flow(&stale).await.unwrap();
    s.insert_flow(&fresh).await.unwrap();
    assert_eq!(
        s.delete_expired(now() - Duration::from_secs(3600))
            .await
            .unwrap(),
        2
    );
    assert!(s.get_flow(stale.id).await.unwrap().is_none());
    assert!(s.get_flow(fresh.id).await.unwrap().is_some());
    assert!(s.get_session(old.id).await.unwrap().is_none());
    assert!(s.get_session(live.id).await.unwrap().is_some());
}

async fn a_flow_completes_once(s: impl Store) {
    let mut f = flow(FlowType::Api, "u");
    s.insert_flow(&f).await.unwrap();
    f.state = "passed_challenge".into();
    assert!(s.complete_flow(&f).await.unwrap());
    assert!(!s.complete_flow(&f).await.unwrap());
    assert_eq!(
        s.get_flow(f.id).await.unwrap().unwrap().state,
        "passed_challenge"
    );
}

fn refresh_row(i: &Identity, family: Uuid, session: Uuid) -> portcullis_core::store::RefreshToken {
    portcullis_core::store::RefreshToken {
        token_hash: Uuid::new_v4().to_string(),
        jti: Uuid::new_v4().simple().to_string(),
        family_id: family,
        identity_id: i.id,
        session_id: session,
        state: "active".into(),
        expires_at: now() + Duration::from_secs(3600),
        created_at: now(),
        rotated_at: None,
    }
}

async fn refresh_tokens_rotate_once_and_revoke_by_family_and_identity(s: impl Store) {
    let mut i = identity("refresh@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let family = Uuid::new_v4();
    let (live, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&live, &fx_started()).await.unwrap();
    let first = refresh_row(&i, family, live.id);
    s.insert_refresh_token(&first).await.unwrap();
    assert_eq!(
        s.get_refresh_token(&first.token_hash).await.unwrap(),
        Some(first.clone())
    );
    let (got, joined) = s
        .refresh_token_with_session(&first.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, first);
    let (js, ji) = joined.expect("joined with its session");
    assert_eq!((js.id, ji.id), (live.id, i.id));
    let orphan = refresh_row(&i, Uuid::new_v4(), Uuid::new_v4());
    s.insert_refresh_token(&orphan).await.unwrap();
    assert_eq!(
        s.refresh_token_with_session(&orphan.token_hash)
            .await
            .unwrap(),
        Some((orphan.clone(), None))
    );
    assert!(s
        .refresh_token_with_session("nope")
        .await
        .unwrap()
        .is_none());

    // The new token joins the parent's family whatever family it names, and extends the session.
    let mut second = refresh_row(&i, Uuid::nil(), live.id);
    second.expires_at = now() + Duration::from_secs(7200);
    let third = refresh_row(&i, Uuid::nil(), live.id);
    assert!(s
        .rotate_refresh_token(&first.token_hash, &second, None)
        .await
        .unwrap());
    assert!(
        !s.rotate_refresh_token(&first.token_hash, &third, None)
            .await
            .unwrap(),
        "a token rotates once"
    );
    assert!(
        s.get_refresh_token(&third.token_hash)
            .await
            .unwrap()
            .is_none(),
        "the losing rotation left nothing"
    );
    let rotated = s
        .get_refresh_token(&first.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rotated.state.as_str(), rotated.rotated_at),
        ("rotated", Some(second.created_at))
    );
    assert_eq!(
        s.get_refresh_token(&second.token_hash)
            .await
            .unwrap()
            .unwrap()
            .family_id,
        family
    );
    assert_eq!(
        s.get_session(live.id).await.unwrap().unwrap().0.expires_at,
        second.expires_at
    );
    // A token of another session, or of an orphaned session, does not rotate.
    let stray = refresh_row(&i, Uuid::nil(), Uuid::new_v4());
    assert!(!s
        .rotate_refresh_token(&second.token_hash, &stray, None)
        .await
        .unwrap());
    assert!(!s
        .rotate_refresh_token(
            &orphan.token_hash,
            &refresh_row(&i, Uuid::nil(), orphan.session_id),
            None
        )
        .await
        .unwrap());
    // Nor does one whose identity is inactive or whose session was revoked.
    i.state = "inactive".into();
    s.update_identity(&mut i, &fx_updated()).await.unwrap();
    assert!(!s
        .rotate_refresh_token(
            &second.token_hash,
            &refresh_row(&i, Uuid::nil(), live.id),
            None
        )
        .await
        .unwrap());
    i.state = "active".into();
    s.update_identity(&mut i, &fx_updated()).await.unwrap();
    let mut revoked = live.clone();
    revoked.active = false;
    s.update_session(&revoked, now(), &fx_ended())
        .await
        .unwrap();
    assert!(!s
        .rotate_refresh_token(
            &second.token_hash,
            &refresh_row(&i, Uuid::nil(), live.id),
            None
        )
        .await
        .unwrap());

    let other_family = refresh_row(&i, Uuid::new_v4(), Uuid::new_v4());
    s.insert_refresh_token(&other_family).await.unwrap();
    assert_eq!(
        s.revoke_refresh_family(family, &Effects::none())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.get_refresh_token(&second.token_hash)
            .await
            .unwrap()
            .unwrap()
            .state,
        "revoked"
    );
    assert_eq!(
        s.get_refresh_token(&other_family.token_hash)
            .await
            .unwrap()
            .unwrap()
            .state,
        "active"
    );
    assert!(s
        .revoke_refresh_token(&other_family.token_hash)
        .await
        .unwrap());
    assert!(!s
        .revoke_refresh_token(&other_family.token_hash)
        .await
        .unwrap());
    let last = refresh_row(&i, Uuid::new_v4(), Uuid::new_v4());
    s.insert_refresh_token(&last).await.unwrap();
    assert_eq!(
        s.revoke_identity_refresh_tokens(i.id).await.unwrap(),
        2,
        "the orphan and the last one"
    );
    s.delete_identity(i.id, now(), &fx_deleted()).await.unwrap();
    assert!(
        s.get_refresh_token(&last.token_hash)
            .await
            .unwrap()
            .is_none(),
        "deleted with the identity"
    );
}

async fn one_current_signing_key_even_when_installs_race(s: impl Store) {
    let secret = "0123456789abcdef0123456789abcdef";
    let key = |state| {
        portcullis_core::keys::generate(
            portcullis_core::config::TokenAlgorithm::Es256,
            state,
            secret,
            now(),
        )
        .unwrap()
    };
    let (a, a_next) = (key("current"), key("next"));
    assert!(s
        .transition_signing_keys(
            &[],
            None,
            &[a.clone(), a_next.clone()],
            now(),
            &Effects::none()
        )
        .await
        .unwrap());
    let (b, b_next) = (key("current"), key("next"));
    assert!(
        !s.transition_signing_keys(&[], None, &[b.clone(), b_next], now(), &Effects::none())
            .await
            .unwrap(),
        "a second first key set loses"
    );
    assert!(
        s.get_flow(Uuid::new_v4()).await.is_ok(),
        "the store is usable after a lost race"
    );
    // Rotation: retire the current key, promote the published next one, publish a new next.
    let later = now() + Duration::from_secs(60);
    let drop_after = now() + Duration::from_secs(600);
    let c_next = key("next");
    let retire = [(a.kid.clone(), "current", drop_after)];
    assert!(s
        .transition_signing_keys(
            &retire,
            Some(&a_next.kid),
            std::slice::from_ref(&c_next),
            later,
            &Effects::none()
        )
        .await
        .unwrap());
    assert!(
        !s.transition_signing_keys(
            &retire,
            Some(&c_next.kid),
            &[key("next")],
            later,
            &Effects::none()
        )
        .await
        .unwrap(),
        "a stale rotation loses"
    );
    let keys = s.signing_keys().await.unwrap();
    let state = |kid: &str| keys.iter().find(|k| k.kid == kid).map(|k| k.state.clone());
    assert_eq!(state(&a.kid).as_deref(), Some("retired"));
    assert_eq!(state(&a_next.kid).as_deref(), Some("current"));
    assert_eq!(state(&c_next.kid).as_deref(), Some("next"));
    assert_eq!(keys.len(), 3, "nothing from the lost transitions remains");
    let promoted = keys.iter().find(|k| k.kid == a_next.kid).unwrap();
    assert_eq!(promoted.activated_at, Some(later));
    assert_eq!(promoted.public_jwk, a_next.public_jwk);
    assert_eq!(
        keys.iter().find(|k| k.kid == a.kid).unwrap().drop_after,
        Some(drop_after)
    );
    assert_eq!(
        s.delete_expired(drop_after + Duration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.signing_keys().await.unwrap().len(), 2);
}

fn endpoint(types: &[&str], enabled: bool) -> portcullis_core::webhooks::WebhookEndpoint {
    portcullis_core::webhooks::WebhookEndpoint {
        id: format!("ep_{}", Uuid::new_v4().simple()),
        url: "http://127.0.0.1:9/hook".into(),
        enabled,
        event_types: types.iter().map(|t| t.to_string()).collect(),
        format: "native".into(),
        secrets: vec![portcullis_core::webhooks::WebhookSecret {
            secret: portcullis_core::webhooks::new_secret(),
            expires_at: None,
        }],
        description: String::new(),
        disabled_reason: None,
        failing_since: None,
        created_at: now(),
        updated_at: now(),
    }
}

async fn every_write_appends_its_event_and_fans_it_out(s: impl Store) {
    let all = endpoint(&[], true);
    let users = endpoint(&["user.created", "user.deleted"], true);
    let off = endpoint(&[], false);
    for e in [&all, &users, &off] {
        s.insert_webhook_endpoint(e, &Effects::none())
            .await
            .unwrap();
    }
    let schema = IdentitySchema::default_schema().unwrap();
    let mut i = identity("events@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    // A write that fails appends nothing.
    assert!(s
        .insert_identity(&identity("events@example.com"), &fx_created())
        .await
        .is_err());
    i.traits = json!({ "email": "events2@example.com" });
    i.apply_derived(&schema.derive(&i.traits), now());
    s.update_identity(&mut i, &fx_updated()).await.unwrap();
    let (sess, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&sess, &fx_started()).await.unwrap();
    let mut ended = sess.clone();
    ended.active = false;
    s.update_session(&ended, now(), &fx_ended()).await.unwrap();
    s.update_session(&ended, now(), &fx_ended()).await.unwrap(); // already inactive: no second event
    let (other, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&other, &fx_started()).await.unwrap();
    s.revoke_identity_sessions(i.id, None, now(), &fx_ended())
        .await
        .unwrap();
    s.delete_identity(i.id, now(), &fx_deleted()).await.unwrap();
    let events = s.events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "user.created",
            "user.updated",
            "session.created",
            "session.revoked",
            "session.created",
            "session.revoked",
            "user.deleted"
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(events
        .iter()
        .all(|e| e.identity_id.as_deref() == Some(i.id.to_string().as_str())));
    let created = &events[0].payload["identity"];
    assert_eq!(created["traits"]["email"], "events@example.com");
    assert!(
        created["credentials"]["password"].get("config").is_none(),
        "no password hash in events"
    );
    assert_eq!(events[6].payload["identity"]["id"], i.id.to_string());
    // Fan-out: every event to `all`, only its two types to `users`, nothing to the disabled one.
    let mut to_all = 0;
    while let Some(d) = s.next_delivery(&all.id).await.unwrap() {
        assert_eq!(d.event.id, events[to_all].id, "in event order");
        let a = portcullis_core::webhooks::Attempt {
            id: Uuid::new_v4().to_string(),
            delivery_id: d.id.clone(),
            endpoint_id: all.id.clone(),
            attempted_at: now(),
            status_code: Some(200),
            latency_ms: 1,
            response: "ok".into(),
            error: None,
        };
        s.record_attempt(
            &a,
            &portcullis_core::webhooks::Outcome::Delivered,
            d.generation,
        )
        .await
        .unwrap();
        to_all += 1;
    }
    assert_eq!(to_all, 7);
    let first_user = s.next_delivery(&users.id).await.unwrap().unwrap();
    assert_eq!(first_user.event.kind, "user.created");
    assert!(s.next_delivery(&off.id).await.unwrap().is_none());
}

async fn deliveries_retry_requeue_replay_and_lease(s: impl Store) {
    use portcullis_core::webhooks::{Attempt, Outcome};
    let ep = endpoint(&[], true);
    s.insert_webhook_endpoint(&ep, &Effects::none())
        .await
        .unwrap();
    assert_eq!(
        s.get_webhook_endpoint(&ep.id).await.unwrap(),
        Some(ep.clone())
    );
    let i = identity("retry@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let d = s.next_delivery(&ep.id).await.unwrap().unwrap();
    let attempt = |status: i64| Attempt {
        id: Uuid::new_v4().to_string(),
        delivery_id: d.id.clone(),
        endpoint_id: ep.id.clone(),
        attempted_at: now(),
        status_code: Some(status),
        latency_ms: 3,
        response: "nope".into(),
        error: None,
    };
    let later = now() + Duration::from_secs(5);
    s.record_attempt(&attempt(500), &Outcome::Retry { at: later }, d.generation)
        .await
        .unwrap();
    let again = s.next_delivery(&ep.id).await.unwrap().unwrap();
    assert_eq!(
        (again.id.clone(), again.attempts, again.next_attempt_at),
        (d.id.clone(), 1, later)
    );
    assert!(s
        .get_webhook_endpoint(&ep.id)
        .await
        .unwrap()
        .unwrap()
        .failing_since
        .is_some());
    s.record_attempt(&attempt(500), &Outcome::Failed, 0)
        .await
        .unwrap();
    assert!(
        s.next_delivery(&ep.id).await.unwrap().is_none(),
        "a failed message no longer blocks the queue"
    );
    assert_eq!(s.list_attempts(&ep.id, 10).await.unwrap().len(), 2);
    // A failed message can be re-sent; all since a time can be replayed.
    assert!(s.requeue_event(&ep.id, &d.event.id, now()).await.unwrap());
    assert_eq!(s.next_delivery(&ep.id).await.unwrap().unwrap().attempts, 0);
    assert!(!s.requeue_event(&ep.id, "msg_unknown", now()).await.unwrap());
    // An attempt that was in flight before the resend does not swallow it.
    s.record_attempt(&attempt(200), &Outcome::Delivered, 0)
        .await
        .unwrap();
    let pending = s
        .next_delivery(&ep.id)
        .await
        .unwrap()
        .expect("the resend is still pending");
    assert_eq!(pending.generation, 1);
    s.record_attempt(&attempt(200), &Outcome::Delivered, 1)
        .await
        .unwrap();
    assert!(s
        .get_webhook_endpoint(&ep.id)
        .await
        .unwrap()
        .unwrap()
        .failing_since
        .is_none());
    assert_eq!(
        s.replay_since(&ep.id, now() - Duration::from_secs(60), now())
            .await
            .unwrap(),
        1
    );
    assert!(s.next_delivery(&ep.id).await.unwrap().is_some());
    // One lease holder at a time; the lease can be renewed by its owner and taken once expired.
    let until = now() + Duration::from_secs(30);
    assert!(s
        .lease_webhook_endpoint(&ep.id, "a", until, now())
        .await
        .unwrap());
    assert!(!s
        .lease_webhook_endpoint(&ep.id, "b", until, now())
        .await
        .unwrap());
    assert!(s
        .lease_webhook_endpoint(&ep.id, "a", until, now())
        .await
        .unwrap());
    assert!(s
        .lease_webhook_endpoint(
            &ep.id,
            "b",
            until + Duration::from_secs(30),
            until + Duration::from_secs(1)
        )
        .await
        .unwrap());
    s.disable_webhook_endpoint(&ep.id, "410 Gone", now())
        .await
        .unwrap();
    let disabled = s.get_webhook_endpoint(&ep.id).await.unwrap().unwrap();
    assert_eq!(
        (disabled.enabled, disabled.disabled_reason.as_deref()),
        (false, Some("410 Gone"))
    );
    assert!(
        !s.lease_webhook_endpoint(&ep.id, "b", until, now() + Duration::from_secs(3600))
            .await
            .unwrap(),
        "disabled endpoints get no deliveries"
    );
    assert!(s
        .delete_webhook_endpoint(&ep.id, &Effects::none())
        .await
        .unwrap());
    assert!(s.list_webhook_endpoints().await.unwrap().is_empty());
}

async fn a_stale_identity_write_is_refused_and_changes_nothing(s: impl Store) {
    let i = identity("stale@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    // Two writers read the same version: a self-service change and an admin deactivation.
    let mut settings = s.get_identity(i.id).await.unwrap().unwrap();
    let mut admin = settings.clone();
    admin.state = "inactive".into();
    s.update_identity(&mut admin, &fx_updated()).await.unwrap();
    assert_eq!(
        admin.version,
        i.version + 1,
        "the writer's copy follows the stored version"
    );
    settings.metadata_public = Some(json!({ "theme": "dark" }));
    assert!(matches!(
        s.update_identity(&mut settings, &fx_updated()).await,
        Err(StoreError::Stale)
    ));
    assert_eq!(
        settings.version, i.version,
        "a refused write leaves the copy as it was"
    );
    let stored = s.get_identity(i.id).await.unwrap().unwrap();
    assert_eq!(
        stored, admin,
        "the later, stale write did not undo the deactivation"
    );
    // Reloaded, the same change goes through, and a writer may write its copy again.
    let mut reloaded = stored.clone();
    reloaded.metadata_public = Some(json!({ "theme": "dark" }));
    s.update_identity(&mut reloaded, &fx_updated())
        .await
        .unwrap();
    s.update_identity(&mut reloaded, &fx_updated())
        .await
        .unwrap();
    assert_eq!(s.get_identity(i.id).await.unwrap().unwrap(), reloaded);
    assert_eq!(reloaded.version, i.version + 3);
}

async fn a_registration_flow_creates_one_account_under_concurrent_submits(s: impl Store) {
    let f = Flow::new(
        FlowKind::Registration,
        FlowType::Api,
        "http://x/self-service/registration/api".into(),
        "http://x/",
        Duration::from_secs(600),
        now(),
    );
    s.insert_flow(&f).await.unwrap();
    let (a, b) = (
        identity("first@example.com"),
        identity("second@example.com"),
    );
    let (sa, _) = session_for(&a, Duration::from_secs(60));
    let (sb, _) = session_for(&b, Duration::from_secs(60));
    let registered = fx_registered();
    let (ra, rb) = tokio::join!(
        s.complete_registration(&f, &a, Some(&sa), &registered),
        s.complete_registration(&f, &b, Some(&sb), &registered)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra != rb, "exactly one submit wins: {ra} {rb}");
    let (won, lost, lost_session) = if ra { (&a, &b, &sb) } else { (&b, &a, &sa) };
    assert!(s.get_identity(won.id).await.unwrap().is_some());
    assert!(
        s.get_identity(lost.id).await.unwrap().is_none(),
        "the loser inserted nothing"
    );
    assert!(s.get_session(lost_session.id).await.unwrap().is_none());
    let all = s
        .list_identities(&IdentityQuery {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    // Once completed, the flow registers nobody else.
    assert!(!s
        .complete_registration(
            &f,
            &identity("third@example.com"),
            Some(&sa),
            &fx_registered()
        )
        .await
        .unwrap());
}

async fn refresh_rotation_extends_a_session_only_up_to_its_absolute_lifetime(s: impl Store) {
    let i = identity("cap@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (live, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&live, &fx_started()).await.unwrap();
    let first = refresh_row(&i, Uuid::new_v4(), live.id);
    s.insert_refresh_token(&first).await.unwrap();
    // Within the cap the session follows the new token.
    let mut second = refresh_row(&i, Uuid::nil(), live.id);
    second.expires_at = live.issued_at + Duration::from_secs(1800);
    let cap = Some(Duration::from_secs(3600));
    assert!(s
        .rotate_refresh_token(&first.token_hash, &second, cap)
        .await
        .unwrap());
    let expires = |s: (Session, Identity)| s.0.expires_at;
    assert_eq!(
        expires(s.get_session(live.id).await.unwrap().unwrap()),
        second.expires_at
    );
    // Past it, the session ends at the cap, however long the new token lives.
    let mut third = refresh_row(&i, Uuid::nil(), live.id);
    third.expires_at = live.issued_at + Duration::from_secs(7200);
    assert!(s
        .rotate_refresh_token(&second.token_hash, &third, cap)
        .await
        .unwrap());
    assert_eq!(
        expires(s.get_session(live.id).await.unwrap().unwrap()),
        live.issued_at + Duration::from_secs(3600)
    );
    // Without a cap it follows the token, as before.
    let mut fourth = refresh_row(&i, Uuid::nil(), live.id);
    fourth.expires_at = live.issued_at + Duration::from_secs(9000);
    assert!(s
        .rotate_refresh_token(&third.token_hash, &fourth, None)
        .await
        .unwrap());
    assert_eq!(
        expires(s.get_session(live.id).await.unwrap().unwrap()),
        fourth.expires_at
    );
}

async fn login_failures_count_every_concurrent_failure_and_reset_the_run(s: impl Store) {
    use portcullis_core::ratelimit::WINDOW;
    let t = now();
    let keys = vec![
        "account:ada@example.com".to_string(),
        "pair:10.0.0.1|ada@example.com".to_string(),
    ];
    // Twenty concurrent failures are all counted, on both keys.
    let writes = (0..20).map(|_| s.record_login_failure(&keys, t));
    for r in futures_join(writes).await {
        r.unwrap();
    }
    let got = s.login_failures(&keys).await.unwrap();
    assert_eq!(got.len(), 2);
    for (_, f) in &got {
        assert_eq!((f.count, f.consecutive), (20, 20));
        assert_eq!((f.window_start, f.last_failure), (t, t));
    }
    // A success ends the run; the hourly count stays.
    s.reset_login_failures(&keys[1..]).await.unwrap();
    let got = s.login_failures(&keys).await.unwrap();
    let pair = &got.iter().find(|(k, _)| k == &keys[1]).unwrap().1;
    let account = &got.iter().find(|(k, _)| k == &keys[0]).unwrap().1;
    assert_eq!((pair.count, pair.consecutive), (20, 0));
    assert_eq!(account.consecutive, 20);
    // After the window a failure opens a new one.
    let later = t + WINDOW + Duration::from_secs(1);
    s.record_login_failure(&keys[..1], later).await.unwrap();
    let got = s.login_failures(&keys[..1]).await.unwrap();
    assert_eq!(
        (got[0].1.count, got[0].1.consecutive, got[0].1.window_start),
        (1, 21, later)
    );
    assert!(s
        .login_failures(&["account:nobody".to_string()])
        .await
        .unwrap()
        .is_empty());
    // Idle counters go with the day's cleanup.
    s.delete_expired(later + Duration::from_secs(1))
        .await
        .unwrap();
    assert!(s.login_failures(&keys).await.unwrap().is_empty());
}

/// Runs the futures concurrently on this task.
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (fut, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = fut {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *slot = Some(v);
                    *fut = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

async fn known_devices_are_recognised_by_their_sessions(s: impl Store) {
    let i = identity("device@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (mut sess, _) = session_for(&i, Duration::from_secs(600));
    sess.devices = vec![Device {
        id: Uuid::new_v4(),
        ip_address: Some("192.0.2.10".into()),
        user_agent: None,
        location: None,
    }];
    s.insert_session(&sess, &fx_started()).await.unwrap();
    let since = now() - Duration::from_secs(3600);
    assert!(s
        .has_session_from_ip(i.id, "192.0.2.10", since)
        .await
        .unwrap());
    assert!(!s
        .has_session_from_ip(i.id, "192.0.2.11", since)
        .await
        .unwrap());
    assert!(!s
        .has_session_from_ip(Uuid::new_v4(), "192.0.2.10", since)
        .await
        .unwrap());
    let future = now() + Duration::from_secs(3600);
    assert!(!s
        .has_session_from_ip(i.id, "192.0.2.10", future)
        .await
        .unwrap());
}

async fn audit_records_filter_page_and_expire(s: impl Store) {
    use portcullis_core::audit::{Actor, AuditKind, AuditQuery, AuditRecord, Origin};
    let t = now();
    let who = Uuid::new_v4();
    let origin = Origin {
        ip: Some("198.51.100.4".into()),
        user_agent: Some("test agent".into()),
    };
    let mut written = Vec::new();
    for n in 0..5u64 {
        let kind = if n % 2 == 0 {
            AuditKind::LoginFailed
        } else {
            AuditKind::LoginSucceeded
        };
        let mut r = AuditRecord::new(kind, Actor::Anonymous, &origin, t + Duration::from_secs(n))
            .about(who)
            .details(json!({ "n": n }));
        if n % 2 == 0 {
            r = r.failed("invalid_credentials");
        }
        s.insert_audit(&r).await.unwrap();
        written.push(r);
    }
    let other = AuditRecord::new(
        AuditKind::KeysRotated,
        Actor::Admin {
            key_id: Some("ak_1".into()),
        },
        &Origin::default(),
        t,
    );
    s.insert_audit(&other).await.unwrap();

    let all = s
        .list_audit(&AuditQuery {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    let mine = s
        .list_audit(&AuditQuery {
            identity_id: Some(who),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 5);
    // Newest first, and the record reads back as written.
    assert_eq!(mine[0], written[4]);
    assert_eq!(mine[4], written[0]);
    let failed = s
        .list_audit(&AuditQuery {
            kind: Some(AuditKind::LoginFailed),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    assert!(failed
        .iter()
        .all(|r| r.reason.as_deref() == Some("invalid_credentials")));
    let window = s
        .list_audit(&AuditQuery {
            identity_id: Some(who),
            since: Some(t + Duration::from_secs(1)),
            until: Some(t + Duration::from_secs(3)),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
    // Keyset paging by id.
    let first = s
        .list_audit(&AuditQuery {
            identity_id: Some(who),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let next = s
        .list_audit(&AuditQuery {
            identity_id: Some(who),
            page_size: 2,
            before: first.last().map(|r| r.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|r| !first.contains(r)));
    let admin = s
        .list_audit(&AuditQuery {
            kind: Some(AuditKind::KeysRotated),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        admin[0].actor,
        Actor::Admin {
            key_id: Some("ak_1".into())
        }
    );
    assert_eq!(
        s.delete_audit_before(t + Duration::from_secs(2))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.list_audit(&AuditQuery {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        3
    );
}

/// A change's audit records are written in its transaction: a write that lands records them, a
/// write that is refused (stale, conflicting, already completed) records nothing.
async fn audit_records_commit_with_their_change_and_only_then(s: impl Store) {
    use portcullis_core::audit::{Actor, AuditKind, AuditQuery, AuditRecord, Origin};
    let record = |kind, who: Uuid| {
        AuditRecord::new(
            kind,
            Actor::Admin { key_id: None },
            &Origin::default(),
            now(),
        )
        .about(who)
    };
    let mut i = identity("audited@example.com");
    s.insert_identity(
        &i,
        &fx_created().audited(record(AuditKind::IdentityCreated, i.id)),
    )
    .await
    .unwrap();
    let mut stale = i.clone();
    i.metadata_public = Some(json!({ "plan": "pro" }));
    let updated = fx_updated().audited(record(AuditKind::IdentityUpdated, i.id));
    s.update_identity(&mut i, &updated).await.unwrap();
    // The second writer read the old version: refused, and its record with it.
    assert!(matches!(
        s.update_identity(
            &mut stale,
            &fx_updated().audited(record(AuditKind::IdentityStateChanged, i.id))
        )
        .await,
        Err(StoreError::Stale)
    ));
    // A duplicate identifier: the insert fails, no record.
    let dup = identity("audited@example.com");
    assert!(s
        .insert_identity(
            &dup,
            &fx_created().audited(record(AuditKind::IdentityCreated, dup.id))
        )
        .await
        .is_err());
    // Revoking sessions when there are none ends nothing and records nothing.
    assert_eq!(
        s.revoke_identity_sessions(
            i.id,
            None,
            now(),
            &fx_ended().audited(record(AuditKind::SessionRevoked, i.id))
        )
        .await
        .unwrap(),
        0
    );
    let kinds = |rows: Vec<AuditRecord>| {
        rows.into_iter()
            .map(|r| (r.kind, r.identity_id))
            .collect::<Vec<_>>()
    };
    let all = s
        .list_audit(&AuditQuery {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        kinds(all),
        vec![
            (AuditKind::IdentityUpdated, Some(i.id)),
            (AuditKind::IdentityCreated, Some(i.id)),
        ]
    );
    let deleted = s
        .delete_identity(
            i.id,
            now(),
            &fx_deleted().audited(record(AuditKind::IdentityDeleted, i.id)),
        )
        .await
        .unwrap();
    assert!(deleted);
    let newest = s
        .list_audit(&AuditQuery {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        kinds(newest),
        vec![(AuditKind::IdentityDeleted, Some(i.id))]
    );
}

/// The core names the events: a write appends what its effects list, and nothing else.
async fn a_write_appends_only_the_events_it_is_given(s: impl Store) {
    let before = s.events_after(0, 1000).await.unwrap().len();
    let mut i = identity("quiet@example.com");
    s.insert_identity(&i, &Effects::none()).await.unwrap();
    i.metadata_public = Some(json!({ "quiet": true }));
    s.update_identity(&mut i, &Effects::none()).await.unwrap();
    let (sess, _) = session_for(&i, Duration::from_secs(60));
    s.insert_session(&sess, &Effects::none()).await.unwrap();
    assert_eq!(s.events_after(0, 1000).await.unwrap().len(), before);
    // Named: one event each, with the wire name of its kind.
    s.update_identity(&mut i, &fx_updated()).await.unwrap();
    s.revoke_identity_sessions(i.id, None, now(), &fx_ended())
        .await
        .unwrap();
    let kinds: Vec<String> = s
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .skip(before)
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["user.updated", "session.revoked"]);
}

/// Security review S1: a refresh sign-in writes back the session it read before hashing; a
/// revocation that landed meanwhile must stay.
async fn a_stale_session_write_never_reactivates_a_revoked_session(s: impl Store) {
    let i = identity("s1@example.com");
    s.insert_identity(&i, &fx_created()).await.unwrap();
    let (sess, _) = session_for(&i, Duration::from_secs(3600));
    s.insert_session(&sess, &fx_started()).await.unwrap();
    let stale = sess.clone();
    let mut ended = sess.clone();
    ended.active = false;
    assert!(!s.update_session(&ended, now(), &fx_ended()).await.unwrap());
    let mut refreshed = stale;
    refreshed.authenticated_at = now() + Duration::from_secs(5);
    assert!(
        !s.update_session(&refreshed, now(), &Effects::none())
            .await
            .unwrap(),
        "the write reports the session as ended"
    );
    let (back, _) = s.get_session(sess.id).await.unwrap().unwrap();
    assert!(!back.active, "the revocation stands");
    // A live session's write keeps it live.
    let (other, _) = session_for(&i, Duration::from_secs(3600));
    s.insert_session(&other, &fx_started()).await.unwrap();
    assert!(s
        .update_session(&other, now(), &Effects::none())
        .await
        .unwrap());
}

fn image_of(i: &Identity, n: u8) -> portcullis_core::profile_image::ProfileImage {
    portcullis_core::profile_image::ProfileImage {
        id: format!("img_{}", Uuid::new_v4().simple()),
        identity_id: i.id,
        content_type: "image/png".into(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, n, 255],
        created_at: now(),
    }
}

async fn a_profile_image_changes_with_its_identity_and_goes_with_it(s: impl Store) {
    let mut a = identity("pictured@example.com");
    s.insert_identity(&a, &fx_created()).await.unwrap();
    let first = image_of(&a, 1);
    a.metadata_admin = Some(json!({ "clerk": { "image": first.id } }));
    s.update_identity_with_image(&mut a, Some(&first), &fx_updated())
        .await
        .unwrap();
    assert_eq!(
        s.profile_image(&first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.get_identity(a.id).await.unwrap().unwrap().metadata_admin,
        a.metadata_admin
    );
    // A write from a stale read changes neither the identity nor its image.
    let mut stale = a.clone();
    stale.version -= 1;
    let ignored = image_of(&a, 2);
    assert!(matches!(
        s.update_identity_with_image(&mut stale, Some(&ignored), &fx_updated())
            .await,
        Err(StoreError::Stale)
    ));
    assert_eq!(s.profile_image(&ignored.id).await.unwrap(), None);
    assert!(s.profile_image(&first.id).await.unwrap().is_some());
    // A new one replaces it.
    let second = image_of(&a, 3);
    s.update_identity_with_image(&mut a, Some(&second), &fx_updated())
        .await
        .unwrap();
    assert_eq!(s.profile_image(&first.id).await.unwrap(), None);
    assert_eq!(
        s.profile_image(&second.id).await.unwrap(),
        Some(second.clone())
    );
    // Deleting the identity deletes it.
    s.delete_identity(a.id, now(), &fx_deleted()).await.unwrap();
    assert_eq!(s.profile_image(&second.id).await.unwrap(), None);
}
