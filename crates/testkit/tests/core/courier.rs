//! The courier's decisions on a real core: what a failed attempt leads to (a retry after a
//! doubling backoff, then abandonment after `courier.message_retries` attempts), exact to the
//! second on the manual clock; a claim that ran out records nothing but the attempt.

use portcullis_core::courier::{Delivery, MessageQuery, MessageStatus};
use portcullis_testkit::Kit;
use std::time::Duration;
use uuid::Uuid;

async fn kit() -> Kit {
    Kit::with_config(|c| {
        c.courier.message_retries = 3;
        c.courier.retry_backoff = portcullis_core::config::Dur::secs(60);
        c.courier.worker.lease = portcullis_core::config::Dur::secs(30);
    })
    .await
}

#[tokio::test]
async fn a_failing_message_is_retried_after_a_doubling_backoff_then_abandoned() {
    let kit = kit().await;
    // Dev mode verifies addresses: registering queues one message.
    kit.register("courier@example.com").await;
    let owner = Uuid::new_v4();
    let mut claimed = kit.core.claim_messages(owner, kit.now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let m = claimed.remove(0);
    let fail = || Err::<(), String>("421 try again later".into());

    let first = kit
        .core
        .record_delivery(&m, owner, fail(), kit.now())
        .await
        .unwrap();
    assert_eq!(
        first,
        Some(Delivery::Retry {
            at: kit.now() + Duration::from_secs(60)
        })
    );
    kit.clock.advance(Duration::from_secs(59));
    assert!(kit
        .core
        .claim_messages(owner, kit.now())
        .await
        .unwrap()
        .is_empty());
    kit.clock.advance(Duration::from_secs(1));
    let m = kit
        .core
        .claim_messages(owner, kit.now())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(m.send_count, 1);

    let second = kit
        .core
        .record_delivery(&m, owner, fail(), kit.now())
        .await
        .unwrap();
    assert_eq!(
        second,
        Some(Delivery::Retry {
            at: kit.now() + Duration::from_secs(120)
        })
    );
    kit.clock.advance(Duration::from_secs(120));
    let m = kit
        .core
        .claim_messages(owner, kit.now())
        .await
        .unwrap()
        .remove(0);

    // The third attempt is the last one allowed.
    let third = kit
        .core
        .record_delivery(&m, owner, fail(), kit.now())
        .await
        .unwrap();
    assert_eq!(third, Some(Delivery::Abandoned));
    kit.clock.advance(Duration::from_secs(86_400));
    assert!(kit
        .core
        .claim_messages(owner, kit.now())
        .await
        .unwrap()
        .is_empty());
    let (m, dispatches) = kit.core.courier_message(m.id).await.unwrap();
    assert_eq!(
        (m.status, m.send_count, dispatches.len()),
        (MessageStatus::Abandoned, 3, 3)
    );
    assert!(dispatches
        .iter()
        .all(|d| d.error.as_deref() == Some("421 try again later")));
}

#[tokio::test]
async fn a_report_after_the_lease_ran_out_changes_nothing() {
    let kit = kit().await;
    kit.register("slow@example.com").await;
    let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
    let m = kit
        .core
        .claim_messages(dead, kit.now())
        .await
        .unwrap()
        .remove(0);
    // The lease runs out; another instance takes the message over and sends it.
    kit.clock.advance(Duration::from_secs(31));
    let again = kit
        .core
        .claim_messages(alive, kit.now())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.id, m.id);
    assert_eq!(
        kit.core
            .record_delivery(&again, alive, Ok(()), kit.now())
            .await
            .unwrap(),
        Some(Delivery::Sent)
    );
    // The first sender's late failure is kept in the log and does not undo the success.
    assert_eq!(
        kit.core
            .record_delivery(&m, dead, Err("timed out".into()), kit.now())
            .await
            .unwrap(),
        None
    );
    let (m, dispatches) = kit.core.courier_message(m.id).await.unwrap();
    assert_eq!(
        (m.status, m.send_count, dispatches.len()),
        (MessageStatus::Sent, 1, 2)
    );
    let sent = kit
        .core
        .courier_messages(&MessageQuery {
            status: Some(MessageStatus::Sent),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
}
