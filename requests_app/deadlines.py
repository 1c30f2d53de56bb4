"""Legal deadlines from the rule tables in rules/.

Deadlines are calendar dates in the business's TIME_ZONE: a request is on time if
it is answered by the end of its due date. The clock starts on the day of receipt
and never pauses (not for verification, not for a question to the consumer).

- calendar days: receipt date + n days (received on the 1st, 45 days: the 15th of
  the next month, whatever weekday that is);
- business days: the n-th working day after the day of receipt, skipping weekends,
  the days that are public holidays in every calendar the jurisdiction names
  (rules.Calendars: a day is skipped only when no reading of "business day" could
  count it) and the office's closures (settings.OFFICE_CLOSURES). A request
  received on a Saturday or a holiday starts counting on the next working day,
  like one received that day. The deprecated HOLIDAY_COUNTRY, when set, replaces
  every jurisdiction's calendars with that one country's, as before;
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

from requests_app.rules import (
    JURISDICTIONS,
    UNKNOWN,
    Calendar,
    JurisdictionRules,
    Period,
    Unit,
)


@cache
def _holidays(calendar: Calendar, year: int) -> frozenset[datetime.date]:
    return frozenset(holidays.country_holidays(
        calendar.country, subdiv=calendar.subdiv or None, years=year))


@cache
def _days_off(calendars: tuple[Calendar, ...], closed_calendars: tuple[Calendar, ...],
              closed_dates: frozenset, year: int) -> frozenset[datetime.date]:
    """The weekdays of `year` that are not business days: holidays in every one of
    `calendars`, and the office's closures (whole calendars and single dates)."""
    common = (frozenset.intersection(*(_holidays(c, year) for c in calendars))
              if calendars else frozenset())
    closed = frozenset(d for d in closed_dates if d.year == year)
    return common.union(closed, *(_holidays(c, year) for c in closed_calendars))


def calendars_of(jurisdiction: str) -> tuple[Calendar, ...]:
    """The calendars whose common holidays a jurisdiction's business days skip."""
    if settings.HOLIDAY_COUNTRY:  # deprecated: one country's holidays everywhere
        return (Calendar(settings.HOLIDAY_COUNTRY),)
    rules = JURISDICTIONS.get(jurisdiction)
    if rules is None:  # UNKNOWN: every calendar of every row could apply
        if any(not r.calendars.calendars for r in JURISDICTIONS.values()):
            return ()
        return tuple(dict.fromkeys(c for r in JURISDICTIONS.values()
                                   for c in r.calendars.calendars))
    return rules.calendars.calendars


@cache
def office_closures(entries: tuple[str, ...]) -> tuple[tuple[Calendar, ...], frozenset]:
    """OFFICE_CLOSURES (validated at start-up by settings.py): ISO dates, and
    calendars (US-CA, GB) whose every public holiday the office is closed."""
    dates, calendars = set(), []
    for entry in entries:
        if entry[:1].isdigit():
            dates.add(datetime.date.fromisoformat(entry))
        else:
            country, _, subdiv = entry.partition("-")
            calendars.append(Calendar(country, subdiv))
    return tuple(calendars), frozenset(dates)


def is_business_day(day: datetime.date, jurisdiction: str) -> bool:
    if day.weekday() >= 5:
        return False
    closed_calendars, closed_dates = office_closures(tuple(settings.OFFICE_CLOSURES))
    return day not in _days_off(calendars_of(jurisdiction), closed_calendars, closed_dates,
                                day.year)


def add_business_days(start: datetime.date, n: int, jurisdiction: str) -> datetime.date:
    """The n-th business day after `start` (which itself is not counted)."""
    day = start
    while n > 0:
        day += datetime.timedelta(days=1)
        if is_business_day(day, jurisdiction):
            n -= 1
    return day


def add_period(start: datetime.date, period: Period, jurisdiction: str) -> datetime.date:
    if period.unit is Unit.DAYS:
        return start + datetime.timedelta(days=period.amount)
    if period.unit is Unit.MONTHS:
        return start + relativedelta(months=period.amount)
    return add_business_days(start, period.amount, jurisdiction)


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
        add_period(day, r.acknowledge, r.code) if r.acknowledge else None for r in _rules(jurisdiction)
    )


def _response_period(rules: JurisdictionRules, request_type) -> Period:
    if request_type.is_opt_out:
        return request_type.opt_out_period or rules.opt_out
    return rules.respond


def response_due(received_at: datetime.datetime, jurisdiction: str, request_type) -> datetime.date:
    day = local_date(received_at)
    return _earliest(
        add_period(day, _response_period(r, request_type), r.code) for r in _rules(jurisdiction)
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
        return add_period(day, total, rules.code)
    return add_period(add_period(day, rules.respond, rules.code), rules.extension, rules.code)


def appeal_due(appeal_received_at: datetime.datetime, jurisdiction: str) -> datetime.date | None:
    day = local_date(appeal_received_at)
    return _earliest(add_period(day, r.appeal, r.code) if r.appeal else None for r in _rules(jurisdiction))

