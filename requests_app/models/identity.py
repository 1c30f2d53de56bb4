"""The person a request is about."""

from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from requests_app.models.privacy_request import PrivacyRequest


class Identity(models.Model):
    """The person a request is about, kept apart from the request so that it can be
    purged when retention ends while the request record stays."""

    request = models.OneToOneField(
        PrivacyRequest, on_delete=models.CASCADE, related_name="identity"
    )
    # Blank only for an opt-out made on the preference page, where no name is asked.
    name = models.CharField(_("name"), max_length=200, blank=True)
    # Blank only for a request that came by post or phone with no address to write
    # to (another identifier finds the person: a loyalty card number): staff verify
    # the identity and answer by post or phone; nothing is emailed.
    email = models.EmailField(_("email"), db_index=True, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    account_number = models.CharField(_("customer or account number"), max_length=64, blank=True)
    postal_address = models.TextField(_("postal address"), blank=True, max_length=500)
    # The keyed hash of the email (services.audit.hash_value), set at filing: repeat
    # requests are counted by it (models/repeats.py).
    email_hash = models.CharField(_("email hash"), max_length=32, blank=True,
                                  db_index=True, editable=False)
    # Identity types of the office's own that its sources' maps look people up by
    # ({"loyalty_id": "LC-1234"}), as given on the intake or portal form.
    extra = models.JSONField(_("other identifiers"), default=dict, blank=True)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        # Staff search and duplicate detection match emails case-insensitively.
        indexes = [models.Index(Lower("email"), name="identity_email_lower")]

    def __str__(self) -> str:
        return f"Identity for {self.request.reference}"
