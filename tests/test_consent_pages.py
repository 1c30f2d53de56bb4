"""The consent side's pages: the preference page in a real browser, the staff
violation list, the auditor's opt-out report, the preference-link command."""

import io
import re

import pytest
import time_machine
from django.core.management import call_command

from requests_app.models import Actor, ConsentRecord, Disclosure, DataSource
from requests_app.services.consent import ledger as consent
from tests.conftest import committed, file_request, screenshot, staff_login

PAT = "pat@example.com"


@pytest.mark.django_db(transaction=True)
def test_the_preference_page_from_an_email_link_withdraws_a_consent(
        page, live_server, make_purpose, grant):
    partners = make_purpose("channel-partners", "opt_in", "opt_out_partners",
                            text="We give your name and address to Northwind Resellers.")
    make_purpose("marketing-email", "opt_out", "opt_out_marketing")
    grant(partners)
    out = io.StringIO()
    call_command("preference_link", PAT, stdout=out)
    link = out.getvalue().strip()
    path = re.search(r"/preferences/link/[^/]+/", link).group(0)

    page.goto(path)
    assert page.url.endswith("/preferences/manage/")
    card = page.locator("#purpose-channel-partners")
    assert "Yes, you agreed." in card.inner_text()
    card.locator("summary").click()
    assert "Northwind Resellers" in card.inner_text()
    screenshot(page, "preferences-before")
    card.get_by_role("button", name="Withdraw my consent").click()
    status = page.get_by_role("status").first
    assert "you said no to" in status.inner_text()
    assert "No." in page.locator("#purpose-channel-partners").inner_text()
    screenshot(page, "preferences-after")
    latest = ConsentRecord.objects.filter(purpose=partners).order_by("-id").first()
    assert latest.action == "withdraw" and latest.method == "email_link"

    # A tampered link: a clear page, not an error.
    page.goto(path[:-6] + "AAAAA/")
    assert "The link is not valid" in page.content()
    screenshot(page, "preferences-link-refused")


@pytest.mark.django_db(transaction=True)
def test_gpc_is_announced_in_the_browser(chromium, live_server, make_purpose):
    make_purpose("ads", "opt_out", "opt_out_sale", gpc=True)
    context = chromium.new_context(base_url=live_server.url,
                                   extra_http_headers={"Sec-GPC": "1"})
    tab = context.new_page()
    tab.goto("/")
    assert "Global Privacy Control honoured" in tab.content()
    screenshot(tab, "home-with-gpc")
    tab.reload()  # the browser kept its id: now it is recorded
    context.close()
    assert ConsentRecord.objects.filter(method="gpc").count() == 1


@pytest.mark.django_db
def test_violations_are_listed_for_the_privacy_office_only(
        client, alice, bob, charlie, make_purpose):
    ads = make_purpose("ads", "opt_out", "opt_out_sale")
    source = DataSource.objects.create(name="Shop", kind="manual")
    Disclosure.objects.create(source=source, table="shares", row_key="1", subject="email:x",
                              third_party_name="Contoso Ads", disclosed_at="2026-01-01T00:00Z",
                              violated_purpose=ads, violation="disclosed after the person "
                                                               "opted out of “Ads”")
    for user, status in ((alice, 200), (bob, 200), (charlie, 403)):
        staff_login(client, user)
        response = client.get("/staff/consent/violations/")
        assert response.status_code == status
        if status == 200:
            assert "1 disclosure went against" in response.content.decode()
            assert "Contoso Ads" in response.content.decode()
            # The dashboard counts them, with a link to the list.
            dashboard = client.get("/staff/").content.decode()
            assert "1 disclosure went against" in dashboard
            assert "/staff/consent/violations/" in dashboard


@pytest.mark.django_db
def test_the_opt_out_report_counts_on_time_and_late_per_purpose_and_month(
        client, charlie, bob, make_purpose):
    marketing = make_purpose("marketing-email", "opt_out", "opt_out_marketing")
    with time_machine.travel("2026-03-02 15:00Z"):
        on_time = file_request(request_type="opt_out_marketing", email="a@example.com")
    with time_machine.travel("2026-03-03 15:00Z"):
        late = file_request(request_type="opt_out_marketing", email="b@example.com")
    with time_machine.travel("2026-04-01 15:00Z"):
        file_request(request_type="opt_out_sale", email="c@example.com")
    from requests_app.models import PrivacyRequest

    # Honoured (no source to wait for) at once; say the second took until after its due date.
    assert on_time.due_on.isoformat() < "2026-03-30"
    PrivacyRequest.objects.filter(pk=late.pk).update(responded_at="2026-03-30T12:00Z")
    staff_login(client, charlie)
    response = client.get("/audit/opt-outs/2026/")
    rows = {(r["month"], r["purpose"]): r for r in response.context["rows"]}
    march = rows[("2026-03", marketing.name)]
    assert march["received"] == 2 and march["honoured_on_time"] == 1
    assert march["honoured_late"] == 1
    assert rows[("2026-04", "Opt-out of sale or sharing")]["received"] == 1
    csv_response = client.get("/audit/opt-outs/2026/?format=csv")
    body = csv_response.content.decode()
    assert body.splitlines()[0].startswith("month,purpose,received,honoured_on_time")
    staff_login(client, bob)
    assert client.get("/audit/opt-outs/2026/").status_code == 403


def test_the_preference_link_command_refuses_a_non_address():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Not an email"):
        call_command("preference_link", "nobody")


def test_the_preference_link_command_writes_a_mail_merge_csv(monkeypatch, capsys):
    import csv
    import io

    from requests_app.preferences import links

    monkeypatch.setattr("sys.stdin", io.StringIO("pat@example.com\nnot an address\n\n"
                                                 "sam@example.org\n"))
    call_command("preference_link", "--csv")
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["email"] for r in rows] == ["pat@example.com", "sam@example.org"]
    token = rows[0]["preference_link"].rstrip("/").rsplit("/", 1)[1]
    assert links.read_token(token) == "pat@example.com"
    assert rows[1]["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert "/preferences/unsubscribe/" in rows[1]["list_unsubscribe"]
    assert "line 2: not an email address" in err and "pat@" not in err


@pytest.mark.django_db
def test_the_request_desk_shows_the_persons_consent_history(client, alice, bob, make_purpose):
    ads = make_purpose("ads", "opt_out", "opt_out_sale")
    request = file_request(request_type="access", email=PAT)
    with committed():
        consent.record(consent.person(PAT), ads, "withdraw", method="staff_phone",
                       notice=ads.current_notice, actor=Actor.staff(alice))
    for user in (alice, bob):
        staff_login(client, user)
        page = client.get(f"/staff/requests/{request.reference}/")
        assert page.status_code == 200
        html = page.content.decode()
        assert "Consent history" in html and "Staff, on the phone" in html
        assert "v1" in html
    other = file_request(request_type="access", email="nobody@example.com")
    html = client.get(f"/staff/requests/{other.reference}/").content.decode()
    assert "No choice recorded for this person" in html
