"""Fulfilment from approval to package, across a real SQL source, a real local HTTP
service and a manual source worked through the staff page."""

import datetime
import io
import json
import zipfile
from hashlib import sha256

import pytest
from django.core import mail

from requests_app.models import (
    Actor,
    DataSource,
    Package,
    PrivacyRequest,
    SourceRun,
    State,
    Suppression,
    ThirdPartyNotice,
)
from requests_app.services.fulfilment import runs as fulfilment
from requests_app.services.fulfilment import attempts, third_parties
from requests_app.services.requests.lifecycle import TransitionRefused, do_transition
from requests_app.sources.categories import WITHHELD
from tests.conftest import PAT, approved, committed, staff_login

pytestmark = pytest.mark.django_db



def upload_as_owner(client, owner, run, name, content):
    staff_login(client, owner)
    upload = io.BytesIO(content)
    upload.name = name
    with committed():
        return client.post(f"/staff/tasks/{run.token}/", {"records": upload})


def test_an_access_request_gathers_every_source_and_waits_for_the_manual_one(
        sources, alice, bob, client, unzip):
    request = approved("access", alice)
    assert request.state == State.WAITING_MANUAL
    runs = {r.source.kind: r for r in request.source_runs.select_related("source")}
    # customers 1, orders 2, addresses 2, devices 1, events 2 (none of Sam's)
    assert runs["sql"].state == "done" and runs["sql"].records_found == 8
    assert runs["http"].state == "done" and runs["http"].records_found > 0
    assert runs["manual"].state == "waiting"
    # The owner was told, with a link and no personal data.
    (owner_mail,) = [m for m in mail.outbox if m.to == [bob.email]]
    assert runs["manual"].token in owner_mail.body and PAT not in owner_mail.body

    page = client.get(f"/staff/tasks/{runs['manual'].token}/")
    assert client.get("/staff/tasks/").status_code == 302  # not logged in yet
    response = upload_as_owner(client, bob, runs["manual"], "found.csv",
                               b"box,note\nB-17,Warranty card signed by Pat\n")
    assert response.status_code == 302, getattr(response, "context", None)
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    package = Package.objects.get(request=request)
    archive = unzip(package)
    report = archive.read("report.html").decode()
    assert "User Contact Email" in report and "Pat Doe" in report
    # A Virginia request (file_request's): government ids held back for security.
    assert "123-45-6789" not in report and "It is not shown: Held back for your security" in report
    assert "Warranty card signed by Pat" in report
    data = json.loads(archive.read("data.json"))
    pat = next(r for r in data["records"]["Shop/customers"] if r["name"] == "Pat Doe")
    assert pat["ssn"] == WITHHELD
    assert page.status_code == 302


def test_a_portability_package_is_a_zip_of_json_and_csv_with_a_manifest(sources, alice,
                                                                         bob, client, unzip):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("portability", alice)
    assert request.state == State.RESULTS_READY
    archive = unzip(Package.objects.get(request=request))
    manifest = json.loads(archive.read("manifest.json"))
    names = {f["name"] for f in manifest["files"]}
    assert {"Shop/customers.json", "Shop/customers.csv", "Shop/events.csv"} <= names
    for entry in manifest["files"]:
        body = archive.read(entry["name"])
        assert sha256(body).hexdigest() == entry["sha256"]
    assert len(json.loads(archive.read("Shop/orders.json"))) == manifest["files"][
        [f["name"] for f in manifest["files"]].index("Shop/orders.json")]["records"]
    assert archive.read("Shop/events.csv").decode().splitlines()[0] == "ip"


