"""A consumer's privacy request and its lifecycle.

The state machine lives here, on the model: each transition names its sources,
target, guards (``conditions``), staff permission, and which kinds of actor may
take it (``custom["actors"]``). Transitions change fields only and do no I/O; the
use-case functions in requests_app/services/ lock the row, call them, save, write
the audit event and enqueue side effects on commit.
"""

import datetime
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from requests_app import deadlines
from requests_app.rules import (
    JURISDICTIONS,
    REQUEST_TYPES,
    Verification,
    jurisdiction_choices,
    request_type_choices,
)

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


# States in which the request is still being worked and its deadline runs.
OPEN_STATES = [
    State.PENDING_VERIFICATION,
    State.VERIFIED,
    State.IN_REVIEW,
    State.APPROVED,
    State.FULFILLING,
    State.WAITING_MANUAL,
    State.RESULTS_READY,
    State.NEEDS_ATTENTION,
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


def _perm(codename: str) -> str:
    return f"requests_app.{codename}"


def _may_approve(instance: "PrivacyRequest", user) -> bool:
    """`approve_deletion` for a deletion, else `work_request`"""
    if instance.type_rules.is_deletion:
        return user.has_perm(_perm("approve_deletion"))
    return user.has_perm(_perm("work_request"))


def _verification_window_elapsed(instance: "PrivacyRequest") -> bool:
    """VERIFICATION_WINDOW_DAYS have passed since receipt, for a type that needs verifying"""
    if instance.type_rules.verification is Verification.NONE:
        return False
    limit = instance.received_at + datetime.timedelta(days=settings.VERIFICATION_WINDOW_DAYS)
    return timezone.now() >= limit


def _may_extend(instance: "PrivacyRequest") -> bool:
    """not extended yet, the jurisdiction allows it, on or before the first due date"""
    return (
        instance.extended_at is None
        and instance.extension_available
        and timezone.localdate() <= instance.due_on
    )


def _has_appeal_process(instance: "PrivacyRequest") -> bool:
    """answered (denied or completed), not appealed yet, and the jurisdiction has an appeal process"""
    return (
        instance.responded_at is not None
        and instance.appeal_received_at is None
        and instance.appeal_window_exists
    )


def _erasure_plan_awaits_approval(instance: "PrivacyRequest") -> bool:
    """a deletion whose dry run is ready and not yet approved"""
    return instance.type_rules.is_deletion and instance.erasure_approved_at is None


def _is_opt_out(instance: "PrivacyRequest") -> bool:
    """an opt-out (no review: it is carried out as received)"""
    return instance.type_rules.is_opt_out


def _is_flagged_duplicate(instance: "PrivacyRequest") -> bool:
    """flagged as a duplicate of another request that is still open"""
    original = instance.duplicate_of
    return original is not None and original.state in OPEN_STATES


def _results_are_final(instance: "PrivacyRequest") -> bool:
    """for a deletion: the erasure itself has run, not only its dry run"""
    return not instance.type_rules.is_deletion or instance.erasure_approved_at is not None


# What a refused step tells staff when its guard does not hold.
_verification_window_elapsed.refusal = _("The time allowed for verification has not run out yet.")
_may_extend.refusal = _(
    "The deadline can be extended only once, on or before the original due date."
)
_erasure_plan_awaits_approval.refusal = _(
    "Only the dry run of a deletion that is not yet approved can be approved or rejected."
)
_is_opt_out.refusal = _("Only an opt-out is approved and confirmed by the system.")
_results_are_final.refusal = _("Approve the deletion dry run first: nothing has been deleted yet.")
_is_flagged_duplicate.refusal = _(
    "Only a request flagged as a duplicate of another open request can be merged into it."
)
_has_appeal_process.refusal = _(
    "No appeal is possible: the request was appealed already, or its jurisdiction has no appeal."
)


# Columns the staff queue filters on, carried in its indexes (see Meta.indexes).
QUEUE_FILTER_COLUMNS = ["request_type", "jurisdiction", "assignee", "due_on", "extended_due_on"]


class TransitionInputError(ValidationError):
    """A transition was asked for without what it needs (a reason, a notice)."""


def _required(value: str, message: str) -> str:
    value = (value or "").strip()
    if not value:
        raise TransitionInputError(message)
    return value


class PrivacyRequestQuerySet(models.QuerySet):
    def locked(self, of=()):
        """The one way to lock requests: FOR NO KEY UPDATE, so that an audit event
        about a locked request can still be inserted by the transaction that holds
        the audit chain (see the lock order in services/audit.py). `of` as for
        select_for_update (("self",) when joined rows must stay unlocked)."""
        return self.select_for_update(no_key=True, of=of)


class PrivacyRequest(ConcurrentTransitionMixin, models.Model):
    objects = PrivacyRequestQuerySet.as_manager()

    reference = models.CharField(
        _("reference"), max_length=24, unique=True, default=new_reference, editable=False
    )
    request_type = models.CharField(_("type"), max_length=32, choices=request_type_choices)
    jurisdiction = models.CharField(_("jurisdiction"), max_length=16, choices=jurisdiction_choices)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    filed_by = models.CharField(
        _("filed by"), max_length=8, choices=FiledBy.choices, default=FiledBy.SELF
    )
    state = FSMField(
        _("state"), max_length=32, choices=State.choices,
        default=State.PENDING_VERIFICATION, protected=True, db_index=True,
    )
    details = models.TextField(_("details"), blank=True, max_length=2000)

    received_at = models.DateTimeField(_("received"))
    acknowledge_by = models.DateField(_("acknowledge by"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    due_on = models.DateField(_("due"))
    extended_due_on = models.DateField(_("extended due"), null=True, blank=True)
    extended_at = models.DateTimeField(_("extended"), null=True, blank=True)
    extension_notice = models.TextField(_("extension notice"), blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    erasure_approved_at = models.DateTimeField(_("deletion approved"), null=True, blank=True)
    responded_at = models.DateTimeField(_("responded"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    denial_reason = models.CharField(
        _("denial reason"), max_length=16, choices=DenialReason.choices, blank=True
    )
    denial_detail = models.TextField(_("denial detail"), blank=True)

    appeal_received_at = models.DateTimeField(_("appeal received"), null=True, blank=True)
    appeal_due_on = models.DateField(_("appeal due"), null=True, blank=True)
    appeal_text = models.TextField(_("appeal"), blank=True)
    appeal_decision = models.TextField(_("appeal decision"), blank=True)
    appeal_outcome = models.CharField(_("appeal outcome"), max_length=8, blank=True,
                                      choices=[("granted", _("Granted")),
                                               ("denied", _("Denied"))])

    # For an opt-out: the purposes it withdraws from (their sources and third
    # parties are the ones told). Empty: every enabled source that takes opt-outs.
    purposes = models.ManyToManyField("requests_app.Purpose", blank=True,
                                      related_name="requests", verbose_name=_("purposes"))

    # Staff workspace: who works it, what it duplicates, what was asked of the consumer.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_requests", verbose_name=_("assignee"),
    )
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates",
        verbose_name=_("duplicate of"),
    )
    information_requested_at = models.DateTimeField(
        _("more information asked for"), null=True, blank=True)
    information_request = models.TextField(_("information asked for"), blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("privacy request")
        ordering = ["due_on", "received_at"]
        indexes = [
            models.Index(fields=["state", "due_on"]),
            # The staff queue: open requests by their current due date. Partial, so
            # that a million closed requests cost it nothing; covering the filter
            # columns, so that counting the matches of a filter reads the index only.
            models.Index(Coalesce("extended_due_on", "due_on"), "id",
                         name="queue_open_by_due", condition=Q(state__in=OPEN_STATES),
                         include=QUEUE_FILTER_COLUMNS + ["state"]),
            # The queue filtered by state, in due order.
            models.Index("state", Coalesce("extended_due_on", "due_on"), "id",
                         name="queue_state_by_due", condition=Q(state__in=OPEN_STATES),
                         include=QUEUE_FILTER_COLUMNS),
        ]
        permissions = [
            ("work_request", "Can work requests: verify, review, approve, cancel, close"),
            ("approve_deletion", "Can approve deletions"),
            ("release_results", "Can release results to the consumer"),
            ("deny_request", "Can deny requests"),
            ("extend_deadline", "Can extend a request's deadline"),
            ("decide_appeal", "Can decide appeals"),
            ("assign_request", "Can assign requests to staff"),
            ("manage_email_templates", "Can edit the emails sent to consumers"),
        ]

    def __str__(self) -> str:
        return self.reference

    # --- derived values ---------------------------------------------------------

    @property
    def type_rules(self):
        return REQUEST_TYPES[self.request_type]

    @property
    def version(self) -> str:
        """Changes with every save: a staff form carries it, so a form posted after
        someone else changed the request is refused (services.lifecycle)."""
        return self.updated_at.isoformat() if self.updated_at else ""

    @property
    def current_due_on(self):
        return self.extended_due_on or self.due_on

    @property
    def extension_available(self) -> bool:
        return deadlines.extended_due(self.received_at, self.jurisdiction, self.type_rules) is not None

    @property
    def appeal_window_exists(self) -> bool:
        return deadlines.appeal_due(self.received_at, self.jurisdiction) is not None

    @property
    def complaint_text(self) -> str:
        rules = JURISDICTIONS.get(self.jurisdiction)
        if rules is None:  # unknown: name every route the consumer might have
            return " ".join(str(JURISDICTIONS[code].complaint_text)
                            for code in ("US_OTHER", "CA", "GDPR"))
        return str(rules.complaint_text)

    def set_deadlines(self) -> None:
        """Compute the deadlines from receipt; called once, when the request is filed."""
        self.acknowledge_by = deadlines.acknowledge_by(self.received_at, self.jurisdiction)
        self.due_on = deadlines.response_due(self.received_at, self.jurisdiction, self.type_rules)

    # --- the lifecycle ------------------------------------------------------------

    @transition(state, source=State.PENDING_VERIFICATION, target=State.VERIFIED,
                permission=_perm("work_request"), custom={"actors": (SYSTEM, STAFF)})
    def verify(self):
        self.verified_at = timezone.now()

    @transition(state, source=State.PENDING_VERIFICATION, target=State.EXPIRED,
                conditions=[_verification_window_elapsed], custom={"actors": (SYSTEM,)})
    def expire(self):
        self.closed_at = timezone.now()

    @transition(state, source=State.VERIFIED, target=State.IN_REVIEW,
                permission=_perm("work_request"), custom={"actors": (SYSTEM, STAFF)})
    def start_review(self):
        pass

    @transition(state, source=State.IN_REVIEW, target=State.APPROVED,
                permission=_may_approve, custom={"actors": (STAFF,)})
    def approve(self):
        pass

    @transition(state, source=State.IN_REVIEW, target=State.APPROVED,
                conditions=[_is_opt_out], custom={"actors": (SYSTEM,)})
    def approve_opt_out(self):
        """An opt-out needs no verification and no review: carried out as received."""

    @transition(state, source=State.APPROVED, target=State.FULFILLING,
                custom={"actors": (SYSTEM,)})
    def start_fulfilment(self):
        pass

    @transition(state, source=State.FULFILLING, target=State.WAITING_MANUAL,
                custom={"actors": (SYSTEM,)})
    def wait_on_manual_source(self):
        pass

    @transition(state, source=State.WAITING_MANUAL, target=State.FULFILLING,
                custom={"actors": (SYSTEM,)})
    def resume_fulfilment(self):
        pass

    @transition(state, source=[State.FULFILLING, State.WAITING_MANUAL],
                target=State.RESULTS_READY, custom={"actors": (SYSTEM,)})
    def mark_results_ready(self):
        pass

    @transition(state, source=[State.FULFILLING, State.WAITING_MANUAL],
                target=State.NEEDS_ATTENTION, custom={"actors": (SYSTEM,)})
    def flag_for_attention(self, reason=""):
        _required(reason, _("Say which source failed and why."))

    @transition(state, source=State.NEEDS_ATTENTION, target=State.FULFILLING,
                permission=_perm("work_request"), custom={"actors": (STAFF,)})
    def retry_fulfilment(self):
        pass

    @transition(state, source=State.RESULTS_READY, target=State.FULFILLING,
                conditions=[_erasure_plan_awaits_approval],
                permission=_perm("approve_deletion"), custom={"actors": (STAFF,)})
    def approve_erasure(self):
        """The dry run was right: now delete."""
        self.erasure_approved_at = timezone.now()

    @transition(state, source=State.RESULTS_READY, target=State.IN_REVIEW,
                conditions=[_erasure_plan_awaits_approval],
                permission=_perm("approve_deletion"), custom={"actors": (STAFF,)})
    def reject_erasure_plan(self, reason=""):
        """The dry run was wrong (a map to fix): back to review, nothing deleted."""
        _required(reason, _("Say what is wrong with the dry run."))

    @transition(state, source=State.RESULTS_READY, target=State.COMPLETED,
                conditions=[_results_are_final],
                permission=_perm("release_results"), custom={"actors": (STAFF,)})
    def release(self):
        self.responded_at = timezone.now()

    @transition(state, source=State.RESULTS_READY, target=State.COMPLETED,
                conditions=[_is_opt_out], custom={"actors": (SYSTEM,)})
    def confirm_opt_out(self):
        """Every source it was pushed to confirmed it: the opt-out is honoured."""
        self.responded_at = timezone.now()

    @transition(state, source=[State.COMPLETED, State.DENIED, State.APPEAL_DENIED],
                target=State.CLOSED, permission=_perm("work_request"),
                custom={"actors": (SYSTEM, STAFF)})
    def close(self):
        self.closed_at = timezone.now()

    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW,
                               State.NEEDS_ATTENTION, State.RESULTS_READY],
                target=State.DENIED, permission=_perm("deny_request"), custom={"actors": (STAFF,)})
    def deny(self, reason_code="", detail=""):
        if reason_code not in DenialReason.values:
            raise TransitionInputError(_("Choose a reason for the denial."))
        self.denial_detail = _required(detail, _("Explain the denial to the consumer."))
        self.denial_reason = reason_code
        self.responded_at = timezone.now()

    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW,
                               State.APPROVED],
                target=State.CANCELLED, permission=_perm("work_request"),
                custom={"actors": (CONSUMER, STAFF)})
    def cancel(self):
        self.closed_at = timezone.now()

    # Closing does not take the right to appeal away: a closed request that was
    # answered can still be appealed.
    @transition(state, source=[State.DENIED, State.COMPLETED, State.CLOSED],
                target=State.UNDER_APPEAL,
                conditions=[_has_appeal_process], permission=_perm("work_request"),
                custom={"actors": (CONSUMER, STAFF)})
    def appeal(self, text=""):
        self.appeal_text = _required(text, _("Say why you disagree with the decision."))
        self.appeal_received_at = timezone.now()
        self.appeal_due_on = deadlines.appeal_due(self.appeal_received_at, self.jurisdiction)

    @transition(state, source=State.UNDER_APPEAL, target=State.IN_REVIEW,
                permission=_perm("decide_appeal"), custom={"actors": (STAFF,)})
    def grant_appeal(self, reason=""):
        self.appeal_decision = _required(reason, _("Give the reasons for the decision."))
        self.appeal_outcome = "granted"
        self.denial_reason = ""
        self.denial_detail = ""
        self.responded_at = None

    @transition(state, source=State.UNDER_APPEAL, target=State.APPEAL_DENIED,
                permission=_perm("decide_appeal"), custom={"actors": (STAFF,)})
    def deny_appeal(self, reason=""):
        self.appeal_decision = _required(reason, _("Give the reasons for the decision."))
        self.appeal_outcome = "denied"

    # Asking for more information keeps the state and does not stop the clock: the
    # laws we follow give no pause for it (a request that stays unverifiable is
    # denied as such, or expires). The message goes to the consumer in the notice
    # `more_information`.
    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW],
                target=None, permission=_perm("work_request"), custom={"actors": (STAFF,)})
    def request_information(self, message=""):
        self.information_request = _required(
            message, _("Write the message that tells the consumer what is needed."))
        self.information_requested_at = timezone.now()

    # A second request for the same right from the same person while the first is
    # open: folded into the first, which answers both. The duplicate ends cancelled.
    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW],
                target=State.CANCELLED, conditions=[_is_flagged_duplicate],
                permission=_perm("work_request"), custom={"actors": (STAFF,)})
    def merge(self):
        self.closed_at = timezone.now()

    @transition(state, source=OPEN_STATES, target=None, conditions=[_may_extend],
                permission=_perm("extend_deadline"), custom={"actors": (STAFF,)})
    def extend(self, notice=""):
        """Not a change of state: the one extension, moving the due date."""
        self.extension_notice = _required(
            notice, _("Write the notice that tells the consumer why more time is needed.")
        )
        self.extended_at = timezone.now()
        self.extended_due_on = deadlines.extended_due(
            self.received_at, self.jurisdiction, self.type_rules
        )


class Identity(models.Model):
    """The person a request is about, kept apart from the request so that it can be
    purged when retention ends while the request record stays."""

    request = models.OneToOneField(
        PrivacyRequest, on_delete=models.CASCADE, related_name="identity"
    )
    # Blank only for an opt-out made on the preference page, where no name is asked.
    name = models.CharField(_("name"), max_length=200, blank=True)
    email = models.EmailField(_("email"), db_index=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    account_number = models.CharField(_("customer or account number"), max_length=64, blank=True)
    postal_address = models.TextField(_("postal address"), blank=True, max_length=500)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        # Staff search and duplicate detection match emails case-insensitively.
        indexes = [models.Index(Lower("email"), name="identity_email_lower")]

    def __str__(self) -> str:
        return f"Identity for {self.request.reference}"
