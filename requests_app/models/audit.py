"""The audit trail: append-only events, one per thing the system did.

Events are written by services in the same transaction as the change they record.
Each event stores a hash of its canonical content, which includes the hash of the
event before it: changing, removing or reordering any event breaks the chain from
there on (`manage.py verify_audit_log` finds where). The hash is keyed
(HMAC-SHA256 under AUDIT_CHAIN_KEY, which the database never holds), so whoever
can write the table cannot recompute it; events written before the chain was keyed
keep their plain SHA-256 (`chain_version` 0). Rows are never updated or deleted
through the ORM, and on PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE.
"""

import datetime
import hashlib
import hmac
import json

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be changed.")

    def delete(self):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be deleted.")


class AppendOnlyModel(models.Model):
    """Rows are added, never changed or deleted (the audit trail, the consent ledger).
    On PostgreSQL a trigger refuses UPDATE and DELETE as well (migrations 0006, 0008)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be deleted.")


class AuditEvent(AppendOnlyModel):
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
    prev_hash = models.CharField(_("previous hash"), max_length=64, blank=True)
    hash = models.CharField(_("hash"), max_length=64, blank=True, db_index=True)
    # How `hash` was made: PLAIN_SHA256 (events from before the chain was keyed) or
    # HMAC_SHA256 under AUDIT_CHAIN_KEY. Once one keyed event exists, a plain one
    # after it is a forgery (services/audit/chain.py).
    chain_version = models.PositiveSmallIntegerField(_("chain version"), default=1)

    class Meta:
        verbose_name = _("audit event")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.actor_label}"

    def canonical(self, reference: str) -> bytes:
        """The bytes the hash covers: every field but the id, in a fixed form."""
        return json.dumps(
            {
                "at": self.at.astimezone(datetime.timezone.utc).isoformat(),
                "actor_kind": self.actor_kind,
                "actor_id": self.actor_id,
                "actor": self.actor_label,
                "action": self.action,
                "request": reference,
                "from": self.from_state,
                "to": self.to_state,
                "reason": self.reason,
                "data": self.data,
                "prev": self.prev_hash,
            },
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
        ).encode()

    def compute_hash(self, reference: str) -> str:
        if self.chain_version == PLAIN_SHA256:
            return hashlib.sha256(self.canonical(reference)).hexdigest()
        if self.chain_version != HMAC_SHA256:
            return ""  # no such version: never matches a stored hash
        keyed = _keyed_hashers.get(settings.AUDIT_CHAIN_KEY)
        if keyed is None:
            keyed = hmac.new(settings.AUDIT_CHAIN_KEY.encode(), digestmod=hashlib.sha256)
            _keyed_hashers.clear()
            _keyed_hashers[settings.AUDIT_CHAIN_KEY] = keyed
        keyed = keyed.copy()  # the key's pads are hashed once per process, not per event
        keyed.update(self.canonical(reference))
        return keyed.hexdigest()


PLAIN_SHA256 = 0
HMAC_SHA256 = 1
_keyed_hashers: dict[str, "hmac.HMAC"] = {}
