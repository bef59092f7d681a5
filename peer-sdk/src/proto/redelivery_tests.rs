//! Unit tests of redelivery control (progress, per-message ack timeout, maximum attempts)
//! and of the typed failure causes, driven by hand with a virtual clock.

use super::tests::{
    SESSION, core, deliveries, events, inst, msg, outcomes, req, sender_with, sent_ids, transmits,
};
use super::*;
use std::time::Duration;

/// Fires every timer due up to and including `until`; returns the time of the last one.
fn run_timers_until(c: &mut Core, until: Instant) {
    while let Some(t) = c.poll_timeout().filter(|t| *t <= until) {
        c.handle_timeout(t);
    }
}

#[test]
fn progress_restarts_the_ack_timeout_so_the_attempt_is_not_retried() {
    let t0 = Instant::now();
    let (a, b) = (inst("a"), inst("b"));
    let mut c = sender_with(&[&a, &b], t0);
    let id = c.handle_send(t0, req(t0, None));
    let first = sent_ids(&transmits(&mut c))[0].0.clone();
    let link = LinkId(if first == "a" { 0 } else { 1 });
    let timeout = DeliveryConfig::for_test().ack_timeout;
    // Three ack timeouts pass; progress arrives every half timeout.
    let mut now = t0;
    for _ in 0..6 {
        now += timeout / 2;
        run_timers_until(&mut c, now);
        c.handle_frame(now, link, Frame::Progress { id }).unwrap();
    }
    assert!(sent_ids(&transmits(&mut c)).is_empty(), "no second attempt");
    c.handle_frame(now, link, Frame::Ack { ids: vec![id] })
        .unwrap();
    assert!(matches!(&outcomes(events(&mut c))[..], [(i, Outcome::Acked)] if *i == id));
}

#[test]
fn progress_from_an_instance_the_message_left_is_ignored() {
    let t0 = Instant::now();
    let (a, b) = (inst("a"), inst("b"));
    let mut c = sender_with(&[&a, &b], t0);
    let id = c.handle_send(t0, req(t0, None));
    let first = sent_ids(&transmits(&mut c))[0].0.clone();
    let other = LinkId(if first == "a" { 1 } else { 0 });
    let timeout = DeliveryConfig::for_test().ack_timeout;
    c.handle_frame(t0 + timeout / 2, other, Frame::Progress { id })
        .unwrap();
    run_timers_until(&mut c, t0 + timeout + Duration::from_millis(300));
    let retry = sent_ids(&transmits(&mut c));
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0].2, 2);
}

#[test]
fn per_message_ack_timeout_replaces_the_configured_one() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let mut r = req(t0, None);
    r.ack_timeout = Some(Duration::from_millis(40));
    c.handle_send(t0, r);
    transmits(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(40)));
}

#[test]
fn max_attempts_dead_letters_with_the_last_typed_cause() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let mut r = req(t0, None);
    r.max_attempts = std::num::NonZeroU32::new(3);
    let id = c.handle_send(t0, r);
    let mut attempts = 0;
    for _ in 0..10 {
        attempts += sent_ids(&transmits(&mut c)).len();
        let reason = "busy".to_owned();
        let nack = Frame::Nack {
            id,
            action: NackAction::Retry,
            reason,
        };
        c.handle_frame(t0, LinkId(0), nack).unwrap();
        let Some(t) = c.poll_timeout() else { break };
        c.handle_timeout(t);
    }
    assert_eq!(attempts, 3);
    let outs = outcomes(events(&mut c));
    let [(_, Outcome::DeadLettered(dl))] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(dl.attempts, 3);
    assert_eq!(
        dl.reason,
        DeadLetterReason::AttemptsExhausted {
            last_error: Cause::Nacked {
                instance: "a".into(),
                reason: "busy".into()
            }
        }
    );
}

#[test]
fn identity_mismatch_dead_letters_at_once_without_retrying() {
    let t0 = Instant::now();
    let (a, b) = (inst("a"), inst("b"));
    let mut c = sender_with(&[&a, &b], t0);
    let id = c.handle_send(t0, req(t0, None));
    let first = sent_ids(&transmits(&mut c))[0].0.clone();
    let bad = if first == "a" { &a } else { &b };
    let cause = Cause::IdentityMismatch {
        instance: first.clone(),
        detail: "wrong certificate".into(),
    };
    c.handle_unreachable(t0, bad, cause);
    assert!(sent_ids(&transmits(&mut c)).is_empty());
    let outs = outcomes(events(&mut c));
    assert!(
        matches!(&outs[..], [(i, Outcome::DeadLettered(dl))]
            if *i == id && dl.attempts == 1
            && matches!(&dl.reason, DeadLetterReason::IdentityMismatch { instance, .. } if *instance == first)),
        "{outs:?}"
    );
}

#[test]
fn waiting_messages_name_no_instances_or_an_unreachable_directory_at_their_deadline() {
    let t0 = Instant::now();
    let mut c = core();
    let deadline = t0 + Duration::from_secs(10);
    let empty = c.handle_send(t0, req(t0, None));
    c.handle_instances(t0, "svc", vec![]);
    let mut other = req(t0, None);
    other.service = "gone".into();
    let unreachable = c.handle_send(t0, other);
    let cause = Cause::DirectoryUnreachable {
        detail: "connection refused".into(),
    };
    c.handle_lookup_failed("gone", cause.clone());
    run_timers_until(&mut c, deadline);
    let mut outs = outcomes(events(&mut c));
    outs.sort_by_key(|(id, _)| *id);
    let reasons: Vec<_> = outs
        .iter()
        .map(|(id, o)| match o {
            Outcome::DeadLettered(dl) => (*id, dl.reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                empty,
                DeadLetterReason::DeadlineExceeded {
                    last_error: Some(Cause::NoInstances)
                }
            ),
            (
                unreachable,
                DeadLetterReason::DeadlineExceeded {
                    last_error: Some(cause)
                }
            ),
        ]
    );
}

/// A receiver whose sender said hello with protocol `version`, holding delivery 1.
fn receiver_holding_one(version: u8) -> (Core, DeliveryToken) {
    let t0 = Instant::now();
    let mut r = core();
    r.handle_link_up(LinkId(7), LinkKind::Inbound);
    let hello = Frame::Hello {
        version,
        session: SESSION,
        service: "src".into(),
        instance: "src-1".into(),
    };
    r.handle_frame(t0, LinkId(7), hello).unwrap();
    r.handle_frame(t0, LinkId(7), msg(1, false)).unwrap();
    let token = deliveries(events(&mut r))[0].token;
    (r, token)
}

#[test]
fn progress_is_sent_to_version_2_senders_only_and_only_while_handling() {
    let (mut r, token) = receiver_holding_one(2);
    r.handle_app_progress(token);
    let ts = transmits(&mut r);
    assert!(
        matches!(
            &ts[..],
            [Transmit::ToLink(LinkId(7), Frame::Progress { id: 1 })]
        ),
        "{ts:?}"
    );
    r.handle_app_outcome(Instant::now(), token, AppOutcome::Ack);
    transmits(&mut r);
    r.handle_app_progress(token);
    assert!(transmits(&mut r).is_empty(), "settled: no progress");

    let (mut old, token) = receiver_holding_one(1);
    old.handle_app_progress(token);
    assert!(
        transmits(&mut old).is_empty(),
        "a version 1 sender would not know the frame"
    );
}
