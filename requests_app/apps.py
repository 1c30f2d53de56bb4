from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Privacy requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from privacyportal.celery import ensure_broker_folders

        ensure_broker_folders()
