"""Business days per jurisdiction (issue 15, item 2): each jurisdiction names every
holiday calendar that could apply (rules/); a day is skipped only when it is a
holiday in all of them, so no reasonable reading gives an earlier date; the
office's closures (OFFICE_CLOSURES) come on top. Dates worked out by hand."""

import datetime

from django.core import checks

from requests_app import deadlines
from requests_app.rules import REQUEST_TYPES

OPT_OUT = REQUEST_TYPES["opt_out_sale"]
MARKETING = REQUEST_TYPES["opt_out_marketing"]


def at(y, m, d):
    return datetime.datetime(y, m, d, 12, tzinfo=datetime.timezone.utc)


def test_a_california_only_holiday_is_a_business_day_unless_the_office_closes(settings):
    # Mon 30 Mar 2026; Tue 31 Mar is Cesar Chavez Day, a California state holiday
    # but not a federal one: 31, 1,2,3, 6,7,8,9,10, 13.
    assert deadlines.acknowledge_by(at(2026, 3, 30), "CA") == datetime.date(2026, 4, 13)
    settings.OFFICE_CLOSURES = ["US-CA"]  # the office closes on California's holidays
    assert deadlines.acknowledge_by(at(2026, 3, 30), "CA") == datetime.date(2026, 4, 14)


def test_a_federal_holiday_california_keeps_is_skipped_and_the_day_after_is_not():
    # Wed 25 Nov 2026: (26 Thanksgiving, both calendars) 27 (California only: counted),
    # 30, 1,2,3,4, 7,8,9,10 December.
    assert deadlines.acknowledge_by(at(2026, 11, 25), "CA") == datetime.date(2026, 12, 10)


def test_a_federal_holiday_california_does_not_keep_is_a_business_day_there():
    # Fri 9 Oct 2026; Mon 12 Oct is Columbus Day, federal but not a California state
    # holiday: 12,13,14,15,16, 19..23, 26..30 = 15 business days.
    assert deadlines.response_due(at(2026, 10, 9), "CA", OPT_OUT) == datetime.date(2026, 10, 30)
    # Virginia keeps it as a state holiday too: skipped, so 2 November.
    assert deadlines.response_due(at(2026, 10, 9), "VA", OPT_OUT) == datetime.date(2026, 11, 2)


def test_an_office_closure_date_is_skipped(settings):
    # Mon 21 Dec 2026: 22,23,24, (25), 28,29,30,31, (1 Jan), 4,5,6 January.
    assert deadlines.acknowledge_by(at(2026, 12, 21), "CA") == datetime.date(2027, 1, 6)
    settings.OFFICE_CLOSURES = ["2026-12-24", "2026-12-31"]
    assert deadlines.acknowledge_by(at(2026, 12, 21), "CA") == datetime.date(2027, 1, 8)


def test_gdpr_business_days_skip_only_the_holidays_of_every_member_state_and_the_uk():
    # Wed 23 Dec 2026: 24, (25 everywhere), 28 (Boxing Day observed in the UK only:
    # counted), 29,30,31, (1 Jan everywhere), 4,5,6,7,8 = 10 business days.
    assert deadlines.response_due(at(2026, 12, 23), "GDPR", MARKETING) == datetime.date(2027, 1, 8)


def test_another_us_state_skips_only_the_holidays_every_state_keeps():
    # Fri 9 Oct 2026: Columbus Day (12) is not kept by every state: counted.
    # 12..16, 19..23 = 10 business days.
    assert deadlines.response_due(at(2026, 10, 9), "US_OTHER", MARKETING) == datetime.date(
        2026, 10, 23)
    # Thanksgiving is: Wed 25 Nov: (26), 27, 30, 1,2,3,4, 7,8,9,10 = 10.
    assert deadlines.response_due(at(2026, 11, 25), "US_OTHER", MARKETING) == datetime.date(
        2026, 12, 10)


def test_each_jurisdiction_names_its_calendars_in_the_lifecycle_document():
    from requests_app.management.commands.lifecycle_diagram import render

    text = render()
    assert "| California | US federal ∩ California state (US, US-CA) |" in text
    assert "OFFICE_CLOSURES" in text


def test_the_deprecated_holiday_country_is_reported_by_the_system_checks(settings):
    settings.HOLIDAY_COUNTRY = "GB"
    warnings = [m for m in checks.run_checks() if m.id == "privacyportal.W001"]
    assert len(warnings) == 1 and "deprecated" in warnings[0].msg
    settings.HOLIDAY_COUNTRY = ""
    assert not [m for m in checks.run_checks() if m.id == "privacyportal.W001"]
