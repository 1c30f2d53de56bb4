"""The request lifecycle: every transition from every state, guards, permissions,
inputs, audit events and side effects."""

import datetime

import pytest
from django.core import mail
from django.test import TestCase
from django.utils import timezone

from requests_app.models import Actor, AuditEvent, PrivacyRequest, State
from requests_app.models.privacy_request import ActorKind, TransitionInputError
from requests_app.services.requests.filing import NewRequest, do_receive_request
from requests_app.services.requests.lifecycle import (
    TransitionRefused,
    available_transitions,
    do_transition,
)
from tests.conftest import committed, file_request

pytestmark = pytest.mark.django_db

TRANSITIONS = {t.name: t for t in PrivacyRequest(state=State.PENDING_VERIFICATION)
               .get_all_state_transitions()}


def test_the_machine_has_exactly_the_expected_steps(expected_sources):
    assert set(TRANSITIONS) == set(expected_sources)


def actor_for(name, manager):
    actors = TRANSITIONS[name].custom["actors"]
    if ActorKind.STAFF in actors:
        return Actor.staff(manager)
    if ActorKind.SYSTEM in actors:
        return Actor.system()
    return Actor.consumer()


def request_where_guards_hold(state, days_ago, name=""):
    # Virginia has an appeal process and an extension; received 40 days ago, the
    # verification window (30 days) has run out and the due date (day 45) is ahead.
    # The steps on a deletion's dry run need a deletion.
    kind = "deletion" if "erasure" in name else "opt_out_sale" if "opt_out" in name else "access"
    if name == "verify_manually":  # by hand, a copy also needs a signed declaration: a
        kind = "know_categories"   # request for categories (test_manual_verification.py)
    if name == "merge":  # an earlier open request for the same right: this one duplicates it
        file_request(request_type=kind, jurisdiction="VA", received_at=days_ago(41))
    request = file_request(request_type=kind, jurisdiction="VA", state=state,
                           received_at=days_ago(40))
    if name == "close_quietly":  # answered, and nothing changed for 40 days
        PrivacyRequest.objects.filter(pk=request.pk).update(updated_at=days_ago(40))
        request.refresh_from_db()
    return request


CASES = [(name, state) for name in sorted(TRANSITIONS) for state in State.values]


@pytest.mark.parametrize("name,state", CASES)
def test_each_transition_from_each_state(
        name, state, alice, days_ago, transition_inputs, expected_sources):
    request = request_where_guards_hold(state, days_ago, name)
    events_before = AuditEvent.objects.count()
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    allowed = state in expected_sources[name]
    actor = actor_for(name, alice)

    if allowed:
        moved = do_transition(request.pk, name, actor=actor, **transition_inputs.get(name, {}))
        target = TRANSITIONS[name].target
        # A transition with no target (the extension) keeps the state.
        assert moved.state == (target or state)
        # (An opt-out took its system steps once already while it was filed.)
        event = AuditEvent.objects.filter(request=request, action=f"request.{name}",
                                          id__gt=last_id).get()
        assert (event.from_state, event.to_state) == (state, moved.state)
        assert event.actor_label == actor.label
    else:
        with pytest.raises(TransitionRefused):
            do_transition(request.pk, name, actor=actor, **transition_inputs.get(name, {}))
        request.refresh_from_db()
        assert request.state == state
        assert AuditEvent.objects.count() == events_before


@pytest.mark.parametrize("name,state", [("approve_opt_out", State.IN_REVIEW),
                                        ("confirm_opt_out", State.RESULTS_READY)])
def test_only_an_opt_out_is_approved_and_confirmed_by_the_system(name, state):
    request = file_request(request_type="access", state=state)
    with pytest.raises(TransitionRefused, match="Only an opt-out"):
        do_transition(request.pk, name, actor=Actor.system())


def test_the_state_field_cannot_be_assigned_directly():
    request = file_request()
    with pytest.raises(AttributeError):
        request.state = State.COMPLETED


def test_the_audit_event_records_actor_states_and_reason(alice):
    request = file_request(state=State.IN_REVIEW)
    do_transition(request.pk, "deny", actor=Actor.staff(alice),
                  reason_code="unfounded", detail="Fourth identical request this month.")
    event = AuditEvent.objects.get(request=request, action="request.deny")
    assert event.actor == alice and event.actor_kind == "staff"
    assert (event.from_state, event.to_state) == ("in_review", "denied")
    # Staff free text stays out of the trail (it may name people); the code is kept.
    assert event.reason == "unfounded"
    assert event.data == {"denial_reason": "unfounded", "repeat_count": 1,
                          "repeat_window_months": 12}
    request.refresh_from_db()
    assert request.denial_detail == "Fourth identical request this month."


