//! The settings flow: a password change needs a privileged (recently authenticated) session.

use portcullis_core::error::Error;
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::selfservice::{LoginMethod, LoginSubmit, SettingsMethod, SettingsSubmit};
use portcullis_testkit::{refused, CallerBuilder, Kit};
use std::time::Duration;

const NEW_PASSWORD: &str = "brand new secret words";

fn new_password() -> SettingsSubmit {
    SettingsSubmit {
        method: SettingsMethod::Password {
            password: NEW_PASSWORD.into(),
        },
        csrf_token: None,
    }
}

#[tokio::test]
async fn a_password_change_needs_a_login_within_the_privileged_session_max_age() {
    let kit = Kit::new().await;
    let token = kit.register("ada@example.com").await.token.unwrap();
    let max_age = kit
        .core
        .config()
        .selfservice
        .flows
        .settings
        .privileged_session_max_age
        .0;
    let url = kit.request_url(FlowKind::Settings, FlowType::Api);

    // Up to the max age the session is privileged (the first change of password).
    kit.clock.advance(max_age);
    let member = CallerBuilder::api()
        .signed_in(kit.session(&token).await)
        .build();
    let (flow, _) = kit
        .core
        .create_settings_flow(FlowType::Api, url.clone(), None, &member, kit.now())
        .await
        .unwrap();
    let saved = kit
        .core
        .submit_settings(flow.id, new_password(), &member, kit.now())
        .await;
    assert!(saved.is_ok_and(|(f, _)| f.state == "success"));

    // A second later it is not: re-authenticate, then come back to this flow.
    kit.clock.advance(Duration::from_secs(1));
    let member = CallerBuilder::api()
        .signed_in(kit.session(&token).await)
        .build();
    let (flow, _) = kit
        .core
        .create_settings_flow(FlowType::Api, url.clone(), None, &member, kit.now())
        .await
        .unwrap();
    let e = refused(
        kit.core
            .submit_settings(flow.id, new_password(), &member, kit.now())
            .await,
    );
    let Error::RefreshRequired {
        redirect_browser_to,
    } = e
    else {
        panic!("expected refresh required, got {e:?}");
    };
    assert!(
        redirect_browser_to.contains("/self-service/login/browser?refresh=true&return_to="),
        "{redirect_browser_to}"
    );
    assert!(
        redirect_browser_to.contains(&flow.id.to_string()),
        "{redirect_browser_to}"
    );

    // A refresh login makes the same session privileged again.
    let url = kit.request_url(FlowKind::Login, FlowType::Api);
    let login = kit
        .core
        .create_login_flow(FlowType::Api, url, true, None, None, &member, kit.now())
        .await
        .unwrap();
    let refreshed = kit
        .core
        .submit_login(
            login.id,
            LoginSubmit {
                method: LoginMethod::Password {
                    identifier: "ada@example.com".into(),
                    password: NEW_PASSWORD.into(),
                },
                csrf_token: None,
            },
            &member,
            kit.now(),
        )
        .await;
    assert!(refreshed.is_ok_and(|a| a.token.is_none()), "no new session");
    let member = CallerBuilder::api()
        .signed_in(kit.session(&token).await)
        .build();
    let saved = kit
        .core
        .submit_settings(flow.id, new_password(), &member, kit.now())
        .await;
    assert!(saved.is_ok_and(|(f, _)| f.state == "success"));
}
