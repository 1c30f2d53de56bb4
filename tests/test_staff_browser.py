"""End to end in a real browser: log in with a TOTP code, work a request from the
queue through release, and check that an analyst is neither offered nor able to
post a denial."""

import pytest

from requests_app.models import AuditEvent, PrivacyRequest, State
from tests.conftest import file_request, log_in, screenshot


def take(page, label):
    """Open a step on the desk and press its button."""
    page.locator("details.step summary", has_text=label).click()
    page.locator("details.step[open] button[type=submit]").click()
    page.wait_for_load_state()


@pytest.mark.django_db(transaction=True)
def test_a_manager_works_a_request_from_the_queue_to_release(page, alice, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    request = file_request(request_type="access", jurisdiction="VA")
    log_in(page, alice)
    assert page.url.endswith("/staff/")
    page.goto("/staff/queue/")
    screenshot(page, "staff-queue")
    page.click(f"text={request.reference}")
    assert page.locator("[data-testid=state]").inner_text() == "Pending identity verification"
    # Verified by hand: how, the points checked, the degree, the signed declaration.
    page.locator("details.step summary", has_text="Mark identity verified").click()
    form = page.locator("details.step[open]")
    assert "needs a reasonably high degree of certainty" in form.inner_text()
    for method in ("document", "declaration"):
        form.locator(f"input[name='verify_manually-methods'][value='{method}']").check()
    for point in ("name", "email", "postal_address"):
        form.locator(f"input[name='verify_manually-points'][value='{point}']").check()
    form.locator("select[name='verify_manually-level']").select_option("reasonably_high")
    form.locator("input[name='verify_manually-evidence']").set_input_files(files=[{
        "name": "declaration.pdf", "mimeType": "application/pdf",
        "buffer": b"%PDF-1.4 signed declaration"}])
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    # verify runs begin_review after the commit: the request is in review.
    assert page.locator("[data-testid=state]").inner_text() == "In review"
    take(page, "Approve and start fulfilment")
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY, request.state
    page.reload()
    screenshot(page, "staff-desk-results-ready")
    # The package preview, before releasing it: a download, audited.
    with page.expect_download() as download:
        page.locator("section[aria-labelledby=packages] a").first.click()
    assert download.value.suggested_filename.endswith(".zip")
    assert AuditEvent.objects.filter(request=request, action="package.previewed").exists()
    take(page, "Release the results to the consumer")
    assert page.locator("[data-testid=state]").inner_text() == "Completed"
    assert "Done: Release the results" in page.content()
    assert PrivacyRequest.objects.get(pk=request.pk).responded_at is not None


@pytest.mark.django_db(transaction=True)
def test_an_analyst_is_not_offered_and_cannot_post_a_denial(page, bob):
    request = file_request(state=State.IN_REVIEW)
    log_in(page, bob)
    page.goto(f"/staff/requests/{request.reference}/")
    assert page.locator('details.step[data-step="approve"]').count() == 1
    assert page.locator('details.step[data-step="deny"]').count() == 0
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = page.request.post(
        f"/staff/requests/{request.reference}/step/deny/",
        form={"csrfmiddlewaretoken": token, "deny-expected_state": "in_review",
              "deny-version": request.version, "deny-reason_code": "exemption",
              "deny-detail": "Not allowed."})
    assert response.status == 403
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.IN_REVIEW
    screenshot(page, "staff-desk-analyst")


@pytest.mark.django_db(transaction=True)
def test_the_progress_panel_refreshes_itself_while_work_runs(page, bob):
    from requests_app.models import DataSource, SourceRun

    request = file_request(state=State.FULFILLING)
    source = DataSource.objects.create(name="Paper archive", kind="manual")
    run = SourceRun.objects.create(request=request, source=source, action="gather",
                                   state=SourceRun.State.WAITING)
    log_in(page, bob)
    page.goto(f"/staff/requests/{request.reference}/")
    assert page.locator('#progress [data-run-state="waiting"]').count() == 1
    SourceRun.objects.filter(pk=run.pk).update(state=SourceRun.State.DONE, records_found=3)
    # No reload: the panel fetches itself again within its 5 seconds.
    page.wait_for_selector('#progress [data-run-state="done"]', timeout=15_000)
    assert page.url.endswith(f"/staff/requests/{request.reference}/")
