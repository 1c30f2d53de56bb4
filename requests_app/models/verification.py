"""Verification by staff, and requests by a parent or guardian (issue 15, items 10
and 11).

A staff member verifies a request by hand with the step `verify_manually`: the
methods used (an identity document seen, a call-back, knowledge questions, a
signed declaration...), the data points checked (their names, never their values),
the degree of certainty reached and, when there is one, the evidence (a file,
encrypted at rest with files.py). The degree each right needs is in
rules.CERTAINTY_NEEDED; a lower one is refused with words. A request for specific
pieces may instead be answered as a request for categories (`verify_for_categories`,
the staff's choice): the type it was filed as stays in `original_request_type` and
the consumer gets the `treated_as_categories` email.

What is recorded is in `ManualVerification`; a parent's or guardian's details in
`GuardianDetails`. Their files serve only to verify and are purged when
verification ends (services/retention/purge.py); the names of the points, the
degree and the outcome stay.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import transition

from requests_app.models.states import STAFF, FiledBy, State
from requests_app.models.steps import BEGIN_REVIEW, Input, TransitionInputError, perm, step
from requests_app.rules import (
    CATEGORIES_FALLBACK,
    CERTAINTY_CITATION,
    CERTAINTY_NEEDED,
    CERTAINTY_POINTS,
    GUARDIAN_CHILD_UNDER,
    SENSITIVE_CATEGORY_PREFIXES,
    SENSITIVE_DELETION_CERTAINTY,
    Certainty,
    Verification,
)
from requests_app.sources.categories import under


class Method(models.TextChoices):
    DOCUMENT = "document", _("Identity document seen")
    CALL_BACK = "call_back", _("Called back on a number we hold")
    KNOWLEDGE = "knowledge", _("Knowledge questions about data we hold")
    DECLARATION = "declaration", _("Signed declaration under penalty of perjury")
    DATA_POINTS = "data_points", _("Matched data points we hold")
    AGENT = "agent", _("Agent's signed permission and the person's confirmation")
    GUARDIAN = "guardian", _("Proof of being the child's parent or guardian checked")


# The data points staff may have checked (names only are recorded).
POINT_CHOICES = [
    ("name", _("Name")),
    ("email", _("Email address")),
    ("phone", _("Phone number")),
    ("account_number", _("Customer or account number")),
    ("postal_address", _("Postal address")),
    ("date_of_birth", _("Date of birth")),
    ("recent_purchase", _("A recent purchase or transaction")),
    ("card_last_digits", _("Last digits of a payment card")),
    ("other", _("Another identifier we hold")),
]
LEVEL_CHOICES = [(c.value, c.label) for c in Certainty]


def holds_sensitive_data() -> bool:
    """Whether an enabled source holds a category of sensitive personal information."""
    from requests_app.models.sources import DataSource

    return any(under(key, SENSITIVE_CATEGORY_PREFIXES)
               for categories in DataSource.objects.filter(enabled=True)
               .values_list("categories", flat=True)
               for key in categories or ())


def certainty_needed(request) -> Certainty | None:
    """The degree of certainty the request's right needs (None: no verification)."""
    level = request.type_rules.verification
    if level is Verification.SENSITIVITY and holds_sensitive_data():
        return SENSITIVE_DELETION_CERTAINTY
    return CERTAINTY_NEEDED[level]


def what_is_needed(request) -> list[str]:
    """What the desk tells staff before they verify by hand, in sentences."""
    needed = certainty_needed(request)
    if needed is None:
        return [str(_("This right needs no verification."))]
    lines = [str(_("This right needs %(level)s (%(cite)s): at least %(n)d data points "
                   "checked.") % {"level": needed.label.lower(), "cite": CERTAINTY_CITATION[needed],
                                  "n": CERTAINTY_POINTS[needed]})]
    if request.type_rules.takes_declaration:
        lines.append(str(_("It also needs a signed declaration under penalty of perjury: %(s)s.")
                         % {"s": _("one came with the form") if _declared(request, ())
                            else _("none came with the form; attach one")}))
    if may_answer_with_categories(request):
        lines.append(str(_("Below that: deny it as unverifiable, or answer it with categories "
                           "(the consumer is told why).")))
    if request.filed_by == FiledBy.PARENT:
        lines.append(str(_("Filed by a parent or guardian: check their proof before verifying "
                           "(CCPA regs §7070).")))
    return lines


def may_answer_with_categories(request) -> bool:
    """a request for specific pieces or portability (it may be answered with categories)"""
    return request.type_rules.verification is Verification.THREE_POINTS_AND_DECLARATION


may_answer_with_categories.refusal = _(
    "Only a request for specific pieces or for portability can be answered with categories.")


