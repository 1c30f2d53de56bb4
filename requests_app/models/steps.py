"""What each step of the machine means, beside the machine itself.

A transition on PrivacyRequest names its guards (``conditions``), its permission and
its meaning, built by `step()` into django-fsm's ``custom``: who may take it, its
label and confirmation on the staff desk, the inputs its form asks for, whether it
is dangerous, the notice emailed to the consumer, the task that follows it, and the
wording of the consumer's timeline. The desk, the portal, the notices, the
reconciler and docs/lifecycle.md all read it from there: adding a step means
writing one decorated method (and its email templates).
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app.models.states import OPEN_STATES
from requests_app.rules import Verification


@dataclass(frozen=True)
class Input:
    """One input a step's form asks for: a text (rows high), a choice (of several
    when `multiple`), or a file (a PDF, PNG or JPEG)."""

    name: str
    label: str
    rows: int = 4
    help_text: str = ""
    choices: tuple = ()
    multiple: bool = False
    file: bool = False
    required: bool = True


def step(*actors, label="", notice="", follow_up="", timeline="", danger=False, confirm="",
         inputs=(), hint="", audit=None) -> dict:
    """The ``custom`` of a transition. `follow_up` is a task's dotted path, run after
    the step commits; `notice` a template folder under templates/emails/; `audit`
    gives the data recorded with the step's audit event (codes and dates only);
    `hint` a template shown with the step's form on the desk."""
    return {"actors": actors, "label": label, "notice": notice, "follow_up": follow_up,
            "timeline": timeline, "danger": danger, "confirm": confirm,
            "inputs": tuple(inputs), "hint": hint, "audit": audit}


# The tasks steps are followed by (by name: models import no task module).
BEGIN_REVIEW = "requests_app.services.requests.tasks.begin_review"
BEGIN_FULFILMENT = "requests_app.services.fulfilment.tasks.begin_fulfilment"


def perm(codename: str) -> str:
    return f"requests_app.{codename}"


def may_approve(instance, user) -> bool:
    """`approve_deletion` for a deletion, else `work_request`"""
    if instance.type_rules.is_deletion:
        return user.has_perm(perm("approve_deletion"))
    return user.has_perm(perm("work_request"))


def verification_window_elapsed(instance) -> bool:
    """VERIFICATION_WINDOW_DAYS have passed since receipt, with an email address to confirm"""
    if instance.type_rules.verification is Verification.NONE:
        return False  # a type that needs no verifying never expires
    # A request with no email address (a letter with a card number) has nothing to
    # confirm: it waits for staff to verify it, and never expires unseen.
    identity = getattr(instance, "identity", None)
    if identity is not None and not identity.email:
        return False
    limit = instance.received_at + datetime.timedelta(days=settings.VERIFICATION_WINDOW_DAYS)
    return timezone.now() >= limit


def may_extend(instance) -> bool:
    """not extended yet, the jurisdiction allows it, on or before the first due date"""
    return (
        instance.extended_at is None
        and instance.extension_available
        and timezone.localdate() <= instance.due_on
    )


def has_appeal_process(instance) -> bool:
    """answered (denied or completed), not appealed yet, and the jurisdiction has an appeal process"""
    return (
        instance.responded_at is not None
        and instance.appeal_received_at is None
        and instance.appeal_window_exists
    )


def erasure_plan_awaits_approval(instance) -> bool:
    """a deletion whose dry run is ready and not yet approved"""
    return instance.type_rules.is_deletion and instance.erasure_approved_at is None


def is_opt_out(instance) -> bool:
    """an opt-out (no review: it is carried out as received)"""
    return instance.type_rules.is_opt_out


def is_flagged_duplicate(instance) -> bool:
    """flagged as a duplicate of another request that is still open"""
    original = instance.duplicate_of
    return original is not None and original.state in OPEN_STATES


def results_are_final(instance) -> bool:
    """for a deletion: the erasure itself has run, not only its dry run"""
    return not instance.type_rules.is_deletion or instance.erasure_approved_at is not None


def quiet_period_over(instance) -> bool:
    """answered, unchanged for AUTO_CLOSE_QUIET_DAYS, and no download link still live"""
    from requests_app.models.sources import Package

    quiet_since = timezone.now() - datetime.timedelta(days=settings.AUTO_CLOSE_QUIET_DAYS)
    if instance.responded_at is None or instance.updated_at is None \
            or instance.updated_at > quiet_since:
        return False
    live = Package.objects.filter(
        request=instance, purged_at=None, expires_at__gt=timezone.now(),
        download_count__lt=settings.DOWNLOAD_MAX_COUNT).exclude(sha256="")
    return not live.exists()


# What a refused step tells staff when its guard does not hold.
verification_window_elapsed.refusal = _("The time allowed for verification has not run out yet.")
may_extend.refusal = _(
    "The deadline can be extended only once, on or before the original due date."
)
erasure_plan_awaits_approval.refusal = _(
    "Only the dry run of a deletion that is not yet approved can be approved or rejected."
)
is_opt_out.refusal = _("Only an opt-out is approved and confirmed by the system.")
results_are_final.refusal = _("Approve the deletion dry run first: nothing has been deleted yet.")
is_flagged_duplicate.refusal = _(
    "Only a request flagged as a duplicate of another open request can be merged into it."
)
quiet_period_over.refusal = _(
    "Not quiet long enough yet: the request changed recently or a download link is still live."
)
has_appeal_process.refusal = _(
    "No appeal is possible: the request was appealed already, or its jurisdiction has no appeal."
)


class TransitionInputError(ValidationError):
    """A transition was asked for without what it needs (a reason, a notice)."""


def required(value: str, message: str) -> str:
    value = (value or "").strip()
    if not value:
        raise TransitionInputError(message)
    return value

