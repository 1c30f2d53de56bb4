"""Django admin: a read-only window on requests and the audit trail.

Requests change only through the services (which keep the lifecycle, deadlines
and audit trail right), never by editing fields here.
"""

from django.contrib import admin

from requests_app.models import AuditEvent, Identity, PrivacyRequest


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


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor_label", "request", "from_state", "to_state"]
    list_filter = ["action", "actor_kind"]
    search_fields = ["request__reference", "action"]
    list_select_related = ["request"]
