"""The right period and the right content (issue 15, items 6-8): the period a
Right to Know covers by jurisdiction, applied in every kind of source and stated in
the answer; a categories answer about this person; what a GDPR answer, denial and
denied appeal must say. Across a real SQL source, a real local HTTP service and a
manual source worked through the staff page."""

import datetime
import io
import json

import pytest
from dateutil.relativedelta import relativedelta
from django.core import mail
from django.utils import timezone

from requests_app.models import (
    Actor,
    AuditEvent,
    Package,
    PrivacyRequest,
    State,
    ThirdParty,
    VerificationEvidence,
)
from requests_app.services.notices import templates
from requests_app.services.requests.lifecycle import do_transition
from requests_app.sources.base import requested_period
from tests.conftest import (
    PAT,
    approved,
    committed,
    file_request,
    portal_form,
    staff_login,
)

pytestmark = pytest.mark.django_db

YEAR_2025 = (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31))
AUTHORITY = "the Irish Data Protection Commission (dataprotection.ie)"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SUPERVISORY_AUTHORITY = AUTHORITY


def submit(client, **overrides):
    with committed():
        return client.post("/request/", portal_form(**overrides))


def upload_as_owner(client, owner, run, content: bytes, **fields):
    staff_login(client, owner)
    upload = io.BytesIO(content)
    upload.name = "found.csv"
    with committed():
        return client.post(f"/staff/tasks/{run.token}/", {"records": upload, **fields})


def dated_events(sources, shop_map):
    """The SQL source's events carry their collection time (one in 2021, one in 2025)."""
    with sources["engine"].begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN at TEXT")
        conn.exec_driver_sql("UPDATE events SET at = CASE id WHEN 70 THEN '2021-06-01 12:00:00' "
                             "ELSE '2025-03-01 12:00:00' END")
    sources["sql"].dataset_map = shop_map + "    collected_at: at\n"
    sources["sql"].save()


# --- item 6: the period by jurisdiction ---------------------------------------------


def test_gdpr_access_has_no_period_limit(client, sources, alice, unzip):
    """A request from the EU or UK records no period, whatever the form was sent with,
    and one recorded anyway is not applied: the answer covers all data held."""
    response = submit(client, rights=["access"], declaration="on", residence="EU",
                      period_choice="dates", period_start="2025-01-01",
                      period_end="2025-06-30")
    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.jurisdiction == "GDPR"
    assert (request.evidence.period_start, request.evidence.period_end) == (None, None)
    VerificationEvidence.objects.filter(request=request).update(
        period_start=YEAR_2025[0], period_end=YEAR_2025[1])
    assert requested_period(PrivacyRequest.objects.get(pk=request.pk)) is None

    sources["manual"].enabled = False
    sources["manual"].save()
    answered = approved("access", alice, period=YEAR_2025, jurisdiction="GDPR")
    assert answered.state == State.RESULTS_READY
    loyalty = answered.source_runs.get(source=sources["http"])
    assert loyalty.records_found > 0 and "period_applied" not in loyalty.result  # 2024 data
    archive = unzip(Package.objects.get(request=answered))
    assert "period" not in json.loads(archive.read("data.json"))
    assert "covers all the information we hold about you, whatever its date" in (
        archive.read("report.html").decode())


def test_ccpa_defaults_to_12_months_and_offers_everything_since_2022_in_one_click(client):
    page = client.get("/request/").content.decode()
    # Said in words at the field, and a radio button: no script needed.
    assert "the law lets us cover the last 12 months unless you ask for more" in page
    assert 'type="radio" name="period_choice" value="since_2022"' in page
    assert "Everything since January 1, 2022" in page
    today = timezone.localdate()

    submit(client, rights=["know_categories"], residence="CA")
    default = PrivacyRequest.objects.get().evidence
    assert (default.period_start, default.period_end) == (today - relativedelta(months=12),
                                                          today)
    submit(client, rights=["know_categories"], residence="CA", email="sam@example.com",
           period_choice="since_2022", period_start="2025-01-01")  # the choice wins
    chosen = PrivacyRequest.objects.get(identity__email="sam@example.com").evidence
    assert (chosen.period_start, chosen.period_end) == (datetime.date(2022, 1, 1), today)
    bad = submit(client, rights=["know_categories"], residence="CA", period_choice="forever")
    assert bad.status_code == 400 and "Choose one of the periods." in bad.content.decode()


