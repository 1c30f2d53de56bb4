from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Privacy requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from privacyportal.celery import ensure_broker_folders

        ensure_broker_folders()
        post_migrate.connect(_sync_roles, sender=self)


def _sync_roles(sender, **kwargs):
    from requests_app.roles import sync_roles

    sync_roles()
