"""The audit trail's hash chain and the database's refusal to edit it."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from requests_app.models import Actor, AuditEvent, State
from requests_app.services.audit.chain import record_chain_head, verify_chain
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import file_request

pytestmark = pytest.mark.django_db


def some_history(alice):
    request = file_request(state=State.IN_REVIEW)
    do_transition(request.pk, "approve", actor=Actor.staff(alice))
    return request


def test_each_event_is_chained_to_the_one_before(alice):
    some_history(alice)
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) >= 3
    assert events[0].prev_hash == ""
    for before, after in zip(events, events[1:]):
        assert after.prev_hash == before.hash and len(after.hash) == 64
    report = verify_chain()
    assert report.intact and report.events == len(events) and report.head == events[-1].hash


def test_the_command_says_the_trail_is_intact(alice, capsys):
    some_history(alice)
    call_command("verify_audit_log")
    assert "intact" in capsys.readouterr().out


def test_the_database_refuses_to_update_or_delete_an_event(alice):
    some_history(alice)
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE requests_app_auditevent SET reason = 'x'")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM requests_app_auditevent")


def tamper(sql, params):
    """What an attacker with the database's owner role could do."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks, or no ALTER
            cursor.execute("ALTER TABLE requests_app_auditevent DISABLE TRIGGER "
                           "requests_app_audit_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE requests_app_auditevent ENABLE TRIGGER "
                           "requests_app_audit_append_only")


def test_an_altered_event_is_found_at_that_exact_event(alice):
    some_history(alice)
    target = AuditEvent.objects.order_by("id")[1]
    tamper("UPDATE requests_app_auditevent SET reason = %s WHERE id = %s",
           ["nothing to see", target.pk])
    report = verify_chain()
    assert report.broken_at.pk == target.pk and "altered" in report.problem
    with pytest.raises(CommandError, match=f"broken at event {target.pk} "):
        call_command("verify_audit_log")


def test_a_removed_event_is_found_where_the_gap_is(alice):
    some_history(alice)
    events = list(AuditEvent.objects.order_by("id"))
    removable = next(e for e in events[:-1] if e.action.startswith("config."))
    after = events[events.index(removable) + 1]
    tamper("DELETE FROM requests_app_auditevent WHERE id = %s", [removable.pk])
    report = verify_chain()
    assert report.broken_at.pk == after.pk and "removed" in report.problem


def test_the_chain_head_is_recorded_in_the_chain(alice):
    some_history(alice)
    head = AuditEvent.objects.order_by("-id").first().hash
    event = record_chain_head()
    assert event.action == "audit.chain_head"
    assert event.data["head"] == head and event.data["intact"] is True
    assert event.data["events"] == AuditEvent.objects.count() - 1
    assert verify_chain().intact
