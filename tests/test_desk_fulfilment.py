"""The desk's fulfilment panels (issue 13): the deletion dry run table by table where
it is approved, a failed source's error and its "Retry this source" button (a
Privacy Manager's), "Retry fulfilment" that really runs the failed sources again,
and durations counted per attempt."""

import datetime

import pytest
from django.utils import timezone

from requests_app.models import Actor, AuditEvent, SourceRun, State
from requests_app.services.fulfilment import runs as fulfilment
from requests_app.services.fulfilment import attempts
from requests_app.services.fulfilment.attempts import NotOurs, attempt
from requests_app.staff.erasure_plan import erasure_plan
from tests.conftest import approved, committed, staff_login

pytestmark = pytest.mark.django_db


def failed_access(sources, manager):
    """An access request whose HTTP source failed (HTTP 500 through every retry),
    now in needs-attention; the service answers again."""
    sources["manual"].enabled = False
    sources["manual"].save()
    sources["service"].set_mode("fail500")
    request = approved("access", manager)
    assert request.state == State.NEEDS_ATTENTION
    run = request.source_runs.get(source=sources["http"])
    assert run.state == "failed"
    sources["service"].set_mode("ok")
    return request, run


def post_step(client, request, name):
    request.refresh_from_db()
    with committed():
        return client.post(f"/staff/requests/{request.reference}/step/{name}/", {
            f"{name}-expected_state": request.state, f"{name}-version": request.version})


def test_retry_fulfilment_on_the_desk_runs_the_failed_source_again(sources, alice, bob,
                                                                    client):
    request, run = failed_access(sources, alice)
    tries = run.attempts
    staff_login(client, bob)  # an analyst may retry the request as a whole
    assert post_step(client, request, "retry_fulfilment").status_code == 302
    request.refresh_from_db()
    run.refresh_from_db()
    assert run.state == "done" and run.attempts == tries + 1
    assert request.state == State.RESULTS_READY
    assert request.source_runs.get(source=sources["sql"]).attempts == 1  # not redone
    assert AuditEvent.objects.filter(request=request, action="source.retried").count() == 1


def test_a_retried_run_s_duration_counts_from_its_latest_attempt(sources, alice, client):
    request, run = failed_access(sources, alice)
    long_ago = timezone.now() - datetime.timedelta(seconds=100)
    SourceRun.objects.filter(pk=run.pk).update(started_at=long_ago)  # the first attempt
    staff_login(client, alice)
    post_step(client, request, "retry_fulfilment")
    run.refresh_from_db()
    assert run.state == "done" and run.started_at > long_ago
    assert run.duration < datetime.timedelta(seconds=30)
    panel = client.get(f"/staff/requests/{request.reference}/progress/").content.decode()
    assert "100." not in panel and "Took (last attempt)" in panel


def test_a_worker_s_claim_starts_the_clock_and_a_callback_continues_it(sources, alice):
    request, run = failed_access(sources, alice)
    fulfilment.do_retry_source(run.pk, actor=Actor.staff(alice))  # not committed: no work
    long_ago = timezone.now() - datetime.timedelta(seconds=100)
    SourceRun.objects.filter(pk=run.pk).update(started_at=long_ago)
    first = attempts.claim(run.pk)
    run.refresh_from_db()
    assert first and run.started_at > long_ago and run.finished_at is None
    started = run.started_at
    SourceRun.objects.filter(pk=run.pk).update(state="waiting")  # answered 202
    assert attempts.claim(run.pk, waiting=True) == first + 1  # the reply arrives
    run.refresh_from_db()
    assert run.started_at == started  # the wait for the reply is part of the attempt


@pytest.mark.parametrize("role, allowed", [("alice", True), ("bob", False),
                                           ("charlie", False), ("dave", False)])
def test_only_a_privacy_manager_may_retry_one_source(role, allowed, sources, alice, bob,
                                                     charlie, dave, client):
    request, run = failed_access(sources, alice)
    tries = run.attempts
    staff_login(client, {"alice": alice, "bob": bob, "charlie": charlie, "dave": dave}[role])
    with committed():
        response = client.post(f"/staff/requests/{request.reference}/sources/{run.pk}/retry/")
    run.refresh_from_db()
    request.refresh_from_db()
    if allowed:
        assert response.status_code == 302
        assert run.state == "done" and run.attempts == tries + 1
        assert request.state == State.RESULTS_READY
    else:
        assert response.status_code == 403
        assert run.state == "failed" and run.attempts == tries
        assert request.state == State.NEEDS_ATTENTION


def test_a_failed_source_shows_its_error_and_the_retry_button_to_a_manager_only(
        sources, alice, bob, client):
    request, run = failed_access(sources, alice)
    staff_login(client, alice)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert f'data-source-error="{run.pk}"' in page and "HTTP 500" in page
    assert f'data-retry-source="{run.pk}"' in page
    staff_login(client, bob)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "HTTP 500" in page and "data-retry-source" not in page
    assert 'data-step="retry_fulfilment"' in page


def test_a_source_that_has_not_failed_cannot_be_retried(sources, alice, client):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["sql"])
    staff_login(client, alice)
    response = client.post(f"/staff/requests/{request.reference}/sources/{run.pk}/retry/",
                           follow=True)
    assert "Only a failed source can be retried." in response.content.decode()
    run.refresh_from_db()
    assert run.attempts == 1


def test_the_dry_run_is_shown_table_by_table_where_the_deletion_is_approved(sources, alice,
                                                                           client):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("deletion", alice)
    assert request.state == State.RESULTS_READY
    staff_login(client, alice)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    plan = page[page.index('id="erasure-plan"'):page.index('id="actions"')]
    orders = plan[plan.index('data-plan-table="orders"'):]
    orders = orders[:orders.index("</tr>")]
    assert "<td>retain</td>" in orders and "<td>2</td>" in orders
    assert "Invoices kept seven years for tax law" in orders
    assert 'data-plan-table="customers"' in plan
    # The HTTP source's plan is a count to delete and to keep, with its reason.
    assert "Loyalty" in plan and "retain" in plan and "legal basis" in plan
    assert 'href="#erasure-plan"' in page  # the approval's own hint points at it


def test_the_plan_shows_whatever_a_source_s_dry_run_says(sources):
    run = SourceRun(source=sources["http"], action="plan_erasure", state="done", result={
        "tables": {
            "users": {"rows": 3, "action": "update", "kept": 1, "legal_basis": "tax law",
                      "shared": True, "columns": {"email": "hash"},
                      "stays_linked": ["orders.user_id"]},
            "visits": 4,
        },
        "digest": "abc"})
    (source,) = erasure_plan([run, SourceRun(action="gather")])
    users, visits = source["tables"]
    assert (users["rows"], users["action"], users["kept"], users["legal_basis"],
            users["shared"]) == ("3", "update", "1", "tax law", "yes")
    assert users["details"] == [("columns", "email: hash"), ("stays linked", "orders.user_id")]
    assert visits["rows"] == "4" and source["summary"] == [("digest", "abc")]


def test_an_attempt_whose_work_breaks_fails_the_run_without_its_message(sources, alice):
    request, run = failed_access(sources, alice)
    fulfilment.do_retry_source(run.pk, actor=Actor.staff(alice))
    with attempt(run.pk, queue_check=False) as work:
        raise ValueError("pat@example.com is not a number")
    run.refresh_from_db()
    assert work.outcome == "failed" and run.state == "failed"
    assert run.last_error == "internal error (ValueError)"
    with pytest.raises(NotOurs):
        with attempt(run.pk):
            pass
