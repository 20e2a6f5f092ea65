//! The courier's queue (the scenarios are listed in `on_both!` with the others, so they run on
//! every backend): a message commits iff its write does, claims are exclusive, attempts back
//! off and abandon, lists filter and page, and `email.created` goes where it is wanted.

use super::{endpoint, flow, fx_registered, identity, now, session_for};
use portcullis_core::courier::{
    Delivery, DispatchStatus, Locale, Message, MessageQuery, MessageStatus, TemplateKind,
};
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::store::prelude::*;
use portcullis_core::store::{Effects, StoreError};
use std::collections::HashSet;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// A queued message created at `at` (ids time-ordered by `at`, as the core makes them).
fn message(to: &str, at: OffsetDateTime) -> Message {
    let nanos = at.unix_timestamp_nanos();
    let id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ));
    Message {
        id,
        status: MessageStatus::Queued,
        channel: "email".into(),
        recipient: to.into(),
        template: TemplateKind::RecoveryCodeValid,
        locale: Locale::Ko,
        subject: "Recover access to your account".into(),
        body: "Your code: 424242\n".into(),
        html_body: "<p>424242</p>".into(),
        identity_id: None,
        send_count: 0,
        created_at: at,
        updated_at: at,
    }
}

async fn all_messages(s: &impl Store) -> Vec<Message> {
    s.list_messages(&MessageQuery {
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Queues `n` messages to `to` with one flow update (one transaction).
async fn queue(s: &impl Store, to: &str, n: usize, at: OffsetDateTime) -> Vec<Message> {
    let f = flow(FlowType::Api, "http://x/self-service/recovery/api");
    s.insert_flow(&f).await.unwrap();
    let msgs: Vec<Message> = (0..n)
        .map(|i| message(to, at + Duration::from_millis(i as u64)))
        .collect();
    let fx = msgs
        .iter()
        .fold(Effects::none(), |fx, m| fx.message(m.clone()));
    s.update_flow_with(&f, &fx).await.unwrap();
    msgs
}

pub(super) async fn courier_messages_commit_with_their_write_and_only_then(s: impl Store) {
    let t = now();
    // A flow update that queues a message: the message, as given, with its event.
    let [m] = <[Message; 1]>::try_from(queue(&s, "ada@example.com", 1, t).await).unwrap();
    let (stored, dispatches) = s.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored, m);
    assert!(dispatches.is_empty());
    let events = s.events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "email.created");
    assert_eq!(events[0].payload["message"]["id"], m.id.to_string());
    assert_eq!(events[0].payload["message"]["body"], m.body);
    assert_eq!(events[0].payload["message"]["html_body"], m.html_body);

    // Failed writes queue nothing: a flow that is not there, …
    let missing = flow(FlowType::Api, "http://x/");
    let lost = message("lost@example.com", t);
    assert!(matches!(
        s.update_flow_with(&missing, &Effects::none().message(lost.clone()))
            .await,
        Err(StoreError::NotFound)
    ));
    // … a stale identity write, …
    let mut i = identity("courier-stale@example.com");
    s.insert_identity(&i, &Effects::none()).await.unwrap();
    let mut stale = i.clone();
    s.update_identity(&mut i, &Effects::none()).await.unwrap();
    let stale_msg = message("stale@example.com", t);
    assert!(matches!(
        s.update_identity(&mut stale, &Effects::none().message(stale_msg.clone()))
            .await,
        Err(StoreError::Stale)
    ));
    // … a registration whose identifier is taken (the flow stays open, nothing is written).
    let reg = portcullis_core::flow::Flow::new(
        FlowKind::Registration,
        FlowType::Api,
        "http://x/self-service/registration/api".into(),
        "http://x/",
        Duration::from_secs(60),
        t,
    );
    s.insert_flow(&reg).await.unwrap();
    let dup = identity("courier-stale@example.com");
    let dup_msg = message("courier-stale@example.com", t);
    assert!(matches!(
        s.complete_registration(&reg, &dup, None, &Effects::none().message(dup_msg.clone()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    for gone in [&lost, &stale_msg, &dup_msg] {
        assert!(s.get_message(gone.id).await.unwrap().is_none());
    }

    // A registration with a session queues its message once (one write_effects per write).
    let reg2 = portcullis_core::flow::Flow::new(
        FlowKind::Registration,
        FlowType::Api,
        "http://x/self-service/registration/api".into(),
        "http://x/",
        Duration::from_secs(60),
        t,
    );
    s.insert_flow(&reg2).await.unwrap();
    let new = identity("courier-new@example.com");
    let (sess, _) = session_for(&new, Duration::from_secs(60));
    let welcome = message("courier-new@example.com", t);
    assert!(s
        .complete_registration(
            &reg2,
            &new,
            Some(&sess),
            &fx_registered().message(welcome.clone())
        )
        .await
        .unwrap());
    let all = all_messages(&s).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().filter(|x| x.id == welcome.id).count(), 1);
    let kinds: Vec<String> = s
        .events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "email.created").count(),
        2,
        "{kinds:?}"
    );
}

pub(super) async fn courier_claims_are_exclusive_under_concurrency(s: impl Store) {
    let t = now();
    let queued = queue(&s, "many@example.com", 40, t).await;
    // All due (the last was queued 39 ms after `t`).
    let t = t + Duration::from_secs(1);
    let lease = t + Duration::from_secs(60);
    let owners: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let claims =
        super::futures_join(owners.iter().map(|o| s.claim_messages(*o, 7, lease, t))).await;
    let mut seen = HashSet::new();
    let mut owner_of = std::collections::HashMap::new();
    for (owner, claimed) in owners.iter().zip(&claims) {
        let claimed = claimed.as_ref().unwrap();
        assert!(claimed.len() <= 7);
        for m in claimed {
            assert!(seen.insert(m.id), "{} claimed twice", m.id);
            assert_eq!(m.status, MessageStatus::Processing);
            owner_of.insert(m.id, *owner);
        }
    }
    assert_eq!(seen.len(), 40, "8 claimers of 7 take all 40");
    assert_eq!(seen, queued.iter().map(|m| m.id).collect());
    // Held under a lease: nobody claims them again until it ends …
    let late = Uuid::new_v4();
    assert!(s
        .claim_messages(late, 100, lease, t + Duration::from_secs(59))
        .await
        .unwrap()
        .is_empty());
    // … then a claimer takes over what was not finished (its sender died mid-send).
    let one = &queued[0];
    assert!(s
        .record_dispatch(&dispatch(one, t, None), owner_of[&one.id], &Delivery::Sent)
        .await
        .unwrap());
    let after = t + Duration::from_secs(61);
    let retaken = s
        .claim_messages(late, 100, after + Duration::from_secs(60), after)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 39);
    assert!(retaken.iter().all(|m| m.id != one.id));
    // The first claimer lost its claim: its late report records the attempt and changes nothing.
    let two = &retaken[0];
    assert!(!s
        .record_dispatch(
            &dispatch(two, after, None),
            owner_of[&two.id],
            &Delivery::Sent
        )
        .await
        .unwrap());
    let (m, d) = s.get_message(two.id).await.unwrap().unwrap();
    assert_eq!(
        (m.status, m.send_count, d.len()),
        (MessageStatus::Processing, 0, 1)
    );
}

fn dispatch(
    m: &Message,
    at: OffsetDateTime,
    error: Option<&str>,
) -> portcullis_core::courier::Dispatch {
    portcullis_core::courier::Dispatch {
        id: Uuid::new_v4(),
        message_id: m.id,
        status: if error.is_some() {
            DispatchStatus::Failed
        } else {
            DispatchStatus::Success
        },
        error: error.map(str::to_string),
        created_at: at,
        updated_at: at,
    }
}

pub(super) async fn courier_attempts_back_off_then_abandon(s: impl Store) {
    let t = now();
    let [m] = <[Message; 1]>::try_from(queue(&s, "flaky@example.com", 1, t).await).unwrap();
    let owner = Uuid::new_v4();
    let lease = Duration::from_secs(30);
    let claim = |at: OffsetDateTime| {
        let s = &s;
        async move { s.claim_messages(owner, 10, at + lease, at).await.unwrap() }
    };
    assert_eq!(claim(t).await.len(), 1);
    // Failed: queued again, due after the backoff; not claimable before.
    let retry_at = t + Duration::from_secs(60);
    assert!(s
        .record_dispatch(
            &dispatch(&m, t, Some("connection refused")),
            owner,
            &Delivery::Retry { at: retry_at }
        )
        .await
        .unwrap());
    let (after1, d1) = s.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(
        (after1.status, after1.send_count),
        (MessageStatus::Queued, 1)
    );
    assert_eq!(d1.len(), 1);
    assert_eq!(d1[0].status, DispatchStatus::Failed);
    assert_eq!(d1[0].error.as_deref(), Some("connection refused"));
    assert!(claim(t + Duration::from_secs(59)).await.is_empty());
    let second = t + Duration::from_secs(60);
    let again = claim(second).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].send_count, 1);
    // The last allowed attempt fails: abandoned, never claimed again, every attempt kept.
    assert!(s
        .record_dispatch(
            &dispatch(&m, second, Some("550 no such user")),
            owner,
            &Delivery::Abandoned
        )
        .await
        .unwrap());
    let (gone, d2) = s.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(
        (gone.status, gone.send_count),
        (MessageStatus::Abandoned, 2)
    );
    assert_eq!(d2.len(), 2);
    assert_eq!(d2[1].error.as_deref(), Some("550 no such user"));
    assert!(claim(t + Duration::from_secs(86_400)).await.is_empty());
    // A sent message is done too.
    let [ok] = <[Message; 1]>::try_from(queue(&s, "fine@example.com", 1, t).await).unwrap();
    assert_eq!(claim(t).await.len(), 1);
    assert!(s
        .record_dispatch(&dispatch(&ok, t, None), owner, &Delivery::Sent)
        .await
        .unwrap());
    let (sent, d3) = s.get_message(ok.id).await.unwrap().unwrap();
    assert_eq!((sent.status, sent.send_count), (MessageStatus::Sent, 1));
    assert_eq!(d3[0].status, DispatchStatus::Success);
    assert!(claim(t + Duration::from_secs(86_400)).await.is_empty());
}

