"""The desk's fulfilment panels in a real browser: the deletion dry run table by table
above its approval, and a failed source retried with its own button."""

import pytest

from requests_app.models import DataSource, PrivacyRequest, SourceRun, State
from tests.conftest import file_request, log_in, screenshot


@pytest.mark.django_db(transaction=True)
def test_a_manager_reads_the_dry_run_and_retries_a_failed_source(page, alice, settings,
                                                                  tmp_path):
    settings.MEDIA_ROOT = tmp_path
    shop = DataSource.objects.create(name="Shop", kind="sql", enabled=False)
    archive = DataSource.objects.create(name="Paper archive", kind="manual", owner=alice,
                                        categories=["user.contact.address"])
    deletion = file_request(request_type="deletion", state=State.RESULTS_READY)
    SourceRun.objects.create(request=deletion, source=shop, action="plan_erasure",
                             state="done", result={"tables": {"orders": {
                                 "rows": 2, "action": "retain",
                                 "legal_basis": "Invoices kept seven years"}}})
    log_in(page, alice)
    page.goto(f"/staff/requests/{deletion.reference}/")
    row = page.locator('#erasure-plan tr[data-plan-table="orders"]')
    assert row.is_visible() and "Invoices kept seven years" in row.inner_text()
    screenshot(page, "staff-desk-dry-run")

    failed = file_request(request_type="access", state=State.NEEDS_ATTENTION,
                          email="lee@example.com")
    run = SourceRun.objects.create(request=failed, source=archive, action="gather",
                                   state="failed", attempts=1,
                                   last_error="Paper archive: the cabinet is locked")
    page.goto(f"/staff/requests/{failed.reference}/")
    assert "the cabinet is locked" in page.locator(f'[data-source-error="{run.pk}"]').inner_text()
    page.locator(f'button[data-retry-source="{run.pk}"]').click()
    page.wait_for_load_state()
    assert "Paper archive runs again." in page.content()
    run.refresh_from_db()
    assert run.state == "waiting" and run.attempts == 2  # the owner has the task again
    assert PrivacyRequest.objects.get(pk=failed.pk).state == State.WAITING_MANUAL
