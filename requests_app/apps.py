"""The Django app: groups and permissions kept in step with roles.py after every migrate,
and every change of who holds a role audited."""

from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Privacy requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.core import checks
        from django.db.models.signals import post_migrate

        checks.register(_deprecated_holiday_country)

        from privacyportal.celery import ensure_broker_folders

        ensure_broker_folders()
        post_migrate.connect(_sync_roles, sender=self)

        from django.contrib.auth.models import User
        from django.db.models.signals import m2m_changed

        m2m_changed.connect(_audit_role_change, sender=User.groups.through)


def _deprecated_holiday_country(app_configs=None, **kwargs):
    """HOLIDAY_COUNTRY still works (one country's holidays in every jurisdiction)
    but is deprecated: each jurisdiction names its calendars in rules/."""
    from django.conf import settings
    from django.core import checks

    if not settings.HOLIDAY_COUNTRY:
        return []
    return [checks.Warning(
        "HOLIDAY_COUNTRY is deprecated: it makes every jurisdiction skip "
        f"{settings.HOLIDAY_COUNTRY}'s holidays instead of those common to the calendars "
        "each jurisdiction names in requests_app/rules/.",
        hint="Unset it; add the office's own closures with OFFICE_CLOSURES "
             "(docs/configuration.md).", id="privacyportal.W001")]


def _sync_roles(sender, **kwargs):
    from requests_app.roles import sync_roles

    sync_roles()


def _audit_role_change(sender, instance, action, pk_set, **kwargs):
    """Who holds which role is configuration an auditor must be able to follow."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth.models import Group

    from requests_app.models import Actor
    from requests_app.services.audit.events import record_event

    groups = sorted(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
    record_event("config.roles_changed", actor=Actor.system(),
                 data={"user": instance.get_username(), "change": action.removeprefix("post_"),
                       "roles": groups})
