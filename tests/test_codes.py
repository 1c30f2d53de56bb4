"""One-time codes (services/codes.py) and the preference page's code routes."""

import datetime

import pytest
from django.utils import timezone

from requests_app.models import OneTimeCode
from requests_app.services.verification import codes

pytestmark = pytest.mark.django_db

SUBJECT = codes.subject_for_email("Pat.Doe@Example.com ")


def test_the_subject_is_a_keyed_hash_of_the_normalised_address():
    assert SUBJECT == codes.subject_for_email("pat.doe@example.com")
    assert "pat" not in SUBJECT and len(SUBJECT) == 64


def test_a_code_has_at_least_six_digits_is_stored_hashed_and_works_once():
    code = codes.issue("test", SUBJECT)
    assert code.isdigit() and len(code) >= 6
    row = OneTimeCode.objects.get()
    assert code not in row.code_hash
    assert codes.check("test", SUBJECT, code) is codes.Result.OK
    assert codes.check("test", SUBJECT, code) is codes.Result.USED


def test_it_rejects_a_wrong_code_and_locks_after_five_wrong_tries(settings):
    code = codes.issue("test", SUBJECT)
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    results = [codes.check("test", SUBJECT, wrong) for _ in range(5)]
    assert results == [codes.Result.WRONG] * 4 + [codes.Result.LOCKED]
    assert codes.check("test", SUBJECT, code) is codes.Result.LOCKED


def test_it_rejects_an_expired_code():
    code = codes.issue("test", SUBJECT)
    OneTimeCode.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert codes.check("test", SUBJECT, code) is codes.Result.EXPIRED


def test_a_code_is_for_one_purpose_and_one_subject_only():
    code = codes.issue("test", SUBJECT)
    assert codes.check("other", SUBJECT, code) is codes.Result.WRONG
    assert codes.check("test", codes.subject_for_email("sam@example.com"), code) \
        is codes.Result.WRONG


def test_a_new_code_at_most_once_a_minute_and_five_times_a_day():
    codes.issue("test", SUBJECT)
    with pytest.raises(codes.TooManyCodes):
        codes.issue("test", SUBJECT)
    for _ in range(4):
        OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=2))
        codes.issue("test", SUBJECT)
    OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=2))
    with pytest.raises(codes.TooManyCodes):
        codes.issue("test", SUBJECT)
    OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(hours=25))
    codes.issue("test", SUBJECT)


def test_only_the_newest_code_counts():
    first = codes.issue("test", SUBJECT)
    OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=2))
    second = codes.issue("test", SUBJECT)
    if first != second:
        assert codes.check("test", SUBJECT, first) is codes.Result.WRONG
    assert codes.check("test", SUBJECT, second) is codes.Result.OK
