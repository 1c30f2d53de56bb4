"""Django admin: a read-only window on requests and the audit trail.

Requests change only through the services (which keep the lifecycle, deadlines
and audit trail right), never by editing fields here.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from requests_app.services.audit.events import record_event
from requests_app.models.sources import SourceOrigin
from requests_app.services.fulfilment.runs import do_retry_parked
from requests_app.services.requests.lifecycle import TransitionRefused

from requests_app.models import (
    Actor,
    AuditEvent,
    ConsentRecord,
    DataSource,
    Disclosure,
    Identity,
    PrivacyRequest,
    Purpose,
    PurposeNotice,
    SourceRun,
    ThirdParty,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class IdentityInline(admin.StackedInline):
    model = Identity
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuditEventInline(admin.TabularInline):
    model = AuditEvent
    extra = 0
    can_delete = False
    fields = ["at", "action", "actor_label", "from_state", "to_state", "reason"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(ReadOnlyAdmin):
    list_display = ["reference", "request_type", "jurisdiction", "state", "channel",
                    "received_at", "due_on", "extended_due_on"]
    list_filter = ["state", "request_type", "jurisdiction", "channel"]
    search_fields = ["reference"]
    date_hierarchy = "received_at"
    inlines = [IdentityInline, AuditEventInline]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The page shows the person (the identity inline): audited as the desk is."""
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            privacy_request = self.get_object(request, object_id)
            record_event("staff.viewed_identity", actor=Actor.staff(request.user),
                         request=privacy_request, data={"page": "admin"})
        return response


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor_label", "request", "from_state", "to_state"]
    list_filter = ["action", "actor_kind"]
    search_fields = ["request__reference", "action"]
    list_select_related = ["request"]


class AuditedAdmin(admin.ModelAdmin):
    """Configuration changes are audited: who changed which record, and which fields
    (names only: a dataset map or a URL is configuration, not personal data)."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        record_event(
            f"config.{obj._meta.model_name}.{'changed' if change else 'added'}",
            actor=Actor.staff(request.user),
            data={"id": obj.pk, "name": str(obj), "fields": sorted(form.changed_data)},
        )


class DataSourceForm(forms.ModelForm):
    """Where a source's data comes from, as ticks (stored as SourceOrigin codes)."""

    collected_from = forms.MultipleChoiceField(
        label="Where its data comes from", choices=SourceOrigin.choices, required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The categories of sources a Right to Know answer gives for the "
                  "information this source holds about the person.")

    class Meta:
        model = DataSource
        fields = "__all__"


@admin.register(DataSource)
class DataSourceAdmin(AuditedAdmin):
    """Privacy Managers keep the registry here. Saving validates the source: the
    dataset map's syntax and categories (with line numbers), and against the real
    database its tables and columns; an HTTP source's URL and secret variable."""

    list_display = ["name", "kind", "enabled", "owner", "health", "consecutive_failures",
                    "health_reason"]
    list_filter = ["kind", "enabled", "health"]
    form = DataSourceForm
    filter_horizontal = ["third_parties"]
    readonly_fields = ["health", "consecutive_failures", "unhealthy_since", "health_reason",
                       "next_probe_at"]
    actions = ["mark_healthy"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "owner", "enabled"]}),
        ("Health (the circuit breaker)", {"fields": [
            "health", "consecutive_failures", "unhealthy_since", "health_reason",
            "next_probe_at"]}),
        ("What it holds", {"fields": ["categories", "purposes", "third_parties", "retention",
                                      "collected_from", "origin_detail",
                                      "automated_decisions"]}),
        ("SQL database", {"fields": ["connection_env", "dataset_map"]}),
        ("HTTP service", {"fields": ["url", "secret_env", "timeout_seconds", "verify_tls"]}),
        ("Manual", {"fields": ["instructions"]}),
    ]

    def has_delete_permission(self, request, obj=None):
        return False  # disable a source instead: its runs are part of the record

    @admin.action(description="Mark healthy and retry its parked runs",
                  permissions=["manage_sources"])
    def mark_healthy(self, request, queryset):
        """The circuit breaker's manual reset (services/fulfilment/breaker.py): the
        source may be called again, on trial, and the runs parked while it was
        unhealthy are retried (their requests back to fulfilling)."""
        actor = Actor.staff(request.user)
        for source in queryset:
            try:
                retried = do_retry_parked(source.pk, actor=actor,
                                          reason=f"{actor.label} marked it healthy")
            except TransitionRefused as exc:
                self.message_user(request, f"{source.name}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{source.name}: marked healthy; {retried} parked "
                                       "runs retried.")

    def has_manage_sources_permission(self, request):
        return request.user.has_perm("requests_app.manage_sources")


