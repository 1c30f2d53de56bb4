"""The preference page reached by an email address and a one-time code (no link):
the code opens the person's choices; a wrong, used or locked code does not; the
answer never tells whether we know the address."""

import pytest

from requests_app.models import ConsentRecord, OutgoingEmail
from requests_app.preferences.views import session_email
from tests.conftest import committed, emailed_code

pytestmark = pytest.mark.django_db

PAT = "pat@example.com"


@pytest.fixture
def ads(make_purpose):
    return make_purpose("cross-context-ads", "opt_out", "opt_out_sale", gpc=True)


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    # The per-IP limits are tested on their own below; here every test is one IP.
    settings.RATELIMIT_ENABLED = False


def ask_for_code(client, email=PAT, **extra):
    with committed():  # the code is read from the email as sent
        return client.post("/preferences/", {"email": email, "website": "", **extra})


def last_code(to=PAT) -> str:
    email = OutgoingEmail.objects.filter(to=to, notice="preferences_code").latest("id")
    return emailed_code(email)


def test_an_address_and_its_code_open_the_choices(client, ads):
    response = ask_for_code(client)
    assert response.status_code == 302 and response["Location"].endswith("/preferences/code/")
    response = client.post("/preferences/code/", {"code": last_code()})
    assert response.status_code == 302 and response["Location"].endswith("/preferences/manage/")
    page = client.get("/preferences/manage/")
    assert page.status_code == 200 and ads.name in page.content.decode()
    # One click withdraws; the ledger names the way the person came in.
    client.post("/preferences/manage/", {"purpose": ads.slug, "choice": "withdraw",
                                         "notice": ads.current_notice.pk})
    record = ConsentRecord.objects.get(purpose=ads)
    assert record.action == "withdraw" and record.method == "preference_page"


def test_the_answer_is_the_same_for_an_address_nobody_knows(client, ads):
    known = ask_for_code(client, PAT)
    unknown = ask_for_code(client.__class__(), "nobody-here@example.org")
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    # Both get a code: an opt-out needs no account and no match.
    assert OutgoingEmail.objects.filter(notice="preferences_code").count() == 2


def test_a_wrong_code_is_refused_with_words(client, ads):
    ask_for_code(client)
    code = last_code()
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    response = client.post("/preferences/code/", {"code": wrong})
    assert response.status_code == 200
    assert "not right" in response.content.decode()
    assert session_email(response.wsgi_request) is None


def test_a_used_code_does_not_open_the_page_twice(client, ads):
    ask_for_code(client)
    code = last_code()
    client.post("/preferences/code/", {"code": code})
    client.post("/preferences/sign-out/")
    ask_for_code(client)  # within the resend limit: no new code, the used one is asked for
    response = client.post("/preferences/code/", {"code": code})
    assert response.status_code == 200
    assert "used already" in response.content.decode()
    assert session_email(response.wsgi_request) is None


def test_five_wrong_tries_lock_the_code(client, ads):
    ask_for_code(client)
    code = last_code()
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    for _ in range(5):
        client.post("/preferences/code/", {"code": wrong})
    response = client.post("/preferences/code/", {"code": code})
    assert "locked" in response.content.decode()
    assert session_email(response.wsgi_request) is None


def test_bad_input_gets_a_message_never_an_error(client, ads):
    for email in ["", "not an address", "a@" + "b" * 300 + ".com", "x\x00@example.com"]:
        response = ask_for_code(client, email)
        assert response.status_code == 200, email
        assert 'role="alert"' in response.content.decode()
    ask_for_code(client)
    for code in ["", "abc", "1" * 40, "12 34"]:
        response = client.post("/preferences/code/", {"code": code})
        assert response.status_code == 200, code


def test_the_code_page_without_asking_first_goes_back_to_the_start(client):
    response = client.get("/preferences/code/")
    assert response.status_code == 302 and response["Location"].endswith("/preferences/")


def test_a_bot_filling_the_hidden_field_gets_no_email(client, ads):
    response = ask_for_code(client, website="http://spam.example")
    assert response.status_code == 302
    assert not OutgoingEmail.objects.filter(notice="preferences_code").exists()


def test_asking_too_often_is_answered_the_same_way_without_an_email(client, ads):
    ask_for_code(client)
    again = ask_for_code(client)  # within the minute
    assert again.status_code == 302
    assert OutgoingEmail.objects.filter(notice="preferences_code").count() == 1


def test_code_requests_are_rate_limited_per_address_of_the_client(client, ads, settings):
    settings.RATELIMIT_ENABLED = True
    statuses = [ask_for_code(client, f"p{n}@example.com").status_code for n in range(40)]
    assert 429 in statuses
    limited = ask_for_code(client, "late@example.com")
    assert limited.status_code == 429
    assert "Too many" in limited.content.decode()


def test_code_entry_is_rate_limited_per_address(client, settings):
    settings.RATELIMIT_CODE_PER_EMAIL = 3
    settings.RATELIMIT_ENABLED = True
    with committed():
        client.post("/preferences/", {"email": "rl@example.com"})
    statuses = [client.post("/preferences/code/", {"code": "00000000"}).status_code
                for _ in range(4)]
    assert statuses[-1] == 429
    assert "Too many attempts" in client.post("/preferences/code/", {"code": "1"}).content.decode()