def _recorded(request, methods, points, level, evidence) -> Certainty:
    """Check what staff recorded; the degree reached (TransitionInputError else)."""
    methods, points = list(methods or ()), list(points or ())
    if not methods or any(m not in Method.values for m in methods):
        raise TransitionInputError(_("Say how the identity was verified (one method or more)."))
    if any(p not in dict(POINT_CHOICES) for p in points):
        raise TransitionInputError(_("Choose the data points checked from the list."))
    try:
        reached = Certainty(level)
    except ValueError:
        raise TransitionInputError(_("Say what degree of certainty was reached.")) from None
    if len(points) < CERTAINTY_POINTS[reached]:
        raise TransitionInputError(
            _("%(level)s needs at least %(n)d data points checked (%(cite)s); %(k)d are "
              "ticked.") % {"level": reached.label, "n": CERTAINTY_POINTS[reached],
                            "cite": CERTAINTY_CITATION[reached], "k": len(points)})
    if Method.DECLARATION in methods and not evidence:
        raise TransitionInputError(_("Attach the signed declaration as the evidence."))
    if request.filed_by == FiledBy.PARENT and Method.GUARDIAN not in methods:
        raise TransitionInputError(
            _("A parent or guardian acts for a child only once verified as such (CCPA regs "
              "§7070): check their proof and tick “%(method)s”.")
            % {"method": Method.GUARDIAN.label})
    needed = certainty_needed(request)
    request._manual = {"methods": methods, "points": points, "level": reached.value,
                       "level_needed": needed.value if needed else None,
                       "evidence": bool(evidence)}
    return reached


def _declared(request, methods) -> bool:
    evidence = getattr(request, "evidence", None)
    return Method.DECLARATION in methods or bool(
        evidence and evidence.declaration_accepted_at)


def manual_audit(request) -> dict:
    """The audit data of a manual verification: codes and names, never values."""
    return {**getattr(request, "_manual", {}),
            "original_type": request.original_request_type or None}


_INPUTS = [
    Input("methods", _("How the identity was verified"), choices=tuple(Method.choices),
          multiple=True),
    Input("points", _("Data points checked (their names are recorded, not their values)"),
          choices=tuple(POINT_CHOICES), multiple=True, required=False),
    Input("level", _("Degree of certainty reached"), choices=tuple(LEVEL_CHOICES)),
    Input("evidence", _("Evidence (PDF, PNG or JPEG, at most 20 MB; stored encrypted, "
                        "deleted when verification ends)"), file=True, required=False),
]


class ManualVerificationSteps:
    """The staff's verification steps, mixed into PrivacyRequest's machine."""

    @transition(field="state", source=State.PENDING_VERIFICATION, target=State.VERIFIED,
                permission=perm("work_request"),
                custom=step(STAFF, label=_("Mark identity verified"), follow_up=BEGIN_REVIEW,
                            inputs=_INPUTS, hint="verify_manually", audit=manual_audit,
                            timeline=_("Your identity was confirmed.")))
    def verify_manually(self, methods=(), points=(), level="", evidence=None):
        """Verified by staff to the degree the right needs (refused with words below it)."""
        reached = _recorded(self, methods, points, level, evidence)
        needed = certainty_needed(self)
        if needed is not None and reached.rank < needed.rank:
            other = (_(" Or answer it with categories (“Verified only for categories”).")
                     if may_answer_with_categories(self) else "")
            raise TransitionInputError(
                _("This right needs %(needed)s (%(cite)s); %(reached)s was recorded. Gather "
                  "more evidence, or deny the request as unverifiable.%(other)s")
                % {"needed": needed.label.lower(), "cite": CERTAINTY_CITATION[needed],
                   "reached": reached.label.lower(), "other": other})
        if self.type_rules.takes_declaration and not _declared(self, methods):
            raise TransitionInputError(
                _("A copy of specific pieces needs a signed declaration under penalty of "
                  "perjury (CCPA regs §7062(c)); none came with the form: attach one and tick "
                  "“%(method)s”.") % {"method": Method.DECLARATION.label})
        self.verified_at = timezone.now()

    @transition(field="state", source=State.PENDING_VERIFICATION, target=State.VERIFIED,
                conditions=[may_answer_with_categories], permission=perm("work_request"),
                custom=step(STAFF, label=_("Verified only for categories: answer with "
                                           "categories"),
                            follow_up=BEGIN_REVIEW, notice="treated_as_categories",
                            inputs=_INPUTS, audit=manual_audit,
                            timeline=_("Your identity was confirmed to the degree needed to "
                                       "tell you what kinds of information we hold.")))
    def verify_for_categories(self, methods=(), points=(), level="", evidence=None):
        """Specific pieces not verified to their degree: answered as a request for
        categories (CCPA regs §7024); the type filed is kept."""
        _recorded(self, methods, points, level, evidence)
        self.original_request_type = self.original_request_type or self.request_type
        self.request_type = CATEGORIES_FALLBACK
        self.verified_at = timezone.now()


