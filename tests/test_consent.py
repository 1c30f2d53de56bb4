"""Purposes, the consent ledger, the preference page, Global Privacy Control, opt-outs
pushed to their sources and third parties, and the disclosure log."""

import datetime
import io
import re

import pytest
import sqlalchemy as sa
import time_machine
from django.core import mail
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from requests_app.models import (
    Actor,
    ConsentRecord,
    DataSource,
    Disclosure,
    PrivacyRequest,
    Purpose,
    PurposeNotice,
    SourceRun,
    State,
    ThirdParty,
    ThirdPartyNotice,
)
from requests_app.models.audit import AppendOnlyError
from requests_app.models.privacy_request import TransitionInputError
from requests_app.preferences import links
from requests_app.preferences.middleware import BROWSER_COOKIE
from requests_app.services.consent import disclosures
from requests_app.services.consent import ledger as consent
from requests_app.services.fulfilment import manual
from requests_app.services.preferences import choices
from requests_app.sources.demo_http import DemoHttpService, seed
from tests.conftest import committed, file_request

pytestmark = pytest.mark.django_db

PAT = "pat@example.com"
Method, Action = ConsentRecord.Method, ConsentRecord.Action


@pytest.fixture
def partners(make_purpose):
    return make_purpose("channel-partners", "opt_in", "opt_out_partners")


@pytest.fixture
def ads(make_purpose):
    return make_purpose("cross-context-ads", "opt_out", "opt_out_sale", gpc=True)


def withdraw(purpose, email=PAT):
    with committed():
        return consent.record(consent.person(email), purpose, Action.WITHDRAW,
                              method=Method.PREFERENCE_PAGE, notice=purpose.current_notice,
                              actor=Actor.consumer())


def allowed_now(purpose, email=PAT):
    (choice,) = [c for c in consent.choices(consent.person(email)) if c.purpose == purpose]
    return choice.allowed


# --- the ledger --------------------------------------------------------------------


def test_an_opt_in_purpose_with_no_grant_is_never_consent(partners, ads):
    assert allowed_now(partners) is False
    assert consent.allowed_at(consent.person(PAT), partners, timezone.now()) is False
    # An opt-out purpose runs until the person says no.
    assert allowed_now(ads) is True
    # Withdrawing what was never granted still is no consent.
    withdraw(partners)
    assert allowed_now(partners) is False


def test_a_withdrawal_after_a_grant_wins_and_a_new_grant_after_it_wins_again(partners, grant):
    with time_machine.travel("2026-03-01 10:00Z"):
        grant(partners)
    with time_machine.travel("2026-04-01 10:00Z"):
        withdraw(partners)
    assert allowed_now(partners) is False
    subject = consent.person(PAT)
    assert consent.allowed_at(subject, partners, datetime.datetime(2026, 3, 15, tzinfo=datetime.UTC))
    assert not consent.allowed_at(subject, partners, datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC))
    grant(partners)
    assert allowed_now(partners) is True
    # Another person's choice is their own.
    assert allowed_now(partners, email="sam@example.com") is False


def test_the_ledger_matches_the_address_whatever_its_case(partners, grant):
    grant(partners, email="Pat@Example.COM")
    assert allowed_now(partners, email="pat@example.com") is True


def test_an_opt_in_grant_needs_its_affirmative_act_and_the_notice_of_its_purpose(partners, ads):
    with pytest.raises(TransitionInputError, match="affirmative act"):
        consent.record(consent.person(PAT), partners, Action.GRANT, method=Method.GPC,
                       notice=partners.current_notice, actor=Actor.consumer())
    with pytest.raises(TransitionInputError, match="another purpose"):
        consent.record(consent.person(PAT), partners, Action.WITHDRAW, method=Method.GPC,
                       notice=ads.current_notice, actor=Actor.consumer())
    assert not ConsentRecord.objects.exists()


