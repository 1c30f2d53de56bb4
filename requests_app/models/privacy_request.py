"""A consumer's privacy request and its lifecycle.

The state machine lives here, on the model: each transition names its sources,
target, guards (``conditions``), staff permission, and which kinds of actor may
take it and what it means (``custom``, built by models/steps.py). Transitions change
fields only and do no I/O; the
use-case functions in requests_app/services/ lock the row, call them, save, write
the audit event and enqueue side effects on commit.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from requests_app import deadlines
from requests_app.models.repeats import check_excessive, denial_audit
from requests_app.models.states import (  # noqa: F401 - the names this module has always given
    CONSUMER,
    FINAL_STATES,
    OPEN_STATES,
    STAFF,
    SYSTEM,
    Actor,
    ActorKind,
    Channel,
    DenialReason,
    FiledBy,
    State,
    new_reference,
)
from requests_app.models.steps import (
    BEGIN_FULFILMENT,
    BEGIN_REVIEW,
    Input,
    TransitionInputError,
    erasure_plan_awaits_approval,
    has_appeal_process,
    is_flagged_duplicate,
    is_opt_out,
    may_approve,
    may_extend,
    perm,
    quiet_period_over,
    required,
    results_are_final,
    step,
    verification_window_elapsed,
)
from requests_app.models.verification import ManualVerificationSteps
from requests_app.rules import (
    JURISDICTIONS,
    REQUEST_TYPES,
    after_appeal_text,
    jurisdiction_choices,
    remedies_text,
    request_type_choices,
)


# Columns the staff queue filters on, carried in its indexes (see Meta.indexes).
QUEUE_FILTER_COLUMNS = ["request_type", "jurisdiction", "assignee", "due_on", "extended_due_on"]


class PrivacyRequestQuerySet(models.QuerySet):
    def locked(self, of=()):
        """The one way to lock requests: FOR NO KEY UPDATE, so that an audit event
        about a locked request can still be inserted by the transaction that holds
        the audit chain (see the lock order in services/audit/events.py). `of` as for
        select_for_update (("self",) when joined rows must stay unlocked)."""
        return self.select_for_update(no_key=True, of=of)


class PrivacyRequest(ConcurrentTransitionMixin, ManualVerificationSteps, models.Model):
    objects = PrivacyRequestQuerySet.as_manager()

    reference = models.CharField(
        _("reference"), max_length=24, unique=True, default=new_reference, editable=False
    )
    request_type = models.CharField(_("type"), max_length=32, choices=request_type_choices)
    # The type as filed, when verification changed it (specific pieces answered with
    # categories, CCPA regs §7024); blank when never changed. Metrics count by it.
    original_request_type = models.CharField(_("type as filed"), max_length=32, blank=True,
                                             choices=request_type_choices)
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
    # The dry runs approved, {source id: plan digest}: erasure runs exactly these.
    erasure_plan_digests = models.JSONField(_("approved dry-run digests"), default=dict,
                                            blank=True)
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
            models.Index(Coalesce("appeal_due_on", "extended_due_on", "due_on"), "id",
                         name="queue_open_by_due", condition=Q(state__in=OPEN_STATES),
                         include=QUEUE_FILTER_COLUMNS + ["state"]),
            # The queue filtered by state, in due order.
            models.Index("state", Coalesce("appeal_due_on", "extended_due_on", "due_on"), "id",
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
    def type_as_filed(self) -> str:
        return self.original_request_type or self.request_type

    @property
    def version(self) -> str:
        """Changes with every save: a staff form carries it, so a form posted after
        someone else changed the request is refused (services.requests.lifecycle)."""
        return self.updated_at.isoformat() if self.updated_at else ""

    @property
    def current_due_on(self):
        """The date the work in hand is due: an appeal's decision date once the
        request is appealed (and after a granted appeal, the date to act on it by),
        else the extended or the original response date. Metrics of the first
        response use response_due_on."""
        return self.appeal_due_on or self.response_due_on

    @property
    def response_due_on(self):
        return self.extended_due_on or self.due_on

    @property
    def extension_available(self) -> bool:
        return deadlines.extended_due(self.received_at, self.jurisdiction, self.type_rules) is not None

    @property
    def appeal_window_exists(self) -> bool:
        return deadlines.appeal_due(self.received_at, self.jurisdiction) is not None

    @property
    def complaint_text(self) -> str:
        authority = settings.SUPERVISORY_AUTHORITY
        rules = JURISDICTIONS.get(self.jurisdiction)
        if rules is None:  # unknown: name every route the consumer might have
            return " ".join(remedies_text(JURISDICTIONS[code].complaint_text, authority)
                            for code in ("US_OTHER", "CA", "GDPR"))
        return remedies_text(rules.complaint_text, authority)

    @property
    def after_appeal_text(self) -> str:
        """Where the person turns when the appeal is denied (rules.after_appeal_text)."""
        return after_appeal_text(self.jurisdiction, settings.SUPERVISORY_AUTHORITY)

    def set_deadlines(self) -> None:
        """Compute the deadlines from receipt; called once, when the request is filed."""
        self.acknowledge_by = deadlines.acknowledge_by(self.received_at, self.jurisdiction)
        self.due_on = deadlines.response_due(self.received_at, self.jurisdiction, self.type_rules)

    @classmethod
    def step_meta(cls, name: str) -> dict | None:
        """What step `name` means (its ``custom``, see models/steps.py); None if no such step."""
        for t in cls._meta.get_field("state").get_all_transitions(cls):
            if t.name == name:
                return t.custom
        return None

    # --- the lifecycle ------------------------------------------------------------
    # Each step's meaning (label, inputs, notice, follow-up, timeline...) is given by
    # step() in models/steps.py; the use cases in services/requests/lifecycle.py
    # take the steps.

    @transition(state, source=State.PENDING_VERIFICATION, target=State.VERIFIED,
                custom=step(SYSTEM, follow_up=BEGIN_REVIEW,
                            timeline=_("Your identity was confirmed.")))
    def verify(self):
        """By the system: the sources confirmed enough data points (staff verify with
        verify_manually, models/verification.py)."""
        self.verified_at = timezone.now()

    @transition(state, source=State.PENDING_VERIFICATION, target=State.EXPIRED,
                conditions=[verification_window_elapsed],
                custom=step(SYSTEM, notice="expired", timeline=_(
                    "The request expired: the email address was never confirmed.")))
    def expire(self):
        self.closed_at = timezone.now()

    @transition(state, source=State.VERIFIED, target=State.IN_REVIEW,
                permission=perm("work_request"),
                custom=step(SYSTEM, STAFF, label=_("Start review"),
                            timeline=_("Our privacy office is reviewing your request.")))
    def start_review(self):
        pass

    @transition(state, source=State.IN_REVIEW, target=State.APPROVED, permission=may_approve,
                custom=step(STAFF, label=_("Approve and start fulfilment"),
                            follow_up=BEGIN_FULFILMENT, timeline=_(
                                "Your request was approved; we are carrying it out.")))
    def approve(self):
        pass

    @transition(state, source=State.IN_REVIEW, target=State.APPROVED, conditions=[is_opt_out],
                custom=step(SYSTEM, follow_up=BEGIN_FULFILMENT,
                            timeline=_("We are carrying out your opt-out.")))
    def approve_opt_out(self):
        """An opt-out needs no verification and no review: carried out as received."""

    @transition(state, source=State.APPROVED, target=State.FULFILLING, custom=step(SYSTEM))
    def start_fulfilment(self):
        pass

    @transition(state, source=State.FULFILLING, target=State.WAITING_MANUAL,
                custom=step(SYSTEM))
    def wait_on_manual_source(self):
        pass

    @transition(state, source=State.WAITING_MANUAL, target=State.FULFILLING,
                custom=step(SYSTEM))
    def resume_fulfilment(self):
        pass

    @transition(state, source=[State.FULFILLING, State.WAITING_MANUAL],
                target=State.RESULTS_READY, custom=step(SYSTEM))
    def mark_results_ready(self):
        pass

    @transition(state, source=[State.FULFILLING, State.WAITING_MANUAL],
                target=State.NEEDS_ATTENTION, custom=step(SYSTEM))
    def flag_for_attention(self, reason=""):
        required(reason, _("Say which source failed and why."))

    @transition(state, source=State.NEEDS_ATTENTION, target=State.FULFILLING,
                permission=perm("work_request"),
                custom=step(STAFF, SYSTEM, label=_("Retry fulfilment"),
                            follow_up=BEGIN_FULFILMENT))
    def retry_fulfilment(self):
        """Staff retry; the system, when a source whose runs were parked answers a
        health probe again (services/fulfilment/breaker.py)."""

    @transition(state, source=State.RESULTS_READY, target=State.FULFILLING,
                conditions=[erasure_plan_awaits_approval], permission=perm("approve_deletion"),
                custom=step(STAFF, label=_("Approve the deletion dry run: delete"),
                            follow_up=BEGIN_FULFILMENT, danger=True, hint="approve_erasure",
                            confirm=_("Delete this person's data in every source of the "
                                      "dry run? This cannot be undone."),
                            timeline=_("Deletion approved; we are deleting your information.")))
    def approve_erasure(self):
        """The dry run was right: now delete, exactly what it planned (its digest)."""
        self.erasure_approved_at = timezone.now()
        self.erasure_plan_digests = {
            str(source_id): result.get("digest") for source_id, result in
            self.source_runs.filter(action="plan_erasure", state="done")
            .values_list("source_id", "result")}

    @transition(state, source=State.RESULTS_READY, target=State.IN_REVIEW,
                conditions=[erasure_plan_awaits_approval], permission=perm("approve_deletion"),
                custom=step(STAFF, label=_("Reject the deletion dry run"), danger=True,
                            inputs=[Input("reason", _("Reason"), rows=3)]))
    def reject_erasure_plan(self, reason=""):
        """The dry run was wrong (a map to fix): back to review, nothing deleted."""
        required(reason, _("Say what is wrong with the dry run."))

    @transition(state, source=State.RESULTS_READY, target=State.COMPLETED,
                conditions=[results_are_final], permission=perm("release_results"),
                custom=step(STAFF, label=_("Release the results to the consumer"),
                            notice="completed", hint="release",
                            timeline=_("Your request is complete.")))
    def release(self):
        self.responded_at = self.responded_at or timezone.now()  # the first response

    @transition(state, source=State.RESULTS_READY, target=State.COMPLETED,
                conditions=[is_opt_out],
                custom=step(SYSTEM, notice="opt_out_done",
                            timeline=_("Your opt-out is in effect.")))
    def confirm_opt_out(self):
        """Every source it was pushed to confirmed it: the opt-out is honoured."""
        self.responded_at = self.responded_at or timezone.now()  # the first response

    @transition(state, source=[State.COMPLETED, State.DENIED, State.APPEAL_DENIED],
                target=State.CLOSED, permission=perm("work_request"),
                custom=step(SYSTEM, STAFF, label=_("Close"),
                            timeline=_("The request was closed.")))
    def close(self):
        self.closed_at = timezone.now()

    # Answered and quiet (services/requests/tasks.close_quiet_requests, daily): closed,
    # so that retention and the verification purge start. An appeal stays possible.
    @transition(state, source=[State.COMPLETED, State.DENIED, State.APPEAL_DENIED],
                target=State.CLOSED, conditions=[quiet_period_over],
                custom=step(SYSTEM, timeline=_("We closed your request: it was answered and "
                                               "nothing more was asked of us."),
                            audit=lambda r: {"quiet_days": settings.AUTO_CLOSE_QUIET_DAYS}))
    def close_quietly(self):
        self.closed_at = timezone.now()

    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW,
                               State.NEEDS_ATTENTION, State.RESULTS_READY],
                target=State.DENIED, permission=perm("deny_request"),
                custom=step(STAFF, label=_("Deny"), notice="denied", danger=True, hint="deny",
                            inputs=[Input("reason_code", _("Reason"),
                                          choices=tuple(DenialReason.choices)),
                                    Input("detail", _("Explanation for the consumer"),
                                          help_text=_("The jurisdiction's appeal or complaint "
                                                      "text is added to the email "
                                                      "automatically."))],
                            timeline=_("We denied your request."),
                            audit=denial_audit))
    def deny(self, reason_code="", detail=""):
        if reason_code not in DenialReason.values:
            raise TransitionInputError(_("Choose a reason for the denial."))
        if reason_code == DenialReason.UNFOUNDED:
            check_excessive(self)
        self.denial_detail = required(detail, _("Explain the denial to the consumer."))
        self.denial_reason = reason_code
        self.responded_at = self.responded_at or timezone.now()  # the first response

    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW,
                               State.APPROVED],
                target=State.CANCELLED, permission=perm("work_request"),
                custom=step(CONSUMER, STAFF, label=_("Cancel the request"), notice="cancelled",
                            danger=True, timeline=_("The request was cancelled.")))
    def cancel(self):
        self.closed_at = timezone.now()

    # Closing does not take the right to appeal away: a closed request that was
    # answered can still be appealed.
    @transition(state, source=[State.DENIED, State.COMPLETED, State.CLOSED],
                target=State.UNDER_APPEAL,
                conditions=[has_appeal_process], permission=perm("work_request"),
                custom=step(CONSUMER, STAFF, label=_("Record an appeal"),
                            notice="appeal_received",
                            inputs=[Input("text", _("The consumer's appeal, as received"))],
                            timeline=_("We received your appeal."),
                            audit=lambda r: {"appeal_due_on": r.appeal_due_on.isoformat()
                                             if r.appeal_due_on else None}))
    def appeal(self, text=""):
        self.appeal_text = required(text, _("Say why you disagree with the decision."))
        self.appeal_received_at = timezone.now()
        self.appeal_due_on = deadlines.appeal_due(self.appeal_received_at, self.jurisdiction)

    @transition(state, source=State.UNDER_APPEAL, target=State.IN_REVIEW,
                permission=perm("decide_appeal"),
                custom=step(STAFF, label=_("Grant the appeal"), notice="appeal_granted",
                            inputs=[Input("reason", _("Reason"), rows=3)],
                            timeline=_("Your appeal was granted; we are working on your "
                                       "request again.")))
    def grant_appeal(self, reason=""):
        self.appeal_decision = required(reason, _("Give the reasons for the decision."))
        self.appeal_outcome = "granted"
        # The denial it overturns stays as it happened: its reason and the date of
        # the response are what the metrics count (audit/reports.py); the work now
        # runs to the appeal's decision date (current_due_on).

    @transition(state, source=State.UNDER_APPEAL, target=State.APPEAL_DENIED,
                permission=perm("decide_appeal"),
                custom=step(STAFF, label=_("Deny the appeal"), notice="appeal_denied",
                            danger=True, inputs=[Input("reason", _("Reason"), rows=3)],
                            timeline=_("Your appeal was denied.")))
    def deny_appeal(self, reason=""):
        self.appeal_decision = required(reason, _("Give the reasons for the decision."))
        self.appeal_outcome = "denied"

    # Asking for more information keeps the state and does not stop the clock: the
    # laws we follow give no pause for it (a request that stays unverifiable is
    # denied as such, or expires). The message goes to the consumer in the notice
    # `more_information`.
    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW],
                target=None, permission=perm("work_request"),
                custom=step(STAFF, label=_("Ask the consumer for more information"),
                            notice="more_information",
                            inputs=[Input("message", _("Message to the consumer: what we need"),
                                          rows=5)],
                            timeline=_("We asked you for more information."),
                            audit=lambda r: {"asked_at": r.information_requested_at.isoformat()}))
    def request_information(self, message=""):
        self.information_request = required(
            message, _("Write the message that tells the consumer what is needed."))
        self.information_requested_at = timezone.now()

    # A second request for the same right from the same person while the first is
    # open: folded into the first, which answers both. The duplicate ends cancelled.
    @transition(state, source=[State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW],
                target=State.CANCELLED, conditions=[is_flagged_duplicate],
                permission=perm("work_request"),
                custom=step(STAFF, label=_("Merge into the earlier request"), notice="merged",
                            timeline=_("This request was joined to an earlier identical "
                                       "request."),
                            audit=lambda r: {"merged_into": r.duplicate_of.reference}))
    def merge(self):
        self.closed_at = timezone.now()

    # An appeal has its own decision date: the extension is of the first response.
    @transition(state, source=[s for s in OPEN_STATES if s != State.UNDER_APPEAL],
                target=None, conditions=[may_extend],
                permission=perm("extend_deadline"),
                custom=step(STAFF, label=_("Extend the deadline"), notice="extended",
                            inputs=[Input("notice", _("Notice to the consumer: why more time "
                                                      "is needed"))],
                            timeline=_("We extended the deadline."),
                            audit=lambda r: {"due_on": r.due_on.isoformat(),
                                             "extended_due_on": r.extended_due_on.isoformat()}))
    def extend(self, notice=""):
        """Not a change of state: the one extension, moving the due date."""
        self.extension_notice = required(
            notice, _("Write the notice that tells the consumer why more time is needed.")
        )
        self.extended_at = timezone.now()
        self.extended_due_on = deadlines.extended_due(
            self.received_at, self.jurisdiction, self.type_rules
        )

