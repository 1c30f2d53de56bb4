"""What the consumer portal keeps: one-time codes (hashed) and the evidence of
each request's identity verification."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class OneTimeCode(models.Model):
    """A code sent by email, stored as a keyed hash only. `purpose` says what it
    opens ("verify:<submission>", "status:<reference>", "preferences"), `subject`
    whom it was sent to (a keyed hash of the address, see services/codes.py)."""

    purpose = models.CharField(max_length=64)
    subject = models.CharField(max_length=64)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    failures = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["purpose", "subject", "-created_at"])]


class VerificationEvidence(models.Model):
    """How a request's identity was checked: which data points were given and
    which matched what the sources hold (names of the points, never their values),
    the level required and reached, the declaration, the agent and their signed
    permission (encrypted with files.py). Purged with the identity."""

    request = models.OneToOneField("requests_app.PrivacyRequest", on_delete=models.CASCADE,
                                   related_name="evidence")
    # Requests filed together in one form share this key (and one code).
    submission = models.CharField(max_length=32, db_index=True)
    points_given = models.JSONField(default=list)
    points_matched = models.JSONField(default=list)
    # Sources that were asked and what each could say ("matched", "no record", "offers no lookup").
    sources_checked = models.JSONField(default=dict)
    level_required = models.CharField(max_length=80, blank=True)
    points_required = models.PositiveSmallIntegerField(default=0)
    level_reached = models.BooleanField(default=False)
    email_confirmed_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    manual_review = models.BooleanField(default=False)
    outcome = models.CharField(max_length=200, blank=True)
    # A correction cannot be verified with the field being corrected.
    corrected_field = models.CharField(max_length=32, blank=True)
    correction_wrong = models.TextField(blank=True, max_length=2000)
    correction_right = models.TextField(blank=True, max_length=2000)
    # Right to know: the period asked for.
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    declaration_accepted_at = models.DateTimeField(null=True, blank=True)
    # Filed by an authorized agent.
    agent_name = models.CharField(max_length=200, blank=True)
    agent_email = models.EmailField(blank=True)
    agent_confirmed_at = models.DateTimeField(null=True, blank=True)
    permission_path = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT
    permission_name = models.CharField(max_length=100, blank=True)
    permission_type = models.CharField(max_length=40, blank=True)
    permission_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("verification evidence")
        verbose_name_plural = _("verification evidence")

    def summary(self) -> list[tuple[str, str]]:
        """Rows for the staff desk: (label, value), no personal values."""
        def when(value):
            return value.strftime("%b %-d, %Y %H:%M") if value else str(_("not yet"))

        rows = [
            (_("Email confirmed"), when(self.email_confirmed_at)),
            (_("Level required"), f"{self.level_required} ({self.points_required} "
                                  f"{_('data points')})" if self.level_required else "—"),
            (_("Data points given"), ", ".join(self.points_given) or "—"),
            (_("Data points matched"), ", ".join(self.points_matched) or "—"),
            (_("Data points not matched"), ", ".join(
                p for p in self.points_given if p not in self.points_matched)
                if self.checked_at else "—"),
            (_("Sources checked"), "; ".join(f"{name}: {what}" for name, what
                                             in sorted(self.sources_checked.items())) or "—"),
            (_("Level reached"), str(_("yes")) if self.level_reached else str(_("no"))),
        ]
        if self.outcome:
            rows.append((_("Outcome"), self.outcome))
        if self.manual_review:
            rows.append((_("Needs"), str(_("manual verification by staff"))))
        if self.corrected_field:
            rows.append((_("Field to correct (not used to verify)"), self.corrected_field))
        if self.period_start:
            rows.append((_("Period asked for"), f"{self.period_start} – {self.period_end}"))
        if self.declaration_accepted_at:
            rows.append((_("Declaration under penalty of perjury"),
                         when(self.declaration_accepted_at)))
        if self.agent_email:
            rows.append((_("Authorized agent"), f"{self.agent_name} <{self.agent_email}>"))
            rows.append((_("Agent confirmed by the consumer"), when(self.agent_confirmed_at)))
        if self.permission_path:
            rows.append((_("Signed permission"),
                         f"{self.permission_name} ({self.permission_type}, "
                         f"{self.permission_size} bytes)"))
        elif self.permission_type:
            rows.append((_("Signed permission"),
                         str(_("deleted once the request ended (it served only to verify)"))))
        return [(str(label), str(value)) for label, value in rows]


class DownloadEvent(models.Model):
    """One download of a package by the consumer (every one is audited too)."""

    package = models.ForeignKey("requests_app.Package", on_delete=models.CASCADE,
                                related_name="downloads")
    at = models.DateTimeField(auto_now_add=True)
    ip_hash = models.CharField(max_length=64, blank=True)
