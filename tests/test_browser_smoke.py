"""The browser fixture itself: Debian's chromium opens the live portal."""

import pytest

from tests.conftest import screenshot


@pytest.mark.django_db(transaction=True)
def test_the_home_page_opens_in_a_real_browser(page):
    response = page.goto("/")
    assert response.status == 200
    assert page.locator("h1").first.is_visible()
    assert screenshot(page, "home").stat().st_size > 0
