"""Periods of time the law counts in, and the holiday calendars business days are
read against (part of the rule table: requests_app/rules)."""

from dataclasses import dataclass
from enum import Enum


class Unit(Enum):
    DAYS = "calendar days"
    BUSINESS_DAYS = "business days"
    MONTHS = "months"


@dataclass(frozen=True)
class Period:
    amount: int
    unit: Unit

    def __str__(self) -> str:
        unit = self.unit.value
        return f"{self.amount} {unit[:-1] if self.amount == 1 else unit}"


def days(n: int) -> Period:
    return Period(n, Unit.DAYS)


def business_days(n: int) -> Period:
    return Period(n, Unit.BUSINESS_DAYS)


def months(n: int) -> Period:
    return Period(n, Unit.MONTHS)


# --- Business days ----------------------------------------------------------------
# A business day is a weekday that is not a public holiday. Which holidays count is
# a matter of reading: California's regulations speak of state holidays (CCPA regs
# §7001), a reader may take the federal ones. Each jurisdiction names every calendar
# that could apply (JurisdictionRules.calendars); a day is skipped only when it is a
# holiday in EVERY one of them, so that no reasonable reading gives an earlier date
# than ours. An office adds its own closures in configuration (OFFICE_CLOSURES,
# docs/configuration.md); those are its choice and may move dates later.


@dataclass(frozen=True)
class Calendar:
    """A public-holiday calendar of the `holidays` package: a country, or one of
    its subdivisions (US-CA: California's state holidays, federal ones included)."""

    country: str
    subdiv: str = ""

    def __str__(self) -> str:
        return f"{self.country}-{self.subdiv}" if self.subdiv else self.country


@dataclass(frozen=True)
class Calendars:
    """The calendars that could apply to a jurisdiction's business days, and what
    the lifecycle document calls them. No calendar: weekends only, no holiday skipped."""

    label: str
    calendars: tuple[Calendar, ...] = ()


US_FEDERAL = Calendar("US")
# The 50 states and DC (the territories are not states of "another US state").
US_STATES = tuple("AK AL AR AZ CA CO CT DC DE FL GA HI IA ID IL IN KS KY LA MA MD ME MI MN MO MS "
                  "MT NC ND NE NH NJ NM NV NY OH OK OR PA RI SC SD TN TX UT VA VT WA WI WV WY".split())
# The GDPR row covers the EU member states and the United Kingdom.
EU_AND_UK = tuple("AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
                  "GB".split())
WEEKDAYS_ONLY = Calendars("weekends only (no holiday skipped)")


def us_state(code: str, name: str) -> Calendars:
    """A state's business days: its own holidays or the federal ones (either reading
    may be taken), so only the days that are holidays in both are skipped."""
    return Calendars(f"US federal ∩ {name} state (US, US-{code})",
                     (US_FEDERAL, Calendar("US", code)))


CALIFORNIA_DAYS = us_state("CA", "California")
ANY_US_STATE_DAYS = Calendars(
    "US federal ∩ every state's and DC's (US, US-AK ... US-WY)",
    (US_FEDERAL, *(Calendar("US", code) for code in US_STATES)))
EU_AND_UK_DAYS = Calendars(
    "every EU member state's ∩ the UK's (AT ... SE, GB)",
    tuple(Calendar(code) for code in EU_AND_UK))
