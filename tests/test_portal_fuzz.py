"""10,000 generated posts of the request form (and some of the code forms): no
input may cause a server error. Rate limits are off here; everything else is real
(PostgreSQL, the outbox, the tasks run eagerly)."""

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st

from requests_app.portal.forms import RESIDENCE
from requests_app.rules import REQUEST_TYPES

pytestmark = pytest.mark.django_db

junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
long_junk = st.one_of(junk, st.integers(1990, 2100).map(lambda n: "é" * n))
dates = st.one_of(st.dates().map(str), junk, st.just(""))


def maybe(strategy):
    return st.one_of(st.none(), strategy)


posts = st.fixed_dictionaries({}, optional={
    "rights": st.lists(st.one_of(st.sampled_from(list(REQUEST_TYPES)), junk), max_size=4),
    "residence": st.one_of(st.sampled_from([c for c, _l, _j in RESIDENCE]), junk),
    "name": st.one_of(st.just("Pat Doe"), junk),
    "email": st.one_of(st.emails().filter(lambda e: len(e) < 200), junk),
    "phone": st.one_of(st.from_regex(r"\+?[0-9 ()-]{7,20}", fullmatch=True), junk),
    "account_number": junk,
    "postal_address": long_junk,
    "filed_by": st.one_of(st.sampled_from(["self", "agent", "parent"]), junk),
    "agent_name": junk,
    "agent_email": st.one_of(st.emails(), junk),
    "period_start": dates,
    "period_end": dates,
    "corrected_field": st.one_of(st.sampled_from(["name", "phone", "other"]), junk),
    "correction_wrong": junk,
    "correction_right": junk,
    "declaration": st.sampled_from(["on", "", "off", "1"]),
    "details": long_junk,
    "website": st.sampled_from(["", "", "", "http://spam.example"]),
})
# Posts that are nearly right (one or two fields off), so that filing itself runs.
nearly_valid = st.fixed_dictionaries({
    "rights": st.lists(st.sampled_from(list(REQUEST_TYPES)), min_size=1, max_size=3,
                       unique=True),
    "residence": st.sampled_from([c for c, _l, _j in RESIDENCE]),
    "name": st.one_of(st.just("Pat Doe"), junk),
    "email": st.sampled_from(["pat@example.com", "sam@example.com", "PAT@example.com "]),
    "filed_by": st.sampled_from(["self", "self", "parent", "agent"]),
    "declaration": st.sampled_from(["on", ""]),
}, optional={"phone": junk, "details": long_junk, "period_start": dates, "period_end": dates,
             "corrected_field": st.sampled_from(["name", "phone", "other", ""]),
             "correction_wrong": junk, "correction_right": junk, "agent_name": junk,
             "agent_email": st.just("ann@agents.example"), "postal_address": junk})
posts = st.one_of(posts, nearly_valid)
uploads = maybe(st.tuples(st.sampled_from([b"%PDF-1.4\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                                           b"MZ", b""]),
                          st.binary(max_size=200), junk))


@hsettings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")), deadline=None,
           derandomize=True, database=None,
           suppress_health_check=list(HealthCheck))
@given(data=posts, upload=uploads)
def test_no_generated_form_post_causes_a_server_error(data, upload, relaxed):
    client = relaxed
    payload = {k: v for k, v in data.items()}
    if upload is not None:
        head, body, name = upload
        payload["permission"] = SimpleUploadedFile((name or "x")[:50] + ".pdf", head + body)
    response = client.post("/request/", payload)
    assert response.status_code in (302, 400, 413), response.status_code
    event(f"answered {response.status_code}")  # --hypothesis-show-statistics shows the mix


@hsettings(max_examples=300, deadline=None, derandomize=True, database=None,
           suppress_health_check=list(HealthCheck))
@given(reference=junk, code=junk, path=st.sampled_from(["/verify/", "/status/code/",
                                                        "/status/"]))
def test_no_generated_code_post_causes_a_server_error(reference, code, path, relaxed):
    response = relaxed.post(path, {"reference": reference, "code": code})
    assert response.status_code in (200, 302, 400), response.status_code


@pytest.fixture
def relaxed(settings, tmp_path, monkeypatch):
    """A client with the rate limits off, and templates rendered as in production
    (without the test runner's per-template signal, which doubles the time here)."""
    from django.template import Template
    from django.test.utils import _TestState

    monkeypatch.setattr(Template, "_render", _TestState.saved_data.template_render)
    settings.RATELIMIT_ENABLED = False
    settings.MEDIA_ROOT = tmp_path
    return Client()
