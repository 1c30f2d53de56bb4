"""The audit trail: append-only events, one per thing the system did.

Events are written by services in the same transaction as the change they record.
Rows are never updated or deleted through the ORM; a database trigger adds the
same guarantee below the ORM (see the audit-trail issue).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    pass


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self):
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    # "system", "consumer" or "staff"; for staff, also the user and their username at
    # the time. No database constraint and no cascade: deleting a user must not
    # touch the trail (deactivate staff accounts instead), and the label survives.
    actor_kind = models.CharField(_("actor kind"), max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
        related_name="+", db_constraint=False,
    )
    actor_label = models.CharField(_("actor"), max_length=150)
    # Namespaced code: request.received, request.verified, email.sent, ...
    action = models.CharField(_("action"), max_length=64, db_index=True)
    request = models.ForeignKey(
        "requests_app.PrivacyRequest", null=True, blank=True, on_delete=models.PROTECT,
        related_name="audit_events",
    )
    from_state = models.CharField(_("from"), max_length=32, blank=True)
    to_state = models.CharField(_("to"), max_length=32, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    # Extra facts; never personal values in clear (mask or hash them first).
    data = models.JSONField(_("data"), default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.actor_label}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be deleted.")
