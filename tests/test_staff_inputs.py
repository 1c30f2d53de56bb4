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