def test_staff_widening_the_period_is_recorded_with_a_reason_and_applied(
        client, sources, alice, shop_map):
    dated_events(sources, shop_map)
    sources["manual"].enabled = False
    sources["manual"].save()
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW, email=PAT)
    VerificationEvidence.objects.create(request=request, submission="s",
                                        period_start=YEAR_2025[0], period_end=YEAR_2025[1])
    staff_login(client, alice)
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "From January 1, 2025 to December 31, 2025" in desk and "Widen the period" in desk
    url = f"/staff/requests/{request.reference}/period/"

    narrower = client.post(url, {"start": "2025-06-01", "end": "", "reason": "typo"})
    assert narrower.status_code == 400 and "can only be widened" in narrower.content.decode()
    no_reason = client.post(url, {"start": "2021-01-01", "end": "", "reason": ""})
    assert no_reason.status_code == 400 and "Say why the period is widened" in (
        no_reason.content.decode())
    assert requested_period(PrivacyRequest.objects.get(pk=request.pk)) == YEAR_2025

    assert client.post(url, {"start": "2021-01-01", "end": "2025-12-31",
                             "reason": "Appeal: the person asked for 2021 too"}).status_code == 302
    event = AuditEvent.objects.get(request=request, action="request.period_widened")
    assert event.reason == "Appeal: the person asked for 2021 too"
    assert event.data == {"from": ["2025-01-01", "2025-12-31"],
                          "to": ["2021-01-01", "2025-12-31"]}
    with committed():
        do_transition(request.pk, "approve", actor=Actor.staff(alice))
    run = PrivacyRequest.objects.get(pk=request.pk).source_runs.get(source=sources["sql"])
    assert run.result["period"] == ["2021-01-01", "2025-12-31"]
    assert run.result["outside_period"] == {}  # the 2021 event is in now
    assert run.records_found == 8
    late = client.post(url, {"start": "2020-01-01", "reason": "x"}, follow=True)
    assert "before the request is approved" in late.content.decode()  # fulfilled already
    assert requested_period(PrivacyRequest.objects.get(pk=request.pk))[0] == datetime.date(
        2021, 1, 1)


def test_an_http_source_receives_the_period_and_keeps_to_it(sources, alice):
    """The local HTTP service is sent the period (its 2024 records are left out of a
    2025 period) and says it kept to it; the run records that."""
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice, period=YEAR_2025, jurisdiction="CA")
    loyalty = request.source_runs.get(source=sources["http"])
    assert loyalty.records_found == 0 and loyalty.result["period_applied"] is True
    everything = approved("access", alice, period=(datetime.date(2024, 1, 1), YEAR_2025[1]),
                          jurisdiction="CA")
    assert everything.source_runs.get(source=sources["http"]).records_found > 0


def test_a_manual_task_shows_the_period_and_records_whether_the_owner_kept_to_it(
        client, sources, alice, bob):
    run = approved("access", alice, period=YEAR_2025,
                   jurisdiction="CA").source_runs.get(source=sources["manual"])
    staff_login(client, bob)
    page = client.get(f"/staff/tasks/{run.token}/").content.decode()
    assert "From January 1, 2025 to December 31, 2025" in page
    assert 'name="period_applied"' in page
    upload_as_owner(client, bob, run, b"box\nB-17\n", period_applied="on")
    run.refresh_from_db()
    assert run.result["period_applied"] is True


def test_the_package_lists_the_sources_that_could_not_filter_by_date(
        client, sources, alice, bob, shop_map, unzip):
    """SQL with a dated table and the HTTP service kept to the period; the manual
    owner did not say so: the answer names that source, on its first page."""
    dated_events(sources, shop_map)
    request = approved("access", alice, period=YEAR_2025, jurisdiction="CA")
    run = request.source_runs.get(source=sources["manual"])
    assert upload_as_owner(client, bob, run, b"box\nB-17\n").status_code == 302
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    archive = unzip(Package.objects.get(request=request))
    assert json.loads(archive.read("data.json"))["could_not_filter_by_date"] == [
        "Paper archive"]
    report = archive.read("report.html").decode()
    first_page = report.split("<h2>")[0]
    assert "You asked for the period from January 1, 2025 to December 31, 2025" in first_page
    assert "Not filtered by date:</strong> Paper archive could not tell" in first_page


# --- item 7: the categories held about this person ----------------------------------


def test_the_categories_answer_lists_only_categories_found_for_this_person(
        client, sources, alice, bob, unzip):
    """A source that holds a category in which the person has no rows (the paper
    archive, where the owner found nothing) does not appear; each category found
    says where it came from, why it is used and the kinds of third parties it goes to."""
    sql = sources["sql"]
    sql.collected_from = ["direct", "devices"]
    sql.purposes = ["Orders and delivery"]
    sql.save()
    ThirdParty.objects.filter(name="Northwind Resellers").update(
        recipient_category="resellers", categories=["user.contact.email"])
    sources["manual"].categories = ["user.health_and_medical"]
    sources["manual"].save()
    request = approved("know_categories", alice, jurisdiction="CA")
    run = request.source_runs.get(source=sources["manual"])
    assert upload_as_owner(client, bob, run, b"box,note\n").status_code == 302  # none found
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    archive = unzip(Package.objects.get(request=request))
    data = json.loads(archive.read("categories.json"))
    found = {c["key"]: c for c in data["categories"]}
    assert {"user.contact.email", "user.device.ip_address", "user.name"} <= set(found)
    assert "user.health_and_medical" not in found
    assert "Paper archive" not in {s["name"] for s in data["sources"]}
    email = found["user.contact.email"]
    assert "Directly from you" in email["sources_of_data"]
    assert "Orders and delivery" in email["purposes"]
    assert email["third_party_categories"] == ["Resellers and business partners"]
    assert found["user.device.ip_address"]["third_party_categories"] == []
    report = archive.read("report.html").decode()
    assert "Resellers and business partners" in report and "Pat Doe" not in report
    assert "health" not in report.lower()


