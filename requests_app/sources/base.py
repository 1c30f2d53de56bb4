"""What every kind of data source (SQL, HTTP, manual) offers fulfilment.

A connector is built for one DataSource and is asked to act for one SourceRun.
It must be idempotent: asked twice for the same run (a worker died after doing
the work but before acknowledging the task), it changes nothing more.
Errors it raises must never carry personal values: they are shown to staff and
stored on the run.
"""

import datetime
from dataclasses import dataclass, field

from django.utils import timezone


class SourceError(Exception):
    """A permanent failure (bad configuration, a 4xx answer): retrying won't help."""


class TransientSourceError(SourceError):
    """A failure that may pass (timeout, connection refused, 5xx, lock timeout):
    the task retries with exponential backoff and jitter."""


@dataclass(frozen=True)
class IdentityData:
    """The data points a request gives for finding the person."""

    email: str
    name: str = ""
    phone: str = ""
    account_number: str = ""
    postal_address: str = ""
    # Identity types of the office's own ((type, value) pairs: a loyalty id, a
    # device id), looked up in the columns a map names for them.
    extra: tuple = ()

    @classmethod
    def of(cls, identity) -> "IdentityData":
        return cls(
            email=identity.email,
            name=identity.name,
            phone=identity.phone,
            account_number=identity.account_number,
            postal_address=identity.postal_address,
            extra=tuple(sorted((k, v) for k, v in (getattr(identity, "extra", None)
                                                   or {}).items() if v)),
        )

    def lookup_values(self) -> dict[str, str]:
        """The fields sources may look a person up by, where given."""
        values = {"email": self.email, "phone": self.phone, "account_number": self.account_number,
                  **dict(self.extra)}
        return {k: v for k, v in values.items() if v}

    def for_service(self) -> dict[str, str]:
        """What a service is sent to find the person (HTTP sources): as_dict() and
        the office's own identity types by their names ({"loyalty_id": ...}); a
        type named like one of the fields never replaces it."""
        return {**dict(self.extra), **self.as_dict()}

    def as_dict(self) -> dict[str, str]:
        return {
            "email": self.email,
            "name": self.name,
            "phone": self.phone,
            "account_number": self.account_number,
            "postal_address": self.postal_address,
        }


def collection_period(run) -> tuple[datetime.date, datetime.date] | None:
    """The period a Right to Know request asked for (first and last day, inclusive:
    by default the 12 months before the request, back to 2022-01-01 at most when
    asked; CCPA §1798.130(a)(2)(B), regs §7024(h)), or None: everything found is
    disclosed. Rows of a table whose map names its `collected_at` column are
    disclosed only when collected in it (or when their time is unknown)."""
    return requested_period(getattr(run, "request", None))


def requested_period(request) -> tuple[datetime.date, datetime.date] | None:
    """collection_period of a request (None when it asked for none, or when its
    jurisdiction gives all the data held); a period with no last day ends on the day
    the request was received."""
    if not _may_limit(request):
        return None
    evidence = getattr(request, "evidence", None) if request is not None else None
    start = getattr(evidence, "period_start", None)
    if start is None:
        return None
    end = getattr(evidence, "period_end", None)
    if end is None:
        received = getattr(request, "received_at", None)
        end = timezone.localdate(received) if received else timezone.localdate()
    return start, end


def _may_limit(request) -> bool:
    """False for a request whose jurisdiction's answer covers all the data held,
    whatever its date (GDPR: rules.JurisdictionRules.know_period), even if a period
    was recorded with it."""
    # Imported here: the demo HTTP service runs this module without Django settings,
    # and the rule table's texts are lazy translations.
    from requests_app.rules import JURISDICTIONS

    rules = JURISDICTIONS.get(getattr(request, "jurisdiction", None) or "")
    return rules is None or rules.know_period


