import re
from pathlib import Path

import pytest

from requests_app.models import PrivacyRequest
from requests_app.models.privacy_request import new_reference
from tests.conftest import file_request

ROOT = Path(__file__).resolve().parent.parent


def test_references_are_long_random_and_unambiguous():
    refs = {new_reference() for _ in range(5000)}
    assert len(refs) == 5000
    for ref in list(refs)[:200]:
        assert re.fullmatch(r"PP-[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", ref)


@pytest.mark.django_db
def test_each_request_gets_its_own_reference():
    first, second = file_request(), file_request()
    assert first.reference != second.reference
    assert PrivacyRequest.objects.get(reference=first.reference) == first


def test_the_committed_lifecycle_diagram_matches_the_machine(settings):
    from requests_app.management.commands.lifecycle_diagram import render

    committed = (ROOT / "docs" / "lifecycle.md").read_text()
    assert committed == render(), "run `make lifecycle-diagram` and commit docs/lifecycle.md"


def test_every_setting_is_documented():
    text = (ROOT / "privacyportal" / "settings.py").read_text()
    names = set(re.findall(r'env(?:str|bool|int|list)?\("([A-Z_]+)"', text))
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in documented)
    assert not missing, f"undocumented settings: {missing}"
