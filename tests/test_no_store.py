"""Pages and files with personal data are never kept by a cache (Cache-Control:
no-store); a name, a phone number or an identifier with a line break is refused in
every form (and by the use case behind them); the error pages promise nothing they
cannot know."""

import pytest
from django.template.loader import render_to_string

from requests_app.models import Actor, PrivacyRequest
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.requests.filing import NewRequest, do_receive_request
from tests.conftest import committed, file_request, staff_login

pytestmark = pytest.mark.django_db


def no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_the_staff_desk_and_queue_are_never_cached(client, alice):
    request = file_request()
    staff_login(client, alice)
    for url in ("/staff/", "/staff/queue/", f"/staff/requests/{request.reference}/",
                "/staff/tasks/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert no_store(response), url
        assert "private" in response["Cache-Control"], url


def test_the_auditors_exports_are_never_cached(client, charlie):
    file_request()
    staff_login(client, charlie)
    for url in ("/audit/", "/audit/events/?format=csv", "/audit/requests/?format=jsonl",
                "/audit/opt-outs/2026/?format=csv", "/audit/metrics/2026/?format=csv"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert no_store(response), url


def test_the_consumers_status_and_download_pages_are_never_cached(client, open_status):
    request = file_request(state="completed")
    url = open_status(client, request)
    response = client.get(url)
    assert response.status_code == 200 and request.reference in response.content.decode()
    assert no_store(response)
    assert no_store(client.get("/download/not-a-link/"))
    assert no_store(client.get("/status/"))
    assert no_store(client.get("/preferences/"))
    assert no_store(client.get("/request/sent/"))  # the references just filed


def test_a_login_redirect_is_not_cached_either(client):
    response = client.get("/staff/queue/")
    assert response.status_code == 302 and no_store(response)


def test_public_pages_are_not_marked(client):
    assert not no_store(client.get("/"))


# --- one line ----------------------------------------------------------------------

BROKEN = ["Pat\r\nBcc: eve@example.com", "Pat\nDoe", "Pat\rDoe", "Pat\x00", "Pat\tDoe",
          "Pat\u2028Doe", "Pat\x85Doe"]


def portal_form(**overrides):
    data = {"rights": ["deletion"], "residence": "VA", "name": "Pat Doe",
            "email": "pat.doe@example.com", "filed_by": "self", "declaration": "on",
            "website": ""}
    return {**data, **overrides}


@pytest.mark.parametrize("name", BROKEN)
def test_the_portal_refuses_a_name_with_a_line_break(client, name, settings):
    settings.RATELIMIT_ENABLED = False
    with committed():
        response = client.post("/request/", portal_form(name=name))
    assert response.status_code == 400
    page = response.content.decode()
    assert "on one line" in page or "Null characters are not allowed" in page
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize("field,value", [("agent_name", "Ann\r\nAgent"),
                                         ("phone", "555 0100\n555 0101"),
                                         ("account_number", "A-1\r\nX")])
def test_the_portal_refuses_other_single_line_answers_with_a_line_break(client, field,
                                                                        value, settings):
    settings.RATELIMIT_ENABLED = False
    extra = {"filed_by": "agent", "agent_email": "ann@agents.example"} if field == \
        "agent_name" else {}
    with committed():
        response = client.post("/request/", portal_form(**{field: value, **extra}))
    assert response.status_code == 400 and "on one line" in response.content.decode()
    assert not PrivacyRequest.objects.exists()


def test_the_portal_still_takes_a_name_with_spaces_around_it(client, settings):
    settings.RATELIMIT_ENABLED = False
    with committed():
        response = client.post("/request/", portal_form(name="  Pat Doe \r\n"))
    assert response.status_code == 302
    assert PrivacyRequest.objects.get().identity.name == "Pat Doe"


@pytest.mark.parametrize("name", BROKEN[:3])
def test_staff_intake_refuses_a_name_with_a_line_break(client, bob, name):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    staff_login(client, bob)
    form = {"channel": "post", "received_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "CA", "filed_by": "self",
            "name": name, "email": "lee@example.com",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter",
                                           content_type="application/pdf")}
    response = client.post("/staff/intake/", form)
    assert response.status_code == 400 and "on one line" in response.content.decode()
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize("field", ["name", "phone", "account_number"])
def test_filing_refuses_a_line_break_whatever_door_it_came_through(field):
    values = {"name": "Pat Doe", field: "Pat\r\nBcc: eve@example.com"}
    with pytest.raises(TransitionInputError):
        do_receive_request(NewRequest(request_type="access", jurisdiction="VA", channel="api",
                                      email="pat@example.com", **values),
                           actor=Actor.consumer())
    with pytest.raises(TransitionInputError):
        do_receive_request(NewRequest(request_type="access", jurisdiction="VA", channel="api",
                                      name="Pat", email="pat@example.com",
                                      extra={"loyalty_id": "L-1\nL-2"}),
                           actor=Actor.consumer())
    assert not PrivacyRequest.objects.exists()


# --- error pages -------------------------------------------------------------------


def test_the_error_pages_do_not_promise_that_nothing_was_lost():
    for page in ("500.html", "400.html", "404.html"):
        text = render_to_string(page)
        assert "nothing you sent is lost" not in text, page
    assert "may not have reached us" in render_to_string("500.html")