def period_bounds(period, aware: bool) -> tuple:
    """The period as [first, after) for comparing collection times: midnights in the
    portal's time zone (TIME_ZONE) for times with a zone, else plain dates."""
    first, after = period[0], period[1] + datetime.timedelta(days=1)
    if not aware:
        return first, after
    return tuple(timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
                 for day in (first, after))


def in_period(value, period) -> bool:
    """Whether a collection time, as a source gives it (a datetime with or without a
    zone, a date, or ISO 8601 text as SQLite stores it), falls in the period, by
    the portal's time zone; a time it cannot tell (empty, unparseable) counts as
    in: the person is not denied a record for want of its date."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return True
    if isinstance(value, datetime.datetime):
        day = timezone.localtime(value).date() if value.tzinfo else value.date()
    elif isinstance(value, datetime.date):
        day = value
    else:
        return True
    return period[0] <= day <= period[1]


@dataclass
class Outcome:
    """What a connector did. `waiting`: an asynchronous reply or a manual owner
    will finish the run later. `result`: counts and names only, no personal values."""

    records: int | None = None
    waiting: bool = False
    result: dict = field(default_factory=dict)


class Connector:
    """What a kind of source can do, declared once on its class, and how it does it.

    Fulfilment, the callback endpoint, the staff pages and the notices ask these
    attributes (through registry.kinds_that) instead of naming kinds."""

    #: The DataSource.Kind value this connector serves.
    kind: str = ""
    #: Finds and copies a person's data (Right to Know, portability).
    access: bool = False
    #: Plans an erasure (dry run) and carries it out.
    erasure: bool = False
    #: Passes on a correction or an opt-out.
    changes: bool = False
    #: May answer later, by a signed call to the callback endpoint (after a 202).
    replies_later: bool = False
    #: A person, the source's owner, does the work by hand (a task in /staff/tasks/).
    needs_owner: bool = False
    #: Holds a dataset map of tables (categories per column, disclosure logs).
    has_map: bool = False

    def __init__(self, source):
        self.source = source

    @classmethod
    def can(cls, action: str) -> bool:
        """Whether this kind takes part in a run's action (SourceRun.Action)."""
        return {"gather": cls.access, "plan_erasure": cls.erasure, "erase": cls.erasure,
                "correct": cls.changes, "opt_out": cls.changes}.get(action, False)

    def gather(self, run, identity: IdentityData, sink) -> Outcome:
        """Find the person's records and write them to `sink` (a RecordSink)."""
        raise SourceError(f"{self.source.kind} sources cannot gather data")

    def plan_erasure(self, run, identity: IdentityData) -> Outcome:
        """Say what erasure would delete, mask and retain (and why), changing nothing."""
        raise SourceError(f"{self.source.kind} sources cannot plan an erasure")

    def erase(self, run, identity: IdentityData, plan: dict, on_batch=None) -> Outcome:
        """Carry out the plan approved by a Privacy Manager. A connector that works in
        batches calls on_batch(progress) after each: it records how far it got (a
        dict of counts, read back from run.result["progress"] on a resumed run)."""
        raise SourceError(f"{self.source.kind} sources cannot erase")

    def remaining(self, run, identity: IdentityData) -> int:
        """After erasure: how many deletable records still match the person."""
        return 0

    def identity_points(self, identity: IdentityData) -> set[str] | None:
        """For identity verification: the data points of `identity` this source
        confirms (names only, e.g. {"email", "phone"}); an empty set when it holds
        no record for the address; None when it offers no lookup (HTTP, manual)."""
        return None

    def apply_change(self, run, identity: IdentityData, change: dict) -> Outcome:
        """A correction or an opt-out: pass on the change the consumer asked for."""
        raise SourceError(f"{self.source.kind} sources cannot apply changes")

    def probe(self) -> bool | None:
        """Whether the source answers now, asked cheaply and without any personal
        data (the circuit breaker probes an unhealthy source until it does): True,
        False, or None for a kind that makes no calls (manual)."""
        return None