# --- who may take which step ---------------------------------------------------------


def test_an_analyst_may_approve_an_access_request_but_not_a_deletion(bob):
    access = file_request(request_type="access", state=State.IN_REVIEW)
    deletion = file_request(request_type="deletion", state=State.IN_REVIEW)
    assert do_transition(access.pk, "approve", actor=Actor.staff(bob)).state == State.APPROVED
    with pytest.raises(TransitionRefused, match="permission"):
        do_transition(deletion.pk, "approve", actor=Actor.staff(bob))
    deletion.refresh_from_db()
    assert deletion.state == State.IN_REVIEW


def test_a_manager_may_approve_a_deletion(alice):
    deletion = file_request(request_type="deletion", state=State.IN_REVIEW)
    assert do_transition(deletion.pk, "approve", actor=Actor.staff(alice)).state == State.APPROVED


def test_an_analyst_may_not_deny(bob, transition_inputs):
    request = file_request(state=State.IN_REVIEW)
    with pytest.raises(TransitionRefused, match="permission"):
        do_transition(request.pk, "deny", actor=Actor.staff(bob), **transition_inputs["deny"])


def test_an_auditor_may_take_no_step(charlie, days_ago):
    for state in State.values:
        request = request_where_guards_hold(state, days_ago)
        assert available_transitions(request, Actor.staff(charlie)) == []


def test_a_deactivated_manager_may_take_no_step(alice):
    alice.is_active = False
    alice.save()
    request = file_request(state=State.IN_REVIEW)
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "approve", actor=Actor.staff(alice))


def test_staff_cannot_take_system_steps(alice, days_ago):
    request = file_request(received_at=days_ago(40))
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "expire", actor=Actor.staff(alice))


def test_the_consumer_may_cancel_but_not_verify_themself():
    request = file_request()
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "verify", actor=Actor.consumer())
    assert do_transition(request.pk, "cancel", actor=Actor.consumer()).state == State.CANCELLED


def test_the_consumer_cannot_cancel_once_fulfilment_started():
    request = file_request(state=State.FULFILLING)
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "cancel", actor=Actor.consumer())


def test_available_steps_come_from_the_machine(alice, bob):
    request = file_request(state=State.IN_REVIEW)
    assert set(available_transitions(request, Actor.staff(alice))) == {
        "approve", "deny", "cancel", "extend", "request_information"}
    assert set(available_transitions(request, Actor.staff(bob))) == {
        "approve", "cancel", "request_information"}


# --- guards and inputs ------------------------------------------------------------


def test_a_request_does_not_expire_before_the_verification_window_ends(days_ago):
    request = file_request(received_at=days_ago(29))
    with pytest.raises(TransitionRefused, match="not run out"):
        do_transition(request.pk, "expire", actor=Actor.system())


def test_a_denial_needs_a_reason_code_and_detail(alice):
    request = file_request(state=State.IN_REVIEW)
    with pytest.raises(TransitionInputError):
        do_transition(request.pk, "deny", actor=Actor.staff(alice), detail="because")
    with pytest.raises(TransitionInputError):
        do_transition(request.pk, "deny", actor=Actor.staff(alice), reason_code="exemption",
                      detail="  ")
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW and request.denial_reason == ""
    assert not AuditEvent.objects.filter(action="request.deny").exists()


def test_an_extension_needs_a_notice(alice):
    request = file_request(state=State.IN_REVIEW)
    with pytest.raises(TransitionInputError):
        do_transition(request.pk, "extend", actor=Actor.staff(alice), notice="")
    request.refresh_from_db()
    assert request.extended_due_on is None


def test_an_extension_moves_the_due_date_once(alice, transition_inputs):
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW)
    extended = do_transition(request.pk, "extend", actor=Actor.staff(alice),
                             **transition_inputs["extend"])
    assert extended.extended_due_on == request.due_on + datetime.timedelta(days=45)
    assert extended.current_due_on == extended.extended_due_on
    with pytest.raises(TransitionRefused, match="only once"):
        do_transition(request.pk, "extend", actor=Actor.staff(alice), **transition_inputs["extend"])