pub(super) async fn courier_lists_filter_and_page_newest_first(s: impl Store) {
    let t = now();
    let mut ids = vec![];
    for (i, to) in [
        "a@example.com",
        "b@example.com",
        "a@example.com",
        "c@example.com",
        "a@example.com",
    ]
    .iter()
    .enumerate()
    {
        let m = queue(&s, to, 1, t + Duration::from_secs(i as u64)).await;
        ids.push(m[0].id);
    }
    // The second one is sent.
    let owner = Uuid::new_v4();
    let claimed = s
        .claim_messages(
            owner,
            1,
            t + Duration::from_secs(60),
            t + Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(claimed[0].id, ids[0], "oldest due first");
    assert!(s
        .record_dispatch(&dispatch(&claimed[0], t, None), owner, &Delivery::Sent)
        .await
        .unwrap());
    let list = |q: MessageQuery| {
        let s = &s;
        async move {
            s.list_messages(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(
        list(MessageQuery {
            page_size: 100,
            ..Default::default()
        })
        .await,
        newest_first
    );
    assert_eq!(
        list(MessageQuery {
            recipient: Some("a@example.com".into()),
            page_size: 100,
            ..Default::default()
        })
        .await,
        vec![ids[4], ids[2], ids[0]]
    );
    assert_eq!(
        list(MessageQuery {
            status: Some(MessageStatus::Sent),
            page_size: 100,
            ..Default::default()
        })
        .await,
        vec![ids[0]]
    );
    assert_eq!(
        list(MessageQuery {
            status: Some(MessageStatus::Queued),
            recipient: Some("a@example.com".into()),
            page_size: 100,
            ..Default::default()
        })
        .await,
        vec![ids[4], ids[2]]
    );
    // Keyset pages: two, two, one, with nothing repeated or skipped.
    let mut paged = vec![];
    let mut before = None;
    loop {
        let page = list(MessageQuery {
            page_size: 2,
            before,
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(paged, newest_first);
}

pub(super) async fn courier_keeps_queued_messages_and_cleans_up_old_finished_ones(s: impl Store) {
    let t = now();
    let old = queue(&s, "old@example.com", 3, t).await;
    let t = t + Duration::from_secs(1);
    let owner = Uuid::new_v4();
    let claimed = s
        .claim_messages(owner, 2, t + Duration::from_secs(60), t)
        .await
        .unwrap();
    assert!(s
        .record_dispatch(&dispatch(&claimed[0], t, None), owner, &Delivery::Sent)
        .await
        .unwrap());
    assert!(s
        .record_dispatch(
            &dispatch(&claimed[1], t, Some("boom")),
            owner,
            &Delivery::Abandoned
        )
        .await
        .unwrap());
    let recent = queue(&s, "recent@example.com", 1, t + Duration::from_secs(3600)).await;
    let o2 = Uuid::new_v4();
    let c2 = s
        .claim_messages(
            o2,
            1,
            t + Duration::from_secs(7200),
            t + Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(c2[0].id, old[2].id);
    // Cut-off between the two batches: the finished old ones go; a processing old one and the
    // recent queued one stay.
    let n = s
        .delete_messages_before(t + Duration::from_secs(1800))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let left: HashSet<Uuid> = all_messages(&s).await.into_iter().map(|m| m.id).collect();
    assert_eq!(left, HashSet::from([old[2].id, recent[0].id]));
}

pub(super) async fn courier_email_created_goes_only_to_endpoints_that_name_it(s: impl Store) {
    let catch_all = endpoint(&[], true);
    let users = endpoint(&["user.created"], true);
    let emails = endpoint(&["email.created"], true);
    for e in [&catch_all, &users, &emails] {
        s.insert_webhook_endpoint(e, &Effects::none())
            .await
            .unwrap();
    }
    let m = queue(&s, "hooked@example.com", 1, now()).await;
    let d = s.next_delivery(&emails.id).await.unwrap().unwrap();
    assert_eq!(d.event.kind, "email.created");
    assert_eq!(d.event.payload["message"]["id"], m[0].id.to_string());
    assert!(s.next_delivery(&catch_all.id).await.unwrap().is_none());
    assert!(s.next_delivery(&users.id).await.unwrap().is_none());
    // A replay to the catch-all endpoint leaves it out too; one to the subscriber has it.
    let since = now() - Duration::from_secs(3600);
    assert_eq!(
        s.replay_since(&catch_all.id, since, now()).await.unwrap(),
        0
    );
    assert!(s.next_delivery(&catch_all.id).await.unwrap().is_none());
    assert_eq!(s.replay_since(&emails.id, since, now()).await.unwrap(), 1);
}