def test_each_record_names_the_notice_version_shown_and_is_audited(partners, grant):
    entry = grant(partners)
    assert entry.notice.version == 1 and entry.affirmative_act == "ticked yes"
    event = entry.purpose.records.get().request  # no request for a plain grant
    assert event is None
    from requests_app.models import AuditEvent

    audit = AuditEvent.objects.get(action="consent.grant")
    assert audit.data["purpose"] == "channel-partners" and audit.data["notice_version"] == 1
    assert PAT not in str(audit.data) and audit.data["subject"] == consent.person(PAT)


def test_the_ledger_cannot_be_edited_or_deleted(partners, grant):
    entry = grant(partners)
    with pytest.raises(AppendOnlyError):
        ConsentRecord.objects.filter(pk=entry.pk).update(action=Action.WITHDRAW)
    with pytest.raises(AppendOnlyError):
        ConsentRecord.objects.filter(pk=entry.pk).delete()
    entry.action = Action.WITHDRAW
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        partners.current_notice.delete()
    # Below the ORM, PostgreSQL refuses as well.
    for statement in ("UPDATE requests_app_consentrecord SET action = 'withdraw'",
                      "DELETE FROM requests_app_consentrecord",
                      "UPDATE requests_app_purposenotice SET text = 'other words'"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)
    entry.refresh_from_db()
    assert entry.action == Action.GRANT


def test_a_changed_notice_must_be_read_again_before_choosing(partners):
    old = partners.current_notice
    PurposeNotice.objects.create(purpose=partners, version=2, text="New words")
    with pytest.raises(TransitionInputError, match="changed"):
        choices.change(PAT, partners, Action.GRANT, method=Method.PREFERENCE_PAGE, notice=old,
                       actor=Actor.consumer(), affirmative_act="yes")


# --- the preference page -----------------------------------------------------------


def open_page(client, email=PAT):
    response = client.get(f"/preferences/link/{links.make_token(email)}/")
    assert response.status_code == 302 and response.url == "/preferences/manage/"
    return client.get("/preferences/manage/")


def test_the_signed_link_opens_the_choices_and_one_click_changes_one(client, partners, ads):
    page = open_page(client)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Channel Partners" in html and "What channel-partners means." in html
    assert "No (you have never agreed)." in html and "Notice v1" in html
    response = client.post("/preferences/manage/", {
        "purpose": "channel-partners", "choice": "grant",
        "notice": partners.current_notice.pk}, follow=True)
    assert "you said yes to" in response.content.decode()
    entry = ConsentRecord.objects.get(purpose=partners)
    assert entry.method == Method.EMAIL_LINK and entry.action == Action.GRANT
    assert "Yes, I agree" in entry.affirmative_act and "version 1" in entry.affirmative_act
    assert allowed_now(partners) is True


def test_withdraw_from_everything_in_one_step(client, partners, ads, settings, grant):
    grant(partners)
    open_page(client)
    with committed():
        response = client.post("/preferences/manage/", {"everything": "1"}, follow=True)
    assert "withdrawn from everything" in response.content.decode()
    assert allowed_now(partners) is False and allowed_now(ads) is False
    # Asking again changes nothing more.
    with committed():
        client.post("/preferences/manage/", {"everything": "1"})
    assert ConsentRecord.objects.filter(action=Action.WITHDRAW).count() == 2


