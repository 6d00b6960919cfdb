//! One behavioural suite every [`Store`] implementation must pass. Each backend's tests
//! call [`run_all`] with a fresh, empty store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tern_bus::JobKind;
use tern_types::{Direction, MessageStatus, Sid, SidPrefix};

use crate::*;

fn account(parent: Option<Sid>) -> Account {
    Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: parent,
        friendly_name: "acct".into(),
        auth_token: "token".into(),
        status: AccountStatus::Active,
        created: 1,
        updated: 1,
    }
}

pub fn smpp_credential(account: Sid, system_id: &str, created: i64) -> SmppCredential {
    SmppCredential {
        sid: Sid::generate(SidPrefix::SmppCredential),
        account_sid: account,
        system_id: system_id.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${system_id}"),
        friendly_name: format!("{system_id} login"),
        created,
    }
}

pub fn message(account: Sid, created: i64, to: &str) -> Message {
    Message {
        sid: Sid::generate(SidPrefix::Message),
        account_sid: account,
        messaging_service_sid: None,
        direction: Direction::OutboundApi,
        from: Some("+14155550100".into()),
        to: to.into(),
        body: "hello".into(),
        status: MessageStatus::Queued,
        error_code: None,
        num_segments: 1,
        num_media: 0,
        status_callback: None,
        validity_secs: 36_000,
        send_at: None,
        carrier: None,
        carrier_message_id: None,
        raw_dlr_done_date: None,
        provide_feedback: false,
        created,
        updated: created,
        sent: None,
    }
}

pub async fn run_all(store: Arc<dyn Store>) {
    accounts_and_subaccounts(&*store).await;
    numbers_are_unique(&*store).await;
    message_and_first_job_commit_together(&*store).await;
    transitions_are_compare_and_set(&*store).await;
    listing_pages_newest_first_with_filters(&*store).await;
    opt_outs_toggle(&*store).await;
    services_pool_and_round_robin(&*store).await;
    sticky_senders_are_per_service_and_recipient_and_agree_under_concurrency(&store).await;
    smpp_credentials_are_unique_per_system_id_and_scoped_to_their_account(&*store).await;
    feedback_is_one_outcome_per_message_and_reports_what_it_replaced(&*store).await;
    a_lease_has_one_holder_until_it_runs_out_or_is_released(&*store).await;
    contending_holders_get_a_lease_once(&store).await;
    leases_are_listed_by_literal_prefix(&*store).await;
    a_job_runs_for_one_live_owner(&*store).await;
    contending_claims_give_each_job_one_owner(&store).await;
    route_attempts_are_kept_in_order_and_resends_are_compare_and_set(&*store).await;
    // Last: it deletes old final messages.
    retention_deletes_old_final_messages_with_what_is_kept_about_them(&*store).await;
}

pub fn attempt(
    m: Sid,
    carrier: &str,
    at: i64,
    result: AttemptResult,
    id: Option<&str>,
) -> RouteAttempt {
    RouteAttempt {
        message_sid: m,
        carrier: carrier.into(),
        prefix: "+44".into(),
        at,
        result,
        carrier_message_id: id.map(str::to_owned),
        error_code: (result == AttemptResult::Refused).then_some(30_007),
        reason: format!("{carrier} ranked first"),
    }
}

