"""The words of the lifecycle: states, channels, who files, why a request is denied,
and who takes a step (an Actor). Plain values, used by the machine in
privacy_request.py and by everything that shows or filters requests."""

import secrets
from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _

# Crockford's base32 alphabet: no I, L, O or U, so a reference read over the phone
# or copied by hand is hard to get wrong.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    """An unguessable public reference: 80 random bits, e.g. PP-7K2D-9QXM-4TRB-H1VC."""
    number = secrets.randbits(80)
    chars = "".join(_ALPHABET[(number >> (5 * i)) & 31] for i in range(16))
    return "PP-" + "-".join(chars[i : i + 4] for i in range(0, 16, 4))


class State(models.TextChoices):
    PENDING_VERIFICATION = "pending_verification", _("Pending identity verification")
    VERIFIED = "verified", _("Identity verified")
    IN_REVIEW = "in_review", _("In review")
    APPROVED = "approved", _("Approved")
    FULFILLING = "fulfilling", _("Being fulfilled")
    WAITING_MANUAL = "waiting_manual", _("Waiting on a manual source")
    RESULTS_READY = "results_ready", _("Results ready for staff review")
    COMPLETED = "completed", _("Completed")
    CLOSED = "closed", _("Closed")
    DENIED = "denied", _("Denied")
    CANCELLED = "cancelled", _("Cancelled")
    EXPIRED = "expired", _("Expired (identity never verified)")
    NEEDS_ATTENTION = "needs_attention", _("Needs attention")
    UNDER_APPEAL = "under_appeal", _("Under appeal")
    APPEAL_DENIED = "appeal_denied", _("Appeal denied")


# States in which the request is still being worked and its deadline runs. An
# appeal is open work: its own decision date (appeal_due_on) is its due date.
OPEN_STATES = [
    State.PENDING_VERIFICATION,
    State.VERIFIED,
    State.IN_REVIEW,
    State.APPROVED,
    State.FULFILLING,
    State.WAITING_MANUAL,
    State.RESULTS_READY,
    State.NEEDS_ATTENTION,
    State.UNDER_APPEAL,
]
# States from which nothing more happens.
FINAL_STATES = [State.CLOSED, State.CANCELLED, State.EXPIRED]


class Channel(models.TextChoices):
    WEB = "web", _("Web form")
    EMAIL = "email", _("Email")
    POST = "post", _("Postal mail")
    PHONE = "phone", _("Phone")
    API = "api", _("API")


class FiledBy(models.TextChoices):
    SELF = "self", _("The person themself")
    AGENT = "agent", _("An authorized agent")
    PARENT = "parent", _("A parent or guardian of a child under 13")


class DenialReason(models.TextChoices):
    UNVERIFIABLE = "unverifiable", _("Identity could not be verified")
    EXEMPTION = "exemption", _("An exemption applies")
    NOT_COVERED = "not_covered", _("Not covered by the law")
    UNFOUNDED = "unfounded", _("Manifestly unfounded or excessive")
    DUPLICATE = "duplicate", _("Duplicate of another request")


class ActorKind(models.TextChoices):
    SYSTEM = "system", _("System")
    CONSUMER = "consumer", _("Consumer")
    STAFF = "staff", _("Staff")


@dataclass(frozen=True)
class Actor:
    """Who takes a transition: the system (a task), the consumer (through the
    portal, after proving control of the request's email), or a staff user."""

    kind: str
    user: object = None

    @classmethod
    def system(cls) -> "Actor":
        return cls(ActorKind.SYSTEM)

    @classmethod
    def consumer(cls) -> "Actor":
        return cls(ActorKind.CONSUMER)

    @classmethod
    def staff(cls, user) -> "Actor":
        return cls(ActorKind.STAFF, user)

    @property
    def label(self) -> str:
        if self.kind == ActorKind.STAFF:
            return self.user.get_username()
        return str(self.kind)


SYSTEM, CONSUMER, STAFF = ActorKind.SYSTEM, ActorKind.CONSUMER, ActorKind.STAFF
