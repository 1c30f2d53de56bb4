"""Legal deadlines from the rule tables in rules.py.

Deadlines are calendar dates in the business's TIME_ZONE: a request is on time if
it is answered by the end of its due date. The clock starts on the day of receipt
and never pauses (not for verification, not for a question to the consumer).

- calendar days: receipt date + n days (received on the 1st, 45 days: the 15th of
  the next month, whatever weekday that is);
- business days: the n-th working day after the day of receipt, skipping weekends
  and the public holidays of HOLIDAY_COUNTRY (a request received on a Saturday or
  a holiday starts counting on the next working day, like one received that day);
- months: the same day n months later, or the last day of that month when it has
  no such day (Jan 31 + 1 month = Feb 28, or Feb 29 in a leap year), as EU
  Regulation 1182/71 reads GDPR's "one month".

A request whose jurisdiction is unknown gets the earliest date that any
jurisdiction's rule gives.
"""

import datetime
from functools import cache

import holidays
from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.utils import timezone

from requests_app.rules import JURISDICTIONS, UNKNOWN, JurisdictionRules, Period, Unit


@cache
def _calendar(country: str) -> holidays.HolidayBase:
    return holidays.country_holidays(country)


def working_calendar() -> holidays.HolidayBase:
    return _calendar(settings.HOLIDAY_COUNTRY)


def add_period(start: datetime.date, period: Period) -> datetime.date:
    if period.unit is Unit.DAYS:
        return start + datetime.timedelta(days=period.amount)
    if period.unit is Unit.MONTHS:
        return start + relativedelta(months=period.amount)
    return working_calendar().get_nth_working_day(start, period.amount)


def local_date(moment: datetime.datetime) -> datetime.date:
    return timezone.localdate(moment)


def _rules(jurisdiction: str) -> list[JurisdictionRules]:
    if jurisdiction == UNKNOWN:
        return list(JURISDICTIONS.values())
    return [JURISDICTIONS[jurisdiction]]


def _earliest(dates) -> datetime.date | None:
    present = [d for d in dates if d is not None]
    return min(present) if present else None


def acknowledge_by(received_at: datetime.datetime, jurisdiction: str) -> datetime.date | None:
    day = local_date(received_at)
    return _earliest(
        add_period(day, r.acknowledge) if r.acknowledge else None for r in _rules(jurisdiction)
    )


def _response_period(rules: JurisdictionRules, request_type) -> Period:
    if request_type.is_opt_out:
        return request_type.opt_out_period or rules.opt_out
    return rules.respond


def response_due(received_at: datetime.datetime, jurisdiction: str, request_type) -> datetime.date:
    day = local_date(received_at)
    return _earliest(
        add_period(day, _response_period(r, request_type)) for r in _rules(jurisdiction)
    )


def extended_due(
    received_at: datetime.datetime, jurisdiction: str, request_type
) -> datetime.date | None:
    """The due date after the one allowed extension, or None if none is allowed."""
    if request_type.is_opt_out:
        return None
    day = local_date(received_at)
    return _earliest(_extended(day, r) for r in _rules(jurisdiction))


def _extended(day: datetime.date, rules: JurisdictionRules) -> datetime.date | None:
    if rules.extension is None:
        return None
    if rules.extension.unit is rules.respond.unit:
        # GDPR's "two further months" make three months from receipt: Jan 31 runs
        # to Apr 30, not to Feb 28 + 2 months = Apr 28.
        total = Period(rules.respond.amount + rules.extension.amount, rules.respond.unit)
        return add_period(day, total)
    return add_period(add_period(day, rules.respond), rules.extension)


def appeal_due(appeal_received_at: datetime.datetime, jurisdiction: str) -> datetime.date | None:
    day = local_date(appeal_received_at)
    return _earliest(add_period(day, r.appeal) if r.appeal else None for r in _rules(jurisdiction))