async fn route_attempts_are_kept_in_order_and_resends_are_compare_and_set(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let m = message(a.sid, 10, "+447911000001");
    s.insert_message(m.clone(), Vec::new()).await.unwrap();
    let refused = attempt(m.sid, "a", 11, AttemptResult::Refused, None);
    let later = attempt(m.sid, "b", 12, AttemptResult::Retryable, None);
    s.add_route_attempts(vec![refused.clone(), later.clone()])
        .await
        .unwrap();
    s.add_route_attempts(Vec::new()).await.unwrap();
    s.transition(Transition::new(
        m.sid,
        MessageStatus::Queued,
        MessageStatus::Sending,
        13,
    ))
    .await
    .unwrap();
    // The accepted attempt is written with the transition, and only if it holds.
    let accepted = attempt(m.sid, "b", 14, AttemptResult::Accepted, Some("b-1"));
    let mut sent = Transition::new(m.sid, MessageStatus::Sending, MessageStatus::Sent, 14);
    sent.carrier = Some(("b".into(), "b-1".into()));
    sent.attempts = vec![accepted.clone()];
    s.transition(sent.clone()).await.unwrap();
    assert!(s.transition(sent).await.is_err());
    assert_eq!(
        s.route_attempts(m.sid).await.unwrap(),
        vec![refused.clone(), later.clone(), accepted.clone()]
    );

    // A resend moves the message to another carrier only from the attempt it names.
    let resent = attempt(m.sid, "b", 20, AttemptResult::Resent, Some("b-1"));
    let again = attempt(m.sid, "c", 20, AttemptResult::Accepted, Some("c-1"));
    let ok = s
        .resend_message(
            m.sid,
            ("b".into(), "b-1".into()),
            ("c".into(), "c-1".into()),
            20,
            vec![resent.clone(), again.clone()],
        )
        .await
        .unwrap();
    assert!(ok);
    let stale = s
        .resend_message(
            m.sid,
            ("b".into(), "b-1".into()),
            ("d".into(), "d-1".into()),
            21,
            vec![attempt(
                m.sid,
                "d",
                21,
                AttemptResult::Accepted,
                Some("d-1"),
            )],
        )
        .await
        .unwrap();
    assert!(
        !stale,
        "a resend from an attempt no longer current changes nothing"
    );
    let got = s.message(m.sid).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.carrier.as_deref(),
            got.carrier_message_id.as_deref()
        ),
        (MessageStatus::Sent, Some("c"), Some("c-1"))
    );
    assert_eq!(got.updated, 20);
    assert_eq!(
        s.route_attempts(m.sid).await.unwrap(),
        vec![refused, later, accepted, resent, again]
    );
    // Receipts find the message by the current attempt and by the one it was resent from.
    for id in [("c", "c-1"), ("b", "b-1")] {
        let found = s.message_by_carrier_id(id.0, id.1).await.unwrap().unwrap();
        assert_eq!(found.sid, m.sid);
    }
    assert!(s.message_by_carrier_id("d", "d-1").await.unwrap().is_none());
    // Once final, a message cannot be resent.
    s.transition(Transition::new(
        m.sid,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        30,
    ))
    .await
    .unwrap();
    let after = s
        .resend_message(
            m.sid,
            ("c".into(), "c-1".into()),
            ("d".into(), "d-1".into()),
            31,
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(!after);
    assert!(s.delete_message(m.sid).await.unwrap());
    assert!(s.route_attempts(m.sid).await.unwrap().is_empty());
}

async fn accounts_and_subaccounts(s: &dyn Store) {
    let parent = account(None);
    s.create_account(parent.clone()).await.unwrap();
    let child = account(Some(parent.sid));
    s.create_account(child.clone()).await.unwrap();
    assert_eq!(s.account(parent.sid).await.unwrap(), Some(parent.clone()));
    assert_eq!(s.first_account().await.unwrap().unwrap().sid, parent.sid);
    assert_eq!(
        s.subaccounts(parent.sid).await.unwrap(),
        vec![child.clone()]
    );
    let upd = s
        .update_account(child.sid, None, Some(AccountStatus::Suspended), 5)
        .await
        .unwrap();
    assert_eq!(upd.unwrap().status, AccountStatus::Suspended);
    assert!(
        s.update_account(Sid::generate(SidPrefix::Account), None, None, 5)
            .await
            .unwrap()
            .is_none()
    );
}

async fn numbers_are_unique(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let n = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        account_sid: a.sid,
        phone_number: "+14155550999".into(),
        config: NumberConfig::default(),
        created: 1,
        updated: 1,
    };
    s.create_number(n.clone()).await.unwrap();
    let dup = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        ..n.clone()
    };
    assert!(matches!(
        s.create_number(dup).await,
        Err(StoreError::Conflict(_))
    ));
    let cfg = NumberConfig {
        sms_url: Some("http://x/sms".into()),
        ..Default::default()
    };
    let upd = s.update_number(n.sid, cfg, 2).await.unwrap().unwrap();
    assert_eq!(upd.config.sms_url.as_deref(), Some("http://x/sms"));
    assert_eq!(
        s.number_by_phone("+14155550999")
            .await
            .unwrap()
            .unwrap()
            .sid,
        n.sid
    );
    assert!(s.delete_number(n.sid).await.unwrap());
    assert!(s.number(n.sid).await.unwrap().is_none());
}

async fn message_and_first_job_commit_together(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let m = message(a.sid, 10, "+14155552671");
    let job = NewJob {
        kind: JobKind::Route,
        subject: m.sid,
        run_at: 10,
        payload: String::new(),
    };
    let jobs = s.insert_message(m.clone(), vec![job]).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(s.message(m.sid).await.unwrap(), Some(m.clone()));
    assert!(
        s.pending_jobs()
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == jobs[0].id)
    );
    // A duplicate SID fails and leaves no job behind.
    let before = s.pending_jobs().await.unwrap().len();
    let dup = NewJob {
        kind: JobKind::Route,
        subject: m.sid,
        run_at: 10,
        payload: String::new(),
    };
    assert!(s.insert_message(m.clone(), vec![dup]).await.is_err());
    assert_eq!(s.pending_jobs().await.unwrap().len(), before);
    let retried = s.retry_job(jobs[0].id, 99).await.unwrap().unwrap();
    assert_eq!((retried.attempts, retried.run_at), (1, 99));
    // Deferring is waiting, not failing: the attempts stay, the payload is replaced.
    let deferred = s
        .defer_job(jobs[0].id, 500, "{\"slot\":500}".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            deferred.attempts,
            deferred.run_at,
            deferred.payload.as_str()
        ),
        (1, 500, "{\"slot\":500}")
    );
    assert!(s.pending_jobs().await.unwrap().contains(&deferred));
    s.complete_jobs(vec![jobs[0].id]).await.unwrap();
    assert_eq!(
        s.defer_job(jobs[0].id, 600, String::new()).await.unwrap(),
        None
    );
    assert!(
        !s.pending_jobs()
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == jobs[0].id)
    );
}