@admin.register(ThirdParty)
class ThirdPartyAdmin(AuditedAdmin):
    list_display = ["name", "kind", "recipient_category", "contact_email"]
    fields = ["name", "kind", "recipient_category", "contact_email", "categories"]


@admin.register(SourceRun)
class SourceRunAdmin(ReadOnlyAdmin):
    list_display = ["request", "source", "action", "state", "attempts", "records_found",
                    "started_at", "finished_at"]
    list_filter = ["state", "action", "source"]
    search_fields = ["request__reference"]
    exclude = ["token"]


class PurposeForm(forms.ModelForm):
    notice_text = forms.CharField(
        label="Notice text", widget=forms.Textarea(attrs={"rows": 8}),
        help_text="The exact words shown when a person makes a choice. Changing them "
                  "saves a new version; earlier versions stay, as the ledger names them.")

    class Meta:
        model = Purpose
        fields = ["name", "slug", "description", "basis", "opt_out_type", "honours_gpc",
                  "sources", "third_parties", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        notice = self.instance.current_notice if self.instance.pk else None
        if notice:
            self.fields["notice_text"].initial = notice.text


class PurposeNoticeInline(admin.TabularInline):
    model = PurposeNotice
    extra = 0
    can_delete = False
    fields = ["version", "created_at", "created_by", "text"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Purpose)
class PurposeAdmin(AuditedAdmin):
    """Privacy Managers define purposes here; each change of notice text is a new
    version (see models/consent.py)."""

    form = PurposeForm
    list_display = ["name", "basis", "opt_out_type", "honours_gpc", "active"]
    list_filter = ["basis", "active"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["sources", "third_parties"]
    inlines = [PurposeNoticeInline]

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger names it: make it inactive instead

    def get_readonly_fields(self, request, obj=None):
        # Once people have chosen, the basis is part of what they chose under: an
        # opt-in turned opt-out would make every "never agreed" a yes.
        if obj is not None and obj.records.exists():
            return ["basis", "slug"]
        return []

    def get_prepopulated_fields(self, request, obj=None):
        # A read-only slug has no input for the name to fill (the page failed).
        if "slug" in self.get_readonly_fields(request, obj):
            return {}
        return super().get_prepopulated_fields(request, obj)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            text = form.cleaned_data["notice_text"].strip()
            current = obj.current_notice
            if current is None or current.text != text:
                PurposeNotice.objects.create(
                    purpose=obj, version=(current.version + 1) if current else 1, text=text,
                    created_by=request.user)
                record_event("config.purposenotice.added", actor=Actor.staff(request.user),
                             data={"purpose": obj.slug,
                                   "version": (current.version + 1) if current else 1})


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    """The ledger, read-only (append-only in the database as well)."""

    list_display = ["at", "purpose", "action", "method", "notice", "request"]
    list_filter = ["purpose", "action", "method"]
    search_fields = ["request__reference"]


@admin.register(Disclosure)
class DisclosureAdmin(ReadOnlyAdmin):
    list_display = ["disclosed_at", "third_party_name", "purpose_text", "source",
                    "violated_purpose"]
    list_filter = ["violated_purpose", "source"]
    exclude = ["subject"]
