"""No input to the staff pages causes a server error: generated filters, step
forms and intake forms get a page or a clear message."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from requests_app.models import State
from tests.conftest import file_request, staff_login

pytestmark = pytest.mark.django_db

text = st.text(max_size=40)
SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW
@given(params=st.dictionaries(st.sampled_from(["q", "state", "type", "jurisdiction", "assignee",
                                               "due", "page", "mine"]), text))
def test_any_queue_filter_gets_a_page(params, client, bob):
    staff_login(client, bob)
    params = {k: v.replace("\x00", "") for k, v in params.items()}
    assert client.get("/staff/queue/", params).status_code == 200


@SLOW
@given(name=st.sampled_from(["deny", "extend", "request_information", "approve", "merge"]),
       fields=st.dictionaries(st.sampled_from(["reason_code", "detail", "notice", "message",
                                               "expected_state", "version"]), text))
def test_any_step_form_gets_an_answer(name, fields, client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    form = {f"{name}-{k}": v.replace("\x00", "") for k, v in fields.items()}
    response = client.post(f"/staff/requests/{request.reference}/step/{name}/", form)
    assert response.status_code in (302, 400)


@SLOW
@given(fields=st.dictionaries(st.sampled_from(
    ["channel", "received_at", "request_type", "jurisdiction", "filed_by", "name", "email",
     "call_note", "verification_method", "verification_evidence"]), text))
def test_any_intake_form_gets_an_answer(fields, client, bob):
    staff_login(client, bob)
    form = {k: v.replace("\x00", "") for k, v in fields.items()}
    assert client.post("/staff/intake/", form).status_code in (302, 400)


@SLOW
@given(username=text, password=text, code=text)
def test_any_login_gets_an_answer(username, password, code, client):
    response = client.post("/staff/login/", {"username": username.replace("\x00", ""),
                                             "password": password.replace("\x00", ""),
                                             "otp_token": code.replace("\x00", "")})
    assert response.status_code in (400, 429)


# Hand-picked bad inputs for every page that takes input: each gets a page, a
# redirect with a message, a 400 or a 404, never a server error (the test client
# re-raises any exception a view lets through).
HUGE = "9" * 30


def bad_inputs(ref):
    return [
        ("post", "/staff/requests/PP-NOPE/claim/", {}, {302}),
        ("post", "/staff/requests/PP-NOPE/notes/", {"text": "x"}, {404}),
        ("post", f"/staff/requests/{ref}/notes/", {"text": ""}, {302}),
        ("post", f"/staff/requests/{ref}/notes/", {"text": "x" * 5000}, {302}),
        ("post", "/staff/queue/assign/", {"ids": ["abc"], "assignee": "zzz"}, {302}),
        ("post", "/staff/queue/assign/", {"ids": [HUGE], "assignee": "me"}, {302}),
        ("post", "/staff/queue/assign/", {"ids": ["1"], "assignee": HUGE}, {302}),
        ("post", "/staff/queue/assign/", {"ids": ["999999"], "assignee": "me"}, {302}),
        ("get", f"/staff/queue/?assignee={HUGE}&page={HUGE}&state=%00", {}, {200}),
        ("get", f"/staff/queue/?q={'x' * 300}", {}, {200}),
        ("get", f"/staff/queue/?q=%25%5F{HUGE}@", {}, {200}),
        ("get", "/staff/requests/PP-NOPE/", {}, {404}),
        ("get", "/staff/requests/PP-NOPE/progress/", {}, {404}),
        ("get", f"/staff/requests/{ref}/original/", {}, {404}),
        ("get", f"/staff/requests/{ref}/package/nonsense/", {}, {404}),
        ("get", "/staff/tasks/nonsense/", {}, {404}),
        ("post", "/staff/tasks/nonsense/", {}, {404}),
        ("post", f"/staff/requests/{ref}/step/deny/", {}, {302}),
        ("post", f"/staff/requests/{ref}/step/no_such_step/", {}, {404}),
        ("post", f"/staff/requests/{ref}/step/deny/",
         {"deny-expected_state": "in_review", "deny-version": HUGE,
          "deny-reason_code": "nonsense", "deny-detail": "x"}, {400}),
        ("post", f"/staff/requests/{ref}/step/extend/",
         {"extend-expected_state": "in_review", "extend-version": "x",
          "extend-notice": "x" * 5000}, {400}),
        ("post", "/staff/intake/", {"received_at": "0001-01-01T00:00"}, {400}),
        ("post", "/staff/intake/", {"channel": "post", "received_at": "1900-01-01T00:00",
                                    "request_type": "access", "jurisdiction": "CA",
                                    "filed_by": "self", "name": "Lee",
                                    "email": "lee@example.com", "call_note": "x"}, {400}),
        ("post", "/staff/intake/", {"channel": "phone", "received_at": "0001-01-01T00:00",
                                    "request_type": "access", "jurisdiction": "CA",
                                    "filed_by": "self", "name": "Lee",
                                    "email": "lee@example.com", "call_note": "x"}, {400}),
        ("post", "/staff/intake/", {"channel": "phone", "received_at": "2026-02-30T10:00"},
         {400}),
        ("get", f"/staff/emails/denied/?from={HUGE}", {}, {200}),
        ("post", "/staff/emails/denied/", {"subject": "{{", "body_text": "{% x %}",
                                          "body_html": "", "preview": "1"}, {400}),
        ("post", "/staff/emails/nope/default/", {}, {404}),
        ("get", "/audit/requests/?start=garbage&format=zip", {}, {400}),
        ("get", "/audit/events/?start=2026-05-01&end=2026-01-01&format=csv", {}, {400}),
        ("get", "/audit/metrics/0/", {}, {404}),
        ("get", f"/audit/metrics/{HUGE}/", {}, {404}),
        ("get", f"/audit/opt-outs/{HUGE}/", {}, {404}),
        ("get", f"/staff/consent/violations/?page={HUGE}", {}, {200}),
    ]


def test_no_bad_input_causes_a_server_error(client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    wrong = []
    for method, url, data, expected in bad_inputs(request.reference):
        response = getattr(client, method)(url, data)
        if response.status_code not in expected:
            wrong.append((method, url, response.status_code, expected))
    assert not wrong, "\n".join(map(str, wrong))
