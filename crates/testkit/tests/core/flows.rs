//! Rules every self-service flow shares: single use, expiry with a replacement, `return_to`
//! and the browser's anti-CSRF token.

use crate::{password_login, password_registration};
use portcullis_core::error::Error;
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_testkit::{invalid, message_ids, refused, CallerBuilder, Kit};
use std::time::Duration;

#[tokio::test]
async fn a_completed_login_flow_cannot_be_submitted_again() {
    let kit = Kit::new().await;
    kit.register("ada@example.com").await;
    let api = CallerBuilder::api().build();
    let url = kit.request_url(FlowKind::Login, FlowType::Api);
    let flow = kit
        .core
        .create_login_flow(FlowType::Api, url, false, None, None, &api, kit.now())
        .await
        .unwrap();
    let first = kit
        .core
        .submit_login(
            flow.id,
            password_login("ada@example.com", None),
            &api,
            kit.now(),
        )
        .await;
    assert!(
        first.is_ok_and(|a| a.token.is_some()),
        "the first submit signs in"
    );
    let again = kit
        .core
        .submit_login(
            flow.id,
            password_login("ada@example.com", None),
            &api,
            kit.now(),
        )
        .await;
    assert_eq!(
        message_ids(&invalid(again)),
        vec![4010007],
        "the flow was already completed"
    );
}

#[tokio::test]
async fn a_completed_registration_flow_cannot_be_submitted_again() {
    let kit = Kit::new().await;
    let api = CallerBuilder::api().build();
    let url = kit.request_url(FlowKind::Registration, FlowType::Api);
    let flow = kit
        .core
        .create_registration_flow(FlowType::Api, url, None, &api, kit.now())
        .await
        .unwrap();
    let first = kit
        .core
        .submit_registration(
            flow.id,
            password_registration("ada@example.com", None),
            &api,
            kit.now(),
        )
        .await;
    assert!(first.is_ok(), "the first submit registers");
    let again = kit
        .core
        .submit_registration(
            flow.id,
            password_registration("grace@example.com", None),
            &api,
            kit.now(),
        )
        .await;
    assert_eq!(
        message_ids(&invalid(again)),
        vec![4040002],
        "the flow was already completed"
    );
    assert_eq!(
        kit.core.all_identities().await.unwrap().len(),
        1,
        "the replay created no account"
    );
}

#[tokio::test]
async fn an_expired_flow_is_refused_with_a_replacement_that_says_why() {
    let kit = Kit::new().await;
    let api = CallerBuilder::api().build();
    let heading = format!("{}welcome", kit.core.public_url());
    let url = kit.request_url(FlowKind::Login, FlowType::Api);
    let flow = kit
        .core
        .create_login_flow(
            FlowType::Api,
            url,
            false,
            None,
            Some(heading.clone()),
            &api,
            kit.now(),
        )
        .await
        .unwrap();
    let lifespan = kit.core.config().selfservice.flows.login.lifespan.0;
    assert_eq!(flow.expires_at, kit.now() + lifespan);

    kit.clock.advance(lifespan - Duration::from_secs(1));
    let read = kit
        .core
        .load_flow(FlowKind::Login, flow.id, &api, kit.now())
        .await;
    assert!(
        read.is_ok(),
        "a second before the end it is still good: {read:?}"
    );

    kit.clock.set(flow.expires_at);
    let e = refused(
        kit.core
            .submit_login(
                flow.id,
                password_login("ada@example.com", None),
                &api,
                kit.now(),
            )
            .await,
    );
    let Error::FlowExpired {
        kind: FlowKind::Login,
        replacement: Some(replacement),
        ..
    } = e
    else {
        panic!("expected an expired login flow with a replacement, got {e:?}");
    };
    assert_ne!(replacement, flow.id);
    let fresh = kit
        .core
        .load_flow(FlowKind::Login, replacement, &api, kit.now())
        .await
        .unwrap();
    assert_eq!(
        message_ids(&fresh),
        vec![4010001],
        "the replacement says why"
    );
    assert_eq!(
        fresh.expires_at,
        kit.now() + lifespan,
        "with a whole lifespan"
    );
    assert_eq!(
        fresh.return_to,
        Some(heading),
        "heading where the old one was"
    );

    let read = kit
        .core
        .load_flow(FlowKind::Login, flow.id, &api, kit.now())
        .await;
    assert!(
        matches!(
            read,
            Err(Error::FlowExpired {
                replacement: None,
                ..
            })
        ),
        "reading the expired flow is refused too: {read:?}"
    );
}

