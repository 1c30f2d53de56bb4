"""Issue 15, items 9 and 15: what the consumer reads. Rights in the form's plain words
everywhere, one acknowledgment per submission, non-discrimination stated, a cancel
that asks first, the preference page in every footer, and a deletion report that
cites the requester's law and says of each third party whether it was told and
whether it confirmed."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import connection
from django.template.loader import render_to_string
from django.utils import timezone

from requests_app.models import (
    EmailTemplateVersion,
    OutgoingEmail,
    PrivacyRequest,
    State,
    ThirdParty,
    ThirdPartyNotice,
    VerificationEvidence,
)
from requests_app.rules import REQUEST_TYPES
from requests_app.services.fulfilment.packages import deletion_summary
from requests_app.services.notices.templates import (
    current_version,
    notice_context,
    render_version,
)
from tests.conftest import committed, emailed_code, file_request, portal_form

pytestmark = pytest.mark.django_db

NO_DISCRIMINATION = "will never be held against you"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def submit(client, **overrides):
    with committed():
        return client.post("/request/", portal_form(**overrides))


# --- one acknowledgment per submission ----------------------------------------------


def test_one_acknowledgment_per_submission_lists_every_right_asked_for(client):
    rights = ["know_categories", "deletion", "opt_out_sale"]
    response = submit(client, rights=rights, residence="CA")
    assert response.status_code == 302
    filed = list(PrivacyRequest.objects.all())
    assert sorted(r.request_type for r in filed) == sorted(rights)
    (ack,) = OutgoingEmail.objects.filter(notice="received")
    assert len([m for m in mail.outbox if m.subject.startswith("We received")]) == 1
    for r in filed:
        for body in (ack.body_text, ack.body_html):
            assert r.reference in body
            assert str(REQUEST_TYPES[r.request_type].plain_label) in body
            assert r.due_on.strftime("%B %-d, %Y") in body
    # The one code in it confirms every request of the submission.
    code = emailed_code(ack)
    with committed():
        client.post("/verify/", {"reference": ack.request.reference, "code": code})
    for r in filed:
        if r.request_type != "opt_out_sale":
            assert VerificationEvidence.objects.get(request=r).email_confirmed_at


def test_a_submission_that_fails_half_way_files_nothing_and_sends_nothing(client):
    """One acknowledgment per submission holds across a crash: the requests of a
    submission are filed in one transaction, so a failure while filing the last
    (the acknowledging one) leaves none of the others filed without their email."""
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION refuse_deletions() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.request_type = 'deletion' THEN
                RAISE EXCEPTION 'the database went away';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_deletions BEFORE INSERT ON requests_app_privacyrequest
            FOR EACH ROW EXECUTE FUNCTION refuse_deletions();""")
    client.raise_request_exception = False
    response = submit(client, rights=["know_categories", "opt_out_sale", "deletion"],
                      residence="CA")
    assert response.status_code == 500
    assert not PrivacyRequest.objects.exists()
    assert not OutgoingEmail.objects.exists() and not mail.outbox


def test_one_acknowledgment_per_submission_carries_the_code_with_a_reference_that_takes_it(client):
    submit(client, rights=["deletion", "opt_out_sale"], residence="CA")
    (ack,) = OutgoingEmail.objects.filter(notice="received")
    assert ack.request.request_type == "deletion"  # not the opt-out, verified at once
    assert f"?reference={ack.request.reference}" in ack.body_text
    # The sent page still lists the rights in the order the form gave them.
    sent = client.get("/request/sent/").content.decode()
    assert sent.index("Delete my information") < sent.index("Do not sell or share")


def test_a_single_right_still_gets_its_one_acknowledgment(client):
    submit(client)
    (ack,) = OutgoingEmail.objects.filter(notice="received")
    assert ack.subject == f"We received your privacy request {ack.request.reference}"


# --- plain names ----------------------------------------------------------------


