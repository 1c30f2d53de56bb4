"""The portal in a real browser (Debian's chromium through Playwright): file a
deletion, read the code from the outbox, confirm, see the timeline; file a
portability request and download the zip. Screenshots of every page on a desktop
and on a 390 px wide phone go to test-artifacts/."""

import hashlib
import io
import json
import re
import zipfile

import pytest

from requests_app.models import Actor, OutgoingEmail, PrivacyRequest, State
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import emailed_code, screenshot

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RATELIMIT_ENABLED = False


def both(page, name):
    """Screenshots of the current page on a desktop and on a phone."""
    screenshot(page, f"portal-{name}-desktop")
    page.set_viewport_size(PHONE)
    path = screenshot(page, f"portal-{name}-phone")
    # And screen by screen, as a phone shows it (full pages are too long to read).
    height = page.evaluate("document.documentElement.scrollHeight")
    for i, top in enumerate(range(0, min(height, 6 * 844), 844)):
        page.screenshot(path=str(path.with_name(f"portal-{name}-phone-{i}.png")), full_page=True,
                        clip={"x": 0, "y": top, "width": 390, "height": min(844, height - top)})
    # Nothing may be wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    page.set_viewport_size(DESKTOP)


def code_for(reference: str, notice: str) -> str:
    email = OutgoingEmail.objects.filter(request__reference=reference,
                                         notice=notice).latest("id")
    return emailed_code(email)


@pytest.mark.django_db(transaction=True)
def test_filing_a_deletion_confirming_it_and_seeing_the_timeline(page):
    page.goto("/")
    both(page, "home")
    page.get_by_role("link", name="Make a request").first.click()
    assert page.url.endswith("/request/")
    both(page, "form")
    # Sent empty: the summary at the top lists the problems and links to the fields.
    page.get_by_role("button", name="Send my request").click()
    summary = page.locator("#error-summary")
    assert "Choose at least one thing" in summary.inner_text()
    assert "Enter your email address" in summary.inner_text()
    both(page, "form-errors")
    page.get_by_label("Delete my information").check()
    page.get_by_label("Where do you live?").select_option("CA")
    page.get_by_label("Your full name").fill("Pat Doe")
    page.get_by_label("Your email address").fill("pat.doe@example.com")
    page.get_by_role("button", name="Send my request").click()
    assert page.url.endswith("/request/sent/")
    both(page, "sent")
    request = PrivacyRequest.objects.get()
    assert request.reference in page.content()
    page.get_by_role("link", name="Enter my code").click()
    page.get_by_label("Reference").fill(request.reference)
    page.get_by_label("Code from the email").fill("00000000")
    page.get_by_role("button", name="Confirm", exact=True).click()
    assert "That code is not right" in page.locator("#error-summary").inner_text()
    both(page, "verify-wrong")
    page.get_by_label("Code from the email").fill(code_for(request.reference, "received"))
    page.get_by_role("button", name="Confirm", exact=True).click()
    assert page.url.endswith(f"/status/{request.reference}/")
    timeline = page.locator("ol.timeline").inner_text()
    assert "We received your request." in timeline
    assert "You confirmed your email address." in timeline
    assert page.get_by_role("button", name="Cancel my request").is_visible()
    both(page, "status")


@pytest.mark.django_db(transaction=True)
def test_the_form_works_by_keyboard_alone(page):
    page.goto("/request/")
    page.keyboard.press("Tab")  # the skip link first
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.get_by_label("Delete my information").focus()
    page.keyboard.press("Space")
    assert page.get_by_label("Delete my information").is_checked()
    # The honeypot is never reached by Tab.
    for _ in range(80):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.name") != "website"


@pytest.mark.django_db(transaction=True)
def test_a_portability_request_ends_in_a_downloaded_zip_with_its_manifest(page, portal_shop, alice):
    page.goto("/request/")
    page.get_by_label("Give me my information in files I can take to another service").check()
    page.get_by_label("Where do you live?").select_option("VA")
    page.get_by_label("Your full name").fill("Pat Doe")
    page.get_by_label("Your email address").fill("pat.doe@example.com")
    page.get_by_label("Phone number (optional)").fill("+1 555 010 0100")
    page.get_by_label("Customer or account number (optional)").fill("C-1001")
    page.get_by_label("I declare under penalty of perjury").check()
    page.get_by_role("button", name="Send my request").click()
    request = PrivacyRequest.objects.get()
    page.goto(f"/verify/?reference={request.reference}")
    both(page, "verify")
    page.get_by_label("Code from the email").fill(code_for(request.reference, "received"))
    page.get_by_role("button", name="Confirm", exact=True).click()
    request.refresh_from_db()
    assert request.evidence.level_reached, request.evidence.outcome
    assert request.state == State.IN_REVIEW
    # The privacy office approves; fulfilment gathers from the shop; results released.
    do_transition(request.pk, "approve", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY, request.state
    do_transition(request.pk, "release", actor=Actor.staff(alice))
    # A new browser session: the status page with a fresh code.
    page.context.clear_cookies()
    page.goto("/status/")
    both(page, "status-start")
    page.get_by_label("Reference").fill(request.reference)
    page.get_by_role("button", name="Send me a code").click()
    both(page, "status-code")
    page.get_by_label("Code from the email").fill(code_for(request.reference, "status_code"))
    page.get_by_role("button", name="Open my request").click()
    assert "Your request is complete." in page.locator("ol.timeline").inner_text()
    both(page, "status-completed")
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("Portable data")).click()
    data = open(info.value.path(), "rb").read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["request"] == request.reference
        files = {entry["name"]: entry for entry in manifest["files"]}
        assert {"Shop/customers.json", "Shop/customers.csv", "Shop/addresses.json"} <= set(files)
        for name, entry in files.items():
            body = archive.read(name)
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
            assert len(body) == entry["bytes"]
        customers = json.loads(archive.read("Shop/customers.json"))
    assert files["Shop/customers.json"]["records"] == 1
    assert customers[0]["customer_number"] == "C-1001"
    assert set(files["Shop/customers.json"]["schema"]) >= {"email", "phone"}


@pytest.mark.django_db(transaction=True)
def test_a_denial_its_appeal_and_the_refusal_pages_in_the_browser(page, settings):
    from tests.conftest import file_request

    request = file_request(request_type="deletion", jurisdiction="VA", state="denied")
    PrivacyRequest.objects.filter(pk=request.pk).update(
        denial_reason="exemption", denial_detail="We must keep invoices for seven years.")
    page.goto(f"/status/?reference={request.reference}")
    page.get_by_role("button", name="Send me a code").click()
    page.get_by_label("Code from the email").fill(code_for(request.reference, "status_code"))
    page.get_by_role("button", name="Open my request").click()
    assert "Attorney General" in page.content()
    both(page, "status-denied")
    page.get_by_role("button", name="Send my appeal").click()  # empty: refused in words
    assert "Say why you disagree" in page.locator("#error-summary").inner_text()
    page.get_by_label("Why do you disagree with our decision?").fill("I closed my account.")
    page.get_by_role("button", name="Send my appeal").click()
    assert "We received your appeal." in page.locator("ol.timeline").inner_text()
    both(page, "status-appealed")
    page.goto("/download/not-a-real-link/")
    both(page, "download-refused")
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_CODE_PER_IP = 1
    from django.core.cache import cache

    cache.clear()
    for _ in range(2):
        page.goto("/status/")
        page.get_by_label("Reference").fill(request.reference)
        page.get_by_role("button", name="Send me a code").click()
    assert "Too many attempts" in page.content()
    both(page, "429")
    cache.clear()