async fn transitions_are_compare_and_set(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let m = message(a.sid, 10, "+14155552671");
    let jobs = s
        .insert_message(
            m.clone(),
            vec![NewJob {
                kind: JobKind::Route,
                subject: m.sid,
                run_at: 0,
                payload: String::new(),
            }],
        )
        .await
        .unwrap();
    let mut t = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sending, 20);
    t.done_job = Some(jobs[0].id);
    t.jobs.push(NewJob {
        kind: JobKind::Webhook,
        subject: m.sid,
        run_at: 0,
        payload: "{}".into(),
    });
    let created = s.transition(t.clone()).await.unwrap();
    assert_eq!(created.len(), 1);
    // The same change again finds the message already moved on.
    assert!(matches!(
        s.transition(t).await,
        Err(StoreError::StaleStatus(MessageStatus::Sending))
    ));
    let mut sent = Transition::new(m.sid, MessageStatus::Sending, MessageStatus::Sent, 30);
    sent.carrier = Some(("sim".into(), "abc".into()));
    let results = s.transitions(vec![sent.clone(), sent]).await.unwrap();
    assert!(results[0].is_ok());
    assert!(results[1].is_err());
    let got = s
        .message_by_carrier_id("sim", "abc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.status, got.sent), (MessageStatus::Sent, Some(20)));
    let stale = s
        .stale_messages(&[MessageStatus::Sent], 31, 10)
        .await
        .unwrap();
    assert!(stale.iter().any(|x| x.sid == m.sid));
    assert!(
        s.stale_messages(&[MessageStatus::Sent], 30, 10)
            .await
            .unwrap()
            .iter()
            .all(|x| x.sid != m.sid)
    );
    let red = s.redact_message(m.sid, 40).await.unwrap().unwrap();
    assert_eq!(red.body, "");
    assert!(s.delete_message(m.sid).await.unwrap());
    assert!(!s.delete_message(m.sid).await.unwrap());
}

