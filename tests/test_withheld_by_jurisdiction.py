"""What an access or portability answer holds back depends on the request's
jurisdiction (rules/, JurisdictionRules.withheld), and the package says what was
held back, where, and why: California forbids disclosing government ids, account
numbers, medical ids, credentials and biometrics (CCPA regs §7024(d)); the GDPR
gives a copy of the data itself (Art. 15(3)), so only authentication secrets are
held back there, for security (Art. 5(1)(f), Art. 32); a request of no known
jurisdiction gets the strictest list."""

import json

import pytest

from requests_app import rules
from requests_app.models import Actor, Package
from requests_app.services.fulfilment.manual import complete_manual_run
from requests_app.sources.categories import WITHHELD
from tests.conftest import approved, committed

pytestmark = pytest.mark.django_db

SSN = "123-45-6789"
GOV_ID = "user.government_id.national_identification_number"
# The test shop's device cookie is its login cookie here: an authentication secret.
LOGIN_COOKIE_MAP = ("cookie: user.device.cookie_id", "cookie: user.authorization.credentials")


@pytest.mark.parametrize("code,category,rule", [
    ("CA", GOV_ID, "ccpa_7024d"),
    ("CA", "user.financial.credit_card", "ccpa_7024d"),
    ("CA", "user.authorization.password", "ccpa_7024d"),
    ("CA", "user.contact.email", None),
    ("VA", GOV_ID, "us_security"),
    ("TX", "user.biometric.fingerprint", "us_security"),
    ("GDPR", GOV_ID, None),
    ("GDPR", "user.financial.bank_account", None),
    ("GDPR", "user.health_and_medical.record_id", None),
    ("GDPR", "user.authorization.credentials", "credentials"),
    ("UNKNOWN", GOV_ID, "unknown_jurisdiction"),
])
def test_each_jurisdiction_holds_back_its_own_list(code, category, rule):
    found = rules.withholding_for(rules.withheld_under(code), category)
    assert (found.code if found else None) == rule


def test_credentials_are_held_back_in_every_jurisdiction():
    for code in [*rules.JURISDICTIONS, rules.UNKNOWN]:
        assert rules.withholding_for(rules.withheld_under(code),
                                     "user.authorization.credentials") is not None, code


def _access(sources, alice, unzip, jurisdiction):
    sources["manual"].enabled = False
    sources["manual"].save()
    sql = sources["sql"]
    sql.dataset_map = sql.dataset_map.replace(*LOGIN_COOKIE_MAP)
    sql.save()
    request = approved("access", alice, jurisdiction=jurisdiction)
    archive = unzip(Package.objects.get(request=request))
    return archive.read("report.html").decode(), json.loads(archive.read("data.json"))


def _pat(data):
    return next(r for r in data["records"]["Shop/customers"] if r["name"] == "Pat Doe")


def test_a_california_answer_names_what_it_holds_back_and_section_7024d(sources, alice, unzip):
    report, data = _access(sources, alice, unzip, "CA")
    assert SSN not in report and "ck-pat" not in report
    assert "What we hold but do not show" in report and "California" in report
    assert "11 CCR §7024(d)" in report
    assert _pat(data)["ssn"] == WITHHELD
    assert data["records"]["Shop/devices"] == [{"cookie": WITHHELD}]
    held = data["withheld"]
    assert held["jurisdiction"] == "CA" and held["jurisdiction_name"] == "California"
    assert [(c["category"], c["held_in"], c["rule"]) for c in held["categories"]] == [
        ("user.authorization.credentials", ["Shop: devices.cookie"], "ccpa_7024d"),
        (GOV_ID, ["Shop: customers.ssn"], "ccpa_7024d"),
    ]
    assert all("§7024(d)" in c["reason"] for c in held["categories"])


def test_a_gdpr_answer_gives_the_data_itself_but_never_a_credential(sources, alice, unzip):
    report, data = _access(sources, alice, unzip, "GDPR")
    assert SSN in report and _pat(data)["ssn"] == SSN  # Art. 15(3): a copy of the data
    assert "ck-pat" not in report
    assert data["records"]["Shop/devices"] == [{"cookie": WITHHELD}]
    held = data["withheld"]
    assert held["jurisdiction_name"] == "European Union or United Kingdom (GDPR)"
    (credential,) = held["categories"]
    assert credential["category"] == "user.authorization.credentials"
    assert credential["held_in"] == ["Shop: devices.cookie"]
    assert "Art. 32" in credential["reason"] and credential["reason"] in report


def test_an_answer_of_unknown_jurisdiction_holds_back_the_strictest_list(sources, alice,
                                                                         unzip):
    report, data = _access(sources, alice, unzip, "UNKNOWN")
    assert SSN not in report and _pat(data)["ssn"] == WITHHELD
    assert {c["rule"] for c in data["withheld"]["categories"]} == {"unknown_jurisdiction"}
    assert "Tell us where you live" in report


def test_a_portability_manifest_says_what_was_held_back(sources, alice, unzip):
    sources["manual"].enabled = False
    sources["manual"].save()
    request = approved("portability", alice, jurisdiction="GDPR")
    archive = unzip(Package.objects.get(request=request))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["withheld"] == {"jurisdiction": "GDPR",
                                    "jurisdiction_name": "European Union or United Kingdom "
                                                         "(GDPR)", "categories": []}
    customers = json.loads(archive.read("Shop/customers.json"))
    assert SSN in [c["ssn"] for c in customers]


@pytest.mark.parametrize("jurisdiction,shown", [("GDPR", True), ("CA", False)])
def test_a_manual_owners_upload_is_held_back_by_the_requests_jurisdiction(
        sources, alice, bob, unzip, jurisdiction, shown):
    """Uploaded records carry no categories: a source holding passports has every
    uploaded value treated as one, shown under the GDPR, held back in California."""
    sources["manual"].categories = ["user.government_id.passport_number"]
    sources["manual"].save()
    request = approved("access", alice, jurisdiction=jurisdiction)
    run = request.source_runs.get(source=sources["manual"])
    with committed():
        complete_manual_run(run, actor=Actor.staff(bob), records=[{"passport": "X1234567"}])
    data = json.loads(unzip(Package.objects.get(request=request)).read("data.json"))
    assert data["records"]["Paper archive/Paper archive"] == [
        {"passport": "X1234567" if shown else WITHHELD}]
    held = {c["category"]: c["held_in"] for c in data["withheld"]["categories"]}
    assert ("user.government_id.passport_number" in held) is not shown