def test_a_tampered_link_is_refused_with_a_clear_page(client, partners):
    token = links.make_token(PAT)
    for bad in (token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"), "not-a-token", "x"):
        response = client.get(f"/preferences/link/{bad}/")
        assert response.status_code == 400
        assert "The link is not valid" in response.content.decode()
        assert "Get a code by email" in response.content.decode()
    assert client.get("/preferences/manage/").status_code == 302  # nothing opened


def test_an_expired_link_is_refused_with_a_clear_page(client, settings, partners):
    with time_machine.travel(timezone.now() - datetime.timedelta(
            days=settings.PREFERENCE_LINK_MAX_AGE_DAYS + 1)):
        token = links.make_token(PAT)
    response = client.get(f"/preferences/link/{token}/")
    assert response.status_code == 410
    assert "The link has expired" in response.content.decode()


def test_a_link_made_with_another_secret_key_is_refused(client, settings, partners):
    token = links.make_token(PAT)
    settings.SECRET_KEY = "another-key-" + "x" * 40
    assert client.get(f"/preferences/link/{token}/").status_code == 400


def test_the_preference_session_ends(client, settings, partners):
    open_page(client)
    with time_machine.travel(timezone.now() + datetime.timedelta(
            minutes=settings.PREFERENCE_SESSION_MINUTES + 1)):
        assert client.get("/preferences/manage/").status_code == 302


def test_bad_posts_get_a_message_not_an_error(client, partners):
    open_page(client)
    for data in ({}, {"purpose": "nope", "choice": "grant"},
                 {"purpose": "channel-partners", "choice": "maybe"},
                 {"purpose": "channel-partners", "choice": "grant", "notice": "abc"},
                 {"purpose": "channel-partners", "choice": "grant", "notice": "999999"}):
        response = client.post("/preferences/manage/", data, follow=True)
        assert response.status_code == 200
        assert 'class="error"' in response.content.decode()
    assert not ConsentRecord.objects.exists()


def test_a_token_opens_only_what_it_was_made_for(client, partners):
    unsubscribe = links.make_token(PAT, purpose=links.UNSUBSCRIBE)
    # The List-Unsubscribe token, seen by mail providers, does not open the page of
    # choices, and a preference link does not unsubscribe.
    assert client.get(f"/preferences/link/{unsubscribe}/").status_code == 400
    assert client.get("/preferences/manage/").status_code == 302
    manage = links.make_token(PAT)
    assert client.post(f"/preferences/unsubscribe/{manage}/").status_code == 400
    assert client.get(f"/preferences/unsubscribe/{unsubscribe}/").status_code == 200


def test_changes_on_the_preference_page_are_rate_limited(client, settings, partners):
    settings.RATELIMIT_FORM_PER_EMAIL = 3
    settings.RATELIMIT_FORM_PER_IP = 100
    open_page(client)
    notice = partners.current_notice.pk
    for choice in ("grant", "withdraw", "grant"):
        with committed():
            response = client.post("/preferences/manage/", {
                "purpose": partners.slug, "choice": choice, "notice": notice})
        assert response.status_code == 302
    with committed():
        response = client.post("/preferences/manage/", {
            "purpose": partners.slug, "choice": "withdraw", "notice": notice})
    assert response.status_code == 429
    assert ConsentRecord.objects.count() == 3


def test_the_link_does_not_show_the_address():
    token = links.make_token(PAT)
    assert "pat" not in token.lower() or PAT not in token
    import base64

    assert b"pat@" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


# --- Global Privacy Control --------------------------------------------------------


def test_a_gpc_signal_opts_the_browser_out_of_sale_and_sharing_and_says_so(client, ads, partners):
    response = client.get("/", HTTP_SEC_GPC="1")
    assert "Global Privacy Control honoured" in response.content.decode()
    browser_id = response.cookies[BROWSER_COOKIE].value
    # Recorded once the browser shows it keeps its id (a client keeping no cookies
    # would add a "browser" to the append-only ledger on every request).
    assert not ConsentRecord.objects.exists()
    client.get("/", HTTP_SEC_GPC="1")
    (entry,) = ConsentRecord.objects.all()
    assert entry.purpose == ads and entry.method == Method.GPC
    assert entry.subject == consent.browser(browser_id)
    # The same browser again: recorded once.
    client.get("/", HTTP_SEC_GPC="1")
    assert ConsentRecord.objects.count() == 1
    # Only the purposes the signal covers.
    assert not ConsentRecord.objects.filter(purpose=partners).exists()


def test_clients_keeping_no_cookies_add_nothing_to_the_ledger(client, ads):
    from django.test import Client

    for _ in range(3):
        Client().get("/", HTTP_SEC_GPC="1")
        Client().get("/favicon.ico", HTTP_SEC_GPC="1")
    assert not ConsentRecord.objects.exists()


def test_a_yes_given_after_gpc_stands(client, ads):
    open_page(client)
    with committed():
        client.get("/preferences/manage/", HTTP_SEC_GPC="1")
    assert allowed_now(ads) is False
    with committed():
        client.post("/preferences/manage/", {"purpose": ads.slug, "choice": "grant",
                                             "notice": ads.current_notice.pk},
                    HTTP_SEC_GPC="1")
        page = client.get("/preferences/manage/", HTTP_SEC_GPC="1")
    assert allowed_now(ads) is True
    assert "Allowed (you have not said no)." in page.content.decode()
    assert ConsentRecord.objects.filter(subject=consent.person(PAT), method=Method.GPC).count() == 1


def test_without_the_signal_nothing_is_recorded_or_said(client, ads):
    for value in (None, "0", "yes"):
        headers = {} if value is None else {"HTTP_SEC_GPC": value}
        response = client.get("/", **headers)
        assert "Global Privacy Control" not in response.content.decode()
    assert not ConsentRecord.objects.exists()


def test_gpc_on_a_visit_tied_to_a_person_opts_the_person_out_and_tells_the_sources(
        client, ads):
    open_page(client)
    with committed():
        response = client.get("/preferences/manage/", HTTP_SEC_GPC="1")
    html = response.content.decode()
    assert "for this browser and for you" in html
    person = ConsentRecord.objects.get(subject=consent.person(PAT))
    assert person.method == Method.GPC and person.action == Action.WITHDRAW
    assert "No." in html  # the page shows the new choice
    # An opt-out request carries it (no sources are governed here: recorded only).
    assert allowed_now(ads) is False


def test_gpc_on_a_status_page_opened_with_a_code_opts_the_requester_out(client, ads, open_status):
    request = file_request(request_type="access", email="Sam.Roe@example.com")
    url = open_status(client, request)
    assert not ConsentRecord.objects.exists()
    with committed():
        response = client.get(url, HTTP_SEC_GPC="1")
    assert response.status_code == 200
    assert "for this browser and for you" in response.content.decode()
    person = ConsentRecord.objects.get(subject=consent.person("sam.roe@example.com"))
    assert person.method == Method.GPC and person.action == Action.WITHDRAW
    assert allowed_now(ads, "sam.roe@example.com") is False


def test_gpc_is_not_recorded_on_error_pages(client, ads, open_status):
    request = file_request(request_type="access")
    open_status(client, request)  # the visit is tied to the requester
    client.get("/", HTTP_SEC_GPC="0")  # the browser keeps its id
    with committed():
        assert client.get("/no-such-page/", HTTP_SEC_GPC="1").status_code == 404
        assert client.get("/preferences/link/tampered/", HTTP_SEC_GPC="1").status_code == 400
        assert client.get("/download/bad-token/", HTTP_SEC_GPC="1").status_code == 410
    assert not ConsentRecord.objects.exists()
    # The error page does not claim a record it did not make.
    page = client.get("/no-such-page/", HTTP_SEC_GPC="1").content.decode()
    assert "Global Privacy Control honoured" in page and "recorded" not in page
    with committed():
        assert client.get("/", HTTP_SEC_GPC="1").status_code == 200
    assert ConsentRecord.objects.filter(method=Method.GPC).count() == 2  # person, browser


def test_gpc_is_not_read_on_staff_pages(client, ads):
    client.get("/staff/login/", HTTP_SEC_GPC="1")
    assert not ConsentRecord.objects.exists()


# --- opt-outs reach their sources and third parties ----------------------------------


@pytest.fixture
def governed(tmp_path, monkeypatch, bob, make_purpose):
    monkeypatch.setenv("DEMO_HTTP_SECRET", "s3cret")
    data = tmp_path / "loyalty.json"
    seed(data, [PAT, "someone@example.com"])
    service = DemoHttpService(data, secret="s3cret")
    port = service.start()
    http = DataSource.objects.create(name="Loyalty", kind="http",
                                     url=f"http://127.0.0.1:{port}/privacy",
                                     secret_env="DEMO_HTTP_SECRET", verify_tls=False,
                                     timeout_seconds=2)
    manual = DataSource.objects.create(name="Mailing house", kind="manual", owner=bob,
                                       instructions="Remove the address from the lists.")
    # A source the purpose does not govern is not asked.
    DataSource.objects.create(name="Unrelated", kind="manual", owner=bob)
    ads_network = ThirdParty.objects.create(name="Contoso Ads", kind="third_party",
                                            contact_email="privacy@contoso.example")
    marketing = make_purpose("marketing-email", "opt_out", "opt_out_marketing")
    marketing.sources.set([http, manual])
    marketing.third_parties.set([ads_network])
    yield {"http": http, "manual": manual, "purpose": marketing, "data": data,
           "party": ads_network}
    service.stop()


def test_an_opt_out_reaches_every_governed_source_and_third_party_on_its_clock(
        client, governed, bob):
    import json

    open_page(client)
    with committed():
        client.post("/preferences/manage/", {
            "purpose": "marketing-email", "choice": "withdraw",
            "notice": governed["purpose"].current_notice.pk})
    request = PrivacyRequest.objects.get()
    assert request.request_type == "opt_out_marketing" and request.jurisdiction == "UNKNOWN"
    assert list(request.purposes.all()) == [governed["purpose"]]
    # Marketing removal runs on 10 business days wherever the person lives.
    from requests_app import deadlines
    from requests_app.rules import JURISDICTIONS, business_days

    received = deadlines.local_date(request.received_at)
    assert request.due_on == min(deadlines.add_period(received, business_days(10), code)
                                 for code in JURISDICTIONS)
    # The ledger links the withdrawal to its request.
    assert ConsentRecord.objects.get().request == request
    # No verification, no review: straight to the sources.
    request.refresh_from_db()
    assert request.state == State.WAITING_MANUAL
    runs = {r.source.name: r for r in request.source_runs.select_related("source")}
    assert set(runs) == {"Loyalty", "Mailing house"}
    assert runs["Loyalty"].state == SourceRun.State.DONE
    assert PAT in json.loads(governed["data"].read_text())["opt_outs"]
    assert runs["Mailing house"].state == SourceRun.State.WAITING
    # The third party was told, with a link to confirm.
    notice = ThirdPartyNotice.objects.get(request=request)
    assert notice.state == ThirdPartyNotice.State.SENT
    (sent,) = [m for m in mail.outbox if m.to == ["privacy@contoso.example"]]
    assert "Opt-out" in sent.subject and request.reference in sent.body
    confirm_url = re.search(r"/third-parties/confirm/[^/\s]+/", sent.body).group(0)

    # The manual owner confirms: the opt-out is honoured and the consumer told.
    with committed():
        manual.complete_manual_run(runs["Mailing house"], actor=Actor.staff(bob),
                                       outcome="done")
    request.refresh_from_db()
    assert request.state == State.COMPLETED and request.responded_at is not None
    assert any(m.to == [PAT] and request.reference in m.subject + m.body
               and "opt" in (m.subject + m.body).lower() for m in mail.outbox)

    # The third party answers through its link (a GET alone confirms nothing).
    page = client.get(confirm_url)
    assert page.status_code == 200 and request.reference in page.content.decode()
    notice.refresh_from_db()
    assert notice.state == ThirdPartyNotice.State.SENT
    client.post(confirm_url, {"answer": "done"})
    notice.refresh_from_db()
    assert notice.state == ThirdPartyNotice.State.CONFIRMED and notice.confirmed_at


def test_a_third_party_that_cannot_act_must_say_why(client, governed):
    with committed():
        choices.withdraw_everything(PAT, method=Method.PREFERENCE_PAGE, actor=Actor.consumer())
    (sent,) = [m for m in mail.outbox if m.to == ["privacy@contoso.example"]]
    confirm_url = re.search(r"/third-parties/confirm/[^/\s]+/", sent.body).group(0)
    response = client.post(confirm_url, {"answer": "impossible", "note": ""})
    assert "Say why it cannot be done." in response.content.decode()
    client.post(confirm_url, {"answer": "impossible", "note": "We never kept it."})
    notice = ThirdPartyNotice.objects.get()
    assert notice.state == ThirdPartyNotice.State.IMPOSSIBLE and notice.note
    assert client.get(confirm_url[:-5] + "XXXX/").status_code == 400


def test_an_answer_given_outside_the_link_is_recorded_on_the_desk(client, governed, alice):
    """The link expires (THIRD_PARTY_LINK_DAYS); the third party replies by email and
    staff record its answer on the request's desk, audited with them as actor."""
    from requests_app.models import AuditEvent
    from tests.conftest import staff_login

    with committed():
        choices.withdraw_everything(PAT, method=Method.PREFERENCE_PAGE, actor=Actor.consumer())
    (sent,) = [m for m in mail.outbox if m.to == ["privacy@contoso.example"]]
    assert "the link works for 60 days" in sent.body
    confirm_url = re.search(r"/third-parties/confirm/[^/\s]+/", sent.body).group(0)
    with time_machine.travel(timezone.now() + datetime.timedelta(days=61)):
        expired = client.get(confirm_url)
        assert expired.status_code == 410 and "The link has expired" in expired.content.decode()
        assert client.post(confirm_url, {"answer": "done"}).status_code == 410
    notice = ThirdPartyNotice.objects.get()
    assert notice.state == ThirdPartyNotice.State.SENT

    staff_login(client, alice)
    desk = f"/staff/requests/{notice.request.reference}/"
    page = client.get(desk).content.decode()
    assert "Third parties told" in page and "Record the answer Contoso" in page
    answer = f"{desk}third-parties/{notice.pk}/"
    with committed():
        client.post(answer, {"answer": "impossible", "note": ""})  # a reason is needed
    notice.refresh_from_db()
    assert notice.state == ThirdPartyNotice.State.SENT
    with committed():
        response = client.post(answer, {"answer": "impossible", "note": "Data already gone."})
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.state == ThirdPartyNotice.State.IMPOSSIBLE and notice.note == "Data already gone."
    event = AuditEvent.objects.get(action="third_party.impossible")
    assert event.actor == alice and event.data["recorded_by"] == "staff"
    assert "Record the answer" not in client.get(desk).content.decode()  # answered: final


def test_an_opt_out_filed_on_the_request_form_withdraws_its_purposes(governed):
    request = file_request(request_type="opt_out_marketing", email=PAT)
    assert list(request.purposes.all()) == [governed["purpose"]]
    entry = ConsentRecord.objects.get()
    assert entry.method == Method.REQUEST_FORM and entry.request == request
    assert allowed_now(governed["purpose"]) is False


# --- disclosures ------------------------------------------------------------------


@pytest.fixture
def shop_with_shares(tmp_path, monkeypatch):
    path = tmp_path / "shop.sqlite3"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("CREATE TABLE shares (id INTEGER PRIMARY KEY, customer_id INTEGER,"
                             " partner TEXT, cats TEXT, why TEXT, at TIMESTAMP)")
        conn.exec_driver_sql("INSERT INTO customers VALUES (1, 'Pat@Example.com'),"
                             " (2, 'sam@example.com')")
        conn.exec_driver_sql(
            "INSERT INTO shares VALUES "
            "(1, 1, 'Channel partner: Northwind Resellers', 'user.name,user.contact.email',"
            " 'resale', '2026-02-01 12:00:00'),"
            "(2, 1, 'Channel partner: Northwind Resellers', 'user.name', 'resale',"
            " '2026-03-15 12:00:00'),"
            "(3, 2, 'Ad network: Contoso Ads', 'user.device.cookie_id', 'ads',"
            " '2026-03-15 12:00:00'),"
            "(4, 1, 'Payment processor', 'user.financial', 'payments', '2026-03-15 12:00:00')")
    monkeypatch.setenv("SHARES_DSN", f"sqlite:///{path}")
    source = DataSource.objects.create(name="Shop", kind="sql", connection_env="SHARES_DSN",
                                       dataset_map=SHARES_MAP)
    return source, engine


SHARES_MAP = """
name: shop
tables:
  customers:
    primary_key: id
    identity: {email: email}
    columns:
      email: user.contact.email
  shares:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns:
      partner: {category: user, erase: retain}
      cats: {category: user, erase: retain}
      why: {category: user, erase: retain}
      at: {category: user, erase: retain}
    erase: retain
    legal_basis: record of disclosures
    disclosures: {third_party: partner, at: at, categories: cats, purpose: why}
"""


def test_disclosures_against_the_persons_choice_are_flagged(shop_with_shares, partners, ads, grant):
    source, engine = shop_with_shares
    northwind = ThirdParty.objects.create(name="Northwind Resellers", kind="third_party")
    contoso = ThirdParty.objects.create(name="Contoso Ads", kind="third_party")
    partners.third_parties.set([northwind])
    ads.third_parties.set([contoso])
    # Pat said yes to partner sharing on March 1; Sam opted out of ads on March 10.
    with time_machine.travel("2026-03-01 10:00Z"):
        grant(partners, email="pat@example.com")
    with time_machine.travel("2026-03-10 10:00Z"):
        withdraw(ads, email="sam@example.com")

    assert disclosures.scan_source(source, batch=3) == 4  # two pages
    found = {d.row_key: d for d in Disclosure.objects.all()}
    # Feb 1, before any consent to an opt-in purpose: a violation.
    assert found["1"].violated_purpose == partners and "without consent" in found["1"].violation
    # Mar 15, after the grant: fine.
    assert found["2"].violated_purpose is None
    # After Sam opted out: a violation.
    assert found["3"].violated_purpose == ads and "opted out" in found["3"].violation
    # A recipient no purpose governs: recorded, never flagged.
    assert found["4"].third_party is None and found["4"].violated_purpose is None
    assert found["1"].third_party == northwind
    assert found["1"].categories == ["user.name", "user.contact.email"]
    assert found["1"].subject == consent.person("pat@example.com")

    # The scan resumes where it stopped: a new row only.
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO shares VALUES (5, 2, 'Contoso Ads', 'user.name',"
                             " 'ads', '2026-04-01 00:00:00')")
    assert disclosures.scan_source(source) == 1
    assert disclosures.scan_source(source) == 0

    # Right to Know: Pat's recipients, with categories and dates.
    summary = disclosures.for_person("pat@example.com")
    northwind_entry = next(e for e in summary if e["recipient"] == "Northwind Resellers")
    assert northwind_entry["count"] == 2
    assert northwind_entry["categories"] == ["user.contact.email", "user.name"]


def test_rows_that_cannot_be_tied_to_anyone_do_not_stop_the_scan(shop_with_shares, ads):
    source, engine = shop_with_shares
    with engine.begin() as conn:
        # Customers erased (no row to join) and a missing time, at the end of a page.
        conn.exec_driver_sql("INSERT INTO shares VALUES (5, 99, 'X', '', '', '2026-01-01'),"
                             " (6, 98, 'X', '', '', '2026-01-01'), (7, 1, 'X', '', '', NULL),"
                             " (8, 2, 'Contoso Ads', '', '', '2026-05-01 00:00:00')")
    assert disclosures.scan_source(source, batch=2) == 5  # rows 1-4 and 8
    assert set(Disclosure.objects.values_list("row_key", flat=True)) == {"1", "2", "3", "4",
                                                                            "8"}
    assert disclosures.scan_source(source, batch=2) == 0


def test_a_broken_disclosure_table_does_not_stop_the_other_sources(shop_with_shares, ads,
                                                                    monkeypatch, tmp_path):
    source, engine = shop_with_shares
    broken = DataSource.objects.create(name="Broken", kind="sql", connection_env="SHARES_DSN",
                                       dataset_map=SHARES_MAP.replace("why: {", "gone: {")
                                       .replace("purpose: why", "purpose: gone"))
    result = disclosures.scan_all()
    assert result == {"Broken": None, "Shop": 4}
    assert broken.pk


def test_a_right_to_know_answer_lists_the_recipients(shop_with_shares, partners, unzip):
    from requests_app.services.fulfilment import packages

    northwind = ThirdParty.objects.create(name="Northwind Resellers", kind="third_party")
    partners.third_parties.set([northwind])
    request = file_request(request_type="know_categories", email="pat@example.com")
    package = packages.build(request)
    report = unzip(package).read("report.html").decode()
    assert "Whom we disclosed your information to" in report
    assert "Northwind Resellers" in report and "2026-02-01 to 2026-03-15 (2 times)" in report
    assert "Contoso" not in report  # Sam's, not Pat's
    assert "may be incomplete" not in report


def test_a_withdrawal_by_letter_counts_from_the_day_it_arrived(governed, alice, days_ago):
    from requests_app.services.requests.filing import NewRequest, do_receive_request

    with committed():
        request = do_receive_request(NewRequest(
            request_type="opt_out_marketing", jurisdiction="CA", channel="post", name="Pat",
            email=PAT, received_at=days_ago(3)), actor=Actor.staff(alice))
    entry = ConsentRecord.objects.get()
    assert entry.at == request.received_at and entry.method == Method.STAFF_WRITING
    assert entry.staff == alice


def test_matching_a_recipient_takes_whole_words():
    ads = ThirdParty(name="Ads", kind="third_party")
    northwind = ThirdParty(name="Northwind Resellers", kind="third_party")
    parties = [ads, northwind]
    assert disclosures.match_third_party("Channel partner: Northwind Resellers", parties) \
        is northwind
    assert disclosures.match_third_party("Ad network: Contoso Ads", parties) is ads
    assert disclosures.match_third_party("Roadside Assistance", parties) is None
    assert disclosures.match_third_party("ADS", parties) is ads


def test_a_disclosure_table_must_lead_to_an_email(db):
    from requests_app.sources.datamap import DatasetMapError, parse

    bad = SHARES_MAP.replace("    references:\n      - {column: customer_id, to: customers.id}\n",
                             "")
    with pytest.raises(DatasetMapError, match="disclosure table needs an `email`"):
        parse(bad)
    with pytest.raises(DatasetMapError, match="`at`"):
        parse(SHARES_MAP.replace("at: at, ", ""))


def test_the_demo_shows_partner_sharing_without_consent_as_violations(tmp_path, monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DEMO_SHOP_DSN", f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    call_command("seed_demo", subjects=120, requests=0, stdout=io.StringIO())
    partners = Purpose.objects.get(slug="channel-partners")
    assert partners.is_opt_in and partners.current_notice.version == 1
    shared = Disclosure.objects.filter(third_party__name="Northwind Resellers")
    assert shared.exists()
    # Nobody opted in: every share to the channel partner went against the person.
    assert not shared.filter(violated_purpose=None).exists()
    # Sharing with the payment processor is governed by no purpose.
    assert not Disclosure.objects.filter(third_party__name="Woodgrove Payments").exclude(
        violated_purpose=None).exists()
    # Running it again adds nothing.
    count = Disclosure.objects.count()
    call_command("seed_demo", subjects=120, requests=0, stdout=io.StringIO())
    assert Disclosure.objects.count() == count


def test_one_click_unsubscribe_from_a_marketing_email(client, governed):
    from django.test import Client

    headers = links.unsubscribe_headers(PAT)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<[^>]*(/preferences/unsubscribe/[^>]+)>",
                    headers["List-Unsubscribe"]).group(1)
    page = client.get(url)  # a link scanner: asks, changes nothing
    assert "Unsubscribe" in page.content.decode() and not ConsentRecord.objects.exists()
    # The mail provider's one-click POST: no cookie, no CSRF token.
    with committed():
        done = Client(enforce_csrf_checks=True).post(url, "List-Unsubscribe=One-Click",
                                                     content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200
    assert "no more marketing" in done.content.decode()
    assert allowed_now(governed["purpose"]) is False
    assert PrivacyRequest.objects.get().request_type == "opt_out_marketing"
    # Twice changes nothing more.
    with committed():
        Client().post(url)
    assert PrivacyRequest.objects.count() == 1
    assert client.post("/preferences/unsubscribe/garbage/").status_code == 400