def test_an_extension_after_the_due_date_is_refused(alice, days_ago, transition_inputs):
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW, received_at=days_ago(46))
    assert request.due_on < timezone.localdate()
    with pytest.raises(TransitionRefused, match="on or before the original due date"):
        do_transition(request.pk, "extend", actor=Actor.staff(alice), **transition_inputs["extend"])


def test_an_extension_on_the_due_date_itself_is_allowed(alice, days_ago, transition_inputs):
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW, received_at=days_ago(45))
    assert request.due_on == timezone.localdate()
    do_transition(request.pk, "extend", actor=Actor.staff(alice), **transition_inputs["extend"])


def test_opt_outs_cannot_be_extended(alice, transition_inputs):
    request = file_request(request_type="opt_out_sale", jurisdiction="CA",
                           state=State.IN_REVIEW)
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "extend", actor=Actor.staff(alice), **transition_inputs["extend"])


def test_california_has_no_appeal_but_virginia_does(transition_inputs):
    california = file_request(jurisdiction="CA", state=State.DENIED)
    with pytest.raises(TransitionRefused, match="No appeal"):
        do_transition(california.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
    virginia = file_request(jurisdiction="VA", state=State.DENIED)
    appealed = do_transition(virginia.pk, "appeal", actor=Actor.consumer(),
                             **transition_inputs["appeal"])
    assert appealed.appeal_due_on == timezone.localdate() + datetime.timedelta(days=60)


def test_a_request_is_appealed_at_most_once(alice, transition_inputs):
    request = file_request(jurisdiction="VA", state=State.DENIED)
    do_transition(request.pk, "appeal", actor=Actor.consumer(), **transition_inputs["appeal"])
    do_transition(request.pk, "grant_appeal", actor=Actor.staff(alice),
                  **transition_inputs["grant_appeal"])
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW
    do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    with pytest.raises(TransitionRefused, match="No appeal"):
        do_transition(request.pk, "appeal", actor=Actor.consumer(), **transition_inputs["appeal"])


def test_the_consumers_appeal_text_stays_out_of_the_audit_trail():
    request = file_request(jurisdiction="VA", state=State.DENIED)
    do_transition(request.pk, "appeal", actor=Actor.consumer(),
                  text="My SSN is on the letter you sent me")
    event = AuditEvent.objects.get(request=request, action="request.appeal")
    assert "SSN" not in event.reason and "SSN" not in str(event.data)


def test_a_stale_form_is_refused(alice, bob):
    request = file_request(state=State.IN_REVIEW)
    do_transition(request.pk, "approve", actor=Actor.staff(bob))
    with pytest.raises(TransitionRefused, match="changed by someone else"):
        do_transition(request.pk, "cancel", actor=Actor.staff(alice),
                      expected_state=State.IN_REVIEW)
    request.refresh_from_db()
    assert request.state == State.APPROVED


# --- side effects ---------------------------------------------------------------


def test_filing_sends_the_acknowledgment_with_reference_and_due_date():
    request = file_request(jurisdiction="CA")
    request.refresh_from_db()
    assert request.acknowledged_at is not None
    (message,) = mail.outbox
    assert message.to == ["pat.doe@example.com"]
    assert request.reference in message.subject
    assert request.due_on.strftime("%B %-d, %Y") in message.body
    assert request.reference in message.alternatives[0][0]


def test_side_effects_wait_for_the_commit(
        alice, django_capture_on_commit_callbacks, transition_inputs):
    request = file_request(state=State.IN_REVIEW)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    assert mail.outbox == [] and len(callbacks) == 1
    callbacks[0]()
    (message,) = mail.outbox
    assert "Records kept for a pending legal claim." in message.body
    assert "Attorney General" in message.body  # Virginia's appeal instructions


def test_verification_moves_the_request_on_to_review():
    request = file_request()
    with committed():
        verified = do_transition(request.pk, "verify", actor=Actor.system())
    assert verified.state == State.VERIFIED
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW  # the follow-up task ran on commit


def test_an_email_is_sent_once_even_if_its_task_runs_twice(alice, transition_inputs):
    from requests_app.models import OutgoingEmail
    from requests_app.services.notices.outbox import send_email

    request = file_request(state=State.IN_REVIEW)
    with committed():
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    email = OutgoingEmail.objects.get(request=request, notice="denied")
    assert email.sent_at is not None
    sent = len(mail.outbox)
    assert send_email(email.pk) is False
    assert len(mail.outbox) == sent
    recorded = AuditEvent.objects.filter(request=request, action="email.sent",
                                         data__notice="denied")
    assert recorded.count() == 1
    assert "pat.doe" not in str(recorded.get().data)  # the address is hashed


def test_an_email_says_what_was_true_when_its_event_happened(alice):
    """Rendered at the event, not when a worker gets round to it."""
    from requests_app.models import OutgoingEmail

    request = file_request(jurisdiction="VA", state=State.UNDER_APPEAL)
    with TestCase.captureOnCommitCallbacks(execute=False):  # the worker is slow today
        do_transition(request.pk, "deny_appeal", actor=Actor.staff(alice),
                      reason="The claim is still pending.")
    do_transition(request.pk, "close", actor=Actor.system())
    email = OutgoingEmail.objects.get(request=request, notice="appeal_denied")
    assert "upheld our original decision" in email.body_text
    assert "The claim is still pending." in email.body_text


def test_a_lost_email_is_sent_by_the_reconciler(alice, days_ago, transition_inputs):
    import time_machine

    from requests_app.models import OutgoingEmail
    from requests_app.services.reconciler import reconcile

    request = file_request(state=State.IN_REVIEW)
    with TestCase.captureOnCommitCallbacks(execute=False):  # the broker lost the task
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    email = OutgoingEmail.objects.get(request=request, notice="denied")
    assert email.sent_at is None
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=6)):
        assert reconcile()["emails"] == 1
    email.refresh_from_db()
    assert email.sent_at is not None


