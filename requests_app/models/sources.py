"""The registry of data sources and the durable record of fulfilment work.

Every bit of fulfilment state lives in these tables: which source runs exist for
a request, where each stands, how many records it found, its last error. The
broker only carries "go and run SourceRun 42"; if that message is lost, the
reconciler (services/reconciler.py) sends it again.
"""

import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class RecipientCategory(models.TextChoices):
    """Categories of third parties, as a Right to Know answer names them by category
    of data (CCPA §1798.110(c)(4), regs §7011(e)(1)(F); GDPR Art. 15(1)(c))."""

    PAYMENTS = "payments", _("Payment processors")
    DELIVERY = "delivery", _("Delivery and logistics companies")
    HOSTING = "hosting", _("Hosting and IT service providers")
    ANALYTICS = "analytics", _("Data analytics providers")
    ADVERTISING = "advertising", _("Advertising networks")
    RESELLERS = "resellers", _("Resellers and business partners")
    SUPPORT = "support", _("Customer support providers")
    BROKERS = "brokers", _("Data brokers")
    AUTHORITIES = "authorities", _("Government and law enforcement")
    ADVISERS = "advisers", _("Professional advisers (lawyers, auditors)")


class SourceOrigin(models.TextChoices):
    """Where the personal information of a source comes from: the categories of
    sources a Right to Know answer gives (CCPA §1798.110(c)(2)), and for GDPR "any
    available information as to their source" (Art. 15(1)(g))."""

    DIRECT = "direct", _("Directly from you")
    DEVICES = "devices", _("Your devices (cookies, apps, browsing on our site)")
    PARTNERS = "partners", _("Business partners")
    BROKERS = "brokers", _("Data brokers")
    PUBLIC = "public", _("Public records")


def origin_labels(codes) -> list[str]:
    labels = dict(SourceOrigin.choices)
    return [str(labels.get(code, code)) for code in codes or []]


class ThirdParty(models.Model):
    """A service provider or third party that sources share personal data with."""

    class Kind(models.TextChoices):
        SERVICE_PROVIDER = "service_provider", _("Service provider / processor")
        THIRD_PARTY = "third_party", _("Third party")

    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    # What a Right to Know answer calls it (never its name, for categories).
    recipient_category = models.CharField(_("category of recipient"), max_length=20,
                                          choices=RecipientCategory.choices, blank=True)
    contact_email = models.EmailField(_("privacy contact"), blank=True)
    categories = models.JSONField(_("data categories received"), default=list, blank=True)

    class Meta:
        verbose_name = _("third party")
        verbose_name_plural = _("third parties")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DataSource(models.Model):
    class Kind(models.TextChoices):
        SQL = "sql", _("SQL database")
        HTTP = "http", _("HTTP service")
        MANUAL = "manual", _("Manual (an owner acts by hand)")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="owned_sources", verbose_name=_("owner"),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    categories = models.JSONField(_("data categories held"), default=list, blank=True)
    purposes = models.JSONField(_("purposes"), default=list, blank=True)
    third_parties = models.ManyToManyField(ThirdParty, blank=True, related_name="sources")
    retention = models.CharField(_("retention"), max_length=300, blank=True)
    # Where its data comes from (SourceOrigin codes) and, for what is not collected
    # from the person, from whom (named partners, brokers, registers).
    collected_from = models.JSONField(_("where its data comes from"), default=list, blank=True)
    origin_detail = models.CharField(_("named sources of data not collected from the person"),
                                     max_length=300, blank=True)
    # GDPR Art. 15(1)(h), Art. 22: automated decisions with legal or similarly
    # significant effects, with the logic involved and the consequences (empty: none).
    automated_decisions = models.TextField(_("automated decision-making (empty: none)"),
                                           blank=True)

    # SQL: the DSN is read from this environment variable, never stored here.
    connection_env = models.CharField(_("DSN environment variable"), max_length=100, blank=True)
    dataset_map = models.TextField(_("dataset map (YAML)"), blank=True)
    # HTTP.
    url = models.URLField(_("URL"), blank=True)
    secret_env = models.CharField(_("HMAC secret environment variable"), max_length=100,
                                  blank=True)
    timeout_seconds = models.PositiveIntegerField(_("timeout (seconds)"), default=10)
    verify_tls = models.BooleanField(_("verify TLS certificates"), default=True)
    # Manual.
    instructions = models.TextField(_("instructions for the owner"), blank=True)

    # The circuit breaker (services/fulfilment/breaker.py): calls that failed in a
    # row (a timeout, a refused connection, a 5xx), and once there are too many,
    # unhealthy: its runs are parked, and it is probed until it answers.
    class Health(models.TextChoices):
        HEALTHY = "healthy", _("Healthy")
        UNHEALTHY = "unhealthy", _("Unhealthy: its runs are parked")

    health = models.CharField(_("health"), max_length=10, choices=Health.choices,
                              default=Health.HEALTHY)
    consecutive_failures = models.PositiveIntegerField(_("failed calls in a row"), default=0)
    unhealthy_since = models.DateTimeField(_("unhealthy since"), null=True, blank=True)
    health_reason = models.CharField(_("why it is unhealthy"), max_length=500, blank=True)
    next_probe_at = models.DateTimeField(_("next health probe"), null=True, blank=True)
    failed_probes = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("data source")
        ordering = ["name"]
        permissions = [("manage_sources", "Can manage data sources")]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def identity_types(cls) -> dict[str, str]:
        """The identity types of the office's own (a loyalty id) that enabled sources
        look people up by, with their labels: offered where people give their identity."""
        from requests_app.sources.registry import declared_identity_types

        return declared_identity_types(cls.objects.filter(enabled=True))

    def clean(self):
        from requests_app.sources.registry import validate_source

        validate_source(self)


