"""CCPA regs §7102: the yearly metrics count each right apart (requests to limit the
use of sensitive information apart from opt-outs of sale or sharing), can be read
for one jurisdiction, and count a request under the type the consumer asked for."""

import csv
import datetime
import io

import pytest

from requests_app.audit import reports
from requests_app.models import AuditEvent, PrivacyRequest
from tests.conftest import file_request, staff_login

pytestmark = pytest.mark.django_db

AT = datetime.datetime(2025, 4, 1, 15, tzinfo=datetime.timezone.utc)


def test_requests_to_limit_are_counted_apart_from_opt_outs_of_sale():
    file_request(request_type="opt_out_sale", jurisdiction="CA", received_at=AT)
    file_request(request_type="opt_out_sale", jurisdiction="CA", received_at=AT)
    file_request(request_type="limit_sensitive", jurisdiction="CA", received_at=AT)
    file_request(request_type="opt_out_marketing", jurisdiction="CA", received_at=AT)
    groups = reports.metrics(2025)["groups"]
    assert groups["opt_out"]["received"] == 2
    assert groups["limit"]["received"] == 1
    # Marketing opt-outs are not a CCPA right: they do not swell §7102's figure.
    assert groups["marketing"]["received"] == 1


def test_metrics_can_be_read_for_one_jurisdiction(client, charlie):
    file_request(request_type="deletion", jurisdiction="CA", received_at=AT)
    file_request(request_type="deletion", jurisdiction="CA", received_at=AT)
    file_request(request_type="deletion", jurisdiction="VA", received_at=AT)
    assert reports.metrics(2025)["groups"]["delete"]["received"] == 3
    assert reports.metrics(2025, "CA")["groups"]["delete"]["received"] == 2
    assert reports.metrics(2025, "VA")["groups"]["delete"]["received"] == 1
    staff_login(client, charlie)
    page = client.get("/audit/metrics/2025/?jurisdiction=VA").content.decode()
    assert "Requests from jurisdiction VA only" in page
    export = client.get("/audit/metrics/2025/?jurisdiction=CA&format=csv")
    assert 'filename="metrics-2025-CA.csv"' in export["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    deletion = next(r for r in rows if r["type"] == "Deletion")
    assert (deletion["jurisdiction"], deletion["received"]) == ("CA", "2")
    exported = AuditEvent.objects.filter(action="audit.exported").latest("id")
    assert exported.data["filter"] == "CA"


def test_an_unknown_jurisdiction_filter_is_refused_in_words(client, charlie):
    staff_login(client, charlie)
    page = client.get("/audit/metrics/2025/?jurisdiction=Atlantis")
    assert page.status_code == 400 and b"No such jurisdiction" in page.content


def test_a_downgraded_access_request_counts_under_access_with_the_downgrade_noted(
        client, charlie):
    request = file_request(request_type="know_categories", jurisdiction="CA",
                           received_at=AT)
    PrivacyRequest.objects.filter(pk=request.pk).update(original_request_type="access")
    file_request(request_type="know_categories", jurisdiction="CA", received_at=AT)
    groups = reports.metrics(2025)["groups"]
    assert (groups["access"]["received"], groups["access"]["downgraded"]) == (1, 1)
    assert (groups["know"]["received"], groups["know"]["downgraded"]) == (1, 0)
    log = {r["reference"]: r for r in reports.request_log()}
    assert (log[request.reference]["type"], log[request.reference]["type_asked_for"]) == (
        "know_categories", "access")
    staff_login(client, charlie)
    rows = list(csv.DictReader(io.StringIO(
        client.get("/audit/metrics/2025/?format=csv").content.decode())))
    access = next(r for r in rows if r["type"] == "Access and portability")
    assert access["downgraded_to_categories"] == "1"