def test_a_deletion_runs_a_dry_run_then_erases_after_a_managers_approval(sources, alice, bob,
                                                                         client, unzip):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("deletion", alice)
    assert request.state == State.RESULTS_READY  # the dry run, for review
    plan = request.source_runs.get(source=sources["sql"], action="plan_erasure")
    assert plan.result["tables"]["orders"]["action"] == "retain"
    with sources["engine"].connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 3
    with pytest.raises(TransitionRefused):
        do_transition(request.pk, "approve_erasure", actor=Actor.staff(bob))
    with pytest.raises(TransitionRefused, match="dry run"):
        do_transition(request.pk, "release", actor=Actor.staff(alice))
    with committed():
        do_transition(request.pk, "approve_erasure", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    erase = request.source_runs.get(source=sources["sql"], action="erase")
    assert erase.state == "done" and erase.result["remaining"] == 0
    with sources["engine"].connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 1  # Sam's
    assert sources["service"].answer(
        {"action": "remaining", "identity": {"email": PAT}})["remaining"] == 0
    assert Suppression.objects.filter(request_reference=request.reference).exists()
    notice = ThirdPartyNotice.objects.get(request=request)
    assert notice.state == "sent"
    assert any(m.to == ["privacy@northwind.example"] for m in mail.outbox)
    report = unzip(Package.objects.get(request=request, kind="deletion")).read("report.html")
    assert b"Invoices kept seven years for tax law" in report
    with committed():
        do_transition(request.pk, "release", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.COMPLETED


def test_a_failing_http_source_needs_attention_and_one_retry_finishes_it(sources, alice,
                                                                       settings):
    settings.SOURCE_BREAKER_FAILURES = 100  # the run's own retries (the breaker: test_breaker)
    sources["manual"].enabled = False
    sources["manual"].save()
    sources["service"].set_mode("fail500")
    request = approved("access", alice)
    assert request.state == State.NEEDS_ATTENTION
    failed = request.source_runs.get(source=sources["http"])
    assert failed.state == "failed" and "500" in failed.last_error
    assert failed.attempts == 6  # the first try and five retries
    sql_run = request.source_runs.get(source=sources["sql"])
    assert sql_run.state == "done"
    sources["service"].set_mode("ok")
    with committed():
        fulfilment.do_retry_source(failed.pk, actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    sql_run.refresh_from_db()
    assert sql_run.attempts == 1  # the other source was not redone


def test_running_a_source_task_twice_changes_nothing_more(sources, alice):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["sql"])
    assert fulfilment.execute_run(run.pk) == "skipped"
    run.refresh_from_db()
    assert run.attempts == 1


def test_a_source_map_problem_fails_the_run_with_a_message_for_staff(sources, alice):
    DataSource.objects.filter(pk=sources["sql"].pk).update(connection_env="NO_SUCH_DSN")
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice)
    assert request.state == State.NEEDS_ATTENTION
    run = request.source_runs.get(source=sources["sql"])
    assert "NO_SUCH_DSN" in run.last_error


def test_the_owner_of_another_source_cannot_open_the_task(sources, alice, charlie, client):
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["manual"])
    staff_login(client, charlie)
    assert client.get(f"/staff/tasks/{run.token}/").status_code == 403
    assert client.get("/staff/tasks/").status_code == 200
    assert run.token.encode() not in client.get("/staff/tasks/").content


def test_a_bad_upload_is_refused_with_a_clear_message(sources, alice, bob, client):
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["manual"])
    response = upload_as_owner(client, bob, run, "found.pdf", b"%PDF-1.4")
    assert response.status_code == 200 and b"Upload a .csv or a .json file." in response.content
    response = upload_as_owner(client, bob, run, "found.json", b'{"not": "a list"}')
    assert b"must be a list of objects" in response.content
    run.refresh_from_db()
    assert run.state == "waiting"


