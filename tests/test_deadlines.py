"""One test per deadline rule (../shared/REQUIREMENTS.md, "Deadlines"). Expected
dates were worked out by hand on a calendar, not with the code under test."""

import datetime

import pytest

from requests_app import deadlines
from requests_app.rules import REQUEST_TYPES

ACCESS = REQUEST_TYPES["access"]
OPT_OUT = REQUEST_TYPES["opt_out_sale"]


def at(y, m, d, hour=12):
    return datetime.datetime(y, m, d, hour, tzinfo=datetime.timezone.utc)


def test_california_acknowledges_within_10_business_days():
    # Mon 2 Nov 2026: 3,4,5,6, 9,10, (11 Veterans Day), 12,13, 16,17.
    assert deadlines.acknowledge_by(at(2026, 11, 2), "CA") == datetime.date(2026, 11, 17)


def test_business_days_skip_a_federal_holiday():
    # Wed 25 Nov 2026: (26 Thanksgiving), 27, 30, 1,2,3,4, 7,8,9,10 December.
    assert deadlines.acknowledge_by(at(2026, 11, 25), "CA") == datetime.date(2026, 12, 10)


def test_business_days_skip_an_observed_holiday():
    # Thu 2 Jul 2026; Fri 3 Jul is Independence Day observed: 6,7,8,9,10, 13,14,15,16,17.
    assert deadlines.acknowledge_by(at(2026, 7, 2), "CA") == datetime.date(2026, 7, 17)


def test_a_request_received_on_a_saturday_counts_business_days_from_monday():
    # Sat 21 Nov 2026: 23,24,25, (26), 27, 30, 1,2,3,4, 7 December.
    assert deadlines.acknowledge_by(at(2026, 11, 21), "CA") == datetime.date(2026, 12, 7)


def test_a_request_received_on_a_saturday_counts_calendar_days_from_saturday():
    assert deadlines.response_due(at(2026, 11, 21), "CA", ACCESS) == datetime.date(2027, 1, 5)


def test_california_responds_within_45_calendar_days():
    assert deadlines.response_due(at(2026, 1, 1), "CA", ACCESS) == datetime.date(2026, 2, 15)


@pytest.mark.parametrize("state", ["VA", "CO", "CT", "TX", "US_OTHER"])
def test_other_us_states_respond_within_45_days(state):
    assert deadlines.response_due(at(2026, 3, 10), state, ACCESS) == datetime.date(2026, 4, 24)
    assert deadlines.acknowledge_by(at(2026, 3, 10), state) is None


def test_45_days_across_a_leap_february():
    assert deadlines.response_due(at(2028, 2, 1), "CA", ACCESS) == datetime.date(2028, 3, 17)
    assert deadlines.response_due(at(2027, 2, 1), "CA", ACCESS) == datetime.date(2027, 3, 18)


def test_gdpr_jan_31_plus_one_month_is_the_end_of_february():
    assert deadlines.response_due(at(2026, 1, 31), "GDPR", ACCESS) == datetime.date(2026, 2, 28)


def test_gdpr_one_month_in_a_leap_year_ends_on_feb_29():
    assert deadlines.response_due(at(2028, 1, 31), "GDPR", ACCESS) == datetime.date(2028, 2, 29)


def test_gdpr_one_month_is_the_same_date_next_month():
    assert deadlines.response_due(at(2026, 5, 15), "GDPR", ACCESS) == datetime.date(2026, 6, 15)


def test_gdpr_extension_makes_three_months_from_receipt():
    assert deadlines.extended_due(at(2026, 1, 31), "GDPR", ACCESS) == datetime.date(2026, 4, 30)


def test_us_extension_adds_45_days_to_the_first_due_date():
    # Due 15 Feb 2026, extended to 1 Apr 2026 (90 days from 1 Jan).
    assert deadlines.extended_due(at(2026, 1, 1), "CA", ACCESS) == datetime.date(2026, 4, 1)


def test_california_opt_out_within_15_business_days():
    # Mon 2 Nov 2026: 3..6 (4), 9,10 (6), (11), 12,13 (8), 16..20 (13), 23,24 (15).
    assert deadlines.response_due(at(2026, 11, 2), "CA", OPT_OUT) == datetime.date(2026, 11, 24)


def test_opt_outs_have_no_extension():
    assert deadlines.extended_due(at(2026, 11, 2), "CA", OPT_OUT) is None


def test_virginia_decides_appeals_within_60_days():
    assert deadlines.appeal_due(at(2026, 3, 1), "VA") == datetime.date(2026, 4, 30)


def test_colorado_decides_appeals_within_45_days():
    assert deadlines.appeal_due(at(2026, 3, 1), "CO") == datetime.date(2026, 4, 15)


def test_california_and_gdpr_have_no_statutory_appeal():
    assert deadlines.appeal_due(at(2026, 3, 1), "CA") is None
    assert deadlines.appeal_due(at(2026, 3, 1), "GDPR") is None


def test_unknown_jurisdiction_gets_the_strictest_deadlines():
    received = at(2026, 3, 2)  # a Monday
    # GDPR's one month (2 Apr) comes before California's 45 days (16 Apr).
    assert deadlines.response_due(received, "UNKNOWN", ACCESS) == datetime.date(2026, 4, 2)
    # Only California asks for an acknowledgment: 10 business days.
    assert deadlines.acknowledge_by(received, "UNKNOWN") == datetime.date(2026, 3, 16)
    # Colorado's 45 days are the shortest appeal window.
    assert deadlines.appeal_due(received, "UNKNOWN") == datetime.date(2026, 4, 16)
    # California's 15 business days beat GDPR's month for an opt-out.
    assert deadlines.response_due(received, "UNKNOWN", OPT_OUT) == datetime.date(2026, 3, 23)


def test_the_day_of_receipt_is_the_local_day(settings):
    settings.TIME_ZONE = "America/Chicago"
    # 03:00 UTC on 1 March is still 28 February in Chicago.
    late_evening = datetime.datetime(2026, 3, 1, 3, tzinfo=datetime.timezone.utc)
    assert deadlines.response_due(late_evening, "CA", ACCESS) == datetime.date(2026, 4, 14)


def test_the_deprecated_holiday_country_still_replaces_every_calendar(settings):
    settings.HOLIDAY_COUNTRY = "GB"
    # Thu 24 Dec 2026 in England: (25, 26 weekend, 28 Boxing Day observed) 29,30,31, 1?..
    # 1 Jan is a holiday too: 29,30,31, 4,5,6,7,8, 11,12.
    assert deadlines.acknowledge_by(at(2026, 12, 24), "CA") == datetime.date(2027, 1, 12)
