"""The public pages' rate limits: per source address, and per email address from
that source address (a stranger cannot use up someone else's allowance); over
the per-email limit, proving control of the address files the request; and with
the cache (Redis) unreachable, the limits count in the database and the form
still files."""

import re

import pytest

from requests_app.models import OutgoingEmail, PrivacyRequest, RateCount
from tests.conftest import committed, file_request, portal_form

pytestmark = pytest.mark.django_db

STRANGER, PAT_HOME = "203.0.113.9", "198.51.100.20"


@pytest.fixture(autouse=True)
def limits(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RATELIMIT_FORM_PER_EMAIL = 2
    settings.RATELIMIT_FORM_PER_IP = 100


def post(client, address, **overrides):
    with committed():
        return client.post("/request/", portal_form(**overrides), REMOTE_ADDR=address)


def code_sent(notice="filing_code", to="pat.doe@example.com") -> str:
    email = OutgoingEmail.objects.filter(notice=notice, to=to).latest("id")
    return re.search(r"Your code: (\d{6,})", email.body_text).group(1)


def test_a_stranger_flooding_someones_address_does_not_block_that_person(client):
    statuses = [post(client, STRANGER).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    assert post(client, PAT_HOME).status_code == 302  # Pat, from home, is not held up
    assert PrivacyRequest.objects.count() == 3


def test_over_the_per_email_limit_the_code_sent_to_the_address_lets_the_request_in(client):
    for _ in range(2):
        assert post(client, PAT_HOME).status_code == 302
    held = post(client, PAT_HOME, details="The third one.")
    page = held.content.decode()
    assert held.status_code == 429 and 'name="filing_code"' in page
    assert "The third one." in page  # what was typed is kept for the second post
    assert PrivacyRequest.objects.count() == 2
    code = code_sent()
    wrong = post(client, PAT_HOME, details="The third one.", filing_code="00000000")
    assert wrong.status_code == 429 and "That code is not right" in wrong.content.decode()
    assert PrivacyRequest.objects.count() == 2
    assert post(client, PAT_HOME, details="The third one.", filing_code=code).status_code == 302
    assert PrivacyRequest.objects.filter(details="The third one.").count() == 1
    # A code proves the address once: it does not open the door to a stranger.
    assert post(client, STRANGER, filing_code=code).status_code == 302  # first two from there
    post(client, STRANGER)
    assert post(client, STRANGER, filing_code=code).status_code == 429


def test_the_per_ip_limit_still_holds_whatever_the_address(client, settings):
    settings.RATELIMIT_FORM_PER_IP = 3
    emails = [f"p{n}@example.com" for n in range(4)]
    assert [post(client, STRANGER, email=e).status_code for e in emails] == [302, 302, 302, 429]


@pytest.fixture
def cache_down(settings):
    """The cache is a Redis server that is not there (nothing listens on port 9)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0"}}


def test_with_the_cache_down_the_form_files_and_the_limits_count_in_the_database(
        client, cache_down):
    statuses = [post(client, STRANGER).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    assert PrivacyRequest.objects.count() == 2
    assert RateCount.objects.filter(count=3).count() == 2  # the address, and the pair
    assert post(client, PAT_HOME).status_code == 302


def test_with_the_cache_down_asking_for_a_status_code_works_too(client, cache_down):
    request = file_request()
    with committed():
        response = client.post("/status/", {"reference": request.reference})
    assert response.status_code == 302
    assert OutgoingEmail.objects.filter(request=None, notice="status_code").exists() or \
        OutgoingEmail.objects.filter(request=request, notice="status_code").exists()
