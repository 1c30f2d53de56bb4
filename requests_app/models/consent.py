"""Purposes, the consent ledger and the disclosure log.

A purpose is a use of personal data the person has a say in ("share account data
with channel partners", "marketing email"). It is either opt-in (nothing happens
until the person says yes) or opt-out (it happens until they say no), and it
carries a versioned notice: the exact words shown when a choice is made.

The ledger (`ConsentRecord`) holds every grant and withdrawal, per person per
purpose, with when, how, and the notice version shown. It is append-only: rows are
never updated or deleted (the ORM refuses, and on PostgreSQL a trigger does too).
A person's current choice is always computed from it (services/consent/ledger.py); an
opt-in purpose with no grant is never consent.

A disclosure (`Disclosure`) is a record, read from a source, that a person's data
went to a third party. Disclosures answer Right to Know requests, and one made
against the person's choice is flagged as a violation.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app.models.audit import AppendOnlyModel
from requests_app.rules import opt_out_type_choices


class Purpose(models.Model):
    class Basis(models.TextChoices):
        OPT_IN = "opt_in", _("Opt-in: only with the person's consent")
        OPT_OUT = "opt_out", _("Opt-out: until the person says no")

    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(
        _("what it means"), help_text=_("In plain words, for the preference page."))
    basis = models.CharField(_("basis"), max_length=8, choices=Basis.choices)
    opt_out_type = models.CharField(
        _("request filed on withdrawal"), max_length=32, choices=opt_out_type_choices,
        help_text=_("A withdrawal files an opt-out request of this type, which is pushed to "
                    "the sources and third parties below and tracked to confirmation."))
    honours_gpc = models.BooleanField(
        _("Global Privacy Control withdraws it"), default=False,
        help_text=_("Set for sale or sharing: a browser's Sec-GPC signal opts out of it."))
    sources = models.ManyToManyField(
        "requests_app.DataSource", blank=True, related_name="purposes_governed",
        verbose_name=_("sources it governs"))
    third_parties = models.ManyToManyField(
        "requests_app.ThirdParty", blank=True, related_name="purposes",
        verbose_name=_("third parties it governs"))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("purpose")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_opt_in(self) -> bool:
        return self.basis == self.Basis.OPT_IN

    @property
    def current_notice(self) -> "PurposeNotice | None":
        return self.notices.order_by("-version").first()


class PurposeNotice(AppendOnlyModel):
    """One version of the words shown for a purpose. A change is a new version."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="notices")
    version = models.PositiveIntegerField(_("version"))
    text = models.TextField(_("notice text"))
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.DO_NOTHING, db_constraint=False,
                                   related_name="+")

    class Meta:
        verbose_name = _("purpose notice")
        ordering = ["purpose", "-version"]
        constraints = [models.UniqueConstraint(fields=["purpose", "version"],
                                               name="one_notice_per_purpose_version")]

    def __str__(self) -> str:
        return f"{self.purpose.slug} v{self.version}"


class ConsentRecord(AppendOnlyModel):
    """One grant or withdrawal. `subject` is a keyed hash, never the address."""

    class Action(models.TextChoices):
        GRANT = "grant", _("Granted")
        WITHDRAW = "withdraw", _("Withdrawn")

    class Method(models.TextChoices):
        PREFERENCE_PAGE = "preference_page", _("Preference page (email code)")
        EMAIL_LINK = "email_link", _("Preference page (signed email link)")
        REQUEST_FORM = "request_form", _("Request form")
        GPC = "gpc", _("Global Privacy Control signal")
        STAFF_PHONE = "staff_phone", _("Staff, on the phone")
        STAFF_WRITING = "staff_writing", _("Staff, from a letter or email")

    at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    # "email:<hash_value(email)>" for a person, "browser:<hash>" for a browser that
    # sent a Global Privacy Control signal with no person tied to the visit.
    subject = models.CharField(_("subject"), max_length=80, db_index=True)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="records")
    action = models.CharField(_("action"), max_length=8, choices=Action.choices)
    method = models.CharField(_("method"), max_length=16, choices=Method.choices)
    notice = models.ForeignKey(PurposeNotice, on_delete=models.PROTECT, related_name="+",
                               verbose_name=_("notice version shown"))
    # For a grant of an opt-in purpose: what the person did to say yes.
    affirmative_act = models.CharField(_("affirmative act"), max_length=300, blank=True)
    request = models.ForeignKey("requests_app.PrivacyRequest", null=True, blank=True,
                                on_delete=models.DO_NOTHING, db_constraint=False,
                                related_name="consent_records")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.DO_NOTHING, db_constraint=False,
                              related_name="+")

    class Meta:
        verbose_name = _("consent record")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["subject", "purpose", "at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.purpose.slug}"


class Disclosure(models.Model):
    """A source's record that a person's data went to a third party."""

    source = models.ForeignKey("requests_app.DataSource", on_delete=models.CASCADE,
                               related_name="disclosures")
    table = models.CharField(max_length=100)
    row_key = models.CharField(max_length=100)
    subject = models.CharField(max_length=80, db_index=True)
    third_party = models.ForeignKey("requests_app.ThirdParty", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="disclosures")
    third_party_name = models.CharField(_("recipient"), max_length=200)
    categories = models.JSONField(_("categories"), default=list)
    purpose_text = models.CharField(_("stated purpose"), max_length=300, blank=True)
    disclosed_at = models.DateTimeField(_("disclosed"), db_index=True)
    # Set when the disclosure went against the person's choice at that time.
    violated_purpose = models.ForeignKey(Purpose, null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="violations")
    violation = models.CharField(_("violation"), max_length=300, blank=True)
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("disclosure")
        ordering = ["-disclosed_at"]
        constraints = [models.UniqueConstraint(fields=["source", "table", "row_key"],
                                               name="one_disclosure_per_source_row")]
        indexes = [models.Index(fields=["violated_purpose", "disclosed_at"])]

    def __str__(self) -> str:
        return f"to {self.third_party_name} on {self.disclosed_at:%Y-%m-%d}"


class DisclosureScan(models.Model):
    """How far the disclosure table of a source has been read (by primary key)."""

    source = models.ForeignKey("requests_app.DataSource", on_delete=models.CASCADE)
    table = models.CharField(max_length=100)
    last_key = models.JSONField(null=True, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "table"],
                                               name="one_scan_per_source_table")]