def _token() -> str:
    return secrets.token_urlsafe(24)


class SourceRun(models.Model):
    """One piece of fulfilment work: one source, one action, for one request."""

    class Action(models.TextChoices):
        GATHER = "gather", _("Find the person's data")
        PLAN_ERASURE = "plan_erasure", _("Deletion dry run")
        ERASE = "erase", _("Delete")
        CORRECT = "correct", _("Correct")
        OPT_OUT = "opt_out", _("Opt out")

    class State(models.TextChoices):
        PENDING = "pending", _("Queued")
        RUNNING = "running", _("Running")
        WAITING = "waiting", _("Waiting (manual owner or asynchronous reply)")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    request = models.ForeignKey("requests_app.PrivacyRequest", on_delete=models.PROTECT,
                                related_name="source_runs")
    source = models.ForeignKey(DataSource, on_delete=models.PROTECT, related_name="runs")
    action = models.CharField(max_length=16, choices=Action.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING,
                             db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    records_found = models.PositiveIntegerField(null=True, blank=True)
    # Counts and table names only (never personal values): plan, outcome, progress.
    result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    # Failed without a call because its source is unhealthy (the circuit breaker):
    # retried when the source answers a probe or a manager marks it healthy.
    parked = models.BooleanField(default=False)
    # For asynchronous HTTP replies and manual uploads: an unguessable handle.
    token = models.CharField(max_length=64, unique=True, default=_token)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "source", "action"],
                                    name="one_run_per_request_source_action")
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.request.reference} {self.source.name} {self.action}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ThirdPartyNotice(models.Model):
    """A deletion (or opt-out) passed on to a third party, tracked to confirmation."""

    class State(models.TextChoices):
        PENDING = "pending", _("To send")
        SENT = "sent", _("Sent")
        CONFIRMED = "confirmed", _("Confirmed")
        IMPOSSIBLE = "impossible", _("Impossible (reason recorded)")

    request = models.ForeignKey("requests_app.PrivacyRequest", on_delete=models.PROTECT,
                                related_name="third_party_notices")
    third_party = models.ForeignKey(ThirdParty, on_delete=models.PROTECT)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "third_party"],
                                    name="one_notice_per_request_third_party")
        ]

    @property
    def awaited(self) -> bool:
        """No answer yet (to send, or sent): the first answer stands."""
        return self.state in (self.State.PENDING, self.State.SENT)


class Package(models.Model):
    """A file prepared for the consumer, encrypted at rest under MEDIA_ROOT."""

    class Kind(models.TextChoices):
        ACCESS = "access", _("Access report (HTML and JSON)")
        PORTABILITY = "portability", _("Portable data (zip of JSON and CSV)")
        CATEGORIES = "categories", _("Categories report")
        DELETION = "deletion", _("Deletion report")

    request = models.ForeignKey("requests_app.PrivacyRequest", on_delete=models.PROTECT,
                                related_name="packages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    filename = models.CharField(max_length=100)
    path = models.CharField(max_length=300)  # relative to MEDIA_ROOT
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    download_count = models.PositiveIntegerField(default=0)
    purged_at = models.DateTimeField(null=True, blank=True)
    # A requester with no email address gets the package from staff on a medium
    # they record (services/fulfilment/by_hand.py): its code and, for "other", words.
    class Medium(models.TextChoices):
        PRINTED_POST = "printed_post", _("Printed, by post")
        USB_REGISTERED = "usb_registered", _("Encrypted USB stick, by registered post")
        DISC_REGISTERED = "disc_registered", _("CD or DVD, by registered post")
        HANDED_OVER = "handed_over", _("Handed over in person")
        OTHER = "other", _("Other (describe it)")

    sent_medium = models.CharField(max_length=20, blank=True, default="",
                                   choices=Medium.choices)
    sent_medium_detail = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "kind"], name="one_package_per_kind")
        ]


class Suppression(models.Model):
    """Someone whose data was deleted: a keyed hash of their email, never the email,
    so imports can recognise and skip them."""

    identity_hash = models.CharField(max_length=64, unique=True)
    request_reference = models.CharField(max_length=24)
    created_at = models.DateTimeField(auto_now_add=True)
