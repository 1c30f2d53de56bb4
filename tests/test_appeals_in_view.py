"""An appealed request stays in view: it is open work with its own due date (the
appeal's decision date) in the queue, its filters, the dashboard, the colours and
the reminders; a granted appeal is due by that date; the denial it overturned stays
in the request log and in the metrics as it happened."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app.audit import opt_outs, reports
from requests_app.models import (
    Actor,
    AuditEvent,
    DataSource,
    PrivacyRequest,
    SourceRun,
    State,
)
from requests_app.services.notices.staff import notify_source_owner
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import file_request, staff_login

pytestmark = pytest.mark.django_db

APPEAL_DAYS_VA = 60  # rules/: Virginia decides an appeal within 60 days


def denied_and_appealed(alice, transition_inputs, *, days_ago=0, email="pat.doe@example.com"):
    """A Virginia access request, denied by staff and appealed by the consumer, all
    `days_ago` days ago."""
    with time_machine.travel(timezone.now() - datetime.timedelta(days=days_ago)):
        request = file_request(jurisdiction="VA", state=State.IN_REVIEW, email=email)
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
        do_transition(request.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
    request.refresh_from_db()
    return request


def row_of(page: str, reference: str) -> str:
    start = page.index(f'data-reference="{reference}"')
    return page[start:page.index("</tr>", start)]


def test_an_appealed_request_is_in_the_queue_with_its_appeal_due_date(
        client, alice, bob, transition_inputs):
    request = denied_and_appealed(alice, transition_inputs)
    due = timezone.localdate() + datetime.timedelta(days=APPEAL_DAYS_VA)
    assert request.state == State.UNDER_APPEAL and request.appeal_due_on == due
    staff_login(client, bob)
    page = client.get("/staff/queue/").content.decode()
    row = row_of(page, request.reference)
    assert f'data-testid="due">{due:%b} {due.day}, {due.year}' in row and "(appeal)" in row
    assert f'data-testid="days-left">{APPEAL_DAYS_VA}<' in row
    # Its state is one of the queue's filters, and the filter finds it.
    assert '<option value="under_appeal">' in page
    assert request.reference in client.get("/staff/queue/?state=under_appeal").content.decode()


def test_an_appeal_is_overdue_when_its_decision_date_passes(
        client, alice, bob, transition_inputs):
    # Appealed 61 days ago in Virginia: the decision was due yesterday.
    late = denied_and_appealed(alice, transition_inputs, days_ago=APPEAL_DAYS_VA + 1)
    # Appealed 55 days ago: due in 5 days, so "soon" and due this week.
    soon = denied_and_appealed(alice, transition_inputs, days_ago=APPEAL_DAYS_VA - 5,
                               email="sam@example.com")
    staff_login(client, bob)
    page = client.get("/staff/queue/").content.decode()
    assert '<td class="overdue" data-testid="days-left">1 day overdue<' in row_of(
        page, late.reference)
    assert '<td class="soon" data-testid="days-left">5<' in row_of(page, soon.reference)
    overdue = client.get("/staff/queue/?due=overdue").content.decode()
    assert late.reference in overdue and soon.reference not in overdue
    week = client.get("/staff/queue/?due=week").content.decode()
    assert soon.reference in week and late.reference not in week
    dashboard = client.get("/staff/").content.decode()
    assert 'data-testid="overdue">1<' in dashboard
    assert 'data-testid="due-week">1<' in dashboard
    assert 'data-state="under_appeal">2<' in dashboard
    assert "2 open requests" in dashboard


def test_a_granted_appeal_is_due_by_the_appeals_decision_date(
        client, alice, bob, transition_inputs):
    # Filed and denied 50 days ago: the first response was due on day 45, so by the
    # original date the request would be overdue now.
    request = denied_and_appealed(alice, transition_inputs, days_ago=50)
    appeal_due = request.appeal_due_on
    assert request.due_on < timezone.localdate() < appeal_due
    do_transition(request.pk, "grant_appeal", actor=Actor.staff(alice),
                  **transition_inputs["grant_appeal"])
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW
    assert request.current_due_on == appeal_due
    staff_login(client, bob)
    row = row_of(client.get("/staff/queue/").content.decode(), request.reference)
    assert f'data-testid="days-left">{(appeal_due - timezone.localdate()).days}<' in row
    assert request.reference not in client.get("/staff/queue/?due=overdue").content.decode()
    # The extension is of the first response: an appeal is not extended.
    assert "extend" not in {t.name for t in request.get_available_state_transitions()}


def test_a_manual_source_reminder_gives_the_appeals_due_date(alice, bob, transition_inputs):
    request = denied_and_appealed(alice, transition_inputs, days_ago=50)
    do_transition(request.pk, "grant_appeal", actor=Actor.staff(alice),
                  **transition_inputs["grant_appeal"])
    source = DataSource.objects.create(name="Mailing house", kind="manual", owner=bob)
    run = SourceRun.objects.create(request=request, source=source, action="gather",
                                   state=SourceRun.State.WAITING)
    mail.outbox.clear()
    assert notify_source_owner(run.pk, reminder=True)
    due = request.appeal_due_on
    assert f"due {due:%B} {due.day}, {due.year}" in mail.outbox[0].body


def test_the_overturned_denial_stays_in_the_log_and_the_metrics(
        client, alice, bob, transition_inputs):
    request = denied_and_appealed(alice, transition_inputs, days_ago=10)
    denied_at = request.responded_at
    do_transition(request.pk, "grant_appeal", actor=Actor.staff(alice),
                  **transition_inputs["grant_appeal"])
    request.refresh_from_db()
    # The request log keeps the denial and then the appeal and its outcome.
    actions = list(AuditEvent.objects.filter(request=request).order_by("id")
                   .values_list("action", flat=True))
    assert actions.index("request.deny") < actions.index("request.appeal") < actions.index(
        "request.grant_appeal")
    staff_login(client, bob)
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "request.deny" in desk and "request.grant_appeal" in desk
    # The metrics count the response as it happened: a denial, with its reason, 0 days
    # after receipt, on time; the later answer does not rewrite it.
    reason = transition_inputs["deny"]["reason_code"]
    year = timezone.localtime(request.received_at).year
    access = reports.metrics(year)["groups"]["access"]
    assert (access["denied"], access["complied"]) == (1, 0)
    assert access["denied_by_reason"][reason] == 1 and access["median_days"] == 0
    assert access["on_time_rate"] == 1.0
    assert request.responded_at == denied_at and request.appeal_outcome == "granted"


def test_the_status_page_does_not_show_an_overturned_denial_as_the_answer(
        client, alice, open_status, transition_inputs):
    request = denied_and_appealed(alice, transition_inputs)
    detail = transition_inputs["deny"]["detail"]
    url = open_status(client, request)
    do_transition(request.pk, "grant_appeal", actor=Actor.staff(alice),
                  **transition_inputs["grant_appeal"])
    # Worked again, answered and closed: the denial is history, not the answer.
    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.CLOSED)
    page = client.get(url).content.decode()
    assert "Why we denied the request" not in page and detail not in page
    assert "Your appeal was granted" in page


def test_an_appealed_opt_out_is_overdue_by_its_appeal_date_not_its_first_one(
        alice, transition_inputs):
    # Honoured 50 days ago (its first due date, 15 business days after receipt, long past) and
    # appealed 48 days ago: the appeal is due in 12 days, so open and not overdue.
    with time_machine.travel(timezone.now() - datetime.timedelta(days=50)):
        request = file_request(request_type="opt_out_sale", jurisdiction="VA",
                               state=State.COMPLETED)
    with time_machine.travel(timezone.now() - datetime.timedelta(days=48)):
        do_transition(request.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
    year = timezone.localtime(request.received_at).year
    [row] = [r for r in opt_outs.report(year) if r["received"]]
    assert (row["open"], row["overdue"]) == (1, 0)
