"""The outbox: every notice to a consumer, rendered when the event that causes it
happens (so it says what was true then), stored, then sent: an email by a worker,
a letter (a requester with no email address) by staff, who print it from the
"letters to send" page and mark it posted (services/notices/letters.py).

A row is sent at most once (the sender locks it), and a row the broker lost is
found and sent by the reconciler. Rows hold personal data (the address, the
text) and are purged with the identity; the audit trail keeps only the fact
that an email was sent, with the address hashed.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class OutgoingEmail(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        LETTER = "letter", _("Letter")

    # None for an email about no request (a preference-page code): those are
    # deleted a day after they are sent (see services/retention/purge.py).
    request = models.ForeignKey("requests_app.PrivacyRequest", on_delete=models.PROTECT,
                                related_name="emails", null=True, blank=True)
    notice = models.CharField(max_length=40)
    cause = models.ForeignKey("requests_app.AuditEvent", on_delete=models.PROTECT,
                              related_name="+", null=True, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL,
                               db_index=True)
    to = models.EmailField(blank=True)  # blank for a letter
    # A letter's recipient: the name and postal address when it was queued.
    address = models.TextField(blank=True, default="")
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField()
    # Which version of the notice's template was sent: "default" (the files in
    # templates/emails/) or "v<n>" (an EmailTemplateVersion).
    template_version = models.CharField(max_length=20, default="default")
    # An email holding a one-time code (or a download link) is stored with it
    # replaced (subject and bodies above, which the desk shows); the email as it is
    # sent waits here, encrypted with the file key (files.seal_text), and is
    # cleared once sent: no code ever rests in plain text.
    sealed = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    # A letter: the day staff say they posted it (sent_at is when they said so).
    posted_on = models.DateField(null=True, blank=True)
    posted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                  null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cause", "notice"], name="one_email_per_cause")
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.notice} for {self.request_id}"