async fn listing_pages_newest_first_with_filters(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let mut sids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "+14155552671"
        } else {
            "+14155552672"
        };
        let m = message(a.sid, 100 + i, to);
        sids.push(m.sid);
        s.insert_message(m, vec![]).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut q = MessageQuery {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = s.messages(a.sid, q.clone()).await.unwrap();
        seen.extend(page.items.iter().map(|m| m.sid));
        match page.next {
            Some(pos) => q.after = Some(pos),
            None => break,
        }
    }
    sids.reverse();
    assert_eq!(seen, sids);
    let q = MessageQuery {
        to: Some("+14155552672".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(s.messages(a.sid, q).await.unwrap().items.len(), 2);
    let q = MessageQuery {
        sent_after: Some(103),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(s.messages(a.sid, q).await.unwrap().items.len(), 2);
    let q = MessageQuery {
        sent_before: Some(101),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(s.messages(a.sid, q).await.unwrap().items.len(), 2);
    // Another account sees none of them.
    let other = account(None);
    s.create_account(other.clone()).await.unwrap();
    let q = MessageQuery {
        limit: 50,
        ..Default::default()
    };
    assert!(s.messages(other.sid, q).await.unwrap().items.is_empty());
}

async fn opt_outs_toggle(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    assert!(!s.is_opted_out(a.sid, "+14155552671").await.unwrap());
    s.set_opt_out(a.sid, "+14155552671", true, 1).await.unwrap();
    s.set_opt_out(a.sid, "+14155552671", true, 2).await.unwrap();
    assert!(s.is_opted_out(a.sid, "+14155552671").await.unwrap());
    s.set_opt_out(a.sid, "+14155552671", false, 3)
        .await
        .unwrap();
    assert!(!s.is_opted_out(a.sid, "+14155552671").await.unwrap());

    // An outbound message to an opted-out handset is not written, jobs included; to
    // another handset, or from another account, it is.
    let other = account(None);
    s.create_account(other.clone()).await.unwrap();
    s.set_opt_out(a.sid, "+14155552671", true, 4).await.unwrap();
    let jobs_before = s.pending_jobs().await.unwrap().len();
    let route = |m: &Message| NewJob {
        kind: JobKind::Route,
        subject: m.sid,
        run_at: 0,
        payload: String::new(),
    };
    let blocked = message(a.sid, 10, "+14155552671");
    assert_eq!(
        s.insert_outbound(blocked.clone(), vec![route(&blocked)])
            .await
            .unwrap(),
        None
    );
    assert!(s.message(blocked.sid).await.unwrap().is_none());
    assert_eq!(s.pending_jobs().await.unwrap().len(), jobs_before);
    for m in [
        message(a.sid, 11, "+14155552672"),
        message(other.sid, 12, "+14155552671"),
    ] {
        let jobs = s.insert_outbound(m.clone(), vec![route(&m)]).await.unwrap();
        assert_eq!(jobs.map(|j| j.len()), Some(1));
        assert_eq!(s.message(m.sid).await.unwrap().map(|x| x.sid), Some(m.sid));
    }
    // Opted in again: written.
    s.set_opt_out(a.sid, "+14155552671", false, 5)
        .await
        .unwrap();
    assert!(
        s.insert_outbound(blocked.clone(), Vec::new())
            .await
            .unwrap()
            .is_some()
    );
}

async fn services_pool_and_round_robin(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let svc = MessagingService {
        sid: Sid::generate(SidPrefix::MessagingService),
        account_sid: a.sid,
        config: ServiceConfig {
            friendly_name: Some("svc".into()),
            ..Default::default()
        },
        created: 1,
        updated: 1,
    };
    s.create_service(svc.clone()).await.unwrap();
    let n = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        account_sid: a.sid,
        phone_number: "+14155550998".into(),
        config: NumberConfig::default(),
        created: 1,
        updated: 1,
    };
    s.create_number(n.clone()).await.unwrap();
    s.add_service_number(svc.sid, n.sid, 2).await.unwrap();
    assert!(matches!(
        s.add_service_number(svc.sid, n.sid, 2).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.service_numbers(svc.sid).await.unwrap()[0].0.sid, n.sid);
    assert_eq!(
        s.number_service(n.sid).await.unwrap().map(|x| x.sid),
        Some(svc.sid)
    );
    assert_eq!(s.next_sender_counter(svc.sid).await.unwrap(), 0);
    assert_eq!(s.next_sender_counter(svc.sid).await.unwrap(), 1);
    assert!(s.remove_service_number(svc.sid, n.sid).await.unwrap());
    assert!(s.number_service(n.sid).await.unwrap().is_none());
    assert!(s.delete_service(svc.sid).await.unwrap());
    assert!(s.service(svc.sid).await.unwrap().is_none());
}

async fn sticky_senders_are_per_service_and_recipient_and_agree_under_concurrency(
    store: &Arc<dyn Store>,
) {
    let s = &**store;
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let service = || MessagingService {
        sid: Sid::generate(SidPrefix::MessagingService),
        account_sid: a.sid,
        config: ServiceConfig::default(),
        created: 1,
        updated: 1,
    };
    let (svc, other) = (service(), service());
    s.create_service(svc.clone()).await.unwrap();
    s.create_service(other.clone()).await.unwrap();
    let (alice, bob) = ("+14155550001", "+14155550002");
    let (n1, n2, n3) = ("+14155550101", "+14155550102", "+14155550103");

    assert_eq!(s.sticky_sender(svc.sid, alice).await.unwrap(), None);
    assert_eq!(
        s.stick_sender(svc.sid, alice, n1, None, 1).await.unwrap(),
        n1
    );
    // A first send that lost a race keeps the winner's sender, and so does replacing a
    // sender that is not the one stuck.
    assert_eq!(
        s.stick_sender(svc.sid, alice, n2, None, 2).await.unwrap(),
        n1
    );
    assert_eq!(
        s.stick_sender(svc.sid, alice, n2, Some(n3), 2)
            .await
            .unwrap(),
        n1
    );
    assert_eq!(
        s.sticky_sender(svc.sid, alice).await.unwrap().as_deref(),
        Some(n1)
    );
    // One mapping per service and recipient.
    assert_eq!(s.sticky_sender(svc.sid, bob).await.unwrap(), None);
    assert_eq!(s.sticky_sender(other.sid, alice).await.unwrap(), None);
    assert_eq!(
        s.stick_sender(other.sid, alice, n3, None, 3).await.unwrap(),
        n3
    );
    // A sender that left the pool is replaced when the caller names it.
    assert_eq!(
        s.stick_sender(svc.sid, alice, n2, Some(n1), 4)
            .await
            .unwrap(),
        n2
    );
    assert_eq!(
        s.sticky_sender(svc.sid, alice).await.unwrap().as_deref(),
        Some(n2)
    );

    // First sends racing for one recipient all get the same answer.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .stick_sender(svc.sid, bob, &format!("+1415555020{i}"), None, 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in racers {
        answers.push(r.await.unwrap());
    }
    let stuck = s.sticky_sender(svc.sid, bob).await.unwrap().unwrap();
    assert!(
        answers.iter().all(|x| *x == stuck),
        "{answers:?} vs {stuck}"
    );

    // Deleting the service deletes its mappings, and only its own.
    assert!(s.delete_service(svc.sid).await.unwrap());
    assert_eq!(s.sticky_sender(svc.sid, alice).await.unwrap(), None);
    assert_eq!(s.sticky_sender(svc.sid, bob).await.unwrap(), None);
    assert_eq!(
        s.sticky_sender(other.sid, alice).await.unwrap().as_deref(),
        Some(n3)
    );
}

async fn smpp_credentials_are_unique_per_system_id_and_scoped_to_their_account(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let b = account(None);
    s.create_account(b.clone()).await.unwrap();
    assert!(s.smpp_credentials(a.sid).await.unwrap().is_empty());
    assert!(
        s.smpp_credential_by_system_id("conf_a1")
            .await
            .unwrap()
            .is_none()
    );

    // Created out of SID order on purpose: listing follows the creation time.
    let second = smpp_credential(a.sid, "conf_a2", 20);
    let first = smpp_credential(a.sid, "conf_a1", 10);
    s.create_smpp_credential(second.clone()).await.unwrap();
    s.create_smpp_credential(first.clone()).await.unwrap();
    assert_eq!(
        s.smpp_credentials(a.sid).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        s.smpp_credential_by_system_id("conf_a1").await.unwrap(),
        Some(first.clone())
    );

    // A system_id is unique across accounts: a bind names nothing else.
    let taken_elsewhere = smpp_credential(b.sid, "conf_a1", 30);
    assert!(matches!(
        s.create_smpp_credential(taken_elsewhere).await,
        Err(StoreError::Conflict(_))
    ));
    let taken_here = smpp_credential(a.sid, "conf_a2", 31);
    assert!(matches!(
        s.create_smpp_credential(taken_here).await,
        Err(StoreError::Conflict(_))
    ));
    // Lookups are exact: case and surrounding text matter.
    assert!(
        s.smpp_credential_by_system_id("CONF_A1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.smpp_credential_by_system_id("conf_a")
            .await
            .unwrap()
            .is_none()
    );
    // A duplicate SID is refused too.
    let same_sid = SmppCredential {
        system_id: "conf_a3".into(),
        ..first.clone()
    };
    assert!(matches!(
        s.create_smpp_credential(same_sid).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.smpp_credentials(b.sid).await.unwrap().is_empty());
    let b1 = smpp_credential(b.sid, "conf_b1", 40);
    s.create_smpp_credential(b1.clone()).await.unwrap();
    assert_eq!(s.smpp_credentials(b.sid).await.unwrap(), vec![b1.clone()]);

    // Another account cannot delete it, and a missing SID deletes nothing.
    assert!(!s.delete_smpp_credential(b.sid, first.sid).await.unwrap());
    assert!(
        !s.delete_smpp_credential(a.sid, Sid::generate(SidPrefix::SmppCredential))
            .await
            .unwrap()
    );
    assert_eq!(s.smpp_credentials(a.sid).await.unwrap().len(), 2);
    assert!(s.delete_smpp_credential(a.sid, first.sid).await.unwrap());
    assert!(!s.delete_smpp_credential(a.sid, first.sid).await.unwrap());
    assert!(
        s.smpp_credential_by_system_id("conf_a1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.smpp_credentials(a.sid).await.unwrap(), vec![second]);
    // A deleted system_id can be issued again, to any account.
    let reissued = smpp_credential(b.sid, "conf_a1", 50);
    s.create_smpp_credential(reissued.clone()).await.unwrap();
    assert_eq!(
        s.smpp_credential_by_system_id("conf_a1").await.unwrap(),
        Some(reissued.clone())
    );
    assert_eq!(s.smpp_credentials(b.sid).await.unwrap(), vec![b1, reissued]);
}

async fn feedback_is_one_outcome_per_message_and_reports_what_it_replaced(s: &dyn Store) {
    use FeedbackOutcome::{Confirmed, Unconfirmed};
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    let mut m = message(a.sid, 10, "+14155552671");
    m.provide_feedback = true;
    s.insert_message(m.clone(), vec![]).await.unwrap();
    let other = message(a.sid, 11, "+14155552672");
    s.insert_message(other.clone(), vec![]).await.unwrap();

    // No message, no feedback: nothing is written.
    let missing = Sid::generate(SidPrefix::Message);
    assert_eq!(s.set_feedback(missing, Confirmed, 20).await.unwrap(), None);
    assert_eq!(s.feedback(missing).await.unwrap(), None);
    assert_eq!(s.feedback(m.sid).await.unwrap(), None);

    // The first report creates it.
    let first = s.set_feedback(m.sid, Confirmed, 20).await.unwrap().unwrap();
    let created = Feedback {
        message_sid: m.sid,
        outcome: Confirmed,
        created: 20,
        updated: 20,
    };
    assert_eq!(
        first,
        FeedbackSet {
            feedback: created.clone(),
            previous: None
        }
    );
    assert_eq!(s.feedback(m.sid).await.unwrap(), Some(created));

    // A later one replaces the outcome and moves `updated`, keeping `created`.
    let flip = s
        .set_feedback(m.sid, Unconfirmed, 30)
        .await
        .unwrap()
        .unwrap();
    let flipped = Feedback {
        message_sid: m.sid,
        outcome: Unconfirmed,
        created: 20,
        updated: 30,
    };
    assert_eq!(flip.feedback, flipped);
    assert_eq!(flip.previous, Some(Confirmed));
    assert_eq!(s.feedback(m.sid).await.unwrap(), Some(flipped));

    // Repeating an outcome is an update too, and says what it repeated.
    let again = s
        .set_feedback(m.sid, Unconfirmed, 40)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.previous, Some(Unconfirmed));
    assert_eq!((again.feedback.created, again.feedback.updated), (20, 40));

    // A clock behind the first report never puts `updated` before `created`.
    let behind = s.set_feedback(m.sid, Confirmed, 5).await.unwrap().unwrap();
    assert_eq!(behind.previous, Some(Unconfirmed));
    assert_eq!(
        (
            behind.feedback.outcome,
            behind.feedback.created,
            behind.feedback.updated
        ),
        (Confirmed, 20, 20)
    );

    // Each message has its own; the store does not judge ProvideFeedback.
    assert_eq!(s.feedback(other.sid).await.unwrap(), None);
    let o = s
        .set_feedback(other.sid, Unconfirmed, 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.feedback.outcome, o.previous), (Unconfirmed, None));
    assert_eq!(s.feedback(m.sid).await.unwrap().unwrap().outcome, Confirmed);

    // Deleting a message deletes its feedback, and it cannot be reported any more.
    assert!(s.delete_message(m.sid).await.unwrap());
    assert_eq!(s.feedback(m.sid).await.unwrap(), None);
    assert_eq!(s.set_feedback(m.sid, Confirmed, 60).await.unwrap(), None);
    assert_eq!(s.feedback(m.sid).await.unwrap(), None);
    assert_eq!(
        s.feedback(other.sid).await.unwrap().unwrap().outcome,
        Unconfirmed
    );
}

async fn a_lease_has_one_holder_until_it_runs_out_or_is_released(s: &dyn Store) {
    let name = "conformance/term";
    // Free: granted, first epoch.
    let a1 = s
        .acquire_lease(name, "a", 1_000, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a1,
        Lease {
            name: name.into(),
            holder: "a".into(),
            expires_at: 1_100,
            epoch: 1
        }
    );
    assert!(a1.is_held_at(1_099) && !a1.is_held_at(1_100));

    // Held: refused to another holder, up to the last millisecond.
    assert_eq!(s.acquire_lease(name, "b", 1_000, 500).await.unwrap(), None);
    assert_eq!(
        s.acquire_lease(name, "b", 1_000, 1_099).await.unwrap(),
        None
    );

    // Renewed by its holder: the term (epoch) goes on, the expiry moves.
    let a2 = s
        .acquire_lease(name, "a", 1_000, 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a2.holder.as_str(), a2.expires_at, a2.epoch),
        ("a", 1_900, 1)
    );
    assert_eq!(
        s.acquire_lease(name, "b", 1_000, 1_500).await.unwrap(),
        None
    );

    // Run out: another holder takes it over in a new term, and the old holder's late
    // renewal is refused.
    let b1 = s
        .acquire_lease(name, "b", 1_000, 1_900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b1.holder.as_str(), b1.expires_at, b1.epoch),
        ("b", 2_900, 2)
    );
    assert_eq!(
        s.acquire_lease(name, "a", 1_000, 2_000).await.unwrap(),
        None
    );
    assert_eq!(s.leases(name).await.unwrap(), vec![b1.clone()]);

    // Released only by its holder; then free at once, in a new term even for the same
    // holder. The row stays, so epochs never go back.
    assert!(!s.release_lease(name, "a").await.unwrap());
    assert!(s.release_lease(name, "b").await.unwrap());
    assert!(!s.release_lease(name, "b").await.unwrap());
    let released = s.leases(name).await.unwrap();
    assert_eq!(released.len(), 1);
    assert!(!released[0].is_held_at(2_000));
    let b2 = s
        .acquire_lease(name, "b", 1_000, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b2.expires_at, b2.epoch), (3_000, 3));

    // A holder that let its own lease run out starts a new term too.
    let b3 = s
        .acquire_lease(name, "b", 1_000, 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b3.expires_at, b3.epoch), (4_000, 4));

    // Leases are independent of each other.
    let other = s
        .acquire_lease("conformance/other", "a", 1_000, 3_500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.epoch, 1);
    assert!(!s.release_lease("conformance/never", "a").await.unwrap());
}