#[tokio::test]
async fn an_unlisted_return_to_is_refused() {
    let kit = Kit::with_config(|c| {
        c.selfservice.allowed_return_urls = vec!["https://app.example.com/home".into()];
    })
    .await;
    let signed_in = kit.register("ada@example.com").await;
    let token = signed_in.token.unwrap();
    let api = CallerBuilder::api().build();
    let member = CallerBuilder::api()
        .signed_in(kit.session(&token).await)
        .build();
    let now = kit.now();
    let core = &kit.core;
    let (login, registration, settings) = (
        kit.request_url(FlowKind::Login, FlowType::Api),
        kit.request_url(FlowKind::Registration, FlowType::Api),
        kit.request_url(FlowKind::Settings, FlowType::Api),
    );
    for unlisted in [
        "https://evil.example/steal",
        "https://app.example.com/other",
        "http://app.example.com/home",
    ] {
        let to = Some(unlisted.to_string());
        let refusals = [
            core.create_login_flow(
                FlowType::Api,
                login.clone(),
                false,
                None,
                to.clone(),
                &api,
                now,
            )
            .await
            .map(drop),
            core.create_registration_flow(
                FlowType::Api,
                registration.clone(),
                to.clone(),
                &api,
                now,
            )
            .await
            .map(drop),
            core.create_settings_flow(FlowType::Api, settings.clone(), to, &member, now)
                .await
                .map(drop),
        ];
        for r in refusals {
            assert!(
                matches!(&r, Err(Error::ReturnToForbidden { url }) if url == unlisted),
                "{unlisted}: {r:?}"
            );
        }
    }
    let listed = "https://app.example.com/home/inbox";
    let flow = core
        .create_login_flow(
            FlowType::Api,
            login,
            false,
            None,
            Some(listed.into()),
            &api,
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        flow.return_to.as_deref(),
        Some(listed),
        "a listed one is kept"
    );
}

#[tokio::test]
async fn a_browser_submit_needs_the_anti_csrf_token_of_its_cookie() {
    let kit = Kit::new().await;
    let browser = CallerBuilder::browser().build();
    let url = kit.request_url(FlowKind::Registration, FlowType::Browser);
    let flow = kit
        .core
        .create_registration_flow(FlowType::Browser, url, None, &browser, kit.now())
        .await
        .unwrap();
    let own = flow.csrf_token.clone();
    assert!(
        own.is_some(),
        "a browser flow carries a token for its cookie"
    );
    let other_browser = CallerBuilder::browser().build();
    let url = kit.request_url(FlowKind::Registration, FlowType::Browser);
    let other = kit
        .core
        .create_registration_flow(FlowType::Browser, url, None, &other_browser, kit.now())
        .await
        .unwrap()
        .csrf_token;
    for token in [None, other] {
        let e = refused(
            kit.core
                .submit_registration(
                    flow.id,
                    password_registration("ada@example.com", token),
                    &browser,
                    kit.now(),
                )
                .await,
        );
        assert!(matches!(e, Error::CsrfViolation { .. }), "{e:?}");
    }
    let done = kit
        .core
        .submit_registration(
            flow.id,
            password_registration("ada@example.com", own),
            &browser,
            kit.now(),
        )
        .await;
    assert!(done.is_ok(), "its own token passes");
}