def test_an_opt_out_needs_no_verification_nor_review_and_never_expires(days_ago):
    request = file_request(request_type="opt_out_sale", jurisdiction="CA",
                           received_at=days_ago(31))
    request.refresh_from_db()
    # No source takes opt-outs here: honoured at once, by the system alone.
    assert request.state == State.COMPLETED
    steps = list(AuditEvent.objects.filter(request=request, action__startswith="request.")
                 .order_by("id").values_list("action", "actor_kind"))
    assert steps == [("request.received", "consumer"), ("request.verify", "system"),
                     ("request.start_review", "system"), ("request.approve_opt_out", "system"),
                     ("request.start_fulfilment", "system"),
                     ("request.mark_results_ready", "system"),
                     ("request.confirm_opt_out", "system")]
    event = AuditEvent.objects.get(request=request, action="request.verify")
    assert "no identity verification" in event.reason


def test_a_closed_denial_can_still_be_appealed(alice, transition_inputs):
    request = file_request(jurisdiction="VA", state=State.IN_REVIEW)
    do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    do_transition(request.pk, "close", actor=Actor.system())
    appealed = do_transition(request.pk, "appeal", actor=Actor.consumer(),
                             **transition_inputs["appeal"])
    assert appealed.state == State.UNDER_APPEAL


def test_an_unanswered_request_cannot_be_appealed(transition_inputs):
    request = file_request(jurisdiction="VA")
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "appeal", actor=Actor.consumer(), **transition_inputs["appeal"])


def test_an_unknown_jurisdiction_denial_names_every_route(alice, transition_inputs):
    request = file_request(jurisdiction="UNKNOWN", state=State.IN_REVIEW)
    with committed():
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    body = mail.outbox[-1].body
    assert "appeal" in body and "Attorney General" in body and "supervisory authority" in body


def test_identity_can_be_purged_while_the_request_record_stays():
    request = file_request(state=State.CLOSED)
    request.identity.delete()
    request = PrivacyRequest.objects.get(pk=request.pk)
    assert request.reference and not hasattr(request, "identity")


def test_rows_recorded_on_receipt_are_filed_with_the_request_or_not_at_all():
    """NewRequest.on_received runs in the transaction that files the request: if it
    fails, nothing of the request is left (no row, no event, no acknowledgment)."""
    def fails(request):
        assert PrivacyRequest.objects.filter(pk=request.pk).exists()  # filed so far
        raise RuntimeError("the evidence could not be stored")

    new = NewRequest(request_type="access", jurisdiction="VA", channel="web",
                     name="Pat Doe", email="pat.doe@example.com", on_received=fails)
    with pytest.raises(RuntimeError):
        do_receive_request(new, actor=Actor.consumer())
    assert not PrivacyRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.received").exists()
    from requests_app.models import OutgoingEmail

    assert not OutgoingEmail.objects.exists()
