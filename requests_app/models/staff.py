"""The staff workspace's own records: internal notes, what staff entered for a
request that came by email, post or phone, and the editable consumer emails.

Notes and intake records hold free text and files that may describe the person:
they are purged with the identity (services/retention/purge.py). Email template versions
are configuration: kept for ever, never edited in place.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class RequestNote(models.Model):
    """An internal note on a request, never shown to the consumer."""

    request = models.ForeignKey("requests_app.PrivacyRequest", on_delete=models.CASCADE,
                                related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="+")
    text = models.TextField(_("note"), max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("note")


class IntakeRecord(models.Model):
    """A request staff entered by hand: the original (email, letter, call note) and
    how they verified the person's identity."""

    class Method(models.TextChoices):
        NONE = "", _("Not verified yet")
        DATA_POINTS = "data_points", _("Matched data points we hold")
        DOCUMENT = "document", _("Identity document seen")
        CALL_BACK = "call_back", _("Called back on a number we hold")
        AGENT = "agent", _("Agent's signed permission and the person's confirmation")

    request = models.OneToOneField("requests_app.PrivacyRequest", on_delete=models.CASCADE,
                                   related_name="intake")
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    entered_at = models.DateTimeField(auto_now_add=True)
    call_note = models.TextField(_("call note"), blank=True, max_length=4000)
    # The original, encrypted at rest under MEDIA_ROOT (requests_app/files.py).
    original_name = models.CharField(max_length=200, blank=True)
    original_path = models.CharField(max_length=300, blank=True)
    original_type = models.CharField(max_length=100, blank=True)
    original_size = models.PositiveBigIntegerField(default=0)
    verification_method = models.CharField(_("verification"), max_length=16, blank=True,
                                           choices=Method.choices)
    verification_evidence = models.TextField(_("verification evidence"), blank=True,
                                             max_length=4000)
    purged_at = models.DateTimeField(null=True, blank=True)


class EmailTemplateVersion(models.Model):
    """One version of a consumer email (a notice in templates/emails/<notice>/).
    The newest version of a notice is the one sent, unless it says `use_default`
    (the files in templates/emails/, which count as version "default")."""

    notice = models.CharField(max_length=40, db_index=True)
    number = models.PositiveIntegerField()
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    body_text = models.TextField(_("text"), blank=True)
    body_html = models.TextField(_("HTML"), blank=True)
    use_default = models.BooleanField(default=False)
    comment = models.CharField(_("what changed"), max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notice", "number"],
                                               name="one_template_version_number")]
        ordering = ["notice", "-number"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return "default" if self.use_default else f"v{self.number}"


class StaffEmailSettings(models.Model):
    """Which emails about requests a staff member receives (both on unless they
    turn them off on their settings page), and the day their last digest went out
    (so a digest runs at most once a day per person, however often it is started)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="email_settings")
    daily_digest = models.BooleanField(
        _("daily digest of requests due soon or overdue"), default=True)
    on_assignment = models.BooleanField(
        _("an email when a request is assigned to me"), default=True)
    digest_sent_on = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("staff email settings")
        verbose_name_plural = _("staff email settings")

    @classmethod
    def of(cls, user) -> "StaffEmailSettings":
        """The user's settings (the defaults, unsaved, if they never changed them)."""
        found = cls.objects.filter(user=user).first()
        return found or cls(user=user)