def test_an_asynchronous_reply_is_accepted_only_with_a_valid_signature(sources, alice,
                                                                        client):
    from requests_app.sources.http import sign

    sources["manual"].enabled = False
    sources["manual"].save()
    sources["service"].set_mode("async")
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["http"])
    assert run.state == "waiting" and request.state == State.WAITING_MANUAL
    body = json.dumps({"collections": {"points": {
        "categories": {"points": "user.behavior.purchase_history"},
        "records": [{"points": 120}]}}}).encode()
    url = f"/api/sources/callback/{run.token}/"
    stamp = str(int(__import__("time").time()))
    bad = client.post(url, body, content_type="application/json",
                      HTTP_X_PRIVACYPORTAL_TIMESTAMP=stamp,
                      HTTP_X_PRIVACYPORTAL_SIGNATURE=sign(b"wrong", stamp, body))
    assert bad.status_code == 403
    assert client.post("/api/sources/callback/nope/", body,
                       content_type="application/json").status_code == 403
    with committed():
        good = client.post(url, body, content_type="application/json",
                           HTTP_X_PRIVACYPORTAL_TIMESTAMP=stamp,
                           HTTP_X_PRIVACYPORTAL_SIGNATURE=sign(b"s3cret", stamp, body))
    assert good.status_code == 200
    run.refresh_from_db()
    request.refresh_from_db()
    assert run.state == "done" and run.records_found == 1
    assert request.state == State.RESULTS_READY
    # A replayed callback changes nothing.
    assert client.post(url, body, content_type="application/json",
                       HTTP_X_PRIVACYPORTAL_TIMESTAMP=stamp,
                       HTTP_X_PRIVACYPORTAL_SIGNATURE=sign(b"s3cret", stamp, body)
                       ).json() == {"status": "already recorded"}


def test_staff_preview_a_package_before_release_and_the_view_is_audited(sources, alice,
                                                                         charlie, client):
    from requests_app.models import AuditEvent

    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("portability", alice)
    url = f"/staff/requests/{request.reference}/package/portability/"
    staff_login(client, charlie)
    assert client.get(url).status_code == 403
    staff_login(client, alice)
    response = client.get(url)
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "manifest.json" in archive.namelist()
    assert AuditEvent.objects.filter(request=request, action="package.previewed").exists()


def test_a_deleted_person_is_suppressed_by_a_keyed_hash_not_their_address(sources, alice):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("deletion", alice)
    with committed():
        do_transition(request.pk, "approve_erasure", actor=Actor.staff(alice))
    assert third_parties.is_suppressed("PAT@example.com ")
    assert not third_parties.is_suppressed("sam@example.com")
    stored = Suppression.objects.values_list("identity_hash", flat=True).get()
    assert "@" not in stored and len(stored) == 32  # a keyed hash, not the address


def test_owners_of_waiting_manual_tasks_are_reminded(sources, alice, bob):
    import datetime

    import time_machine
    from django.utils import timezone

    from requests_app.services.notices.tasks import remind_source_owners

    approved("access", alice)
    mail.outbox.clear()
    assert remind_source_owners() == 0
    with time_machine.travel(timezone.now() + datetime.timedelta(days=3)):
        assert remind_source_owners() == 1
    assert mail.outbox[0].subject.startswith("Reminder:") and mail.outbox[0].to == [bob.email]