# --- item 8: GDPR content, denial and appeal ----------------------------------------


def test_gdpr_access_report_gives_purposes_recipients_retention_origin_automation_rights(
        sources, alice, unzip):
    sql = sources["sql"]
    sql.purposes, sql.retention = ["Orders and delivery"], "7 years after the last order"
    sql.collected_from = ["direct", "partners"]
    sql.origin_detail = "Orders placed through Northwind Resellers"
    sql.automated_decisions = "Orders are scored for fraud; a high score holds the order."
    sql.save()
    ThirdParty.objects.filter(name="Northwind Resellers").update(recipient_category="resellers")
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("access", alice, jurisdiction="GDPR")
    archive = unzip(Package.objects.get(request=request))
    report = archive.read("report.html").decode()
    facts = report.split('<section id="gdpr-facts">')[1].split("</section>")[0]
    for section in ("gdpr-purposes", "gdpr-recipients", "gdpr-retention", "gdpr-origin",
                    "gdpr-automated", "gdpr-rights"):
        assert f'id="{section}"' in facts
    assert "Orders and delivery" in facts and "7 years after the last order" in facts
    assert "Northwind Resellers (Resellers and business partners)" in facts
    assert "Business partners: Orders placed through Northwind Resellers" in facts
    assert "Orders are scored for fraud" in facts
    for right in ("Rectification", "Erasure", "Restriction", "Objection", "Complaint"):
        assert right in facts
    assert AUTHORITY in facts and "judicial remedy" in facts
    assert json.loads(archive.read("data.json"))["gdpr"]["authority"] == AUTHORITY
    virginia = approved("access", alice, jurisdiction="VA")
    assert "gdpr-facts" not in unzip(Package.objects.get(request=virginia)).read(
        "report.html").decode()


def deny_then_deny_appeal(request, manager, transition_inputs) -> tuple[str, str]:
    """The denial's and the denied appeal's email bodies (text and HTML)."""
    with committed():
        do_transition(request.pk, "deny", actor=Actor.staff(manager),
                      **transition_inputs["deny"])
    denial = mail.outbox[-1]
    with committed():
        do_transition(request.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
        do_transition(request.pk, "deny_appeal", actor=Actor.staff(manager),
                      **transition_inputs["deny_appeal"])
    appeal = mail.outbox[-1]
    return ([denial.body, denial.alternatives[0][0]], [appeal.body, appeal.alternatives[0][0]])


def test_gdpr_denial_and_appeal_denial_name_the_authority_and_never_attorney_general(
        alice, transition_inputs):
    request = file_request(jurisdiction="GDPR", state=State.IN_REVIEW)
    with committed():
        do_transition(request.pk, "deny", actor=Actor.staff(alice),
                      **transition_inputs["deny"])
    denial = [mail.outbox[-1].body, mail.outbox[-1].alternatives[0][0]]
    # The GDPR gives no appeal step (the machine refuses one); were an appeal denied,
    # its email, rendered from the same templates the outbox sends, would say this.
    request.refresh_from_db()
    request.appeal_decision = "The claim is still pending."
    _subject, text, html = templates.render_sources(
        templates.current_sources("appeal_denied"), templates.notice_context(request))
    for body in denial + [text, html]:
        assert "Irish Data Protection Commission" in body
        assert "judicial remedy" in body
        assert "Attorney General" not in body
    # Another country (no known jurisdiction): never a state Attorney General after an appeal.
    other = file_request(jurisdiction="UNKNOWN", state=State.IN_REVIEW, email="lee@example.com")
    _denial, appeal = deny_then_deny_appeal(other, alice, transition_inputs)
    for body in appeal:
        assert "Attorney General" not in body and "Irish Data Protection Commission" in body
    # A Virginian is sent to Virginia's Attorney General.
    virginian = file_request(jurisdiction="VA", state=State.IN_REVIEW, email="va@example.com")
    _denial, appeal = deny_then_deny_appeal(virginian, alice, transition_inputs)
    assert all("Virginia Attorney General" in body for body in appeal)