def test_emails_and_the_status_page_use_the_forms_plain_names_for_rights(client, open_status):
    submit(client, rights=["access"], residence="CA", declaration="on")
    request = PrivacyRequest.objects.get()
    ack = OutgoingEmail.objects.get(notice="received")
    assert "Give me a copy of my information" in ack.body_text
    assert "Give me a copy of my information" in ack.body_html
    internal = str(REQUEST_TYPES["access"].label)
    assert internal not in ack.body_text and internal not in ack.body_html
    page = client.get(open_status(client, request)).content.decode()
    assert "Give me a copy of my information" in page and internal not in page


def test_every_email_template_names_rights_by_their_plain_label():
    from pathlib import Path

    from django.conf import settings

    for path in (Path(settings.BASE_DIR) / "templates" / "emails").rglob("*.*"):
        assert "type_rules.label" not in path.read_text(), path


# --- non-discrimination ---------------------------------------------------------------


def test_non_discrimination_is_stated_on_the_form_the_status_pages_and_the_acknowledgment(
        client, open_status):
    assert NO_DISCRIMINATION in client.get("/request/").content.decode()
    assert NO_DISCRIMINATION in client.get("/status/").content.decode()
    submit(client)
    ack = OutgoingEmail.objects.get(notice="received")
    assert NO_DISCRIMINATION in ack.body_text and NO_DISCRIMINATION in ack.body_html
    page = client.get(open_status(client, ack.request)).content.decode()
    assert NO_DISCRIMINATION in page


# --- the preference page in every footer ----------------------------------------------


@pytest.mark.parametrize("url", ["/", "/request/", "/status/", "/verify/", "/preferences/"])
def test_the_preference_page_is_linked_from_every_portal_pages_footer(client, url):
    page = client.get(url).content.decode()
    footer = page[page.index("<footer"):page.index("</footer>")]
    assert 'href="/preferences/"' in footer
    assert client.get("/preferences/").status_code == 200


# --- cancel asks first ------------------------------------------------------------


def test_a_consumers_cancel_asks_for_confirmation_without_javascript(client, open_status):
    request = file_request(request_type="deletion")
    url = open_status(client, request)
    assert "<script" not in client.get(url).content.decode()
    with committed():
        asked = client.post(f"/status/{request.reference}/cancel/",
                            {"expected_state": "pending_verification"})
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Yes, cancel my request" in page and 'name="confirm" value="yes"' in page
    assert f'href="/status/{request.reference}/"' in page  # keep it
    request.refresh_from_db()
    assert request.state == State.PENDING_VERIFICATION
    with committed():
        done = client.post(f"/status/{request.reference}/cancel/",
                           {"expected_state": "pending_verification", "confirm": "yes"})
    assert done.status_code == 302
    request.refresh_from_db()
    assert request.state == State.CANCELLED


# --- the deletion report -----------------------------------------------------------


def _report(request) -> str:
    data = deletion_summary(request)
    return render_to_string("packages/deletion.html", {"request": request, "data": data})


@pytest.mark.parametrize("jurisdiction, law", [
    ("CA", "Cal. Civ. Code §1798.105"), ("VA", "Va. Code §59.1-577(A)(3)"),
    ("CO", "C.R.S. 6-1-1306(1)(d)"), ("CT", "§42-518(a)(3)"), ("TX", "§541.051(b)(3)"),
    ("GDPR", "GDPR Article 17"),
])
def test_the_deletion_report_cites_the_law_of_the_requesters_jurisdiction(jurisdiction, law):
    request = file_request(request_type="deletion", jurisdiction=jurisdiction)
    assert law in _report(request)
    assert deletion_summary(request)["law"].count(law) == 1