def test_a_deletion_waits_for_the_manual_owner_only_once_and_reports_what_they_said(
        sources, alice, bob, client, unzip):
    request = approved("deletion", alice)
    assert request.state == State.RESULTS_READY  # the dry run needs nobody by hand
    with committed():
        do_transition(request.pk, "approve_erasure", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.WAITING_MANUAL
    run = request.source_runs.get(source=sources["manual"], action="erase")
    staff_login(client, bob)
    response = client.post(f"/staff/tasks/{run.token}/", {"outcome": "impossible"})
    assert b"Say why it is impossible." in response.content
    with committed():
        client.post(f"/staff/tasks/{run.token}/",
                    {"outcome": "impossible", "reason": "The cards were destroyed in 2021."})
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    report = unzip(Package.objects.get(request=request, kind="deletion")).read("report.html")
    assert b"The cards were destroyed in 2021." in report


def test_a_rejected_dry_run_is_run_again_after_the_map_is_fixed(sources, alice):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("deletion", alice)
    plan = request.source_runs.get(source=sources["sql"], action="plan_erasure")
    first_attempts = plan.attempts
    do_transition(request.pk, "reject_erasure_plan", actor=Actor.staff(alice),
                  reason="The events table is missing from the map.")
    with committed():
        do_transition(request.pk, "approve", actor=Actor.staff(alice))
    plan.refresh_from_db()
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    assert plan.attempts == first_attempts + 1  # planned again, not the old result shown


def test_an_http_source_that_never_calls_back_fails_after_the_timeout(sources, alice):
    import datetime

    import time_machine
    from django.utils import timezone

    from requests_app.services.reconciler import reconcile

    sources["manual"].enabled = False
    sources["manual"].save()
    sources["service"].set_mode("async")
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["http"])
    assert run.state == "waiting"
    with committed(), time_machine.travel(timezone.now() + datetime.timedelta(hours=25)):
        assert reconcile()["timeouts"] == 1
    run.refresh_from_db()
    request.refresh_from_db()
    assert run.state == "failed" and "no reply" in run.last_error
    assert request.state == State.NEEDS_ATTENTION


def test_the_reconciler_leaves_a_request_waiting_on_its_manual_owner_alone(sources, alice):
    """Only what can move is woken: a request whose manual source waits on its owner
    gets no check every minute (the owner's answer queues one)."""
    import datetime

    import time_machine
    from django.utils import timezone

    from requests_app.services.reconciler import reconcile

    request = approved("access", alice)
    assert request.state == State.WAITING_MANUAL
    with committed(), time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        counts = reconcile()
    assert counts["checks"] == 0 and counts["runs"] == 0 and counts["follow_ups"] == 0


def test_a_retried_source_is_sent_once_and_keeps_its_six_attempts(
        sources, alice, django_capture_on_commit_callbacks, settings):
    """Staff's retry of a failed source (from needs-attention) makes it pending in the
    step's transaction; the step's follow-up dispatches it, once: a source that keeps
    failing gets six more attempts, not twelve (the breaker, which would park it
    sooner, is out of the way here)."""
    settings.SOURCE_BREAKER_FAILURES = 100
    sources["manual"].enabled = False
    sources["manual"].save()
    sources["service"].set_mode("fail500")
    request = approved("access", alice)
    failed = request.source_runs.get(source=sources["http"])
    assert request.state == State.NEEDS_ATTENTION and failed.attempts == 6
    with django_capture_on_commit_callbacks() as queued:
        fulfilment.do_retry_source(failed.pk, actor=Actor.staff(alice))
    assert len(queued) == 1  # begin_fulfilment, the step's follow-up; no second message
    for send in queued:
        send()
    failed.refresh_from_db()
    assert failed.state == "failed" and failed.attempts == 12


@pytest.mark.parametrize("changes,field,message", [
    ({"url": "http://crm.internal/privacy", "verify_tls": False}, "url", "only for a service"),
    ({"url": "http://127.0.0.1:9/privacy", "verify_tls": True}, "url", "Use https"),
    ({"secret_env": "SECRET_KEY"}, "secret_env", "the portal's own secrets"),
])
def test_an_http_source_is_validated_when_saved(changes, field, message):
    from django.core.exceptions import ValidationError

    source = DataSource(name="X", kind="http", url="https://crm.example/privacy",
                        secret_env="CRM_SECRET")
    source.clean()
    for key, value in changes.items():
        setattr(source, key, value)
    with pytest.raises(ValidationError) as info:
        source.clean()
    assert message in str(info.value.message_dict[field])


def test_gathered_records_are_deleted_once_the_package_is_built(sources, alice):
    from requests_app.sources.records import run_dir

    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("portability", alice)
    assert Package.objects.filter(request=request).exists()
    for run in request.source_runs.all():
        assert not run_dir(run).exists()
        # A few records are sealed into the run's result instead of a file: gone too,
        # the counts kept.
        collections = run.result.get("collections") or {}
        assert not any("sealed" in info for info in collections.values())
        assert all(info["count"] for info in collections.values())