async fn contending_holders_get_a_lease_once(s: &Arc<dyn Store>) {
    // Holders ask at once, from tasks of their own, for a new name and then for a run-out
    // one: one wins each round (on PostgreSQL over several pooled connections in parallel).
    let mut expected_epoch = 0;
    for (round, now) in [(0, 10_000), (1, 20_000), (2, 30_000)] {
        let mut asks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let s = s.clone();
            asks.spawn(async move {
                s.acquire_lease("conformance/contended", &format!("node-{i}"), 5_000, now)
                    .await
            });
        }
        let mut winners = Vec::new();
        while let Some(grant) = asks.join_next().await {
            winners.extend(grant.unwrap().unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        expected_epoch += 1;
        assert_eq!(winners[0].epoch, expected_epoch);
        assert_eq!(
            s.leases("conformance/contended").await.unwrap(),
            winners,
            "round {round}"
        );
    }
}

async fn a_job_runs_for_one_live_owner(s: &dyn Store) {
    let prefix = "claims/node/";
    let now = 1_000;
    let jobs = s
        .insert_jobs(vec![NewJob {
            kind: JobKind::Webhook,
            subject: Sid::generate(SidPrefix::Message),
            run_at: 0,
            payload: "{}".into(),
        }])
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let id = jobs[0].id;
    // Two live nodes.
    for holder in ["a", "b"] {
        let presence = format!("{prefix}{holder}");
        s.acquire_lease(&presence, holder, 10_000, now)
            .await
            .unwrap()
            .unwrap();
    }
    // The first to claim it runs it; its own copies still may; the other's may not.
    assert!(s.claim_job(id, "a", prefix, now).await.unwrap());
    assert!(s.claim_job(id, "a", prefix, now).await.unwrap());
    assert!(!s.claim_job(id, "b", prefix, now).await.unwrap());
    // Its owner's presence runs out (a dead node) or is released (a stopped one): the
    // job is anyone's, and then the new owner's alone.
    assert!(s.claim_job(id, "b", prefix, now + 10_000).await.unwrap());
    assert!(!s.claim_job(id, "a", prefix, now).await.unwrap());
    assert!(s.release_lease(&format!("{prefix}b"), "b").await.unwrap());
    assert!(s.claim_job(id, "a", prefix, now).await.unwrap());
    // Claims and retries leave the job itself alone.
    let retried = s.retry_job(id, 5).await.unwrap().unwrap();
    assert_eq!((retried.id, retried.attempts), (id, 1));
    assert!(!s.claim_job(id, "b", prefix, now).await.unwrap());
    // A completed job is nobody's to run.
    s.complete_jobs(vec![id]).await.unwrap();
    assert!(!s.claim_job(id, "a", prefix, now).await.unwrap());
    assert!(!s.claim_job(id + 1_000_000, "a", prefix, now).await.unwrap());
}

async fn contending_claims_give_each_job_one_owner(s: &Arc<dyn Store>) {
    // Live nodes claim the same jobs at once, each several times (copies of one job): per
    // job, every claim that succeeds is one holder's (on PostgreSQL, many land in one
    // batch of the group commit).
    let prefix = "contend/node/";
    let holders = ["a", "b", "c"];
    for h in holders {
        s.acquire_lease(&format!("{prefix}{h}"), h, 60_000, 0)
            .await
            .unwrap()
            .unwrap();
    }
    let new = |n: usize| NewJob {
        kind: JobKind::Webhook,
        subject: Sid::generate(SidPrefix::Message),
        run_at: 0,
        payload: format!("{{\"n\":{n}}}"),
    };
    let jobs = s.insert_jobs((0..20).map(new).collect()).await.unwrap();
    let mut claims = tokio::task::JoinSet::new();
    for job in &jobs {
        for h in holders {
            for _ in 0..3 {
                let (s, id) = (s.clone(), job.id);
                claims.spawn(async move { (id, h, s.claim_job(id, h, prefix, 1).await) });
            }
        }
    }
    let mut owners: std::collections::HashMap<i64, std::collections::BTreeSet<&str>> =
        Default::default();
    while let Some(done) = claims.join_next().await {
        let (id, h, claimed) = done.unwrap();
        if claimed.unwrap() {
            owners.entry(id).or_default().insert(h);
        }
    }
    for job in &jobs {
        let who = owners.get(&job.id).cloned().unwrap_or_default();
        assert_eq!(who.len(), 1, "job {}: taken by {who:?}", job.id);
    }
    s.complete_jobs(jobs.iter().map(|j| j.id).collect())
        .await
        .unwrap();
}

async fn retention_deletes_old_final_messages_with_what_is_kept_about_them(s: &dyn Store) {
    let a = account(None);
    s.create_account(a.clone()).await.unwrap();
    // Times before every other check's messages, which stay.
    let at = |t: i64, status: MessageStatus| Message {
        status,
        updated: t,
        ..message(a.sid, t, "+447911000009")
    };
    let old: Vec<Message> = (0..3)
        .map(|i| at(-3_000 + i, MessageStatus::Delivered))
        .collect();
    let old_received = Message {
        direction: Direction::Inbound,
        ..at(-2_900, MessageStatus::Received)
    };
    let in_flight = at(-2_800, MessageStatus::Sent);
    let with_job = at(-2_700, MessageStatus::Failed);
    let recent = at(-100, MessageStatus::Delivered);
    for m in old.iter().chain([&old_received, &in_flight, &recent]) {
        s.insert_message(m.clone(), Vec::new()).await.unwrap();
    }
    let callback = NewJob {
        kind: JobKind::Webhook,
        subject: with_job.sid,
        run_at: 0,
        payload: "{}".into(),
    };
    let jobs = s
        .insert_message(with_job.clone(), vec![callback])
        .await
        .unwrap();
    s.add_route_attempts(vec![attempt(
        old[0].sid,
        "a",
        -3_000,
        AttemptResult::Accepted,
        Some("x1"),
    )])
    .await
    .unwrap();
    s.set_feedback(old[0].sid, FeedbackOutcome::Confirmed, -2_999)
        .await
        .unwrap();

    // Oldest first, `limit` at a time.
    assert_eq!(s.delete_stale_messages(-1_000, 2).await.unwrap(), 2);
    assert_eq!(s.message(old[0].sid).await.unwrap(), None);
    assert_eq!(s.message(old[1].sid).await.unwrap(), None);
    assert!(s.message(old[2].sid).await.unwrap().is_some());
    assert!(s.route_attempts(old[0].sid).await.unwrap().is_empty());
    assert_eq!(s.feedback(old[0].sid).await.unwrap(), None);
    assert_eq!(s.delete_stale_messages(-1_000, 100).await.unwrap(), 2);
    assert_eq!(s.message(old[2].sid).await.unwrap(), None);
    assert_eq!(s.message(old_received.sid).await.unwrap(), None);
    // Not final, still with a job, or not old enough: kept.
    for m in [&in_flight, &with_job, &recent] {
        assert!(s.message(m.sid).await.unwrap().is_some(), "{}", m.status);
    }
    assert_eq!(s.delete_stale_messages(-1_000, 100).await.unwrap(), 0);
    // Once its job is done, the old failed one goes too.
    s.complete_jobs(jobs.iter().map(|j| j.id).collect())
        .await
        .unwrap();
    assert_eq!(s.delete_stale_messages(-1_000, 100).await.unwrap(), 1);
    assert_eq!(s.message(with_job.sid).await.unwrap(), None);
}

async fn leases_are_listed_by_literal_prefix(s: &dyn Store) {
    for name in [
        "list/node/b",
        "list/node/a",
        "list/leader",
        "list/node_x",
        "list%/z",
    ] {
        s.acquire_lease(name, "h", 1_000, 0).await.unwrap().unwrap();
    }
    let names = |v: Vec<Lease>| v.into_iter().map(|l| l.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.leases("list/node/").await.unwrap()),
        ["list/node/a", "list/node/b"]
    );
    // `%` and `_` are characters, not patterns.
    assert_eq!(names(s.leases("list%").await.unwrap()), ["list%/z"]);
    assert_eq!(
        names(s.leases("list/node_").await.unwrap()),
        ["list/node_x"]
    );
    assert_eq!(s.leases("list/").await.unwrap().len(), 4);
    assert!(s.leases("nothing/").await.unwrap().is_empty());

    // Released ones under a prefix can be deleted; held and run-out ones stay.
    assert!(s.release_lease("list/node/a", "h").await.unwrap());
    assert!(s.release_lease("list/node_x", "h").await.unwrap());
    assert_eq!(s.delete_released_leases("list/node/").await.unwrap(), 1);
    assert_eq!(
        names(s.leases("list/").await.unwrap()),
        ["list/leader", "list/node/b", "list/node_x"]
    );
    assert_eq!(s.delete_released_leases("list/node/").await.unwrap(), 0);
}