def test_the_deletion_report_says_of_each_third_party_whether_told_and_whether_confirmed():
    request = file_request(request_type="deletion", jurisdiction="CA", state="completed")
    now = timezone.now()
    states = {
        "Emailed Co": dict(state="pending", contact_email="privacy@emailed.example"),
        "Postal Co": dict(state="pending", contact_email=""),
        "Sent Co": dict(state="sent", sent_at=now, contact_email="a@sent.example"),
        "Done Co": dict(state="confirmed", sent_at=now, confirmed_at=now,
                        contact_email="a@done.example"),
        "Refused Co": dict(state="impossible", sent_at=now, contact_email="a@no.example"),
    }
    for name, fields in states.items():
        party = ThirdParty.objects.create(name=name, kind="third_party",
                                          contact_email=fields.pop("contact_email"))
        ThirdPartyNotice.objects.create(request=request, third_party=party, **fields)
    report = _report(request)
    assert "To send" not in report
    rows = {name: report[report.index(f"<td>{name}</td>"):].split("</tr>")[0]
            for name in states}
    today = now.strftime("%B %-d, %Y")
    assert "Being told now" in rows["Emailed Co"] and "Not yet" in rows["Emailed Co"]
    assert "privacy office" in rows["Postal Co"]
    assert f"Yes, on {today}" in rows["Sent Co"] and "Not yet" in rows["Sent Co"]
    assert rows["Done Co"].count(f"Yes, on {today}") == 2
    assert "could not" in rows["Refused Co"]
    parties = {p["third_party"]: p for p in deletion_summary(request)["third_parties"]}
    assert parties["Done Co"]["told"] and parties["Done Co"]["confirmed"]
    assert not parties["Emailed Co"]["told"] and not parties["Emailed Co"]["confirmed"]


def test_the_status_page_shows_third_party_confirmations_that_arrive_after_the_report(
        client, open_status):
    """The deletion report is dated; a confirmation arriving later shows on the
    consumer's status page, which reads where each third party stands now."""
    request = file_request(request_type="deletion", jurisdiction="CA", state="completed")
    party = ThirdParty.objects.create(name="Late Co", kind="third_party",
                                      contact_email="privacy@late.example")
    notice = ThirdPartyNotice.objects.create(request=request, third_party=party,
                                             state="sent", sent_at=timezone.now())
    url = open_status(client, request)
    row = client.get(url).content.decode().split("<td>Late Co</td>")[1].split("</tr>")[0]
    assert "Not yet" in row
    ThirdPartyNotice.objects.filter(pk=notice.pk).update(state="confirmed",
                                                         confirmed_at=timezone.now())
    row = client.get(url).content.decode().split("<td>Late Co</td>")[1].split("</tr>")[0]
    assert row.count("Yes, " + timezone.now().strftime("%B %-d, %Y")) == 2
    assert "as on" in _report(request) and "status page shows their answers" in _report(
        request)


def test_email_templates_edited_before_plain_names_are_moved_to_them(alice):
    """Migration 0022: the newest edited version of a notice that still names the
    right by its legal label gets a new version using the plain name; defaults and
    versions without the label are left alone."""
    legal = "Done: {{ request.type_rules.label }} ({{ request.reference }})."
    EmailTemplateVersion.objects.create(notice="completed", number=1, subject="Done",
                                        body_text=legal, body_html=f"<p>{legal}</p>",
                                        created_by=alice)
    EmailTemplateVersion.objects.create(notice="denied", number=1, subject="No",
                                        body_text="Sorry.", body_html="<p>Sorry.</p>",
                                        created_by=alice)
    migration = importlib.import_module(
        "requests_app.migrations.0022_plain_labels_in_edited_emails")
    migration.plain_labels(django_apps, None)
    newest = current_version("completed")
    assert newest.number == 2 and "automatic update" in newest.comment
    assert "type_rules.plain_label" in newest.body_text and "type_rules.label" not in (
        newest.body_text + newest.body_html)
    assert EmailTemplateVersion.objects.filter(notice="denied").count() == 1
    request = file_request(request_type="access", state=State.COMPLETED)
    text = render_version(newest, notice_context(request))[1]
    assert str(REQUEST_TYPES["access"].plain_label) in text