def test_a_worker_whose_run_was_taken_over_cannot_record_its_outcome(sources, alice):
    import datetime

    from django.utils import timezone

    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["sql"])
    SourceRun.objects.filter(pk=run.pk).update(state="pending")
    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.FULFILLING)
    first = attempts.claim(run.pk)
    assert attempts.claim(run.pk) is None  # alive: nobody else may take it
    SourceRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - datetime.timedelta(hours=1))
    second = attempts.claim(run.pk)  # the first worker went quiet
    assert second == first + 1
    assert attempts.finish_run(run.pk, 99, {"late": True}, attempt=first) is False
    attempts.note_error(run.pk, "late failure", final=True, attempt=first)
    run.refresh_from_db()
    assert run.state == "running" and run.records_found != 99 and run.last_error == ""
    assert attempts.finish_run(run.pk, 8, {}, attempt=second) is True


def test_a_run_whose_work_outlasts_the_stale_period_is_not_taken_over(
        transactional_db, sources, alice, settings):
    """A dry run's reads or a slow service may take longer than a run may go
    without a heartbeat: the attempt's pulse keeps it alive while it works, so no
    second attempt takes it over; once it has stopped, the beats stop too."""
    import time

    settings.SOURCE_RUN_STALE_SECONDS = 2
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice)
    run = request.source_runs.get(source=sources["sql"])
    SourceRun.objects.filter(pk=run.pk).update(state="pending")
    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.FULFILLING)
    with attempts.attempt(run.pk, queue_check=False) as work:
        time.sleep(3.5)  # the work, longer than the stale period
        assert attempts.claim(run.pk) is None  # alive: nobody else may take it
        work.finish(0, {})
    run.refresh_from_db()
    assert run.state == "done" and run.attempts == work.number


YEAR_2025 = (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31))


def test_an_access_request_answers_for_the_period_it_asked_for(
        sources, alice, bob, client, shop_map, unzip):
    """The Right to Know period (from the portal's form) reaches the SQL source:
    dated events collected before it are left out; the report and data.json say
    which period they cover."""
    sources["manual"].enabled = False
    sources["manual"].save()
    with sources["engine"].begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN at TEXT")
        conn.exec_driver_sql("UPDATE events SET at = CASE id WHEN 70 THEN '2021-06-01 12:00:00' "
                             "ELSE '2025-03-01 12:00:00' END")
    sources["sql"].dataset_map = shop_map + "    collected_at: at\n"
    sources["sql"].save()
    request = approved("access", alice, period=YEAR_2025, jurisdiction="CA")
    assert request.state == State.RESULTS_READY
    run = request.source_runs.get(source=sources["sql"])
    assert run.records_found == 7 and run.result["outside_period"] == {"events": 1}
    archive = unzip(Package.objects.get(request=request))
    data = json.loads(archive.read("data.json"))
    assert data["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
    assert [e["ip"] for e in data["records"]["Shop/events"]] == ["10.0.0.2"]
    report = archive.read("report.html").decode()
    assert "You asked for the period from January 1, 2025 to December 31, 2025" in report


def test_a_manual_source_owner_is_told_the_period_asked_for(sources, alice, bob, client):
    run = approved("access", alice, period=YEAR_2025,
                   jurisdiction="CA").source_runs.get(source=sources["manual"])
    staff_login(client, bob)
    page = client.get(f"/staff/tasks/{run.token}/").content.decode()
    assert "From January 1, 2025 to December 31, 2025: give the records collected" in page
    other = approved("portability", alice)  # no period asked for: none shown
    page = client.get(f"/staff/tasks/{other.source_runs.get(source=sources['manual']).token}/")
    assert "Period asked for" not in page.content.decode()