class ManualVerification(models.Model):
    """How staff verified a request: methods, names of the points checked, the
    degree needed and reached, and the evidence file (until verification ends)."""

    request = models.OneToOneField("requests_app.PrivacyRequest", on_delete=models.CASCADE,
                                   related_name="manual_verification")
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    verified_at = models.DateTimeField(default=timezone.now)
    methods = models.JSONField(default=list)
    points_checked = models.JSONField(default=list)
    level_reached = models.CharField(max_length=20, choices=LEVEL_CHOICES)
    level_needed = models.CharField(max_length=20, blank=True)
    answered_with_categories = models.BooleanField(default=False)
    # The evidence, encrypted at rest under MEDIA_ROOT (requests_app/files.py).
    evidence_path = models.CharField(max_length=300, blank=True)
    evidence_type = models.CharField(max_length=40, blank=True)
    evidence_size = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("manual verification")

    def summary(self) -> list[tuple[str, str]]:
        labels = dict(Method.choices)
        points = dict(POINT_CHOICES)
        rows = [
            (_("Verified by"), f"{self.verified_by.get_username()}, "
                               f"{self.verified_at:%b %-d, %Y %H:%M}"),
            (_("Methods"), "; ".join(str(labels.get(m, m)) for m in self.methods)),
            (_("Data points checked"), ", ".join(str(points.get(p, p))
                                                 for p in self.points_checked) or "—"),
            (_("Degree needed"), Certainty(self.level_needed).label if self.level_needed
             else "—"),
            (_("Degree reached"), Certainty(self.level_reached).label),
        ]
        if self.answered_with_categories:
            rows.append((_("Outcome"), _("answered with categories (the consumer was told)")))
        if self.evidence_path:
            rows.append((_("Evidence"), f"{self.evidence_type}, {self.evidence_size} bytes"))
        elif self.evidence_type:
            rows.append((_("Evidence"), _("deleted once verification ended (it served only "
                                          "to verify)")))
        return [(str(label), str(value)) for label, value in rows]


class GuardianDetails(models.Model):
    """A request by a parent or guardian for a child under
    rules.GUARDIAN_CHILD_UNDER: the child, the guardian's proof (a file, encrypted,
    deleted when verification ends) and the consent the guardian gave, if any,
    to opt-in purposes (recorded in the consent ledger once they are verified)."""

    request = models.OneToOneField("requests_app.PrivacyRequest", on_delete=models.CASCADE,
                                   related_name="guardian")
    child_name = models.CharField(_("child's name"), max_length=200, blank=True)
    child_birth_date = models.DateField(_("child's date of birth"), null=True, blank=True)
    child_age_at_filing = models.PositiveSmallIntegerField(default=0)
    proof_path = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT
    proof_type = models.CharField(max_length=40, blank=True)
    proof_size = models.PositiveIntegerField(default=0)
    # [{"purpose": slug, "notice": version}]: opt-in purposes the guardian consented
    # to for the child, ticked (never pre-ticked) on the form.
    consents = models.JSONField(default=list, blank=True)
    consent_given_at = models.DateTimeField(null=True, blank=True)
    consent_recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("parent or guardian")

    def summary(self) -> list[tuple[str, str]]:
        rows = [(_("Child's name"), self.child_name or "—"),
                (_("Child's date of birth"),
                 f"{self.child_birth_date:%b %-d, %Y} "
                 f"({_('%(age)d on the filing date') % {'age': self.child_age_at_filing}})"
                 if self.child_birth_date else "—")]
        if self.proof_path:
            rows.append((_("Proof of being the parent or guardian"),
                         f"{self.proof_type}, {self.proof_size} bytes"))
        elif self.proof_type:
            rows.append((_("Proof of being the parent or guardian"),
                         _("deleted once verification ended (it served only to verify)")))
        else:
            rows.append((_("Proof of being the parent or guardian"), _("none given")))
        consent = (", ".join(f"{c['purpose']} (v{c['notice']})" for c in self.consents)
                   if self.consents else _("not asked for"))
        if self.consent_given_at:
            consent += f"; {_('given')} {self.consent_given_at:%b %-d, %Y %H:%M}"
        if self.consent_recorded_at:
            consent += f"; {_('in the consent ledger since')} " \
                       f"{self.consent_recorded_at:%b %-d, %Y %H:%M}"
        rows.append((_("Consent to opt-in purposes"), consent))
        return [(str(label), str(value)) for label, value in rows]


def child_age(birth_date, on) -> int:
    """Whole years of age on the date `on`."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def check_child(birth_date, filed_on) -> int:
    """The child's age on the filing date, if under rules.GUARDIAN_CHILD_UNDER;
    ValidationError with words else."""
    from django.core.exceptions import ValidationError

    if birth_date > filed_on:
        raise ValidationError(_("The child's date of birth cannot be after the day of the "
                                "request."))
    age = child_age(birth_date, filed_on)
    if age >= GUARDIAN_CHILD_UNDER:
        raise ValidationError(
            _("A parent or guardian can make a request for a child under %(limit)d only; a "
              "child born on %(date)s is %(age)d on the day of the request. A person of "
              "%(limit)d or older makes the request themself, or through an authorized "
              "agent.")
            % {"limit": GUARDIAN_CHILD_UNDER, "date": birth_date.isoformat(), "age": age})
    return age
